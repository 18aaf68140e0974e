//! The matmul kernels of the software-adapter wing (shaders/soft/matmul.wgsl): barrier-free
//! register blocks (matmul_fwd_direct), and the same reading both operands through 64 KiB
//! uniform windows (matmul_fwd_ubo), each with a twin that adds a bias (`_bias`), which CPU drivers gather in straight-line code instead of a
//! loop over the lanes. ops::matmul's plan picks them on CPU adapters.

use super::window::{self, Windows};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::ops::count_u32;
use crate::ops::matmul::MatmulParams;
use crate::shaders::SOFT_MATMUL;
use crate::tensor::Tensor;

static DIRECT: Kernel = Kernel {
    shader: &SOFT_MATMUL,
    entry: "matmul_fwd_direct",
};
static WINDOWS: Kernel = Kernel {
    shader: &SOFT_MATMUL,
    entry: "matmul_fwd_ubo",
};
static DIRECT_BIAS: Kernel = Kernel {
    shader: &SOFT_MATMUL,
    entry: "matmul_fwd_direct_bias",
};
static WINDOWS_BIAS: Kernel = Kernel {
    shader: &SOFT_MATMUL,
    entry: "matmul_fwd_ubo_bias",
};
/// Output tile of matmul_fwd_direct: 16 rows x 128 columns.
const DIRECT_TILE: (usize, usize) = (16, 128);
/// Output tile of matmul_fwd_ubo: 32 x 32.
const UBO_TILE: usize = 32;

/// Whether a batch entry of each operand (`entries` floats) fits a window.
pub(crate) fn windows_fit(caps: &Capabilities, entries: [usize; 2]) -> bool {
    let align = window::align_floats(caps);
    window::supported(caps)
        && entries
            .iter()
            .all(|&e| e > 0 && e + align <= window::WINDOW_FLOATS)
}

/// The product by matmul_fwd_direct into `c`.
pub(crate) fn direct(
    gpu: &Gpu,
    params: &MatmulParams,
    [a, b]: [&Tensor; 2],
    batch: usize,
    bias: Option<&Tensor>,
    c: &Tensor,
) {
    let groups = [
        (params.n as usize).div_ceil(DIRECT_TILE.1) as u32,
        (params.m as usize).div_ceil(DIRECT_TILE.0) as u32,
        batch as u32,
    ];
    match bias {
        Some(bias) => gpu.dispatch(
            &DIRECT_BIAS,
            params,
            &[("a", a), ("b", b), ("bias", bias), ("c", c)],
            groups,
        ),
        None => gpu.dispatch(&DIRECT, params, &[("a", a), ("b", b), ("c", c)], groups),
    }
}

/// The product by matmul_fwd_ubo into `c`, where a batch entry of each operand fits a window
/// (`windows_fit`): a dispatch per run of batch entries whose A and B both fit their windows.
pub(crate) fn windows(
    gpu: &Gpu,
    params: &MatmulParams,
    operands: [&Tensor; 2],
    batches: [usize; 2],
    bias: Option<&Tensor>,
    c: &Tensor,
) {
    let caps = gpu.caps();
    let align = window::align_floats(&caps);
    let entries = operands.map(|t| {
        let (_, r, c) = crate::ops::matmul::dims(t);
        r * c
    });
    let batch = batches[0].max(batches[1]);
    // Batch entries per dispatch: as many as every batched operand's window holds.
    let per_dispatch = (0..2)
        .filter(|&i| batches[i] > 1)
        .map(|i| (window::WINDOW_FLOATS - align) / entries[i])
        .min()
        .unwrap_or(batch)
        .clamp(1, caps.max_groups_per_dim as usize);
    let sources = operands.map(|t| Windows::new(gpu, t));
    let (m, n) = (params.m as usize, params.n as usize);
    for z0 in (0..batch).step_by(per_dispatch) {
        let [(a_win, a_off), (b_win, b_off)] = [0, 1].map(|i| {
            let start = if batches[i] > 1 { z0 * entries[i] } else { 0 };
            sources[i].at(start)
        });
        let p = MatmulParams {
            a_off: a_off as u32,
            b_off: b_off as u32,
            c_off: count_u32(z0 * m * n, "matmul"),
            ..*params
        };
        let groups = [
            n.div_ceil(UBO_TILE) as u32,
            m.div_ceil(UBO_TILE) as u32,
            per_dispatch.min(batch - z0) as u32,
        ];
        match bias {
            Some(bias) => gpu.dispatch(
                &WINDOWS_BIAS,
                &p,
                &[("bias", bias), ("c", c), ("aw", &a_win), ("bw", &b_win)],
                groups,
            ),
            None => gpu.dispatch(
                &WINDOWS,
                &p,
                &[("c", c), ("aw", &a_win), ("bw", &b_win)],
                groups,
            ),
        }
    }
}
