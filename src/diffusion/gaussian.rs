//! The diffusion process on the GPU, named after improved-diffusion's GaussianDiffusion:
//! `training_losses` (q_sample, the model, L_simple) and `p_sample_loop` (the reverse chain).

use crate::autograd::{Ctx, Var};
use crate::diffusion::Schedule;
use crate::gpu::Gpu;
use crate::nn::Denoiser;
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
}

/// What one training step drew and computed, for tests and logging.
pub struct TrainingLoss {
    pub loss: Var,
    pub timesteps: Tensor,
    pub noise: Tensor,
    pub x_t: Tensor,
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
        }
    }

    /// The process to sample with under `opts`: this one, or its respaced version.
    pub fn for_sampling(
        &self,
        gpu: &Gpu,
        opts: &crate::ops::diffusion::PSampleOptions,
    ) -> Result<GaussianDiffusion, String> {
        let steps = opts.steps.unwrap_or(self.n_timesteps());
        if steps == self.n_timesteps() && opts.ddim_eta.is_none() {
            return Ok(GaussianDiffusion {
                schedule: self.schedule.clone(),
                table: self.table.clone(),
                timestep_map: self.timestep_map.clone(),
            });
        }
        Self::respaced(gpu, &self.schedule, steps, opts.ddim_eta.is_some())
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

    #[allow(clippy::too_many_arguments)]
    /// L_simple = mean ||eps - eps_theta(x_t, t)||^2 with t and eps drawn on the GPU for
    /// training step `step` (antithetic t pairs t with T - 1 - t).
    pub fn training_losses(
        &self,
        cx: &mut Ctx,
        model: &dyn Denoiser,
        params: &[Var],
        x_start: &Tensor,
        seed: u32,
        step: u64,
        antithetic: bool,
    ) -> TrainingLoss {
        let gpu = cx.gpu;
        let batch = x_start.shape[0];
        let timesteps = rng::timesteps(
            gpu,
            batch,
            self.n_timesteps(),
            antithetic,
            seed,
            streams::for_step(step, streams::TIMESTEPS),
        );
        let noise = rng::normal(
            gpu,
            &x_start.shape,
            seed,
            streams::for_step(step, streams::NOISE),
        );
        let x_t = kernels::q_sample(gpu, &self.table, x_start, &noise, &timesteps);
        let x_var = cx.constant(x_t.clone());
        let dropout = crate::nn::DropoutKey {
            seed,
            stream: streams::for_step(step, streams::DROPOUT),
        };
        let eps = model.forward(cx, params, &x_var, &timesteps, Some(dropout));
        let loss = loss::mse_var(cx, &eps, &noise);
        TrainingLoss {
            loss,
            timesteps,
            noise,
            x_t,
        }
    }

    /// The reverse chain from x_T ~ N(0, I) to x_0 with the weights in `weights`; returns x_0
    /// and, when `keep_every` is set, x_t for t = T, then every keep_every-th step, then x_0.
    #[allow(clippy::too_many_arguments)]
    pub fn p_sample_loop(
        &self,
        gpu: &Gpu,
        model: &dyn Denoiser,
        weights: &Tensor,
        shape: &[usize],
        opts: PSampleOptions,
        seed: u32,
        keep_every: Option<usize>,
    ) -> (Tensor, Vec<Tensor>) {
        let mut x = rng::normal(gpu, shape, seed, 0);
        let mut frames = Vec::new();
        let n_timesteps = self.n_timesteps();
        if keep_every.is_some() {
            frames.push(x.clone());
        }
        for t in (0..n_timesteps).rev() {
            let mut cx = Ctx::no_grad(gpu);
            let params = model.layout().vars(&mut cx, weights, None);
            let timesteps = kernels::fill_timesteps(gpu, shape[0], self.timestep_map[t]);
            let x_var = cx.constant(x.clone());
            let eps = model.forward(&mut cx, &params, &x_var, &timesteps, None);
            let stream = streams::sampling_step(t);
            x = match opts.ddim_eta {
                None => kernels::p_sample(gpu, &self.table, &x, &eps.tensor, t, opts, seed, stream),
                Some(eta) => kernels::ddim_step(
                    gpu,
                    &self.table,
                    &x,
                    &eps.tensor,
                    t,
                    eta,
                    opts.clip_denoised,
                    seed,
                    stream,
                ),
            };
            if let Some(every) = keep_every {
                if t % every == 0 {
                    frames.push(x.clone());
                }
            }
        }
        (x, frames)
    }
}
