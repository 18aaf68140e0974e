//! GPU against the CPU reference: MSE and per-sample losses (shaders/loss.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn mse_forward_and_backward_match_reference() {
    let gpu = gpu();
    let n = 515;
    let pred = uniform(n, -2.0, 2.0, 17);
    let target = uniform(n, -2.0, 2.0, 18);
    let (gp, gt) = (gpu.upload(&pred, &[n]), gpu.upload(&target, &[n]));
    let want = cpu::loss::mse(&to_f64(&pred), &to_f64(&target));
    assert_close(
        "mse",
        &gpu.read(&ops::loss::mse(&gpu, &gp, &gt)),
        &[want],
        1e-6,
        1e-5,
    );
    let dloss = gpu.upload(&[0.5], &[1]);
    let got = ops::loss::mse_backward(&gpu, &gp, &gt, &dloss);
    let want = cpu::loss::mse_backward(&to_f64(&pred), &to_f64(&target), 0.5);
    assert_close("mse_bwd", &gpu.read(&got), &want, 1e-7, 1e-5);
}

#[test]
fn per_sample_sums_and_the_weighted_mse_gradient_match_reference() {
    let gpu = gpu();
    let (batch, per_sample) = (5, 103);
    let n = batch * per_sample;
    let pred = uniform(n, -2.0, 2.0, 27);
    let target = uniform(n, -2.0, 2.0, 28);
    let weights = [2.0f32, 0.0, 0.5, 1.0, 7.25];
    let (gp, gt) = (
        gpu.upload(&pred, &[batch, per_sample]),
        gpu.upload(&target, &[batch, per_sample]),
    );
    let x = to_f64(&pred);
    for squares in [false, true] {
        let got = ops::reduce::row_sums(&gpu, &gp, squares, 0.25);
        let want = cpu::reduce::row_sums(&x, per_sample, squares, 0.25);
        assert_close("row_sums", &gpu.read(&got), &want, 1e-5, 1e-5);
    }
    let dloss = gpu.upload(&[0.5], &[1]);
    let gw = gpu.upload(&weights, &[batch]);
    let got = ops::loss::mse_backward_weighted(&gpu, &gp, &gt, &dloss, Some(&gw));
    let want = cpu::loss::mse_backward_weighted(&x, &to_f64(&target), &to_f64(&weights), 0.5);
    assert_close("mse_bwd weighted", &gpu.read(&got), &want, 1e-7, 1e-5);
    // Sample 1 has weight 0: no gradient at all.
    assert!(gpu.read(&got)[per_sample..2 * per_sample]
        .iter()
        .all(|&g| g == 0.0));
}
