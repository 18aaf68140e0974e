//! Models and their parameters. Parameters live in flat buffers (weights, gradients, Adam
//! moments, EMA) with named, aligned offsets; models build their forward pass from ops.

pub mod mlp;
pub mod params;
pub mod plan;
pub mod unet;

pub use params::{Init, ParamLayout, ParamSpec};

use crate::autograd::{Ctx, Var};
use crate::tensor::Tensor;

pub use unet::DropoutKey;

/// A network that predicts the noise in x_t: the diffusion code needs nothing else of a model.
pub trait Denoiser {
    fn layout(&self) -> &ParamLayout;
    /// eps_theta(x, t) for a batch x with per-sample timesteps t (u32 [batch]); `dropout` is
    /// the mask key while training and None otherwise.
    fn forward(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        dropout: Option<DropoutKey>,
    ) -> Var;
}

impl Denoiser for mlp::Mlp {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn forward(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        _dropout: Option<DropoutKey>,
    ) -> Var {
        mlp::Mlp::forward(self, cx, params, x, t)
    }
}

impl Denoiser for unet::UNet {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn forward(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        dropout: Option<DropoutKey>,
    ) -> Var {
        unet::UNet::forward(self, cx, params, x, t, dropout)
    }
}
