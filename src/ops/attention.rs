//! Softmax over the last axis with a folded-in scale (shaders/attention.wgsl), and single-head
//! self-attention over the positions of a feature map built from it and batched matmuls.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel, MAX_GROUPS_PER_DIM};
use crate::shaders::ATTENTION;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SoftmaxParams {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

static SOFTMAX_FWD: Kernel = Kernel {
    shader: &ATTENTION,
    entry: "softmax_fwd",
};
static SOFTMAX_FWD_ROWS: Kernel = Kernel {
    shader: &ATTENTION,
    entry: "softmax_fwd_rows",
};
static SOFTMAX_BWD_ROWS: Kernel = Kernel {
    shader: &ATTENTION,
    entry: "softmax_bwd_rows",
};
/// Rows up to this long get a thread each; longer rows a workgroup each.
pub const SHORT_ROW: usize = 256;
static SOFTMAX_BWD: Kernel = Kernel {
    shader: &ATTENTION,
    entry: "softmax_bwd",
};

/// How a softmax over rows of `cols` runs, on any adapter: a thread per short row, a
/// workgroup (tree sums) per long one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxPlan {
    /// softmax_fwd_rows / softmax_bwd_rows.
    ThreadPerRow,
    /// softmax_fwd / softmax_bwd.
    WorkgroupPerRow,
}

pub fn plan(cols: usize) -> SoftmaxPlan {
    if cols <= SHORT_ROW {
        SoftmaxPlan::ThreadPerRow
    } else {
        SoftmaxPlan::WorkgroupPerRow
    }
}

/// The parameters and, for long rows, the grid (one workgroup per row); None for short rows.
fn setup(x: &Tensor, scale: f32) -> (SoftmaxParams, Option<[u32; 3]>) {
    let cols = *x.shape.last().expect("softmax of a scalar");
    let rows = (x.numel() / cols) as u32;
    let grid = match plan(cols) {
        SoftmaxPlan::ThreadPerRow => None,
        SoftmaxPlan::WorkgroupPerRow if rows <= MAX_GROUPS_PER_DIM => Some([rows, 1, 1]),
        SoftmaxPlan::WorkgroupPerRow => {
            Some([MAX_GROUPS_PER_DIM, rows.div_ceil(MAX_GROUPS_PER_DIM), 1])
        }
    };
    (
        SoftmaxParams {
            rows,
            cols: cols as u32,
            scale,
            _pad: 0,
        },
        grid,
    )
}

/// softmax(scale * x) over the last axis.
pub fn softmax(gpu: &Gpu, x: &Tensor, scale: f32) -> Tensor {
    let (p, grid) = setup(x, scale);
    let y = gpu.empty(&x.shape);
    match grid {
        Some(grid) => gpu.dispatch(&SOFTMAX_FWD, &p, &[("x", x), ("out", &y)], grid),
        None => gpu.dispatch(
            &SOFTMAX_FWD_ROWS,
            &p,
            &[("x", x), ("out", &y)],
            gpu.groups_1d(p.rows as usize),
        ),
    }
    y
}

/// dx from the forward output y and dy.
pub fn softmax_backward(gpu: &Gpu, y: &Tensor, dy: &Tensor, scale: f32) -> Tensor {
    let (p, grid) = setup(y, scale);
    let dx = gpu.empty(&y.shape);
    match grid {
        Some(grid) => gpu.dispatch(
            &SOFTMAX_BWD,
            &p,
            &[("x", y), ("dy", dy), ("out", &dx)],
            grid,
        ),
        None => gpu.dispatch(
            &SOFTMAX_BWD_ROWS,
            &p,
            &[("x", y), ("dy", dy), ("out", &dx)],
            gpu.groups_1d(p.rows as usize),
        ),
    }
    dx
}

struct SoftmaxBackward {
    y: Tensor,
    scale: f32,
}

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(softmax_backward(gpu, &self.y, dy, self.scale))]
    }
}

pub fn softmax_var(cx: &mut Ctx, x: &Var, scale: f32) -> Var {
    let y = softmax(cx.gpu, &x.tensor, scale);
    cx.record(
        SoftmaxBackward {
            y: y.clone(),
            scale,
        },
        &[x],
        y,
    )
}

/// Single-head attention over positions: q, k, v are [n, c, hw];
/// weights = softmax(q^T k / sqrt(c)) [n, hw, hw]; out[n, c, i] = sum_j v[n, c, j] weights[n, i, j].
pub fn attention_var(cx: &mut Ctx, q: &Var, k: &Var, v: &Var) -> Var {
    let c = q.shape()[1];
    let scores = super::matmul::matmul_var(cx, q, k, true, false);
    let weights = softmax_var(cx, &scores, 1.0 / (c as f32).sqrt());
    super::matmul::matmul_var(cx, v, &weights, false, true)
}
