//! Group normalization (Wu & He 2018) over [n, c, hw] with a per-channel affine, and the
//! fused silu(group_norm(x)) that opens every ResBlock branch.

use crate::cpu::activation::{silu, silu_backward};
pub use crate::shape::GroupNormShape;

/// Mean and 1 / sqrt(var + eps) (biased variance) of each (sample, group), in that order.
fn group_stats(x: &[f64], s: GroupNormShape, eps: f64) -> Vec<(f64, f64)> {
    let GroupNormShape { n, c, hw, groups } = s;
    assert_eq!(
        c % groups,
        0,
        "channels {c} not divisible by groups {groups}"
    );
    // Channels of a group are contiguous, so each (sample, group) is one contiguous run.
    let len = c / groups * hw;
    x[..n * c * hw]
        .chunks(len)
        .map(|run| {
            let mean = run.iter().sum::<f64>() / len as f64;
            let var = run.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .collect()
}

/// x is [n, c, hw]; channels split into `groups` contiguous groups; mean and biased variance
/// per (sample, group) over (c/groups) * hw values;
/// y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c].
pub fn group_norm(x: &[f64], gamma: &[f64], beta: &[f64], s: GroupNormShape, eps: f64) -> Vec<f64> {
    let GroupNormShape { n, c, hw, groups } = s;
    let stats = group_stats(x, s, eps);
    let cg = c / groups;
    let mut y = vec![0.0; n * c * hw];
    for ni in 0..n {
        for ci in 0..c {
            let (mean, rstd) = stats[ni * groups + ci / cg];
            let base = (ni * c + ci) * hw;
            for p in base..base + hw {
                y[p] = (x[p] - mean) * rstd * gamma[ci] + beta[ci];
            }
        }
    }
    y
}

/// Gradients of `group_norm`: (dx, dgamma, dbeta). With xhat = (x - mean) * rstd and
/// g = dy * gamma, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) per group, because mean
/// and variance depend on every x of the group.
pub fn group_norm_backward(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    s: GroupNormShape,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let GroupNormShape { n, c, hw, groups } = s;
    let stats = group_stats(x, s, eps);
    let cg = c / groups;
    let len = (cg * hw) as f64;
    let mut dx = vec![0.0; n * c * hw];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for ni in 0..n {
        for gi in 0..groups {
            let (mean, rstd) = stats[ni * groups + gi];
            let channels = gi * cg..(gi + 1) * cg;
            // First pass: the two group means the dx formula needs, and the affine grads.
            let (mut sum_g, mut sum_g_xhat) = (0.0, 0.0);
            for ci in channels.clone() {
                let base = (ni * c + ci) * hw;
                for p in base..base + hw {
                    let xhat = (x[p] - mean) * rstd;
                    let g = dy[p] * gamma[ci];
                    sum_g += g;
                    sum_g_xhat += g * xhat;
                    dgamma[ci] += dy[p] * xhat;
                    dbeta[ci] += dy[p];
                }
            }
            let (mean_g, mean_g_xhat) = (sum_g / len, sum_g_xhat / len);
            for ci in channels {
                let base = (ni * c + ci) * hw;
                for p in base..base + hw {
                    let xhat = (x[p] - mean) * rstd;
                    dx[p] = rstd * (dy[p] * gamma[ci] - mean_g - xhat * mean_g_xhat);
                }
            }
        }
    }
    (dx, dgamma, dbeta)
}

/// The fused op the ResBlocks use: silu(group_norm(x)).
pub fn group_norm_silu(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    s: GroupNormShape,
    eps: f64,
) -> Vec<f64> {
    silu(&group_norm(x, gamma, beta, s, eps))
}

/// Gradients of `group_norm_silu`: (dx, dgamma, dbeta). Takes beta because the SiLU
/// derivative needs the pre-activation, which is recomputed rather than stored.
pub fn group_norm_silu_backward(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    dy: &[f64],
    s: GroupNormShape,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let pre = group_norm(x, gamma, beta, s, eps);
    let dpre = silu_backward(&pre, dy);
    group_norm_backward(x, gamma, &dpre, s, eps)
}
