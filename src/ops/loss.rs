//! Mean squared error, plain or weighted per sample (shaders/loss.wgsl for the backward; the
//! forward is a difference and a sum of squares, or per-sample row sums when weighted).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::LOSS;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    n: u32,
    per_sample: u32,
    _pad: [u32; 2],
}

static MSE_BWD: Kernel = Kernel {
    shader: &LOSS,
    entry: "mse_bwd",
};
static MSE_BWD_WEIGHTED: Kernel = Kernel {
    shader: &LOSS,
    entry: "mse_bwd_weighted",
};

/// mean((pred - target)^2) as a one-element tensor.
pub fn mse(gpu: &Gpu, pred: &Tensor, target: &Tensor) -> Tensor {
    let diff = super::arith::sub(gpu, pred, target);
    let out = gpu.empty(&[1]);
    super::reduce::sum_squares_into(gpu, &diff, 1.0 / pred.numel() as f32, &out, 0);
    out
}

pub fn mse_backward(gpu: &Gpu, pred: &Tensor, target: &Tensor, dloss: &Tensor) -> Tensor {
    mse_backward_weighted(gpu, pred, target, dloss, None)
}

/// The gradient of (1 / n) sum_i w[sample(i)] (pred - target)^2, with one weight per sample
/// (pred's first axis); `None` weighs every sample 1 (plain MSE).
pub fn mse_backward_weighted(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    dloss: &Tensor,
    weights: Option<&Tensor>,
) -> Tensor {
    let dpred = gpu.empty(&pred.shape);
    let n = pred.numel();
    if let Some(w) = weights {
        assert_eq!(w.numel(), pred.shape[0], "mse: one weight per sample");
    }
    let p = LossParams {
        n: super::count_u32(n, "mse"),
        per_sample: (n / pred.shape[0].max(1)) as u32,
        _pad: [0; 2],
    };
    let mut tensors = vec![
        ("pred", pred),
        ("target_values", target),
        ("dloss", dloss),
        ("dpred", &dpred),
    ];
    let kernel = match weights {
        Some(weights) => {
            tensors.push(("weights", weights));
            &MSE_BWD_WEIGHTED
        }
        None => &MSE_BWD,
    };
    gpu.dispatch(kernel, &p, &tensors, gpu.groups_1d(n));
    dpred
}

struct MseBackward {
    pred: Tensor,
    target: Tensor,
    weights: Option<Tensor>,
}

impl Backward for MseBackward {
    fn name(&self) -> &'static str {
        "mse"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(mse_backward_weighted(
            gpu,
            &self.pred,
            &self.target,
            dy,
            self.weights.as_ref(),
        ))]
    }
}

/// The loss against a fixed target (the noise), differentiable in `pred`.
pub fn mse_var(cx: &mut Ctx, pred: &Var, target: &Tensor) -> Var {
    assert_eq!(pred.shape(), target.shape.as_slice(), "mse: shapes differ");
    let out = mse(cx.gpu, &pred.tensor, target);
    let node = MseBackward {
        pred: pred.tensor.clone(),
        target: target.clone(),
        weights: None,
    };
    cx.record(node, &[pred], out)
}

/// Importance-weighted MSE, (1 / n) sum_i w[sample(i)] (pred_i - target_i)^2, differentiable in
/// `pred`; also returns each sample's unweighted mean squared error (what the timestep sampler
/// learns from).
pub fn weighted_mse_var(
    cx: &mut Ctx,
    pred: &Var,
    target: &Tensor,
    weights: &Tensor,
) -> (Var, Tensor) {
    assert_eq!(pred.shape(), target.shape.as_slice(), "mse: shapes differ");
    let gpu = cx.gpu;
    let diff = super::arith::sub(gpu, &pred.tensor, target);
    let per_sample_count = diff.numel() / diff.shape[0];
    let per_sample = super::reduce::row_sums(gpu, &diff, true, 1.0 / per_sample_count as f32);
    let out = super::reduce::mean(gpu, &super::arith::mul(gpu, weights, &per_sample));
    let node = MseBackward {
        pred: pred.tensor.clone(),
        target: target.clone(),
        weights: Some(weights.clone()),
    };
    (cx.record(node, &[pred], out), per_sample)
}
