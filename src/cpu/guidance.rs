//! Twin of shaders/guidance.wgsl: label dropout and the guided combination.

use crate::rng::random_bits;

/// Each label becomes `null_class` when the 24-bit uniform draw first + i of (seed, stream) is
/// below `p_uncond_bits` (ops::guidance::p_uncond_bits); `first` is the row of labels[0].
pub fn drop_labels(
    labels: &[u32],
    p_uncond_bits: u32,
    null_class: u32,
    (seed, stream): (u32, u32),
    first: usize,
) -> Vec<u32> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            if random_bits(seed, stream, (first + i) as u32)[0] >> 8 < p_uncond_bits {
                null_class
            } else {
                y
            }
        })
        .collect()
}

/// out2 [2n, c_out, rest] -> [n, c_out, rest]: w * cond + (1 - w) * uncond below `c_guided`,
/// cond above.
pub fn guide(out2: &[f64], n: usize, c_out: usize, c_guided: usize, w: f64) -> Vec<f64> {
    let per_sample = out2.len() / (2 * n);
    let rest = per_sample / c_out;
    (0..n * per_sample)
        .map(|i| {
            let cond = out2[i];
            if (i % per_sample) / rest < c_guided {
                w * cond + (1.0 - w) * out2[i + n * per_sample]
            } else {
                cond
            }
        })
        .collect()
}
