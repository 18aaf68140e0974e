//! ddpm: denoising diffusion models (DDPM, IDDPM) trained and sampled with hand-written WGSL
//! compute shaders on any wgpu adapter (Vulkan, Metal, DX12, or Mesa's software Vulkan).
//!
//! Module map:
//! - `gpu`: adapter selection, pipeline cache, buffer pool, per-step recorder, readback.
//! - `tensor`, `autograd`: GPU tensors and the tape that schedules backward kernels.
//! - `ops`: one file per op (dispatch + tape node); `cpu`: their f64 reference twins.
//! - `shaders`: the WGSL sources; `diffusion`: schedules, q_sample / p_sample, losses.
//! - `nn`: flat parameter buffers and models; `optim`: Adam, clipping, EMA.
//! - `data`, `train`, `sample`, `checkpoint`, `viz`, `metrics`: the jobs around them.

pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod gpu;
pub mod images;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod shaders;
pub mod tensor;
pub mod toy;
pub mod train;
pub mod viz;
