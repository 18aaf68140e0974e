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
pub static DIFFUSION: Shader = shader!("diffusion");
pub static EMBEDDING: Shader = shader!("embedding");
pub static LOSS: Shader = shader!("loss");
pub static MATMUL: Shader = shader!("matmul");
pub static OPTIM: Shader = shader!("optim");
pub static REDUCE: Shader = shader!("reduce");
pub static RNG: Shader = shader!("rng");

/// All shaders, for validation.
pub static ALL: &[&Shader] = &[
    &ACTIVATION,
    &ARITH,
    &DIFFUSION,
    &EMBEDDING,
    &LOSS,
    &MATMUL,
    &OPTIM,
    &REDUCE,
    &RNG,
];
