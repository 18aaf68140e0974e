//! The twin of shaders/prediction.wgsl in f64: conversions between prediction targets, the
//! training target, min-SNR weights and offset noise. With abar = alphas_cumprod[t]:
//! x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and v = sqrt(abar) eps - sqrt(1 - abar) x0.

use crate::diffusion::prediction::Prediction;
use crate::diffusion::schedule::Schedule;

fn row(timesteps: &[u32], n: usize, i: usize) -> usize {
    timesteps[i / (n / timesteps.len())] as usize
}

/// eps from the model output `y` (a `prediction`) at x_t.
pub fn to_eps(
    s: &Schedule,
    prediction: Prediction,
    x_t: &[f64],
    y: &[f64],
    timesteps: &[u32],
) -> Vec<f64> {
    (0..x_t.len())
        .map(|i| {
            let t = row(timesteps, x_t.len(), i);
            match prediction {
                Prediction::Eps => y[i],
                Prediction::X0 => {
                    (s.sqrt_recip_alphas_cumprod[t] * x_t[i] - y[i])
                        / s.sqrt_recipm1_alphas_cumprod[t]
                }
                Prediction::V => {
                    s.sqrt_alphas_cumprod[t] * y[i] + s.sqrt_one_minus_alphas_cumprod[t] * x_t[i]
                }
            }
        })
        .collect()
}

/// x_0 from the model output `y` at x_t, clamped to [-1, 1] when `clip`.
pub fn to_x0(
    s: &Schedule,
    prediction: Prediction,
    x_t: &[f64],
    y: &[f64],
    timesteps: &[u32],
    clip: bool,
) -> Vec<f64> {
    (0..x_t.len())
        .map(|i| {
            let t = row(timesteps, x_t.len(), i);
            let x0 = match prediction {
                Prediction::Eps => {
                    s.sqrt_recip_alphas_cumprod[t] * x_t[i]
                        - s.sqrt_recipm1_alphas_cumprod[t] * y[i]
                }
                Prediction::X0 => y[i],
                Prediction::V => {
                    s.sqrt_alphas_cumprod[t] * x_t[i] - s.sqrt_one_minus_alphas_cumprod[t] * y[i]
                }
            };
            if clip {
                x0.clamp(-1.0, 1.0)
            } else {
                x0
            }
        })
        .collect()
}

/// The training target of `prediction` for x_start and its noise.
pub fn target(
    s: &Schedule,
    prediction: Prediction,
    x_start: &[f64],
    noise: &[f64],
    timesteps: &[u32],
) -> Vec<f64> {
    (0..x_start.len())
        .map(|i| {
            let t = row(timesteps, x_start.len(), i);
            match prediction {
                Prediction::Eps => noise[i],
                Prediction::X0 => x_start[i],
                Prediction::V => {
                    s.sqrt_alphas_cumprod[t] * noise[i]
                        - s.sqrt_one_minus_alphas_cumprod[t] * x_start[i]
                }
            }
        })
        .collect()
}

/// Hang et al. 2023: the loss weight that turns each target's MSE into min(snr, gamma) times the
/// x0 MSE, snr = abar / (1 - abar) (eps MSE = snr x0 MSE; v MSE = (snr + 1) x0 MSE).
pub fn min_snr_weights(
    s: &Schedule,
    prediction: Prediction,
    timesteps: &[u32],
    gamma: f64,
) -> Vec<f64> {
    timesteps
        .iter()
        .map(|&t| {
            let abar = s.alphas_cumprod[t as usize];
            let snr = abar / (1.0 - abar);
            let clipped = snr.min(gamma);
            match prediction {
                Prediction::Eps => clipped / snr,
                Prediction::X0 => clipped,
                Prediction::V => clipped / (snr + 1.0),
            }
        })
        .collect()
}

/// noise [n, c, rest] plus scale times `offsets[b * c + ch]`, one standard normal per (sample,
/// channel).
pub fn offset_noise(noise: &[f64], offsets: &[f64], channel_elems: usize, scale: f64) -> Vec<f64> {
    noise
        .iter()
        .enumerate()
        .map(|(i, z)| z + scale * offsets[i / channel_elems])
        .collect()
}
