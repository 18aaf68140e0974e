//! Per-element diffusion steps (shaders/diffusion.wgsl): q_sample, the p_sample step and the
//! timestep fill used while sampling. The schedule table is Schedule::gpu_table on the GPU.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::DIFFUSION;
use crate::tensor::Tensor;

/// Whether the reverse step uses sigma^2 = beta_t or the posterior variance beta~_t; spelled
/// `beta` or `posterior` in config.json and on the command line.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum VarianceKind {
    Beta,
    Posterior,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct DiffusionParams {
    n: u32,
    per_sample: u32,
    t: u32,
    clip_denoised: u32,
    variance_kind: u32,
    seed: u32,
    stream: u32,
    eta: f32,
    offset_lo: u32,
    offset_hi: u32,
    _pad: [u32; 2],
}

/// Where a step's fresh noise comes from: draws `first`, `first + 1`, ... of (seed, stream).
/// `first` is 0 for a whole chain and a chunk's first element for a chunk of one, so the chunks
/// of a chain draw exactly the noise the whole chain would.
#[derive(Clone, Copy, Debug)]
pub struct NoiseKey {
    pub seed: u32,
    pub stream: u32,
    pub first: u64,
}

impl NoiseKey {
    pub fn new(seed: u32, stream: u32) -> NoiseKey {
        NoiseKey {
            seed,
            stream,
            first: 0,
        }
    }
}

impl DiffusionParams {
    fn with_noise(self, key: NoiseKey) -> DiffusionParams {
        DiffusionParams {
            seed: key.seed,
            stream: key.stream,
            offset_lo: key.first as u32,
            offset_hi: (key.first >> 32) as u32,
            ..self
        }
    }
}

static Q_SAMPLE: Kernel = Kernel {
    shader: &DIFFUSION,
    entry: "q_sample",
};
static P_SAMPLE: Kernel = Kernel {
    shader: &DIFFUSION,
    entry: "p_sample",
};
static P_SAMPLE_LEARNED: Kernel = Kernel {
    shader: &DIFFUSION,
    entry: "p_sample_learned",
};
static DDIM_STEP: Kernel = Kernel {
    shader: &DIFFUSION,
    entry: "ddim_step",
};
static FILL_TIMESTEPS: Kernel = Kernel {
    shader: &DIFFUSION,
    entry: "fill_timesteps",
};

/// x_t for every sample b at its own timestep timesteps[b] (u32).
pub fn q_sample(
    gpu: &Gpu,
    table: &Tensor,
    x_start: &Tensor,
    noise: &Tensor,
    timesteps: &Tensor,
) -> Tensor {
    assert_eq!(x_start.shape, noise.shape, "q_sample: noise shape");
    let n = x_start.numel();
    let p = DiffusionParams {
        n: super::count_u32(n, "q_sample"),
        per_sample: (n / timesteps.numel()) as u32,
        ..Default::default()
    };
    let out = gpu.empty(&x_start.shape);
    gpu.dispatch(
        &Q_SAMPLE,
        &p,
        &[
            ("table", table),
            ("x_in", x_start),
            ("noise_in", noise),
            ("timesteps_in", timesteps),
            ("x_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// Which trained timesteps a deterministic sampler (DDIM, DPM-Solver++) visits; spelled
/// `uniform` or `logsnr` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Spacing {
    /// Evenly spread in t: DDIM's "ddimN" stride, diffusers' "linspace" for DPM-Solver++.
    Uniform,
    /// Evenly spread in log-SNR lambda = log(alpha / sigma) (DPM-Solver's "logSNR" skip type,
    /// diffusers' use_lu_lambdas): more steps where the noise is small, which data with fine
    /// structure at small scales (the toy's thin curves, low-resolution images) needs.
    #[value(name = "logsnr")]
    LogSnr,
}

/// Options of the reverse step.
#[derive(Clone, Copy, Debug)]
pub struct PSampleOptions {
    pub variance: VarianceKind,
    pub clip_denoised: bool,
    /// Some(eta): DDIM steps instead of ancestral ones (eta = 0 is deterministic).
    pub ddim_eta: Option<f32>,
    /// Sample with this many of the trained timesteps (respacing); None: all of them.
    pub steps: Option<usize>,
    /// DPM-Solver++(2M) steps instead (diffusion::dpm_solver; deterministic); ddim_eta is
    /// then ignored.
    pub dpm_solver: bool,
    /// The timesteps DDIM or DPM-Solver++ visit when respaced; None: the sampler's default
    /// (DDIM uniform, DPM-Solver++ log-SNR). Ancestral respacing ignores it.
    pub spacing: Option<Spacing>,
}

/// Which reverse step a kernel takes: table index `t` for the whole batch, and the draws its
/// fresh noise comes from.
#[derive(Clone, Copy, Debug)]
pub struct ReverseStep {
    pub t: usize,
    pub noise: NoiseKey,
}

/// One reverse step x_t -> x_{t-1} from the predicted noise `eps`.
pub fn p_sample(
    gpu: &Gpu,
    table: &Tensor,
    x_t: &Tensor,
    eps: &Tensor,
    step: ReverseStep,
    opts: PSampleOptions,
) -> Tensor {
    let ReverseStep { t, noise } = step;
    assert_eq!(x_t.shape, eps.shape, "p_sample: eps shape");
    let n = x_t.numel();
    let p = DiffusionParams {
        n: super::count_u32(n, "p_sample"),
        per_sample: 0,
        t: t as u32,
        clip_denoised: opts.clip_denoised as u32,
        variance_kind: (opts.variance == VarianceKind::Posterior) as u32,
        ..Default::default()
    }
    .with_noise(noise);
    let out = gpu.empty(&x_t.shape);
    gpu.dispatch(
        &P_SAMPLE,
        &p,
        &[
            ("table", table),
            ("x_in", x_t),
            ("noise_in", eps),
            ("x_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// One reverse step with IDDPM's learned-range variance from the model's channels `v`.
pub fn p_sample_learned(
    gpu: &Gpu,
    table: &Tensor,
    x_t: &Tensor,
    eps: &Tensor,
    v: &Tensor,
    step: ReverseStep,
    clip_denoised: bool,
) -> Tensor {
    let ReverseStep { t, noise } = step;
    assert!(
        x_t.shape == eps.shape && x_t.shape == v.shape,
        "p_sample_learned: shapes"
    );
    let n = x_t.numel();
    let p = DiffusionParams {
        n: super::count_u32(n, "p_sample_learned"),
        t: t as u32,
        clip_denoised: clip_denoised as u32,
        ..Default::default()
    }
    .with_noise(noise);
    let out = gpu.empty(&x_t.shape);
    gpu.dispatch(
        &P_SAMPLE_LEARNED,
        &p,
        &[
            ("table", table),
            ("x_in", x_t),
            ("noise_in", eps),
            ("x_out", &out),
            ("v_in", v),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// One DDIM step (fresh noise only when eta > 0).
pub fn ddim_step(
    gpu: &Gpu,
    table: &Tensor,
    x_t: &Tensor,
    eps: &Tensor,
    step: ReverseStep,
    eta: f32,
    clip_denoised: bool,
) -> Tensor {
    let ReverseStep { t, noise } = step;
    assert_eq!(x_t.shape, eps.shape, "ddim_step: eps shape");
    let n = x_t.numel();
    let p = DiffusionParams {
        n: super::count_u32(n, "ddim_step"),
        t: t as u32,
        clip_denoised: clip_denoised as u32,
        eta,
        ..Default::default()
    }
    .with_noise(noise);
    let out = gpu.empty(&x_t.shape);
    gpu.dispatch(
        &DDIM_STEP,
        &p,
        &[
            ("table", table),
            ("x_in", x_t),
            ("noise_in", eps),
            ("x_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}

/// A u32 tensor of n copies of t.
pub fn fill_timesteps(gpu: &Gpu, n: usize, t: usize) -> Tensor {
    let out = gpu.empty(&[n]);
    let p = DiffusionParams {
        n: n as u32,
        t: t as u32,
        ..Default::default()
    };
    gpu.dispatch(
        &FILL_TIMESTEPS,
        &p,
        &[("timesteps_out", &out)],
        gpu.groups_1d(n),
    );
    out
}
