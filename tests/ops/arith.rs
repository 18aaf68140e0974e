//! GPU against the CPU reference: elementwise arithmetic (shaders/arith.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn elementwise_arithmetic_matches_reference() {
    let gpu = gpu();
    let n = 777;
    let a = uniform(n, -2.0, 2.0, 10);
    let b = uniform(n, -2.0, 2.0, 11);
    let (ga, gb) = (gpu.upload(&a, &[n]), gpu.upload(&b, &[n]));
    let (a64, b64) = (to_f64(&a), to_f64(&b));
    assert_close(
        "add_fwd",
        &gpu.read(&ops::arith::add(&gpu, &ga, &gb)),
        &cpu::arith::add(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "sub_fwd",
        &gpu.read(&ops::arith::sub(&gpu, &ga, &gb)),
        &cpu::arith::sub(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "mul_fwd",
        &gpu.read(&ops::arith::mul(&gpu, &ga, &gb)),
        &cpu::arith::mul(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "scale_fwd",
        &gpu.read(&ops::arith::scale(&gpu, &ga, -0.75)),
        &cpu::arith::scale(&a64, -0.75),
        1e-6,
        1e-6,
    );
    let filled = gpu.empty(&[n]);
    ops::arith::fill(&gpu, &filled, 2.5);
    assert_close("fill", &gpu.read(&filled), &vec![2.5; n], 0.0, 0.0);
    let spread = ops::arith::broadcast(&gpu, &gpu.upload(&[3.0], &[1]), 0.5, &[3, 7]);
    assert_close("broadcast_fwd", &gpu.read(&spread), &[1.5; 21], 0.0, 0.0);
}
