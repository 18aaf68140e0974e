//! Mean squared error and its gradient with respect to the prediction.

pub fn mse(pred: &[f64], target: &[f64]) -> f64 {
    let n = pred.len() as f64;
    pred.iter()
        .zip(target)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / n
}

pub fn mse_backward(pred: &[f64], target: &[f64], dloss: f64) -> Vec<f64> {
    let n = pred.len() as f64;
    pred.iter()
        .zip(target)
        .map(|(p, t)| 2.0 / n * (p - t) * dloss)
        .collect()
}

/// Per-sample means of the squared error, samples of `per_sample` contiguous elements.
pub fn mse_per_sample(pred: &[f64], target: &[f64], per_sample: usize) -> Vec<f64> {
    pred.chunks(per_sample)
        .zip(target.chunks(per_sample))
        .map(|(p, t)| mse(p, t))
        .collect()
}

/// Gradient of (1 / n) sum_i w[i / per_sample] (pred_i - target_i)^2.
pub fn mse_backward_weighted(
    pred: &[f64],
    target: &[f64],
    weights: &[f64],
    dloss: f64,
) -> Vec<f64> {
    let per_sample = pred.len() / weights.len();
    mse_backward(pred, target, dloss)
        .into_iter()
        .enumerate()
        .map(|(i, g)| g * weights[i / per_sample])
        .collect()
}
