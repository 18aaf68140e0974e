//! GPU against the CPU reference: conv2d (shaders/conv.wgsl, the wing's shaders/soft/conv.wgsl and
//! conv_subgroup.wgsl).

use crate::common::{assert_close, gpu, poison_next, to_f64, uniform};
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
        if ops::conv::accumulates_dx(&caps, &s) {
            // Added onto a gradient x already has, in place: the tiled kernel itself, or the
            // sum of its K splits.
            let earlier = uniform(dx.len(), -2.0, 2.0, seed + 4);
            let into = gpu.upload(&earlier, &[s.n, s.c_in, s.h, s.w]);
            let got = ops::conv::conv2d_backward_x_into(gpu, &gw, &gdy, &s, Some(into));
            let want: Vec<f64> = dx
                .iter()
                .zip(&earlier)
                .map(|(d, e)| d + *e as f64)
                .collect();
            assert_close(
                &format!("conv2d_bwd_x into {what}"),
                &gpu.read(&got),
                &want,
                1e-4,
                1e-4,
            );
        }
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

/// conv2d_epilogue (conv2d_fwd_bias_residual / _shift on the GPU path, a separate add in the
/// wing) against the CPU twins, under every profile, where K is split and where it is not (split
/// 0 alone adds the epilogue).
#[test]
fn conv2d_epilogues_match_reference() {
    let gpu = gpu();
    let split = ConvShape {
        n: 2,
        c_in: 32,
        h: 7,
        w: 7,
        c_out: 64,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let whole = ConvShape {
        n: 3,
        c_in: 3,
        h: 5,
        w: 6,
        c_out: 5,
        kernel: 3,
        stride: 2,
        padding: 1,
    };
    let own = gpu.caps();
    let splits = |s: &ConvShape| match ops::conv::plan_forward(&profiles(&own)[0].1, s) {
        ops::conv::ForwardPlan::Tiled { splits } => splits,
        plan => panic!("the GPU profile planned {plan:?}"),
    };
    assert!(
        splits(&split) > 1 && splits(&whole) == 1,
        "one shape of each"
    );
    for (seed, s) in [(40, split), (50, whole)] {
        let x = uniform(s.n * s.c_in * s.h * s.w, -1.0, 1.0, seed);
        let w = uniform(s.c_out * s.c_in * s.kernel * s.kernel, -0.5, 0.5, seed + 1);
        let b = uniform(s.c_out, -0.5, 0.5, seed + 2);
        let out_len = s.n * s.c_out * s.h_out() * s.w_out();
        let r = uniform(out_len, -2.0, 2.0, seed + 3);
        let shift = uniform(s.n * s.c_out, -2.0, 2.0, seed + 4);
        let gx = gpu.upload(&x, &[s.n, s.c_in, s.h, s.w]);
        let gw = gpu.upload(&w, &[s.c_out, s.c_in, s.kernel, s.kernel]);
        let gb = gpu.upload(&b, &[s.c_out]);
        let gr = gpu.upload(&r, &[s.n, s.c_out, s.h_out(), s.w_out()]);
        let gshift = gpu.upload(&shift, &[s.n, s.c_out]);
        let (x, w, b) = (to_f64(&x), to_f64(&w), to_f64(&b));
        let want_residual = cpu::conv::conv2d_bias_residual(&x, &w, &b, &to_f64(&r), &s);
        let want_shift = cpu::conv::conv2d_bias_shift(&x, &w, &b, &to_f64(&shift), &s);
        for (profile, caps) in profiles(&own) {
            gpu.set_caps(caps);
            let what = format!("{profile} {:?} {s:?}", ops::conv::plan(&caps, &s));
            let at = (s.stride, s.padding);
            poison_next(&gpu, out_len);
            let epilogue = ops::conv::Epilogue::Residual(&gr);
            let y = ops::conv::conv2d_epilogue(&gpu, &gx, &gw, &gb, at, epilogue);
            let label = format!("residual {what}");
            assert_close(&label, &gpu.read(&y), &want_residual, 1e-4, 1e-4);
            poison_next(&gpu, out_len);
            let epilogue = ops::conv::Epilogue::ChannelShift(&gshift);
            let y = ops::conv::conv2d_epilogue(&gpu, &gx, &gw, &gb, at, epilogue);
            let label = format!("channel shift {what}");
            assert_close(&label, &gpu.read(&y), &want_shift, 1e-4, 1e-4);
        }
        gpu.set_caps(own);
    }
}
