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
pub static CONV: Shader = shader!("conv");
pub static DIFFUSION: Shader = shader!("diffusion");
pub static EMBEDDING: Shader = shader!("embedding");
pub static GROUP_NORM: Shader = shader!("group_norm");
pub static LOSS: Shader = shader!("loss");
pub static MATMUL: Shader = shader!("matmul");
pub static OPTIM: Shader = shader!("optim");
pub static REDUCE: Shader = shader!("reduce");
pub static RESAMPLE: Shader = shader!("resample");
pub static RNG: Shader = shader!("rng");
pub static SOFTMAX: Shader = shader!("softmax");
pub static UNET_MISC: Shader = shader!("unet_misc");
pub static VLB: Shader = shader!("vlb");
/// The convolution kernels that share weights through subgroup broadcasts: conv.wgsl with
/// conv_subgroup.wgsl appended, validated with naga's subgroup capability (used only where the adapter
/// has them).
pub static CONV_SUBGROUP: Shader = Shader {
    name: "conv_subgroup",
    source: concat!(
        include_str!("../shaders/common.wgsl"),
        include_str!("../shaders/conv.wgsl"),
        include_str!("../shaders/conv_subgroup.wgsl")
    ),
};

/// Group norm for CPU adapters with subgroups: group_norm.wgsl with group_norm_subgroup.wgsl
/// appended (x and dy through uniform windows, sums by subgroupAdd).
pub static GROUP_NORM_SUBGROUP: Shader = Shader {
    name: "group_norm_subgroup",
    source: concat!(
        include_str!("../shaders/common.wgsl"),
        include_str!("../shaders/group_norm.wgsl"),
        include_str!("../shaders/group_norm_subgroup.wgsl")
    ),
};

/// All shaders, for validation.
pub static ALL: &[&Shader] = &[
    &ACTIVATION,
    &ARITH,
    &CONV,
    &CONV_SUBGROUP,
    &DIFFUSION,
    &EMBEDDING,
    &GROUP_NORM,
    &GROUP_NORM_SUBGROUP,
    &LOSS,
    &MATMUL,
    &OPTIM,
    &REDUCE,
    &RESAMPLE,
    &RNG,
    &SOFTMAX,
    &UNET_MISC,
    &VLB,
];
