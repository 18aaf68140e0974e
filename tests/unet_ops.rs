//! The UNet kernels against the CPU reference: odd shapes (N=2, C=6, H=7, W=9, 3 groups) and
//! one real shape of the mnist UNet at a small batch.

mod common;

use common::{assert_close, gpu, poison_next, to_f64, uniform};
use ddpm::cpu;
use ddpm::gpu::caps::profiles;
use ddpm::ops;
use ddpm::shape::ConvShape;

fn conv_case(gpu: &ddpm::gpu::Gpu, s: ConvShape, seed: u32) {
    let x = uniform(s.n * s.c_in * s.h * s.w, -1.0, 1.0, seed);
    let w = uniform(s.c_out * s.c_in * s.kernel * s.kernel, -0.5, 0.5, seed + 1);
    let b = uniform(s.c_out, -0.5, 0.5, seed + 2);
    let dy = uniform(s.n * s.c_out * s.h_out() * s.w_out(), -1.0, 1.0, seed + 3);
    let gx = gpu.upload(&x, &[s.n, s.c_in, s.h, s.w]);
    let gw = gpu.upload(&w, &[s.c_out, s.c_in, s.kernel, s.kernel]);
    let gb = gpu.upload(&b, &[s.c_out]);
    let gdy = gpu.upload(&dy, &[s.n, s.c_out, s.h_out(), s.w_out()]);
    let what = format!("{s:?}");
    let b64 = to_f64(&b);
    let (dx, dw, db) = cpu::conv::conv2d_backward(&to_f64(&x), &to_f64(&w), &to_f64(&dy), &s);
    let want = cpu::conv::conv2d(&to_f64(&x), &to_f64(&w), Some(&b64), &s);
    let want_no_bias = cpu::conv::conv2d(&to_f64(&x), &to_f64(&w), None, &s);
    // Every set of kernels the device can run (the subgroup kernels need the device feature:
    // lavapipe has it, and CI runs lavapipe), each under the plan it gives this shape.
    let own = gpu.caps();
    for (profile, caps) in profiles(&own) {
        gpu.set_caps(caps);
        let what = format!("{profile} {:?} {what}", ops::conv::plan(&caps, &s));
        poison_next(gpu, want.len());
        let y = ops::conv::conv2d(gpu, &gx, &gw, Some(&gb), s.stride, s.padding);
        assert_eq!(y.shape, vec![s.n, s.c_out, s.h_out(), s.w_out()]);
        assert_close(
            &format!("conv2d_fwd {what}"),
            &gpu.read(&y),
            &want,
            1e-4,
            1e-4,
        );
        // Without a bias: each forward kernel's bias-less twin, which binds no bias.
        poison_next(gpu, want.len());
        let y = ops::conv::conv2d(gpu, &gx, &gw, None, s.stride, s.padding);
        assert_close(
            &format!("conv2d_fwd without bias {what}"),
            &gpu.read(&y),
            &want_no_bias,
            1e-4,
            1e-4,
        );
        poison_next(gpu, dx.len());
        let got = ops::conv::conv2d_backward_x(gpu, &gw, &gdy, &s);
        assert_close(
            &format!("conv2d_bwd_x {what}"),
            &gpu.read(&got),
            &dx,
            1e-4,
            1e-4,
        );
        poison_next(gpu, dw.len());
        let got = ops::conv::conv2d_backward_w(gpu, &gx, &gdy, &s);
        assert_close(
            &format!("conv2d_bwd_w {what}"),
            &gpu.read(&got),
            &dw,
            1e-3,
            1e-4,
        );
        // Both at once (the tiled kernel sums the bias in the weight gradient's pass).
        let (got_w, got_b) = ops::conv::conv2d_backward_w_bias(gpu, &gx, &gdy, &s);
        assert_close(
            &format!("conv2d_bwd_w_bias (weight) {what}"),
            &gpu.read(&got_w),
            &dw,
            1e-3,
            1e-4,
        );
        assert_close(
            &format!("conv2d_bwd_w_bias (bias) {what}"),
            &gpu.read(&got_b),
            &db,
            1e-3,
            1e-4,
        );
    }
    gpu.set_caps(own);
    let got = ops::conv::conv2d_backward_bias(gpu, &gdy, &s);
    assert_close(
        &format!("conv2d_bwd_bias {what}"),
        &gpu.read(&got),
        &db,
        1e-3,
        1e-4,
    );
}

#[test]
fn conv2d_matches_reference_on_odd_shapes() {
    let gpu = gpu();
    let base = ConvShape {
        n: 2,
        c_in: 6,
        h: 7,
        w: 9,
        c_out: 5,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    conv_case(&gpu, base, 1);
    conv_case(
        &gpu,
        ConvShape {
            kernel: 1,
            padding: 0,
            ..base
        },
        10,
    );
    conv_case(&gpu, ConvShape { stride: 2, ..base }, 20);
    // Shapes the specialised CPU-adapter kernels do not cover (3x3 stride 2 without padding, 1x1
    // stride 2) take the general direct kernels: those must stay correct too.
    conv_case(
        &gpu,
        ConvShape {
            stride: 2,
            padding: 0,
            ..base
        },
        30,
    );
    conv_case(
        &gpu,
        ConvShape {
            kernel: 1,
            stride: 2,
            padding: 0,
            ..base
        },
        40,
    );
    // Planes smaller than a 16-deep K slice: the weight gradient's walk over (sample, pixel)
    // wraps to the next sample more than once per slice.
    let tiny = ConvShape {
        n: 3,
        c_in: 5,
        h: 3,
        w: 4,
        c_out: 7,
        ..base
    };
    conv_case(&gpu, tiny, 50);
    conv_case(&gpu, ConvShape { stride: 2, ..tiny }, 60);
    // A 5x5 kernel: the wing's input gradient flips the weights (conv2d_flip_weight) and runs
    // the direct forward kernel, the one plan no preset shape takes.
    conv_case(
        &gpu,
        ConvShape {
            kernel: 5,
            padding: 2,
            ..base
        },
        70,
    );
    // 3x3 without padding and 16 output channels: the subgroup kernels with x in windows take
    // padding 1 only, so the forward plan is the weights-only window kernel
    // (conv2d_fwd_k3s1_sg_rows2 with subgroups).
    conv_case(
        &gpu,
        ConvShape {
            padding: 0,
            c_out: 16,
            ..base
        },
        80,
    );
}

#[test]
fn conv2d_matches_reference_on_an_mnist_unet_shape() {
    let gpu = gpu();
    // Level 0 of the mnist UNet (28x28, 32 channels) at batch 2, and its downsample; the
    // weight gradient spans two split-K chunks here.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 32,
            h: 28,
            w: 28,
            c_out: 32,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        30,
    );
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 32,
            h: 28,
            w: 28,
            c_out: 32,
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        40,
    );
}

#[test]
fn conv2d_uniform_window_kernels_match_reference() {
    let gpu = gpu();
    // More input channels than one 64 KiB weight window holds (113 for 3x3), in three output
    // blocks of 16 and an odd number of rows: the forward pass adds two chunks after the bias.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 120,
            h: 5,
            w: 6,
            c_out: 48,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        50,
    );
    // The same for the 1x1 kernel (512 input channels per window).
    conv_case(
        &gpu,
        ConvShape {
            n: 1,
            c_in: 520,
            h: 3,
            w: 5,
            c_out: 32,
            kernel: 1,
            stride: 1,
            padding: 0,
        },
        70,
    );
    // The 1x1 kernel (forward and, transposed, input gradient) with a ragged last pixel group.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 96,
            h: 5,
            w: 7,
            c_out: 32,
            kernel: 1,
            stride: 1,
            padding: 0,
        },
        60,
    );
    // The subgroup 3x3 forward with x in windows (and, transposed, the input gradient): rows of
    // 9 floats padded to 12, so four samples' planes share a dispatch (three here).
    conv_case(
        &gpu,
        ConvShape {
            n: 3,
            c_in: 16,
            h: 7,
            w: 9,
            c_out: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        90,
    );
    // ... and unpadded 28x28 planes, 20 per window: 44 input channels take three windows of
    // one sample, the last ragged.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 44,
            h: 28,
            w: 28,
            c_out: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        100,
    );
    // The subgroup 1x1 forward with x in windows: unpadded 28x28 planes, 44 input channels in
    // three windows of one sample, the last ragged.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 44,
            h: 28,
            w: 28,
            c_out: 32,
            kernel: 1,
            stride: 1,
            padding: 0,
        },
        110,
    );
    // Five samples: the subgroup 3x3 weight gradient sums four per dispatch, then one more.
    conv_case(
        &gpu,
        ConvShape {
            n: 5,
            c_in: 8,
            h: 6,
            w: 8,
            c_out: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        120,
    );
    // Five samples of 60 channels with rows padded from 9 to 12 floats: the subgroup forward
    // and weight gradient take four samples in a dispatch, then one.
    conv_case(
        &gpu,
        ConvShape {
            n: 5,
            c_in: 60,
            h: 7,
            w: 9,
            c_out: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        130,
    );
    // The subgroup stride-2 forward: odd planes, four samples and then one per dispatch.
    conv_case(
        &gpu,
        ConvShape {
            n: 5,
            c_in: 6,
            h: 7,
            w: 9,
            c_out: 16,
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        140,
    );
    // Width 11: the last output's right-hand tap reads column w (padding) from the thread's
    // second group of 4 inputs, which the right-edge mask must zero.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 4,
            h: 5,
            w: 11,
            c_out: 16,
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        160,
    );
    // ... and 28x28 planes of 44 channels over three windows per sample.
    conv_case(
        &gpu,
        ConvShape {
            n: 2,
            c_in: 44,
            h: 28,
            w: 28,
            c_out: 16,
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        150,
    );
    // Five samples of 52 channels at 14x14: the subgroup weight gradient's x windows hold 48
    // padded planes, so two input-channel windows per sample group, and its bias sums must
    // be counted once.
    conv_case(
        &gpu,
        ConvShape {
            n: 5,
            c_in: 52,
            h: 14,
            w: 14,
            c_out: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        170,
    );
    // The 3x3 weight gradient with x and dy both in windows: a padded 28x28 plane leaves room
    // for 16 channels per window, so 20 input and 20 output channels end in ragged windows.
    let level0 = ConvShape {
        n: 2,
        c_in: 20,
        h: 28,
        w: 28,
        c_out: 20,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    conv_case(&gpu, level0, 80);
    // Without padding (no zero border around x), on a width that is not a multiple of 4.
    conv_case(
        &gpu,
        ConvShape {
            h: 9,
            w: 11,
            padding: 0,
            ..level0
        },
        90,
    );
}

fn group_norm_case(
    gpu: &ddpm::gpu::Gpu,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    groups: usize,
    seed: u32,
) {
    let hw = h * w;
    let x = uniform(n * c * hw, -2.0, 3.0, seed);
    let gamma = uniform(c, 0.5, 1.5, seed + 1);
    let beta = uniform(c, -0.5, 0.5, seed + 2);
    let dy = uniform(n * c * hw, -1.0, 1.0, seed + 3);
    let (gx, gg, gb, gdy) = (
        gpu.upload(&x, &[n, c, h, w]),
        gpu.upload(&gamma, &[c]),
        gpu.upload(&beta, &[c]),
        gpu.upload(&dy, &[n, c, h, w]),
    );
    let (x64, g64, b64, dy64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&dy));
    let eps = ops::group_norm::EPS as f64;
    let own = gpu.caps();
    for (fuse, (profile, caps)) in [false, true]
        .into_iter()
        .flat_map(|f| profiles(&own).into_iter().map(move |p| (f, p)))
    {
        gpu.set_caps(caps);
        let plan = ops::group_norm::plan(&caps, [n, c, hw], groups);
        let what = format!(
            "group_norm {profile} {plan:?} fuse_silu={fuse} n={n} c={c} hw={hw} groups={groups}"
        );
        let (y, stats) = ops::group_norm::group_norm(gpu, &gx, &gg, &gb, groups, fuse);
        let want = if fuse {
            cpu::group_norm::group_norm_silu(&x64, &g64, &b64, n, c, hw, groups, eps)
        } else {
            cpu::group_norm::group_norm(&x64, &g64, &b64, n, c, hw, groups, eps)
        };
        assert_close(&format!("{what} fwd"), &gpu.read(&y), &want, 1e-4, 1e-4);
        let (dx, dgamma, dbeta) =
            ops::group_norm::group_norm_backward(gpu, &gx, &gg, &gb, &stats, &gdy, groups, fuse);
        let (wdx, wdg, wdb) = if fuse {
            cpu::group_norm::group_norm_silu_backward(
                &x64, &g64, &b64, &dy64, n, c, hw, groups, eps,
            )
        } else {
            cpu::group_norm::group_norm_backward(&x64, &g64, &dy64, n, c, hw, groups, eps)
        };
        assert_close(&format!("{what} dx"), &gpu.read(&dx), &wdx, 1e-4, 1e-3);
        assert_close(
            &format!("{what} dgamma"),
            &gpu.read(&dgamma),
            &wdg,
            1e-3,
            1e-4,
        );
        assert_close(
            &format!("{what} dbeta"),
            &gpu.read(&dbeta),
            &wdb,
            1e-3,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

#[test]
fn group_norm_matches_reference() {
    let gpu = gpu();
    group_norm_case(&gpu, 2, 6, 7, 9, 3, 50);
    // Level 1 of the mnist UNet: 64 channels at 14x14, 8 groups.
    group_norm_case(&gpu, 2, 64, 14, 14, 8, 60);
    // Level 0 at 28x28 for three samples: five 3,136-float groups per window, so the subgroup
    // kernels take two dispatches, the second ragged.
    group_norm_case(&gpu, 3, 32, 28, 28, 8, 70);
    // 150 groups of 126 floats, 129 per window: the second window's first group starts off
    // the window alignment.
    group_norm_case(&gpu, 50, 6, 7, 9, 3, 90);
    // A group larger than a window (25,088 floats): the subgroup variant falls back.
    group_norm_case(&gpu, 1, 32, 28, 28, 1, 80);
}

#[test]
fn upsample_and_concat_match_reference() {
    let gpu = gpu();
    let (n, c, h, w) = (2, 6, 7, 9);
    let x = uniform(n * c * h * w, -1.0, 1.0, 70);
    let y = ops::resample::upsample_nearest2x(&gpu, &gpu.upload(&x, &[n, c, h, w]));
    assert_close(
        "upsample fwd",
        &gpu.read(&y),
        &cpu::resample::upsample_nearest2x(&to_f64(&x), n, c, h, w),
        0.0,
        0.0,
    );
    let dy = uniform(n * c * 4 * h * w, -1.0, 1.0, 71);
    let dx =
        ops::resample::upsample_nearest2x_backward(&gpu, &gpu.upload(&dy, &[n, c, 2 * h, 2 * w]));
    let want = cpu::resample::upsample_nearest2x_backward(&to_f64(&dy), n, c, h, w);
    assert_close("upsample bwd", &gpu.read(&dx), &want, 1e-6, 1e-6);

    // Buffer copies on software adapters, and the GPUs' kernels.
    let own = gpu.caps();
    for (_, caps) in profiles(&own).into_iter().take(2) {
        gpu.set_caps(caps);
        concat_case(&gpu, n, h, w);
    }
    gpu.set_caps(own);
}

fn concat_case(gpu: &ddpm::gpu::Gpu, n: usize, h: usize, w: usize) {
    let (ca, cb) = (4, 3);
    let a = uniform(n * ca * h * w, -1.0, 1.0, 72);
    let b = uniform(n * cb * h * w, -1.0, 1.0, 73);
    let y = ops::resample::concat(
        gpu,
        &gpu.upload(&a, &[n, ca, h, w]),
        &gpu.upload(&b, &[n, cb, h, w]),
    );
    let want = cpu::resample::concat_channels(&to_f64(&a), &to_f64(&b), n, ca, cb, h * w);
    assert_close("concat fwd", &gpu.read(&y), &want, 0.0, 0.0);
    let dy = uniform(n * (ca + cb) * h * w, -1.0, 1.0, 74);
    let (da, db) = ops::resample::concat_backward(gpu, &gpu.upload(&dy, &[n, ca + cb, h, w]), ca);
    let (wa, wb) = cpu::resample::concat_channels_backward(&to_f64(&dy), n, ca, cb, h * w);
    assert_close("concat bwd a", &gpu.read(&da), &wa, 0.0, 0.0);
    assert_close("concat bwd b", &gpu.read(&db), &wb, 0.0, 0.0);
}

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

#[test]
fn time_embedding_channel_bias_and_dropout_match_reference() {
    let gpu = gpu();
    let t: Vec<u32> = vec![0, 1, 17, 999, 500];
    for dim in [32, 7] {
        let got = ops::unet_misc::timestep_embedding(&gpu, &gpu.upload_u32(&t, &[5]), dim);
        // |args| reaches ~1000: f32 sin/cos of such arguments carry ~1e-4 absolute error.
        assert_close(
            &format!("timestep_embedding dim={dim}"),
            &gpu.read(&got),
            &cpu::time_embedding::timestep_embedding(&t, dim),
            2e-4,
            0.0,
        );
    }

    let (n, c, hw) = (2, 6, 63);
    let x = uniform(n * c * hw, -1.0, 1.0, 90);
    let bias = uniform(n * c, -1.0, 1.0, 91);
    let y = ops::unet_misc::add_channel_bias(
        &gpu,
        &gpu.upload(&x, &[n, c, 7, 9]),
        &gpu.upload(&bias, &[n, c]),
    );
    let want = cpu::channel_bias::add_channel_bias(&to_f64(&x), &to_f64(&bias), n, c, hw);
    assert_close("channel_bias fwd", &gpu.read(&y), &want, 1e-6, 1e-6);
    let dy = uniform(n * c * hw, -1.0, 1.0, 92);
    let db = ops::unet_misc::add_channel_bias_backward(&gpu, &gpu.upload(&dy, &[n, c, 7, 9]));
    let (_, want_db) = cpu::channel_bias::add_channel_bias_backward(&to_f64(&dy), n, c, hw);
    assert_close("channel_bias bwd", &gpu.read(&db), &want_db, 1e-5, 1e-5);

    let gx = gpu.upload(&x, &[n, c, hw]);
    let y = ops::unet_misc::dropout(&gpu, &gx, 0.1, 7, 3);
    assert_close(
        "dropout fwd",
        &gpu.read(&y),
        &cpu::dropout::dropout(&to_f64(&x), 0.1, 7, 3),
        1e-6,
        1e-6,
    );
    // A length that is not a multiple of 4: the last thread owns a partial draw.
    let ragged = uniform(105, -1.0, 1.0, 93);
    let y = ops::unet_misc::dropout(&gpu, &gpu.upload(&ragged, &[3, 5, 7]), 0.5, 9, 2);
    assert_close(
        "dropout fwd, 105 elements",
        &gpu.read(&y),
        &cpu::dropout::dropout(&to_f64(&ragged), 0.5, 9, 2),
        1e-6,
        1e-6,
    );
    let gdy = gpu.upload(&dy, &[n, c, hw]);
    let mut cx = ddpm::autograd::Ctx::new(&gpu);
    let grad = gpu.zeros(&[n, c, hw]);
    let xv = cx.param(gx, grad.clone());
    let dropped = ops::unet_misc::dropout_var(&mut cx, &xv, 0.1, 7, 3);
    let dyv = cx.constant(gdy);
    let weighted = ops::arith::mul_var(&mut cx, &dropped, &dyv);
    let loss = ops::reduce::sum_var(&mut cx, &weighted);
    ops::backward(&mut cx, &loss);
    assert_close(
        "dropout bwd",
        &gpu.read(&grad),
        &cpu::dropout::dropout_backward(&to_f64(&dy), 0.1, 7, 3),
        1e-6,
        1e-6,
    );
}
