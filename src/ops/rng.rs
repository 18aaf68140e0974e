//! Random tensors on the GPU (shaders/rng.wgsl) from the counter-based Philox generator: the
//! draw for (seed, stream, index) is the same on every run and equals src/cpu/rng.rs.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::RNG;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RngParams {
    n: u32,
    seed: u32,
    stream: u32,
    n_timesteps: u32,
    antithetic: u32,
    /// The index of element 0 within the whole draw (random_normal only), lo then hi.
    offset_lo: u32,
    offset_hi: u32,
    /// sample_timesteps: the rows of the whole batch (offset_lo is the first row drawn).
    total: u32,
}

static RANDOM_NORMAL: Kernel = Kernel {
    shader: &RNG,
    entry: "random_normal",
};
static RANDOM_UNIFORM: Kernel = Kernel {
    shader: &RNG,
    entry: "random_uniform",
};
static SAMPLE_TIMESTEPS: Kernel = Kernel {
    shader: &RNG,
    entry: "sample_timesteps",
};

fn params(n: usize, seed: u32, stream: u32) -> RngParams {
    RngParams {
        n: super::count_u32(n, "rng"),
        seed,
        stream,
        n_timesteps: 0,
        antithetic: 0,
        offset_lo: 0,
        offset_hi: 0,
        total: 0,
    }
}

pub fn normal(gpu: &Gpu, shape: &[usize], seed: u32, stream: u32) -> Tensor {
    normal_from(gpu, shape, seed, stream, 0)
}

/// Draws `offset`, `offset + 1`, ... of (seed, stream): a chunk of a larger draw, equal to the
/// same elements of `normal` over the whole shape.
pub fn normal_from(gpu: &Gpu, shape: &[usize], seed: u32, stream: u32, offset: u64) -> Tensor {
    let out = gpu.empty(shape);
    let p = RngParams {
        offset_lo: offset as u32,
        offset_hi: (offset >> 32) as u32,
        ..params(out.numel(), seed, stream)
    };
    gpu.dispatch(
        &RANDOM_NORMAL,
        &p,
        &[("out", &out)],
        gpu.groups_1d(out.numel()),
    );
    out
}

pub fn uniform(gpu: &Gpu, shape: &[usize], seed: u32, stream: u32) -> Tensor {
    let out = gpu.empty(shape);
    gpu.dispatch(
        &RANDOM_UNIFORM,
        &params(out.numel(), seed, stream),
        &[("out", &out)],
        gpu.groups_1d(out.numel()),
    );
    out
}

/// n timesteps in [0, n_timesteps) as u32; antithetic pairs t with T - 1 - t.
pub fn timesteps(
    gpu: &Gpu,
    n: usize,
    n_timesteps: usize,
    antithetic: bool,
    seed: u32,
    stream: u32,
) -> Tensor {
    timesteps_of_rows(gpu, 0..n, n, n_timesteps, antithetic, seed, stream)
}

/// The timesteps of `rows` of a batch of `total` rows: equal to those rows of `timesteps` over
/// the whole batch (antithetic pairs span the whole batch), so micro-batches draw exactly the
/// large batch's timesteps.
pub fn timesteps_of_rows(
    gpu: &Gpu,
    rows: std::ops::Range<usize>,
    total: usize,
    n_timesteps: usize,
    antithetic: bool,
    seed: u32,
    stream: u32,
) -> Tensor {
    assert!(rows.end <= total, "rows {rows:?} of a batch of {total}");
    let n = rows.len();
    let out = gpu.empty(&[n]);
    let p = RngParams {
        n_timesteps: n_timesteps as u32,
        antithetic: antithetic as u32,
        offset_lo: super::count_u32(rows.start, "timesteps"),
        total: super::count_u32(total, "timesteps"),
        ..params(n, seed, stream)
    };
    gpu.dispatch(
        &SAMPLE_TIMESTEPS,
        &p,
        &[("timesteps", &out)],
        gpu.groups_1d(n),
    );
    out
}
