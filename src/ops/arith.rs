//! Elementwise arithmetic (shaders/arith.wgsl): add, sub, mul, scale, fill, broadcast.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::ARITH;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ArithParams {
    n: u32,
    alpha: f32,
    _pad: [u32; 2],
}

static ADD: Kernel = Kernel {
    shader: &ARITH,
    entry: "add_fwd",
};
static SUB: Kernel = Kernel {
    shader: &ARITH,
    entry: "sub_fwd",
};
static MUL: Kernel = Kernel {
    shader: &ARITH,
    entry: "mul_fwd",
};
static SCALE: Kernel = Kernel {
    shader: &ARITH,
    entry: "scale_fwd",
};
static FILL: Kernel = Kernel {
    shader: &ARITH,
    entry: "fill",
};
static BROADCAST: Kernel = Kernel {
    shader: &ARITH,
    entry: "broadcast_fwd",
};

fn params(n: usize, alpha: f32) -> ArithParams {
    ArithParams {
        n: super::count_u32(n, "arith"),
        alpha,
        _pad: [0; 2],
    }
}

fn binary(gpu: &Gpu, kernel: &Kernel, a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.shape, b.shape, "{}: shapes differ", kernel.entry);
    let out = gpu.empty(&a.shape);
    gpu.dispatch(
        kernel,
        &params(a.numel(), 0.0),
        &[("a", a), ("b", b), ("out", &out)],
        gpu.groups_1d(a.numel()),
    );
    out
}

pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    binary(gpu, &ADD, a, b)
}

pub fn sub(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    binary(gpu, &SUB, a, b)
}

pub fn mul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Tensor {
    binary(gpu, &MUL, a, b)
}

pub fn scale(gpu: &Gpu, a: &Tensor, alpha: f32) -> Tensor {
    let out = gpu.empty(&a.shape);
    gpu.dispatch(
        &SCALE,
        &params(a.numel(), alpha),
        &[("a", a), ("out", &out)],
        gpu.groups_1d(a.numel()),
    );
    out
}

/// Overwrites every element of `out` with `value`.
pub fn fill(gpu: &Gpu, out: &Tensor, value: f32) {
    gpu.dispatch(
        &FILL,
        &params(out.numel(), value),
        &[("out", out)],
        gpu.groups_1d(out.numel()),
    );
}

/// A tensor of `shape` holding alpha * scalar[0] everywhere.
pub fn broadcast(gpu: &Gpu, scalar: &Tensor, alpha: f32, shape: &[usize]) -> Tensor {
    let out = gpu.empty(shape);
    gpu.dispatch(
        &BROADCAST,
        &params(out.numel(), alpha),
        &[("a", scalar), ("out", &out)],
        gpu.groups_1d(out.numel()),
    );
    out
}

struct AddBackward;

impl Backward for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, _gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(dy.clone()), Some(dy.clone())]
    }
}

struct MulBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for MulBackward {
    fn name(&self) -> &'static str {
        "mul"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![
            needs[0].then(|| mul(gpu, dy, &self.b)),
            needs[1].then(|| mul(gpu, dy, &self.a)),
        ]
    }
}

struct ScaleBackward {
    alpha: f32,
}

impl Backward for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(scale(gpu, dy, self.alpha))]
    }
}

pub fn add_var(cx: &mut Ctx, a: &Var, b: &Var) -> Var {
    let out = add(cx.gpu, &a.tensor, &b.tensor);
    cx.record(AddBackward, &[a, b], out)
}

pub fn mul_var(cx: &mut Ctx, a: &Var, b: &Var) -> Var {
    let out = mul(cx.gpu, &a.tensor, &b.tensor);
    let node = MulBackward {
        a: a.tensor.clone(),
        b: b.tensor.clone(),
    };
    cx.record(node, &[a, b], out)
}

pub fn scale_var(cx: &mut Ctx, a: &Var, alpha: f32) -> Var {
    let out = scale(cx.gpu, &a.tensor, alpha);
    cx.record(ScaleBackward { alpha }, &[a], out)
}
