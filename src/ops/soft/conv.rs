//! The convolution kernels of the software-adapter wing (shaders/soft/conv.wgsl and
//! shaders/soft/conv_subgroup.wgsl): barrier-free kernels that keep a thread's outputs in
//! registers, read packed weights (and x or dy) through 64 KiB uniform windows where the adapter
//! binds them, and share the values every lane needs by subgroup broadcasts where it has
//! subgroups. ops::conv's plans pick them on CPU adapters; each function here runs one named
//! plan, and the `*_geometry` functions are the pure checks the plans call.

use super::window::{self, Windows};
use crate::gpu::{Capabilities, Gpu, Kernel};
use bytemuck::{Pod, Zeroable};

use crate::ops::conv::{ForwardPlan, CHUNK};
use crate::shaders::{SOFT_CONV, SOFT_CONV_SUBGROUP};
use crate::shape::ConvShape;
use crate::tensor::Tensor;

macro_rules! kernels {
    ($($name:ident: $shader:ident . $entry:literal),* $(,)?) => {
        $(static $name: Kernel = Kernel { shader: &$shader, entry: $entry };)*
    };
}

kernels! {
    FWD_DIRECT: SOFT_CONV."conv2d_fwd_direct",
    FWD_DIRECT_BIAS: SOFT_CONV."conv2d_fwd_direct_bias",
    BWD_X_DIRECT: SOFT_CONV."conv2d_bwd_x_direct",
    BWD_W_DIRECT: SOFT_CONV."conv2d_bwd_w_direct",
    FLIP_WEIGHT: SOFT_CONV."conv2d_flip_weight",
    FWD_K3S1_CPU: SOFT_CONV."conv2d_fwd_k3s1_cpu",
    FWD_K3S1_CPU_BIAS: SOFT_CONV."conv2d_fwd_k3s1_cpu_bias",
    FWD_K3S2_CPU: SOFT_CONV."conv2d_fwd_k3s2_cpu",
    FWD_K3S2_CPU_BIAS: SOFT_CONV."conv2d_fwd_k3s2_cpu_bias",
    FWD_K1_CPU: SOFT_CONV."conv2d_fwd_k1_cpu",
    FWD_K1_CPU_BIAS: SOFT_CONV."conv2d_fwd_k1_cpu_bias",
    BWD_X_K3S2_CPU: SOFT_CONV."conv2d_bwd_x_k3s2_cpu",
    BWD_W_K3S1_CPU: SOFT_CONV."conv2d_bwd_w_k3s1_cpu",
    BWD_W_K3S2_CPU: SOFT_CONV."conv2d_bwd_w_k3s2_cpu",
    FWD_K3S1_UBO_ROWS2: SOFT_CONV."conv2d_fwd_k3s1_ubo_rows2",
    FWD_K3S1_UBO_ROWS2_BIAS: SOFT_CONV."conv2d_fwd_k3s1_ubo_rows2_bias",
    FWD_K1_UBO: SOFT_CONV."conv2d_fwd_k1_ubo",
    FWD_K1_UBO_BIAS: SOFT_CONV."conv2d_fwd_k1_ubo_bias",
    BWD_W_K3S1_UBO: SOFT_CONV."conv2d_bwd_w_k3s1_ubo",
    BWD_W_K1_UBO: SOFT_CONV."conv2d_bwd_w_k1_ubo",
    PAD_PLANES: SOFT_CONV."conv2d_pad_planes",
    PACK_WEIGHT: SOFT_CONV."conv2d_pack_weight",
    FWD_K3S1_SG_X: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s1_sg_x",
    FWD_K3S1_SG_X_BIAS: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s1_sg_x_bias",
    FWD_K3S2_SG_X: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s2_sg_x",
    FWD_K3S2_SG_X_BIAS: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s2_sg_x_bias",
    FWD_K3S1_SG_ROWS2: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s1_sg_rows2",
    FWD_K3S1_SG_ROWS2_BIAS: SOFT_CONV_SUBGROUP."conv2d_fwd_k3s1_sg_rows2_bias",
    FWD_K1_SG: SOFT_CONV_SUBGROUP."conv2d_fwd_k1_sg",
    FWD_K1_SG_BIAS: SOFT_CONV_SUBGROUP."conv2d_fwd_k1_sg_bias",
    BWD_W_K3S1_SG: SOFT_CONV_SUBGROUP."conv2d_bwd_w_k3s1_sg",
    BWD_W_K1_SG: SOFT_CONV_SUBGROUP."conv2d_bwd_w_k1_sg",
}

/// The twin of a forward kernel that adds a bias: each forward kernel of the wing comes as a pair
/// of entry points sharing one body, and only the `_bias` one has the bias binding in its layout.
fn biased(kernel: &'static Kernel, bias: bool) -> &'static Kernel {
    if !bias {
        return kernel;
    }
    let twins: [(&Kernel, &'static Kernel); 10] = [
        (&FWD_DIRECT, &FWD_DIRECT_BIAS),
        (&FWD_K3S1_CPU, &FWD_K3S1_CPU_BIAS),
        (&FWD_K3S2_CPU, &FWD_K3S2_CPU_BIAS),
        (&FWD_K1_CPU, &FWD_K1_CPU_BIAS),
        (&FWD_K3S1_UBO_ROWS2, &FWD_K3S1_UBO_ROWS2_BIAS),
        (&FWD_K1_UBO, &FWD_K1_UBO_BIAS),
        (&FWD_K3S1_SG_X, &FWD_K3S1_SG_X_BIAS),
        (&FWD_K3S2_SG_X, &FWD_K3S2_SG_X_BIAS),
        (&FWD_K3S1_SG_ROWS2, &FWD_K3S1_SG_ROWS2_BIAS),
        (&FWD_K1_SG, &FWD_K1_SG_BIAS),
    ];
    twins
        .iter()
        .find(|(plain, _)| std::ptr::eq(*plain, kernel))
        .map(|&(_, with_bias)| with_bias)
        .unwrap_or_else(|| panic!("{} has no bias twin", kernel.entry))
}

/// Mirrors `SoftConvParams` in shaders/soft/conv.wgsl: the shape, then what each family of the
/// wing's kernels reads (see the comments there).
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

/// The shape fields; each kernel family sets the fields it reads on top (has_bias: only the
/// weight gradients that sum the bias gradient read it).
fn params(s: &ConvShape) -> ConvParams {
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
        chunk: CHUNK as u32,
        pack_width: CPU_BLOCK as u32,
        partial_row: (s.c_out * s.c_in * s.kernel * s.kernel) as u32,
        x_windows_per_sample: 1,
        window_samples: 1,
        ..ConvParams::zeroed()
    }
}

/// The register-blocked kernels: output channels per block, pixels per thread, samples per
/// thread, threads per workgroup (shaders/soft/conv.wgsl).
const CPU_BLOCK: usize = 8;
const CPU_PX: usize = 4;
const CPU_NB: usize = 4;
const CPU_WG: usize = 64;
/// The uniform-window kernels: output channels per thread of conv2d_fwd_k1_ubo (the 3x3 kernel
/// takes half).
const UBO_BLOCK: usize = 32;
/// conv2d_bwd_w_k3s*_cpu: input channels per workgroup (16 threads, two each) and the number of
/// split-K chunks of output rows.
const CPU_BWD_W_CHANNELS: usize = 32;
const CPU_BWD_W_CHUNKS: usize = 24;
/// Rows x columns of the GEMM covered by a workgroup of the direct kernels.
const DIRECT_TILE: (usize, usize) = (16, 128);

/// Whether the adapter binds 64 KiB uniform windows at the offsets the window kernels use (a
/// multiple of one input channel's packed weights, 1x1 or 3x3).
pub(crate) fn uniform_windows(caps: &Capabilities) -> bool {
    window::supported(caps) && (UBO_BLOCK * 4).is_multiple_of(caps.uniform_align as usize)
}

/// The wing's forward plan: x and the weights in windows (subgroups), the weights in windows,
/// register blocks for the 3x3 and 1x1 taps, or the direct kernel for anything else.
pub(crate) fn plan_forward(caps: &Capabilities, s: &ConvShape) -> ForwardPlan {
    let windows = uniform_windows(caps);
    if windows && caps.subgroups && x_windows_geometry(caps, s).is_some() {
        ForwardPlan::SubgroupWindows
    } else if windows && weight_windows_kernel(caps, s, caps.subgroups).is_some() {
        if caps.subgroups {
            ForwardPlan::SubgroupWeightWindows
        } else {
            ForwardPlan::WeightWindows
        }
    } else if blocked_forward_kernel(s).is_some() {
        ForwardPlan::Blocked
    } else {
        ForwardPlan::Direct
    }
}

/// The entry point a forward plan runs for shape `s`, with or without a bias (for `ddpm info`
/// and the plan table).
pub(crate) fn forward_entry(
    plan: ForwardPlan,
    caps: &Capabilities,
    s: &ConvShape,
    bias: bool,
) -> &'static str {
    let kernel = match plan {
        ForwardPlan::Tiled { .. } if bias => return "conv2d_fwd_bias",
        ForwardPlan::Tiled { .. } => return "conv2d_fwd",
        ForwardPlan::Direct => &FWD_DIRECT,
        ForwardPlan::Blocked => blocked_forward_kernel(s).expect("planned"),
        ForwardPlan::WeightWindows | ForwardPlan::SubgroupWeightWindows => {
            weight_windows_kernel(caps, s, plan == ForwardPlan::SubgroupWeightWindows)
                .expect("planned")
                .0
        }
        ForwardPlan::SubgroupWindows => x_windows_geometry(caps, s).expect("planned").kernel,
    };
    biased(kernel, bias).entry
}

/// Output channels per packed block of a forward plan's weights.
fn pack_width(plan: ForwardPlan, s: &ConvShape) -> usize {
    match plan {
        ForwardPlan::Blocked => CPU_BLOCK,
        _ if s.kernel == 1 => UBO_BLOCK,
        _ => UBO_BLOCK / 2,
    }
}

/// A convolution's weights as stored ([c_out, c_in, k, k] of `shape`), and how a forward plan
/// reads them: as they are, or as the transposed convolution's (the input gradient).
pub(crate) struct Weights<'a> {
    pub tensor: &'a Tensor,
    pub shape: &'a ConvShape,
    pub pack: Pack,
}

/// Runs a wing forward plan of shape `s` on x (the input gradient runs the transposed
/// convolution this way).
pub(crate) fn forward(
    gpu: &Gpu,
    plan: ForwardPlan,
    s: &ConvShape,
    x: &Tensor,
    weights: Weights,
    bias: Option<&Tensor>,
) -> Tensor {
    let caps = gpu.caps();
    let Weights {
        tensor: weight,
        shape: weight_shape,
        pack,
    } = weights;
    if plan == ForwardPlan::Direct {
        let weight = match pack {
            Pack::Forward => weight.clone(),
            // dx = conv(dy, flipped weights, padding k - 1 - p).
            _ => flip_weight(gpu, weight, weight_shape),
        };
        return forward_direct(gpu, s, x, &weight, bias);
    }
    let packed = pack_weight(gpu, weight, weight_shape, pack, pack_width(plan, s));
    match plan {
        ForwardPlan::Blocked => {
            let kernel = blocked_forward_kernel(s).expect("planned");
            forward_blocked(gpu, kernel, s, x, &packed, bias)
        }
        ForwardPlan::WeightWindows | ForwardPlan::SubgroupWeightWindows => {
            let subgroups = plan == ForwardPlan::SubgroupWeightWindows;
            let kernel = weight_windows_kernel(&caps, s, subgroups).expect("planned");
            forward_weight_windows(gpu, kernel, s, x, &packed, bias)
        }
        ForwardPlan::SubgroupWindows => {
            let g = x_windows_geometry(&caps, s).expect("planned");
            forward_x_windows(gpu, &g, s, x, &packed, bias)
        }
        ForwardPlan::Direct | ForwardPlan::Tiled { .. } => unreachable!("not a packed plan"),
    }
}

fn forward_direct(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Tensor {
    let y = gpu.empty(&[s.n, s.c_out, s.h_out(), s.w_out()]);
    let cols = s.n * s.h_out() * s.w_out();
    let p = params(s);
    let grid = direct_grid(s.c_out, cols, 1);
    match bias {
        Some(bias) => gpu.dispatch(
            biased(&FWD_DIRECT, true),
            &p,
            &[("x", x), ("weight", weight), ("bias", bias), ("out", &y)],
            grid,
        ),
        None => gpu.dispatch(
            &FWD_DIRECT,
            &p,
            &[("x", x), ("weight", weight), ("out", &y)],
            grid,
        ),
    }
    y
}

fn direct_grid(rows: usize, cols: usize, z: usize) -> [u32; 3] {
    [
        cols.div_ceil(DIRECT_TILE.1) as u32,
        rows.div_ceil(DIRECT_TILE.0) as u32,
        z as u32,
    ]
}

/// The register-blocked forward kernel for this shape, where there is one.
fn blocked_forward_kernel(s: &ConvShape) -> Option<&'static Kernel> {
    match s.taps() {
        (3, 1, _) => Some(&FWD_K3S1_CPU),
        (3, 2, _) => Some(&FWD_K3S2_CPU),
        (1, 1, 0) => Some(&FWD_K1_CPU),
        _ => None,
    }
}

/// How conv2d_pack_weight lays out the weights.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pack {
    /// Rows c_out, inputs c_in: the forward convolution.
    Forward,
    /// Rows c_in, inputs c_out, taps flipped: the stride-1 input-gradient convolution.
    TransposedFlipped,
    /// Rows c_in, inputs c_out: conv2d_bwd_x_k3s2_cpu.
    Transposed,
}

/// `weight` packed for the wing's kernels: [ceil(rows / width)][inputs][k * k][width].
fn pack_weight(gpu: &Gpu, weight: &Tensor, s: &ConvShape, pack: Pack, width: usize) -> Tensor {
    let (rows, inputs) = if pack != Pack::Forward {
        (s.c_in, s.c_out)
    } else {
        (s.c_out, s.c_in)
    };
    let len = rows.div_ceil(width) * width * inputs * s.kernel * s.kernel;
    // The window kernels (widths 16 and 32) bind a whole window from each chunk's start: the
    // tail keeps the last window inside the buffer. The storage-weight kernels (width 8) need
    // none.
    let tail = if width == CPU_BLOCK {
        0
    } else {
        window::WINDOW_FLOATS
    };
    let packed = gpu.empty(&[len + tail]);
    let p = ConvParams {
        flip: pack as u32,
        pack_width: width as u32,
        ..params(s)
    };
    gpu.dispatch(
        &PACK_WEIGHT,
        &p,
        &[("weight", weight), ("out", &packed)],
        gpu.groups_1d(len),
    );
    packed
}

/// The weight of the transposed convolution: [c_in, c_out, k, k], taps flipped.
fn flip_weight(gpu: &Gpu, weight: &Tensor, s: &ConvShape) -> Tensor {
    let flipped = gpu.empty(&[s.c_in, s.c_out, s.kernel, s.kernel]);
    gpu.dispatch(
        &FLIP_WEIGHT,
        &params(s),
        &[("weight", weight), ("out", &flipped)],
        gpu.groups_1d(weight.numel()),
    );
    flipped
}

/// The weight-window forward kernel for shape `s` (or its subgroup twin) and its block of
/// output channels, where there is one: stride-1 3x3, or 1x1 without padding, with whole blocks
/// of output channels.
fn weight_windows_kernel(
    caps: &Capabilities,
    s: &ConvShape,
    subgroups: bool,
) -> Option<(&'static Kernel, usize)> {
    let (ubo, sg, width) = match s.taps() {
        (3, 1, _) => (&FWD_K3S1_UBO_ROWS2, &FWD_K3S1_SG_ROWS2, UBO_BLOCK / 2),
        (1, 1, 0) => (&FWD_K1_UBO, &FWD_K1_SG, UBO_BLOCK),
        _ => return None,
    };
    let kernel = if subgroups { sg } else { ubo };
    let fits = s.c_out.is_multiple_of(width)
        && uniform_windows(caps)
        && (width * s.kernel * s.kernel * 4).is_multiple_of(caps.uniform_align as usize)
        && weight_windows_items(s).div_ceil(CPU_WG) <= caps.max_groups_per_dim as usize;
    fits.then_some((kernel, width))
}

/// Threads of a weight-window forward kernel: the 3x3 one takes two output rows of 4 pixels,
/// the 1x1 one 4 consecutive pixels of the flattened image.
fn weight_windows_items(s: &ConvShape) -> usize {
    if s.kernel == 3 {
        s.n * s.h_out().div_ceil(2) * s.w_out().div_ceil(CPU_PX)
    } else {
        thread_items(s, 1)
    }
}

/// Threads of a register-blocked forward kernel: one per `samples` samples x 4 output pixels of
/// a row (1x1: 4 consecutive pixels of the flattened image).
fn thread_items(s: &ConvShape, samples: usize) -> usize {
    let groups = if s.kernel == 1 {
        (s.h * s.w).div_ceil(CPU_PX)
    } else {
        s.h_out() * s.w_out().div_ceil(CPU_PX)
    };
    s.n.div_ceil(samples) * groups
}

/// A weight-window forward kernel over shape `s`: a dispatch per (block of `width` output
/// channels, chunk of input channels whose weights fit the 64 KiB window), the chunks after the
/// first adding on.
fn forward_weight_windows(
    gpu: &Gpu,
    (kernel, width): (&'static Kernel, usize),
    s: &ConvShape,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
) -> Tensor {
    let y = gpu.empty(&[s.n, s.c_out, s.h_out(), s.w_out()]);
    let items = weight_windows_items(s);
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
                ..params(s)
            };
            let groups = [items.div_ceil(CPU_WG) as u32, 1, 1];
            match bias {
                Some(bias) => {
                    let tensors = [("x", x), ("bias", bias), ("out", &y), ("wuni", &window)];
                    gpu.dispatch(biased(kernel, true), &p, &tensors, groups)
                }
                None => {
                    let tensors = [("x", x), ("out", &y), ("wuni", &window)];
                    gpu.dispatch(kernel, &p, &tensors, groups)
                }
            }
        }
    }
    y
}

/// How conv2d_fwd_k3s1_sg_x / conv2d_fwd_k3s2_sg_x lay a shape over their windows.
pub(crate) struct XWindows {
    kernel: &'static Kernel,
    /// Output channels per block.
    width: usize,
    /// Floats per row and per plane of x as the windows see it.
    row: usize,
    plane: usize,
    /// Whole planes per x window.
    planes: usize,
    /// Threads per sample.
    items: usize,
}

/// The bindings of the x windows (shaders/soft/conv_subgroup.wgsl) and of the dy windows of
/// the weight gradients (the first is `wuni`, the window the forward kernels read weights from).
const X_WINDOW_NAMES: [&str; X_WINDOWS] = ["xuni", "xuni1", "xuni2", "xuni3"];
const DY_WINDOW_NAMES: [&str; X_WINDOWS] = ["wuni", "dyuni1", "dyuni2", "dyuni3"];

/// x windows at most per dispatch, and the lanes of a subgroup.
const X_WINDOWS: usize = 4;
const LANES: usize = 8;

/// The geometry of the 3x3 padding-1 convolution by conv2d_fwd_k3s1_sg_x (stride 1) or
/// conv2d_fwd_k3s2_sg_x (stride 2), or None for other shapes and where one x plane does not fit
/// a window. x goes through the windows as it is where its rows (stride 1) are a multiple of 4
/// floats (stride 2: always), else as a copy with them padded to one.
fn x_windows_geometry(caps: &Capabilities, s: &ConvShape) -> Option<XWindows> {
    let width = UBO_BLOCK / 2;
    // The kernel and the float multiple its rows must be (the 3x3's middle 4 inputs of a row
    // are one vec4); stride 2 gathers each float on its own: x as it is.
    let (kernel, row) = match s.taps() {
        (3, 1, 1) => (&FWD_K3S1_SG_X, s.w.next_multiple_of(4)),
        (3, 2, 1) => (&FWD_K3S2_SG_X, s.w),
        _ => return None,
    };
    let items = s.h_out().div_ceil(2) * s.w_out().div_ceil(CPU_PX);
    let align = window::align_floats(caps);
    let plane = if s.stride == 2 || (row == s.w && (s.h * s.w).is_multiple_of(4)) {
        s.h * s.w
    } else {
        (row * s.h).next_multiple_of(8)
    };
    // A window starts at the aligned float at or before its first plane.
    let planes = (window::WINDOW_FLOATS + 1 - align) / plane;
    let fits = planes > 0
        && window::fits_binding(caps, s.n * s.c_in * plane)
        && items.div_ceil(LANES) <= caps.max_groups_per_dim as usize
        && (width * 9 * 4).is_multiple_of(caps.uniform_align as usize);
    fits.then_some(XWindows {
        kernel,
        width,
        row,
        plane,
        planes,
        items,
    })
}

/// The x-window forward: a dispatch covers a run of 16-channel output blocks whose weights share
/// the weight window and a chunk of input channels, for up to four samples: four x windows hold
/// the chunk's planes of one sample, two of two or one of four, whichever fits. Chunks after the
/// first add on.
fn forward_x_windows(
    gpu: &Gpu,
    g: &XWindows,
    s: &ConvShape,
    x: &Tensor,
    packed: &Tensor,
    bias: Option<&Tensor>,
) -> Tensor {
    let per_channel = g.width * s.kernel * s.kernel;
    let capacity = (X_WINDOWS * g.planes).min(window::WINDOW_FLOATS / per_channel);
    let chunks = s.c_in.div_ceil(capacity);
    let chunk = s.c_in.div_ceil(chunks);
    let windows_per_sample = chunk.div_ceil(g.planes);
    let samples = X_WINDOWS / windows_per_sample;
    // The last block may be partial: its packed weights are zero past c_out, and the kernels
    // store only channels below it.
    let blocks = s.c_out.div_ceil(g.width);
    // Blocks per dispatch: their weights, c_in channels apart, fit the window with the chunk's.
    let run = (1 + (window::WINDOW_FLOATS / per_channel - chunk) / s.c_in).min(blocks);
    // x in place (only its tail copied), or a padded copy.
    let xw = if g.plane == s.h * s.w {
        Windows::new(gpu, x)
    } else {
        Windows::new(
            gpu,
            &padded_planes(gpu, x, [s.n, s.c_in, s.h, s.w], g.plane, g.row, 0),
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
                    let first = (ci_begin + (j % windows_per_sample) * g.planes).min(ci_end - 1);
                    let (view, offset) = xw.at((n * s.c_in + first) * g.plane);
                    *shift = offset;
                    x_windows.push(view);
                }
                let p = ConvParams {
                    block: block as u32,
                    sample: n0 as u32,
                    ci_begin: ci_begin as u32,
                    ci_end: ci_end as u32,
                    accumulate: (i > 0) as u32,
                    x_row: g.row as u32,
                    x_plane_stride: g.plane as u32,
                    x_window_planes: g.planes as u32,
                    x_windows_per_sample: windows_per_sample as u32,
                    x_shift0: shifts[0] as u32,
                    x_shift1: shifts[1] as u32,
                    x_shift2: shifts[2] as u32,
                    x_shift3: shifts[3] as u32,
                    ..params(s)
                };
                let mut bindings: Vec<(&str, &Tensor)> =
                    bias.map(|bias| ("bias", bias)).into_iter().collect();
                bindings.extend([("out", &y), ("wuni", &weights)]);
                bindings.extend(X_WINDOW_NAMES.into_iter().zip(x_windows.iter()));
                gpu.dispatch(
                    biased(g.kernel, bias.is_some()),
                    &p,
                    &bindings,
                    [
                        g.items.div_ceil(LANES) as u32,
                        run as u32,
                        in_dispatch as u32,
                    ],
                );
            }
        }
    }
    y
}

/// Runs a register-blocked forward kernel for shape `s` with packed weights.
fn forward_blocked(
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
    let p = params(s);
    match bias {
        Some(bias) => {
            let tensors = [("x", x), ("bias", bias), ("out", &y), ("wpack", packed)];
            gpu.dispatch(biased(kernel, true), &p, &tensors, groups)
        }
        None => {
            let tensors = [("x", x), ("out", &y), ("wpack", packed)];
            gpu.dispatch(kernel, &p, &tensors, groups)
        }
    }
    y
}

/// The stride-2 3x3 input gradient by conv2d_bwd_x_k3s2_cpu (weights packed transposed).
pub(crate) fn input_grad_blocked_stride2(
    gpu: &Gpu,
    weight: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Tensor {
    let dx = gpu.empty(&[s.n, s.c_in, s.h, s.w]);
    let packed = pack_weight(gpu, weight, s, Pack::Transposed, CPU_BLOCK);
    let items = s.n.div_ceil(CPU_NB) * s.h.div_ceil(2) * s.w.div_ceil(CPU_PX);
    let groups = [
        items.div_ceil(CPU_WG) as u32,
        s.c_in.div_ceil(CPU_BLOCK) as u32,
        2,
    ];
    gpu.dispatch(
        &BWD_X_K3S2_CPU,
        &params(s),
        &[("dy", dy), ("out", &dx), ("wpack", &packed)],
        groups,
    );
    dx
}

/// The input gradient by conv2d_bwd_x_direct (any shape).
pub(crate) fn input_grad_direct(gpu: &Gpu, weight: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    let dx = gpu.empty(&[s.n, s.c_in, s.h, s.w]);
    let groups = direct_grid(s.c_in, s.n * s.h * s.w, 1);
    gpu.dispatch(
        &BWD_X_DIRECT,
        &params(s),
        &[("weight", weight), ("dy", dy), ("out", &dx)],
        groups,
    );
    dx
}

/// The wing's weight-gradient plans, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradKernel {
    /// conv2d_bwd_w_k3s1_ubo (conv2d_bwd_w_k3s1_sg with subgroups, which also sums the bias
    /// gradient): x and dy in uniform windows.
    Windows3x3,
    /// conv2d_bwd_w_k1_ubo (conv2d_bwd_w_k1_sg with subgroups): dy in uniform windows.
    Windows1x1,
    /// conv2d_bwd_w_k3s1_cpu / conv2d_bwd_w_k3s2_cpu: 8 output channels per thread.
    Blocked,
    /// conv2d_bwd_w_direct (any shape).
    Direct,
}

pub(crate) fn plan_weight_grad(caps: &Capabilities, s: &ConvShape) -> WeightGradKernel {
    if uniform_windows(caps) && k3_windows_geometry(caps, s).is_some() {
        WeightGradKernel::Windows3x3
    } else if uniform_windows(caps) && k1_windows_geometry(caps, s).is_some() {
        WeightGradKernel::Windows1x1
    } else if blocked_weight_kernel(s).is_some() {
        WeightGradKernel::Blocked
    } else {
        WeightGradKernel::Direct
    }
}

pub(crate) fn weight_grad_entry(
    plan: WeightGradKernel,
    caps: &Capabilities,
    s: &ConvShape,
) -> &'static str {
    let kernel = match plan {
        WeightGradKernel::Windows3x3 => k3_windows_geometry(caps, s).expect("planned").kernel,
        WeightGradKernel::Windows1x1 => k1_windows_geometry(caps, s).expect("planned").kernel,
        WeightGradKernel::Blocked => blocked_weight_kernel(s).expect("planned"),
        WeightGradKernel::Direct => &BWD_W_DIRECT,
    };
    kernel.entry
}

/// Runs a wing weight-gradient plan: dw, and db where `with_bias` (in the same pass where the
/// plan sums it, else by conv2d_bwd_bias_partial).
pub(crate) fn weight_grad(
    gpu: &Gpu,
    plan: WeightGradKernel,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
    with_bias: bool,
) -> (Tensor, Option<Tensor>) {
    let caps = gpu.caps();
    let (dw, db) = match plan {
        WeightGradKernel::Windows3x3 => {
            let g = k3_windows_geometry(&caps, s).expect("planned");
            weight_grad_k3_windows(gpu, &g, x, dy, s, with_bias)
        }
        WeightGradKernel::Windows1x1 => {
            let g = k1_windows_geometry(&caps, s).expect("planned");
            (weight_grad_k1_windows(gpu, &g, x, dy, s), None)
        }
        WeightGradKernel::Blocked => {
            let kernel = blocked_weight_kernel(s).expect("planned");
            (weight_grad_blocked(gpu, kernel, x, dy, s), None)
        }
        WeightGradKernel::Direct => (weight_grad_direct(gpu, x, dy, s), None),
    };
    let db = match (with_bias, db) {
        (true, None) => Some(crate::ops::conv::conv2d_backward_bias(gpu, dy, s)),
        (_, db) => db,
    };
    (dw, db)
}

fn blocked_weight_kernel(s: &ConvShape) -> Option<&'static Kernel> {
    match (s.kernel, s.stride) {
        (3, 1) => Some(&BWD_W_K3S1_CPU),
        (3, 2) => Some(&BWD_W_K3S2_CPU),
        _ => None,
    }
}

fn weight_grad_direct(gpu: &Gpu, x: &Tensor, dy: &Tensor, s: &ConvShape) -> Tensor {
    let k_cols = s.c_in * s.kernel * s.kernel;
    let chunks = (s.n * s.h_out() * s.w_out()).div_ceil(CHUNK);
    let partial = gpu.empty(&[chunks, s.c_out * k_cols]);
    let p = ConvParams {
        chunk: CHUNK as u32,
        ..params(s)
    };
    gpu.dispatch(
        &BWD_W_DIRECT,
        &p,
        &[("x", x), ("dy", dy), ("out", &partial)],
        direct_grid(s.c_out, k_cols, chunks),
    );
    crate::ops::reduce::sum_rows(gpu, &partial).reshape(&[s.c_out, s.c_in, s.kernel, s.kernel])
}

/// Split-K over output rows (n, oy): enough chunks for both cores and then some.
fn weight_grad_blocked(
    gpu: &Gpu,
    kernel: &'static Kernel,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Tensor {
    let k_cols = s.c_in * s.kernel * s.kernel;
    let rows = s.n * s.h_out();
    let chunk = rows.div_ceil(CPU_BWD_W_CHUNKS);
    let chunks = rows.div_ceil(chunk);
    let partial = gpu.empty(&[chunks, s.c_out * k_cols]);
    let p = ConvParams {
        chunk: chunk as u32,
        ..params(s)
    };
    let groups = [
        s.c_in.div_ceil(CPU_BWD_W_CHANNELS) as u32,
        s.c_out.div_ceil(CPU_BLOCK) as u32,
        chunks as u32,
    ];
    let tensors = [("x", x), ("dy", dy), ("out", &partial)];
    gpu.dispatch(kernel, &p, &tensors, groups);
    crate::ops::reduce::sum_rows(gpu, &partial).reshape(&[s.c_out, s.c_in, s.kernel, s.kernel])
}

/// How conv2d_bwd_w_k1_ubo lays a shape over its windows.
pub(crate) struct K1Windows {
    kernel: &'static Kernel,
    plane: usize,
    window_channels: usize,
    ci_groups: usize,
}

/// Input channels per workgroup of the 1x1 weight gradient (8 lanes x 4) and output channels
/// per thread of the window weight gradients.
const K1_CHANNELS: usize = 32;
const THREAD_CHANNELS: usize = 16;

/// The geometry of the 1x1 weight gradient by conv2d_bwd_w_k1_ubo (or its subgroup twin), or
/// None for other shapes and where a padded plane exceeds the window.
fn k1_windows_geometry(caps: &Capabilities, s: &ConvShape) -> Option<K1Windows> {
    if s.taps() != (1, 1, 0) {
        return None;
    }
    let kernel = if caps.subgroups {
        &BWD_W_K1_SG
    } else {
        &BWD_W_K1_UBO
    };
    let plane = (s.h * s.w).next_multiple_of(window::align_floats(caps));
    let window_channels = (window::WINDOW_FLOATS / plane) / THREAD_CHANNELS * THREAD_CHANNELS;
    let ci_groups = s.c_in.div_ceil(K1_CHANNELS);
    let fits = window_channels > 0
        && ci_groups <= caps.max_groups_per_dim as usize
        && window::fits_binding(caps, s.n * s.c_out * plane);
    fits.then_some(K1Windows {
        kernel,
        plane,
        window_channels: window_channels.min(s.c_out.next_multiple_of(THREAD_CHANNELS)),
        ci_groups,
    })
}

/// The 1x1 weight gradient: dy goes through the uniform window one sample and a run of whole
/// output channels at a time; each dispatch adds to the partial sums of its parts of the flat
/// pixels, which a last pass adds up.
fn weight_grad_k1_windows(
    gpu: &Gpu,
    g: &K1Windows,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
) -> Tensor {
    // Enough workgroups per dispatch for a many-core CPU.
    const TARGET_GROUPS: usize = 16;
    let hw = s.h * s.w;
    let per_window = g.ci_groups * g.window_channels / THREAD_CHANNELS;
    // Parts of the flat pixels, in groups of 4.
    let units = hw.div_ceil(CPU_PX);
    let parts = (TARGET_GROUPS / per_window).clamp(1, units);
    let per_part = units.div_ceil(parts);
    let parts = units.div_ceil(per_part);
    let padded = padded_planes(gpu, dy, [s.n, s.c_out, s.h, s.w], g.plane, s.w, 0);
    let partial = gpu.empty(&[parts, s.c_out * s.c_in]);
    for n in 0..s.n {
        for co_begin in (0..s.c_out).step_by(g.window_channels) {
            let co_end = (co_begin + g.window_channels).min(s.c_out);
            let window = window::view(&padded, (n * s.c_out + co_begin) * g.plane);
            let p = ConvParams {
                block: n as u32,
                ci_begin: co_begin as u32,
                ci_end: co_end as u32,
                accumulate: (n > 0) as u32,
                chunk: (per_part * CPU_PX) as u32,
                plane_stride: g.plane as u32,
                ..params(s)
            };
            let groups = [
                parts as u32,
                g.ci_groups as u32,
                (co_end - co_begin).div_ceil(THREAD_CHANNELS) as u32,
            ];
            let tensors = [("x", x), ("out", &partial), ("wuni", &window)];
            gpu.dispatch(g.kernel, &p, &tensors, groups);
        }
    }
    crate::ops::reduce::sum_rows(gpu, &partial).reshape(&[s.c_out, s.c_in, 1, 1])
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
        &PAD_PLANES,
        &p,
        &[("x", t), ("out", &padded)],
        gpu.groups_1d(total / 8),
    );
    padded
}

/// How conv2d_bwd_w_k3s1_ubo (or its subgroup twin) lays a shape over its windows.
pub(crate) struct K3Windows {
    kernel: &'static Kernel,
    dy_row: usize,
    dy_plane: usize,
    x_row: usize,
    x_plane: usize,
    co_window: usize,
    ci_window: usize,
    /// Samples per dispatch, each in its own x and dy window (the subgroup kernel takes 4).
    samples: usize,
}

/// The geometry of the stride-1 3x3 weight gradient, or None where a padded plane of x or dy
/// exceeds the window.
fn k3_windows_geometry(caps: &Capabilities, s: &ConvShape) -> Option<K3Windows> {
    if (s.kernel, s.stride) != (3, 1) {
        return None;
    }
    let kernel = if caps.subgroups {
        &BWD_W_K3S1_SG
    } else {
        &BWD_W_K3S1_UBO
    };
    let align = window::align_floats(caps);
    let (h_out, w_out) = (s.h_out(), s.w_out());
    let dy_row = w_out.next_multiple_of(CPU_PX);
    let dy_plane = (h_out * dy_row).next_multiple_of(align);
    let x_row = dy_row + CPU_PX;
    let x_plane = ((h_out + 2) * x_row).next_multiple_of(align);
    let co_window = (window::WINDOW_FLOATS / dy_plane) / THREAD_CHANNELS * THREAD_CHANNELS;
    let ci_window = (window::WINDOW_FLOATS / x_plane) / LANES * LANES;
    let fits = co_window > 0
        && ci_window > 0
        && window::fits_binding(caps, s.n * s.c_out * dy_plane)
        && window::fits_binding(caps, s.n * s.c_in * x_plane);
    // One uniform buffer for the parameters, four for x and four for dy.
    let samples = if caps.subgroups && caps.max_uniform_buffers_per_stage >= 9 {
        4
    } else {
        1
    };
    fits.then_some(K3Windows {
        kernel,
        dy_row,
        dy_plane,
        x_row,
        x_plane,
        co_window: co_window.min(s.c_out.next_multiple_of(THREAD_CHANNELS)),
        ci_window: ci_window.min(s.c_in.next_multiple_of(LANES)),
        samples,
    })
}

/// The stride-1 3x3 weight gradient with x and dy both in uniform windows: a dispatch per
/// (samples, window of input channels, window of output channels), each adding to the partial
/// sums of its row parts, which a last pass adds up. The subgroup kernel takes four samples per
/// dispatch (Mesa 22.3.6, batch 32: 32->32 @28 31-32 -> 25 ms, 96->32 @28 95 -> 71-73 ms) and
/// sums the bias gradient in the same pass.
fn weight_grad_k3_windows(
    gpu: &Gpu,
    g: &K3Windows,
    x: &Tensor,
    dy: &Tensor,
    s: &ConvShape,
    with_bias: bool,
) -> (Tensor, Option<Tensor>) {
    // Two workgroups per core, where a CPU driver runs its threads: each row part
    // read-modify-writes its partial sums once per dispatch (144 per lane, in storage loads that
    // llvmpipe loops over lanes), so fewer parts cost less. Mesa 22.3.6, 2 cores, 4 instead of
    // 16: 96->32 @28 155-162 -> 118-125 ms, the step 9.2-9.3 -> 8.9-9.1 s. The parts set the
    // summation order, so results are reproducible per machine (a CPU adapter is this machine),
    // not across core counts.
    let caps = gpu.caps();
    let target_groups = 2 * caps.cores;
    let h_out = s.h_out();
    let per_window = g.ci_window / LANES * (g.co_window / THREAD_CHANNELS);
    let parts = (target_groups / per_window).clamp(1, h_out);
    let per_part = h_out.div_ceil(parts);
    let parts = h_out.div_ceil(per_part);
    let dy_padded = padded_planes(
        gpu,
        dy,
        [s.n, s.c_out, h_out, s.w_out()],
        g.dy_plane,
        g.dy_row,
        0,
    );
    let x_padded = padded_planes(
        gpu,
        x,
        [s.n, s.c_in, s.h, s.w],
        g.x_plane,
        g.x_row,
        s.padding,
    );
    let k_cols = s.c_in * 9;
    // The subgroup kernel can sum the bias gradient too, after the weights' (at a
    // storage-aligned offset, so that it can be a view).
    let with_bias = with_bias && std::ptr::eq(g.kernel, &BWD_W_K3S1_SG);
    let storage_align = (caps.storage_align as usize / 4).max(1);
    let bias_offset = (s.c_out * k_cols).next_multiple_of(storage_align);
    let row = if with_bias {
        bias_offset + s.c_out
    } else {
        s.c_out * k_cols
    };
    let partial = gpu.empty(&[parts, row]);
    for n0 in (0..s.n).step_by(g.samples) {
        let in_dispatch = g.samples.min(s.n - n0);
        // Sample j of the dispatch (the last one again past the batch: bound, not read).
        let sample = |j: usize| n0 + j.min(in_dispatch - 1);
        for ci_begin in (0..s.c_in).step_by(g.ci_window) {
            let ci_end = (ci_begin + g.ci_window).min(s.c_in);
            let x_windows: Vec<Tensor> = (0..g.samples)
                .map(|j| window::view(&x_padded, (sample(j) * s.c_in + ci_begin) * g.x_plane))
                .collect();
            for co_begin in (0..s.c_out).step_by(g.co_window) {
                let co_end = (co_begin + g.co_window).min(s.c_out);
                let dy_windows: Vec<Tensor> = (0..g.samples)
                    .map(|j| {
                        window::view(&dy_padded, (sample(j) * s.c_out + co_begin) * g.dy_plane)
                    })
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
                    plane_stride: g.dy_plane as u32,
                    row_stride: g.dy_row as u32,
                    x_begin: ci_begin as u32,
                    x_end: ci_end as u32,
                    x_plane_stride: g.x_plane as u32,
                    x_row: g.x_row as u32,
                    ..params(s)
                };
                let groups = [
                    parts as u32,
                    (ci_end - ci_begin).div_ceil(LANES) as u32,
                    (co_end - co_begin).div_ceil(THREAD_CHANNELS) as u32,
                ];
                let mut bindings = vec![("out", &partial)];
                bindings.extend(X_WINDOW_NAMES.into_iter().zip(x_windows.iter()));
                bindings.extend(DY_WINDOW_NAMES.into_iter().zip(dy_windows.iter()));
                gpu.dispatch(g.kernel, &p, &bindings, groups);
            }
        }
    }
    let sums = crate::ops::reduce::sum_rows(gpu, &partial);
    let dw = sums.slice_flat(0, &[s.c_out, s.c_in, 3, 3]);
    (
        dw,
        with_bias.then(|| sums.slice_flat(bias_offset, &[s.c_out])),
    )
}
