//! Noise schedules and the f64 tables derived from them, named as in improved-diffusion's
//! gaussian_diffusion.py so the two read side by side.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// Spelled in config.json and on the command line as `linear`, `sigmoid` or `cosine`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// DDPM: betas evenly spaced, 1e-4 .. 0.02 at T = 1000 (scaled by 1000 / T otherwise).
    Linear,
    /// Seed 000: sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5.
    Sigmoid,
    /// IDDPM (seed 004): alpha_bar(t) = cos(((t / T + s) / (1 + s)) pi / 2)^2, s = 0.008,
    /// betas clipped at 0.999.
    Cosine,
}

impl BetaSchedule {
    pub fn name(&self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::Sigmoid => "sigmoid",
            BetaSchedule::Cosine => "cosine",
        }
    }

    pub fn betas(&self, n_timesteps: usize) -> Vec<f64> {
        let t_max = n_timesteps;
        match self {
            BetaSchedule::Linear => {
                let scale = 1000.0 / t_max as f64;
                linspace(scale * 1e-4, scale * 0.02, t_max)
            }
            BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t_max)
                .into_iter()
                .map(|v| 1.0 / (1.0 + (-v).exp()) * (5e-3 - 1e-5) + 1e-5)
                .collect(),
            BetaSchedule::Cosine => {
                // Float division throughout: an integer t / T here is a known bug elsewhere.
                let alpha_bar = |t: f64| {
                    ((t / t_max as f64 + 0.008) / 1.008 * PI / 2.0)
                        .cos()
                        .powi(2)
                };
                (0..t_max)
                    .map(|i| (1.0 - alpha_bar(i as f64 + 1.0) / alpha_bar(i as f64)).min(0.999))
                    .collect()
            }
        }
    }
}

impl fmt::Display for BetaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BetaSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "sigmoid" => Ok(BetaSchedule::Sigmoid),
            "cosine" => Ok(BetaSchedule::Cosine),
            _ => Err(format!(
                "unknown beta schedule '{s}': expected linear, sigmoid or cosine"
            )),
        }
    }
}

/// numpy.linspace(start, stop, n) with the end point included.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    (0..n)
        .map(|i| start + (stop - start) * i as f64 / (n - 1) as f64)
        .collect()
}

/// Every per-timestep quantity the samplers and losses need, in f64.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub alphas_cumprod_next: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub log_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    /// log of the posterior variance with t = 0 (where it is 0) replaced by t = 1's value.
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

/// Columns of the f32 table the kernels read (shaders/diffusion.wgsl, TABLE_COLS).
pub const TABLE_COLS: usize = 12;

impl Schedule {
    pub fn new(kind: BetaSchedule, n_timesteps: usize) -> Schedule {
        Schedule::from_betas(kind.betas(n_timesteps))
    }

    pub fn from_betas(betas: Vec<f64>) -> Schedule {
        let t_max = betas.len();
        let mut alphas_cumprod = Vec::with_capacity(t_max);
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..t_max - 1].iter().copied())
            .collect();
        let alphas_cumprod_next: Vec<f64> = alphas_cumprod[1..]
            .iter()
            .copied()
            .chain(std::iter::once(0.0))
            .collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..t_max).map(f).collect::<Vec<f64>>();
        let posterior_variance =
            map(&|t| betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t]));
        let posterior_log_variance_clipped = map(&|t| {
            let v = if t == 0 && t_max > 1 {
                posterior_variance[1]
            } else {
                posterior_variance[t]
            };
            v.ln()
        });
        Schedule {
            sqrt_alphas_cumprod: map(&|t| alphas_cumprod[t].sqrt()),
            sqrt_one_minus_alphas_cumprod: map(&|t| (1.0 - alphas_cumprod[t]).sqrt()),
            log_one_minus_alphas_cumprod: map(&|t| (1.0 - alphas_cumprod[t]).ln()),
            sqrt_recip_alphas_cumprod: map(&|t| (1.0 / alphas_cumprod[t]).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&|t| (1.0 / alphas_cumprod[t] - 1.0).sqrt()),
            posterior_mean_coef1: map(&|t| {
                betas[t] * alphas_cumprod_prev[t].sqrt() / (1.0 - alphas_cumprod[t])
            }),
            posterior_mean_coef2: map(&|t| {
                (1.0 - alphas_cumprod_prev[t]) * (1.0 - betas[t]).sqrt() / (1.0 - alphas_cumprod[t])
            }),
            posterior_variance,
            posterior_log_variance_clipped,
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
            alphas_cumprod_next,
        }
    }

    pub fn n_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// The [T][TABLE_COLS] f32 table uploaded for the kernels, in the column order of
    /// shaders/diffusion.wgsl.
    pub fn gpu_table(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n_timesteps() * TABLE_COLS);
        for t in 0..self.n_timesteps() {
            out.extend(
                [
                    self.sqrt_alphas_cumprod[t],
                    self.sqrt_one_minus_alphas_cumprod[t],
                    self.sqrt_recip_alphas_cumprod[t],
                    self.sqrt_recipm1_alphas_cumprod[t],
                    self.posterior_mean_coef1[t],
                    self.posterior_mean_coef2[t],
                    self.betas[t],
                    self.posterior_variance[t],
                    self.alphas_cumprod[t],
                    self.alphas_cumprod_prev[t],
                    self.betas[t].ln(),
                    self.posterior_log_variance_clipped[t],
                ]
                .map(|v| v as f32),
            );
        }
        out
    }
}
