//! DPM-Solver++(2M) in f64, written as diffusers' `dpm_solver_first_order_update` and
//! `multistep_dpm_solver_second_order_update` (dpmsolver++, midpoint) write it, from lambda, h,
//! r0, D0 and D1: the reference the GPU step (host coefficients, one fused kernel) is checked
//! against.

/// alpha, sigma and lambda of a cumulative product abar.
fn alpha_sigma_lambda(abar: f64) -> (f64, f64, f64) {
    let (alpha, sigma) = (abar.sqrt(), (1.0 - abar).sqrt());
    (alpha, sigma, alpha.ln() - sigma.ln())
}

/// x at abar_t from x at abar_s0, this step's data prediction m0 and, for a second-order step,
/// the previous step's m1 at abar_s1.
pub fn step(x: f64, m0: f64, abar_s0: f64, abar_t: f64, previous: Option<(f64, f64)>) -> f64 {
    let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(abar_t);
    let (_, sigma_s0, lambda_s0) = alpha_sigma_lambda(abar_s0);
    let h = lambda_t - lambda_s0;
    match previous {
        None => sigma_t / sigma_s0 * x - alpha_t * ((-h).exp() - 1.0) * m0,
        Some((m1, abar_s1)) => {
            let (_, _, lambda_s1) = alpha_sigma_lambda(abar_s1);
            let h_0 = lambda_s0 - lambda_s1;
            let r0 = h_0 / h;
            let (d0, d1) = (m0, 1.0 / r0 * (m0 - m1));
            sigma_t / sigma_s0 * x
                - alpha_t * ((-h).exp() - 1.0) * d0
                - 0.5 * (alpha_t * ((-h).exp() - 1.0)) * d1
        }
    }
}
