//! What the model predicts (improved-diffusion's ModelMeanType, diffusers' prediction_type): the
//! noise eps, the clean data x0, or the velocity v = sqrt(abar) eps - sqrt(1 - abar) x0. Training
//! regresses the chosen target; everything downstream (every sampler, the VLB of the hybrid loss
//! and of `ddpm eval`) converts the output to eps once, right after the forward, and runs as for
//! eps prediction.

use crate::gpu::Gpu;
use crate::ops::prediction as kernels;
use crate::tensor::Tensor;

/// The model's regression target; defined with the kernels that read it.
pub use crate::ops::prediction::Prediction;

/// The model's eps from its output `y` at x_t, for each sample at table row timesteps[b]; the
/// output itself for eps prediction (no dispatch).
pub fn model_eps(
    gpu: &Gpu,
    prediction: Prediction,
    table: &Tensor,
    x_t: &Tensor,
    y: &Tensor,
    timesteps: &Tensor,
) -> Tensor {
    match prediction {
        Prediction::Eps => y.clone(),
        _ => kernels::to_eps(gpu, prediction, table, x_t, y, timesteps),
    }
}

/// What training regresses and how it weighs and noises it: the prediction target, Hang et al.
/// 2023's min-SNR-gamma loss weight (None: every t weighs 1), and the scale of the offset noise
/// (one normal per sample and channel added to eps; 0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Objective {
    pub prediction: Prediction,
    pub min_snr_gamma: Option<f64>,
    pub offset_noise: f64,
}

impl Objective {
    /// The training target for x_start noised with `noise` at `timesteps` (the noise itself for
    /// eps prediction, without a dispatch).
    pub fn target(
        &self,
        gpu: &Gpu,
        table: &Tensor,
        x_start: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Tensor {
        match self.prediction {
            Prediction::Eps => noise.clone(),
            p => kernels::target(gpu, p, table, x_start, noise, timesteps),
        }
    }

    /// The per-sample loss weights: min-SNR's times the importance weights, either alone, or
    /// None when neither applies.
    pub fn loss_weights(
        &self,
        gpu: &Gpu,
        table: &Tensor,
        timesteps: &Tensor,
        importance: Option<&Tensor>,
    ) -> Option<Tensor> {
        let snr = self.min_snr_gamma.map(|gamma| {
            kernels::min_snr_weights(gpu, self.prediction, table, timesteps, gamma as f32)
        });
        match (snr, importance) {
            (Some(s), Some(w)) => Some(crate::ops::arith::mul(gpu, &s, w)),
            (Some(s), None) => Some(s),
            (None, w) => w.cloned(),
        }
    }
}
