//! The DPM-Solver++(2M) update (shaders/dpm_solver.wgsl): x_out = a x + b x0 + c x0_prev with
//! the step's coefficients from diffusion::dpm_solver::step_coefs. CPU twin: src/cpu/dpm_solver.rs.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Gpu, Kernel};
use crate::shaders::DPM_SOLVER;
use crate::tensor::Tensor;

/// The scalars of one step: x_out = x x_in + d0 x0 + d1 x0_prev (computed in f64 by
/// diffusion::dpm_solver::step_coefs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefs {
    pub x: f64,
    pub d0: f64,
    pub d1: f64,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DpmSolverParams {
    n: u32,
    coef_x: f32,
    coef_d0: f32,
    coef_d1: f32,
}

static STEP: Kernel = Kernel {
    shader: &DPM_SOLVER,
    entry: "dpm_solver_step",
};

/// One step from x with this step's data prediction `x0` and the previous step's `x0_prev`
/// (for a first-order step, any tensor of the shape: its coefficient is 0).
pub fn step(gpu: &Gpu, x: &Tensor, x0: &Tensor, x0_prev: &Tensor, coefs: StepCoefs) -> Tensor {
    assert!(
        x.shape == x0.shape && x.shape == x0_prev.shape,
        "dpm_solver_step: shapes"
    );
    let n = x.numel();
    let p = DpmSolverParams {
        n: super::count_u32(n, "dpm_solver_step"),
        coef_x: coefs.x as f32,
        coef_d0: coefs.d0 as f32,
        coef_d1: coefs.d1 as f32,
    };
    let out = gpu.empty(&x.shape);
    gpu.dispatch(
        &STEP,
        &p,
        &[
            ("x_in", x),
            ("x0_in", x0),
            ("x0_prev_in", x0_prev),
            ("x_out", &out),
        ],
        gpu.groups_1d(n),
    );
    out
}
