//! The host's Philox4x32-10, bit for bit the generator of shaders/common.wgsl (which
//! shaders/rng.wgsl draws from), and the draws built on it: uniforms from the top 24 bits (exact
//! in f32), normals by Box-Muller, antithetic timesteps. Training draws its batches and flips
//! with it, and the CPU reference (`cpu::rng`) re-exports it, so host and GPU draws agree.

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let p0 = PHILOX_M0 as u64 * c[0] as u64;
        let p1 = PHILOX_M1 as u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
    }
    c
}

pub fn random_bits(seed: u32, stream: u32, index: u32) -> [u32; 4] {
    philox4x32([index, 0, 0, 0], [seed, stream])
}

pub fn bits_to_unit(bits: u32) -> f64 {
    (bits >> 8) as f64 / 16_777_216.0
}

pub fn uniform(seed: u32, stream: u32, index: u32) -> f64 {
    bits_to_unit(random_bits(seed, stream, index)[0])
}

pub fn normal(seed: u32, stream: u32, index: u32) -> f64 {
    normal_from_bits(random_bits(seed, stream, index))
}

/// The normal draw of a 64-bit element index (shaders/common.wgsl's random_normal_from): the
/// counter's second word holds the high bits, so indices below 2^32 give `normal`'s draws.
pub fn normal_wide(seed: u32, stream: u32, index: u64) -> f64 {
    normal_from_bits(philox4x32(
        [index as u32, (index >> 32) as u32, 0, 0],
        [seed, stream],
    ))
}

fn normal_from_bits(bits: [u32; 4]) -> f64 {
    let u1 = ((bits[0] >> 8) as f64 + 1.0) / 16_777_216.0;
    let u2 = bits_to_unit(bits[1]);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub fn normals(seed: u32, stream: u32, n: usize) -> Vec<f64> {
    (0..n as u32).map(|i| normal(seed, stream, i)).collect()
}

/// Timesteps in [0, n_timesteps); with `antithetic` the second half mirrors the first.
pub fn sample_timesteps(
    seed: u32,
    stream: u32,
    n: usize,
    n_timesteps: u32,
    antithetic: bool,
) -> Vec<u32> {
    sample_timesteps_of_rows(seed, stream, 0..n, n, n_timesteps, antithetic)
}

/// Rows `rows` of `sample_timesteps` over a batch of `total` rows.
pub fn sample_timesteps_of_rows(
    seed: u32,
    stream: u32,
    rows: std::ops::Range<usize>,
    total: usize,
    n_timesteps: u32,
    antithetic: bool,
) -> Vec<u32> {
    let half = total.div_ceil(2);
    rows.map(|i| {
        let mirrored = antithetic && i >= half;
        let draw = if mirrored { i - half } else { i } as u32;
        let t = random_bits(seed, stream, draw)[0] % n_timesteps;
        if mirrored {
            n_timesteps - 1 - t
        } else {
            t
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_published_known_answer() {
        // Random123's kat_vectors for philox4x32_10: counter = key = 0.
        assert_eq!(
            philox4x32([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
    }

    #[test]
    fn normals_have_unit_moments() {
        let x = normals(7, 3, 20_000);
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.04, "var {var}");
    }

    #[test]
    fn antithetic_timesteps_mirror() {
        let t = sample_timesteps(1, 2, 10, 100, true);
        for i in 0..5 {
            assert_eq!(t[i] + t[i + 5], 99);
        }
        assert!(t.iter().all(|&v| v < 100));
    }
}
