//! Classifier-free guidance (shaders/guidance.wgsl): label dropout while training, so one
//! network learns p(x | y) and p(x); and the guided combination of a doubled batch's conditional
//! and unconditional outputs while sampling.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::GUIDANCE;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct GuidanceParams {
    n: u32,
    c_out: u32,
    c_guided: u32,
    rest: u32,
    w: f32,
    seed: u32,
    stream: u32,
    null_class: u32,
    p_uncond_bits: u32,
    /// drop_labels: the row of labels[0] in the step's batch.
    first: u32,
    _pad: [u32; 2],
}

static DROP_LABELS: Kernel = Kernel {
    shader: &GUIDANCE,
    entry: "drop_labels",
};
static GUIDE: Kernel = Kernel {
    shader: &GUIDANCE,
    entry: "guide",
};

/// p_uncond as the 24-bit threshold the kernel and its twin compare the uniform draw with.
pub fn p_uncond_bits(p_uncond: f64) -> u32 {
    (p_uncond.clamp(0.0, 1.0) * 16_777_216.0).round() as u32
}

/// Label dropout: each of `labels` (u32 [n], rows first.. of the step's batch) becomes
/// `null_class` with probability `p_uncond`, by draw first + i of (seed, stream).
pub fn drop_labels(
    gpu: &Gpu,
    labels: &Tensor,
    p_uncond: f64,
    null_class: u32,
    (seed, stream): (u32, u32),
    first: usize,
) -> Tensor {
    let n = labels.numel();
    let out = gpu.empty(&[n]);
    let p = GuidanceParams {
        n: super::count_u32(n, "drop_labels"),
        seed,
        stream,
        null_class,
        p_uncond_bits: p_uncond_bits(p_uncond),
        first: super::count_u32(first, "drop_labels"),
        ..Default::default()
    };
    gpu.dispatch(
        &DROP_LABELS,
        &p,
        &[("labels", labels), ("labels_out", &out)],
        gpu.groups_1d(n),
    );
    out
}

/// The guided output of a doubled batch: `out2` [2n, c_out, ...] holds the conditional outputs
/// then the unconditional ones; channels below `c_guided` become w * cond + (1 - w) * uncond,
/// the others (a learned variance) are the conditional ones. Returns [n, c_out, ...].
pub fn guide(gpu: &Gpu, out2: &Tensor, c_guided: usize, w: f32) -> Tensor {
    let shape = &out2.shape;
    assert!(
        shape.len() >= 2 && shape[0].is_multiple_of(2) && c_guided <= shape[1],
        "guide: out2 must be [2n, c_out, ...] with c_guided <= c_out, got {shape:?}"
    );
    let n = shape[0] / 2;
    let rest: usize = shape[2..].iter().product();
    let mut out_shape = shape.clone();
    out_shape[0] = n;
    let guided = gpu.empty(&out_shape);
    let p = GuidanceParams {
        n: super::count_u32(n, "guide"),
        c_out: shape[1] as u32,
        c_guided: c_guided as u32,
        rest: rest as u32,
        w,
        ..Default::default()
    };
    gpu.dispatch(
        &GUIDE,
        &p,
        &[("out2", out2), ("guided", &guided)],
        gpu.groups_1d(guided.numel()),
    );
    guided
}

/// [x; x]: the doubled batch a guided step runs the model on.
pub fn doubled(gpu: &Gpu, x: &Tensor) -> Tensor {
    let mut shape = x.shape.clone();
    shape[0] *= 2;
    let x2 = gpu.empty(&shape);
    let n = x.numel();
    gpu.copy(x, &x2.slice_flat(0, &x.shape));
    gpu.copy(x, &x2.slice_flat(n, &x.shape));
    x2
}
