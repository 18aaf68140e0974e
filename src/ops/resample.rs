//! Nearest-neighbour 2x upsampling and channel concatenation (shaders/resample.wgsl).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::shaders::RESAMPLE;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct ResampleParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ca: u32,
    cb: u32,
    hw: u32,
    _pad: u32,
}

static UP_FWD: Kernel = Kernel {
    shader: &RESAMPLE,
    entry: "upsample_nearest2x_fwd",
};
static UP_BWD: Kernel = Kernel {
    shader: &RESAMPLE,
    entry: "upsample_nearest2x_bwd",
};
static CAT_FWD: Kernel = Kernel {
    shader: &RESAMPLE,
    entry: "concat_fwd",
};
static CAT_BWD: Kernel = Kernel {
    shader: &RESAMPLE,
    entry: "concat_bwd",
};

fn nchw(x: &Tensor) -> [usize; 4] {
    x.shape[..]
        .try_into()
        .unwrap_or_else(|_| panic!("expected NCHW, got {:?}", x.shape))
}

pub fn upsample_nearest2x(gpu: &Gpu, x: &Tensor) -> Tensor {
    let [n, c, h, w] = nchw(x);
    let y = gpu.empty(&[n, c, 2 * h, 2 * w]);
    let p = ResampleParams {
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        ..Default::default()
    };
    gpu.dispatch(
        &UP_FWD,
        &p,
        &[("a", x), ("out", &y)],
        gpu.groups_1d(y.numel()),
    );
    y
}

pub fn upsample_nearest2x_backward(gpu: &Gpu, dy: &Tensor) -> Tensor {
    let [n, c, h2, w2] = nchw(dy);
    let (h, w) = (h2 / 2, w2 / 2);
    let dx = gpu.empty(&[n, c, h, w]);
    let p = ResampleParams {
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        ..Default::default()
    };
    gpu.dispatch(
        &UP_BWD,
        &p,
        &[("a", dy), ("out", &dx)],
        gpu.groups_1d(dx.numel()),
    );
    dx
}

fn concat_params(n: usize, ca: usize, cb: usize, hw: usize) -> ResampleParams {
    ResampleParams {
        n: n as u32,
        ca: ca as u32,
        cb: cb as u32,
        hw: hw as u32,
        ..Default::default()
    }
}

/// Copies `len` floats of `src` from float `from` into `dst` at float `to`: buffer copies, which
/// a CPU driver runs as memcpy, where a kernel's loads cost it a loop over the SIMD lanes (on
/// Mesa 22.3.6 the concat kernels were ~2.5% of the mnist step). GPUs run the kernels instead:
/// one dispatch rather than two copies per sample.
fn copy_floats(gpu: &Gpu, src: &Tensor, from: usize, dst: &Tensor, to: usize, len: usize) {
    if len > 0 {
        gpu.copy_raw(
            src.buffer(),
            src.offset() + (from * 4) as u64,
            dst.buffer(),
            dst.offset() + (to * 4) as u64,
            (len * 4) as u64,
        );
    }
}

/// How concatenation and its split run: one kernel on GPUs (one dispatch rather than two copies
/// per sample), buffer copies per sample on CPU adapters (see `copy_floats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcatPlan {
    /// concat_fwd / concat_bwd.
    Kernel,
    /// Two buffer copies per sample.
    Copies,
}

pub fn plan_concat(caps: &Capabilities) -> ConcatPlan {
    if caps.soft_kernels {
        ConcatPlan::Copies
    } else {
        ConcatPlan::Kernel
    }
}

/// [a, b] along channels; a and b are [n, c, h, w] with equal n, h, w. On CPU adapters, buffer
/// copies per sample (see `copy_floats`).
pub fn concat(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    let ([n, ca, h, w], [nb, cb, hb, wb]) = (nchw(a), nchw(b));
    assert!(
        n == nb && h == hb && w == wb,
        "concat: {:?} and {:?}",
        a.shape,
        b.shape
    );
    let y = gpu.empty(&[n, ca + cb, h, w]);
    if plan_concat(&gpu.caps()) == ConcatPlan::Copies {
        let (a_len, b_len) = (ca * h * w, cb * h * w);
        for s in 0..n {
            copy_floats(gpu, a, s * a_len, &y, s * (a_len + b_len), a_len);
            copy_floats(gpu, b, s * b_len, &y, s * (a_len + b_len) + a_len, b_len);
        }
        return y;
    }
    gpu.dispatch(
        &CAT_FWD,
        &concat_params(n, ca, cb, h * w),
        &[("a", a), ("b", b), ("out", &y)],
        gpu.groups_1d(y.numel()),
    );
    y
}

/// Splits dy [n, ca + cb, h, w] into (da, db).
pub fn concat_backward(gpu: &Gpu, dy: &Tensor, ca: usize) -> (Tensor, Tensor) {
    let [n, c, h, w] = nchw(dy);
    let (da, db) = (gpu.empty(&[n, ca, h, w]), gpu.empty(&[n, c - ca, h, w]));
    if plan_concat(&gpu.caps()) == ConcatPlan::Copies {
        let (a_len, b_len) = (ca * h * w, (c - ca) * h * w);
        for s in 0..n {
            copy_floats(gpu, dy, s * (a_len + b_len), &da, s * a_len, a_len);
            copy_floats(gpu, dy, s * (a_len + b_len) + a_len, &db, s * b_len, b_len);
        }
        return (da, db);
    }
    gpu.dispatch(
        &CAT_BWD,
        &concat_params(n, ca, c - ca, h * w),
        &[("a", dy), ("out", &da), ("out_b", &db)],
        gpu.groups_1d(dy.numel()),
    );
    (da, db)
}

struct UpsampleBackward;

impl Backward for UpsampleBackward {
    fn name(&self) -> &'static str {
        "upsample_nearest2x"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(upsample_nearest2x_backward(gpu, dy))]
    }
}

struct ConcatBackward {
    ca: usize,
}

impl Backward for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let (da, db) = concat_backward(gpu, dy, self.ca);
        vec![Some(da), Some(db)]
    }
}

pub fn upsample_nearest2x_var(cx: &mut Ctx, x: &Var) -> Var {
    let y = upsample_nearest2x(cx.gpu, &x.tensor);
    cx.record(UpsampleBackward, &[x], y)
}

pub fn concat_var(cx: &mut Ctx, a: &Var, b: &Var) -> Var {
    let y = concat(cx.gpu, &a.tensor, &b.tensor);
    cx.record(ConcatBackward { ca: a.shape()[1] }, &[a, b], y)
}

struct TakeChannelsBackward {
    first: bool,
    other_shape: Vec<usize>,
}

impl Backward for TakeChannelsBackward {
    fn name(&self) -> &'static str {
        "take_channels"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let zeros = gpu.zeros(&self.other_shape);
        let dx = if self.first {
            concat(gpu, dy, &zeros)
        } else {
            concat(gpu, &zeros, dy)
        };
        vec![Some(dx)]
    }
}

/// The first `ca` channels of x [n, c, h, w] (`first`), or the remaining ones: IDDPM splits the
/// model's output into the noise and the variance channels this way.
pub fn take_channels_var(cx: &mut Ctx, x: &Var, ca: usize, first: bool) -> Var {
    let (a, b) = concat_backward(cx.gpu, &x.tensor, ca);
    let (taken, other) = if first { (a, b) } else { (b, a) };
    let node = TakeChannelsBackward {
        first,
        other_shape: other.shape.clone(),
    };
    cx.record(node, &[x], taken)
}
