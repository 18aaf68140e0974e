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
    _pad: [u32; 4],
}

static VB_FWD: Kernel = Kernel {
    shader: &VLB,
    entry: "vb_terms_fwd",
};
static VB_BWD: Kernel = Kernel {
    shader: &VLB,
    entry: "vb_terms_bwd",
};
static VB_BWD_WEIGHTED: Kernel = Kernel {
    shader: &VLB,
    entry: "vb_terms_bwd_weighted",
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
        _pad: [0; 4],
    }
}

/// Per-element terms in bits (the per-sample L_t is their mean over a sample's elements).
pub fn vb_terms(gpu: &Gpu, inputs: &VlbInputs, v: &Tensor) -> Tensor {
    let out = gpu.empty(&inputs.x_start.shape);
    let i = inputs;
    let t = [
        ("table", &i.table),
        ("x_start", &i.x_start),
        ("x_t", &i.x_t),
        ("eps", &i.eps),
        ("v", v),
        ("timesteps", &i.timesteps),
        ("out", &out),
    ];
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
    vb_terms_backward_weighted(gpu, inputs, v, dloss, scale, None)
}

/// dv = scale * dloss[0] * w * dterm/dv, w the weight of the element's sample (`None`: 1).
pub fn vb_terms_backward_weighted(
    gpu: &Gpu,
    inputs: &VlbInputs,
    v: &Tensor,
    dloss: &Tensor,
    scale: f32,
    weights: Option<&Tensor>,
) -> Tensor {
    let dv = gpu.empty(&v.shape);
    let p = params(inputs, scale);
    let i = inputs;
    let mut t = vec![
        ("table", &i.table),
        ("x_start", &i.x_start),
        ("x_t", &i.x_t),
        ("eps", &i.eps),
        ("v", v),
        ("timesteps", &i.timesteps),
        ("dloss", dloss),
        ("out", &dv),
    ];
    let kernel = match weights {
        Some(weights) => {
            t.push(("weights", weights));
            &VB_BWD_WEIGHTED
        }
        None => &VB_BWD,
    };
    gpu.dispatch(kernel, &p, &t, gpu.groups_1d(dv.numel()));
    dv
}

struct VbLossBackward {
    inputs: VlbInputs,
    v: Tensor,
    scale: f32,
    weights: Option<Tensor>,
}

impl Backward for VbLossBackward {
    fn name(&self) -> &'static str {
        "vb_loss"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(vb_terms_backward_weighted(
            gpu,
            &self.inputs,
            &self.v,
            dy,
            self.scale,
            self.weights.as_ref(),
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
        weights: None,
    };
    cx.record(node, &[v], out)
}

/// The importance-weighted form: (1 / batch) sum_b w_b * weight * L_b with L_b the mean of
/// sample b's terms, differentiable in v only; also returns weight * L_b per sample, unweighted
/// by w (what the timestep sampler learns from).
pub fn weighted_vb_loss_var(
    cx: &mut Ctx,
    inputs: VlbInputs,
    v: &Var,
    weight: f32,
    sample_weights: &Tensor,
) -> (Var, Tensor) {
    let gpu = cx.gpu;
    let terms = vb_terms(gpu, &inputs, &v.tensor);
    let n = terms.numel();
    let batch = inputs.timesteps.numel();
    let per_sample = super::reduce::row_sums(gpu, &terms, false, weight * batch as f32 / n as f32);
    let weighted = super::arith::mul(gpu, sample_weights, &per_sample);
    let out = super::reduce::mean(gpu, &weighted);
    let node = VbLossBackward {
        inputs,
        v: v.tensor.clone(),
        scale: weight / n as f32,
        weights: Some(sample_weights.clone()),
    };
    (cx.record(node, &[v], out), per_sample)
}
