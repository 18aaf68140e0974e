//! Embedding lookup: rows of a table picked by indices, and the scatter-add backward.

pub fn embedding(table: &[f64], index: &[u32], dim: usize) -> Vec<f64> {
    index
        .iter()
        .flat_map(|&r| {
            table[r as usize * dim..(r as usize + 1) * dim]
                .iter()
                .copied()
        })
        .collect()
}

pub fn embedding_backward(dy: &[f64], index: &[u32], dim: usize, n_rows: usize) -> Vec<f64> {
    let mut dtable = vec![0.0; n_rows * dim];
    for (b, &r) in index.iter().enumerate() {
        for j in 0..dim {
            dtable[r as usize * dim + j] += dy[b * dim + j];
        }
    }
    dtable
}
