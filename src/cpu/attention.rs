//! Row softmax and the single-head spatial self-attention of the DDPM UNet's AttnBlock
//! (the q, k, v and output 1x1 projections are convolutions, not part of this op).

/// Numerically stable softmax over the last axis of x viewed as [rows, cols] (subtract the
/// row max, so exp never overflows).
pub fn softmax(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut y = vec![0.0; rows * cols];
    for (xr, yr) in x[..rows * cols].chunks(cols).zip(y.chunks_mut(cols)) {
        let max = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (yv, &xv) in yr.iter_mut().zip(xr) {
            *yv = (xv - max).exp();
            sum += *yv;
        }
        for yv in yr.iter_mut() {
            *yv /= sum;
        }
    }
    y
}

/// Given y = softmax(x) and dy: dx = y * (dy - sum_j dy_j y_j) per row.
pub fn softmax_backward(y: &[f64], dy: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut dx = vec![0.0; rows * cols];
    for r in 0..rows {
        let row = r * cols..(r + 1) * cols;
        let dot: f64 = y[row.clone()]
            .iter()
            .zip(&dy[row.clone()])
            .map(|(a, b)| a * b)
            .sum();
        for i in row {
            dx[i] = y[i] * (dy[i] - dot);
        }
    }
    dx
}

/// The scaled scores s[n, i, j] = sum_c q[n, c, i] k[n, c, j] / sqrt(c).
fn scores(q: &[f64], k: &[f64], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let scale = 1.0 / (c as f64).sqrt();
    let mut s = vec![0.0; n * hw * hw];
    for ni in 0..n {
        let (q, k) = (&q[ni * c * hw..], &k[ni * c * hw..]);
        for i in 0..hw {
            for j in 0..hw {
                let dot: f64 = (0..c).map(|ci| q[ci * hw + i] * k[ci * hw + j]).sum();
                s[(ni * hw + i) * hw + j] = dot * scale;
            }
        }
    }
    s
}

/// Single-head self-attention over the hw positions, as in the DDPM UNet's AttnBlock:
/// q, k, v are [n, c, hw]; weights[n, i, j] = softmax_j( sum_c q[n,c,i] k[n,c,j] / sqrt(c) );
/// out[n, c, i] = sum_j v[n, c, j] * weights[n, i, j]. Returns (out, weights).
pub fn attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let weights = softmax(&scores(q, k, n, c, hw), n * hw, hw);
    let mut out = vec![0.0; n * c * hw];
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..hw {
                out[(ni * c + ci) * hw + i] = (0..hw)
                    .map(|j| v[(ni * c + ci) * hw + j] * weights[(ni * hw + i) * hw + j])
                    .sum();
            }
        }
    }
    (out, weights)
}

/// Gradients of `attention`'s out: (dq, dk, dv). The weights are recomputed, then
/// dv = dout W, dW = dout^T v, dS = softmax_backward(W, dW), dq = k dS^T / sqrt(c) and
/// dk = q dS / sqrt(c).
pub fn attention_backward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let scale = 1.0 / (c as f64).sqrt();
    let (_, weights) = attention(q, k, v, n, c, hw);
    let mut dweights = vec![0.0; n * hw * hw];
    let mut dv = vec![0.0; n * c * hw];
    for ni in 0..n {
        for i in 0..hw {
            for j in 0..hw {
                let wij = weights[(ni * hw + i) * hw + j];
                let mut acc = 0.0;
                for ci in 0..c {
                    let g = dout[(ni * c + ci) * hw + i];
                    acc += g * v[(ni * c + ci) * hw + j];
                    dv[(ni * c + ci) * hw + j] += g * wij;
                }
                dweights[(ni * hw + i) * hw + j] = acc;
            }
        }
    }
    let dscores = softmax_backward(&weights, &dweights, n * hw, hw);
    let mut dq = vec![0.0; n * c * hw];
    let mut dk = vec![0.0; n * c * hw];
    for ni in 0..n {
        for i in 0..hw {
            for j in 0..hw {
                let ds = dscores[(ni * hw + i) * hw + j] * scale;
                for ci in 0..c {
                    let (qi, kj) = ((ni * c + ci) * hw + i, (ni * c + ci) * hw + j);
                    dq[qi] += ds * k[kj];
                    dk[kj] += ds * q[qi];
                }
            }
        }
    }
    (dq, dk, dv)
}
