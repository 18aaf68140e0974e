//! Softmax cross-entropy against integer labels, mean over rows, and its gradient.

/// Each row's logsumexp, for logits [n_rows, n_classes].
pub fn logsumexp(logits: &[f64], n_classes: usize) -> Vec<f64> {
    logits
        .chunks(n_classes)
        .map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
        })
        .collect()
}

/// Each row's loss, logsumexp(row) - row[label].
pub fn cross_entropy_rows(logits: &[f64], labels: &[u32], n_classes: usize) -> Vec<f64> {
    logsumexp(logits, n_classes)
        .iter()
        .zip(logits.chunks(n_classes).zip(labels))
        .map(|(l, (row, &y))| l - row[y as usize])
        .collect()
}

/// The mean of the rows' losses.
pub fn cross_entropy(logits: &[f64], labels: &[u32], n_classes: usize) -> f64 {
    let rows = cross_entropy_rows(logits, labels, n_classes);
    rows.iter().sum::<f64>() / rows.len() as f64
}

/// d(mean loss * dloss) / dlogits = (softmax - one_hot(label)) * dloss / n_rows.
pub fn cross_entropy_backward(
    logits: &[f64],
    labels: &[u32],
    n_classes: usize,
    dloss: f64,
) -> Vec<f64> {
    let lse = logsumexp(logits, n_classes);
    let scale = dloss / labels.len() as f64;
    logits
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (r, j) = (i / n_classes, i % n_classes);
            let one = if j == labels[r] as usize { 1.0 } else { 0.0 };
            ((v - lse[r]).exp() - one) * scale
        })
        .collect()
}
