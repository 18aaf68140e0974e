//! The tape: gradients of values used twice accumulate, no_grad records nothing, detach cuts,
//! and a whole training step of the toy MLP on the GPU equals its CPU composition.

mod common;

use common::{gpu, to_f64, uniform};
use ddpm::autograd::Ctx;
use ddpm::cpu;
use ddpm::nn::mlp::Mlp;
use ddpm::ops;

#[test]
fn a_value_used_twice_gets_the_sum_of_both_gradients() {
    let gpu = gpu();
    let x = uniform(10, -1.0, 1.0, 1);
    let grad = gpu.zeros(&[10]);
    let mut cx = Ctx::new(&gpu);
    let xv = cx.param(gpu.upload(&x, &[10]), grad.clone());
    // loss = sum(x * x + 3 x): dloss/dx = 2x + 3.
    let sq = ops::arith::mul_var(&mut cx, &xv, &xv);
    let three_x = ops::arith::scale_var(&mut cx, &xv, 3.0);
    let y = ops::arith::add_var(&mut cx, &sq, &three_x);
    let loss = ops::reduce::sum_var(&mut cx, &y);
    ops::backward(&mut cx, &loss);
    let want: Vec<f64> = x.iter().map(|&v| 2.0 * v as f64 + 3.0).collect();
    common::assert_close("d(x*x + 3x)/dx", &gpu.read(&grad), &want, 1e-6, 1e-6);
}

#[test]
fn no_grad_records_nothing_and_detach_cuts_the_graph() {
    let gpu = gpu();
    let x = gpu.upload(&uniform(8, -1.0, 1.0, 2), &[8]);
    let grad = gpu.zeros(&[8]);
    let mut cx = Ctx::no_grad(&gpu);
    let xv = cx.param(x.clone(), grad.clone());
    let y = ops::activation::silu_var(&mut cx, &xv);
    assert!(!y.requires_grad);
    assert_eq!(cx.n_nodes(), 0);

    let mut cx = Ctx::new(&gpu);
    let xv = cx.param(x, grad.clone());
    let cut = cx.detach(&xv);
    let y = ops::arith::mul_var(&mut cx, &cut, &cut);
    let loss = ops::reduce::mean_var(&mut cx, &y);
    assert!(
        !loss.requires_grad,
        "nothing upstream of a detached value wants a gradient"
    );
    ops::backward(&mut cx, &loss);
    assert_eq!(gpu.read(&grad), vec![0.0; 8]);
}

/// The toy MLP's forward and backward composed from the CPU reference.
fn cpu_mlp_step(mlp: &Mlp, flat: &[f64], x: &[f64], t: &[u32], target: &[f64]) -> (f64, Vec<f64>) {
    let b = t.len();
    let specs = &mlp.layout.specs;
    let get = |i: usize| &flat[specs[i].offset..specs[i].offset + specs[i].numel()];
    let mut grads = vec![0.0; flat.len()];
    let mut put =
        |i: usize, g: &[f64]| grads[specs[i].offset..specs[i].offset + g.len()].copy_from_slice(g);
    let mut hs = vec![x.to_vec()];
    let mut pre = Vec::new();
    let mut d_in = 2;
    for layer in 0..3 {
        let (w, bias, emb) = (3 * layer, 3 * layer + 1, 3 * layer + 2);
        let hidden = specs[bias].numel();
        let z = cpu::matmul::matmul(
            &hs[layer],
            get(w),
            Some(get(bias)),
            cpu::matmul::MatmulShape::new(1, b, d_in, hidden),
        );
        let e = cpu::embedding::embedding(get(emb), t, hidden);
        let a = cpu::arith::add(&z, &e);
        hs.push(cpu::activation::relu(&a));
        pre.push(a);
        d_in = hidden;
    }
    let out = cpu::matmul::matmul(
        &hs[3],
        get(9),
        Some(get(10)),
        cpu::matmul::MatmulShape::new(1, b, d_in, 2),
    );
    let loss = cpu::loss::mse(&out, target);
    let dout = cpu::loss::mse_backward(&out, target, 1.0);
    let (mut dh, dw, db) = cpu::matmul::linear_backward(&hs[3], get(9), &dout, b, d_in, 2);
    put(9, &dw);
    put(10, &db);
    for layer in (0..3).rev() {
        let (w, bias, emb) = (3 * layer, 3 * layer + 1, 3 * layer + 2);
        let hidden = specs[bias].numel();
        let n_rows = specs[emb].shape[0];
        let da = cpu::activation::relu_backward(&pre[layer], &dh);
        put(
            emb,
            &cpu::embedding::embedding_backward(&da, t, hidden, n_rows),
        );
        let layer_in = if layer == 0 { 2 } else { hidden };
        let (dx, dw, db) =
            cpu::matmul::linear_backward(&hs[layer], get(w), &da, b, layer_in, hidden);
        put(w, &dw);
        put(bias, &db);
        dh = dx;
    }
    (loss, grads)
}

#[test]
fn toy_mlp_training_step_matches_the_cpu_composition() {
    let gpu = gpu();
    let (batch, hidden, t_max) = (9, 16, 10);
    let mlp = Mlp::new(2, hidden, t_max);
    let flat = mlp.layout.init(3);
    let x = uniform(batch * 2, -1.0, 1.0, 4);
    let target = uniform(batch * 2, -1.0, 1.0, 5);
    let t: Vec<u32> = (0..batch as u32).map(|i| (i * 7) % t_max as u32).collect();

    let weights = gpu.upload(&flat, &[flat.len()]);
    let grads = gpu.zeros(&[flat.len()]);
    let mut cx = Ctx::new(&gpu);
    let params = mlp.layout.vars(&mut cx, &weights, Some(&grads));
    let xv = cx.constant(gpu.upload(&x, &[batch, 2]));
    let out = mlp.forward(&mut cx, &params, &xv, &gpu.upload_u32(&t, &[batch]));
    let loss = ops::loss::mse_var(&mut cx, &out, &gpu.upload(&target, &[batch, 2]));
    ops::backward(&mut cx, &loss);

    let (want_loss, want_grads) =
        cpu_mlp_step(&mlp, &to_f64(&flat), &to_f64(&x), &t, &to_f64(&target));
    let got_loss = gpu.read(&loss.tensor)[0] as f64;
    assert!(
        (got_loss - want_loss).abs() <= 1e-4 * want_loss.abs(),
        "loss {got_loss} vs {want_loss}"
    );
    let got = gpu.read(&grads);
    for spec in &mlp.layout.specs {
        let range = spec.offset..spec.offset + spec.numel();
        let (g, w) = (&got[range.clone()], &want_grads[range]);
        let err: f64 = g
            .iter()
            .zip(w)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = w.iter().map(|b| b * b).sum::<f64>().sqrt();
        assert!(
            err <= 1e-4 * norm + 1e-7,
            "{}: relative L2 error {}",
            spec.name,
            err / norm
        );
    }
}

/// dx = dy + GN'(dy) for loss = mse(GN(x) + x') where x' is x itself (one gradient tensor handed
/// to both inputs of the add: it must not be added onto in place) or 2x (a gradient of x's own,
/// which the GPU path's group_norm_bwd_acc adds onto in place).
#[test]
fn gradients_added_in_place_only_when_nothing_else_holds_them() {
    let gpu = gpu();
    let own = gpu.caps();
    gpu.set_caps(ddpm::gpu::caps::profiles(&own)[0].1);
    let (n, c, h, w, groups) = (2, 4, 3, 3, 2);
    let numel = n * c * h * w;
    let x = uniform(numel, -2.0, 2.0, 11);
    let gamma = uniform(c, 0.5, 1.5, 12);
    let beta = uniform(c, -0.5, 0.5, 13);
    let target = uniform(numel, -1.0, 1.0, 14);
    let opts = ops::group_norm::GroupNormOptions {
        groups,
        fuse_silu: false,
    };
    let shape = cpu::group_norm::GroupNormShape {
        n,
        c,
        hw: h * w,
        groups,
    };
    let eps = ops::group_norm::EPS as f64;
    let (x64, g64, b64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta));
    for scale in [1.0, 2.0] {
        let grad = gpu.zeros(&[n, c, h, w]);
        let mut cx = Ctx::new(&gpu);
        let xv = cx.param(gpu.upload(&x, &[n, c, h, w]), grad.clone());
        let gv = cx.constant(gpu.upload(&gamma, &[c]));
        let bv = cx.constant(gpu.upload(&beta, &[c]));
        let normed = ops::group_norm::group_norm_var(&mut cx, &xv, &gv, &bv, opts);
        let other = match scale {
            1.0 => xv.clone(),
            _ => ops::arith::scale_var(&mut cx, &xv, scale as f32),
        };
        let y = ops::arith::add_var(&mut cx, &normed, &other);
        let loss = ops::loss::mse_var(&mut cx, &y, &gpu.upload(&target, &[n, c, h, w]));
        ops::backward(&mut cx, &loss);

        let gn = cpu::group_norm::group_norm(&x64, &g64, &b64, shape, eps);
        let y64: Vec<f64> = gn.iter().zip(&x64).map(|(g, x)| g + scale * x).collect();
        let dy = cpu::loss::mse_backward(&y64, &to_f64(&target), 1.0);
        let (dgn, _, _) = cpu::group_norm::group_norm_backward(&x64, &g64, &dy, shape, eps);
        let want: Vec<f64> = dgn.iter().zip(&dy).map(|(g, d)| g + scale * d).collect();
        let what = format!("d loss / dx, x' = {scale} x");
        common::assert_close(&what, &gpu.read(&grad), &want, 1e-5, 1e-4);
    }
    gpu.set_caps(own);
}
