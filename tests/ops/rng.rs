//! GPU against the CPU reference: the counter RNG (shaders/rng.wgsl).

use crate::common::{assert_close, gpu};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn rng_bits_match_the_cpu_twin_exactly() {
    let gpu = gpu();
    let n = 4099;
    let u = gpu.read(&ops::rng::uniform(&gpu, &[n], 42, 5));
    let want: Vec<f64> = (0..n as u32).map(|i| cpu::rng::uniform(42, 5, i)).collect();
    assert_close("random_uniform", &u, &want, 0.0, 0.0);
    let z = gpu.read(&ops::rng::normal(&gpu, &[n], 42, 6));
    assert_close(
        "random_normal",
        &z,
        &cpu::rng::normals(42, 6, n),
        2e-5,
        2e-5,
    );
    for antithetic in [false, true] {
        let t = gpu.read_u32(&ops::rng::timesteps(&gpu, 129, 100, antithetic, 3, 9));
        assert_eq!(
            t,
            cpu::rng::sample_timesteps(3, 9, 129, 100, antithetic),
            "sample_timesteps"
        );
        // Rows 50..129 and 64..65 of the batch: those rows of the whole draw, pairs included.
        for rows in [50..129, 64..65] {
            let t = ops::rng::timesteps_of_rows(&gpu, rows.clone(), 129, 100, antithetic, 3, 9);
            let want = cpu::rng::sample_timesteps(3, 9, 129, 100, antithetic);
            assert_eq!(gpu.read_u32(&t), want[rows.clone()], "rows {rows:?}");
            let host = cpu::rng::sample_timesteps_of_rows(3, 9, rows.clone(), 129, 100, antithetic);
            assert_eq!(host, want[rows.clone()], "host rows {rows:?}");
        }
    }
    let other_stream = gpu.read(&ops::rng::uniform(&gpu, &[n], 42, 7));
    assert_ne!(u, other_stream, "streams differ");
}
