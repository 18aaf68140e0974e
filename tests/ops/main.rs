//! Every op's GPU kernels against the CPU reference (src/cpu/), one module per op with the op's
//! file stem (shaders/<op>.wgsl, src/ops/<op>.rs, src/cpu/<op>.rs), all in one test binary so CI
//! links it once.

#[path = "../common/mod.rs"]
mod common;

mod activation;
mod arith;
mod attention;
mod conv;
mod cross_entropy;
mod diffusion;
mod dpm_solver;
mod embedding;
mod group_norm;
mod guidance;
mod loss;
mod matmul;
mod optim;
mod prediction;
mod reduce;
mod resample;
mod rng;
mod unet_misc;
mod vlb;
