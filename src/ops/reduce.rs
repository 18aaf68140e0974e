//! Reductions (shaders/reduce.wgsl): sum, mean, sum of squares and norm in two deterministic
//! passes, per-column sums and per-row (per-sample) sums.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::REDUCE;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    n: u32,
    squares: u32,
    finish_sqrt: u32,
    out_index: u32,
    scale: f32,
    cols: u32,
    _pad: [u32; 2],
    slot_cols: [u32; 4],
    slot_rows: [u32; 4],
}

static SUM_PARTIAL: Kernel = Kernel {
    shader: &REDUCE,
    entry: "sum_partial",
};
static SUM_FINAL: Kernel = Kernel {
    shader: &REDUCE,
    entry: "sum_final",
};
static SUM_ROWS: Kernel = Kernel {
    shader: &REDUCE,
    entry: "sum_rows_fwd",
};
static SUM_ROWS_MULTI: Kernel = Kernel {
    shader: &REDUCE,
    entry: "sum_rows_multi",
};
static SUM_ROWS_ACC: Kernel = Kernel {
    shader: &REDUCE,
    entry: "sum_rows_acc",
};
static ROW_SUMS: Kernel = Kernel {
    shader: &REDUCE,
    entry: "row_sums_fwd",
};

/// Upper bound on first-pass workgroups, so the second pass is one workgroup.
const MAX_PARTIALS: usize = 1024;
/// Elements each thread folds before the tree: the trees (and their barriers) are the costly
/// part, on lavapipe above all, so a workgroup first reads a long grid-stride run.
const ELEMENTS_PER_THREAD: usize = 64;

#[derive(Clone, Copy)]
enum Finish {
    Scale(f32),
    Sqrt,
}

/// Writes the reduction of x (of x^2 when `squares`) into element `out_index` of `out`.
fn reduce_into(
    gpu: &Gpu,
    x: &Tensor,
    squares: bool,
    finish: Finish,
    out: &Tensor,
    out_index: usize,
) {
    let n = x.numel();
    let wg = gpu.workgroup_1d as usize;
    let n_partials = n.div_ceil(wg * ELEMENTS_PER_THREAD).clamp(1, MAX_PARTIALS);
    let partials = gpu.empty(&[n_partials]);
    let mut p = ReduceParams {
        n: super::count_u32(n, "reduce"),
        squares: squares as u32,
        finish_sqrt: 0,
        out_index: out_index as u32,
        scale: 1.0,
        cols: 0,
        _pad: [0; 2],
        slot_cols: [0; 4],
        slot_rows: [0; 4],
    };
    gpu.dispatch(
        &SUM_PARTIAL,
        &p,
        &[("x", x), ("out", &partials)],
        [n_partials as u32, 1, 1],
    );
    p.n = n_partials as u32;
    match finish {
        Finish::Scale(s) => p.scale = s,
        Finish::Sqrt => p.finish_sqrt = 1,
    }
    gpu.dispatch(&SUM_FINAL, &p, &[("x", &partials), ("out", out)], [1, 1, 1]);
}

pub fn sum(gpu: &Gpu, x: &Tensor) -> Tensor {
    let out = gpu.empty(&[1]);
    reduce_into(gpu, x, false, Finish::Scale(1.0), &out, 0);
    out
}

pub fn mean(gpu: &Gpu, x: &Tensor) -> Tensor {
    let out = gpu.empty(&[1]);
    reduce_into(
        gpu,
        x,
        false,
        Finish::Scale(1.0 / x.numel() as f32),
        &out,
        0,
    );
    out
}

/// scale * sum(x^2) into out[out_index].
pub fn sum_squares_into(gpu: &Gpu, x: &Tensor, scale: f32, out: &Tensor, out_index: usize) {
    reduce_into(gpu, x, true, Finish::Scale(scale), out, out_index);
}

/// The L2 norm of x as a one-element tensor.
pub fn norm(gpu: &Gpu, x: &Tensor) -> Tensor {
    let out = gpu.empty(&[1]);
    reduce_into(gpu, x, true, Finish::Sqrt, &out, 0);
    out
}

/// out[j] = sum over rows of x[.., j], for x viewed as [rows, last dim].
pub fn sum_rows(gpu: &Gpu, x: &Tensor) -> Tensor {
    let cols = *x.shape.last().expect("sum_rows of a scalar");
    let out = gpu.empty(&[cols]);
    sum_rows_dispatch(gpu, &SUM_ROWS, x, &out);
    out
}

/// `sum_rows` for a sum nothing reads right away (a parameter's gradient, which waits for the
/// optimizer): queued, and run with up to three others in one dispatch when four are queued, or
/// before anything touches the output, or at the submit (gpu/deferred.rs).
pub fn sum_rows_later(gpu: &Gpu, x: &Tensor) -> Tensor {
    let cols = *x.shape.last().expect("sum_rows of a scalar");
    let out = gpu.empty(&[cols]);
    gpu.defer(x.clone(), out.clone(), sum_rows_queued, SLOTS);
    out
}

/// Slots of sum_rows_multi.
const SLOTS: usize = 4;

/// The queued row sums (at most SLOTS) as one sum_rows_multi dispatch.
fn sum_rows_queued(gpu: &Gpu, queued: Vec<(Tensor, Tensor)>) {
    assert!(!queued.is_empty() && queued.len() <= SLOTS);
    // Unused slots read the first x again and write a scratch tensor of their own (no columns
    // are theirs, so nothing is written).
    let scratch: Vec<Tensor> = (queued.len()..SLOTS).map(|_| gpu.empty(&[1])).collect();
    let mut p = ReduceParams::zeroed();
    let names = [
        ("x0", "out0"),
        ("x1", "out1"),
        ("x2", "out2"),
        ("x3", "out3"),
    ];
    let mut bindings: Vec<(&str, &Tensor)> = Vec::with_capacity(2 * SLOTS);
    let mut total = 0;
    for (s, (x_name, out_name)) in names.into_iter().enumerate() {
        match queued.get(s) {
            Some((x, out)) => {
                let cols = out.numel();
                p.slot_cols[s] = cols as u32;
                p.slot_rows[s] = (x.numel() / cols) as u32;
                total += cols;
                bindings.push((x_name, x));
                bindings.push((out_name, out));
            }
            None => {
                bindings.push((x_name, &queued[0].0));
                bindings.push((out_name, &scratch[s - queued.len()]));
            }
        }
    }
    gpu.dispatch(&SUM_ROWS_MULTI, &p, &bindings, gpu.groups_1d(total));
}

/// into[j] += sum over rows of x[.., j], in place: `into` already holds part of a gradient.
pub fn sum_rows_into(gpu: &Gpu, x: &Tensor, into: &Tensor) {
    let cols = *x.shape.last().expect("sum_rows of a scalar");
    assert_eq!(into.numel(), cols, "sum_rows_into: one output per column");
    sum_rows_dispatch(gpu, &SUM_ROWS_ACC, x, into);
}

fn sum_rows_dispatch(gpu: &Gpu, kernel: &'static Kernel, x: &Tensor, out: &Tensor) {
    let cols = *x.shape.last().expect("sum_rows of a scalar");
    let p = ReduceParams {
        n: super::count_u32(x.numel(), "sum_rows"),
        squares: 0,
        finish_sqrt: 0,
        out_index: 0,
        scale: 1.0,
        cols: cols as u32,
        _pad: [0; 2],
        slot_cols: [0; 4],
        slot_rows: [0; 4],
    };
    gpu.dispatch(kernel, &p, &[("x", x), ("out", out)], gpu.groups_1d(cols));
}

/// out[r] = scale * sum_j x[r, j] (of x[r, j]^2 when `squares`) for x viewed as [shape[0], rest]:
/// per-sample sums, one thread per sample.
pub fn row_sums(gpu: &Gpu, x: &Tensor, squares: bool, scale: f32) -> Tensor {
    let rows = x.shape[0];
    let out = gpu.empty(&[rows]);
    let p = ReduceParams {
        n: super::count_u32(x.numel(), "row_sums"),
        squares: squares as u32,
        finish_sqrt: 0,
        out_index: 0,
        scale,
        cols: (x.numel() / rows) as u32,
        _pad: [0; 2],
        slot_cols: [0; 4],
        slot_rows: [0; 4],
    };
    gpu.dispatch(
        &ROW_SUMS,
        &p,
        &[("x", x), ("out", &out)],
        gpu.groups_1d(rows),
    );
    out
}

struct SumBackward {
    shape: Vec<usize>,
    scale: f32,
}

impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(super::arith::broadcast(
            gpu,
            dy,
            self.scale,
            &self.shape,
        ))]
    }
}

pub fn sum_var(cx: &mut Ctx, x: &Var) -> Var {
    let out = sum(cx.gpu, &x.tensor);
    cx.record(
        SumBackward {
            shape: x.shape().to_vec(),
            scale: 1.0,
        },
        &[x],
        out,
    )
}

pub fn mean_var(cx: &mut Ctx, x: &Var) -> Var {
    let out = mean(cx.gpu, &x.tensor);
    let scale = 1.0 / x.tensor.numel() as f32;
    cx.record(
        SumBackward {
            shape: x.shape().to_vec(),
            scale,
        },
        &[x],
        out,
    )
}
