//! Group normalisation with learned scale and shift, plain or fused with SiLU, forward and
//! backward: the plan, and the GPU path (shaders/group_norm.wgsl, a workgroup per group with
//! tree sums). CPU adapters run the wing's kernels (ops::soft::group_norm).

use bytemuck::{Pod, Zeroable};

use super::soft;
use crate::autograd::{take_earlier, Backward, Ctx, Var};
use crate::gpu::{Capabilities, Gpu, Kernel, MAX_GROUPS_PER_DIM};
use crate::shaders::GROUP_NORM;
use crate::tensor::Tensor;

/// Mirrors `GroupNormParams` in shaders/group_norm.wgsl; the wing's kernels take it with their
/// own fields after it (ops::soft::group_norm::SoftGroupNormParams).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct GroupNormParams {
    pub n: u32,
    pub c: u32,
    pub hw: u32,
    pub groups: u32,
    pub eps: f32,
    pub fuse_silu: u32,
    pub part_row: u32,
    pub beta_offset: u32,
    pub drop_p: f32,
    pub drop_seed: u32,
    pub drop_stream: u32,
    pub drop_offset: u32,
}

static GN_FWD: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_fwd",
};
static GN_BWD: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_bwd",
};
static GN_BWD_ACC: Kernel = Kernel {
    shader: &GROUP_NORM,
    entry: "group_norm_bwd_acc",
};
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
        drop_p: 0.0,
        drop_seed: 0,
        drop_stream: 0,
        drop_offset: 0,
    }
}

/// Inverted dropout after a group norm (unet_misc::dropout's mask: rate `p`, draw `key`, x[0] at
/// element `offset` of the whole batch), fused into the GPU path's norm kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormDropout {
    pub p: f32,
    pub key: (u32, u32),
    pub offset: usize,
}

fn with_dropout(
    p: GroupNormParams,
    dropout: Option<GroupNormDropout>,
    numel: usize,
) -> GroupNormParams {
    let Some(d) = dropout else { return p };
    super::count_u32(d.offset + numel, "group_norm dropout");
    GroupNormParams {
        drop_p: d.p,
        drop_seed: d.key.0,
        drop_stream: d.key.1,
        drop_offset: d.offset as u32,
        ..p
    }
}

pub(crate) fn grid(workgroups: usize) -> [u32; 3] {
    let w = workgroups as u32;
    if w <= MAX_GROUPS_PER_DIM {
        [w, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, w.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}

/// How group norm runs: a workgroup per group with tree sums on GPUs; on CPU adapters (the
/// wing), a thread per group without barriers (every barrier is a coroutine switch there), or,
/// with subgroups where storage loads are lane-looped, a subgroup per group reading x and dy
/// through uniform windows. All compute the same statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupNormPlan {
    /// group_norm_fwd / group_norm_bwd.
    WorkgroupPerGroup,
    /// group_norm_fwd_cpu / group_norm_bwd_cpu.
    ThreadPerGroup,
    /// group_norm_fwd_sg / group_norm_bwd_sg.
    SubgroupWindows,
}

/// The plan for `n` samples of `c` channels of `hw` pixels in `groups` groups.
pub fn plan(caps: &Capabilities, [_, c, hw]: [usize; 3], groups: usize) -> GroupNormPlan {
    if !caps.soft_kernels {
        GroupNormPlan::WorkgroupPerGroup
    } else if soft::group_norm::windows_fit(caps, c / groups * hw) {
        GroupNormPlan::SubgroupWindows
    } else {
        GroupNormPlan::ThreadPerGroup
    }
}

impl GroupNormPlan {
    /// The forward and backward entry points.
    pub fn entries(self) -> [&'static str; 2] {
        match self {
            GroupNormPlan::WorkgroupPerGroup => ["group_norm_fwd", "group_norm_bwd"],
            GroupNormPlan::ThreadPerGroup => ["group_norm_fwd_cpu", "group_norm_bwd_cpu"],
            GroupNormPlan::SubgroupWindows => ["group_norm_fwd_sg", "group_norm_bwd_sg"],
        }
    }
}

/// What a group norm computes: x's channels in `groups` groups, then SiLU when `fuse_silu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupNormOptions {
    pub groups: usize,
    pub fuse_silu: bool,
}

/// (y, stats): y = GN(x) (then SiLU when `fuse_silu`); stats holds (mean, rstd) per group.
pub fn group_norm(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    opts: GroupNormOptions,
) -> (Tensor, Tensor) {
    group_norm_dropout(gpu, x, gamma, beta, opts, None)
}

/// Whether the norm kernels of this adapter run a dropout after the norm in the same pass (the
/// GPU path); the wing's do not.
pub fn fuses_dropout(gpu: &Gpu, x: &Tensor, groups: usize) -> bool {
    accumulates_dx(gpu, x, groups)
}

/// `group_norm` followed by `dropout` in the same pass (where `fuses_dropout` holds).
pub fn group_norm_dropout(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    opts: GroupNormOptions,
    dropout: Option<GroupNormDropout>,
) -> (Tensor, Tensor) {
    let GroupNormOptions { groups, fuse_silu } = opts;
    assert!(
        dropout.is_none() || fuses_dropout(gpu, x, groups),
        "the wing's norm kernels run no dropout"
    );
    let p = with_dropout(params(x, groups, fuse_silu), dropout, x.numel());
    assert!(
        gamma.numel() == p.c as usize && beta.numel() == p.c as usize,
        "group_norm: gamma/beta length"
    );
    let y = gpu.empty(&x.shape);
    let stats = gpu.empty(&[x.shape[0] * groups, 2]);
    let tensors = [
        ("x", x),
        ("gamma", gamma),
        ("beta", beta),
        ("out", &y),
        ("stats", &stats),
    ];
    match plan(&gpu.caps(), dims3(x), groups) {
        GroupNormPlan::WorkgroupPerGroup => {
            gpu.dispatch(&GN_FWD, &p, &tensors, grid(x.shape[0] * groups))
        }
        GroupNormPlan::ThreadPerGroup => soft::group_norm::forward_threads(gpu, &p, &tensors),
        GroupNormPlan::SubgroupWindows => soft::group_norm::forward_windows(gpu, &p, &tensors),
    }
    (y, stats)
}

fn dims3(x: &Tensor) -> [usize; 3] {
    let (n, c, hw) = dims(x);
    [n, c, hw]
}

/// (dx, dgamma, dbeta) from the forward pass's x, gamma, beta and stats.
pub fn group_norm_backward(
    gpu: &Gpu,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &Tensor,
    dy: &Tensor,
    opts: GroupNormOptions,
) -> (Tensor, Tensor, Tensor) {
    group_norm_backward_into(gpu, (x, gamma, beta, stats), dy, (opts, None), None)
}

/// Whether `group_norm_backward_into` can add dx onto a gradient x already has (the GPU path;
/// the software wing's kernels write dx alone).
pub fn accumulates_dx(gpu: &Gpu, x: &Tensor, groups: usize) -> bool {
    plan(&gpu.caps(), dims3(x), groups) == GroupNormPlan::WorkgroupPerGroup
}

/// `group_norm_backward` whose dx is added onto `dx_into` in place where given (where
/// `accumulates_dx` holds), saving the autograd's add pass; with a dropout, the backward of
/// `group_norm_dropout` (dy through the mask first).
pub fn group_norm_backward_into(
    gpu: &Gpu,
    (x, gamma, beta, stats): (&Tensor, &Tensor, &Tensor, &Tensor),
    dy: &Tensor,
    (opts, dropout): (GroupNormOptions, Option<GroupNormDropout>),
    dx_into: Option<Tensor>,
) -> (Tensor, Tensor, Tensor) {
    let GroupNormOptions { groups, fuse_silu } = opts;
    assert!(
        dropout.is_none() || fuses_dropout(gpu, x, groups),
        "the wing's norm kernels run no dropout"
    );
    let (n, c, _) = dims(x);
    // dgamma and dbeta share the partial sums and their reduction (one dispatch fewer, which
    // is what a GPU pays for); dbeta becomes a view at a storage-aligned offset.
    let align = (gpu.caps().storage_align as usize / 4).max(1);
    let beta_offset = c.next_multiple_of(align);
    let part_row = beta_offset + c;
    let p = GroupNormParams {
        part_row: part_row as u32,
        beta_offset: beta_offset as u32,
        ..with_dropout(params(x, groups, fuse_silu), dropout, x.numel())
    };
    let accumulate = dx_into.is_some();
    let dx = match dx_into {
        Some(into) => {
            assert!(
                accumulates_dx(gpu, x, groups),
                "the wing's kernels write dx alone"
            );
            assert_eq!(into.shape, x.shape, "group_norm_backward_into: dx's shape");
            into
        }
        None => gpu.empty(&x.shape),
    };
    let param_part = gpu.empty(&[n, part_row]);
    let tensors = [
        ("x", x),
        ("gamma", gamma),
        ("beta", beta),
        ("dy", dy),
        ("out", &dx),
        ("stats", stats),
        ("param_part", &param_part),
    ];
    match plan(&gpu.caps(), dims3(x), groups) {
        GroupNormPlan::WorkgroupPerGroup => {
            let kernel = if accumulate { &GN_BWD_ACC } else { &GN_BWD };
            gpu.dispatch(kernel, &p, &tensors, grid(n * groups))
        }
        GroupNormPlan::ThreadPerGroup => soft::group_norm::backward_threads(gpu, &p, &tensors),
        GroupNormPlan::SubgroupWindows => soft::group_norm::backward_windows(gpu, &p, &tensors),
    }
    // Only the optimizer reads dgamma and dbeta: their sum can wait and share a dispatch.
    let sums = super::reduce::sum_rows_later(gpu, &param_part);
    let dgamma = sums.slice_flat(0, &[c]);
    let dbeta = sums.slice_flat(beta_offset, &[c]);
    (dx, dgamma, dbeta)
}

struct GroupNormBackward {
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    stats: Tensor,
    opts: GroupNormOptions,
    dropout: Option<GroupNormDropout>,
}

impl Backward for GroupNormBackward {
    fn name(&self) -> &'static str {
        if self.opts.fuse_silu {
            "group_norm_silu"
        } else {
            "group_norm"
        }
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.backward_into(gpu, dy, needs, &mut [None, None, None])
    }
    fn backward_into(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        _needs: &[bool],
        into: &mut [Option<Tensor>],
    ) -> Vec<Option<Tensor>> {
        let dx_into = take_earlier(into, 0, accumulates_dx(gpu, &self.x, self.opts.groups));
        let saved = (&self.x, &self.gamma, &self.beta, &self.stats);
        let options = (self.opts, self.dropout);
        let (dx, dgamma, dbeta) = group_norm_backward_into(gpu, saved, dy, options, dx_into);
        vec![Some(dx), Some(dgamma), Some(dbeta)]
    }
}

/// Differentiable GN(x) (then SiLU when `fuse_silu`) for x [n, c, ...].
pub fn group_norm_var(
    cx: &mut Ctx,
    x: &Var,
    gamma: &Var,
    beta: &Var,
    opts: GroupNormOptions,
) -> Var {
    group_norm_dropout_var(cx, x, gamma, beta, opts, None)
}

/// Differentiable dropout(GN(x)) (SiLU between when `fuse_silu`): one pass each way on the GPU
/// path, a norm then unet_misc's dropout in the wing. Both draw the same mask.
pub fn group_norm_dropout_var(
    cx: &mut Ctx,
    x: &Var,
    gamma: &Var,
    beta: &Var,
    opts: GroupNormOptions,
    dropout: Option<GroupNormDropout>,
) -> Var {
    let dropout = dropout.filter(|d| d.p > 0.0);
    let (fused, after) = match dropout {
        Some(d) if !fuses_dropout(cx.gpu, &x.tensor, opts.groups) => (None, Some(d)),
        d => (d, None),
    };
    let (y, stats) =
        group_norm_dropout(cx.gpu, &x.tensor, &gamma.tensor, &beta.tensor, opts, fused);
    let node = GroupNormBackward {
        x: x.tensor.clone(),
        gamma: gamma.tensor.clone(),
        beta: beta.tensor.clone(),
        stats,
        opts,
        dropout: fused,
    };
    let y = cx.record(node, &[x, gamma, beta], y);
    match after {
        Some(d) => super::unet_misc::dropout_var(cx, &y, d.p, d.key, d.offset),
        None => y,
    }
}
