//! q_sample and the p_sample step, element by element, from the f64 schedule tables.

use crate::diffusion::schedule::Schedule;

pub use crate::diffusion::host::q_sample;
pub use crate::diffusion::VarianceKind;

/// One reverse step x_t -> x_{t-1} given the predicted noise and standard normal `z`.
pub fn p_sample(
    s: &Schedule,
    x_t: &[f64],
    eps: &[f64],
    z: &[f64],
    t: usize,
    clip_denoised: bool,
    variance: VarianceKind,
) -> Vec<f64> {
    (0..x_t.len())
        .map(|i| {
            let mut pred_xstart =
                s.sqrt_recip_alphas_cumprod[t] * x_t[i] - s.sqrt_recipm1_alphas_cumprod[t] * eps[i];
            if clip_denoised {
                pred_xstart = pred_xstart.clamp(-1.0, 1.0);
            }
            let mean = s.posterior_mean_coef1[t] * pred_xstart + s.posterior_mean_coef2[t] * x_t[i];
            if t == 0 {
                return mean;
            }
            let var = match variance {
                VarianceKind::Beta => s.betas[t],
                VarianceKind::Posterior => s.posterior_variance[t],
            };
            mean + var.sqrt() * z[i]
        })
        .collect()
}
