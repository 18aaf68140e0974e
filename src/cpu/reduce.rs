//! Sums: whole-tensor, of squares, per column and per row.

pub fn sum(x: &[f64]) -> f64 {
    x.iter().sum()
}

pub fn mean(x: &[f64]) -> f64 {
    sum(x) / x.len() as f64
}

pub fn sum_squares(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

/// out[j] = sum over rows of x[i * cols + j].
pub fn sum_rows(x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for row in x.chunks(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// out[r] = scale * sum_j f(x[r * cols + j]), f the identity or the square.
pub fn row_sums(x: &[f64], cols: usize, squares: bool, scale: f64) -> Vec<f64> {
    x.chunks(cols)
        .map(|row| {
            scale
                * row
                    .iter()
                    .map(|v| if squares { v * v } else { *v })
                    .sum::<f64>()
        })
        .collect()
}
