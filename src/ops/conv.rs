//! 2-D convolution, forward and backward: the plan that says which kernels run for a shape on
//! an adapter, and the GPU path (shaders/conv.wgsl), implicit GEMMs in workgroup-memory tiles
//! whose K axis is split where the grid is small. Weight and bias gradients are sums over the
//! batch, done as split-K partials plus a second pass (no float atomics: deterministic). CPU
//! adapters run the plans of the software-adapter wing (ops::soft::conv).

use bytemuck::{Pod, Zeroable};

use super::soft;
use super::soft::conv::{Pack, WeightGradKernel, Weights};
use crate::autograd::{take_earlier, Backward, Ctx, Var};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::shaders::CONV;
pub use crate::shape::ConvShape;
use crate::tensor::Tensor;

/// Mirrors `ConvParams` in shaders/conv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kernel: u32,
    stride: u32,
    padding: u32,
    h_out: u32,
    w_out: u32,
    has_bias: u32,
    chunk: u32,
    partial_row: u32,
    bias_offset: u32,
    _pad: [u32; 2],
}

static CONV_FWD: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd",
};
static CONV_FWD_BIAS: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_bias",
};
static CONV_FWD_BIAS_RESIDUAL: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_bias_residual",
};
static CONV_FWD_BIAS_SHIFT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_bias_shift",
};
static CONV_BWD_X: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_x",
};
static CONV_BWD_X_ACC: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_x_acc",
};
static CONV_BWD_W: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w",
};
static CONV_BWD_BIAS: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_bias_partial",
};
const TILE: usize = 64;
/// (n, pixel) columns per thread of the bias gradient's first pass.
const BIAS_CHUNK: usize = 256;
/// Depth of the K slices the tiled kernels stage in workgroup memory.
const TILE_K: usize = 16;
/// (n, pixel) columns per split-K chunk of a weight gradient at most.
pub(crate) const CHUNK: usize = 1024;
/// The tiled weight gradient's chunks are sized so its grid has about
/// `Capabilities::tiled_workgroups` workgroups, since each workgroup walks its chunk 16 columns
/// at a time (on an H100, 1024-column chunks made every weight gradient cost ~0.25 ms whatever
/// its size: 64 serial steps), but no fewer columns than this, so the partial sums stay small
/// next to the work.
const TILED_BWD_W_MIN_CHUNK: usize = 128;

/// How the forward convolution runs. `Tiled` is the GPU path; the others are the
/// software-adapter wing's (ops::soft::conv), from the most to the least specialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardPlan {
    /// conv2d_fwd (conv2d_fwd_bias with a bias): 64 x 64 output tiles, K split `splits` ways
    /// (summed by sum_rows_fwd).
    Tiled { splits: usize },
    /// conv2d_fwd_k3s1_sg_x / conv2d_fwd_k3s2_sg_x: x and the packed weights in uniform
    /// windows, the weights shared by subgroup broadcasts (3x3, padding 1).
    SubgroupWindows,
    /// conv2d_fwd_k3s1_sg_rows2 / conv2d_fwd_k1_sg: the packed weights in uniform windows,
    /// shared by subgroup broadcasts.
    SubgroupWeightWindows,
    /// conv2d_fwd_k3s1_ubo_rows2 / conv2d_fwd_k1_ubo: the packed weights in uniform windows.
    WeightWindows,
    /// conv2d_fwd_k3s1_cpu / _k3s2_cpu / _k1_cpu: 8 output channels x 4 pixels x 4 samples per
    /// thread in registers, weights packed.
    Blocked,
    /// conv2d_fwd_direct: any shape, no workgroup memory.
    Direct,
}

/// How the input gradient runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputGradPlan {
    /// conv2d_bwd_x: the transposed GEMM in 64 x 64 tiles, K split `splits` ways.
    Tiled { splits: usize },
    /// Stride 1 in the wing: the forward convolution of dy with the flipped, transposed weights
    /// and padding k - 1 - p, by that shape's forward plan.
    Transposed(ForwardPlan),
    /// conv2d_bwd_x_k3s2_cpu: the stride-2 3x3 gradient in register blocks.
    BlockedStride2,
    /// conv2d_bwd_x_direct: any shape.
    Direct,
}

/// How the weight gradient (and the bias gradient with it) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradPlan {
    /// conv2d_bwd_w: 64 x 64 tiles over chunks of `chunk` (n, pixel) columns, the bias gradient
    /// in the same pass; one sum_rows_fwd adds the chunks.
    Tiled { chunk: usize },
    /// The wing's kernels (ops::soft::conv::WeightGradKernel).
    Soft(WeightGradKernel),
}

/// The kernels of one convolution's three passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    pub forward: ForwardPlan,
    pub input_grad: InputGradPlan,
    pub weight_grad: WeightGradPlan,
}

/// The plan for shape `s` on an adapter with `caps`: a pure function, so a table test pins it
/// without a device and `ddpm info` prints it.
pub fn plan(caps: &Capabilities, s: &ConvShape) -> ConvPlan {
    ConvPlan {
        forward: plan_forward(caps, s),
        input_grad: plan_input_grad(caps, s),
        weight_grad: plan_weight_grad(caps, s),
    }
}

pub fn plan_forward(caps: &Capabilities, s: &ConvShape) -> ForwardPlan {
    if caps.soft_kernels {
        return soft::conv::plan_forward(caps, s);
    }
    let cols = s.n * s.h_out() * s.w_out();
    let (splits, _) = k_splits(caps, s.c_out, cols, s.c_in * s.kernel * s.kernel);
    ForwardPlan::Tiled { splits }
}

pub fn plan_input_grad(caps: &Capabilities, s: &ConvShape) -> InputGradPlan {
    if !caps.soft_kernels {
        let cols = s.n * s.h * s.w;
        let (splits, _) = k_splits(caps, s.c_in, cols, s.c_out * s.kernel * s.kernel);
        InputGradPlan::Tiled { splits }
    } else if s.stride == 1 && s.padding < s.kernel {
        InputGradPlan::Transposed(soft::conv::plan_forward(caps, &transposed(s)))
    } else if s.taps() == (3, 2, 1) {
        InputGradPlan::BlockedStride2
    } else {
        InputGradPlan::Direct
    }
}

pub fn plan_weight_grad(caps: &Capabilities, s: &ConvShape) -> WeightGradPlan {
    if caps.soft_kernels {
        WeightGradPlan::Soft(soft::conv::plan_weight_grad(caps, s))
    } else {
        WeightGradPlan::Tiled {
            chunk: tiled_weight_grad_chunk(caps, s),
        }
    }
}

impl ConvPlan {
    /// The entry points the three passes dispatch for shape `s`, forward first (with a bias, as
    /// every convolution of the models has one).
    pub fn entries(&self, caps: &Capabilities, s: &ConvShape) -> [&'static str; 3] {
        let input_grad = match self.input_grad {
            InputGradPlan::Tiled { .. } => "conv2d_bwd_x",
            InputGradPlan::Transposed(f) => {
                soft::conv::forward_entry(f, caps, &transposed(s), false)
            }
            InputGradPlan::BlockedStride2 => "conv2d_bwd_x_k3s2_cpu",
            InputGradPlan::Direct => "conv2d_bwd_x_direct",
        };
        let weight_grad = match self.weight_grad {
            WeightGradPlan::Tiled { .. } => "conv2d_bwd_w",
            WeightGradPlan::Soft(k) => soft::conv::weight_grad_entry(k, caps, s),
        };
        [
            soft::conv::forward_entry(self.forward, caps, s, true),
            input_grad,
            weight_grad,
        ]
    }
}

/// The stride-1 convolution whose forward pass is `s`'s input gradient: dy [n, c_out, h_out,
/// w_out] with the flipped, transposed weights and padding k - 1 - p.
fn transposed(s: &ConvShape) -> ConvShape {
    ConvShape {
        n: s.n,
        c_in: s.c_out,
        h: s.h_out(),
        w: s.w_out(),
        c_out: s.c_in,
        kernel: s.kernel,
        stride: 1,
        padding: s.kernel - 1 - s.padding,
    }
}

fn params(s: &ConvShape, has_bias: bool) -> ConvParams {
    ConvParams {
        n: s.n as u32,
        c_in: s.c_in as u32,
        h: s.h as u32,
        w: s.w as u32,
        c_out: s.c_out as u32,
        kernel: s.kernel as u32,
        stride: s.stride as u32,
        padding: s.padding as u32,
        h_out: s.h_out() as u32,
        w_out: s.w_out() as u32,
        has_bias: has_bias as u32,
        chunk: CHUNK as u32,
        partial_row: (s.c_out * s.c_in * s.kernel * s.kernel) as u32,
        ..ConvParams::zeroed()
    }
}

fn grid(rows: usize, cols: usize, z: usize) -> [u32; 3] {
    [
        cols.div_ceil(TILE) as u32,
        rows.div_ceil(TILE) as u32,
        z as u32,
    ]
}

/// The shape of a convolution of x [n, c_in, h, w] with w [c_out, c_in, k, k].
pub fn shape_of(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> ConvShape {
    let [n, c_in, h, w] = x.shape[..] else {
        panic!("conv2d: x must be NCHW, got {:?}", x.shape)
    };
    let [c_out, wc_in, k, k2] = weight.shape[..] else {
        panic!("conv2d: weight must be 4-D")
    };
    assert!(
        wc_in == c_in && k == k2,
        "conv2d: weight {:?} does not fit x {:?}",
        weight.shape,
        x.shape
    );
    ConvShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kernel: k,
        stride,
        padding,
    }
}

pub fn conv2d(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Tensor {
    let s = shape_of(x, weight, stride, padding);
    match plan_forward(&gpu.caps(), &s) {
        ForwardPlan::Tiled { .. } => {
            let gemm = (
                s.c_out,
                s.n * s.h_out() * s.w_out(),
                s.c_in * s.kernel * s.kernel,
            );
            let shape = [s.n, s.c_out, s.h_out(), s.w_out()];
            match bias {
                Some(bias) => {
                    let inputs = [("x", x), ("weight", weight), ("bias", bias)];
                    tiled_split_k(gpu, &CONV_FWD_BIAS, &s, gemm, &inputs, &shape)
                }
                None => {
                    let inputs = [("x", x), ("weight", weight)];
                    tiled_split_k(gpu, &CONV_FWD, &s, gemm, &inputs, &shape)
                }
            }
        }
        plan => {
            let weights = Weights {
                tensor: weight,
                shape: &s,
                pack: Pack::Forward,
            };
            soft::conv::forward(gpu, plan, &s, x, weights, bias)
        }
    }
}

/// What a convolution adds to its output after the bias. The GPU path adds it in the forward
/// kernel's epilogue (split 0 adds it, before the splits are summed), which saves a pass over the
/// output and a dispatch; the software wing adds it in a pass of its own.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'t> {
    /// + addend[n, co, oy, ox], the output's shape: a residual connection.
    Residual(&'t Tensor),
    /// + addend[n, co] at every pixel: a ResBlock's time projection.
    ChannelShift(&'t Tensor),
}

/// conv2d with a bias and an epilogue: y = conv(x) + bias + addend.
pub fn conv2d_epilogue(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding): (usize, usize),
    epilogue: Epilogue,
) -> Tensor {
    let s = shape_of(x, weight, stride, padding);
    let shape = [s.n, s.c_out, s.h_out(), s.w_out()];
    let (kernel, addend) = match epilogue {
        Epilogue::Residual(r) => {
            assert_eq!(
                r.shape, shape,
                "conv2d: the residual must have the output's shape"
            );
            (&CONV_FWD_BIAS_RESIDUAL, r)
        }
        Epilogue::ChannelShift(t) => {
            assert_eq!(t.numel(), s.n * s.c_out, "conv2d: the shift is [n, c_out]");
            (&CONV_FWD_BIAS_SHIFT, t)
        }
    };
    match plan_forward(&gpu.caps(), &s) {
        ForwardPlan::Tiled { .. } => {
            let gemm = (
                s.c_out,
                s.n * s.h_out() * s.w_out(),
                s.c_in * s.kernel * s.kernel,
            );
            let inputs = [
                ("x", x),
                ("weight", weight),
                ("bias", bias),
                ("addend", addend),
            ];
            tiled_split_k(gpu, kernel, &s, gemm, &inputs, &shape)
        }
        _ => {
            let y = conv2d(gpu, x, weight, Some(bias), stride, padding);
            match epilogue {
                Epilogue::Residual(r) => super::arith::add(gpu, &y, r),
                Epilogue::ChannelShift(t) => super::unet_misc::add_channel_bias(gpu, &y, t),
            }
        }
    }
}

/// Output tiles of a tiled GEMM with `rows` x `cols` outputs.
fn tiles(rows: usize, cols: usize) -> usize {
    rows.div_ceil(TILE) * cols.div_ceil(TILE)
}

/// Splits of the K axis for the tiled forward and input-gradient kernels, and the K rows of
/// each (a multiple of the slice depth): enough workgroups to keep a big GPU busy (a 64 x 64
/// tile walks K in serial steps, so a small grid is latency-bound), each split still at least
/// 8 slices deep. One split (the whole K) where the grid is big enough already.
fn k_splits(caps: &Capabilities, rows: usize, cols: usize, k_total: usize) -> (usize, usize) {
    let slices = k_total.div_ceil(TILE_K);
    let wanted = caps
        .tiled_workgroups
        .div_ceil(tiles(rows, cols))
        .min(slices / 8)
        .max(1);
    let chunk = slices.div_ceil(wanted) * TILE_K;
    (k_total.div_ceil(chunk), chunk)
}

/// A tiled forward or input-gradient kernel over its (rows, cols, K) GEMM, split along K where
/// the grid is small: each split writes its own copy of the output (bound as `out`) and
/// sum_rows adds them. Returns the output in `shape`.
fn tiled_split_k(
    gpu: &Gpu,
    kernel: &'static Kernel,
    s: &ConvShape,
    (rows, cols, k_total): (usize, usize, usize),
    inputs: &[(&str, &Tensor)],
    shape: &[usize],
) -> Tensor {
    let (splits, chunk) = k_splits(&gpu.caps(), rows, cols, k_total);
    let out = gpu.empty(&[splits, shape.iter().product()]);
    let mut bindings = inputs.to_vec();
    bindings.push(("out", &out));
    let p = ConvParams {
        chunk: chunk as u32,
        ..params(s, false)
    };
    gpu.dispatch(kernel, &p, &bindings, grid(rows, cols, splits));
    if splits == 1 {
        out.reshape(shape)
    } else {
        super::reduce::sum_rows(gpu, &out).reshape(shape)
    }
}

pub fn conv2d_backward_x(gpu: &Gpu, weight: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    conv2d_backward_x_into(gpu, weight, dy, s, None)
}

/// Whether `conv2d_backward_x_into` can add dx onto a gradient x already has (the GPU path's
/// tiled kernel or its split-K sum; the software wing writes dx alone).
pub fn accumulates_dx(caps: &Capabilities, s: &ConvShape) -> bool {
    matches!(plan_input_grad(caps, s), InputGradPlan::Tiled { .. })
}

/// The input gradient, added onto `into` in place where given (where `accumulates_dx` holds):
/// by the tiled kernel when K is not split, else by the sum of the splits.
pub fn conv2d_backward_x_into(
    gpu: &Gpu,
    weight: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
    into: Option<Tensor>,
) -> Tensor {
    match plan_input_grad(&gpu.caps(), s) {
        InputGradPlan::Tiled { .. } => {
            let gemm = (s.c_in, s.n * s.h * s.w, s.c_out * s.kernel * s.kernel);
            let shape = [s.n, s.c_in, s.h, s.w];
            let inputs = [("weight", weight), ("dy", dy)];
            let Some(into) = into else {
                return tiled_split_k(gpu, &CONV_BWD_X, s, gemm, &inputs, &shape);
            };
            assert_eq!(into.shape, shape, "conv2d_backward_x_into: dx's shape");
            let (splits, chunk) = k_splits(&gpu.caps(), gemm.0, gemm.1, gemm.2);
            let p = ConvParams {
                chunk: chunk as u32,
                ..params(s, false)
            };
            if splits == 1 {
                let bindings = [("weight", weight), ("dy", dy), ("out", &into)];
                gpu.dispatch(&CONV_BWD_X_ACC, &p, &bindings, grid(gemm.0, gemm.1, 1));
            } else {
                let parts = gpu.empty(&[splits, into.numel()]);
                let bindings = [("weight", weight), ("dy", dy), ("out", &parts)];
                gpu.dispatch(&CONV_BWD_X, &p, &bindings, grid(gemm.0, gemm.1, splits));
                super::reduce::sum_rows_into(gpu, &parts, &into);
            }
            into
        }
        _ if into.is_some() => panic!("the wing's input-gradient kernels write dx alone"),
        InputGradPlan::Transposed(forward) => {
            let weights = Weights {
                tensor: weight,
                shape: s,
                pack: Pack::TransposedFlipped,
            };
            soft::conv::forward(gpu, forward, &transposed(s), dy, weights, None)
        }
        InputGradPlan::BlockedStride2 => soft::conv::input_grad_blocked_stride2(gpu, weight, dy, s),
        InputGradPlan::Direct => soft::conv::input_grad_direct(gpu, weight, dy, s),
    }
}

/// Columns (n, pixel) per split-K chunk of the tiled weight gradient.
fn tiled_weight_grad_chunk(caps: &Capabilities, s: &ConvShape) -> usize {
    let columns = s.n * s.h_out() * s.w_out();
    let chunks = caps
        .tiled_workgroups
        .div_ceil(tiles(s.c_out, s.c_in * s.kernel * s.kernel));
    columns
        .div_ceil(chunks)
        .next_multiple_of(TILE_K)
        .clamp(TILED_BWD_W_MIN_CHUNK, CHUNK)
}

pub fn conv2d_backward_w(gpu: &Gpu, x: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    weight_grad(gpu, x, dy, s, false).0
}

/// The weight and bias gradients together. The tiled kernel (GPUs) sums the bias gradient in
/// the weight gradient's pass, so both share one partial buffer and one reduction: two
/// dispatches instead of four, and a GPU step is bound by its dispatches.
pub fn conv2d_backward_w_bias(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> (Tensor, Tensor) {
    let (dw, db) = weight_grad(gpu, x, dy, s, true);
    (dw, db.expect("asked for the bias gradient"))
}

fn weight_grad(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
    with_bias: bool,
) -> (Tensor, Option<Tensor>) {
    let chunk = match plan_weight_grad(&gpu.caps(), s) {
        WeightGradPlan::Soft(kernel) => {
            return soft::conv::weight_grad(gpu, kernel, x, dy, s, with_bias)
        }
        WeightGradPlan::Tiled { chunk } => chunk,
    };
    let k_cols = s.c_in * s.kernel * s.kernel;
    let weights = s.c_out * k_cols;
    // The bias gradient becomes a view into the sums: its start keeps the binding alignment.
    let align = (gpu.caps().storage_align as usize / 4).max(1);
    let bias_offset = weights.next_multiple_of(align);
    let row = if with_bias {
        bias_offset + s.c_out
    } else {
        weights
    };
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(chunk);
    let partial = gpu.empty(&[chunks, row]);
    let p = ConvParams {
        chunk: chunk as u32,
        partial_row: row as u32,
        bias_offset: bias_offset as u32,
        ..params(s, with_bias)
    };
    gpu.dispatch(
        &CONV_BWD_W,
        &p,
        &[("x", x), ("dy", dy), ("out", &partial)],
        grid(s.c_out, k_cols, chunks),
    );
    // Only the optimizer reads a weight gradient: its sum can wait and share a dispatch.
    let sums = super::reduce::sum_rows_later(gpu, &partial);
    (
        sums.slice_flat(0, &[s.c_out, s.c_in, s.kernel, s.kernel]),
        with_bias.then(|| sums.slice_flat(bias_offset, &[s.c_out])),
    )
}

/// The bias gradient alone, in two passes: partial sums over chunks of (n, pixel), then a
/// reduction (the wing's weight-gradient plans that do not sum it themselves use it too).
pub fn conv2d_backward_bias(gpu: &Gpu, dy: &Tensor, s: &ConvShape) -> Tensor {
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(BIAS_CHUNK);
    let partial = gpu.empty(&[chunks, s.c_out]);
    let p = ConvParams {
        chunk: BIAS_CHUNK as u32,
        ..params(s, false)
    };
    gpu.dispatch(
        &CONV_BWD_BIAS,
        &p,
        &[("dy", dy), ("out", &partial)],
        gpu.groups_1d(chunks * s.c_out),
    );
    super::reduce::sum_rows(gpu, &partial)
}

struct Conv2dBackward {
    x: Tensor,
    weight: Tensor,
    shape: ConvShape,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.backward_into(gpu, dy, needs, &mut [])
    }
    fn backward_into(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        needs: &[bool],
        into: &mut [Option<Tensor>],
    ) -> Vec<Option<Tensor>> {
        let s = &self.shape;
        let dx_into = take_earlier(into, 0, accumulates_dx(&gpu.caps(), s));
        let dx = needs[0].then(|| conv2d_backward_x_into(gpu, &self.weight, dy, s, dx_into));
        let wants_bias = needs.get(2) == Some(&true);
        let (dw, db) = match (needs[1], wants_bias) {
            (true, true) => {
                let (dw, db) = conv2d_backward_w_bias(gpu, &self.x, dy, s);
                (Some(dw), Some(db))
            }
            (true, false) => (Some(conv2d_backward_w(gpu, &self.x, dy, s)), None),
            (false, true) => (None, Some(conv2d_backward_bias(gpu, dy, s))),
            (false, false) => (None, None),
        };
        let mut grads = vec![dx, dw];
        if needs.len() == 3 {
            grads.push(db);
        }
        grads
    }
}

/// The differentiable epilogue's addend (see `Epilogue`).
#[derive(Clone, Copy)]
pub enum EpilogueVar<'v> {
    Residual(&'v Var),
    ChannelShift(&'v Var),
}

struct Conv2dEpilogueBackward {
    conv: Conv2dBackward,
    channel_shift: bool,
}

impl Backward for Conv2dEpilogueBackward {
    fn name(&self) -> &'static str {
        "conv2d_epilogue"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.backward_into(gpu, dy, needs, &mut [])
    }
    fn backward_into(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        needs: &[bool],
        into: &mut [Option<Tensor>],
    ) -> Vec<Option<Tensor>> {
        let conv_into = match into.len() {
            0 => &mut [][..],
            _ => &mut into[..3],
        };
        let mut grads = self.conv.backward_into(gpu, dy, &needs[..3], conv_into);
        grads.push(needs[3].then(|| match self.channel_shift {
            true => super::unet_misc::add_channel_bias_backward(gpu, dy),
            false => dy.clone(),
        }));
        grads
    }
}

/// Differentiable conv2d with a bias and an epilogue: conv(x) + bias + addend in one pass on
/// the GPU path.
pub fn conv2d_epilogue_var(
    cx: &mut Ctx,
    x: &Var,
    weight: &Var,
    bias: &Var,
    (stride, padding): (usize, usize),
    epilogue: EpilogueVar,
) -> Var {
    let (addend, channel_shift) = match epilogue {
        EpilogueVar::Residual(v) => (v, false),
        EpilogueVar::ChannelShift(v) => (v, true),
    };
    let tensor_epilogue = match channel_shift {
        true => Epilogue::ChannelShift(&addend.tensor),
        false => Epilogue::Residual(&addend.tensor),
    };
    let y = conv2d_epilogue(
        cx.gpu,
        &x.tensor,
        &weight.tensor,
        &bias.tensor,
        (stride, padding),
        tensor_epilogue,
    );
    let node = Conv2dEpilogueBackward {
        conv: Conv2dBackward {
            x: x.tensor.clone(),
            weight: weight.tensor.clone(),
            shape: shape_of(&x.tensor, &weight.tensor, stride, padding),
        },
        channel_shift,
    };
    cx.record(node, &[x, weight, bias, addend], y)
}

/// Differentiable conv2d; `bias` is optional.
pub fn conv2d_var(
    cx: &mut Ctx,
    x: &Var,
    weight: &Var,
    bias: Option<&Var>,
    stride: usize,
    padding: usize,
) -> Var {
    let y = conv2d(
        cx.gpu,
        &x.tensor,
        &weight.tensor,
        bias.map(|b| &b.tensor),
        stride,
        padding,
    );
    let shape = shape_of(&x.tensor, &weight.tensor, stride, padding);
    let node = Conv2dBackward {
        x: x.tensor.clone(),
        weight: weight.tensor.clone(),
        shape,
    };
    match bias {
        Some(b) => cx.record(node, &[x, weight, b], y),
        None => cx.record(node, &[x, weight], y),
    }
}
