//! Training state over flat buffers: weights, gradients, Adam moments and the EMA of the
//! weights, with the per-step update (global-norm clipping, Adam with linear warm-up and a
//! learning-rate decay, EMA with an optional warm-up). The learning rate and the EMA decay are
//! pure functions of the step, so a resumed run updates exactly as an uninterrupted one.

use crate::gpu::Gpu;
use crate::nn::ParamLayout;
use crate::ops::optim as kernels;
use crate::tensor::Tensor;

/// Adam's hyperparameters; defined with the update kernel that reads them.
pub use crate::ops::optim::AdamConfig;

/// The learning rate after the warm-up: held, or decayed to `lr_min` at the last step.
/// Spelled `constant`, `cosine` or `linear` in config.json and on the command line.
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
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The learning rate stays (DDPM, IDDPM).
    #[default]
    Constant,
    /// Half a cosine from the learning rate to lr_min (diffusers' cosine schedule).
    Cosine,
    /// A straight line from the learning rate to lr_min.
    Linear,
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
            LrSchedule::Linear => "linear",
        })
    }
}

/// diffusers' EMA warm-up: the decay at update k is 1 - (1 + k / inv_gamma)^-power, capped at
/// the configured decay, so early weights are not averaged into the EMA for thousands of
/// steps. inv_gamma 1 and power 3/4 reach 0.999 at about 10,000 steps, power 2/3 at 30,000.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaWarmup {
    pub inv_gamma: f64,
    pub power: f64,
}

impl Default for EmaWarmup {
    /// diffusers' train_unconditional defaults.
    fn default() -> EmaWarmup {
        EmaWarmup {
            inv_gamma: 1.0,
            power: 0.75,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct OptimConfig {
    pub adam: AdamConfig,
    /// Steps of linear learning-rate warm-up from 0 (0 disables it).
    pub warmup_steps: u64,
    pub lr_schedule: LrSchedule,
    /// Where a decaying schedule ends, at `total_steps`.
    pub lr_min: f64,
    /// The run's length, over which a decaying schedule runs.
    pub total_steps: u64,
    pub ema_decay: f64,
    pub ema_warmup: Option<EmaWarmup>,
}

impl OptimConfig {
    /// The learning rate at 1-based `step`: a linear warm-up to `adam.lr` over `warmup_steps`,
    /// then the schedule's value, which reaches `lr_min` at `total_steps`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let lr = self.adam.lr;
        if step < self.warmup_steps {
            return lr * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let factor = match self.lr_schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            LrSchedule::Linear => 1.0 - progress,
        };
        match self.lr_schedule {
            LrSchedule::Constant => lr,
            _ => self.lr_min + (lr - self.lr_min) * factor,
        }
    }

    /// The EMA decay of the update at 1-based `step`: `ema_decay`, or with a warm-up
    /// min(ema_decay, 1 - (1 + (step - 1) / inv_gamma)^-power), as diffusers' EMAModel (whose
    /// first update copies the weights: decay 0).
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        match self.ema_warmup {
            None => self.ema_decay,
            Some(w) => {
                let k = step.saturating_sub(1) as f64;
                let warm = 1.0 - (1.0 + k / w.inv_gamma).powf(-w.power);
                warm.clamp(0.0, self.ema_decay)
            }
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

impl HostState {
    /// The state of step 0: weights from the layout's init, zero moments, EMA equal to the
    /// weights.
    pub fn fresh(layout: &ParamLayout, seed: u64) -> HostState {
        let init = layout.init(seed);
        let zeros = vec![0.0; init.len()];
        HostState {
            params: init.clone(),
            exp_avg: zeros.clone(),
            exp_avg_sq: zeros,
            ema: init,
            step: 0,
        }
    }
}

impl TrainState {
    /// Fresh state: weights from the layout's init, zero moments, EMA equal to the weights.
    pub fn new(gpu: &Gpu, layout: &ParamLayout, seed: u64) -> TrainState {
        TrainState::from_host(gpu, &HostState::fresh(layout, seed))
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
        kernels::ema_update(gpu, &self.ema, &self.params, cfg.ema_decay_at(self.step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optim(lr_schedule: LrSchedule) -> OptimConfig {
        OptimConfig {
            adam: AdamConfig {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                max_norm: 1.0,
            },
            warmup_steps: 10,
            lr_schedule,
            lr_min: 1e-5,
            total_steps: 110,
            ema_decay: 0.999,
            ema_warmup: None,
        }
    }

    #[test]
    fn the_learning_rate_warms_up_then_follows_its_schedule_to_lr_min() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        for schedule in [LrSchedule::Constant, LrSchedule::Cosine, LrSchedule::Linear] {
            let o = optim(schedule);
            assert!(
                close(o.lr_at(1), 1e-4) && close(o.lr_at(5), 5e-4),
                "{schedule}"
            );
            assert!(
                close(o.lr_at(10), 1e-3),
                "{schedule}: full at the warm-up's end"
            );
            let end = if schedule == LrSchedule::Constant {
                1e-3
            } else {
                1e-5
            };
            assert!(
                close(o.lr_at(110), end) && close(o.lr_at(500), end),
                "{schedule}"
            );
        }
        // Halfway through the decay (step 60 of 10..110): the cosine and the line meet at the
        // midpoint; a quarter in, the cosine is at (1 + cos(pi / 4)) / 2 of the range.
        let mid = 1e-5 + (1e-3 - 1e-5) * 0.5;
        assert!((optim(LrSchedule::Cosine).lr_at(60) - mid).abs() < 1e-15);
        assert!((optim(LrSchedule::Linear).lr_at(60) - mid).abs() < 1e-15);
        let quarter = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1.0 + (std::f64::consts::FRAC_PI_4).cos());
        assert!((optim(LrSchedule::Cosine).lr_at(35) - quarter).abs() < 1e-15);
        assert!(
            (optim(LrSchedule::Linear).lr_at(35) - (1e-3 - (1e-3 - 1e-5) * 0.25)).abs() < 1e-15
        );
    }

    #[test]
    fn the_ema_warm_up_follows_diffusers_formula_up_to_the_configured_decay() {
        let mut o = optim(LrSchedule::Constant);
        assert_eq!(o.ema_decay_at(1), 0.999);
        o.ema_warmup = Some(EmaWarmup::default());
        // diffusers: step k = optimization step - 1; 1 - (1 + k)^-0.75.
        assert_eq!(
            o.ema_decay_at(1),
            0.0,
            "the first update copies the weights"
        );
        assert!((o.ema_decay_at(2) - (1.0 - 2f64.powf(-0.75))).abs() < 1e-15);
        assert!((o.ema_decay_at(101) - (1.0 - 101f64.powf(-0.75))).abs() < 1e-15);
        assert_eq!(o.ema_decay_at(1_000_000), 0.999, "capped at ema_decay");
    }
}
