//! Diffusion maths: schedules and their tables (f64, on the host), and the GPU-side process
//! (q_sample, p_sample loop, training loss) in `gaussian`, the prediction targets in `prediction`
//! and the DPM-Solver++(2M) sampler in `dpm_solver`.

pub mod dpm_solver;
pub mod gaussian;
pub mod host;
pub mod prediction;
pub mod respace;
pub mod schedule;
pub mod timestep_sampler;

pub use dpm_solver::Sampler;
pub use prediction::{Objective, Prediction};
pub use schedule::{BetaSchedule, Schedule};

/// The reverse step's variance choice; defined with the kernel that reads it.
pub use crate::ops::diffusion::VarianceKind;
