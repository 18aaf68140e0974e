//! IDDPM's variational-bound term (shaders/vlb.wgsl): per-element KL / decoder NLL in bits,
//! and the part of the hybrid loss that trains the learned variance (the mean's gradient is
//! stopped: the predicted noise enters as a constant).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::VLB;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct VlbParams {
    n: u32,
    per_sample: u32,
    scale: f32,
    continuous: u32,
}

static VB_FWD: Kernel = Kernel {
    shader: &VLB,
    entry: "vb_terms_fwd",
};
static VB_BWD: Kernel = Kernel {
    shader: &VLB,
    entry: "vb_terms_bwd",
};

/// The inputs of one VLB evaluation: x_0, x_t, the predicted noise (a constant), timesteps.
#[derive(Clone)]
pub struct VlbInputs {
    pub table: Tensor,
    pub x_start: Tensor,
    pub x_t: Tensor,
    pub eps: Tensor,
    pub timesteps: Tensor,
    /// The t = 0 term as a Gaussian density (continuous 2-D data) instead of the discretised
    /// 256-level decoder (images).
    pub continuous: bool,
}

fn params(inputs: &VlbInputs, scale: f32) -> VlbParams {
    let n = inputs.x_start.numel();
    VlbParams {
        n: super::count_u32(n, "vb_terms"),
        per_sample: (n / inputs.timesteps.numel()) as u32,
        scale,
        continuous: inputs.continuous as u32,
    }
}

/// Per-element terms in bits (the per-sample L_t is their mean over a sample's elements).
pub fn vb_terms(gpu: &Gpu, inputs: &VlbInputs, v: &Tensor) -> Tensor {
    let out = gpu.empty(&inputs.x_start.shape);
    let i = inputs;
    let t = [&i.table, &i.x_start, &i.x_t, &i.eps, v, &i.timesteps, &out];
    gpu.dispatch(
        &VB_FWD,
        &params(inputs, 0.0),
        &t,
        gpu.groups_1d(out.numel()),
    );
    out
}

/// dv = scale * dloss[0] * dterm/dv.
pub fn vb_terms_backward(
    gpu: &Gpu,
    inputs: &VlbInputs,
    v: &Tensor,
    dloss: &Tensor,
    scale: f32,
) -> Tensor {
    let dv = gpu.empty(&v.shape);
    let i = inputs;
    let t = [
        &i.table,
        &i.x_start,
        &i.x_t,
        &i.eps,
        v,
        &i.timesteps,
        dloss,
        &dv,
    ];
    gpu.dispatch(
        &VB_BWD,
        &params(inputs, scale),
        &t,
        gpu.groups_1d(dv.numel()),
    );
    dv
}

struct VbLossBackward {
    inputs: VlbInputs,
    v: Tensor,
    scale: f32,
}

impl Backward for VbLossBackward {
    fn name(&self) -> &'static str {
        "vb_loss"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(vb_terms_backward(
            gpu,
            &self.inputs,
            &self.v,
            dy,
            self.scale,
        ))]
    }
}

/// weight * mean over every element of the VLB terms, differentiable in v only.
pub fn vb_loss_var(cx: &mut Ctx, inputs: VlbInputs, v: &Var, weight: f32) -> Var {
    let terms = vb_terms(cx.gpu, &inputs, &v.tensor);
    let n = terms.numel();
    let out = super::arith::scale(cx.gpu, &super::reduce::mean(cx.gpu, &terms), weight);
    let node = VbLossBackward {
        inputs,
        v: v.tensor.clone(),
        scale: weight / n as f32,
    };
    cx.record(node, &[v], out)
}
