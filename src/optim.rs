//! Training state over flat buffers: weights, gradients, Adam moments and the EMA of the
//! weights, with the per-step update (global-norm clipping, Adam with linear warm-up, EMA).

use crate::gpu::Gpu;
use crate::nn::ParamLayout;
use crate::ops::optim as kernels;
use crate::tensor::Tensor;

/// Adam's hyperparameters; defined with the update kernel that reads them.
pub use crate::ops::optim::AdamConfig;

#[derive(Clone, Copy, Debug)]
pub struct OptimConfig {
    pub adam: AdamConfig,
    /// Steps of linear learning-rate warm-up from 0 (0 disables it).
    pub warmup_steps: u64,
    pub ema_decay: f64,
}

impl OptimConfig {
    /// The learning rate at 1-based `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            self.adam.lr
        } else {
            self.adam.lr * (step as f64 / self.warmup_steps as f64).min(1.0)
        }
    }
}

pub struct TrainState {
    pub params: Tensor,
    pub grads: Tensor,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    pub ema: Tensor,
    /// Steps taken so far.
    pub step: u64,
    /// Norm of the last gradient before clipping (on the GPU).
    pub last_grad_norm: Tensor,
}

/// The host copies of a training state, as stored in a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HostState {
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub ema: Vec<f32>,
    pub step: u64,
}

impl TrainState {
    /// Fresh state: weights from the layout's init, zero moments, EMA equal to the weights.
    pub fn new(gpu: &Gpu, layout: &ParamLayout, seed: u64) -> TrainState {
        let init = layout.init(seed);
        let zeros = vec![0.0; init.len()];
        TrainState::from_host(
            gpu,
            &HostState {
                params: init.clone(),
                exp_avg: zeros.clone(),
                exp_avg_sq: zeros,
                ema: init,
                step: 0,
            },
        )
    }

    pub fn from_host(gpu: &Gpu, host: &HostState) -> TrainState {
        let n = host.params.len();
        TrainState {
            params: gpu.upload(&host.params, &[n]),
            grads: gpu.zeros(&[n]),
            exp_avg: gpu.upload(&host.exp_avg, &[n]),
            exp_avg_sq: gpu.upload(&host.exp_avg_sq, &[n]),
            ema: gpu.upload(&host.ema, &[n]),
            step: host.step,
            last_grad_norm: gpu.zeros(&[1]),
        }
    }

    pub fn to_host(&self, gpu: &Gpu) -> HostState {
        HostState {
            params: gpu.read(&self.params),
            exp_avg: gpu.read(&self.exp_avg),
            exp_avg_sq: gpu.read(&self.exp_avg_sq),
            ema: gpu.read(&self.ema),
            step: self.step,
        }
    }

    /// Records the update from the gradients now in `grads`: norm, clipped Adam, EMA.
    pub fn apply_gradients(&mut self, gpu: &Gpu, cfg: &OptimConfig) {
        self.step += 1;
        self.last_grad_norm = kernels::grad_norm(gpu, &self.grads);
        let tensors = kernels::AdamTensors {
            param: &self.params,
            grad: &self.grads,
            grad_norm: &self.last_grad_norm,
            exp_avg: &self.exp_avg,
            exp_avg_sq: &self.exp_avg_sq,
        };
        kernels::adam_step(gpu, &cfg.adam, cfg.lr_at(self.step), self.step, tensors);
        kernels::ema_update(gpu, &self.ema, &self.params, cfg.ema_decay);
    }
}
