//! The host-side (f64) diffusion maths that production needs besides the GPU kernels: q_sample
//! for the toy's GIF frames, the prior term L_T and its KL for `ddpm eval`, and the factor of the
//! hybrid loss. The CPU reference (`cpu::diffusion`, `cpu::vlb`) re-exports these.

use std::f64::consts::LN_2;

use crate::diffusion::schedule::Schedule;

/// x_t = sqrt(alphas_cumprod[t]) x_start + sqrt(1 - alphas_cumprod[t]) noise, per sample.
pub fn q_sample(s: &Schedule, x_start: &[f64], noise: &[f64], timesteps: &[u32]) -> Vec<f64> {
    let per_sample = x_start.len() / timesteps.len();
    (0..x_start.len())
        .map(|i| {
            let t = timesteps[i / per_sample] as usize;
            s.sqrt_alphas_cumprod[t] * x_start[i] + s.sqrt_one_minus_alphas_cumprod[t] * noise[i]
        })
        .collect()
}

/// The factor improved-diffusion's RESCALED_MSE puts on the per-t vb term: num_timesteps / 1000
/// (see `cpu::vlb`'s module doc for why this is lambda = 0.001 on the full bound).
pub fn hybrid_vb_scale(num_timesteps: usize) -> f64 {
    num_timesteps as f64 / 1000.0
}

/// KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats:
/// 0.5 * (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 * exp(-logvar2)).
pub fn normal_kl(mean1: f64, logvar1: f64, mean2: f64, logvar2: f64) -> f64 {
    0.5 * (-1.0 + logvar2 - logvar1
        + (logvar1 - logvar2).exp()
        + (mean1 - mean2) * (mean1 - mean2) * (-logvar2).exp())
}

/// `_prior_bpd`: KL(q(x_T | x_0) || N(0, 1)) in bits, mean over the given elements of one sample:
/// normal_kl(sqrt_alphas_cumprod[T-1] * x, log_one_minus_alphas_cumprod[T-1], 0, 0) / ln 2.
/// It does not depend on the model; it is the L_T term of the NLL.
pub fn prior_bpd(s: &Schedule, x_start: &[f64]) -> f64 {
    let last = s.n_timesteps() - 1;
    let (scale, logvar) = (
        s.sqrt_alphas_cumprod[last],
        s.log_one_minus_alphas_cumprod[last],
    );
    x_start
        .iter()
        .map(|&x| normal_kl(scale * x, logvar, 0.0, 0.0))
        .sum::<f64>()
        / x_start.len() as f64
        / LN_2
}
