//! Diffusion maths: schedules and their tables (f64, on the host), and the GPU-side process
//! (q_sample, p_sample loop, training loss) in `gaussian`.

pub mod gaussian;
pub mod host;
pub mod respace;
pub mod schedule;
pub mod timestep_sampler;

pub use schedule::{BetaSchedule, Schedule};

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
