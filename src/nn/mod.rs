//! Models and their parameters. Parameters live in flat buffers (weights, gradients, Adam
//! moments, EMA) with named, aligned offsets; models build their forward pass from ops.

pub mod mlp;
pub mod params;

pub use params::{Init, ParamLayout, ParamSpec};

use crate::autograd::{Ctx, Var};
use crate::tensor::Tensor;

/// A network that predicts the noise in x_t: the diffusion code needs nothing else of a model.
pub trait Denoiser {
    fn layout(&self) -> &ParamLayout;
    /// eps_theta(x, t) for a batch x with per-sample timesteps t (u32 [batch]).
    fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, t: &Tensor) -> Var;
}

impl Denoiser for mlp::Mlp {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, t: &Tensor) -> Var {
        mlp::Mlp::forward(self, cx, params, x, t)
    }
}
