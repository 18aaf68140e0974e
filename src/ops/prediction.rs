//! Conversions between the model's prediction targets, the training target, the min-SNR loss
//! weights and offset noise (shaders/prediction.wgsl; CPU twin src/cpu/prediction.rs). The
//! schedule table is Schedule::gpu_table on the GPU; `timesteps` holds each sample's table row.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::PREDICTION;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct PredictionParams {
    n: u32,
    per_sample: u32,
    prediction: u32,
    clip: u32,
    seed: u32,
    stream: u32,
    gamma: f32,
    scale: f32,
    /// offset_noise: the draw of the first (sample, channel).
    first_offset: u32,
    _pad: [u32; 3],
}

/// The model's regression target; spelled `eps`, `x0` or `v` in config.json and on the command
/// line.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Prediction {
    /// The noise eps (DDPM).
    #[default]
    Eps,
    /// The clean data x_0.
    X0,
    /// The velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022).
    V,
}

impl Prediction {
    /// The kernels' code: 0 eps, 1 x0, 2 v.
    pub fn code(self) -> u32 {
        match self {
            Prediction::Eps => 0,
            Prediction::X0 => 1,
            Prediction::V => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Prediction::Eps => "eps",
            Prediction::X0 => "x0",
            Prediction::V => "v",
        }
    }
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

static TO_EPS: Kernel = Kernel {
    shader: &PREDICTION,
    entry: "prediction_to_eps",
};
static TO_X0: Kernel = Kernel {
    shader: &PREDICTION,
    entry: "prediction_to_x0",
};
static TARGET: Kernel = Kernel {
    shader: &PREDICTION,
    entry: "prediction_target",
};
static MIN_SNR: Kernel = Kernel {
    shader: &PREDICTION,
    entry: "min_snr_weights",
};
static OFFSET_NOISE: Kernel = Kernel {
    shader: &PREDICTION,
    entry: "offset_noise",
};

/// One elementwise kernel of x [batch, ...], y shaped like x and timesteps [batch] (u32).
fn per_element(
    gpu: &Gpu,
    kernel: &Kernel,
    p: PredictionParams,
    table: &Tensor,
    x: &Tensor,
    y: &Tensor,
    timesteps: &Tensor,
) -> Tensor {
    assert_eq!(x.shape, y.shape, "{}: shapes differ", kernel.entry);
    assert_eq!(
        timesteps.numel(),
        x.shape[0],
        "{}: one timestep per sample",
        kernel.entry
    );
    let n = x.numel();
    let p = PredictionParams {
        n: super::count_u32(n, kernel.entry),
        per_sample: (n / x.shape[0]) as u32,
        ..p
    };
    let out = gpu.empty(&x.shape);
    gpu.dispatch(
        kernel,
        &p,
        &[
            ("table", table),
            ("x_in", x),
            ("y_in", y),
            ("timesteps_in", timesteps),
            ("y_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// eps from the model's output `y` (a `prediction`) at x_t.
pub fn to_eps(
    gpu: &Gpu,
    prediction: Prediction,
    table: &Tensor,
    x_t: &Tensor,
    y: &Tensor,
    timesteps: &Tensor,
) -> Tensor {
    let p = PredictionParams {
        prediction: prediction.code(),
        ..Default::default()
    };
    per_element(gpu, &TO_EPS, p, table, x_t, y, timesteps)
}

/// x_0 from the model's output `y` (a `prediction`) at x_t, clamped to [-1, 1] when `clip`.
pub fn to_x0(
    gpu: &Gpu,
    prediction: Prediction,
    table: &Tensor,
    x_t: &Tensor,
    y: &Tensor,
    timesteps: &Tensor,
    clip: bool,
) -> Tensor {
    let p = PredictionParams {
        prediction: prediction.code(),
        clip: clip as u32,
        ..Default::default()
    };
    per_element(gpu, &TO_X0, p, table, x_t, y, timesteps)
}

/// The regression target of `prediction` for x_start noised with `noise` at `timesteps`.
pub fn target(
    gpu: &Gpu,
    prediction: Prediction,
    table: &Tensor,
    x_start: &Tensor,
    noise: &Tensor,
    timesteps: &Tensor,
) -> Tensor {
    let p = PredictionParams {
        prediction: prediction.code(),
        ..Default::default()
    };
    per_element(gpu, &TARGET, p, table, x_start, noise, timesteps)
}

/// Each sample's min-SNR-gamma loss weight [batch] for `prediction` at its timestep.
pub fn min_snr_weights(
    gpu: &Gpu,
    prediction: Prediction,
    table: &Tensor,
    timesteps: &Tensor,
    gamma: f32,
) -> Tensor {
    let n = timesteps.numel();
    let p = PredictionParams {
        n: super::count_u32(n, "min_snr_weights"),
        prediction: prediction.code(),
        gamma,
        ..Default::default()
    };
    let out = gpu.empty(&[n]);
    gpu.dispatch(
        &MIN_SNR,
        &p,
        &[
            ("table", table),
            ("timesteps_in", timesteps),
            ("y_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// noise [n, c, ...] plus `scale` times one standard normal per (sample, channel) from draws
/// first C, first C + 1, ... of (seed, stream), shared by the channel's elements; `first` is the
/// row of noise[0] in the step's batch.
pub fn offset_noise(
    gpu: &Gpu,
    noise: &Tensor,
    scale: f32,
    (seed, stream): (u32, u32),
    first: usize,
) -> Tensor {
    let n = noise.numel();
    let channels = noise.shape.get(1).copied().unwrap_or(1);
    let p = PredictionParams {
        n: super::count_u32(n, "offset_noise"),
        per_sample: (n / (noise.shape[0] * channels)) as u32,
        first_offset: super::count_u32(first * channels, "offset_noise"),
        seed,
        stream,
        scale,
        ..Default::default()
    };
    let out = gpu.empty(&noise.shape);
    gpu.dispatch(
        &OFFSET_NOISE,
        &p,
        &[("y_in", noise), ("y_out", &out)],
        gpu.groups_1d(n),
    );
    out
}
