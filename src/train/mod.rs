//! Training: the step loop (one command encoder and one submit per step), the progress bar,
//! loss readback, NaN detection, checkpoints and Ctrl-C, for any model and batch source. The
//! presets (`crate::presets`) supply those and write their outputs around it.

pub mod importance;
pub mod loss_log;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::autograd::Ctx;
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::diffusion::gaussian::{
    streams, BatchRows, GaussianDiffusion, StepDraws, TimestepDraw, TrainingLoss,
};
use crate::diffusion::timestep_sampler::SamplerState;
use crate::gpu::Gpu;
use crate::nn::Denoiser;
use crate::optim::{AdamConfig, OptimConfig, TrainState};
use crate::run_dir::{Existing, RunDir};
use crate::tensor::Tensor;
use importance::ImportanceSampling;
use loss_log::{LossChunk, LossLog};

pub fn optim_config(cfg: &TrainConfig) -> OptimConfig {
    OptimConfig {
        adam: AdamConfig {
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_norm: cfg.grad_clip,
        },
        warmup_steps: cfg.warmup_steps,
        lr_schedule: cfg.lr_schedule,
        lr_min: cfg.lr_min,
        total_steps: cfg.steps,
        ema_decay: cfg.ema_decay,
        ema_warmup: cfg.ema_warmup,
    }
}

/// Everything one training step needs besides the state it updates.
pub struct Trainer<'a> {
    pub gpu: &'a Gpu,
    pub model: &'a dyn Denoiser,
    pub diffusion: &'a GaussianDiffusion,
    pub optim: OptimConfig,
    pub seed: u32,
    pub antithetic: bool,
}

impl Trainer<'_> {
    /// Records one step on the batch in `x_start` (forward, backward, update) and returns the
    /// loss tensor; the caller submits.
    pub fn record_step(&self, state: &mut TrainState, x_start: &Tensor) -> Tensor {
        self.record_step_drawn(state, x_start, None).loss.tensor
    }

    /// `record_step` with the timesteps (and loss weights) of `draw` when given, returning
    /// everything the step computed.
    pub fn record_step_drawn(
        &self,
        state: &mut TrainState,
        x_start: &Tensor,
        draw: Option<&TimestepDraw>,
    ) -> TrainingLoss {
        self.record_step_classes(state, x_start, draw, None)
    }

    /// `record_step_drawn` for a class-conditional model, trained on `classes` (u32 [batch],
    /// label dropout already applied).
    pub fn record_step_classes(
        &self,
        state: &mut TrainState,
        x_start: &Tensor,
        draw: Option<&TimestepDraw>,
        classes: Option<&Tensor>,
    ) -> TrainingLoss {
        let micro = MicroBatch {
            x_start,
            classes,
            rows: BatchRows::whole(x_start.shape[0]),
        };
        let mut losses = self.record_accumulated_step(state, &[micro], draw);
        losses.micro.pop().expect("one micro-batch")
    }

    /// One update from the summed gradients of `micro` (gradient accumulation): each
    /// micro-batch's forward and backward, its loss scaled by 1 / K, then one clip, Adam and
    /// EMA step. With the rows of one batch split into K micro-batches this is the step on that
    /// batch up to float rounding, in the memory of one micro-batch. Host-drawn timesteps
    /// (`draw`) need a single micro-batch.
    pub fn record_accumulated_step(
        &self,
        state: &mut TrainState,
        micro: &[MicroBatch],
        draw: Option<&TimestepDraw>,
    ) -> StepLosses {
        let losses = self.record_gradients(state, micro, draw, 1);
        state.apply_gradients(self.gpu, &self.optim);
        losses
    }

    /// The gradients of an accumulated step, summed into `state.grads`, without the update:
    /// `shares` ranks each hold 1 / shares of every micro-batch's rows, so each loss is scaled
    /// by 1 / (K shares) and the ranks' sums add up to the step's gradient.
    pub fn record_gradients(
        &self,
        state: &mut TrainState,
        micro: &[MicroBatch],
        draw: Option<&TimestepDraw>,
        shares: usize,
    ) -> StepLosses {
        let gpu = self.gpu;
        let k = micro.len();
        assert!(k >= 1, "a step has a micro-batch");
        assert!(
            draw.is_none() || k == 1,
            "host-drawn timesteps cover one micro-batch"
        );
        gpu.clear(&state.grads);
        // Micro-batches after the first write their gradients here, then add them in.
        let scratch = (k > 1).then(|| gpu.empty(&state.grads.shape));
        let mut losses = Vec::with_capacity(k);
        let mut total: Option<Tensor> = None;
        for (i, m) in micro.iter().enumerate() {
            let slot = match (&scratch, i) {
                (Some(s), 1..) => {
                    gpu.clear(s);
                    s
                }
                _ => &state.grads,
            };
            let mut cx = Ctx::new(gpu);
            let params = self.model.layout().vars(&mut cx, &state.params, Some(slot));
            let tl = self.diffusion.training_losses(
                &mut cx,
                self.model,
                &params,
                m.x_start,
                StepDraws {
                    seed: self.seed,
                    step: state.step,
                    rows: m.rows,
                    antithetic: self.antithetic,
                    draw,
                    classes: m.classes,
                },
            );
            crate::ops::backward_scaled(&mut cx, &tl.loss, 1.0 / (k * shares) as f32);
            drop(cx);
            if i > 0 {
                let sum = crate::ops::arith::add(gpu, &state.grads, slot);
                gpu.copy(&sum, &state.grads);
            }
            total = Some(match total {
                None => tl.loss.tensor.clone(),
                Some(t) => crate::ops::arith::add(gpu, &t, &tl.loss.tensor),
            });
            losses.push(tl);
        }
        let total = total.expect("a micro-batch");
        let loss = if k * shares == 1 {
            total
        } else {
            crate::ops::arith::scale(gpu, &total, 1.0 / (k * shares) as f32)
        };
        StepLosses {
            loss,
            micro: losses,
        }
    }
}

/// One micro-batch of a training step: its data, its classes (class-conditional models, label
/// dropout applied) and the rows of the step's batch it holds.
pub struct MicroBatch<'t> {
    pub x_start: &'t Tensor,
    pub classes: Option<&'t Tensor>,
    pub rows: BatchRows,
}

/// What an accumulated step computed: its loss (the mean over every row of every micro-batch;
/// this rank's part of it when the rows are shared between MPI ranks) and each micro-batch's
/// own.
pub struct StepLosses {
    pub loss: Tensor,
    pub micro: Vec<TrainingLoss>,
}

/// Indices of `rows` of the training batch of `step`: counter-based, so a resumed run draws the
/// same, and a micro-batch draws its rows of the whole batch.
pub fn batch_indices(
    seed: u32,
    step: u64,
    rows: std::ops::Range<usize>,
    n_data: usize,
) -> Vec<usize> {
    let stream = streams::for_step(step, streams::BATCH);
    rows.map(|i| crate::rng::random_bits(seed, stream, i as u32)[0] as usize % n_data)
        .collect()
}

fn progress_bar(steps: u64, start: u64) -> indicatif::ProgressBar {
    if !crate::parallel::ranks().is_root() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = crate::progress::bar("train", steps);
    bar.set_position(start);
    bar.reset_eta();
    bar
}

/// What a user is told when the loss stops being finite: what the run directory holds (a
/// checkpoint is only ever written after the losses before it were checked) and a command that
/// trains on with a lower learning rate.
fn diverged_advice(out: &Path, step: u64, lr: f64) -> String {
    let path = out.join("checkpoint.safetensors");
    let kept = match checkpoint::load(&path) {
        Ok(ckpt) => format!(
            "{} holds the checkpoint of step {}, written before the loss diverged (`ddpm sample \
             --checkpoint {}` samples from it)",
            out.display(),
            ckpt.state.step,
            path.display()
        ),
        Err(_) => format!(
            "no checkpoint was written before it ({} holds the config and the log)",
            out.display()
        ),
    };
    format!(
        "the loss became NaN or infinite at step {step}; {kept}. Train again with a lower \
         learning rate and gradient clipping on (grad_clip > 0): `ddpm train --config {} --lr {:e} \
         --out NEW_DIR`",
        out.join("config.json").display(),
        lr / 4.0
    )
}

/// Smoothed loss, every loss, log.txt and metrics.jsonl, and the clocks for the rates.
struct Monitor {
    smoothed: Option<f64>,
    /// log.txt and metrics.jsonl on rank 0; nowhere on the other MPI ranks.
    log: Box<dyn std::io::Write>,
    metrics: Box<dyn std::io::Write>,
    losses: Vec<f32>,
    batch_size: usize,
    started: (Instant, u64),
    /// When the last interval was logged, and its end step.
    last_logged: (Instant, u64),
    /// The run directory, for the advice when the loss diverges.
    out: PathBuf,
    optim: OptimConfig,
}

impl Monitor {
    /// Evaluation figures of `step`, a line of log.txt and a record of metrics.jsonl.
    fn log_figures(&mut self, step: u64, figures: &[(&'static str, f64)]) -> Result<()> {
        use std::io::Write;
        if figures.is_empty() {
            return Ok(());
        }
        let mut record = serde_json::Map::new();
        record.insert("step".into(), step.into());
        let mut line = format!("step {step}");
        for (name, value) in figures {
            record.insert((*name).into(), (*value).into());
            line.push_str(&format!(" {name} {value:.5}"));
        }
        writeln!(self.log, "{line}")?;
        writeln!(self.metrics, "{}", serde_json::Value::Object(record))?;
        Ok(())
    }

    fn images_per_second(&self, step: u64) -> Option<f64> {
        let seconds = self.started.0.elapsed().as_secs_f64();
        let steps = step.checked_sub(self.started.1)?;
        (seconds > 0.0).then(|| steps as f64 * self.batch_size as f64 / seconds)
    }

    fn take(&mut self, chunks: Vec<LossChunk>, bar: &indicatif::ProgressBar) -> Result<()> {
        use std::io::Write;
        for chunk in chunks {
            if let Some(step) = chunk.first_non_finite() {
                bail!(
                    "{}",
                    diverged_advice(&self.out, step + 1, self.optim.adam.lr)
                );
            }
            self.losses.extend(&chunk.losses);
            let mean = chunk.mean();
            self.smoothed = Some(match self.smoothed {
                None => mean,
                Some(s) => 0.7 * s + 0.3 * mean,
            });
            let end = chunk.first_step + chunk.losses.len() as u64;
            writeln!(self.log, "step {end} loss {mean:.6}")?;
            // The rates are over the interval, by the host's clock when its losses arrived.
            let (then, then_step) = self.last_logged;
            let seconds = then.elapsed().as_secs_f64().max(1e-9);
            let steps_per_s = end.saturating_sub(then_step) as f64 / seconds;
            self.last_logged = (Instant::now(), end);
            let record = serde_json::json!({
                "step": end,
                "loss": mean,
                "grad_norm": chunk.mean_grad_norm(),
                "lr": self.optim.lr_at(end),
                "steps_per_s": steps_per_s,
                "images_per_s": steps_per_s * self.batch_size as f64,
            });
            writeln!(self.metrics, "{record}")?;
            bar.set_message(format!("loss {:.4}", self.smoothed.unwrap_or(mean)));
            if let Some(rate) = self.images_per_second(end) {
                bar.set_message(format!(
                    "loss {:.4}  {rate:.1} img/s",
                    self.smoothed.unwrap_or(mean)
                ));
            }
        }
        Ok(())
    }
}

/// The default run directory: runs/<preset>-<UTC timestamp>.
/// runs/<preset>-<UTC time>, with -2, -3, ... when runs started in the same second.
pub fn default_out_dir(preset: crate::config::Preset) -> PathBuf {
    let base = format!("{preset}-{}", utc_timestamp());
    (1..)
        .map(|i| match i {
            1 => PathBuf::from("runs").join(&base),
            i => PathBuf::from("runs").join(format!("{base}-{i}")),
        })
        .find(|p| !p.exists())
        .expect("an unused name")
}

fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub out_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub final_loss: Option<f64>,
    pub mmd2: Option<f64>,
    /// Losses of every step trained in this run, in order (for tests of exact resume).
    pub losses: Vec<f32>,
    /// True when Ctrl-C stopped the run (a checkpoint was written first).
    pub interrupted: bool,
}

/// Installs the Ctrl-C handler; the loop writes a checkpoint and stops at the next step
/// boundary. The flag lives in crate::interrupt, which sampling and evaluation read too.
pub use crate::interrupt::install as install_interrupt_handler;

/// Supplies the host batch of a step (f32, the model's input layout) from the step number, so
/// a resumed run sees the same batches.
pub trait BatchSource {
    /// The shape of one forward's batch (a micro-batch under gradient accumulation).
    fn shape(&self) -> Vec<usize>;
    /// Fills `out` with `rows` of the batch of `step` and, for a class-conditional run,
    /// `labels` with their classes.
    fn batch(
        &self,
        seed: u32,
        step: u64,
        rows: BatchRows,
        out: &mut [f32],
        labels: Option<&mut [u32]>,
    );
}

/// Called after `sample_every` steps and at the end, with the EMA weights.
pub type SampleHook<'a> = dyn FnMut(&Gpu, &TrainState) -> Result<()> + 'a;

/// Called every `eval_every` steps with the EMA weights: the figures it measured (name,
/// value), logged to metrics.jsonl and log.txt next to the loss.
pub type EvalHook<'a> = dyn FnMut(&Gpu, &TrainState) -> Result<Vec<(&'static str, f64)>> + 'a;

/// What the step loop calls besides training: the sample grids and the evaluations.
pub struct Hooks<'a, 'b> {
    pub on_sample: &'a mut SampleHook<'b>,
    pub on_eval: Option<Evaluations<'a, 'b>>,
}

/// When the step loop evaluates: every `every` steps (0: never in the loop) and, with
/// `at_end`, once after the last step of a run not stopped by Ctrl-C.
pub struct Evaluations<'a, 'b> {
    pub every: u64,
    pub at_end: bool,
    pub hook: &'a mut EvalHook<'b>,
}

/// What the step loop trains, on what, and where its log and checkpoint go.
pub struct LoopOptions<'a> {
    pub gpu: &'a Gpu,
    pub cfg: &'a TrainConfig,
    pub model: &'a dyn Denoiser,
    pub diffusion: &'a GaussianDiffusion,
    pub batches: &'a dyn BatchSource,
    /// The run directory: log.txt and checkpoint.safetensors.
    pub out: &'a Path,
}

/// How the step loop ended.
pub struct LoopOutcome {
    pub seconds: f64,
    /// The smoothed loss at the end (None when no step ran).
    pub final_loss: Option<f64>,
    /// The loss of every step run, in order.
    pub losses: Vec<f32>,
    /// True when Ctrl-C stopped the loop (after a checkpoint).
    pub interrupted: bool,
}

/// The training loop shared by every preset: one encoder and one submit per step, the loss
/// read back without stalls, NaN detection, periodic checkpoints and samples, Ctrl-C.
pub fn train_loop(opts: &LoopOptions, state: &mut TrainState, hooks: Hooks) -> Result<LoopOutcome> {
    let Hooks {
        on_sample,
        mut on_eval,
    } = hooks;
    let LoopOptions {
        gpu,
        cfg,
        model,
        diffusion,
        batches,
        out,
    } = *opts;
    let seed = cfg.seed as u32;
    let trainer = Trainer {
        gpu,
        model,
        diffusion,
        optim: optim_config(cfg),
        seed,
        antithetic: cfg.antithetic,
    };
    let shape = batches.shape();
    // Gradient accumulation: K micro-batches, each the rows kB..(k+1)B of the step's batch of
    // KB, each with its own upload buffers (queued writes land before the step's commands).
    // Under MPI each of N ranks computes its B / N rows of every micro-batch.
    let ranks = crate::parallel::ranks();
    let accumulate = cfg.grad_accum.max(1);
    let micro_rows = shape[0];
    ranks.check_batch(micro_rows).map_err(anyhow::Error::msg)?;
    if ranks.is_parallel() && cfg.importance_sampling {
        bail!(
            "importance sampling draws each step's timesteps for one process; train without \
             --importance-sampling under mpirun"
        );
    }
    let share = ranks.share(micro_rows);
    let local_shape: Vec<usize> = std::iter::once(share.len())
        .chain(shape[1..].iter().copied())
        .collect();
    let rows_of = |k: usize| BatchRows::share_of_micro(k, micro_rows, accumulate, share.clone());
    let inputs: Vec<Tensor> = (0..accumulate).map(|_| gpu.empty(&local_shape)).collect();
    let mut host_batch = vec![0f32; inputs[0].numel()];
    // A class-conditional model trains on the batch's labels, each dropped to "no class" with
    // probability p_uncond by a draw keyed by the step (so a resumed run drops the same ones).
    let null_class = model.class_rows().map(|rows| rows as u32 - 1);
    let mut host_labels = vec![0u32; share.len()];
    let labels: Vec<Tensor> = (0..accumulate)
        .map(|_| gpu.upload_u32(&host_labels, &[share.len()]))
        .collect();
    let mut loss_log = LossLog::new(gpu, cfg.log_every as usize, state.step);
    let append = |name: &str| -> Result<Box<dyn std::io::Write>> {
        if !ranks.is_root() {
            return Ok(Box::new(std::io::sink()));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join(name))
            .with_context(|| format!("opening {}", out.join(name).display()))?;
        Ok(Box::new(file))
    };
    let mut monitor = Monitor {
        smoothed: None,
        log: append("log.txt")?,
        metrics: append("metrics.jsonl")?,
        losses: Vec::new(),
        batch_size: cfg.batch_size * accumulate,
        started: (Instant::now(), state.step),
        last_logged: (Instant::now(), state.step),
        out: out.to_path_buf(),
        optim: optim_config(cfg),
    };
    let ckpt_path = out.join("checkpoint.safetensors");
    let mut importance = if cfg.importance_sampling {
        let saved = if state.step > 0 {
            let sampler = checkpoint::load(&ckpt_path)?.sampler;
            if sampler.is_none() {
                bail!(
                    "checkpoint {} was trained with importance sampling but holds no sampler \
                     state; it is damaged or was edited: retrain",
                    ckpt_path.display()
                );
            }
            sampler
        } else {
            None
        };
        Some(ImportanceSampling::new(
            gpu,
            diffusion.n_timesteps(),
            cfg.batch_size,
            saved,
        ))
    } else {
        None
    };
    let save = |state: &TrainState, importance: &mut Option<ImportanceSampling>| {
        if !ranks.is_root() {
            return Ok(());
        }
        let sampler: Option<SamplerState> = importance.as_mut().map(|i| i.state(gpu));
        checkpoint::save_with_sampler(
            &ckpt_path,
            cfg,
            model.layout(),
            &state.to_host(gpu),
            sampler.as_ref(),
        )
    };
    let bar = progress_bar(cfg.steps, state.step);
    let mut all_reduce_time = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let started = Instant::now();
    let first_step = state.step;
    let mut interrupted = false;
    // Under MPI the ranks stop together: a Ctrl-C seen by any rank rides on the next
    // all-reduce, and all stop after that step.
    let mut any_rank_interrupted = false;
    while state.step < cfg.steps {
        let stop = if ranks.is_parallel() {
            any_rank_interrupted
        } else {
            crate::interrupt::requested()
        };
        if stop {
            interrupted = true;
            break;
        }
        let step = state.step;
        let mut classes = Vec::with_capacity(accumulate);
        for k in 0..accumulate {
            let rows = rows_of(k);
            let want_labels = null_class.is_some().then_some(&mut host_labels[..]);
            batches.batch(seed, step, rows, &mut host_batch, want_labels);
            gpu.write(&inputs[k], bytemuck::cast_slice(&host_batch));
            classes.push(null_class.map(|null| {
                gpu.write(&labels[k], bytemuck::cast_slice(&host_labels));
                let key = (seed, streams::for_step(step, streams::LABELS));
                let p = cfg.p_uncond;
                crate::ops::guidance::drop_labels(gpu, &labels[k], p, null, key, rows.first)
            }));
        }
        let micro: Vec<MicroBatch> = (0..accumulate)
            .map(|k| MicroBatch {
                x_start: &inputs[k],
                classes: classes[k].as_ref(),
                rows: rows_of(k),
            })
            .collect();
        let draw = importance.as_mut().map(|i| i.draw(gpu, seed, step));
        let mut losses = trainer.record_gradients(state, &micro, draw.as_ref(), ranks.size);
        if ranks.is_parallel() {
            let (loss, stop) = all_reduce_gradients(gpu, state, &losses.loss, &mut all_reduce_time);
            losses.loss = loss;
            any_rank_interrupted = stop;
        }
        state.apply_gradients(gpu, &trainer.optim);
        if let (Some(i), Some(per_sample)) =
            (importance.as_mut(), &losses.micro[0].per_sample_losses)
        {
            i.record(gpu, step, per_sample);
        }
        let done = loss_log.record(gpu, &losses.loss, &state.last_grad_norm, step);
        gpu.submit();
        loss_log.after_submit();
        if let Some(i) = importance.as_mut() {
            i.after_submit(gpu);
        }
        monitor.take(done, &bar)?;
        monitor.take(loss_log.poll(gpu), &bar)?;
        bar.inc(1);
        if ranks.is_parallel() && state.step.is_multiple_of(PARAMETER_CHECK_EVERY) {
            check_ranks_agree(gpu, state)?;
        }
        // Rank 0 alone writes checkpoints and draws the grids and evaluations; the other ranks
        // wait for it at the next step's all-reduce.
        let root = ranks.is_root();
        let at_checkpoint =
            root && cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
        let at_sample = root && cfg.sample_every > 0 && state.step.is_multiple_of(cfg.sample_every);
        let at_eval = root
            && on_eval
                .as_ref()
                .is_some_and(|e| e.every > 0 && state.step.is_multiple_of(e.every));
        if (at_checkpoint || at_sample || at_eval) && state.step < cfg.steps {
            // Check the losses before saving: a NaN run must not overwrite a good checkpoint.
            monitor.take(loss_log.drain(gpu), &bar)?;
            if at_checkpoint {
                save(state, &mut importance)?;
            }
            if at_sample {
                bar.suspend(|| on_sample(gpu, state))?;
            }
            if let (true, Some(e)) = (at_eval, on_eval.as_mut()) {
                let figures = bar.suspend(|| (e.hook)(gpu, state))?;
                monitor.log_figures(state.step, &figures)?;
            }
        }
    }
    let partial = (state.step - first_step) % cfg.log_every;
    monitor.take(loss_log.drain(gpu), &bar)?;
    if partial > 0 {
        monitor.take(
            vec![loss_log.read_partial(gpu, state.step - partial, partial as usize)],
            &bar,
        )?;
    }
    gpu.wait();
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    save(state, &mut importance)?;
    if ranks.is_parallel() {
        check_ranks_agree(gpu, state)?;
        let steps = (state.step - first_step).max(1);
        if ranks.is_root() {
            let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps as f64;
            eprintln!(
                "{} MPI ranks, per step: {:.2} ms in MPI_Allreduce of the gradients ({:.1} MB), \
                 {:.2} ms finishing the step and reading them back",
                ranks.size,
                per_step(all_reduce_time.1),
                state.grads.numel() as f64 * 4e-6,
                per_step(all_reduce_time.0)
            );
        }
    }
    if let Some(e) = on_eval
        .as_mut()
        .filter(|e| e.at_end && !interrupted && ranks.is_root())
    {
        let figures = (e.hook)(gpu, state)?;
        monitor.log_figures(state.step, &figures)?;
    }
    Ok(LoopOutcome {
        seconds,
        final_loss: monitor.smoothed,
        losses: monitor.losses,
        interrupted,
    })
}

/// Steps between the MPI ranks' comparisons of their weights.
const PARAMETER_CHECK_EVERY: u64 = 100;

/// Sums the ranks' gradients (and their parts of the loss) on the host: the step recorded so
/// far is submitted and read back, MPI_Allreduce adds the ranks' copies, and the sums are
/// queued for upload before the update that reads them. Returns the step's whole loss, and
/// whether any rank was asked to stop (Ctrl-C), which rides on the same all-reduce.
///
/// `time` adds up the seconds of (waiting for this rank's step and reading it back, the
/// MPI_Allreduce itself).
fn all_reduce_gradients(
    gpu: &Gpu,
    state: &TrainState,
    loss: &Tensor,
    time: &mut (std::time::Duration, std::time::Duration),
) -> (Tensor, bool) {
    let started = Instant::now();
    let mut host = gpu.read(&state.grads);
    host.extend(gpu.read(loss));
    host.push(if crate::interrupt::requested() {
        1.0
    } else {
        0.0
    });
    let read = Instant::now();
    crate::parallel::sum_f32(&mut host);
    time.0 += read - started;
    time.1 += read.elapsed();
    let stop = host.pop().expect("the stop flag rides at the end") > 0.0;
    let loss = host.pop().expect("the loss rides before it");
    gpu.write(&state.grads, bytemuck::cast_slice(&host));
    (gpu.upload(&[loss], &[1]), stop)
}

/// Stops the run when the ranks' weights have drifted apart (every rank applies the same update
/// to the same weights, so they never should).
fn check_ranks_agree(gpu: &Gpu, state: &TrainState) -> Result<()> {
    let print = crate::parallel::fingerprint(&gpu.read(&state.params));
    if !crate::parallel::all_agree(print) {
        bail!(
            "the MPI ranks' weights differ after step {}: the ranks must run the same ddpm build \
             on adapters that compute alike (mixed GPU models or drivers can round differently); \
             the last checkpoint in the run directory is from before",
            state.step
        );
    }
    Ok(())
}

/// Fresh state, or the one in `resume`'s checkpoint after checking that it fits the model.
pub fn start_state(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &dyn Denoiser,
    out: &Path,
    resume: bool,
) -> Result<TrainState> {
    let ranks = crate::parallel::ranks();
    // Under MPI rank 0 alone reads the run directory (the others may be on machines without
    // it) and every rank starts from its state.
    let state = if !resume || !ranks.is_root() {
        TrainState::new(gpu, model.layout(), cfg.seed)
    } else {
        let path = out.join("checkpoint.safetensors");
        let ckpt = checkpoint::load(&path)?;
        ckpt.check_layout(&path, model.layout())?;
        TrainState::from_host(gpu, &ckpt.state)
    };
    if !ranks.is_parallel() {
        return Ok(state);
    }
    let mut host = state.to_host(gpu);
    for values in [
        &mut host.params,
        &mut host.exp_avg,
        &mut host.exp_avg_sq,
        &mut host.ema,
    ] {
        crate::parallel::broadcast_f32(values);
    }
    host.step = crate::parallel::broadcast_u64(host.step);
    Ok(TrainState::from_host(gpu, &host))
}

/// How a run starts in its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new run: the directory must be new or empty unless `Existing::Overwrite`.
    New(Existing),
    /// On from the checkpoint in the directory.
    Resume,
}

impl Start {
    pub fn is_resume(self) -> bool {
        self == Start::Resume
    }
}

/// Claims the run directory (its lock is held until the returned value drops) and, for a new
/// run, writes config.json. Call it after everything that can be checked has been: a run that
/// fails on its settings or data writes nothing.
///
/// Under MPI only rank 0 claims and writes the directory; the others get None.
pub fn prepare_out_dir(cfg: &TrainConfig, out: &Path, start: Start) -> Result<Option<RunDir>> {
    if !crate::parallel::ranks().is_root() {
        return Ok(None);
    }
    match start {
        Start::Resume => RunDir::claim_existing(out).map(Some),
        Start::New(existing) => {
            let dir = RunDir::claim_new(out, existing)?;
            let json = serde_json::to_string_pretty(cfg)?;
            checkpoint::write_atomic(&out.join("config.json"), json.as_bytes())?;
            Ok(Some(dir))
        }
    }
}

pub fn print_speed(gpu: &Gpu, cfg: &TrainConfig, steps: u64, seconds: f64) {
    eprintln!(
        "trained {steps} steps in {seconds:.1} s ({:.2} steps/s, {:.1} images/s) on {}",
        steps as f64 / seconds.max(1e-9),
        (steps as f64 * (cfg.batch_size * cfg.grad_accum.max(1)) as f64) / seconds.max(1e-9),
        gpu.describe()
    );
}
