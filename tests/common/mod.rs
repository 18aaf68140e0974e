//! Shared test helpers: the GPU (Mesa's lavapipe in CI), seeded inputs and closeness checks
//! that report the worst element.
#![allow(dead_code)]

use ddpm::gpu::Gpu;

pub fn gpu() -> Gpu {
    match Gpu::new(None) {
        Ok(gpu) => gpu,
        Err(e) => panic!("tests need a GPU adapter (lavapipe will do): {e}"),
    }
}

/// Uniform values in [lo, hi) from the project's counter-based RNG (reproducible).
pub fn uniform(n: usize, lo: f64, hi: f64, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| (lo + (hi - lo) * ddpm::cpu::rng::uniform(seed, 99, i)) as f32)
        .collect()
}

pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// |got - want| <= atol + rtol * |want| everywhere; the message names the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // NaN counts as infinitely far off.
        let excess = if g.is_nan() {
            f64::INFINITY
        } else {
            (g as f64 - w).abs() - (atol + rtol * w.abs())
        };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        );
    }
}

/// Random f64 values in [lo, hi) from the project's RNG (for the CPU reference's checks).
pub fn rand64(n: usize, lo: f64, hi: f64, seed: u32) -> Vec<f64> {
    (0..n as u32)
        .map(|i| lo + (hi - lo) * ddpm::cpu::rng::uniform(seed, 7, i))
        .collect()
}

/// d/dx of sum(f(x) * r) by central differences in f64.
pub fn numeric_grad(x: &[f64], r: &[f64], f: &dyn Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut plus = x.to_vec();
            let mut minus = x.to_vec();
            plus[i] += h;
            minus[i] -= h;
            let fp: f64 = f(&plus).iter().zip(r).map(|(a, b)| a * b).sum();
            let fm: f64 = f(&minus).iter().zip(r).map(|(a, b)| a * b).sum();
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// An analytic gradient against central differences: |a - n| <= 1e-6 + 1e-5 |n|.
pub fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-6 + 1e-5 * n.abs(),
            "{what}[{i}]: analytic {a}, numeric {n}"
        );
    }
}

/// Leaves a NaN-filled buffer of `numel` floats at the top of the pool, so the next tensor of
/// that size starts as NaNs: an output a kernel fails to write then fails its comparison
/// instead of keeping what the previous case left in the recycled buffer.
#[allow(dead_code)]
pub fn poison_next(gpu: &ddpm::gpu::Gpu, numel: usize) {
    drop(gpu.upload(&vec![f32::NAN; numel], &[numel]));
}
