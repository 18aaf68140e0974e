//! Training: the step loop (one command encoder and one submit per step), the progress bar,
//! loss readback, NaN detection and checkpoints, and the end-of-run outputs.

pub mod loss_log;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::autograd::Ctx;
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::cpu::optim::AdamConfig;
use crate::diffusion::gaussian::{streams, GaussianDiffusion};
use crate::gpu::Gpu;
use crate::nn::Denoiser;
use crate::optim::{OptimConfig, TrainState};
use crate::tensor::Tensor;
use crate::toy;
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
        ema_decay: cfg.ema_decay,
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
        let gpu = self.gpu;
        let mut cx = Ctx::new(gpu);
        let params = self
            .model
            .layout()
            .vars(&mut cx, &state.params, Some(&state.grads));
        gpu.clear(&state.grads);
        let tl = self.diffusion.training_losses(
            &mut cx,
            self.model,
            &params,
            x_start,
            self.seed,
            state.step,
            self.antithetic,
        );
        cx.backward(&tl.loss);
        state.apply_gradients(gpu, &self.optim);
        tl.loss.tensor
    }
}

/// Indices of the training batch of `step`: counter-based, so a resumed run draws the same.
pub fn batch_indices(seed: u32, step: u64, batch: usize, n_data: usize) -> Vec<usize> {
    let stream = streams::for_step(step, streams::BATCH);
    (0..batch as u32)
        .map(|i| crate::cpu::rng::random_bits(seed, stream, i)[0] as usize % n_data)
        .collect()
}

fn progress_bar(steps: u64, start: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix("train");
    bar.set_position(start);
    bar.reset_eta();
    bar
}

/// Smoothed loss and the log file.
struct Monitor {
    smoothed: Option<f64>,
    log: std::fs::File,
}

impl Monitor {
    fn take(&mut self, chunks: Vec<LossChunk>, bar: &indicatif::ProgressBar) -> Result<()> {
        use std::io::Write;
        for chunk in chunks {
            if let Some(step) = chunk.first_non_finite() {
                bail!(
                    "the loss became NaN or infinite at step {}. The last checkpoint in the run \
                     directory is intact; lower --lr (or keep gradient clipping on) and resume or \
                     retrain",
                    step + 1
                );
            }
            let mean = chunk.mean();
            self.smoothed = Some(match self.smoothed {
                None => mean,
                Some(s) => 0.7 * s + 0.3 * mean,
            });
            let end = chunk.first_step + chunk.losses.len() as u64;
            writeln!(self.log, "step {end} loss {mean:.6}")?;
            bar.set_message(format!("loss {:.4}", self.smoothed.unwrap_or(mean)));
        }
        Ok(())
    }
}

/// The default run directory: runs/<preset>-<UTC timestamp>.
pub fn default_out_dir(preset: &str) -> PathBuf {
    PathBuf::from("runs").join(format!("{preset}-{}", utc_timestamp()))
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
pub struct RunReport {
    pub out_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub final_loss: Option<f64>,
    pub mmd2: Option<f64>,
}

/// Trains the toy preset and writes its outputs to `out`.
pub fn run_toy(gpu: &Gpu, cfg: &TrainConfig, out: &Path) -> Result<RunReport> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating run directory {}", out.display()))?;
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(cfg)?)?;
    let data = toy::training_data(cfg)?;
    let model = toy::model(cfg);
    let diffusion = toy::diffusion(gpu, cfg)?;
    let seed = cfg.seed as u32;
    let trainer = Trainer {
        gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(cfg),
        seed,
        antithetic: cfg.antithetic,
    };
    let mut state = TrainState::new(gpu, &model.layout, cfg.seed);
    eprintln!(
        "model: MLP, {} parameters; data: {} ({} points); T = {} ({} betas)",
        model.layout.n_params(),
        cfg.data,
        data.len(),
        cfg.n_timesteps,
        cfg.schedule
    );
    let batch = gpu.empty(&[cfg.batch_size, 2]);
    let mut loss_log = LossLog::new(gpu, cfg.log_every as usize);
    let mut monitor = Monitor {
        smoothed: None,
        log: std::fs::File::create(out.join("log.txt")).context("creating log.txt")?,
    };
    let ckpt_path = out.join("checkpoint.safetensors");
    let bar = progress_bar(cfg.steps, state.step);
    let started = Instant::now();
    let mut host_batch = vec![0f32; cfg.batch_size * 2];
    while state.step < cfg.steps {
        for (dst, i) in host_batch.chunks_exact_mut(2).zip(batch_indices(
            seed,
            state.step,
            cfg.batch_size,
            data.len(),
        )) {
            dst.copy_from_slice(&data[i]);
        }
        gpu.write(&batch, bytemuck::cast_slice(&host_batch));
        let step = state.step;
        let loss = trainer.record_step(&mut state, &batch);
        let done = loss_log.record(gpu, &loss, step);
        gpu.submit();
        loss_log.after_submit();
        monitor.take(done, &bar)?;
        monitor.take(loss_log.poll(gpu), &bar)?;
        bar.inc(1);
        if cfg.checkpoint_every > 0
            && state.step % cfg.checkpoint_every == 0
            && state.step < cfg.steps
        {
            monitor.take(loss_log.drain(gpu), &bar)?;
            checkpoint::save(&ckpt_path, cfg, &model.layout, &state.to_host(gpu))?;
        }
    }
    monitor.take(loss_log.drain(gpu), &bar)?;
    gpu.wait();
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();
    checkpoint::save(&ckpt_path, cfg, &model.layout, &state.to_host(gpu))?;
    eprintln!(
        "trained {} steps in {:.1} s ({:.1} steps/s) on {}",
        cfg.steps,
        seconds,
        cfg.steps as f64 / seconds.max(1e-9),
        gpu.describe()
    );
    let report = toy::write_samples(gpu, cfg, &state.ema, cfg.n_samples, seed, out)?;
    Ok(RunReport {
        out_dir: out.to_path_buf(),
        steps: cfg.steps,
        seconds,
        final_loss: monitor.smoothed,
        mmd2: Some(report.mmd2),
    })
}
