//! The CPU reference: plain loops over slices in f64, one file per op with the same names as
//! src/ops/. Only std. Every GPU kernel is tested against its twin here, and every backward
//! here is checked with central differences.

pub mod activation;
pub mod arith;
pub mod attention;
pub mod channel_bias;
pub mod conv;
pub mod cross_entropy;
pub mod ddim;
pub mod diffusion;
pub mod dpm_solver;
pub mod dropout;
pub mod embedding;
pub mod group_norm;
pub mod guidance;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod prediction;
pub mod reduce;
pub mod resample;
pub mod rng;
pub mod time_embedding;
pub mod vlb;

/// f32 data to f64 for the reference.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
