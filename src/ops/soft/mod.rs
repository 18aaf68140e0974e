//! The software-adapter wing: kernels that exist only for CPU adapters (lavapipe, WARP,
//! SwiftShader), with their shaders in shaders/soft/. They run where `Capabilities::soft_kernels`
//! holds (a CPU adapter, unless DDPM_KERNELS=gpu asks for the GPU path there), picked by the
//! plans of ops::conv, ops::group_norm and ops::matmul; a GPU never runs them. On a CPU driver
//! every barrier is a coroutine switch, workgroup memory is ordinary memory, and (Mesa 22's
//! llvmpipe) a storage load whose address differs between SIMD lanes is a loop over the lanes,
//! so these kernels keep a thread's outputs in registers without barriers and read through
//! uniform windows and subgroup broadcasts. Each earns its place by its measured share of the
//! mnist step on lavapipe (BENCHMARKS.md, "Kernel plans").

pub mod conv;
pub mod group_norm;
pub mod matmul;
pub(crate) mod window;
