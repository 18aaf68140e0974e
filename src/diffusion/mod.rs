//! Diffusion maths: schedules and their tables (f64, on the host), and the GPU-side process
//! (q_sample, p_sample loop, training loss) in `gaussian`.

pub mod gaussian;
pub mod host;
pub mod respace;
pub mod schedule;
pub mod timestep_sampler;

pub use schedule::{BetaSchedule, Schedule};

/// The reverse step's variance choice; defined with the kernel that reads it.
pub use crate::ops::diffusion::VarianceKind;
