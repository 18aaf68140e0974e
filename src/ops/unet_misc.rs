//! The UNet's small elementwise ops (shaders/unet_misc.wgsl): the sinusoidal timestep
//! embedding, the per-(sample, channel) bias of the time projection, and dropout.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::UNET_MISC;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct MiscParams {
    n: u32,
    c: u32,
    hw: u32,
    dim: u32,
    p_drop: f32,
    seed: u32,
    stream: u32,
    /// dropout: the index of x[0] in the whole batch's tensor.
    offset: u32,
}

static TIME_EMBEDDING: Kernel = Kernel {
    shader: &UNET_MISC,
    entry: "timestep_embedding",
};
static CHANNEL_BIAS_FWD: Kernel = Kernel {
    shader: &UNET_MISC,
    entry: "channel_bias_fwd",
};
static CHANNEL_BIAS_BWD: Kernel = Kernel {
    shader: &UNET_MISC,
    entry: "channel_bias_bwd",
};
static DROPOUT: Kernel = Kernel {
    shader: &UNET_MISC,
    entry: "dropout_fwd",
};

/// [n, dim] sinusoidal embedding of u32 timesteps (improved-diffusion's timestep_embedding).
pub fn timestep_embedding(gpu: &Gpu, timesteps: &Tensor, dim: usize) -> Tensor {
    let n = timesteps.numel();
    let out = gpu.empty(&[n, dim]);
    let p = MiscParams {
        n: n as u32,
        dim: dim as u32,
        ..Default::default()
    };
    gpu.dispatch(
        &TIME_EMBEDDING,
        &p,
        &[("timesteps", timesteps), ("out", &out)],
        gpu.groups_1d(out.numel()),
    );
    out
}

fn bias_params(x: &Tensor) -> MiscParams {
    let (n, c) = (x.shape[0], x.shape[1]);
    MiscParams {
        n: n as u32,
        c: c as u32,
        hw: (x.numel() / (n * c)) as u32,
        ..Default::default()
    }
}

/// x [n, c, ...] + bias [n, c] broadcast over the positions.
pub fn add_channel_bias(gpu: &Gpu, x: &Tensor, bias: &Tensor) -> Tensor {
    assert_eq!(
        bias.numel(),
        x.shape[0] * x.shape[1],
        "channel bias must be [n, c]"
    );
    let y = gpu.empty(&x.shape);
    gpu.dispatch(
        &CHANNEL_BIAS_FWD,
        &bias_params(x),
        &[("x", x), ("bias", bias), ("out", &y)],
        gpu.groups_1d(y.numel()),
    );
    y
}

/// dbias [n, c] = dy summed over positions.
pub fn add_channel_bias_backward(gpu: &Gpu, dy: &Tensor) -> Tensor {
    let (n, c) = (dy.shape[0], dy.shape[1]);
    let db = gpu.empty(&[n, c]);
    gpu.dispatch(
        &CHANNEL_BIAS_BWD,
        &bias_params(dy),
        &[("x", dy), ("out", &db)],
        gpu.groups_1d(n * c),
    );
    db
}

/// Dropout with the mask of draw (seed, stream) at element `offset` on (x's index in the whole
/// batch's tensor: 0, or first row * elements per row for a micro-batch); p = 0 is the
/// identity (and no dispatch).
pub fn dropout(gpu: &Gpu, x: &Tensor, p_drop: f32, key: (u32, u32), offset: usize) -> Tensor {
    let (seed, stream) = key;
    if p_drop == 0.0 {
        return x.clone();
    }
    let y = gpu.empty(&x.shape);
    let p = MiscParams {
        n: x.numel() as u32,
        p_drop,
        seed,
        stream,
        offset: offset as u32,
        ..Default::default()
    };
    // The kernel indexes the draws in u32: the last element's index must fit.
    super::count_u32(offset + x.numel(), "dropout");
    gpu.dispatch(
        &DROPOUT,
        &p,
        &[("x", x), ("out", &y)],
        gpu.groups_1d(x.numel().div_ceil(4)),
    );
    y
}

struct ChannelBiasBackward;

impl Backward for ChannelBiasBackward {
    fn name(&self) -> &'static str {
        "add_channel_bias"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![
            Some(dy.clone()),
            needs[1].then(|| add_channel_bias_backward(gpu, dy)),
        ]
    }
}

struct DropoutBackward {
    p_drop: f32,
    key: (u32, u32),
    offset: usize,
}

impl Backward for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        // The same counter draws the same mask, and the scale is the same: dropout(dy).
        vec![Some(dropout(gpu, dy, self.p_drop, self.key, self.offset))]
    }
}

pub fn add_channel_bias_var(cx: &mut Ctx, x: &Var, bias: &Var) -> Var {
    let y = add_channel_bias(cx.gpu, &x.tensor, &bias.tensor);
    cx.record(ChannelBiasBackward, &[x, bias], y)
}

pub fn dropout_var(cx: &mut Ctx, x: &Var, p_drop: f32, key: (u32, u32), offset: usize) -> Var {
    let y = dropout(cx.gpu, &x.tensor, p_drop, key, offset);
    cx.record(
        DropoutBackward {
            p_drop,
            key,
            offset,
        },
        &[x],
        y,
    )
}
