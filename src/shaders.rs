//! Every WGSL file of the project, each with common.wgsl prepended, so the runtime and the
//! naga validation test see exactly the same source.

use crate::gpu::Shader;

macro_rules! shader {
    ($name:literal) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!("../shaders/common.wgsl"),
                include_str!(concat!("../shaders/", $name, ".wgsl"))
            ),
        }
    };
}

pub static ACTIVATION: Shader = shader!("activation");
pub static ARITH: Shader = shader!("arith");
pub static ATTENTION: Shader = shader!("attention");
pub static CONV: Shader = shader!("conv");
pub static CROSS_ENTROPY: Shader = shader!("cross_entropy");
pub static DIFFUSION: Shader = shader!("diffusion");
pub static DPM_SOLVER: Shader = shader!("dpm_solver");
pub static EMBEDDING: Shader = shader!("embedding");
pub static GROUP_NORM: Shader = shader!("group_norm");
pub static GUIDANCE: Shader = shader!("guidance");
pub static LOSS: Shader = shader!("loss");
pub static MATMUL: Shader = shader!("matmul");
pub static OPTIM: Shader = shader!("optim");
pub static PREDICTION: Shader = shader!("prediction");
pub static REDUCE: Shader = shader!("reduce");
pub static RESAMPLE: Shader = shader!("resample");
pub static RNG: Shader = shader!("rng");
pub static UNET_MISC: Shader = shader!("unet_misc");
pub static VLB: Shader = shader!("vlb");
/// A module of the software-adapter wing (shaders/soft/): common.wgsl and the files named
/// (paths below shaders/), in order.
macro_rules! soft_shader {
    ($name:literal, $($file:literal),+) => {
        Shader {
            name: concat!("soft/", $name),
            source: concat!(
                include_str!("../shaders/common.wgsl"),
                $(include_str!(concat!("../shaders/", $file, ".wgsl"))),+
            ),
        }
    };
}

/// The wing's convolution kernels (ops::soft::conv), with their own parameter struct.
pub static SOFT_CONV: Shader = soft_shader!("conv", "soft/conv");
/// The wing's convolution kernels that share weights through subgroup broadcasts, validated with
/// naga's subgroup capability (used only where the adapter has subgroups).
pub static SOFT_CONV_SUBGROUP: Shader =
    soft_shader!("conv_subgroup", "soft/conv", "soft/conv_subgroup");
/// The wing's group norm, a thread per group (ops::soft::group_norm).
pub static SOFT_GROUP_NORM: Shader = soft_shader!("group_norm", "soft/group_norm");
/// The wing's group norm with x and dy in uniform windows, summed by subgroupAdd.
pub static SOFT_GROUP_NORM_SUBGROUP: Shader = soft_shader!(
    "group_norm_subgroup",
    "soft/group_norm",
    "soft/group_norm_subgroup"
);
/// The wing's matmul kernels (ops::soft::matmul), after matmul.wgsl's parameters and bindings.
pub static SOFT_MATMUL: Shader = soft_shader!("matmul", "matmul", "soft/matmul");

/// All shaders, for validation.
pub static ALL: &[&Shader] = &[
    &ACTIVATION,
    &ARITH,
    &ATTENTION,
    &CONV,
    &CROSS_ENTROPY,
    &DIFFUSION,
    &DPM_SOLVER,
    &EMBEDDING,
    &GROUP_NORM,
    &GUIDANCE,
    &LOSS,
    &MATMUL,
    &OPTIM,
    &PREDICTION,
    &REDUCE,
    &RESAMPLE,
    &RNG,
    &UNET_MISC,
    &VLB,
    &SOFT_CONV,
    &SOFT_CONV_SUBGROUP,
    &SOFT_GROUP_NORM,
    &SOFT_GROUP_NORM_SUBGROUP,
    &SOFT_MATMUL,
];
