//! Shape-moving ops of the UNet: nearest-neighbour 2x upsampling and channel concatenation
//! (the skip connections), with their backward passes.

/// Nearest-neighbour 2x upsampling: x [n, c, h, w] -> [n, c, 2h, 2w],
/// y[.., 2i+a, 2j+b] = x[.., i, j].
pub fn upsample_nearest2x(x: &[f64], n: usize, c: usize, h: usize, w: usize) -> Vec<f64> {
    let (h2, w2) = (2 * h, 2 * w);
    let mut y = vec![0.0; n * c * h2 * w2];
    for plane in 0..n * c {
        for oy in 0..h2 {
            for ox in 0..w2 {
                y[(plane * h2 + oy) * w2 + ox] = x[(plane * h + oy / 2) * w + ox / 2];
            }
        }
    }
    y
}

/// Gradient of `upsample_nearest2x`: each input feeds one 2x2 block, so dx sums that block.
/// Returns dx [n, c, h, w].
pub fn upsample_nearest2x_backward(dy: &[f64], n: usize, c: usize, h: usize, w: usize) -> Vec<f64> {
    let (h2, w2) = (2 * h, 2 * w);
    let mut dx = vec![0.0; n * c * h * w];
    for plane in 0..n * c {
        for oy in 0..h2 {
            for ox in 0..w2 {
                dx[(plane * h + oy / 2) * w + ox / 2] += dy[(plane * h2 + oy) * w2 + ox];
            }
        }
    }
    dx
}

/// Channel concatenation: a [n, ca, hw], b [n, cb, hw] -> [n, ca + cb, hw].
pub fn concat_channels(
    a: &[f64],
    b: &[f64],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
) -> Vec<f64> {
    let mut y = Vec::with_capacity(n * (ca + cb) * hw);
    for ni in 0..n {
        y.extend_from_slice(&a[ni * ca * hw..(ni + 1) * ca * hw]);
        y.extend_from_slice(&b[ni * cb * hw..(ni + 1) * cb * hw]);
    }
    y
}

/// Gradient of `concat_channels`: the split of dy back into (da, db).
pub fn concat_channels_backward(
    dy: &[f64],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut da = Vec::with_capacity(n * ca * hw);
    let mut db = Vec::with_capacity(n * cb * hw);
    for sample in dy[..n * (ca + cb) * hw].chunks((ca + cb) * hw) {
        let (front, back) = sample.split_at(ca * hw);
        da.extend_from_slice(front);
        db.extend_from_slice(back);
    }
    (da, db)
}
