//! Sinusoidal timestep embedding, as improved-diffusion's `timestep_embedding`
//! (max_period 10000, cosines first).

/// half = dim / 2; freqs[i] = exp(-ln(10000) * i / half); args = t * freqs;
/// emb = [cos(args), sin(args)] (cos first), zero-padded when dim is odd. Output [n, dim].
/// No backward (t is an integer input).
pub fn timestep_embedding(timesteps: &[u32], dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let mut emb = vec![0.0; timesteps.len() * dim];
    for (row, &t) in emb.chunks_mut(dim).zip(timesteps) {
        for i in 0..half {
            let freq = (-(10_000f64).ln() * i as f64 / half as f64).exp();
            let arg = t as f64 * freq;
            row[i] = arg.cos();
            row[half + i] = arg.sin();
        }
        // With odd dim the last entry stays zero.
    }
    emb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // t = 0: cos(0) = 1 then sin(0) = 0, plus the zero pad for odd dim.
        assert_eq!(timestep_embedding(&[0], 5), vec![1.0, 1.0, 0.0, 0.0, 0.0]);
        // dim 4, half 2: freqs = [1, 10000^(-1/2) = 0.01].
        let e = timestep_embedding(&[0, 3], 4);
        let want = [
            1.0,
            1.0,
            0.0,
            0.0,
            3f64.cos(),
            0.03f64.cos(),
            3f64.sin(),
            0.03f64.sin(),
        ];
        assert_eq!(e.len(), want.len());
        for (a, b) in e.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }
}
