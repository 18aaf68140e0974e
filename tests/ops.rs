//! Every GPU entry point against the CPU reference, on seeded inputs with shapes that are not
//! multiples of the workgroup or tile sizes, plus one realistic shape where it matters.

mod common;

use common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::gpu::caps::profiles;
use ddpm::ops;

#[test]
fn matmul_matches_reference_for_every_transpose_and_bias() {
    let gpu = gpu();
    let own = gpu.caps();
    let (batch, m, k, n) = (2, 37, 19, 45);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let a_shape = if trans_a {
            [batch, k, m]
        } else {
            [batch, m, k]
        };
        let b_shape = if trans_b {
            [batch, n, k]
        } else {
            [batch, k, n]
        };
        let a = uniform(batch * m * k, -1.0, 1.0, 1);
        let b = uniform(batch * k * n, -1.0, 1.0, 2);
        let bias = uniform(n, -1.0, 1.0, 3);
        let ga = gpu.upload(&a, &a_shape);
        let gb = gpu.upload(&b, &b_shape);
        let gbias = gpu.upload(&bias, &[n]);
        for (with_bias, (variant, caps)) in [false, true]
            .into_iter()
            .flat_map(|b| profiles(&own).into_iter().take(3).map(move |p| (b, p)))
        {
            gpu.set_caps(caps);
            let c = ops::matmul::matmul(
                &gpu,
                &ga,
                &gb,
                with_bias.then_some(&gbias),
                trans_a,
                trans_b,
            );
            assert_eq!(c.shape, vec![batch, m, n]);
            let bias64 = to_f64(&bias);
            let want = cpu::matmul::matmul(
                &to_f64(&a),
                &to_f64(&b),
                with_bias.then_some(bias64.as_slice()),
                batch,
                m,
                k,
                n,
                trans_a,
                trans_b,
            );
            let what = format!("matmul {variant} ta={trans_a} tb={trans_b} bias={with_bias}");
            assert_close(&what, &gpu.read(&c), &want, 1e-5, 1e-4);
        }
    }
    gpu.set_caps(own);
}

#[test]
fn matmul_shares_a_2d_operand_across_the_batch_and_handles_a_realistic_shape() {
    let gpu = gpu();
    let (batch, m, k, n) = (3, 5, 128, 130);
    let a = uniform(batch * m * k, -1.0, 1.0, 4);
    let w = uniform(k * n, -1.0, 1.0, 5);
    let c = ops::matmul::matmul(
        &gpu,
        &gpu.upload(&a, &[batch, m, k]),
        &gpu.upload(&w, &[k, n]),
        None,
        false,
        false,
    );
    let w_batched: Vec<f64> = (0..batch).flat_map(|_| to_f64(&w)).collect();
    let want = cpu::matmul::matmul(&to_f64(&a), &w_batched, None, batch, m, k, n, false, false);
    assert_close("matmul shared weights", &gpu.read(&c), &want, 1e-4, 1e-4);

    let (m, k, n) = (128, 128, 128);
    let a = uniform(m * k, -1.0, 1.0, 6);
    let b = uniform(k * n, -1.0, 1.0, 7);
    let want = cpu::matmul::matmul(&to_f64(&a), &to_f64(&b), None, 1, m, k, n, false, false);
    let own = gpu.caps();
    for (variant, caps) in profiles(&own).into_iter().take(3) {
        gpu.set_caps(caps);
        let (ga, gb) = (gpu.upload(&a, &[m, k]), gpu.upload(&b, &[k, n]));
        let c = ops::matmul::matmul(&gpu, &ga, &gb, None, false, false);
        assert_close(
            &format!("matmul {variant} 128^3"),
            &gpu.read(&c),
            &want,
            1e-4,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

#[test]
fn matmul_uniform_windows_span_several_dispatches() {
    // A batch entry of A holds 4270 floats, so a 64 KiB window holds 3 of them: the 5 entries
    // take two dispatches, the second starting 2 floats past an aligned window start. B is
    // batched, then shared by every entry.
    let gpu = gpu();
    let (batch, m, k, n) = (5, 61, 70, 33);
    let a = uniform(batch * m * k, -1.0, 1.0, 11);
    let b = uniform(batch * k * n, -1.0, 1.0, 12);
    let ga = gpu.upload(&a, &[batch, m, k]);
    // The wing with uniform windows.
    let own = gpu.caps();
    let (_, windows) = profiles(&own)[2];
    assert_eq!(
        ops::matmul::plan(&windows, [m * k, k * n]),
        ops::matmul::MatmulPlan::Windows
    );
    gpu.set_caps(windows);
    for shared in [false, true] {
        let (gb, b_all) = if shared {
            let b0 = &b[..k * n];
            let tiled: Vec<f64> = (0..batch).flat_map(|_| to_f64(b0)).collect();
            (gpu.upload(b0, &[k, n]), tiled)
        } else {
            (gpu.upload(&b, &[batch, k, n]), to_f64(&b))
        };
        let c = ops::matmul::matmul(&gpu, &ga, &gb, None, false, false);
        let want = cpu::matmul::matmul(&to_f64(&a), &b_all, None, batch, m, k, n, false, false);
        assert_close(
            &format!("matmul Windows shared_b={shared}"),
            &gpu.read(&c),
            &want,
            1e-4,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

#[test]
fn activations_forward_and_backward_match_reference() {
    let gpu = gpu();
    let n = 1000;
    let x = uniform(n, -4.0, 4.0, 8);
    let dy = uniform(n, -1.0, 1.0, 9);
    let (gx, gdy) = (gpu.upload(&x, &[n]), gpu.upload(&dy, &[n]));
    let (x64, dy64) = (to_f64(&x), to_f64(&dy));
    assert_close(
        "relu_fwd",
        &gpu.read(&ops::activation::relu(&gpu, &gx)),
        &cpu::activation::relu(&x64),
        0.0,
        0.0,
    );
    assert_close(
        "relu_bwd",
        &gpu.read(&ops::activation::relu_backward(&gpu, &gx, &gdy)),
        &cpu::activation::relu_backward(&x64, &dy64),
        0.0,
        0.0,
    );
    assert_close(
        "silu_fwd",
        &gpu.read(&ops::activation::silu(&gpu, &gx)),
        &cpu::activation::silu(&x64),
        1e-6,
        1e-5,
    );
    assert_close(
        "silu_bwd",
        &gpu.read(&ops::activation::silu_backward(&gpu, &gx, &gdy)),
        &cpu::activation::silu_backward(&x64, &dy64),
        1e-6,
        1e-5,
    );
}

#[test]
fn elementwise_arithmetic_matches_reference() {
    let gpu = gpu();
    let n = 777;
    let a = uniform(n, -2.0, 2.0, 10);
    let b = uniform(n, -2.0, 2.0, 11);
    let (ga, gb) = (gpu.upload(&a, &[n]), gpu.upload(&b, &[n]));
    let (a64, b64) = (to_f64(&a), to_f64(&b));
    assert_close(
        "add_fwd",
        &gpu.read(&ops::arith::add(&gpu, &ga, &gb)),
        &cpu::arith::add(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "sub_fwd",
        &gpu.read(&ops::arith::sub(&gpu, &ga, &gb)),
        &cpu::arith::sub(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "mul_fwd",
        &gpu.read(&ops::arith::mul(&gpu, &ga, &gb)),
        &cpu::arith::mul(&a64, &b64),
        1e-6,
        1e-6,
    );
    assert_close(
        "scale_fwd",
        &gpu.read(&ops::arith::scale(&gpu, &ga, -0.75)),
        &cpu::arith::scale(&a64, -0.75),
        1e-6,
        1e-6,
    );
    let filled = gpu.empty(&[n]);
    ops::arith::fill(&gpu, &filled, 2.5);
    assert_close("fill", &gpu.read(&filled), &vec![2.5; n], 0.0, 0.0);
    let spread = ops::arith::broadcast(&gpu, &gpu.upload(&[3.0], &[1]), 0.5, &[3, 7]);
    assert_close("broadcast_fwd", &gpu.read(&spread), &[1.5; 21], 0.0, 0.0);
}

#[test]
fn reductions_match_reference() {
    let gpu = gpu();
    // Large enough for several first-pass workgroups, not a multiple of any of them.
    let n = 300_007;
    let x = uniform(n, -1.0, 1.0, 12);
    let gx = gpu.upload(&x, &[n]);
    let x64 = to_f64(&x);
    let sum = cpu::reduce::sum(&x64);
    assert_close(
        "sum",
        &gpu.read(&ops::reduce::sum(&gpu, &gx)),
        &[sum],
        1e-3,
        1e-4,
    );
    assert_close(
        "mean",
        &gpu.read(&ops::reduce::mean(&gpu, &gx)),
        &[sum / n as f64],
        1e-8,
        1e-4,
    );
    let norm = cpu::reduce::sum_squares(&x64).sqrt();
    assert_close(
        "norm",
        &gpu.read(&ops::reduce::norm(&gpu, &gx)),
        &[norm],
        0.0,
        1e-5,
    );

    let (rows, cols) = (33, 70);
    let y = uniform(rows * cols, -1.0, 1.0, 13);
    let got = ops::reduce::sum_rows(&gpu, &gpu.upload(&y, &[rows, cols]));
    assert_close(
        "sum_rows_fwd",
        &gpu.read(&got),
        &cpu::reduce::sum_rows(&to_f64(&y), cols),
        1e-5,
        1e-5,
    );
}

#[test]
fn reductions_are_deterministic() {
    let gpu = gpu();
    let x = gpu.upload(&uniform(100_003, -1.0, 1.0, 14), &[100_003]);
    let first = gpu.read(&ops::reduce::sum(&gpu, &x));
    for _ in 0..3 {
        assert_eq!(
            gpu.read(&ops::reduce::sum(&gpu, &x)),
            first,
            "same input, same bits"
        );
    }
}

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

#[test]
fn mse_forward_and_backward_match_reference() {
    let gpu = gpu();
    let n = 515;
    let pred = uniform(n, -2.0, 2.0, 17);
    let target = uniform(n, -2.0, 2.0, 18);
    let (gp, gt) = (gpu.upload(&pred, &[n]), gpu.upload(&target, &[n]));
    let want = cpu::loss::mse(&to_f64(&pred), &to_f64(&target));
    assert_close(
        "mse",
        &gpu.read(&ops::loss::mse(&gpu, &gp, &gt)),
        &[want],
        1e-6,
        1e-5,
    );
    let dloss = gpu.upload(&[0.5], &[1]);
    let got = ops::loss::mse_backward(&gpu, &gp, &gt, &dloss);
    let want = cpu::loss::mse_backward(&to_f64(&pred), &to_f64(&target), 0.5);
    assert_close("mse_bwd", &gpu.read(&got), &want, 1e-7, 1e-5);
}

#[test]
fn per_sample_sums_and_the_weighted_mse_gradient_match_reference() {
    let gpu = gpu();
    let (batch, per_sample) = (5, 103);
    let n = batch * per_sample;
    let pred = uniform(n, -2.0, 2.0, 27);
    let target = uniform(n, -2.0, 2.0, 28);
    let weights = [2.0f32, 0.0, 0.5, 1.0, 7.25];
    let (gp, gt) = (
        gpu.upload(&pred, &[batch, per_sample]),
        gpu.upload(&target, &[batch, per_sample]),
    );
    let x = to_f64(&pred);
    for squares in [false, true] {
        let got = ops::reduce::row_sums(&gpu, &gp, squares, 0.25);
        let want = cpu::reduce::row_sums(&x, per_sample, squares, 0.25);
        assert_close("row_sums", &gpu.read(&got), &want, 1e-5, 1e-5);
    }
    let dloss = gpu.upload(&[0.5], &[1]);
    let gw = gpu.upload(&weights, &[batch]);
    let got = ops::loss::mse_backward_weighted(&gpu, &gp, &gt, &dloss, Some(&gw));
    let want = cpu::loss::mse_backward_weighted(&x, &to_f64(&target), &to_f64(&weights), 0.5);
    assert_close("mse_bwd weighted", &gpu.read(&got), &want, 1e-7, 1e-5);
    // Sample 1 has weight 0: no gradient at all.
    assert!(gpu.read(&got)[per_sample..2 * per_sample]
        .iter()
        .all(|&g| g == 0.0));
}

#[test]
fn adam_with_clipping_and_ema_match_reference() {
    let gpu = gpu();
    let n = 1234;
    let cfg = cpu::optim::AdamConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        max_norm: 1.0,
    };
    let param = uniform(n, -1.0, 1.0, 19);
    let m0 = uniform(n, -0.1, 0.1, 20);
    let v0 = uniform(n, 0.0, 0.1, 21);
    // Norm ~ 0.58 * sqrt(n) >> 1, so clipping is active.
    let grad = uniform(n, -1.0, 1.0, 22);
    let (gp, gg, gm, gv) = (
        gpu.upload(&param, &[n]),
        gpu.upload(&grad, &[n]),
        gpu.upload(&m0, &[n]),
        gpu.upload(&v0, &[n]),
    );
    let norm = ops::optim::grad_norm(&gpu, &gg);
    let step = 7;
    ops::optim::adam_step(&gpu, &cfg, cfg.lr, step, &gp, &gg, &norm, &gm, &gv);
    let (mut p64, mut m64, mut v64) = (to_f64(&param), to_f64(&m0), to_f64(&v0));
    cpu::optim::adam_step(&cfg, step, &mut p64, &to_f64(&grad), &mut m64, &mut v64);
    assert_close("adam exp_avg", &gpu.read(&gm), &m64, 1e-7, 1e-4);
    assert_close("adam exp_avg_sq", &gpu.read(&gv), &v64, 1e-9, 1e-4);
    assert_close("adam param", &gpu.read(&gp), &p64, 1e-6, 1e-5);

    let ema = uniform(n, -1.0, 1.0, 23);
    let gema = gpu.upload(&ema, &[n]);
    ops::optim::ema_update(&gpu, &gema, &gp, 0.99);
    let mut ema64 = to_f64(&ema);
    cpu::optim::ema_update(&mut ema64, &p64, 0.99);
    assert_close("ema_update", &gpu.read(&gema), &ema64, 1e-6, 1e-5);
}

#[test]
fn rng_bits_match_the_cpu_twin_exactly() {
    let gpu = gpu();
    let n = 4099;
    let u = gpu.read(&ops::rng::uniform(&gpu, &[n], 42, 5));
    let want: Vec<f64> = (0..n as u32).map(|i| cpu::rng::uniform(42, 5, i)).collect();
    assert_close("random_uniform", &u, &want, 0.0, 0.0);
    let z = gpu.read(&ops::rng::normal(&gpu, &[n], 42, 6));
    assert_close(
        "random_normal",
        &z,
        &cpu::rng::normals(42, 6, n),
        2e-5,
        2e-5,
    );
    for antithetic in [false, true] {
        let t = gpu.read_u32(&ops::rng::timesteps(&gpu, 129, 100, antithetic, 3, 9));
        assert_eq!(
            t,
            cpu::rng::sample_timesteps(3, 9, 129, 100, antithetic),
            "sample_timesteps"
        );
    }
    let other_stream = gpu.read(&ops::rng::uniform(&gpu, &[n], 42, 7));
    assert_ne!(u, other_stream, "streams differ");
}

#[test]
fn q_sample_and_p_sample_match_reference() {
    use ddpm::cpu::diffusion::VarianceKind;
    use ddpm::diffusion::{BetaSchedule, Schedule};
    use ddpm::ops::diffusion::PSampleOptions;
    let gpu = gpu();
    let schedule = Schedule::new(BetaSchedule::Linear, 1000);
    let table = gpu.upload(
        &schedule.gpu_table(),
        &[1000, ddpm::diffusion::schedule::TABLE_COLS],
    );
    let (batch, per_sample) = (5, 3 * 7);
    let n = batch * per_sample;
    let x0 = uniform(n, -1.0, 1.0, 24);
    let noise = uniform(n, -2.0, 2.0, 25);
    let timesteps: Vec<u32> = vec![0, 1, 500, 998, 999];
    let got = ops::diffusion::q_sample(
        &gpu,
        &table,
        &gpu.upload(&x0, &[batch, per_sample]),
        &gpu.upload(&noise, &[batch, per_sample]),
        &gpu.upload_u32(&timesteps, &[batch]),
    );
    let want = cpu::diffusion::q_sample(&schedule, &to_f64(&x0), &to_f64(&noise), &timesteps);
    assert_close("q_sample", &gpu.read(&got), &want, 1e-6, 1e-5);

    let x_t = uniform(n, -3.0, 3.0, 26);
    let eps = uniform(n, -2.0, 2.0, 27);
    for t in [0, 1, 10, 999] {
        for variance in [VarianceKind::Beta, VarianceKind::Posterior] {
            for clip_denoised in [false, true] {
                let opts = PSampleOptions {
                    variance,
                    clip_denoised,
                    ddim_eta: None,
                    steps: None,
                };
                let (seed, stream) = (11, 100 + t as u32);
                let got = ops::diffusion::p_sample(
                    &gpu,
                    &table,
                    &gpu.upload(&x_t, &[batch, per_sample]),
                    &gpu.upload(&eps, &[batch, per_sample]),
                    t,
                    opts,
                    ops::diffusion::NoiseKey::new(seed, stream),
                );
                let z = cpu::rng::normals(seed, stream, n);
                let want = cpu::diffusion::p_sample(
                    &schedule,
                    &to_f64(&x_t),
                    &to_f64(&eps),
                    &z,
                    t,
                    clip_denoised,
                    variance,
                );
                // sqrt_recip_alphas_cumprod reaches ~200 at t = 999: allow f32 rounding of it.
                let what = format!("p_sample t={t} {variance:?} clip={clip_denoised}");
                assert_close(&what, &gpu.read(&got), &want, 1e-4, 1e-4);
            }
        }
    }
    let filled = gpu.read_u32(&ops::diffusion::fill_timesteps(&gpu, 300, 17));
    assert_eq!(filled, vec![17; 300], "fill_timesteps");
}

#[test]
fn ddim_step_matches_reference_on_a_respaced_schedule() {
    use ddpm::diffusion::{BetaSchedule, Schedule};
    let gpu = gpu();
    let base = Schedule::new(BetaSchedule::Cosine, 1000);
    let kept = ddpm::diffusion::respace::space_timesteps(1000, "ddim50").unwrap();
    let respaced = ddpm::diffusion::respace::respace(&base, &kept).schedule;
    let table = gpu.upload(
        &respaced.gpu_table(),
        &[50, ddpm::diffusion::schedule::TABLE_COLS],
    );
    let n = 300;
    let x_t = uniform(n, -3.0, 3.0, 40);
    let eps = uniform(n, -2.0, 2.0, 41);
    let (gx, geps) = (gpu.upload(&x_t, &[n]), gpu.upload(&eps, &[n]));
    for t in [0, 1, 25, 49] {
        for (eta, clip) in [(0.0f32, false), (1.0, true), (0.5, false)] {
            let noise = ops::diffusion::NoiseKey::new(3, 7);
            let got = ops::diffusion::ddim_step(&gpu, &table, &gx, &geps, t, eta, clip, noise);
            let z = cpu::rng::normals(3, 7, n);
            let (abar, abar_prev) = (respaced.alphas_cumprod[t], respaced.alphas_cumprod_prev[t]);
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    cpu::ddim::ddim_step(
                        x_t[i] as f64,
                        eps[i] as f64,
                        abar,
                        abar_prev,
                        eta as f64,
                        z[i],
                        clip,
                    )
                })
                .collect();
            assert_close(
                &format!("ddim_step t={t} eta={eta} clip={clip}"),
                &gpu.read(&got),
                &want,
                2e-4,
                2e-4,
            );
        }
    }
}
