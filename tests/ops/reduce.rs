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

/// sum_rows_later (gpu/deferred.rs): queued sums give sum_rows' bits whenever they are read,
/// four to a dispatch; a dispatch that reads a queued output sees the sum; an output dropped
/// while queued keeps its buffer until the sum has run.
#[test]
fn deferred_row_sums_match_sum_rows() {
    let gpu = gpu();
    let shapes = [(33, 70), (5, 1), (128, 300), (2, 17), (64, 64), (7, 1000)];
    let inputs: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(rows, cols))| {
            gpu.upload(
                &uniform(rows * cols, -1.0, 1.0, 30 + i as u32),
                &[rows, cols],
            )
        })
        .collect();
    let before = gpu.n_dispatches();
    let mut later: Vec<_> = inputs[..4]
        .iter()
        .map(|x| ops::reduce::sum_rows_later(&gpu, x))
        .collect();
    assert_eq!(
        gpu.n_dispatches() - before,
        1,
        "four queued sums, one dispatch"
    );
    // A read of a queued output (a copy) runs the queue first.
    later.push(ops::reduce::sum_rows_later(&gpu, &inputs[4]));
    let read_while_queued = gpu.read(&later[4]);
    // So does a kernel that binds one.
    later.push(ops::reduce::sum_rows_later(&gpu, &inputs[5]));
    let doubled = gpu.read(&ops::arith::scale(&gpu, &later[5], 2.0));
    let now: Vec<_> = inputs
        .iter()
        .map(|x| ops::reduce::sum_rows(&gpu, x))
        .collect();
    for (i, (l, n)) in later.iter().zip(&now).enumerate() {
        assert_eq!(gpu.read(l), gpu.read(n), "sum {i} of shape {:?}", shapes[i]);
    }
    assert_eq!(
        read_while_queued,
        gpu.read(&now[4]),
        "a read of a queued output"
    );
    let want: Vec<f32> = gpu.read(&now[5]).iter().map(|v| 2.0 * v).collect();
    assert_eq!(doubled, want, "a dispatch reading a queued output");

    // Dropped while queued: a new tensor of its size must not get its buffer.
    let x = gpu.upload(&uniform(3 * 10, -1.0, 1.0, 40), &[3, 10]);
    drop(ops::reduce::sum_rows_later(&gpu, &x));
    let kept: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let t = gpu.upload(&kept, &[10]);
    gpu.run_deferred();
    assert_eq!(gpu.read(&t), kept);
}
