//! GPU against the CPU reference: sums and norms (shaders/reduce.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn reductions_match_reference() {
    let gpu = gpu();
    // Large enough for several first-pass workgroups, not a multiple of any of them.
    let n = 300_007;
    let x = uniform(n, -1.0, 1.0, 12);
    let gx = gpu.upload(&x, &[n]);
    let x64 = to_f64(&x);
    let sum = cpu::reduce::sum(&x64);
    assert_close(
        "sum",
        &gpu.read(&ops::reduce::sum(&gpu, &gx)),
        &[sum],
        1e-3,
        1e-4,
    );
    assert_close(
        "mean",
        &gpu.read(&ops::reduce::mean(&gpu, &gx)),
        &[sum / n as f64],
        1e-8,
        1e-4,
    );
    let norm = cpu::reduce::sum_squares(&x64).sqrt();
    assert_close(
        "norm",
        &gpu.read(&ops::reduce::norm(&gpu, &gx)),
        &[norm],
        0.0,
        1e-5,
    );

    let (rows, cols) = (33, 70);
    let y = uniform(rows * cols, -1.0, 1.0, 13);
    let got = ops::reduce::sum_rows(&gpu, &gpu.upload(&y, &[rows, cols]));
    assert_close(
        "sum_rows_fwd",
        &gpu.read(&got),
        &cpu::reduce::sum_rows(&to_f64(&y), cols),
        1e-5,
        1e-5,
    );
    // Added onto what `into` holds, in place.
    let earlier = uniform(cols, -3.0, 3.0, 15);
    let into = gpu.upload(&earlier, &[cols]);
    ops::reduce::sum_rows_into(&gpu, &gpu.upload(&y, &[rows, cols]), &into);
    let want: Vec<f64> = cpu::reduce::sum_rows(&to_f64(&y), cols)
        .iter()
        .zip(&earlier)
        .map(|(s, e)| s + *e as f64)
        .collect();
    assert_close("sum_rows_acc", &gpu.read(&into), &want, 1e-5, 1e-5);
}

#[test]
fn reductions_are_deterministic() {
    let gpu = gpu();
    let x = gpu.upload(&uniform(100_003, -1.0, 1.0, 14), &[100_003]);
    let first = gpu.read(&ops::reduce::sum(&gpu, &x));
    for _ in 0..3 {
        assert_eq!(
            gpu.read(&ops::reduce::sum(&gpu, &x)),
            first,
            "same input, same bits"
        );
    }
}
