//! Optimiser kernels (shaders/optim.wgsl) over flat parameter buffers: the global gradient norm,
//! Adam with clipping folded in, and the EMA of the weights.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::OPTIM;
use crate::tensor::Tensor;

/// Adam's hyperparameters, shared by the update kernel and its f64 twin in `cpu::optim`.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 disables clipping).
    pub max_norm: f64,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct OptimParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    max_norm: f32,
    weight_decay: f32,
    decay: f32,
    _pad: [u32; 2],
}

static ADAM_STEP: Kernel = Kernel {
    shader: &OPTIM,
    entry: "adam_step",
};
static EMA_UPDATE: Kernel = Kernel {
    shader: &OPTIM,
    entry: "ema_update",
};

/// The global L2 norm of the gradient as a one-element tensor (stays on the GPU).
pub fn grad_norm(gpu: &Gpu, grad: &Tensor) -> Tensor {
    super::reduce::norm(gpu, grad)
}

/// The flat buffers one Adam step reads and updates: the parameters and the moments in place.
pub struct AdamTensors<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    /// The global gradient norm (one element), for the clipping.
    pub grad_norm: &'a Tensor,
    pub exp_avg: &'a Tensor,
    pub exp_avg_sq: &'a Tensor,
}

/// One Adam step at `step` (1-based) with learning rate `lr` (the schedule's value for this
/// step); gradients are scaled by min(1, max_norm / norm) first.
pub fn adam_step(gpu: &Gpu, cfg: &AdamConfig, lr: f64, step: u64, t: AdamTensors) {
    let AdamTensors {
        param,
        grad,
        grad_norm,
        exp_avg,
        exp_avg_sq,
    } = t;
    let n = param.numel();
    assert!(
        grad.numel() == n && exp_avg.numel() == n && exp_avg_sq.numel() == n,
        "adam sizes"
    );
    let p = OptimParams {
        n: super::count_u32(n, "adam"),
        lr: lr as f32,
        beta1: cfg.beta1 as f32,
        beta2: cfg.beta2 as f32,
        eps: cfg.eps as f32,
        bias_correction1: (1.0 - cfg.beta1.powi(step as i32)) as f32,
        bias_correction2: (1.0 - cfg.beta2.powi(step as i32)) as f32,
        max_norm: cfg.max_norm as f32,
        weight_decay: cfg.weight_decay as f32,
        ..Default::default()
    };
    gpu.dispatch(
        &ADAM_STEP,
        &p,
        &[
            ("grad", grad),
            ("grad_norm", grad_norm),
            ("param", param),
            ("exp_avg", exp_avg),
            ("exp_avg_sq", exp_avg_sq),
        ],
        gpu.groups_1d(n),
    );
}

/// ema = decay * ema + (1 - decay) * param.
pub fn ema_update(gpu: &Gpu, ema: &Tensor, param: &Tensor, decay: f64) {
    assert_eq!(ema.numel(), param.numel(), "ema sizes");
    let p = OptimParams {
        n: super::count_u32(param.numel(), "ema"),
        decay: decay as f32,
        ..Default::default()
    };
    gpu.dispatch(
        &EMA_UPDATE,
        &p,
        &[("source_param", param), ("ema", ema)],
        gpu.groups_1d(param.numel()),
    );
}
