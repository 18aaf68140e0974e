//! Mean squared error (shaders/loss.wgsl for the backward; the forward is a difference and a
//! sum of squares).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::LOSS;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    n: u32,
    _pad: [u32; 3],
}

static MSE_BWD: Kernel = Kernel {
    shader: &LOSS,
    entry: "mse_bwd",
};

/// mean((pred - target)^2) as a one-element tensor.
pub fn mse(gpu: &Gpu, pred: &Tensor, target: &Tensor) -> Tensor {
    let diff = super::arith::sub(gpu, pred, target);
    let out = gpu.empty(&[1]);
    super::reduce::sum_squares_into(gpu, &diff, 1.0 / pred.numel() as f32, &out, 0);
    out
}

pub fn mse_backward(gpu: &Gpu, pred: &Tensor, target: &Tensor, dloss: &Tensor) -> Tensor {
    let dpred = gpu.empty(&pred.shape);
    let p = LossParams {
        n: super::count_u32(pred.numel(), "mse"),
        _pad: [0; 3],
    };
    gpu.dispatch(
        &MSE_BWD,
        &p,
        &[pred, target, dloss, &dpred],
        gpu.groups_1d(pred.numel()),
    );
    dpred
}

struct MseBackward {
    pred: Tensor,
    target: Tensor,
}

impl Backward for MseBackward {
    fn name(&self) -> &'static str {
        "mse"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(mse_backward(gpu, &self.pred, &self.target, dy))]
    }
}

/// The loss against a fixed target (the noise), differentiable in `pred`.
pub fn mse_var(cx: &mut Ctx, pred: &Var, target: &Tensor) -> Var {
    assert_eq!(pred.shape(), target.shape.as_slice(), "mse: shapes differ");
    let out = mse(cx.gpu, &pred.tensor, target);
    let node = MseBackward {
        pred: pred.tensor.clone(),
        target: target.clone(),
    };
    cx.record(node, &[pred], out)
}
