//! Inverted dropout whose mask comes from the counter-based RNG keyed by (seed, stream,
//! index), so the GPU kernel, its backward and this twin all see the same mask without
//! storing it.

use crate::cpu::rng::{bits_to_unit, random_bits};

/// Whether element `i` survives: the uniform from word i % 4 of draw i / 4 (one Philox draw
/// serves four elements). Uniforms lie in [0, 1), so p = 0 keeps everything and p = 1 drops
/// everything.
fn keep(p: f64, seed: u32, stream: u32, i: usize) -> bool {
    bits_to_unit(random_bits(seed, stream, (i / 4) as u32)[i % 4]) >= p
}

/// keep[i] = uniform from word e % 4 of crate::cpu::rng::random_bits(seed, stream, e / 4) >= p,
/// e = offset + i (x's place in the whole batch's tensor); y[i] = if keep { x[i] / (1 - p) }
/// else { 0 }. p = 0 is the identity.
pub fn dropout(x: &[f64], p: f64, (seed, stream): (u32, u32), offset: usize) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if keep(p, seed, stream, offset + i) {
                v / (1.0 - p)
            } else {
                0.0
            }
        })
        .collect()
}

/// Gradient of `dropout`: the same mask and scale applied to dy (dropout is linear in x).
pub fn dropout_backward(dy: &[f64], p: f64, key: (u32, u32), offset: usize) -> Vec<f64> {
    dropout(dy, p, key, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_the_identity_and_the_drop_rate_is_near_p() {
        let x: Vec<f64> = (0..4000).map(|i| i as f64 + 1.0).collect();
        assert_eq!(dropout(&x, 0.0, (3, 4), 0), x);
        let y = dropout(&x, 0.3, (3, 4), 0);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        assert!((dropped - 0.3).abs() < 0.03, "dropped {dropped}");
        for (a, b) in x.iter().zip(&y) {
            assert!(*b == 0.0 || (b - a / 0.7).abs() < 1e-12);
        }
        assert!(dropout(&x, 1.0, (3, 4), 0).iter().all(|&v| v == 0.0));
        // A slice at an offset is that slice of the whole draw's mask.
        assert_eq!(dropout(&x[7..100], 0.3, (3, 4), 7), y[7..100]);
    }
}
