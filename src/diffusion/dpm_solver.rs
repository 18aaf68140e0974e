//! DPM-Solver++(2M) (Lu et al. 2022), as diffusers' DPMSolverMultistepScheduler runs it
//! (algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint", final_sigmas_type
//! "zero"): a second-order multistep solver of the diffusion ODE in the data prediction x0, one
//! model call per step. Its timesteps are spread evenly in log-SNR by default (use_lu_lambdas;
//! respace::logsnr_timesteps), or evenly in t (diffusers' default "linspace", `timesteps` here)
//! with `--spacing uniform`: evenly in t, 20 steps of a 1000-step linear schedule leave the whole
//! last stretch (noise std 0.17 down to 0) to one step, too coarse for fine structure. The chain converts the
//! model's output to eps as for every sampler, and this module derives x0 from it.
//!
//! With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma), a step from s0
//! to t with h = lambda_t - lambda_s0 is
//! ```text
//! first order:  x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0
//! second order: x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0 - 0.5 alpha_t (e^-h - 1) D1
//! ```
//! with D0 = x0 of this step, D1 = (x0 - x0_prev) / r0, r0 = (lambda_s0 - lambda_s1) / h. The
//! first step has no x0_prev, and the last one goes to sigma = 0 (abar_prev = 1 in the respaced
//! table), where lambda is infinite: both are first order, and the last returns x0 itself.

use crate::diffusion::respace::{respace, Respaced};
use crate::diffusion::schedule::Schedule;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// The reverse process `ddpm sample --sampler` runs; spelled `ancestral`, `ddim` or `dpm++2m`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum Sampler {
    /// DDPM's ancestral steps (respaced when --steps is below T).
    #[default]
    #[serde(rename = "ancestral")]
    Ancestral,
    /// DDIM steps (--eta sets their noise).
    #[serde(rename = "ddim")]
    Ddim,
    /// DPM-Solver++(2M): deterministic, second order, good samples in 10-20 steps.
    #[serde(rename = "dpm++2m")]
    #[value(name = "dpm++2m")]
    DpmPp2m,
}

/// The trained timesteps DPM-Solver++ visits with `steps` model calls: diffusers' "linspace"
/// spacing, round(linspace(0, T - 1, steps + 1))[1:] (numpy rounds half to even), whose lowest
/// step then goes to the clean data. Duplicates (steps close to T) are dropped, so there may be
/// fewer.
pub fn timesteps(t_max: usize, steps: usize) -> Result<Vec<usize>, String> {
    if steps == 0 || steps > t_max {
        return Err(format!(
            "--steps must be between 1 and the trained {t_max} timesteps, got {steps}"
        ));
    }
    let stride = (t_max - 1) as f64 / steps as f64;
    let mut kept: Vec<usize> = (1..=steps)
        .map(|i| (i as f64 * stride).round_ties_even() as usize)
        .collect();
    kept.dedup();
    Ok(kept)
}

/// The respaced process over `timesteps(t_max, steps)`.
pub fn respaced(schedule: &Schedule, steps: usize) -> Result<Respaced, String> {
    Ok(respace(
        schedule,
        &timesteps(schedule.n_timesteps(), steps)?,
    ))
}

/// The scalars of one step; defined with the kernel that reads them.
pub use crate::ops::dpm_solver::StepCoefs;

fn lambda(abar: f64) -> f64 {
    0.5 * abar.ln() - 0.5 * (1.0 - abar).ln()
}

/// The step at row t of `s` (the respaced schedule): from alphas_cumprod[t] to
/// alphas_cumprod_prev[t], second order with the previous step's x0 (row t + 1) when
/// `second_order`. Expanded from the module doc's formula with D1 = (x0 - x0_prev) / r0;
/// e^-h - 1 is expm1(-h), which stays exact at h = infinity (the last step).
pub fn step_coefs(s: &Schedule, t: usize, second_order: bool) -> StepCoefs {
    let (abar_s0, abar_t) = (s.alphas_cumprod[t], s.alphas_cumprod_prev[t]);
    let (alpha_t, sigma_t, sigma_s0) =
        (abar_t.sqrt(), (1.0 - abar_t).sqrt(), (1.0 - abar_s0).sqrt());
    let h = lambda(abar_t) - lambda(abar_s0);
    let first = -alpha_t * (-h).exp_m1();
    if !second_order {
        return StepCoefs {
            x: sigma_t / sigma_s0,
            d0: first,
            d1: 0.0,
        };
    }
    let r0 = (lambda(abar_s0) - lambda(s.alphas_cumprod[t + 1])) / h;
    StepCoefs {
        x: sigma_t / sigma_s0,
        d0: first * (1.0 + 0.5 / r0),
        d1: -first * 0.5 / r0,
    }
}

/// The solver's state along one chain: the previous step's x0.
#[derive(Default)]
pub struct DpmSolver {
    prev_x0: Option<Tensor>,
}

impl DpmSolver {
    /// One step at row t of the respaced `schedule` (uploaded as `table`) from x_t and the
    /// model's eps; `rows` holds t for each sample. x0 is clipped to [-1, 1] when `clip`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        gpu: &Gpu,
        schedule: &Schedule,
        table: &Tensor,
        x: &Tensor,
        eps: &Tensor,
        rows: &Tensor,
        t: usize,
        clip: bool,
    ) -> Tensor {
        use crate::diffusion::prediction::Prediction;
        let x0 = crate::ops::prediction::to_x0(gpu, Prediction::Eps, table, x, eps, rows, clip);
        let second_order = self.prev_x0.is_some() && t > 0;
        let coefs = step_coefs(schedule, t, second_order);
        let prev = match (&self.prev_x0, second_order) {
            (Some(prev), true) => prev,
            _ => &x0,
        };
        let out = crate::ops::dpm_solver::step(gpu, x, &x0, prev, coefs);
        self.prev_x0 = Some(x0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::BetaSchedule;

    #[test]
    fn timesteps_follow_diffusers_linspace() {
        // diffusers: np.linspace(0, 999, 11).round()[::-1][:-1] for 10 steps of 1000.
        assert_eq!(
            timesteps(1000, 10).unwrap(),
            vec![100, 200, 300, 400, 500, 599, 699, 799, 899, 999]
        );
        assert_eq!(timesteps(100, 100).unwrap().len(), 99);
        assert!(timesteps(100, 0).is_err() && timesteps(100, 101).is_err());
    }

    #[test]
    fn last_step_returns_x0_and_first_order_matches_ddim() {
        let s = respaced(&Schedule::new(BetaSchedule::Linear, 1000), 10)
            .unwrap()
            .schedule;
        let last = step_coefs(&s, 0, false);
        assert_eq!((last.x, last.d0, last.d1), (0.0, 1.0, 0.0));
        // First-order DPM-Solver++ is deterministic DDIM: x_t = sqrt(abar_t) x0 + sigma_t eps,
        // with eps = (x - sqrt(abar_s) x0) / sigma_s.
        let t = 5;
        let c = step_coefs(&s, t, false);
        let (a_s, a_t) = (s.alphas_cumprod[t], s.alphas_cumprod_prev[t]);
        let ddim_d0 = a_t.sqrt() - (1.0 - a_t).sqrt() * a_s.sqrt() / (1.0 - a_s).sqrt();
        assert!((c.d0 - ddim_d0).abs() < 1e-12, "{} vs {ddim_d0}", c.d0);
    }
}
