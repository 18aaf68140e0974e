//! Group normalisation with learned scale and shift (shaders/group_norm.wgsl), plain or fused
//! with SiLU, forward and backward.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel, MAX_GROUPS_PER_DIM};
use crate::ops::window::{self, Windows};
use crate::shaders::{GROUP_NORM, GROUP_NORM_SUBGROUP};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GroupNormParams {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    fuse_silu: u32,
    part_row: u32,
    beta_offset: u32,
    first_group: u32,
    groups_per_window: u32,
    _pad: [u32; 2],
    shifts: [u32; 4],
}

static GN_FWD: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_fwd",
};
static GN_BWD: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_bwd",
};
static GN_FWD_CPU: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_fwd_cpu",
};
static GN_BWD_CPU: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_bwd_cpu",
};
static GN_FWD_SG: Kernel = Kernel {
    shader: &GROUP_NORM_SUBGROUP,
    entry: "group_norm_fwd_sg",
};
static GN_BWD_SG: Kernel = Kernel {
    shader: &GROUP_NORM_SUBGROUP,
    entry: "group_norm_bwd_sg",
};
/// Windows of x (and of dy) per dispatch of the subgroup kernels.
const SG_WINDOWS: usize = 4;
/// Threads per workgroup of the CPU-adapter kernels (one thread per (sample, group)).
const CPU_WG: usize = 16;
pub const EPS: f32 = 1e-5;

fn dims(x: &Tensor) -> (usize, usize, usize) {
    assert!(
        x.shape.len() >= 2,
        "group_norm: x must be [n, c, ...], got {:?}",
        x.shape
    );
    (x.shape[0], x.shape[1], x.shape[2..].iter().product())
}

fn params(x: &Tensor, groups: usize, fuse_silu: bool) -> GroupNormParams {
    let (n, c, hw) = dims(x);
    assert!(
        groups > 0 && c % groups == 0,
        "group_norm: {c} channels do not split into {groups} groups"
    );
    GroupNormParams {
        n: n as u32,
        c: c as u32,
        hw: hw as u32,
        groups: groups as u32,
        eps: EPS,
        fuse_silu: fuse_silu as u32,
        part_row: 0,
        beta_offset: 0,
        first_group: 0,
        groups_per_window: 0,
        _pad: [0; 2],
        shifts: [0; 4],
    }
}

fn grid(workgroups: usize) -> [u32; 3] {
    let w = workgroups as u32;
    if w <= MAX_GROUPS_PER_DIM {
        [w, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, w.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}

/// A workgroup per group with tree sums (GPUs), or a thread per group without barriers (CPU
/// adapters, where every barrier is a coroutine switch), or, on CPU adapters with subgroups and
/// slow storage loads (`Gpu::lane_looped_loads`), a subgroup per group reading x and dy
/// through uniform windows (ThreadPerGroup where a group exceeds a window); all compute the
/// same statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupNormVariant {
    WorkgroupPerGroup,
    ThreadPerGroup,
    SubgroupWindows,
}

impl GroupNormVariant {
    pub fn for_adapter(gpu: &Gpu) -> GroupNormVariant {
        if !gpu.cpu_kernels() {
            GroupNormVariant::WorkgroupPerGroup
        } else if gpu.lane_looped_loads() && Self::windows_supported(gpu) {
            GroupNormVariant::SubgroupWindows
        } else {
            GroupNormVariant::ThreadPerGroup
        }
    }

    /// Whether the device runs the subgroup kernels: subgroups, 64 KiB uniform windows, and
    /// uniform buffers for the parameters and four x and four dy windows.
    pub fn windows_supported(gpu: &Gpu) -> bool {
        gpu.subgroups()
            && window::supported(gpu)
            && gpu.limits.max_uniform_buffers_per_shader_stage as usize > 2 * SG_WINDOWS
    }

    /// The kernel and grid for n * groups groups (shaders/group_norm.wgsl).
    fn pick(
        self,
        gpu_kernel: &'static Kernel,
        cpu_kernel: &'static Kernel,
        n_groups: usize,
    ) -> (&'static Kernel, [u32; 3]) {
        match self {
            GroupNormVariant::ThreadPerGroup | GroupNormVariant::SubgroupWindows => {
                (cpu_kernel, grid(n_groups.div_ceil(CPU_WG)))
            }
            GroupNormVariant::WorkgroupPerGroup => (gpu_kernel, grid(n_groups)),
        }
    }
}

/// (y, stats): y = GN(x) (then SiLU when `fuse_silu`); stats holds (mean, rstd) per group.
pub fn group_norm(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    fuse_silu: bool,
) -> (Tensor, Tensor) {
    let variant = GroupNormVariant::for_adapter(gpu);
    group_norm_variant(gpu, variant, x, gamma, beta, groups, fuse_silu)
}

/// `group_norm` with the kernel variant chosen by the caller (tests cover both on any adapter).
pub fn group_norm_variant(
    gpu: &Gpu,
    variant: GroupNormVariant,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    fuse_silu: bool,
) -> (Tensor, Tensor) {
    let p = params(x, groups, fuse_silu);
    assert!(
        gamma.numel() == p.c as usize && beta.numel() == p.c as usize,
        "group_norm: gamma/beta length"
    );
    let y = gpu.empty(&x.shape);
    let stats = gpu.empty(&[x.shape[0] * groups, 2]);
    if variant == GroupNormVariant::SubgroupWindows
        && dispatch_windows(gpu, &GN_FWD_SG, &p, &[x], &[gamma, beta, &y, &stats])
    {
        return (y, stats);
    }
    let (kernel, groups) = variant.pick(&GN_FWD, &GN_FWD_CPU, x.shape[0] * groups);
    gpu.dispatch(kernel, &p, &[x, gamma, beta, &y, &stats], groups);
    (y, stats)
}

/// Runs a subgroup kernel (group_norm_subgroup.wgsl) over all n * groups groups: `storage`
/// binds first, then SG_WINDOWS windows of each tensor of `windowed` (x, then dy). Each
/// dispatch covers SG_WINDOWS windows of whole groups. False (nothing recorded) where a group
/// does not fit a window.
fn dispatch_windows(
    gpu: &Gpu,
    kernel: &'static Kernel,
    p: &GroupNormParams,
    windowed: &[&Tensor],
    storage: &[&Tensor],
) -> bool {
    let align = window::align_floats(gpu);
    let group_floats = (p.c / p.groups * p.hw) as usize;
    // A window starts at the aligned float at or before its first group.
    let per_window = (window::WINDOW_FLOATS + 1 - align) / group_floats;
    if per_window == 0 {
        return false;
    }
    let sources: Vec<Windows> = windowed.iter().map(|t| Windows::new(gpu, t)).collect();
    let total = (p.n * p.groups) as usize;
    let per_dispatch = SG_WINDOWS * per_window;
    for first in (0..total).step_by(per_dispatch) {
        let in_dispatch = per_dispatch.min(total - first);
        let mut shifts = [0u32; SG_WINDOWS];
        let mut bindings: Vec<Tensor> = Vec::with_capacity(SG_WINDOWS * sources.len());
        for source in &sources {
            for (j, shift) in shifts.iter_mut().enumerate() {
                // Windows past the dispatch's groups are bound, not read.
                let group = first + (j * per_window).min(in_dispatch - 1);
                let (view, offset) = source.at(group * group_floats);
                *shift = offset as u32;
                bindings.push(view);
            }
        }
        let params = GroupNormParams {
            first_group: first as u32,
            groups_per_window: per_window as u32,
            shifts,
            ..*p
        };
        let mut tensors: Vec<&Tensor> = storage.to_vec();
        tensors.extend(bindings.iter());
        gpu.dispatch(kernel, &params, &tensors, [in_dispatch as u32, 1, 1]);
    }
    true
}

/// (dx, dgamma, dbeta).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
    dy: &Tensor,
    groups: usize,
    fuse_silu: bool,
) -> (Tensor, Tensor, Tensor) {
    let variant = GroupNormVariant::for_adapter(gpu);
    group_norm_backward_variant(gpu, variant, x, gamma, beta, stats, dy, groups, fuse_silu)
}

/// `group_norm_backward` with the kernel variant chosen by the caller.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward_variant(
    gpu: &Gpu,
    variant: GroupNormVariant,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
    dy: &Tensor,
    groups: usize,
    fuse_silu: bool,
) -> (Tensor, Tensor, Tensor) {
    let (n, c, _) = dims(x);
    // dgamma and dbeta share the partial sums and their reduction (one dispatch fewer, which
    // is what a GPU pays for); dbeta becomes a view at a storage-aligned offset.
    let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let beta_offset = c.next_multiple_of(align);
    let part_row = beta_offset + c;
    let p = GroupNormParams {
        part_row: part_row as u32,
        beta_offset: beta_offset as u32,
        ..params(x, groups, fuse_silu)
    };
    let dx = gpu.empty(&x.shape);
    let param_part = gpu.empty(&[n, part_row]);
    let windowed = variant == GroupNormVariant::SubgroupWindows
        && dispatch_windows(
            gpu,
            &GN_BWD_SG,
            &p,
            &[x, dy],
            &[gamma, beta, &dx, stats, &param_part],
        );
    if !windowed {
        let (kernel, grid) = variant.pick(&GN_BWD, &GN_BWD_CPU, n * groups);
        gpu.dispatch(
            kernel,
            &p,
            &[x, gamma, beta, dy, &dx, stats, &param_part],
            grid,
        );
    }
    let sums = super::reduce::sum_rows(gpu, &param_part);
    let dgamma = sums.slice_flat(0, &[c]);
    let dbeta = sums.slice_flat(beta_offset, &[c]);
    (dx, dgamma, dbeta)
}

struct GroupNormBackward {
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    stats: Tensor,
    groups: usize,
    fuse_silu: bool,
}

impl Backward for GroupNormBackward {
    fn name(&self) -> &'static str {
        if self.fuse_silu {
            "group_norm_silu"
        } else {
            "group_norm"
        }
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let (dx, dgamma, dbeta) = group_norm_backward(
            gpu,
            &self.x,
            &self.gamma,
            &self.beta,
            &self.stats,
            dy,
            self.groups,
            self.fuse_silu,
        );
        vec![Some(dx), Some(dgamma), Some(dbeta)]
    }
}

/// Differentiable GN(x) (then SiLU when `fuse_silu`) for x [n, c, ...].
pub fn group_norm_var(
    cx: &mut Ctx,
    x: &Var,
    gamma: &Var,
    beta: &Var,
    groups: usize,
    fuse_silu: bool,
) -> Var {
    let (y, stats) = group_norm(
        cx.gpu,
        &x.tensor,
        &gamma.tensor,
        &beta.tensor,
        groups,
        fuse_silu,
    );
    let node = GroupNormBackward {
        x: x.tensor.clone(),
        gamma: gamma.tensor.clone(),
        beta: beta.tensor.clone(),
        stats,
        groups,
        fuse_silu,
    };
    cx.record(node, &[x, gamma, beta], y)
}
