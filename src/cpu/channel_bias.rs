//! The ResBlock's time conditioning: a per-(sample, channel) bias broadcast over positions.

/// y[n, c, p] = x[n, c, p] + bias[n, c] for x [n, c, hw], bias [n, c].
pub fn add_channel_bias(x: &[f64], bias: &[f64], n: usize, c: usize, hw: usize) -> Vec<f64> {
    let mut y = x[..n * c * hw].to_vec();
    for (plane, &b) in y.chunks_mut(hw).zip(&bias[..n * c]) {
        for v in plane {
            *v += b;
        }
    }
    y
}

/// Gradients of `add_channel_bias`: (dx = dy, dbias = sum of dy over hw).
pub fn add_channel_bias_backward(
    dy: &[f64],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let dy = &dy[..n * c * hw];
    let dbias = dy.chunks(hw).map(|plane| plane.iter().sum()).collect();
    (dy.to_vec(), dbias)
}
