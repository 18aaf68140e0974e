//! Ops: shape checks, the kernel dispatch and, for differentiable ops, the tape node and its
//! Backward. Functions on `&Gpu` and tensors are the raw kernels (used by backward passes and by
//! code without a tape); functions on `&mut Ctx` and vars record onto the tape.

pub mod activation;
pub mod arith;
pub mod attention;
pub mod conv;
pub mod diffusion;
pub mod embedding;
pub mod group_norm;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod reduce;
pub mod resample;
pub mod rng;
pub mod soft;
pub mod unet_misc;
pub mod vlb;

/// Element count as the u32 the kernels index with.
pub(crate) fn count_u32(n: usize, what: &str) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| panic!("{what}: {n} elements exceed the u32 index range"))
}
