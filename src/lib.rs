//! ddpm: denoising diffusion models (DDPM, IDDPM) trained and sampled with hand-written WGSL
//! compute shaders on any wgpu adapter (Vulkan, Metal, DX12, or Mesa's software Vulkan).
//!
//! Module map:
//! - `gpu`: adapter selection, pipeline cache, buffer pool, per-step recorder, readback.
//! - `tensor` (in `gpu`), `autograd`: GPU tensors and the tape that schedules backward kernels.
//! - `ops`: one file per op (dispatch + tape node); `cpu`: their f64 reference twins.
//! - `shaders`: the WGSL sources; `diffusion`: schedules, q_sample / p_sample, losses.
//! - `nn`: flat parameter buffers and models; `optim`: Adam, clipping, EMA.
//! - `presets`: each recipe's configuration, batches and run; `train`: the step loop they share.
//! - `data`, `sample`, `eval`, `checkpoint`, `viz`, `metrics`: the jobs around them;
//!   `chunked`: sample draws in chunks that fit the device, streamed to samples.npy.
//! - `quality`: sample quality (FID, KID, precision/recall, memorisation) on the features of a
//!   classifier trained with the ops above.
//! - `parallel`: data-parallel training over MPI (feature `mpi`), one rank per process.
//! - `interrupt`: the Ctrl-C flag that training, sampling and evaluation stop at;
//!   `class_choice`: the classes a class-conditional model is sampled with.

pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod chunked;
pub mod class_choice;
pub mod config;
pub mod cpu;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod gpu;
pub mod interrupt;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod presets;
pub mod progress;
pub mod quality;
pub mod rng;
pub mod run_dir;
pub mod sample;
pub mod shaders;
pub mod shape;
/// GPU tensors, defined in `gpu` (a tensor is a range of the pool's buffers).
pub use gpu::tensor;
pub mod train;
pub mod viz;

/// The presets' modules under their former top-level names, which src/bench.rs still uses;
/// drop these once it names `presets::toy` and `presets::images`.
pub use presets::{images, toy};
