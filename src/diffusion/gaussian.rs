//! The diffusion process on the GPU, named after improved-diffusion's GaussianDiffusion:
//! `training_losses` (q_sample, the model, L_simple) and `p_sample_loop` (the reverse chain).

use crate::autograd::{Ctx, Var};
use crate::diffusion::prediction::{model_eps, Objective};
use crate::diffusion::Schedule;
use crate::gpu::Gpu;
use crate::nn::{Conditioning, Denoiser};
use crate::ops::diffusion::{self as kernels, PSampleOptions};
use crate::ops::{loss, rng};
use crate::tensor::Tensor;

/// RNG streams of one training step: every draw is keyed by (seed, stream, index), so a step
/// can be replayed exactly, after a resume too.
pub mod streams {
    pub const TIMESTEPS: u32 = 0;
    pub const NOISE: u32 = 1;
    pub const BATCH: u32 = 2;
    pub const DROPOUT: u32 = 3;
    pub const FLIP: u32 = 4;
    /// Label dropout of class-conditional training.
    pub const LABELS: u32 = 5;
    /// Offset noise: one normal per sample and channel (diffusion::prediction).
    pub const OFFSET: u32 = 6;
    const PER_STEP: u32 = 8;

    pub fn for_step(step: u64, purpose: u32) -> u32 {
        (step as u32).wrapping_mul(PER_STEP).wrapping_add(purpose)
    }

    /// Sampling: stream 0 is x_T, stream 1 + t the noise of the step at t.
    pub fn sampling_step(t: usize) -> u32 {
        1 + t as u32
    }
}

pub struct GaussianDiffusion {
    pub schedule: Schedule,
    /// Schedule::gpu_table, uploaded once.
    pub table: Tensor,
    /// The model's timestep for each step of `schedule`: the identity, or the kept timesteps
    /// of the trained process when sampling with fewer steps.
    pub timestep_map: Vec<usize>,
    /// IDDPM: the model outputs 2C channels, noise then variance (learned range); the loss is
    /// the hybrid one and sampling uses the learned variance.
    pub learn_sigma: bool,
    /// The training target and loss weighting; sampling and the VLB read its prediction.
    pub objective: Objective,
}

/// Which rows of a step's batch one forward computes: rows first..first + len of a batch of
/// `total`. Every draw of the step (timesteps, noise, offsets, dropout masks, dropped labels,
/// data indices, flips) is keyed by the row within the whole batch, so K micro-batches
/// (gradient accumulation) and N MPI ranks compute exactly the rows of one large batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRows {
    pub first: usize,
    pub len: usize,
    pub total: usize,
}

impl BatchRows {
    /// A whole batch of n rows.
    pub fn whole(n: usize) -> BatchRows {
        BatchRows {
            first: 0,
            len: n,
            total: n,
        }
    }

    /// Micro-batch k of `count`, each of `size` rows.
    pub fn micro(k: usize, size: usize, count: usize) -> BatchRows {
        BatchRows::share_of_micro(k, size, count, 0..size)
    }

    /// The rows `share` (a rank's part, within 0..size) of micro-batch k of `count`, each of
    /// `size` rows.
    pub fn share_of_micro(
        k: usize,
        size: usize,
        count: usize,
        share: std::ops::Range<usize>,
    ) -> BatchRows {
        assert!(k < count, "micro-batch {k} of {count}");
        assert!(
            share.end <= size,
            "rows {share:?} of a micro-batch of {size}"
        );
        BatchRows {
            first: k * size + share.start,
            len: share.len(),
            total: size * count,
        }
    }

    /// The rows as a range.
    pub fn range(self) -> std::ops::Range<usize> {
        self.first..self.first + self.len
    }
}

/// The random draws of one training step: noise and timesteps from Philox streams of `step`
/// (timesteps in antithetic pairs when `antithetic`), unless `draw` brings host-drawn
/// timesteps with their importance weights.
#[derive(Clone, Copy)]
pub struct StepDraws<'a> {
    pub seed: u32,
    pub step: u64,
    /// The rows of the step's batch this forward computes.
    pub rows: BatchRows,
    pub antithetic: bool,
    pub draw: Option<&'a TimestepDraw>,
    /// u32 [batch]: the classes a class-conditional model trains on this step (after label
    /// dropout); None for an unconditional model.
    pub classes: Option<&'a Tensor>,
}

/// How `p_sample_loop` runs the reverse chain.
#[derive(Clone, Copy)]
pub struct ChainOptions<'a> {
    /// The step: variance, clipping, DDIM (the sampler must be respaced for `steps` already).
    pub opts: PSampleOptions,
    pub seed: u32,
    /// Keep x_t every this many steps (for the GIFs).
    pub keep_every: Option<usize>,
    /// Counts the steps as the GPU finishes them (the caller finishes the bar, which may span
    /// several chains).
    pub progress: Option<&'a indicatif::ProgressBar>,
    /// The index of this chain's first sample in the whole draw: a chain over samples
    /// [first_sample, first_sample + n) of a larger one draws the same x_T and noise for them,
    /// so sampling in chunks gives the numbers of one chain.
    pub first_sample: u64,
    /// Class-conditional sampling of a class-conditional model; None samples it unconditionally
    /// (every sample "no class").
    pub guidance: Option<ClassGuidance<'a>>,
}

/// Classifier-free guidance: eps = w eps(x, y) + (1 - w) eps(x, no class), i.e.
/// eps_uncond + w (eps_cond - eps_uncond), from one forward of the doubled batch [x; x] with
/// classes [y; no class]. w = 1 is plain conditional sampling (one forward of x); w = 0 the
/// unconditional model. Only the noise is guided: a learned variance is the conditional one.
/// x0 and v outputs combine the same way (each is affine in eps at fixed x_t).
#[derive(Clone, Copy)]
pub struct ClassGuidance<'a> {
    /// The class of every sample of the whole draw (sample i of a chain is
    /// classes[first_sample + i]).
    pub classes: &'a [u32],
    /// The guidance scale w.
    pub scale: f32,
}

impl<'a> ChainOptions<'a> {
    /// The chain with `opts` and `seed`, keeping no frames and showing no progress.
    pub fn new(opts: PSampleOptions, seed: u32) -> ChainOptions<'a> {
        ChainOptions {
            opts,
            seed,
            keep_every: None,
            progress: None,
            first_sample: 0,
            guidance: None,
        }
    }
}

/// What one training step drew and computed, for tests and logging.
pub struct TrainingLoss {
    pub loss: Var,
    pub timesteps: Tensor,
    pub noise: Tensor,
    pub x_t: Tensor,
    /// With host-drawn timesteps: each sample's unweighted loss (L_simple, plus the scaled L_vlb
    /// when the variance is learned), which the importance sampler learns from.
    pub per_sample_losses: Option<Tensor>,
}

/// Timesteps drawn on the host by an importance sampler, with the weights 1 / (T p_t) that keep
/// the weighted loss an unbiased estimate of the uniform-t objective.
pub struct TimestepDraw {
    /// [batch] u32.
    pub timesteps: Tensor,
    /// [batch] f32.
    pub weights: Tensor,
}

/// The classes of one chain, uploaded once: [y] for w = 1, [y; no class] for a guided
/// doubled batch.
struct GuidedClasses {
    classes: Tensor,
    scale: f32,
}

impl GuidedClasses {
    fn new(
        gpu: &Gpu,
        model: &dyn Denoiser,
        g: ClassGuidance,
        n: usize,
        first_sample: u64,
    ) -> GuidedClasses {
        let null = model
            .class_rows()
            .expect("guidance needs a class-conditional model") as u32
            - 1;
        let first = first_sample as usize;
        let mut classes = g.classes[first..first + n].to_vec();
        if g.scale != 1.0 {
            classes.extend(std::iter::repeat_n(null, n));
        }
        GuidedClasses {
            classes: gpu.upload_u32(&classes, &[classes.len()]),
            scale: g.scale,
        }
    }

    /// The model's output at x and model timestep `t`, conditional (w = 1) or guided.
    fn forward(
        &self,
        cx: &mut Ctx,
        model: &dyn Denoiser,
        params: &[Var],
        x: &Tensor,
        t: usize,
    ) -> Var {
        let gpu = cx.gpu;
        let rows = self.classes.numel();
        let timesteps = kernels::fill_timesteps(gpu, rows, t);
        let x_in = if rows == x.shape[0] {
            x.clone()
        } else {
            crate::ops::guidance::doubled(gpu, x)
        };
        let x_var = cx.constant(x_in);
        let cond = Conditioning {
            timesteps: &timesteps,
            classes: Some(&self.classes),
            dropout: None,
        };
        let out = model.forward(cx, params, &x_var, cond);
        if rows == x.shape[0] {
            return out;
        }
        let guided = crate::ops::guidance::guide(gpu, &out.tensor, x.shape[1], self.scale);
        cx.constant(guided)
    }
}

impl GaussianDiffusion {
    pub fn new(gpu: &Gpu, schedule: Schedule) -> GaussianDiffusion {
        let timestep_map = (0..schedule.n_timesteps()).collect();
        Self::with_map(gpu, schedule, timestep_map)
    }

    fn with_map(gpu: &Gpu, schedule: Schedule, timestep_map: Vec<usize>) -> GaussianDiffusion {
        let table = gpu.upload(
            &schedule.gpu_table(),
            &[schedule.n_timesteps(), super::schedule::TABLE_COLS],
        );
        GaussianDiffusion {
            schedule,
            table,
            timestep_map,
            learn_sigma: false,
            objective: Objective::default(),
        }
    }

    pub fn with_objective(mut self, objective: Objective) -> GaussianDiffusion {
        self.objective = objective;
        self
    }

    pub fn with_learned_variance(mut self, learn_sigma: bool) -> GaussianDiffusion {
        self.learn_sigma = learn_sigma;
        self
    }

    /// Splits the model's output [n, 2C, ...] into the noise and the variance channels, each
    /// shaped like x.
    fn split_output(cx: &mut Ctx, out: &Var, x_shape: &[usize]) -> (Var, Var) {
        let c = x_shape[1];
        let n = x_shape[0];
        let rest: usize = x_shape[2..].iter().product();
        let as_nchw = crate::nn::unet::reshape(cx, out, &[n, 2 * c, rest.max(1), 1]);
        let eps = crate::ops::resample::take_channels_var(cx, &as_nchw, c, true);
        let v = crate::ops::resample::take_channels_var(cx, &as_nchw, c, false);
        (
            crate::nn::unet::reshape(cx, &eps, x_shape),
            crate::nn::unet::reshape(cx, &v, x_shape),
        )
    }

    /// The process to sample with under `opts`: this one, or its respaced version.
    pub fn for_sampling(
        &self,
        gpu: &Gpu,
        opts: &crate::ops::diffusion::PSampleOptions,
    ) -> Result<GaussianDiffusion, String> {
        use super::respace::Spacing;
        let steps = opts.steps.unwrap_or(self.n_timesteps());
        let deterministic = opts.dpm_solver || opts.ddim_eta.is_some();
        let spacing = opts.spacing.unwrap_or(if opts.dpm_solver {
            Spacing::LogSnr
        } else {
            Spacing::Uniform
        });
        // The deterministic samplers' own step sets; ancestral (and uniform DDIM) respace below.
        let kept = if deterministic && spacing == Spacing::LogSnr {
            Some(super::respace::logsnr_timesteps(&self.schedule, steps)?)
        } else if opts.dpm_solver {
            Some(super::dpm_solver::timesteps(self.n_timesteps(), steps)?)
        } else {
            None
        };
        if let Some(kept) = kept {
            let r = super::respace::respace(&self.schedule, &kept);
            return Ok(Self::with_map(gpu, r.schedule, r.timestep_map)
                .with_learned_variance(self.learn_sigma)
                .with_objective(self.objective));
        }
        if steps == self.n_timesteps() && opts.ddim_eta.is_none() {
            return Ok(GaussianDiffusion {
                schedule: self.schedule.clone(),
                table: self.table.clone(),
                timestep_map: self.timestep_map.clone(),
                learn_sigma: self.learn_sigma,
                objective: self.objective,
            });
        }
        let respaced = Self::respaced(gpu, &self.schedule, steps, opts.ddim_eta.is_some())?;
        Ok(respaced
            .with_learned_variance(self.learn_sigma)
            .with_objective(self.objective))
    }

    /// The process of `schedule` sampled with `steps` of its timesteps (improved-diffusion's
    /// respacing: "ddimN" strides for DDIM, evenly spread counts otherwise); betas are
    /// recomputed from the kept alphas_cumprod.
    pub fn respaced(
        gpu: &Gpu,
        schedule: &Schedule,
        steps: usize,
        ddim: bool,
    ) -> Result<GaussianDiffusion, String> {
        let t_max = schedule.n_timesteps();
        if steps == 0 || steps > t_max {
            return Err(format!(
                "--steps must be between 1 and the trained {t_max} timesteps, got {steps}"
            ));
        }
        let spec = if ddim {
            format!("ddim{steps}")
        } else {
            steps.to_string()
        };
        let kept = super::respace::space_timesteps(t_max, &spec)?;
        let respaced = super::respace::respace(schedule, &kept);
        Ok(Self::with_map(
            gpu,
            respaced.schedule,
            respaced.timestep_map,
        ))
    }

    pub fn n_timesteps(&self) -> usize {
        self.schedule.n_timesteps()
    }

    /// L_simple = mean ||eps - eps_theta(x_t, t)||^2 (plus the VLB term when the variance is
    /// learned) with eps drawn on the GPU for `draws.step`, and t drawn there too (antithetic t
    /// pairs t with T - 1 - t) unless `draws.draw` brings host-drawn timesteps and their
    /// importance weights.
    pub fn training_losses(
        &self,
        cx: &mut Ctx,
        model: &dyn Denoiser,
        params: &[Var],
        x_start: &Tensor,
        draws: StepDraws,
    ) -> TrainingLoss {
        let StepDraws {
            seed,
            step,
            rows,
            antithetic,
            draw,
            classes,
        } = draws;
        let gpu = cx.gpu;
        let batch = x_start.shape[0];
        assert_eq!(rows.len, batch, "the rows of x_start");
        assert!(rows.first + rows.len <= rows.total, "{rows:?}");
        let row_range = rows.range();
        let timesteps = match draw {
            Some(d) => {
                assert_eq!(
                    rows,
                    BatchRows::whole(batch),
                    "host-drawn timesteps cover the batch"
                );
                d.timesteps.clone()
            }
            None => rng::timesteps_of_rows(
                gpu,
                row_range,
                rows.total,
                self.n_timesteps(),
                antithetic,
                seed,
                streams::for_step(step, streams::TIMESTEPS),
            ),
        };
        let per_row = x_start.numel() / batch;
        let mut noise = rng::normal_from(
            gpu,
            &x_start.shape,
            seed,
            streams::for_step(step, streams::NOISE),
            (rows.first * per_row) as u64,
        );
        let objective = self.objective;
        if objective.offset_noise != 0.0 {
            let key = (seed, streams::for_step(step, streams::OFFSET));
            let scale = objective.offset_noise as f32;
            noise = crate::ops::prediction::offset_noise(gpu, &noise, scale, key, rows.first);
        }
        let x_t = kernels::q_sample(gpu, &self.table, x_start, &noise, &timesteps);
        let x_var = cx.constant(x_t.clone());
        let dropout = crate::nn::DropoutKey {
            seed,
            stream: streams::for_step(step, streams::DROPOUT),
            first_row: rows.first,
        };
        let cond = Conditioning {
            timesteps: &timesteps,
            classes,
            dropout: Some(dropout),
        };
        let out = model.forward(cx, params, &x_var, cond);
        let (eps, v) = if self.learn_sigma {
            let (eps, v) = Self::split_output(cx, &out, &x_start.shape);
            (eps, Some(v))
        } else {
            (out, None)
        };
        // L_simple against the prediction's target, weighted per sample by min-SNR and when t
        // was importance-sampled.
        let target = objective.target(gpu, &self.table, x_start, &noise, &timesteps);
        let weights =
            objective.loss_weights(gpu, &self.table, &timesteps, draw.map(|d| &d.weights));
        let (simple, per_sample_simple) = match weights {
            Some(w) => {
                let (simple, per_sample) = loss::weighted_mse_var(cx, &eps, &target, &w);
                (simple, draw.map(|_| per_sample))
            }
            None => (loss::mse_var(cx, &eps, &target), None),
        };
        let Some(v) = v else {
            return TrainingLoss {
                loss: simple,
                timesteps,
                noise,
                x_t,
                per_sample_losses: per_sample_simple,
            };
        };
        // IDDPM's hybrid loss: L_simple on the noise channels plus (T / 1000) L_vlb, whose
        // gradient reaches only the variance channels (the noise enters as a constant).
        let inputs = crate::ops::vlb::VlbInputs {
            table: self.table.clone(),
            x_start: x_start.clone(),
            x_t: x_t.clone(),
            eps: model_eps(
                gpu,
                objective.prediction,
                &self.table,
                &x_t,
                &eps.tensor,
                &timesteps,
            ),
            timesteps: timesteps.clone(),
            continuous: x_start.shape.len() == 2,
        };
        let scale = crate::diffusion::host::hybrid_vb_scale(self.n_timesteps()) as f32;
        let (vb, per_sample_losses) = match (draw, per_sample_simple) {
            (Some(d), Some(per_sample)) => {
                let (vb, per_sample_vb) =
                    crate::ops::vlb::weighted_vb_loss_var(cx, inputs, &v, scale, &d.weights);
                let total = crate::ops::arith::add(gpu, &per_sample, &per_sample_vb);
                (vb, Some(total))
            }
            _ => (crate::ops::vlb::vb_loss_var(cx, inputs, &v, scale), None),
        };
        let loss = crate::ops::arith::add_var(cx, &simple, &vb);
        TrainingLoss {
            loss,
            timesteps,
            noise,
            x_t,
            per_sample_losses,
        }
    }

    /// The reverse chain from x_T ~ N(0, I) to x_0 with the weights in `weights`; returns x_0
    /// and, when `chain.keep_every` is set, x_t for t = T, then every keep_every-th step, then
    /// x_0. Runs to the end whatever Ctrl-C says (the training loop's sample grids: the loop
    /// stops after them).
    pub fn p_sample_loop(
        &self,
        gpu: &Gpu,
        model: &dyn Denoiser,
        weights: &Tensor,
        shape: &[usize],
        chain: ChainOptions,
    ) -> (Tensor, Vec<Tensor>) {
        self.chain(gpu, model, weights, shape, chain, false)
            .expect("a chain that ignores Ctrl-C finishes")
    }

    /// `p_sample_loop`, stopped at the first step boundary after Ctrl-C (crate::interrupt):
    /// None then, once the steps already submitted have finished.
    pub fn p_sample_loop_interruptible(
        &self,
        gpu: &Gpu,
        model: &dyn Denoiser,
        weights: &Tensor,
        shape: &[usize],
        chain: ChainOptions,
    ) -> Option<(Tensor, Vec<Tensor>)> {
        self.chain(gpu, model, weights, shape, chain, true)
    }

    fn chain(
        &self,
        gpu: &Gpu,
        model: &dyn Denoiser,
        weights: &Tensor,
        shape: &[usize],
        chain: ChainOptions,
        interruptible: bool,
    ) -> Option<(Tensor, Vec<Tensor>)> {
        let (keep_every, progress) = (chain.keep_every, chain.progress);
        let mut reverse = ReverseChain::new(self, gpu, model, weights, shape, &chain);
        let mut frames = Vec::new();
        if keep_every.is_some() {
            frames.push(reverse.x().clone());
        }
        let mut in_flight = None;
        while let Some(t) = reverse.next_t() {
            if interruptible && crate::interrupt::requested() {
                gpu.wait();
                return None;
            }
            reverse.step(gpu);
            if let Some(every) = keep_every {
                if t % every == 0 {
                    frames.push(reverse.x().clone());
                }
            }
            // A chain with a bar, or one Ctrl-C may stop, submits every step and waits for the
            // step before this one: one step stays queued, so the GPU does not idle while the
            // host records the next, and the host sees Ctrl-C within a step of the GPU.
            if progress.is_some() || interruptible {
                gpu.submit();
                if let Some(previous) = std::mem::replace(&mut in_flight, gpu.last_submission()) {
                    gpu.wait_for(previous);
                    if let Some(bar) = progress {
                        bar.inc(1);
                    }
                }
            }
        }
        if let Some(bar) = progress {
            gpu.wait();
            bar.inc(1);
        }
        Some((reverse.into_x(), frames))
    }
}

/// The reverse chain recorded one step at a time, from x_T ~ N(0, I) to x_0: `p_sample_loop`
/// runs it to the end; a caller that shows every frame (the browser page) reads x between
/// steps.
pub struct ReverseChain<'a> {
    diffusion: &'a GaussianDiffusion,
    model: &'a dyn Denoiser,
    weights: &'a Tensor,
    shape: Vec<usize>,
    opts: PSampleOptions,
    seed: u32,
    /// The noise index of this chain's first element within the whole draw.
    first: u64,
    guided: Option<GuidedClasses>,
    dpm_solver: Option<super::dpm_solver::DpmSolver>,
    x: Tensor,
    /// The steps not yet recorded: the next one is t = remaining - 1.
    remaining: usize,
}

impl<'a> ReverseChain<'a> {
    /// x_T of the chain (`chain`'s seed, options, guidance and first sample; its frames and
    /// progress are the caller's).
    pub fn new(
        diffusion: &'a GaussianDiffusion,
        gpu: &Gpu,
        model: &'a dyn Denoiser,
        weights: &'a Tensor,
        shape: &[usize],
        chain: &ChainOptions,
    ) -> ReverseChain<'a> {
        let guided = chain
            .guidance
            .map(|g| GuidedClasses::new(gpu, model, g, shape[0], chain.first_sample));
        let per_sample: usize = shape[1..].iter().product();
        let first = chain.first_sample * per_sample as u64;
        ReverseChain {
            diffusion,
            model,
            weights,
            shape: shape.to_vec(),
            opts: chain.opts,
            seed: chain.seed,
            first,
            guided,
            dpm_solver: chain
                .opts
                .dpm_solver
                .then(super::dpm_solver::DpmSolver::default),
            x: rng::normal_from(gpu, shape, chain.seed, 0, first),
            remaining: diffusion.n_timesteps(),
        }
    }

    /// x_t after the steps recorded so far (x_T before the first, x_0 after the last).
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    pub fn into_x(self) -> Tensor {
        self.x
    }

    /// The (respaced) timestep the next `step` computes; None once x_0 is reached.
    pub fn next_t(&self) -> Option<usize> {
        self.remaining.checked_sub(1)
    }

    /// Records one reverse step x_t -> x_{t-1}; does nothing once x_0 is reached.
    pub fn step(&mut self, gpu: &Gpu) {
        let Some(t) = self.next_t() else { return };
        let (d, model, shape, opts) = (self.diffusion, self.model, &self.shape[..], self.opts);
        let x = &self.x;
        let mut cx = Ctx::no_grad(gpu);
        let params = model.layout().vars(&mut cx, self.weights, None);
        let out = match &self.guided {
            None => {
                let timesteps = kernels::fill_timesteps(gpu, shape[0], d.timestep_map[t]);
                let x_var = cx.constant(x.clone());
                model.forward(&mut cx, &params, &x_var, Conditioning::at(&timesteps))
            }
            Some(g) => g.forward(&mut cx, model, &params, x, d.timestep_map[t]),
        };
        let noise = kernels::NoiseKey {
            seed: self.seed,
            stream: streams::sampling_step(t),
            first: self.first,
        };
        let (eps, v) = if d.learn_sigma {
            let (eps, v) = GaussianDiffusion::split_output(&mut cx, &out, shape);
            (eps, Some(v.tensor))
        } else {
            (out, None)
        };
        let step = kernels::ReverseStep { t, noise };
        let rows = kernels::fill_timesteps(gpu, shape[0], t);
        let table = &d.table;
        let eps = &model_eps(gpu, d.objective.prediction, table, x, &eps.tensor, &rows);
        let next = match (opts.ddim_eta, v) {
            _ if self.dpm_solver.is_some() => {
                let solver = self.dpm_solver.as_mut().expect("checked");
                let s = &d.schedule;
                solver.step(gpu, s, table, x, eps, &rows, t, opts.clip_denoised)
            }
            (None, Some(v)) => {
                kernels::p_sample_learned(gpu, table, x, eps, &v, step, opts.clip_denoised)
            }
            (None, None) => kernels::p_sample(gpu, table, x, eps, step, opts),
            (Some(eta), _) => kernels::ddim_step(gpu, table, x, eps, step, eta, opts.clip_denoised),
        };
        self.x = next;
        self.remaining = t;
    }
}
