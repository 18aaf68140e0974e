//! One DDIM step (improved-diffusion's `ddim_sample`, eq. 12 of the DDIM paper) for one element,
//! in f64: the twin of the DDIM sampling kernel.
//!
//! The step reads only alpha_bar_t = alphas_cumprod[t] and alpha_bar_prev = alphas_cumprod_prev[t]
//! of the schedule being sampled, which for fewer steps is the respaced one
//! (`diffusion::respace`): index t runs over the kept steps, and the model is called with
//! `timestep_map[t]`. With eta = 1 the step is the DDPM ancestral step with the posterior
//! ("fixed small") variance; with eta = 0 it is deterministic.

/// x_{t-1} from x_t, the predicted eps and a standard normal `noise`:
/// ```text
/// pred_xstart = sqrt(1 / abar_t) * x_t - sqrt(1 / abar_t - 1) * eps
/// if clip_denoised: pred_xstart = clamp(pred_xstart, -1, 1)
/// eps' = (sqrt(1 / abar_t) * x_t - pred_xstart) / sqrt(1 / abar_t - 1)
/// sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)
/// mean_pred = pred_xstart * sqrt(abar_prev) + sqrt(max(1 - abar_prev - sigma^2, 0)) * eps'
/// x_{t-1} = mean_pred + sigma * noise
/// ```
/// eps is re-derived from pred_xstart as improved-diffusion does (so clipping also changes the
/// direction term; without clipping eps' = eps up to rounding). The `max(.., 0)` only guards the
/// rounding at eta = 1, where 1 - abar_prev - sigma^2 = (1 - abar_prev)^2 abar_t /
/// ((1 - abar_t) abar_prev) is small but not negative. At the last step abar_prev = 1 exactly
/// (alphas_cumprod_prev[0]), so sigma = 0 and the result is pred_xstart: no noise is added there,
/// which is improved-diffusion's `nonzero_mask` without a separate test on t.
pub fn ddim_step(
    x_t: f64,
    eps: f64,
    alpha_bar_t: f64,
    alpha_bar_prev: f64,
    eta: f64,
    noise: f64,
    clip_denoised: bool,
) -> f64 {
    let sqrt_recip = (1.0 / alpha_bar_t).sqrt();
    let sqrt_recipm1 = (1.0 / alpha_bar_t - 1.0).sqrt();
    let mut pred_xstart = sqrt_recip * x_t - sqrt_recipm1 * eps;
    if clip_denoised {
        pred_xstart = pred_xstart.clamp(-1.0, 1.0);
    }
    let eps = (sqrt_recip * x_t - pred_xstart) / sqrt_recipm1;
    let sigma = eta
        * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)).sqrt()
        * (1.0 - alpha_bar_t / alpha_bar_prev).sqrt();
    let mean_pred = pred_xstart * alpha_bar_prev.sqrt()
        + (1.0 - alpha_bar_prev - sigma * sigma).max(0.0).sqrt() * eps;
    mean_pred + sigma * noise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_step_returns_pred_xstart_whatever_the_noise() {
        let (abar, x_t, eps) = (0.9, 0.3, 0.2);
        let pred = (x_t - (1.0f64 - abar).sqrt() * eps) / abar.sqrt();
        for (eta, noise) in [(0.0, 5.0), (1.0, -3.0)] {
            let got = ddim_step(x_t, eps, abar, 1.0, eta, noise, false);
            assert!((got - pred).abs() < 1e-12, "eta {eta}: {got} vs {pred}");
        }
    }
}
