//! The variational-bound terms of IDDPM (improved-diffusion's losses.py and `_vb_terms_bpd` of
//! gaussian_diffusion.py), element by element in f64, with the derivative with respect to the
//! learned-variance output `v`. This is the twin the hybrid-loss and NLL kernels are tested against.
//!
//! # Per-element VLB term (`_vb_terms_bpd` with the eps prediction frozen)
//! For one element with timestep t, data x_start, noised x_t, predicted eps (a constant here: the
//! hybrid loss stops its gradient) and variance output v (in [-1, 1] after training, not clamped),
//! with all tables indexed at t (natural logs throughout):
//! ```text
//! pred_xstart = sqrt_recip_alphas_cumprod * x_t - sqrt_recipm1_alphas_cumprod * eps   (no clip)
//! model_mean  = posterior_mean_coef1 * pred_xstart + posterior_mean_coef2 * x_t
//! frac        = (v + 1) / 2
//! model_log_variance = frac * ln(betas) + (1 - frac) * posterior_log_variance_clipped
//! true_mean   = posterior_mean_coef1 * x_start + posterior_mean_coef2 * x_t
//! true_log_variance  = posterior_log_variance_clipped
//! t > 0:  term = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance) / ln 2
//! t == 0: term = -discretized_gaussian_log_likelihood(x_start, model_mean,
//!                                                     0.5 * model_log_variance) / ln 2
//! ```
//! The per-sample L_t (improved-diffusion's `terms["vb"]` before rescaling) is the mean of `term`
//! over that sample's C*H*W elements, in bits. Note that seed 004's snippet takes `log2` of the
//! variances: improved-diffusion uses natural logs (the result goes through `exp`), and so do we.
//!
//! # Scaling of the hybrid loss (what improved-diffusion does, and what we do)
//! improved-diffusion's hybrid objective is `LossType.RESCALED_MSE` with `ModelVarType.LEARNED_RANGE`
//! (script_util's defaults use_kl=False and rescale_learned_sigmas=True, with --learn_sigma True). Its
//! `training_losses` computes, per sample b:
//! ```text
//! mse_b  = mean over elements of (eps - eps_pred)^2
//! vb_b   = _vb_terms_bpd(frozen eps_pred, v)      (mean over elements of `term` above, in bits)
//! vb_b  *= num_timesteps / 1000.0                 (only for RESCALED_MSE)
//! loss_b = mse_b + vb_b
//! ```
//! and train_util then minimises `mean_b(loss_b * weights_b)`, where weights_b = 1 / (T p_t) from
//! the timestep sampler (all 1 for uniform sampling). The paper writes L_hybrid = L_simple +
//! lambda * L_vlb with lambda = 0.001 and L_vlb = L_0 + ... + L_T. With t drawn uniformly,
//! T * L_t is an unbiased one-sample estimate of L_0 + ... + L_{T-1} (L_T does not depend on the
//! model), so lambda * L_vlb is estimated by 0.001 * T * L_t = (T / 1000) * L_t: the code's factor
//! is exactly lambda = 0.001 applied to the full bound in bits, with the factor T folded in.
//!
//! We follow improved-diffusion: a kernel computing the hybrid loss must form, per sample,
//! `loss_b = mse_b + hybrid_vb_scale(T) * mean_elements(vb_term_elementwise)`, with T the number
//! of timesteps of the process being trained (not of a respaced sampler), so T = 1000 gives a
//! factor of 1 and T = 4000 a factor of 4. The gradient with respect to one element of v is then
//! `weights_b / B * hybrid_vb_scale(T) / n_elements_per_sample * vb_term_elementwise_dv`; the
//! eps channels get only the MSE gradient. (Plain `LossType.MSE` would use a factor of 1 instead,
//! which is lambda = 1/T; `RESCALED_KL`, the pure-VLB objective, uses T.) The per-sample loss fed to
//! the loss-aware timestep sampler is the unweighted `loss_b`, as train_util does.

use std::f64::consts::{LN_2, PI};

use crate::diffusion::schedule::Schedule;

pub use crate::diffusion::host::{hybrid_vb_scale, normal_kl, prior_bpd};

/// Half-width of one of the 256 bins of uint8 data scaled to [-1, 1] (bins are 2/255 wide).
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;
/// Logs of probabilities are clamped here, as in losses.py, so an improbable pixel costs a finite
/// ~39.9 bits instead of infinity.
pub const LOG_CLAMP: f64 = 1e-12;

/// d normal_kl / d logvar2 = 0.5 * (1 - exp(logvar1 - logvar2) - (mean1 - mean2)^2 exp(-logvar2)).
pub fn normal_kl_dlogvar2(mean1: f64, logvar1: f64, mean2: f64, logvar2: f64) -> f64 {
    0.5 * (1.0 - (logvar1 - logvar2).exp() - (mean1 - mean2) * (mean1 - mean2) * (-logvar2).exp())
}

/// sqrt(2 / pi), the tanh approximation's scale.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CDF_CUBIC: f64 = 0.044715;

/// losses.py's fast standard normal CDF: 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
/// Kept instead of erf so the bits match improved-diffusion's reported numbers, and because WGSL
/// has tanh but no erf.
pub fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + (SQRT_2_OVER_PI * (x + CDF_CUBIC * x * x * x)).tanh())
}

/// Derivative of `approx_standard_normal_cdf`:
/// 0.5 * (1 - tanh(u)^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2), u = sqrt(2/pi) (x + 0.044715 x^3).
pub fn approx_standard_normal_cdf_dx(x: f64) -> f64 {
    let th = (SQRT_2_OVER_PI * (x + CDF_CUBIC * x * x * x)).tanh();
    0.5 * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * CDF_CUBIC * x * x)
}

/// The pieces of the discretised likelihood that both the value and its derivative need.
struct Discretized {
    plus_in: f64,
    min_in: f64,
    cdf_plus: f64,
    cdf_min: f64,
}

fn discretized(x: f64, mean: f64, log_scale: f64) -> Discretized {
    let centered_x = x - mean;
    let inv_stdv = (-log_scale).exp();
    let plus_in = inv_stdv * (centered_x + BIN_HALF_WIDTH);
    let min_in = inv_stdv * (centered_x - BIN_HALF_WIDTH);
    Discretized {
        plus_in,
        min_in,
        cdf_plus: approx_standard_normal_cdf(plus_in),
        cdf_min: approx_standard_normal_cdf(min_in),
    }
}

/// log P(bin of x) in nats under N(mean, exp(log_scale)^2), x being uint8 data scaled to [-1, 1]
/// (losses.py's `discretized_gaussian_log_likelihood`; log_scale is the log standard deviation):
/// ```text
/// plus_in = (x - mean + 1/255) / exp(log_scale),  min_in = (x - mean - 1/255) / exp(log_scale)
/// x < -0.999: ln(max(cdf(plus_in), 1e-12))              (the lowest bin is open to -inf)
/// x >  0.999: ln(max(1 - cdf(min_in), 1e-12))           (the highest bin is open to +inf)
/// otherwise:  ln(max(cdf(plus_in) - cdf(min_in), 1e-12))
/// ```
/// with cdf = `approx_standard_normal_cdf`.
pub fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let d = discretized(x, mean, log_scale);
    if x < -0.999 {
        d.cdf_plus.max(LOG_CLAMP).ln()
    } else if x > 0.999 {
        (1.0 - d.cdf_min).max(LOG_CLAMP).ln()
    } else {
        (d.cdf_plus - d.cdf_min).max(LOG_CLAMP).ln()
    }
}

/// d discretized_gaussian_log_likelihood / d log_scale. Since d plus_in / d log_scale = -plus_in
/// (likewise min_in), with pdf = `approx_standard_normal_cdf_dx`:
/// ```text
/// x < -0.999: -pdf(plus_in) * plus_in / cdf(plus_in)
/// x >  0.999:  pdf(min_in) * min_in / (1 - cdf(min_in))
/// otherwise:  (min_in * pdf(min_in) - plus_in * pdf(plus_in)) / (cdf(plus_in) - cdf(min_in))
/// ```
/// and 0 where the clamp at 1e-12 is active (torch's clamp passes no gradient there).
pub fn discretized_gaussian_log_likelihood_dlog_scale(x: f64, mean: f64, log_scale: f64) -> f64 {
    let d = discretized(x, mean, log_scale);
    let pdf_plus = approx_standard_normal_cdf_dx(d.plus_in);
    let pdf_min = approx_standard_normal_cdf_dx(d.min_in);
    let (prob, dprob) = if x < -0.999 {
        (d.cdf_plus, -pdf_plus * d.plus_in)
    } else if x > 0.999 {
        (1.0 - d.cdf_min, pdf_min * d.min_in)
    } else {
        (
            d.cdf_plus - d.cdf_min,
            d.min_in * pdf_min - d.plus_in * pdf_plus,
        )
    };
    if prob < LOG_CLAMP {
        0.0
    } else {
        dprob / prob
    }
}

/// LEARNED_RANGE: frac * log_beta + (1 - frac) * posterior_log_variance_clipped, frac = (v + 1) / 2,
/// so v = 1 gives the DDPM "fixed large" variance beta_t and v = -1 the "fixed small" posterior
/// variance. Both logs are natural logs taken from the schedule of the process in use (a respaced
/// schedule brings its own, larger betas).
pub fn model_log_variance(v: f64, log_beta: f64, posterior_log_variance_clipped: f64) -> f64 {
    let frac = (v + 1.0) / 2.0;
    frac * log_beta + (1.0 - frac) * posterior_log_variance_clipped
}

/// d model_log_variance / d v = 0.5 * (log_beta - posterior_log_variance_clipped).
pub fn model_log_variance_dv(log_beta: f64, posterior_log_variance_clipped: f64) -> f64 {
    0.5 * (log_beta - posterior_log_variance_clipped)
}

/// The model's p(x_{t-1} | x_t) for one element (improved-diffusion's `p_mean_variance` for
/// EPSILON / LEARNED_RANGE with clip_denoised = false, as the training loss uses it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PMeanVariance {
    pub mean: f64,
    pub log_variance: f64,
    pub pred_xstart: f64,
}

/// See the module doc: pred_xstart from eps, mean through q_posterior_mean, learned-range variance.
pub fn p_mean_variance(s: &Schedule, t: usize, x_t: f64, eps: f64, v: f64) -> PMeanVariance {
    let pred_xstart = s.sqrt_recip_alphas_cumprod[t] * x_t - s.sqrt_recipm1_alphas_cumprod[t] * eps;
    PMeanVariance {
        mean: s.posterior_mean_coef1[t] * pred_xstart + s.posterior_mean_coef2[t] * x_t,
        log_variance: model_log_variance(v, s.betas[t].ln(), s.posterior_log_variance_clipped[t]),
        pred_xstart,
    }
}

/// One element's VLB term in bits (module doc): KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) / ln 2 for
/// t > 0, the discretised decoder NLL / ln 2 for t == 0.
pub fn vb_term_elementwise(
    s: &Schedule,
    t: usize,
    x_start: f64,
    x_t: f64,
    eps: f64,
    v: f64,
) -> f64 {
    let model = p_mean_variance(s, t, x_t, eps, v);
    if t == 0 {
        -discretized_gaussian_log_likelihood(x_start, model.mean, 0.5 * model.log_variance) / LN_2
    } else {
        let true_mean = s.posterior_mean_coef1[t] * x_start + s.posterior_mean_coef2[t] * x_t;
        normal_kl(
            true_mean,
            s.posterior_log_variance_clipped[t],
            model.mean,
            model.log_variance,
        ) / LN_2
    }
}

/// d vb_term_elementwise / d v (the mean does not depend on v), with
/// dlv = 0.5 * (ln(betas[t]) - posterior_log_variance_clipped[t]):
/// ```text
/// t > 0:  normal_kl_dlogvar2(true_mean, true_log_variance, model_mean, model_log_variance)
///           * dlv / ln 2
/// t == 0: -discretized_gaussian_log_likelihood_dlog_scale(x_start, model_mean,
///           0.5 * model_log_variance) * 0.5 * dlv / ln 2
/// ```
pub fn vb_term_elementwise_dv(
    s: &Schedule,
    t: usize,
    x_start: f64,
    x_t: f64,
    eps: f64,
    v: f64,
) -> f64 {
    let model = p_mean_variance(s, t, x_t, eps, v);
    let dlv = model_log_variance_dv(s.betas[t].ln(), s.posterior_log_variance_clipped[t]);
    if t == 0 {
        -discretized_gaussian_log_likelihood_dlog_scale(
            x_start,
            model.mean,
            0.5 * model.log_variance,
        ) * 0.5
            * dlv
            / LN_2
    } else {
        let true_mean = s.posterior_mean_coef1[t] * x_start + s.posterior_mean_coef2[t] * x_t;
        normal_kl_dlogvar2(
            true_mean,
            s.posterior_log_variance_clipped[t],
            model.mean,
            model.log_variance,
        ) * dlv
            / LN_2
    }
}

/// `_vb_terms_bpd`'s output: one L_t per sample (bits, mean over the sample's elements), for
/// contiguous samples of x_start.len() / timesteps.len() elements each.
pub fn vb_terms_bpd(
    s: &Schedule,
    x_start: &[f64],
    x_t: &[f64],
    eps: &[f64],
    v: &[f64],
    timesteps: &[u32],
) -> Vec<f64> {
    let per_sample = x_start.len() / timesteps.len();
    timesteps
        .iter()
        .enumerate()
        .map(|(b, &t)| {
            let range = b * per_sample..(b + 1) * per_sample;
            range
                .map(|i| vb_term_elementwise(s, t as usize, x_start[i], x_t[i], eps[i], v[i]))
                .sum::<f64>()
                / per_sample as f64
        })
        .collect()
}

/// Gradient of sum_b(vb_terms_bpd[b]) with respect to every element of v:
/// vb_term_elementwise_dv / elements per sample. Scale by the loss weights as the module doc says.
pub fn vb_terms_bpd_dv(
    s: &Schedule,
    x_start: &[f64],
    x_t: &[f64],
    eps: &[f64],
    v: &[f64],
    timesteps: &[u32],
) -> Vec<f64> {
    let per_sample = x_start.len() / timesteps.len();
    (0..x_start.len())
        .map(|i| {
            let t = timesteps[i / per_sample] as usize;
            vb_term_elementwise_dv(s, t, x_start[i], x_t[i], eps[i], v[i]) / per_sample as f64
        })
        .collect()
}

/// The negative log density in bits,
/// ```text
/// -log2 N(x; mean, exp(log_variance))
///     = 0.5 * (ln(2 pi) + log_variance + (x - mean)^2 exp(-log_variance)) / ln 2
/// ```
/// The t = 0 term of the NLL for continuous (2-D toy) data, where there are no bins: with `mean`
/// and `log_variance` from `p_mean_variance` at t = 0. Average it over dimensions for bits per
/// dimension. Being a density it can go negative.
pub fn gaussian_nll_bits(x: f64, mean: f64, log_variance: f64) -> f64 {
    0.5 * ((2.0 * PI).ln() + log_variance + (x - mean) * (x - mean) * (-log_variance).exp()) / LN_2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::BetaSchedule;

    #[test]
    fn kl_is_zero_for_identical_gaussians_and_positive_otherwise() {
        assert!(normal_kl(0.3, -1.2, 0.3, -1.2).abs() < 1e-15);
        assert!(normal_kl(0.3, -1.2, 0.4, -1.2) > 0.0);
        assert!(normal_kl(0.3, -1.2, 0.3, -1.0) > 0.0);
    }

    #[test]
    fn cdf_derivative_matches_central_differences() {
        for x in [-4.0, -1.3, -0.2, 0.0, 0.7, 2.5] {
            let h = 1e-5;
            let num =
                (approx_standard_normal_cdf(x + h) - approx_standard_normal_cdf(x - h)) / (2.0 * h);
            assert!(
                (num - approx_standard_normal_cdf_dx(x)).abs() < 1e-9,
                "x = {x}"
            );
        }
    }

    #[test]
    fn true_eps_and_posterior_variance_give_zero_kl() {
        // v = -1 is the posterior variance and the true eps recovers x_start: p equals q.
        let s = Schedule::new(BetaSchedule::Cosine, 100);
        let (x0, eps, t) = (0.4, -0.8, 37);
        let x_t = s.sqrt_alphas_cumprod[t] * x0 + s.sqrt_one_minus_alphas_cumprod[t] * eps;
        assert!(vb_term_elementwise(&s, t, x0, x_t, eps, -1.0).abs() < 1e-12);
        assert!(vb_term_elementwise(&s, t, x0, x_t, eps, 0.5) > 0.0);
    }
}
