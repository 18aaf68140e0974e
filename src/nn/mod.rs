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

/// What a denoiser sees besides x_t.
#[derive(Clone, Copy)]
pub struct Conditioning<'a> {
    /// u32 [batch]: each sample's timestep.
    pub timesteps: &'a Tensor,
    /// u32 [batch]: each sample's class, or `class_rows - 1`, the "no class" row that
    /// classifier-free guidance trains and samples with. None on a class-conditional model means
    /// "no class" for every sample; an unconditional model takes None only.
    pub classes: Option<&'a Tensor>,
    /// The dropout mask key while training; None otherwise.
    pub dropout: Option<DropoutKey>,
}

impl<'a> Conditioning<'a> {
    /// Timesteps only: no class, no dropout.
    pub fn at(timesteps: &'a Tensor) -> Conditioning<'a> {
        Conditioning {
            timesteps,
            classes: None,
            dropout: None,
        }
    }
}

/// A network that predicts the noise in x_t: the diffusion code needs nothing else of a model.
pub trait Denoiser {
    fn layout(&self) -> &ParamLayout;
    /// Rows of the class embedding of a class-conditional model (the classes, then "no
    /// class"); None for an unconditional model.
    fn class_rows(&self) -> Option<usize>;
    /// eps_theta(x, t, y) for a batch x under `cond`.
    fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, cond: Conditioning) -> Var;
}

/// The class indices a model's forward adds its class embedding for: `cond.classes`, or the
/// "no class" row for every sample of a class-conditional model given none; None for an
/// unconditional model, which must be given none.
pub(crate) fn class_indices(
    cx: &Ctx,
    class_rows: Option<usize>,
    cond: &Conditioning,
) -> Option<Tensor> {
    match (class_rows, cond.classes) {
        (None, None) => None,
        (None, Some(_)) => panic!("classes given to a model without a class embedding"),
        (Some(_), Some(classes)) => Some(classes.clone()),
        (Some(rows), None) => {
            let n = cond.timesteps.numel();
            Some(cx.gpu.upload_u32(&vec![rows as u32 - 1; n], &[n]))
        }
    }
}

impl Denoiser for mlp::Mlp {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn class_rows(&self) -> Option<usize> {
        self.class_rows
    }
    fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, cond: Conditioning) -> Var {
        let classes = class_indices(cx, self.class_rows, &cond);
        mlp::Mlp::forward_classes(self, cx, params, x, cond.timesteps, classes.as_ref())
    }
}

impl Denoiser for unet::UNet {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn class_rows(&self) -> Option<usize> {
        self.class_rows()
    }
    fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, cond: Conditioning) -> Var {
        let classes = class_indices(cx, self.class_rows(), &cond);
        unet::UNet::forward_classes(
            self,
            cx,
            params,
            x,
            cond.timesteps,
            classes.as_ref(),
            cond.dropout,
        )
    }
}
