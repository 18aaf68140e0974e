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
