//! GPU against the CPU reference: upsample and concat (shaders/resample.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::gpu::caps::profiles;
use ddpm::ops;

#[test]
fn upsample_and_concat_match_reference() {
    let gpu = gpu();
    let (n, c, h, w) = (2, 6, 7, 9);
    let x = uniform(n * c * h * w, -1.0, 1.0, 70);
    let y = ops::resample::upsample_nearest2x(&gpu, &gpu.upload(&x, &[n, c, h, w]));
    assert_close(
        "upsample fwd",
        &gpu.read(&y),
        &cpu::resample::upsample_nearest2x(&to_f64(&x), n, c, h, w),
        0.0,
        0.0,
    );
    let dy = uniform(n * c * 4 * h * w, -1.0, 1.0, 71);
    let dx =
        ops::resample::upsample_nearest2x_backward(&gpu, &gpu.upload(&dy, &[n, c, 2 * h, 2 * w]));
    let want = cpu::resample::upsample_nearest2x_backward(&to_f64(&dy), n, c, h, w);
    assert_close("upsample bwd", &gpu.read(&dx), &want, 1e-6, 1e-6);

    // Buffer copies on software adapters, and the GPUs' kernels.
    let own = gpu.caps();
    for (_, caps) in profiles(&own).into_iter().take(2) {
        gpu.set_caps(caps);
        concat_case(&gpu, n, h, w);
    }
    gpu.set_caps(own);
}

fn concat_case(gpu: &ddpm::gpu::Gpu, n: usize, h: usize, w: usize) {
    let (ca, cb) = (4, 3);
    let a = uniform(n * ca * h * w, -1.0, 1.0, 72);
    let b = uniform(n * cb * h * w, -1.0, 1.0, 73);
    let y = ops::resample::concat(
        gpu,
        &gpu.upload(&a, &[n, ca, h, w]),
        &gpu.upload(&b, &[n, cb, h, w]),
    );
    let want = cpu::resample::concat_channels(&to_f64(&a), &to_f64(&b), n, ca, cb, h * w);
    assert_close("concat fwd", &gpu.read(&y), &want, 0.0, 0.0);
    let dy = uniform(n * (ca + cb) * h * w, -1.0, 1.0, 74);
    let (da, db) = ops::resample::concat_backward(gpu, &gpu.upload(&dy, &[n, ca + cb, h, w]), ca);
    let (wa, wb) = cpu::resample::concat_channels_backward(&to_f64(&dy), n, ca, cb, h * w);
    assert_close("concat bwd a", &gpu.read(&da), &wa, 0.0, 0.0);
    assert_close("concat bwd b", &gpu.read(&db), &wb, 0.0, 0.0);
}
