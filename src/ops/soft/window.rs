//! Uniform windows: 64 KiB views of a tensor bound as uniform buffers, which the CPU-adapter
//! kernels read instead of storage buffers. Mesa 22's llvmpipe loads a storage element whose
//! address differs between lanes in a loop over the lanes, with a branch per lane; a uniform
//! element is a straight-line gather (see shaders/soft/conv.wgsl).

use crate::gpu::{Capabilities, Gpu};
use crate::tensor::Tensor;

/// Floats in a window: `array<vec4<f32>, 4096>` in the shaders, 64 KiB, which every Vulkan
/// driver allows as a uniform binding.
pub(crate) const WINDOW_FLOATS: usize = 16384;

/// Whether the adapter binds 64 KiB uniform windows.
pub(crate) fn supported(caps: &Capabilities) -> bool {
    caps.max_uniform_binding as usize >= WINDOW_FLOATS * 4
}

/// Whether a buffer of `floats` plus a window's tail can be bound as storage (the kernels that
/// fill padded copies write them whole).
pub(crate) fn fits_binding(caps: &Capabilities, floats: usize) -> bool {
    ((floats + WINDOW_FLOATS) * 4) as u64 <= caps.max_binding_bytes
}

/// The granularity of window starts in floats: the uniform offset alignment, and at least 8
/// (conv2d_pad_planes writes 8 floats per thread).
pub(crate) fn align_floats(caps: &Capabilities) -> usize {
    (caps.uniform_align as usize / 4).max(8)
}

/// A copy of `t` followed by a window's length of spare floats (not cleared: kernels read them
/// only into results they never store), so that a window starting anywhere in `t` binds inside
/// the buffer. A buffer copy, not a kernel.
pub(crate) fn with_tail(gpu: &Gpu, t: &Tensor) -> Tensor {
    let n = t.numel();
    let out = gpu.empty(&[n + WINDOW_FLOATS]);
    gpu.copy(t, &out.slice_flat(0, &[n]));
    out
}

/// The window of `t` starting at float `start`, which the caller keeps aligned.
pub(crate) fn view(t: &Tensor, start: usize) -> Tensor {
    t.slice_flat(start, &[WINDOW_FLOATS])
}

/// A tensor read through windows without copying it whole: windows that would run past its end
/// bind a copy of its last floats instead (at most a window and an alignment's worth), so only
/// that tail is copied. Where the tensor starts at a binding offset windows cannot use, the
/// whole of it is copied (`with_tail`).
pub(crate) struct Windows {
    t: Tensor,
    tail: Tensor,
    tail_start: usize,
    align: usize,
}

impl Windows {
    pub(crate) fn new(gpu: &Gpu, t: &Tensor) -> Windows {
        let caps = gpu.caps();
        let align = align_floats(&caps);
        let bound = t.offset().is_multiple_of(caps.uniform_align as u64);
        let t = if bound { t.clone() } else { with_tail(gpu, t) };
        let n = t.numel();
        // Windows starting at or before n - WINDOW_FLOATS lie inside t; the rest start after
        // tail_start.
        let tail_start = n.saturating_sub(WINDOW_FLOATS) / align * align;
        let copied = n - tail_start;
        let tail = gpu.empty(&[copied + WINDOW_FLOATS]);
        gpu.copy(
            &t.slice_flat(tail_start, &[copied]),
            &tail.slice_flat(0, &[copied]),
        );
        Windows {
            t,
            tail,
            tail_start,
            align,
        }
    }

    /// The window that holds float `start` of the tensor: it begins at the aligned float at or
    /// before `start`; also returns `start`'s offset in it.
    pub(crate) fn at(&self, start: usize) -> (Tensor, usize) {
        let base = start - start % self.align;
        let window = if base + WINDOW_FLOATS <= self.t.numel() {
            view(&self.t, base)
        } else {
            view(&self.tail, base - self.tail_start)
        };
        (window, start - base)
    }
}
