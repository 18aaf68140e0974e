//! ReLU and SiLU (shaders/activation.wgsl), forward and backward.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::ACTIVATION;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ElementwiseParams {
    n: u32,
    _pad: [u32; 3],
}

static RELU_FWD: Kernel = Kernel {
    shader: &ACTIVATION,
    entry: "relu_fwd",
};
static RELU_BWD: Kernel = Kernel {
    shader: &ACTIVATION,
    entry: "relu_bwd",
};
static SILU_FWD: Kernel = Kernel {
    shader: &ACTIVATION,
    entry: "silu_fwd",
};
static SILU_BWD: Kernel = Kernel {
    shader: &ACTIVATION,
    entry: "silu_bwd",
};

fn unary(gpu: &Gpu, kernel: &Kernel, x: &Tensor) -> Tensor {
    let out = gpu.empty(&x.shape);
    let p = ElementwiseParams {
        n: super::count_u32(x.numel(), kernel.entry),
        _pad: [0; 3],
    };
    gpu.dispatch(
        kernel,
        &p,
        &[("x", x), ("out", &out)],
        gpu.groups_1d(x.numel()),
    );
    out
}

fn unary_backward(gpu: &Gpu, kernel: &Kernel, x: &Tensor, dy: &Tensor) -> Tensor {
    assert_eq!(x.shape, dy.shape, "{}: shapes differ", kernel.entry);
    let dx = gpu.empty(&x.shape);
    let p = ElementwiseParams {
        n: super::count_u32(x.numel(), kernel.entry),
        _pad: [0; 3],
    };
    gpu.dispatch(
        kernel,
        &p,
        &[("x", x), ("dy", dy), ("out", &dx)],
        gpu.groups_1d(x.numel()),
    );
    dx
}

pub fn relu(gpu: &Gpu, x: &Tensor) -> Tensor {
    unary(gpu, &RELU_FWD, x)
}

pub fn relu_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor) -> Tensor {
    unary_backward(gpu, &RELU_BWD, x, dy)
}

pub fn silu(gpu: &Gpu, x: &Tensor) -> Tensor {
    unary(gpu, &SILU_FWD, x)
}

pub fn silu_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor) -> Tensor {
    unary_backward(gpu, &SILU_BWD, x, dy)
}

struct ActivationBackward {
    name: &'static str,
    kernel: &'static Kernel,
    x: Tensor,
}

impl Backward for ActivationBackward {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary_backward(gpu, self.kernel, &self.x, dy))]
    }
}

pub fn relu_var(cx: &mut Ctx, x: &Var) -> Var {
    let y = relu(cx.gpu, &x.tensor);
    let node = ActivationBackward {
        name: "relu",
        kernel: &RELU_BWD,
        x: x.tensor.clone(),
    };
    cx.record(node, &[x], y)
}

pub fn silu_var(cx: &mut Ctx, x: &Var) -> Var {
    let y = silu(cx.gpu, &x.tensor);
    let node = ActivationBackward {
        name: "silu",
        kernel: &SILU_BWD,
        x: x.tensor.clone(),
    };
    cx.record(node, &[x], y)
}
