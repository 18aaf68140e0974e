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
