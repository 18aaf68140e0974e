//! Ops: shape checks, the kernel dispatch and, for differentiable ops, the tape node and its
//! Backward. Functions on `&Gpu` and tensors are the raw kernels (used by backward passes and by
//! code without a tape); functions on `&mut Ctx` and vars record onto the tape.

pub mod activation;
pub mod arith;
pub mod attention;
pub mod conv;
pub mod cross_entropy;
pub mod diffusion;
pub mod dpm_solver;
pub mod embedding;
pub mod group_norm;
pub mod guidance;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod prediction;
pub mod reduce;
pub mod resample;
pub mod rng;
pub mod soft;
pub mod unet_misc;
pub mod vlb;

use crate::autograd::{Ctx, Var};

/// Backpropagates from a scalar `loss` through the tape of `cx`: the loss gradient is 1 (filled
/// on the GPU, in stream order, so the step stays one submit) and gradients of values used twice
/// are summed with `arith::add`. See `Ctx::backward`.
pub fn backward(cx: &mut Ctx, loss: &Var) {
    backward_scaled(cx, loss, 1.0);
}

/// `backward` for `scale` times the loss: a micro-batch's share of an accumulated step.
pub fn backward_scaled(cx: &mut Ctx, loss: &Var, scale: f32) {
    let dloss = cx.gpu.empty(&[1]);
    arith::fill(cx.gpu, &dloss, scale);
    cx.backward(loss, dloss, arith::add);
}

/// Element count as the u32 the kernels index with.
pub(crate) fn count_u32(n: usize, what: &str) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| panic!("{what}: {n} elements exceed the u32 index range"))
}
