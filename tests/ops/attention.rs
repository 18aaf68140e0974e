//! GPU against the CPU reference: softmax and attention (shaders/attention.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn softmax_and_attention_match_reference() {
    let gpu = gpu();
    // Long rows get a workgroup each, short rows (attention's 49 or 64) a thread each.
    for (rows, cols) in [(7, 300), (37, 49)] {
        // Large inputs: the max subtraction keeps exp finite.
        let x = uniform(rows * cols, 90.0, 100.0, 80);
        let y = ops::attention::softmax(&gpu, &gpu.upload(&x, &[rows, cols]), 0.5);
        let scaled: Vec<f64> = x.iter().map(|&v| 0.5 * v as f64).collect();
        let want = cpu::attention::softmax(&scaled, rows, cols);
        assert_close(
            &format!("softmax fwd {rows}x{cols}"),
            &gpu.read(&y),
            &want,
            1e-6,
            1e-4,
        );
        let dy = uniform(rows * cols, -1.0, 1.0, 81);
        let dx = ops::attention::softmax_backward(&gpu, &y, &gpu.upload(&dy, &[rows, cols]), 0.5);
        let want: Vec<f64> = cpu::attention::softmax_backward(&want, &to_f64(&dy), rows, cols)
            .iter()
            .map(|v| 0.5 * v)
            .collect();
        assert_close(
            &format!("softmax bwd {rows}x{cols}"),
            &gpu.read(&dx),
            &want,
            1e-6,
            1e-4,
        );
    }

    let (n, c, hw) = (2, 6, 63);
    let q = uniform(n * c * hw, -1.0, 1.0, 82);
    let k = uniform(n * c * hw, -1.0, 1.0, 83);
    let v = uniform(n * c * hw, -1.0, 1.0, 84);
    let dout = uniform(n * c * hw, -1.0, 1.0, 85);
    let grads: Vec<_> = (0..3).map(|_| gpu.zeros(&[n, c, hw])).collect();
    let mut cx = ddpm::autograd::Ctx::new(&gpu);
    let qv = cx.param(gpu.upload(&q, &[n, c, hw]), grads[0].clone());
    let kv = cx.param(gpu.upload(&k, &[n, c, hw]), grads[1].clone());
    let vv = cx.param(gpu.upload(&v, &[n, c, hw]), grads[2].clone());
    let out = ops::attention::attention_var(&mut cx, &qv, &kv, &vv);
    let (want_out, _) = cpu::attention::attention(&to_f64(&q), &to_f64(&k), &to_f64(&v), n, c, hw);
    assert_close(
        "attention fwd",
        &gpu.read(&out.tensor),
        &want_out,
        1e-5,
        1e-4,
    );
    // A scalar whose gradient with respect to out is dout.
    let dout_var = cx.constant(gpu.upload(&dout, &[n, c, hw]));
    let weighted = ops::arith::mul_var(&mut cx, &out, &dout_var);
    let loss = ops::reduce::sum_var(&mut cx, &weighted);
    ops::backward(&mut cx, &loss);
    let (dq, dk, dv) = cpu::attention::attention_backward(
        &to_f64(&q),
        &to_f64(&k),
        &to_f64(&v),
        &to_f64(&dout),
        n,
        c,
        hw,
    );
    assert_close("attention dq", &gpu.read(&grads[0]), &dq, 1e-5, 1e-3);
    assert_close("attention dk", &gpu.read(&grads[1]), &dk, 1e-5, 1e-3);
    assert_close("attention dv", &gpu.read(&grads[2]), &dv, 1e-5, 1e-3);
}
