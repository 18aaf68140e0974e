//! 2-D convolution (shaders/conv.wgsl) as an implicit GEMM, forward and backward. Weight and
//! bias gradients are sums over the batch, done as split-K partials plus a second pass.

use bytemuck::{Pod, Zeroable};

use super::window;
use crate::autograd::{Backward, Ctx, Var};
use crate::cpu::conv::ConvShape;
use crate::gpu::{Gpu, Kernel};
use crate::shaders::{CONV, CONV_SUBGROUP};
use crate::tensor::Tensor;

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
    flip: u32,
    pack_width: u32,
    block: u32,
    ci_begin: u32,
    ci_end: u32,
    accumulate: u32,
    plane_stride: u32,
    row_stride: u32,
    border: u32,
    x_begin: u32,
    x_end: u32,
    x_plane_stride: u32,
    x_row: u32,
    partial_row: u32,
    bias_offset: u32,
    x_window_planes: u32,
    x_windows_per_sample: u32,
    sample: u32,
    x_shift0: u32,
    x_shift1: u32,
    x_shift2: u32,
    x_shift3: u32,
    window_samples: u32,
    _pad: [u32; 3],
}

static CONV_FWD: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd",
};
static CONV_BWD_X: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_x",
};
static CONV_BWD_W: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w",
};
static CONV_BWD_BIAS: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_bias_partial",
};
static CONV_FWD_DIRECT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_direct",
};
static CONV_BWD_X_DIRECT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_x_direct",
};
static CONV_FLIP_WEIGHT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_flip_weight",
};
static CONV_BWD_W_DIRECT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w_direct",
};
static CONV_FWD_K3S1_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_k3s1_cpu",
};
static CONV_FWD_K3S2_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_k3s2_cpu",
};
static CONV_FWD_K1_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_k1_cpu",
};
static CONV_BWD_X_K3S2_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_x_k3s2_cpu",
};
static CONV_BWD_W_K3S1_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w_k3s1_cpu",
};
static CONV_BWD_W_K3S2_CPU: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w_k3s2_cpu",
};
static CONV_FWD_K3S1_UBO_ROWS2: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_k3s1_ubo_rows2",
};
static CONV_FWD_K3S1_SG_X: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_fwd_k3s1_sg_x",
};
static CONV_FWD_K3S1_SG_ROWS2: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_fwd_k3s1_sg_rows2",
};
static CONV_BWD_W_K3S1_SG: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_bwd_w_k3s1_sg",
};
static CONV_BWD_W_K1_SG: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_bwd_w_k1_sg",
};
static CONV_FWD_K3S2_SG_X: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_fwd_k3s2_sg_x",
};
static CONV_FWD_K1_SG_X: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_fwd_k1_sg_x",
};
static CONV_FWD_K1_SG: Kernel = Kernel {
    shader: &CONV_SUBGROUP,
    entry: "conv2d_fwd_k1_sg",
};
static CONV_FWD_K1_UBO: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_fwd_k1_ubo",
};
static CONV_BWD_W_K3S1_UBO: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w_k3s1_ubo",
};
static CONV_BWD_W_K1_UBO: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_bwd_w_k1_ubo",
};
static CONV_PAD_PLANES: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_pad_planes",
};
static CONV_DILATE2: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_dilate2",
};
static CONV_PACK_WEIGHT: Kernel = Kernel {
    shader: &CONV,
    entry: "conv2d_pack_weight",
};
const TILE: usize = 64;
/// Depth of the K slices the tiled kernels stage in workgroup memory.
const TILE_K: usize = 16;
/// The register-blocked CPU kernels: output channels per block, pixels per thread, samples per
/// thread, threads per workgroup (shaders/conv.wgsl).
const CPU_BLOCK: usize = 8;
const CPU_PX: usize = 4;
const CPU_NB: usize = 4;
const CPU_WG: usize = 64;
/// The uniform-window kernels: output channels per thread of conv2d_fwd_k1_ubo (the 3x3 kernel
/// takes half). Their windows (`wuni`, `xuni`) are ops::window's.
const UBO_BLOCK: usize = 32;
/// conv2d_bwd_w_k3s*_cpu: input channels per workgroup (16 threads, two each) and the number of
/// split-K chunks of output rows.
const CPU_BWD_W_CHANNELS: usize = 32;
const CPU_BWD_W_CHUNKS: usize = 24;
/// Rows x columns of the GEMM covered by a workgroup of the direct (CPU-adapter) variants.
const DIRECT_TILE: (usize, usize) = (16, 128);

/// Workgroup-memory tiles for GPUs, or the barrier-free direct kernels for CPU adapters (see
/// ops::matmul::MatmulVariant). `DirectUniform` is `Direct` with the stride-1 3x3 and 1x1
/// convolutions reading their weights (and the weight gradients x and dy) from 64 KiB
/// uniform-buffer windows (the *_ubo kernels, ops::window), which CPU drivers gather in
/// straight-line code instead of a loop over the lanes; it sums the input channels in chunks, so
/// its rounding differs slightly from the others'. `DirectSubgroup` is `DirectUniform` with the
/// *_sg kernels (shaders/conv_subgroup.wgsl), which share the values every lane of a subgroup
/// needs (weights, dy) by subgroup broadcasts instead of gathering them in every lane, and read
/// x through windows as well in the 3x3 forward convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    Tiled,
    Direct,
    DirectUniform,
    DirectSubgroup,
}

impl ConvVariant {
    pub fn for_adapter(gpu: &Gpu) -> ConvVariant {
        if !gpu.cpu_kernels() {
            ConvVariant::Tiled
        } else if uniform_windows_supported(gpu) && gpu.subgroups() {
            ConvVariant::DirectSubgroup
        } else if uniform_windows_supported(gpu) {
            ConvVariant::DirectUniform
        } else {
            ConvVariant::Direct
        }
    }

    fn is_direct(self) -> bool {
        !matches!(self, ConvVariant::Tiled)
    }

    /// `sg` (a subgroup twin of the uniform-window kernel `ubo`) for `DirectSubgroup`, else `ubo`.
    fn window_kernel(self, ubo: &'static Kernel, sg: &'static Kernel) -> &'static Kernel {
        if self == ConvVariant::DirectSubgroup {
            sg
        } else {
            ubo
        }
    }

    /// Whether the uniform-window kernels apply (with or without subgroups).
    fn uses_windows(self) -> bool {
        matches!(
            self,
            ConvVariant::DirectUniform | ConvVariant::DirectSubgroup
        )
    }

    fn pick(
        self,
        tiled: &'static Kernel,
        direct: &'static Kernel,
        rows: usize,
        cols: usize,
        z: usize,
    ) -> (&'static Kernel, [u32; 3]) {
        match self {
            ConvVariant::Tiled => (tiled, grid(rows, cols, z)),
            ConvVariant::Direct | ConvVariant::DirectUniform | ConvVariant::DirectSubgroup => (
                direct,
                [
                    cols.div_ceil(DIRECT_TILE.1) as u32,
                    rows.div_ceil(DIRECT_TILE.0) as u32,
                    z as u32,
                ],
            ),
        }
    }
}
/// (n, pixel) columns per split-K chunk of the direct weight gradient: enough chunks to fill
/// both cores, few enough that the second pass is cheap.
const CHUNK: usize = 1024;
/// The tiled (GPU) weight gradient's chunks are sized so its grid has about
/// `tiled_workgroups()` workgroups, since each workgroup walks its chunk 16 columns at a time (on
/// an H100, 1024-column chunks made every weight gradient cost ~0.25 ms whatever its size: 64
/// serial steps), but no fewer columns than this, so the partial sums stay small next to the work.
const TILED_BWD_W_MIN_CHUNK: usize = 128;
/// (n, pixel) columns per thread of the bias gradient's first pass.
const BIAS_CHUNK: usize = 256;

/// How many workgroups the tiled kernels' split-K aims for: 512, or DDPM_TILED_WORKGROUPS (a
/// benchmarking knob: 1 turns the forward and input-gradient splits off and gives the weight
/// gradient its old 1024-column chunks, for comparing on one card).
fn tiled_workgroups() -> usize {
    static TARGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *TARGET.get_or_init(|| {
        std::env::var("DDPM_TILED_WORKGROUPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(512)
    })
}

/// `params` with `chunk` set (split-K depth or columns per chunk, depending on the kernel).
fn chunked_params(s: &ConvShape, has_bias: bool, chunk: usize) -> ConvParams {
    ConvParams {
        chunk: chunk as u32,
        ..params(s, has_bias)
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
        flip: 0,
        pack_width: CPU_BLOCK as u32,
        block: 0,
        ci_begin: 0,
        ci_end: 0,
        accumulate: 0,
        plane_stride: 0,
        row_stride: 0,
        border: 0,
        x_begin: 0,
        x_end: 0,
        x_plane_stride: 0,
        x_row: 0,
        partial_row: (s.c_out * s.c_in * s.kernel * s.kernel) as u32,
        bias_offset: 0,
        x_window_planes: 0,
        x_windows_per_sample: 1,
        sample: 0,
        x_shift0: 0,
        x_shift1: 0,
        x_shift2: 0,
        x_shift3: 0,
        window_samples: 1,
        _pad: [0; 3],
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
    conv2d_with(
        gpu,
        ConvVariant::for_adapter(gpu),
        x,
        weight,
        bias,
        stride,
        padding,
    )
}

/// `conv2d` with the implementation chosen by the caller (tests cover both on any adapter).
pub fn conv2d_with(
    gpu: &Gpu,
    variant: ConvVariant,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Tensor {
    let s = shape_of(x, weight, stride, padding);
    if variant.is_direct() {
        if let (true, Some(kernel)) = (variant.uses_windows(), ubo_fwd_kernel(gpu, &s)) {
            let packed = pack_weight(gpu, weight, &s, Pack::Forward, kernel.1);
            return conv_ubo(gpu, variant, kernel, &s, x, &packed, bias);
        }
        // The subgroup kernels also take the shapes the uniform-window ones do not: stride 2,
        // and a last block of output channels that is not full (the UNet's 1- or 2-channel
        // output convolution, 0.3 GFLOP/s in conv2d_fwd_k3s1_cpu's 8-channel blocks).
        let width = if s.kernel == 1 {
            UBO_BLOCK
        } else {
            UBO_BLOCK / 2
        };
        if variant == ConvVariant::DirectSubgroup
            && uniform_windows_supported(gpu)
            && (width * s.kernel * s.kernel * 4)
                .is_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize)
        {
            let packed = pack_weight(gpu, weight, &s, Pack::Forward, width);
            if let Some(y) = conv_sg_x(gpu, &s, x, &packed, bias) {
                return y;
            }
        }
        if let Some(kernel) = cpu_fwd_kernel(&s) {
            let packed = pack_weight(gpu, weight, &s, Pack::Forward, CPU_BLOCK);
            return conv_cpu(gpu, kernel, &s, x, &packed, bias);
        }
    }
    let y_shape = [s.n, s.c_out, s.h_out(), s.w_out()];
    let cols = s.n * s.h_out() * s.w_out();
    if variant == ConvVariant::Tiled {
        let gemm = (s.c_out, cols, s.c_in * s.kernel * s.kernel);
        let inputs = [x, weight, bias.unwrap_or(weight)];
        return tiled_split_k(gpu, &CONV_FWD, &s, bias.is_some(), gemm, &inputs, &y_shape);
    }
    let y = gpu.empty(&y_shape);
    let p = params(&s, bias.is_some());
    let (kernel, groups) = variant.pick(&CONV_FWD, &CONV_FWD_DIRECT, s.c_out, cols, 1);
    // dy is unused by the forward entry points, so it is not bound.
    gpu.dispatch(kernel, &p, &[x, weight, bias.unwrap_or(weight), &y], groups);
    y
}

/// Output tiles of a tiled GEMM with `rows` x `cols` outputs.
fn tiles(rows: usize, cols: usize) -> usize {
    rows.div_ceil(TILE) * cols.div_ceil(TILE)
}

/// Splits of the K axis for the tiled forward and input-gradient kernels, and the K rows of
/// each (a multiple of the slice depth): enough workgroups to keep a big GPU busy (a 64 x 64
/// tile walks K in serial steps, so a small grid is latency-bound), each split still at least
/// 8 slices deep. One split (the whole K) where the grid is big enough already.
fn k_splits(rows: usize, cols: usize, k_total: usize) -> (usize, usize) {
    let slices = k_total.div_ceil(TILE_K);
    let wanted = tiled_workgroups()
        .div_ceil(tiles(rows, cols))
        .min(slices / 8)
        .max(1);
    let chunk = slices.div_ceil(wanted) * TILE_K;
    (k_total.div_ceil(chunk), chunk)
}

/// A tiled forward or input-gradient kernel over its (rows, cols, K) GEMM, split along K where
/// the grid is small: each split writes its own copy of the output (bound after `inputs`) and
/// sum_rows adds them. Returns the output in `shape`.
fn tiled_split_k(
    gpu: &Gpu,
    kernel: &'static Kernel,
    s: &ConvShape,
    has_bias: bool,
    (rows, cols, k_total): (usize, usize, usize),
    inputs: &[&Tensor],
    shape: &[usize],
) -> Tensor {
    let (splits, chunk) = k_splits(rows, cols, k_total);
    let out = gpu.empty(&[splits, shape.iter().product()]);
    let mut bindings = inputs.to_vec();
    bindings.push(&out);
    let p = chunked_params(s, has_bias, chunk);
    gpu.dispatch(kernel, &p, &bindings, grid(rows, cols, splits));
    if splits == 1 {
        out.reshape(shape)
    } else {
        super::reduce::sum_rows(gpu, &out).reshape(shape)
    }
}

/// The register-blocked CPU-adapter forward kernel for this shape, where there is one.
fn cpu_fwd_kernel(s: &ConvShape) -> Option<&'static Kernel> {
    match (s.kernel, s.stride, s.padding) {
        (3, 1, _) => Some(&CONV_FWD_K3S1_CPU),
        (3, 2, _) => Some(&CONV_FWD_K3S2_CPU),
        (1, 1, 0) => Some(&CONV_FWD_K1_CPU),
        _ => None,
    }
}

/// How conv2d_pack_weight lays out the weights.
#[derive(Clone, Copy)]
enum Pack {
    /// Rows c_out, inputs c_in: the forward convolution.
    Forward,
    /// Rows c_in, inputs c_out, taps flipped: the stride-1 input-gradient convolution.
    TransposedFlipped,
    /// Rows c_in, inputs c_out: conv2d_bwd_x_k3s2_cpu.
    Transposed,
}

/// `weight` packed for the CPU kernels: [ceil(rows / width)][inputs][k * k][width].
fn pack_weight(gpu: &Gpu, weight: &Tensor, s: &ConvShape, pack: Pack, width: usize) -> Tensor {
    let (rows, inputs) = if !matches!(pack, Pack::Forward) {
        (s.c_in, s.c_out)
    } else {
        (s.c_out, s.c_in)
    };
    let len = rows.div_ceil(width) * width * inputs * s.kernel * s.kernel;
    // The *_ubo kernels (widths 16 and 32) bind a whole window from each chunk's start: the
    // tail keeps the last window inside the buffer. The storage-weight kernels (width 8) need none.
    let tail = if width == CPU_BLOCK {
        0
    } else {
        window::WINDOW_FLOATS
    };
    let packed = gpu.empty(&[len + tail]);
    let p = ConvParams {
        flip: pack as u32,
        pack_width: width as u32,
        ..params(s, false)
    };
    gpu.dispatch(
        &CONV_PACK_WEIGHT,
        &p,
        &[weight, &packed],
        gpu.groups_1d(len),
    );
    packed
}

/// Whether the adapter binds 64 KiB uniform windows at the offsets the *_ubo kernels use (a
/// multiple of one input channel's packed weights, 1x1 or 3x3).
fn uniform_windows_supported(gpu: &Gpu) -> bool {
    let align = gpu.limits.min_uniform_buffer_offset_alignment as usize;
    window::supported(gpu) && (UBO_BLOCK * 4).is_multiple_of(align)
}

/// The uniform-window forward kernel for shape `s` and its block of output channels, where there
/// is one: stride-1 3x3, or 1x1 without padding, with whole blocks of output channels.
fn ubo_fwd_kernel(gpu: &Gpu, s: &ConvShape) -> Option<(&'static Kernel, usize)> {
    let (kernel, width) = match (s.kernel, s.stride, s.padding) {
        (3, 1, _) => (&CONV_FWD_K3S1_UBO_ROWS2, UBO_BLOCK / 2),
        (1, 1, 0) => (&CONV_FWD_K1_UBO, UBO_BLOCK),
        _ => return None,
    };
    let align = gpu.limits.min_uniform_buffer_offset_alignment as usize;
    let fits = s.c_out.is_multiple_of(width)
        && uniform_windows_supported(gpu)
        && (width * s.kernel * s.kernel * 4).is_multiple_of(align)
        && ubo_items(kernel, s).div_ceil(CPU_WG)
            <= gpu.limits.max_compute_workgroups_per_dimension as usize;
    fits.then_some((kernel, width))
}

/// Threads of a uniform-window forward kernel.
fn ubo_items(kernel: &'static Kernel, s: &ConvShape) -> usize {
    if std::ptr::eq(kernel, &CONV_FWD_K3S1_UBO_ROWS2)
        || std::ptr::eq(kernel, &CONV_FWD_K3S1_SG_ROWS2)
    {
        s.n * s.h_out().div_ceil(2) * s.w_out().div_ceil(CPU_PX)
    } else {
        thread_items(s, 1)
    }
}

/// Threads of a CPU forward kernel: one per `samples` samples x 4 output pixels of a row (1x1:
/// 4 consecutive pixels of the flattened image).
fn thread_items(s: &ConvShape, samples: usize) -> usize {
    let groups = if s.kernel == 1 {
        (s.h * s.w).div_ceil(CPU_PX)
    } else {
        s.h_out() * s.w_out().div_ceil(CPU_PX)
    };
    s.n.div_ceil(samples) * groups
}

/// A uniform-window forward kernel over shape `s`: a dispatch per (block of `width` output
/// channels, chunk of input channels whose weights fit the 64 KiB window), the chunks after the
/// first adding on. With `DirectSubgroup`, the stride-1 3x3 convolution goes to conv_sg_x where
/// x fits its windows, and the rest to the kernels' subgroup twins.
fn conv_ubo(
    gpu: &Gpu,
    variant: ConvVariant,
    (kernel, width): (&'static Kernel, usize),
    s: &ConvShape,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
) -> Tensor {
    let kernel = if std::ptr::eq(kernel, &CONV_FWD_K3S1_UBO_ROWS2) {
        if variant == ConvVariant::DirectSubgroup {
            if let Some(y) = conv_sg_x(gpu, s, x, packed, bias) {
                return y;
            }
        }
        variant.window_kernel(kernel, &CONV_FWD_K3S1_SG_ROWS2)
    } else {
        if variant == ConvVariant::DirectSubgroup {
            if let Some(y) = conv_sg_x(gpu, s, x, packed, bias) {
                return y;
            }
        }
        variant.window_kernel(kernel, &CONV_FWD_K1_SG)
    };
    let y = gpu.empty(&[s.n, s.c_out, s.h_out(), s.w_out()]);
    let items = ubo_items(kernel, s);
    let per_channel = width * s.kernel * s.kernel;
    let chunks = s.c_in.div_ceil(window::WINDOW_FLOATS / per_channel);
    let chunk = s.c_in.div_ceil(chunks);
    for block in 0..s.c_out / width {
        for (i, ci_begin) in (0..s.c_in).step_by(chunk).enumerate() {
            let window = window::view(packed, (block * s.c_in + ci_begin) * per_channel);
            let p = ConvParams {
                block: block as u32,
                ci_begin: ci_begin as u32,
                ci_end: (ci_begin + chunk).min(s.c_in) as u32,
                accumulate: (i > 0) as u32,
                ..params(s, bias.is_some())
            };
            // Without a bias the bias binding holds x and is not read.
            gpu.dispatch(
                kernel,
                &p,
                &[x, bias.unwrap_or(x), &y, &window],
                [items.div_ceil(CPU_WG) as u32, 1, 1],
            );
        }
    }
    y
}

/// The 3x3 convolution with padding 1 by conv2d_fwd_k3s1_sg_x (stride 1) or
/// conv2d_fwd_k3s2_sg_x (stride 2), or the 1x1 one by conv2d_fwd_k1_sg_x (x as well as the
/// packed weights in uniform windows, the weights shared by subgroup broadcasts), or None for
/// other shapes and where one x plane does not fit a window. x goes through the windows as it
/// is where its rows (3x3, stride 1) or planes (1x1) are a multiple of 4 floats (stride 2:
/// always), else as a copy with them padded to one. A dispatch covers a run of
/// output blocks (16 channels for 3x3, 32 for 1x1) whose weights share the weight window and a
/// chunk of input channels, for up to four samples: four x windows hold the chunk's planes of
/// one sample, two of two or one of four, whichever fits. Chunks after the first add on.
fn conv_sg_x(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
) -> Option<Tensor> {
    const X_WINDOWS: usize = 4;
    const LANES: usize = 8;
    // The kernel, its block of output channels, the float multiple its rows must be (the
    // 3x3's middle 4 inputs of a row are one vec4; the 1x1's 4 pixels are one of a plane) and
    // its threads per sample.
    let (kernel, width, row) = match (s.kernel, s.stride, s.padding) {
        (3, 1, 1) => (&CONV_FWD_K3S1_SG_X, UBO_BLOCK / 2, s.w.next_multiple_of(4)),
        // Stride 2 gathers each float on its own: x as it is.
        (3, 2, 1) => (&CONV_FWD_K3S2_SG_X, UBO_BLOCK / 2, s.w),
        // Storage loads of x cost less than the windows' copy and bookkeeping where they are not
        // lane-looped (Mesa 25.0.7: 96->32 @28 12-15 against 14-29 ms).
        (1, 1, 0) if gpu.lane_looped_loads() => (&CONV_FWD_K1_SG_X, UBO_BLOCK, s.w),
        _ => return None,
    };
    let items = if s.kernel == 3 {
        s.h_out().div_ceil(2) * s.w_out().div_ceil(CPU_PX)
    } else {
        (s.h * s.w).div_ceil(CPU_PX)
    };
    let align = window::align_floats(gpu);
    let plane = if s.stride == 2 || (row == s.w && (s.h * s.w).is_multiple_of(4)) {
        s.h * s.w
    } else {
        (row * s.h).next_multiple_of(8)
    };
    // A window starts at the aligned float at or before its first plane.
    let planes = (window::WINDOW_FLOATS + 1 - align) / plane;
    let per_channel = width * s.kernel * s.kernel;
    if planes == 0
        || !window::fits_binding(gpu, s.n * s.c_in * plane)
        || items.div_ceil(LANES) > gpu.limits.max_compute_workgroups_per_dimension as usize
    {
        return None;
    }
    let capacity = (X_WINDOWS * planes).min(window::WINDOW_FLOATS / per_channel);
    let chunks = s.c_in.div_ceil(capacity);
    let chunk = s.c_in.div_ceil(chunks);
    let windows_per_sample = chunk.div_ceil(planes);
    let samples = X_WINDOWS / windows_per_sample;
    // The last block may be partial: its packed weights are zero past c_out, and the kernels
    // store only channels below it.
    let blocks = s.c_out.div_ceil(width);
    // Blocks per dispatch: their weights, c_in channels apart, fit the window with the chunk's.
    let run = (1 + (window::WINDOW_FLOATS / per_channel - chunk) / s.c_in).min(blocks);
    // x in place (only its tail copied), or a padded copy.
    let xw = if plane == s.h * s.w {
        window::Windows::new(gpu, x)
    } else {
        window::Windows::new(
            gpu,
            &padded_planes(gpu, x, [s.n, s.c_in, s.h, s.w], plane, row, 0),
        )
    };
    let y = gpu.empty(&[s.n, s.c_out, s.h_out(), s.w_out()]);
    for n0 in (0..s.n).step_by(samples) {
        let in_dispatch = samples.min(s.n - n0);
        for block in (0..blocks).step_by(run) {
            let run = run.min(blocks - block);
            for (i, ci_begin) in (0..s.c_in).step_by(chunk).enumerate() {
                let ci_end = (ci_begin + chunk).min(s.c_in);
                let weights = window::view(packed, (block * s.c_in + ci_begin) * per_channel);
                let mut shifts = [0usize; X_WINDOWS];
                let mut x_windows = Vec::with_capacity(X_WINDOWS);
                for (j, shift) in shifts.iter_mut().enumerate() {
                    // Windows past the dispatch's samples and channels are bound, not read.
                    let n = (n0 + j / windows_per_sample).min(s.n - 1);
                    let first = (ci_begin + (j % windows_per_sample) * planes).min(ci_end - 1);
                    let (view, offset) = xw.at((n * s.c_in + first) * plane);
                    *shift = offset;
                    x_windows.push(view);
                }
                let p = ConvParams {
                    block: block as u32,
                    sample: n0 as u32,
                    ci_begin: ci_begin as u32,
                    ci_end: ci_end as u32,
                    accumulate: (i > 0) as u32,
                    x_row: row as u32,
                    x_plane_stride: plane as u32,
                    x_window_planes: planes as u32,
                    x_windows_per_sample: windows_per_sample as u32,
                    x_shift0: shifts[0] as u32,
                    x_shift1: shifts[1] as u32,
                    x_shift2: shifts[2] as u32,
                    x_shift3: shifts[3] as u32,
                    ..params(s, bias.is_some())
                };
                // Without a bias the bias binding holds the weights and is not read.
                let mut bindings = vec![bias.unwrap_or(packed), &y, &weights];
                bindings.extend(x_windows.iter());
                gpu.dispatch(
                    kernel,
                    &p,
                    &bindings,
                    [items.div_ceil(LANES) as u32, run as u32, in_dispatch as u32],
                );
            }
        }
    }
    Some(y)
}

/// The 1x1 weight gradient by conv2d_bwd_w_k1_ubo, or None for other shapes and where a padded
/// plane exceeds the window: dy goes through the uniform window one sample and a run of whole
/// output channels at a time; each dispatch adds to the partial sums of its parts of the flat
/// pixels, which a last pass adds up.
fn bwd_w_k1_ubo(
    gpu: &Gpu,
    variant: ConvVariant,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Option<Tensor> {
    let kernel = variant.window_kernel(&CONV_BWD_W_K1_UBO, &CONV_BWD_W_K1_SG);
    const THREAD_CHANNELS: usize = 16;
    // Input channels per workgroup: 8 lanes x 4.
    const CHANNELS: usize = 32;
    // Enough workgroups per dispatch for a many-core CPU.
    const TARGET_GROUPS: usize = 16;
    if (s.kernel, s.stride, s.padding) != (1, 1, 0) {
        return None;
    }
    let align = window::align_floats(gpu);
    let hw = s.h * s.w;
    let plane = hw.next_multiple_of(align);
    let window_channels = (window::WINDOW_FLOATS / plane) / THREAD_CHANNELS * THREAD_CHANNELS;
    let ci_groups = s.c_in.div_ceil(CHANNELS);
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if window_channels == 0
        || ci_groups > max_groups
        || !window::supported(gpu)
        || !window::fits_binding(gpu, s.n * s.c_out * plane)
    {
        return None;
    }
    let window_channels = window_channels.min(s.c_out.next_multiple_of(THREAD_CHANNELS));
    let per_window = ci_groups * window_channels / THREAD_CHANNELS;
    // Parts of the flat pixels, in groups of 4.
    let units = hw.div_ceil(CPU_PX);
    let parts = (TARGET_GROUPS / per_window).clamp(1, units);
    let per_part = units.div_ceil(parts);
    let parts = units.div_ceil(per_part);
    let padded = padded_planes(gpu, dy, [s.n, s.c_out, s.h, s.w], plane, s.w, 0);
    let partial = gpu.empty(&[parts, s.c_out * s.c_in]);
    for n in 0..s.n {
        for co_begin in (0..s.c_out).step_by(window_channels) {
            let co_end = (co_begin + window_channels).min(s.c_out);
            let window = window::view(&padded, (n * s.c_out + co_begin) * plane);
            let p = ConvParams {
                block: n as u32,
                ci_begin: co_begin as u32,
                ci_end: co_end as u32,
                accumulate: (n > 0) as u32,
                chunk: (per_part * CPU_PX) as u32,
                plane_stride: plane as u32,
                ..params(s, false)
            };
            let groups = [
                parts as u32,
                ci_groups as u32,
                (co_end - co_begin).div_ceil(THREAD_CHANNELS) as u32,
            ];
            gpu.dispatch(kernel, &p, &[x, &partial, &window], groups);
        }
    }
    Some(super::reduce::sum_rows(gpu, &partial).reshape(&[s.c_out, s.c_in, 1, 1]))
}

/// Planes of `t` ([n c] planes of h x w) copied by conv2d_pad_planes into planes of `plane`
/// floats, rows of `row` floats after `border` zero rows and columns, zeros elsewhere, plus a
/// window's length of spare floats (not cleared) so that the last window binds inside the
/// buffer.
fn padded_planes(
    gpu: &Gpu,
    t: &Tensor,
    [n, c, h, w]: [usize; 4],
    plane: usize,
    row: usize,
    border: usize,
) -> Tensor {
    assert!(
        plane.is_multiple_of(8),
        "conv2d_pad_planes writes 8 floats per thread"
    );
    let total = n * c * plane;
    let padded = gpu.empty(&[total + window::WINDOW_FLOATS]);
    if (plane, row, border) == (h * w, w, 0) {
        // Nothing to pad: a buffer copy is a memcpy, not a kernel.
        gpu.copy(t, &padded.slice_flat(0, &[total]));
        return padded;
    }
    let p = ConvParams {
        n: n as u32,
        c_in: c as u32,
        h: h as u32,
        w: w as u32,
        plane_stride: plane as u32,
        row_stride: row as u32,
        border: border as u32,
        ..ConvParams::zeroed()
    };
    gpu.dispatch(
        &CONV_PAD_PLANES,
        &p,
        &[t, &padded],
        gpu.groups_1d(total / 8),
    );
    padded
}

/// The stride-1 3x3 weight gradient by conv2d_bwd_w_k3s1_ubo (x and dy both in uniform
/// windows), or None where a padded plane of either exceeds the window: a dispatch per (sample,
/// window of input channels, window of output channels), each adding to the partial sums of its
/// row parts, which a last pass adds up. Its subgroup twin takes four samples per dispatch
/// (Mesa 22.3.6, batch 32: 32->32 @28 31-32 -> 25 ms, 96->32 @28 95 -> 71-73 ms).
fn bwd_w_k3s1_ubo(
    gpu: &Gpu,
    variant: ConvVariant,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
    with_bias: bool,
) -> Option<(Tensor, Option<Tensor>)> {
    let kernel = variant.window_kernel(&CONV_BWD_W_K3S1_UBO, &CONV_BWD_W_K3S1_SG);
    const THREAD_CHANNELS: usize = 16;
    const LANES: usize = 8;
    // Two workgroups per core of this machine, where a CPU driver runs its threads: each
    // row part read-modify-writes its partial sums once per dispatch (144 per lane, in storage
    // loads that llvmpipe loops over lanes), so fewer parts cost less. Mesa 22.3.6, 2 cores, 4
    // instead of 16: 96->32 @28 155-162 -> 118-125 ms, the step 9.2-9.3 -> 8.9-9.1 s. The
    // parts set the summation order, so results are reproducible per machine (a CPU adapter
    // is this machine), not across core counts.
    let target_groups = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    if (s.kernel, s.stride) != (3, 1) {
        return None;
    }
    let align = window::align_floats(gpu);
    let (h_out, w_out) = (s.h_out(), s.w_out());
    let dy_row = w_out.next_multiple_of(CPU_PX);
    let dy_plane = (h_out * dy_row).next_multiple_of(align);
    let x_row = dy_row + CPU_PX;
    let x_plane = ((h_out + 2) * x_row).next_multiple_of(align);
    let co_window = (window::WINDOW_FLOATS / dy_plane) / THREAD_CHANNELS * THREAD_CHANNELS;
    let ci_window = (window::WINDOW_FLOATS / x_plane) / LANES * LANES;
    if co_window == 0
        || ci_window == 0
        || !uniform_windows_supported(gpu)
        || !window::fits_binding(gpu, s.n * s.c_out * dy_plane)
        || !window::fits_binding(gpu, s.n * s.c_in * x_plane)
    {
        return None;
    }
    let co_window = co_window.min(s.c_out.next_multiple_of(THREAD_CHANNELS));
    let ci_window = ci_window.min(s.c_in.next_multiple_of(LANES));
    let per_window = ci_window / LANES * (co_window / THREAD_CHANNELS);
    let parts = (target_groups / per_window).clamp(1, h_out);
    let per_part = h_out.div_ceil(parts);
    let parts = h_out.div_ceil(per_part);
    let dy_padded = padded_planes(gpu, dy, [s.n, s.c_out, h_out, w_out], dy_plane, dy_row, 0);
    let x_padded = padded_planes(gpu, x, [s.n, s.c_in, s.h, s.w], x_plane, x_row, s.padding);
    let k_cols = s.c_in * 9;
    // The subgroup kernel can sum the bias gradient too, after the weights' (at a
    // storage-aligned offset, so that it can be a view).
    let with_bias = with_bias && std::ptr::eq(kernel, &CONV_BWD_W_K3S1_SG);
    let storage_align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let bias_offset = (s.c_out * k_cols).next_multiple_of(storage_align);
    let row = if with_bias {
        bias_offset + s.c_out
    } else {
        s.c_out * k_cols
    };
    let partial = gpu.empty(&[parts, row]);
    // The subgroup kernel takes up to four samples per dispatch, each in its own pair of
    // windows (one uniform buffer for the parameters, four for x and four for dy).
    let samples = if std::ptr::eq(kernel, &CONV_BWD_W_K3S1_SG)
        && gpu.limits.max_uniform_buffers_per_shader_stage >= 9
    {
        4
    } else {
        1
    };
    for n0 in (0..s.n).step_by(samples) {
        let in_dispatch = samples.min(s.n - n0);
        // Sample j of the dispatch (the last one again past the batch: bound, not read).
        let sample = |j: usize| n0 + j.min(in_dispatch - 1);
        for ci_begin in (0..s.c_in).step_by(ci_window) {
            let ci_end = (ci_begin + ci_window).min(s.c_in);
            let x_windows: Vec<Tensor> = (0..samples)
                .map(|j| window::view(&x_padded, (sample(j) * s.c_in + ci_begin) * x_plane))
                .collect();
            for co_begin in (0..s.c_out).step_by(co_window) {
                let co_end = (co_begin + co_window).min(s.c_out);
                let dy_windows: Vec<Tensor> = (0..samples)
                    .map(|j| window::view(&dy_padded, (sample(j) * s.c_out + co_begin) * dy_plane))
                    .collect();
                let p = ConvParams {
                    block: n0 as u32,
                    ci_begin: co_begin as u32,
                    ci_end: co_end as u32,
                    accumulate: (n0 > 0) as u32,
                    window_samples: in_dispatch as u32,
                    // Once per sample and output channel: in the first input-channel window.
                    has_bias: (with_bias && ci_begin == 0) as u32,
                    partial_row: row as u32,
                    bias_offset: bias_offset as u32,
                    chunk: per_part as u32,
                    plane_stride: dy_plane as u32,
                    row_stride: dy_row as u32,
                    x_begin: ci_begin as u32,
                    x_end: ci_end as u32,
                    x_plane_stride: x_plane as u32,
                    x_row: x_row as u32,
                    ..params(s, false)
                };
                let groups = [
                    parts as u32,
                    (ci_end - ci_begin).div_ceil(LANES) as u32,
                    (co_end - co_begin).div_ceil(THREAD_CHANNELS) as u32,
                ];
                // Bindings in order: the partial sums, dy window 0 (7), x window 0 (8), x
                // windows 1-3 (9-11), dy windows 1-3 (12-14).
                let mut bindings = vec![&partial, &dy_windows[0]];
                bindings.extend(x_windows.iter());
                bindings.extend(dy_windows[1..].iter());
                gpu.dispatch(kernel, &p, &bindings, groups);
            }
        }
    }
    let sums = super::reduce::sum_rows(gpu, &partial);
    let dw = sums.slice_flat(0, &[s.c_out, s.c_in, 3, 3]);
    Some((
        dw,
        with_bias.then(|| sums.slice_flat(bias_offset, &[s.c_out])),
    ))
}

/// Runs a CPU forward kernel for shape `s` with packed weights.
fn conv_cpu(
    gpu: &Gpu,
    kernel: &'static Kernel,
    s: &ConvShape,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
) -> Tensor {
    let y = gpu.empty(&[s.n, s.c_out, s.h_out(), s.w_out()]);
    let items = thread_items(s, CPU_NB);
    let groups = [
        items.div_ceil(CPU_WG) as u32,
        s.c_out.div_ceil(CPU_BLOCK) as u32,
        1,
    ];
    // Without a bias the bias binding holds x and is not read.
    gpu.dispatch(
        kernel,
        &params(s, bias.is_some()),
        &[x, bias.unwrap_or(x), &y, packed],
        groups,
    );
    y
}

pub fn conv2d_backward_x(gpu: &Gpu, weight: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    conv2d_backward_x_with(gpu, ConvVariant::for_adapter(gpu), weight, dy, s)
}

/// The weight of the transposed convolution: [c_in, c_out, k, k], taps flipped.
pub fn flip_weight(gpu: &Gpu, weight: &Tensor, s: &ConvShape) -> Tensor {
    let flipped = gpu.empty(&[s.c_in, s.c_out, s.kernel, s.kernel]);
    gpu.dispatch(
        &CONV_FLIP_WEIGHT,
        &params(s, false),
        &[weight, &flipped],
        gpu.groups_1d(weight.numel()),
    );
    flipped
}

/// For a 3x3, stride-2, padding-1 convolution on CPU adapters with subgroups and slow storage
/// loads (`Gpu::lane_looped_loads`): dy spread over the input's grid (zeros between, see
/// conv2d_dilate2) and the stride-1 shape whose gradients, taken with that in place of dy, are
/// the stride-2 convolution's. The stride-1 kernels do 4x
/// the multiply-adds (most with zeros) at 7-10x the speed of the stride-2 ones (Mesa 22.3.6).
/// None for other shapes, variants, and planes too large for the stride-1 kernels' windows.
fn dilated_stride2(
    gpu: &Gpu,
    variant: ConvVariant,
    dy: &Tensor,
    s: &ConvShape,
) -> Option<(Tensor, ConvShape)> {
    // A padded x plane of the stride-1 weight gradient ((h + 2) rows of w + 8 floats) fits a
    // window, and with it the forward kernel's planes.
    let fits = (s.h + 2) * (s.w + 8) <= window::WINDOW_FLOATS / 2;
    // Where storage loads are fast the stride-2 kernels win (Mesa 25.0.7, 32->32 s2 @28:
    // bwd_x 26-35 against 36-44 ms).
    if variant != ConvVariant::DirectSubgroup
        || (s.kernel, s.stride, s.padding) != (3, 2, 1)
        || !fits
        || !gpu.lane_looped_loads()
    {
        return None;
    }
    let dilated = gpu.zeros(&[s.n, s.c_out, s.h, s.w]);
    gpu.dispatch(
        &CONV_DILATE2,
        &params(s, false),
        &[dy, &dilated],
        gpu.groups_1d(dy.numel()),
    );
    Some((dilated, ConvShape { stride: 1, ..*s }))
}

pub fn conv2d_backward_x_with(
    gpu: &Gpu,
    variant: ConvVariant,
    weight: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Tensor {
    if let Some((dilated, s1)) = dilated_stride2(gpu, variant, dy, s) {
        return conv2d_backward_x_with(gpu, variant, weight, &dilated, &s1);
    }
    if variant.is_direct() && s.stride == 1 && s.padding < s.kernel {
        // dx is the stride-1 convolution of dy with the flipped, transposed weights and
        // padding k - 1 - p.
        let t = ConvShape {
            n: s.n,
            c_in: s.c_out,
            h: s.h_out(),
            w: s.w_out(),
            c_out: s.c_in,
            kernel: s.kernel,
            stride: 1,
            padding: s.kernel - 1 - s.padding,
        };
        if let (true, Some(kernel)) = (variant.uses_windows(), ubo_fwd_kernel(gpu, &t)) {
            let packed = pack_weight(gpu, weight, s, Pack::TransposedFlipped, kernel.1);
            return conv_ubo(gpu, variant, kernel, &t, dy, &packed, None);
        }
        if let Some(kernel) = cpu_fwd_kernel(&t) {
            let packed = pack_weight(gpu, weight, s, Pack::TransposedFlipped, CPU_BLOCK);
            return conv_cpu(gpu, kernel, &t, dy, &packed, None);
        }
        // dx = conv(dy, flipped weights, padding k - 1 - p): the fast forward kernel.
        let flipped = flip_weight(gpu, weight, s);
        return conv2d_with(
            gpu,
            variant,
            dy,
            &flipped,
            None,
            1,
            s.kernel - 1 - s.padding,
        );
    }
    let cols = s.n * s.h * s.w;
    if variant == ConvVariant::Tiled {
        let gemm = (s.c_in, cols, s.c_out * s.kernel * s.kernel);
        let shape = [s.n, s.c_in, s.h, s.w];
        return tiled_split_k(gpu, &CONV_BWD_X, s, false, gemm, &[weight, dy], &shape);
    }
    let dx = gpu.empty(&[s.n, s.c_in, s.h, s.w]);
    if variant.is_direct() && (s.kernel, s.stride, s.padding) == (3, 2, 1) {
        let packed = pack_weight(gpu, weight, s, Pack::Transposed, CPU_BLOCK);
        let items = s.n.div_ceil(CPU_NB) * s.h.div_ceil(2) * s.w.div_ceil(CPU_PX);
        let groups = [
            items.div_ceil(CPU_WG) as u32,
            s.c_in.div_ceil(CPU_BLOCK) as u32,
            2,
        ];
        gpu.dispatch(
            &CONV_BWD_X_K3S2_CPU,
            &params(s, false),
            // The bias binding (unread here) holds dy.
            &[dy, dy, &dx, &packed],
            groups,
        );
        return dx;
    }
    let (kernel, groups) = variant.pick(&CONV_BWD_X, &CONV_BWD_X_DIRECT, s.c_in, cols, 1);
    gpu.dispatch(kernel, &params(s, false), &[weight, dy, &dx], groups);
    dx
}

/// Columns (n, pixel) per split-K chunk of the weight gradient.
fn bwd_w_chunk(s: &ConvShape, variant: ConvVariant) -> usize {
    if variant != ConvVariant::Tiled {
        return CHUNK;
    }
    let columns = s.n * s.h_out() * s.w_out();
    let chunks = tiled_workgroups().div_ceil(tiles(s.c_out, s.c_in * s.kernel * s.kernel));
    columns
        .div_ceil(chunks)
        .next_multiple_of(TILE_K)
        .clamp(TILED_BWD_W_MIN_CHUNK, CHUNK)
}

pub fn conv2d_backward_w(gpu: &Gpu, x: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    conv2d_backward_w_with(gpu, ConvVariant::for_adapter(gpu), x, dy, s)
}

pub fn conv2d_backward_w_with(
    gpu: &Gpu,
    variant: ConvVariant,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Tensor {
    if let Some((dilated, s1)) = dilated_stride2(gpu, variant, dy, s) {
        return conv2d_backward_w_with(gpu, variant, x, &dilated, &s1);
    }
    let k_cols = s.c_in * s.kernel * s.kernel;
    let cpu_kernel = match (s.kernel, s.stride) {
        (3, 1) => Some(&CONV_BWD_W_K3S1_CPU),
        (3, 2) => Some(&CONV_BWD_W_K3S2_CPU),
        _ => None,
    };
    if variant.uses_windows() {
        if let Some((dw, _)) = bwd_w_k3s1_ubo(gpu, variant, x, dy, s, false) {
            return dw;
        }
        if let Some(dw) = bwd_w_k1_ubo(gpu, variant, x, dy, s) {
            return dw;
        }
    }
    if let (true, Some(kernel)) = (variant.is_direct(), cpu_kernel) {
        // Split-K over output rows (n, oy): enough chunks for both cores and then some.
        let rows = s.n * s.h_out();
        let chunk = rows.div_ceil(CPU_BWD_W_CHUNKS);
        let chunks = rows.div_ceil(chunk);
        let partial = gpu.empty(&[chunks, s.c_out * k_cols]);
        let p = chunked_params(s, false, chunk);
        let groups = [
            s.c_in.div_ceil(CPU_BWD_W_CHANNELS) as u32,
            s.c_out.div_ceil(CPU_BLOCK) as u32,
            chunks as u32,
        ];
        gpu.dispatch(kernel, &p, &[x, dy, &partial], groups);
        return super::reduce::sum_rows(gpu, &partial)
            .reshape(&[s.c_out, s.c_in, s.kernel, s.kernel]);
    }
    let chunk = bwd_w_chunk(s, variant);
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(chunk);
    let partial = gpu.empty(&[chunks, s.c_out * k_cols]);
    let (kernel, groups) = variant.pick(&CONV_BWD_W, &CONV_BWD_W_DIRECT, s.c_out, k_cols, chunks);
    let p = chunked_params(s, false, chunk);
    gpu.dispatch(kernel, &p, &[x, dy, &partial], groups);
    super::reduce::sum_rows(gpu, &partial).reshape(&[s.c_out, s.c_in, s.kernel, s.kernel])
}

/// The weight and bias gradients together. The tiled kernel (GPUs) sums the bias gradient in
/// the weight gradient's pass, so both share one partial buffer and one reduction: two
/// dispatches instead of four, and a GPU step is bound by its dispatches. The other variants
/// compute them apart.
pub fn conv2d_backward_w_bias(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> (Tensor, Tensor) {
    conv2d_backward_w_bias_with(gpu, ConvVariant::for_adapter(gpu), x, dy, s)
}

pub fn conv2d_backward_w_bias_with(
    gpu: &Gpu,
    variant: ConvVariant,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> (Tensor, Tensor) {
    if variant != ConvVariant::Tiled {
        // The subgroup 3x3 weight gradient sums the bias gradient in the same pass; stride 2
        // goes to it through the dilated dy, whose sum is dy's.
        if let Some((dilated, s1)) = dilated_stride2(gpu, variant, dy, s) {
            return conv2d_backward_w_bias_with(gpu, variant, x, &dilated, &s1);
        }
        if variant == ConvVariant::DirectSubgroup {
            if let Some((dw, Some(db))) = bwd_w_k3s1_ubo(gpu, variant, x, dy, s, true) {
                return (dw, db);
            }
        }
        let dw = conv2d_backward_w_with(gpu, variant, x, dy, s);
        return (dw, conv2d_backward_bias(gpu, dy, s));
    }
    let k_cols = s.c_in * s.kernel * s.kernel;
    let weights = s.c_out * k_cols;
    // The bias gradient becomes a view into the sums: its start keeps the binding alignment.
    let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let bias_offset = weights.next_multiple_of(align);
    let row = bias_offset + s.c_out;
    let chunk = bwd_w_chunk(s, variant);
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(chunk);
    let partial = gpu.empty(&[chunks, row]);
    let (kernel, groups) = variant.pick(&CONV_BWD_W, &CONV_BWD_W_DIRECT, s.c_out, k_cols, chunks);
    let p = ConvParams {
        partial_row: row as u32,
        bias_offset: bias_offset as u32,
        ..chunked_params(s, true, chunk)
    };
    gpu.dispatch(kernel, &p, &[x, dy, &partial], groups);
    let sums = super::reduce::sum_rows(gpu, &partial);
    (
        sums.slice_flat(0, &[s.c_out, s.c_in, s.kernel, s.kernel]),
        sums.slice_flat(bias_offset, &[s.c_out]),
    )
}

pub fn conv2d_backward_bias(gpu: &Gpu, dy: &Tensor, s: &ConvShape) -> Tensor {
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(BIAS_CHUNK);
    let partial = gpu.empty(&[chunks, s.c_out]);
    let p = chunked_params(s, false, BIAS_CHUNK);
    gpu.dispatch(
        &CONV_BWD_BIAS,
        &p,
        &[dy, &partial],
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
        let s = &self.shape;
        let dx = needs[0].then(|| conv2d_backward_x(gpu, &self.weight, dy, s));
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
