//! 2-D convolution (square kernel, stride, zero padding) in NCHW with PyTorch's weight layout
//! [c_out, c_in, k, k], and its backward.

pub use crate::shape::ConvShape;

/// The input position read by output position `o` at kernel offset `k`, or None when it falls
/// in the zero padding.
fn input_index(s: &ConvShape, o: usize, k: usize, size: usize) -> Option<usize> {
    (o * s.stride + k)
        .checked_sub(s.padding)
        .filter(|&i| i < size)
}

/// y[n, co, oy, ox] = bias[co] + sum_{ci, ky, kx} w[co, ci, ky, kx]
/// * x[n, ci, oy*stride + ky - padding, ox*stride + kx - padding] (zero outside).
pub fn conv2d(x: &[f64], w: &[f64], bias: Option<&[f64]>, s: &ConvShape) -> Vec<f64> {
    let (k, h_out, w_out) = (s.kernel, s.h_out(), s.w_out());
    let mut y = vec![0.0; s.n * s.c_out * h_out * w_out];
    for ni in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..h_out {
                for ox in 0..w_out {
                    let mut acc = bias.map_or(0.0, |b| b[co]);
                    for ci in 0..s.c_in {
                        for ky in 0..k {
                            let Some(iy) = input_index(s, oy, ky, s.h) else {
                                continue;
                            };
                            for kx in 0..k {
                                let Some(ix) = input_index(s, ox, kx, s.w) else {
                                    continue;
                                };
                                acc += w[((co * s.c_in + ci) * k + ky) * k + kx]
                                    * x[((ni * s.c_in + ci) * s.h + iy) * s.w + ix];
                            }
                        }
                    }
                    y[((ni * s.c_out + co) * h_out + oy) * w_out + ox] = acc;
                }
            }
        }
    }
    y
}

/// conv2d with a bias, then + residual[n, co, oy, ox] (conv2d_fwd_bias_residual's epilogue).
pub fn conv2d_bias_residual(
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    residual: &[f64],
    s: &ConvShape,
) -> Vec<f64> {
    let mut y = conv2d(x, w, Some(bias), s);
    assert_eq!(residual.len(), y.len(), "residual size");
    for (y, r) in y.iter_mut().zip(residual) {
        *y += r;
    }
    y
}

/// conv2d with a bias, then + shift[n, co] at every pixel (conv2d_fwd_bias_shift's epilogue).
pub fn conv2d_bias_shift(
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    shift: &[f64],
    s: &ConvShape,
) -> Vec<f64> {
    let mut y = conv2d(x, w, Some(bias), s);
    assert_eq!(shift.len(), s.n * s.c_out, "shift size");
    let hw = s.h_out() * s.w_out();
    for (i, y) in y.iter_mut().enumerate() {
        *y += shift[i / hw];
    }
    y
}

/// Gradients of `conv2d`: (dx, dw, dbias). Each product in the forward sends dy back to
/// the one input and the one weight it multiplied, so the backward is the forward's loop
/// with the accumulation scattered instead of gathered.
pub fn conv2d_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    s: &ConvShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (k, h_out, w_out) = (s.kernel, s.h_out(), s.w_out());
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut dbias = vec![0.0; s.c_out];
    for ni in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..h_out {
                for ox in 0..w_out {
                    let g = dy[((ni * s.c_out + co) * h_out + oy) * w_out + ox];
                    dbias[co] += g;
                    for ci in 0..s.c_in {
                        for ky in 0..k {
                            let Some(iy) = input_index(s, oy, ky, s.h) else {
                                continue;
                            };
                            for kx in 0..k {
                                let Some(ix) = input_index(s, ox, kx, s.w) else {
                                    continue;
                                };
                                let xi = ((ni * s.c_in + ci) * s.h + iy) * s.w + ix;
                                let wi = ((co * s.c_in + ci) * k + ky) * k + kx;
                                dx[xi] += w[wi] * g;
                                dw[wi] += x[xi] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_the_floor_rule() {
        let s = ConvShape {
            n: 1,
            c_in: 1,
            h: 7,
            w: 8,
            c_out: 1,
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        assert_eq!((s.h_out(), s.w_out()), (4, 4));
        let same = ConvShape { stride: 1, ..s };
        assert_eq!((same.h_out(), same.w_out()), (7, 8));
    }

    #[test]
    fn padding_reads_zeros() {
        // A 3x3 all-ones kernel over a 2x2 all-ones image: every output sees all 4 pixels.
        let s = ConvShape {
            n: 1,
            c_in: 1,
            h: 2,
            w: 2,
            c_out: 1,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let y = conv2d(&[1.0; 4], &[1.0; 9], Some(&[0.5]), &s);
        assert_eq!(y, vec![4.5; 4]);
    }
}
