//! GPU against the CPU reference: the DPM-Solver++(2M) step (shaders/dpm_solver.wgsl) with the
//! host's coefficients, against diffusers' formulas written out in f64 (src/cpu/dpm_solver.rs),
//! at every step of a respaced chain, first and last (first-order) steps included.

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::diffusion::dpm_solver::{respaced, step_coefs};
use ddpm::diffusion::{BetaSchedule, Schedule};
use ddpm::ops;

#[test]
fn every_step_of_a_chain_matches_the_reference_formulas() {
    let gpu = gpu();
    for (beta, t_max, steps) in [
        (BetaSchedule::Linear, 1000, 10),
        (BetaSchedule::Cosine, 1000, 20),
        (BetaSchedule::Sigmoid, 100, 7),
    ] {
        let s = respaced(&Schedule::new(beta, t_max), steps)
            .unwrap()
            .schedule;
        let n = 3 * 67;
        for t in (0..s.n_timesteps()).rev() {
            let seed = 60 + t as u32;
            let (x, m0, m1) = (
                uniform(n, -3.0, 3.0, seed),
                uniform(n, -1.0, 1.0, seed + 1000),
                uniform(n, -1.0, 1.0, seed + 2000),
            );
            // The chain's rule: second order except at its first and last step.
            let second_order = t + 1 < s.n_timesteps() && t > 0;
            let up = |v: &[f32]| gpu.upload(v, &[3, 67]);
            let got = ops::dpm_solver::step(
                &gpu,
                &up(&x),
                &up(&m0),
                &up(&m1),
                step_coefs(&s, t, second_order),
            );
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    let previous = second_order.then(|| (m1[i] as f64, s.alphas_cumprod[t + 1]));
                    cpu::dpm_solver::step(
                        x[i] as f64,
                        m0[i] as f64,
                        s.alphas_cumprod[t],
                        s.alphas_cumprod_prev[t],
                        previous,
                    )
                })
                .collect();
            let what = format!("{beta} {steps} steps, t {t}");
            assert_close(&what, &gpu.read(&got), &want, 1e-5, 1e-5);
            if t == 0 {
                // The last step lands on sigma = 0: it returns the data prediction.
                assert_close(&what, &gpu.read(&got), &to_f64(&m0), 0.0, 0.0);
            }
        }
    }
}
