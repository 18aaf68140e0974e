//! GPU against the CPU reference: activations (shaders/activation.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn activations_forward_and_backward_match_reference() {
    let gpu = gpu();
    let n = 1000;
    let x = uniform(n, -4.0, 4.0, 8);
    let dy = uniform(n, -1.0, 1.0, 9);
    let (gx, gdy) = (gpu.upload(&x, &[n]), gpu.upload(&dy, &[n]));
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));
    assert_close(
        "relu_fwd",
        &gpu.read(&ops::activation::relu(&gpu, &gx)),
        &cpu::activation::relu(&x64),
        0.0,
        0.0,
    );
    assert_close(
        "relu_bwd",
        &gpu.read(&ops::activation::relu_backward(&gpu, &gx, &gdy)),
        &cpu::activation::relu_backward(&x64, &dy64),
        0.0,
        0.0,
    );
    assert_close(
        "silu_fwd",
        &gpu.read(&ops::activation::silu(&gpu, &gx)),
        &cpu::activation::silu(&x64),
        1e-6,
        1e-5,
    );
    assert_close(
        "silu_bwd",
        &gpu.read(&ops::activation::silu_backward(&gpu, &gx, &gdy)),
        &cpu::activation::silu_backward(&x64, &dy64),
        1e-6,
        1e-5,
    );
}
