//! GPU against the CPU reference: classifier-free guidance (shaders/guidance.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops::guidance;

#[test]
fn label_dropout_matches_the_twin_and_its_rate() {
    let gpu = gpu();
    let n = 5003;
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let t = gpu.upload_u32(&labels, &[n]);
    for p in [0.0, 0.1, 0.5, 1.0] {
        let got = gpu.read_u32(&guidance::drop_labels(&gpu, &t, p, 10, (7, 11), 0));
        let bits = guidance::p_uncond_bits(p);
        assert_eq!(
            got,
            cpu::guidance::drop_labels(&labels, bits, 10, (7, 11), 0),
            "p {p}"
        );
        let dropped = got.iter().filter(|&&y| y == 10).count() as f64 / n as f64;
        // Binomial: within 5 standard deviations of p.
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (dropped - p).abs() <= 5.0 * sd + 1e-12,
            "p {p}: dropped {dropped}"
        );
        let kept_same = got.iter().zip(&labels).all(|(&g, &y)| g == y || g == 10);
        assert!(kept_same, "labels are kept or dropped, never changed");
    }
    let other = gpu.read_u32(&guidance::drop_labels(&gpu, &t, 0.5, 10, (7, 12), 0));
    let again = gpu.read_u32(&guidance::drop_labels(&gpu, &t, 0.5, 10, (7, 11), 0));
    assert_ne!(other, again, "the stream keys the draw");
    // Rows 1000.. of the batch as a micro-batch: the same drops as those rows of the whole.
    let part = gpu.upload_u32(&labels[1000..], &[n - 1000]);
    let rows = gpu.read_u32(&guidance::drop_labels(&gpu, &part, 0.5, 10, (7, 11), 1000));
    assert_eq!(
        rows,
        again[1000..],
        "a micro-batch drops its rows of the whole batch"
    );
}

#[test]
fn guide_matches_the_twin_and_is_exact_at_zero_and_one() {
    let gpu = gpu();
    // n = 3 samples, 4 output channels of which 2 are guided (learned variance), 5 x 7 pixels.
    let (n, c_out, rest) = (3, 4, 35);
    let shape = [2 * n, c_out, 5, 7];
    let host = uniform(2 * n * c_out * rest, -2.0, 2.0, 5);
    let out2 = gpu.upload(&host, &shape);
    for (c_guided, w) in [(2, 3.0f32), (4, 1.5), (2, 0.0), (2, 1.0), (4, -0.5)] {
        let got = gpu.read(&guidance::guide(&gpu, &out2, c_guided, w));
        let want = cpu::guidance::guide(&to_f64(&host), n, c_out, c_guided, w as f64);
        assert_close("guide", &got, &want, 1e-6, 1e-6);
    }
    let half = n * c_out * rest;
    let (cond, uncond) = host.split_at(half);
    let at_one = gpu.read(&guidance::guide(&gpu, &out2, 4, 1.0));
    assert_eq!(at_one, cond, "w = 1 is the conditional output, bit for bit");
    let at_zero = gpu.read(&guidance::guide(&gpu, &out2, 4, 0.0));
    assert_eq!(
        at_zero, uncond,
        "w = 0 is the unconditional output, bit for bit"
    );
    let x = gpu.upload(cond, &[n, c_out, 5, 7]);
    let doubled = gpu.read(&guidance::doubled(&gpu, &x));
    assert_eq!(doubled, [cond, cond].concat(), "doubled batch");
}
