//! GPU against the CPU reference: embedding (shaders/embedding.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn embedding_forward_and_backward_match_reference() {
    let gpu = gpu();
    let (n_rows, dim) = (11, 13);
    let index: Vec<u32> = vec![3, 0, 10, 3, 3, 7, 0];
    let table = uniform(n_rows * dim, -1.0, 1.0, 15);
    let dy = uniform(index.len() * dim, -1.0, 1.0, 16);
    let gindex = gpu.upload_u32(&index, &[index.len()]);
    let out = ops::embedding::embedding(&gpu, &gpu.upload(&table, &[n_rows, dim]), &gindex);
    assert_close(
        "embedding_fwd",
        &gpu.read(&out),
        &cpu::embedding::embedding(&to_f64(&table), &index, dim),
        0.0,
        0.0,
    );
    let gdy = gpu.upload(&dy, &[index.len(), dim]);
    let want = cpu::embedding::embedding_backward(&to_f64(&dy), &index, dim, n_rows);
    let looped = ops::embedding::embedding_backward_loop(&gpu, &[n_rows, dim], &gindex, &gdy);
    assert_close("embedding_bwd", &gpu.read(&looped), &want, 1e-6, 1e-6);
    let one_hot = ops::embedding::embedding_backward_one_hot(&gpu, &[n_rows, dim], &gindex, &gdy);
    assert_close("one_hot + matmul", &gpu.read(&one_hot), &want, 1e-6, 1e-6);
}
