//! GPU against the CPU reference: softmax cross-entropy (shaders/cross_entropy.wgsl), and the
//! reference's gradient against central differences.

use crate::common::{assert_close, assert_grad, gpu, numeric_grad, rand64, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

fn labels(n_rows: usize, n_classes: usize, seed: u32) -> Vec<u32> {
    (0..n_rows as u32)
        .map(|i| (ddpm::cpu::rng::uniform(seed, 7, i) * n_classes as f64) as u32)
        .collect()
}

#[test]
fn cross_entropy_forward_and_backward_match_reference() {
    let gpu = gpu();
    // 300 rows is not a multiple of the workgroup size; 10 classes is the classifier's shape,
    // 3 a small odd one; logits up to +-90 check the max subtraction (exp(90) overflows f32).
    // Vulkan lets exp and log err by 3 + 2|x| ULP, so the gradient's tolerance grows with the
    // logits' range (lavapipe is off by 9e-5 relative at +-90).
    for (n_rows, n_classes, range, rtol) in
        [(300, 10, 8.0, 1e-5), (7, 3, 90.0, 5e-4), (1, 1, 1.0, 1e-5)]
    {
        let n = n_rows * n_classes;
        let x = uniform(n, -range, range, 31 + n_classes as u32);
        let y = labels(n_rows, n_classes, 5);
        let gx = gpu.upload(&x, &[n_rows, n_classes]);
        let gy = gpu.upload_u32(&y, &[n_rows]);
        let x64 = to_f64(&x);
        let (rows, lse) = ops::cross_entropy::cross_entropy_rows(&gpu, &gx, &gy);
        let what = format!("{n_rows}x{n_classes}");
        let want_rows = cpu::cross_entropy::cross_entropy_rows(&x64, &y, n_classes);
        assert_close(&what, &gpu.read(&rows), &want_rows, 1e-5, 1e-5);
        let want_lse = cpu::cross_entropy::logsumexp(&x64, n_classes);
        assert_close(&what, &gpu.read(&lse), &want_lse, 1e-5, 1e-6);
        let dloss = gpu.upload(&[0.75], &[1]);
        let got = ops::cross_entropy::cross_entropy_backward(&gpu, &gx, &gy, &lse, &dloss);
        let want = cpu::cross_entropy::cross_entropy_backward(&x64, &y, n_classes, 0.75);
        // Near p = 1 the label's (p - 1) cancels: its absolute error is exp's (a few ULP of 1,
        // up to 3 + 2|x| ULP by Vulkan's bound) times the gradient's scale.
        let atol = f64::max(1e-7, 4e-6 * 0.75 / n_rows as f64);
        assert_close(&what, &gpu.read(&got), &want, atol, rtol);
    }
}

#[test]
fn the_tape_node_gives_the_mean_and_its_gradient() {
    let gpu = gpu();
    let (n_rows, n_classes) = (33, 10);
    let x = uniform(n_rows * n_classes, -3.0, 3.0, 41);
    let y = labels(n_rows, n_classes, 6);
    let gy = gpu.upload_u32(&y, &[n_rows]);
    let weights = gpu.upload(&x, &[n_rows, n_classes]);
    let grads = gpu.zeros(&[n_rows, n_classes]);
    let mut cx = ddpm::autograd::Ctx::new(&gpu);
    let logits = cx.param(weights, grads.clone());
    let loss = ops::cross_entropy::cross_entropy_var(&mut cx, &logits, &gy);
    ops::backward(&mut cx, &loss);
    let x64 = to_f64(&x);
    let want = cpu::cross_entropy::cross_entropy(&x64, &y, n_classes);
    assert_close("mean", &gpu.read(&loss.tensor), &[want], 1e-5, 1e-5);
    let want = cpu::cross_entropy::cross_entropy_backward(&x64, &y, n_classes, 1.0);
    assert_close("dlogits", &gpu.read(&grads), &want, 1e-7, 1e-5);
}

#[test]
fn reference_gradient_matches_central_differences() {
    let (n_rows, n_classes) = (4, 5);
    let x = rand64(n_rows * n_classes, -2.0, 2.0, 51);
    let y = labels(n_rows, n_classes, 8);
    let r = rand64(1, 0.5, 1.5, 52);
    let f = |x: &[f64]| vec![cpu::cross_entropy::cross_entropy(x, &y, n_classes)];
    let numeric = numeric_grad(&x, &r, &f);
    let analytic = cpu::cross_entropy::cross_entropy_backward(&x, &y, n_classes, r[0]);
    assert_grad("cross_entropy", &analytic, &numeric);
}
