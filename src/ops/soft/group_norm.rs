//! The group-norm kernels of the software-adapter wing (shaders/soft/group_norm.wgsl and
//! shaders/soft/group_norm_subgroup.wgsl): a thread per (sample, group) without barriers, or a
//! subgroup per group reading x and dy through uniform windows where storage loads are
//! lane-looped (Mesa 22's llvmpipe). ops::group_norm's plan picks them on CPU adapters.

use bytemuck::{Pod, Zeroable};

use super::window::{self, Windows};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::ops::group_norm::{grid, GroupNormParams};
use crate::shaders::{SOFT_GROUP_NORM, SOFT_GROUP_NORM_SUBGROUP};
use crate::tensor::Tensor;

static FWD_THREADS: Kernel = Kernel {
    shader: &SOFT_GROUP_NORM,
    entry: "group_norm_fwd_cpu",
};
static BWD_THREADS: Kernel = Kernel {
    shader: &SOFT_GROUP_NORM,
    entry: "group_norm_bwd_cpu",
};
static FWD_WINDOWS: Kernel = Kernel {
    shader: &SOFT_GROUP_NORM_SUBGROUP,
    entry: "group_norm_fwd_sg",
};
static BWD_WINDOWS: Kernel = Kernel {
    shader: &SOFT_GROUP_NORM_SUBGROUP,
    entry: "group_norm_bwd_sg",
};
/// Mirrors `SoftGroupNormParams` in shaders/soft/group_norm.wgsl: the GPU kernels' parameters,
/// then the window kernels' dispatch fields.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SoftGroupNormParams {
    common: GroupNormParams,
    /// The window kernels: the dispatch's first (sample, group), whole groups per window, and
    /// where window j's first group starts in it.
    first_group: u32,
    groups_per_window: u32,
    _pad: [u32; 2],
    shifts: [u32; 4],
}

impl SoftGroupNormParams {
    fn new(common: &GroupNormParams) -> Self {
        SoftGroupNormParams {
            common: *common,
            ..Zeroable::zeroed()
        }
    }
}

/// Windows of x (and of dy) per dispatch of the subgroup kernels.
const SG_WINDOWS: usize = 4;
/// Threads per workgroup of the thread-per-group kernels.
const CPU_WG: usize = 16;

/// Whether the window kernels run groups of `group_floats` floats: subgroups, lane-looped
/// storage loads (elsewhere they lose to the thread-per-group kernels: 10-40% on Mesa 25.0.7),
/// 64 KiB uniform windows, uniform buffers for the parameters and four x and four dy windows,
/// and a group that fits a window.
pub(crate) fn windows_fit(caps: &Capabilities, group_floats: usize) -> bool {
    caps.subgroups
        && caps.lane_looped_loads
        && window::supported(caps)
        && caps.max_uniform_buffers_per_stage as usize > 2 * SG_WINDOWS
        && group_floats > 0
        && groups_per_window(caps, group_floats) > 0
}

/// Whole groups per window: a window starts at the aligned float at or before its first group.
fn groups_per_window(caps: &Capabilities, group_floats: usize) -> usize {
    (window::WINDOW_FLOATS + 1 - window::align_floats(caps)) / group_floats
}

fn n_groups(p: &GroupNormParams) -> usize {
    (p.n * p.groups) as usize
}

/// The forward pass, a thread per group; `tensors` are x, gamma, beta, out (y), stats.
pub(crate) fn forward_threads(gpu: &Gpu, p: &GroupNormParams, tensors: &[(&str, &Tensor)]) {
    let soft = SoftGroupNormParams::new(p);
    gpu.dispatch(
        &FWD_THREADS,
        &soft,
        tensors,
        grid(n_groups(p).div_ceil(CPU_WG)),
    );
}

/// The backward pass, a thread per group; `tensors` are x, gamma, beta, dy, out (dx), stats and
/// param_part (the parameter gradients' partial sums).
pub(crate) fn backward_threads(gpu: &Gpu, p: &GroupNormParams, tensors: &[(&str, &Tensor)]) {
    let soft = SoftGroupNormParams::new(p);
    gpu.dispatch(
        &BWD_THREADS,
        &soft,
        tensors,
        grid(n_groups(p).div_ceil(CPU_WG)),
    );
}

/// The forward pass through windows of x; `tensors` as `forward_threads`.
pub(crate) fn forward_windows(gpu: &Gpu, p: &GroupNormParams, tensors: &[(&str, &Tensor)]) {
    dispatch_windows(gpu, &FWD_WINDOWS, p, tensors);
}

/// The backward pass through windows of x and dy; `tensors` as `backward_threads`.
pub(crate) fn backward_windows(gpu: &Gpu, p: &GroupNormParams, tensors: &[(&str, &Tensor)]) {
    dispatch_windows(gpu, &BWD_WINDOWS, p, tensors);
}

/// Runs a window kernel over all n * groups groups: x and dy go through SG_WINDOWS windows each
/// (bindings xw0.. and dyw0..), the other tensors bind as they are. Each dispatch covers
/// SG_WINDOWS windows of whole groups.
fn dispatch_windows(
    gpu: &Gpu,
    kernel: &'static Kernel,
    p: &GroupNormParams,
    tensors: &[(&str, &Tensor)],
) {
    let (windowed, storage): (Vec<_>, Vec<_>) = tensors
        .iter()
        .copied()
        .partition(|(name, _)| matches!(*name, "x" | "dy"));
    let group_floats = (p.c / p.groups * p.hw) as usize;
    let per_window = groups_per_window(&gpu.caps(), group_floats);
    assert!(per_window > 0, "planned: a group fits a window");
    let sources: Vec<(&str, Windows)> = windowed
        .iter()
        .map(|&(name, t)| (name, Windows::new(gpu, t)))
        .collect();
    let total = n_groups(p);
    let per_dispatch = SG_WINDOWS * per_window;
    for first in (0..total).step_by(per_dispatch) {
        let in_dispatch = per_dispatch.min(total - first);
        let mut shifts = [0u32; SG_WINDOWS];
        let mut bindings: Vec<(String, Tensor)> = Vec::with_capacity(SG_WINDOWS * sources.len());
        for (name, source) in &sources {
            for (j, shift) in shifts.iter_mut().enumerate() {
                // Windows past the dispatch's groups are bound, not read.
                let group = first + (j * per_window).min(in_dispatch - 1);
                let (view, offset) = source.at(group * group_floats);
                *shift = offset as u32;
                bindings.push((format!("{name}w{j}"), view));
            }
        }
        let params = SoftGroupNormParams {
            first_group: first as u32,
            groups_per_window: per_window as u32,
            shifts,
            ..SoftGroupNormParams::new(p)
        };
        let mut tensors = storage.clone();
        tensors.extend(bindings.iter().map(|(name, t)| (name.as_str(), t)));
        gpu.dispatch(kernel, &params, &tensors, [in_dispatch as u32, 1, 1]);
    }
}
