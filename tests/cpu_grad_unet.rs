//! Central differences in f64 against every backward of the UNet's CPU reference ops
//! (convolution, group norm, resampling, attention, channel bias, dropout), plus forward
//! checks against independent formulations, on odd shapes so no loop bound hides.

use ddpm::cpu;
use ddpm::cpu::conv::ConvShape;

mod common;

use common::{assert_grad, numeric_grad, rand64 as rand};

fn assert_near(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

fn conv_shape(c_out: usize, kernel: usize, stride: usize, padding: usize) -> ConvShape {
    ConvShape {
        n: 2,
        c_in: 3,
        h: 7,
        w: 9,
        c_out,
        kernel,
        stride,
        padding,
    }
}

fn check_conv_backward(name: &str, s: ConvShape, seed: u32) {
    let k2 = s.kernel * s.kernel;
    let x = rand(s.n * s.c_in * s.h * s.w, -1.0, 1.0, seed);
    let w = rand(s.c_out * s.c_in * k2, -1.0, 1.0, seed + 1);
    let b = rand(s.c_out, -1.0, 1.0, seed + 2);
    let r = rand(s.n * s.c_out * s.h_out() * s.w_out(), -1.0, 1.0, seed + 3);
    let fwd = |x: &[f64], w: &[f64], b: &[f64]| cpu::conv::conv2d(x, w, Some(b), &s);
    assert_eq!(fwd(&x, &w, &b).len(), r.len(), "{name}: output length");
    let (dx, dw, db) = cpu::conv::conv2d_backward(&x, &w, &r, &s);
    assert_grad(
        &format!("{name} dx"),
        &dx,
        &numeric_grad(&x, &r, &|x| fwd(x, &w, &b)),
    );
    assert_grad(
        &format!("{name} dw"),
        &dw,
        &numeric_grad(&w, &r, &|w| fwd(&x, w, &b)),
    );
    assert_grad(
        &format!("{name} db"),
        &db,
        &numeric_grad(&b, &r, &|b| fwd(&x, &w, b)),
    );
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    check_conv_backward("conv 3x3 s1 p1", conv_shape(4, 3, 1, 1), 20);
    check_conv_backward("conv 1x1 s1 p0", conv_shape(4, 1, 1, 0), 30);
    let down = conv_shape(4, 3, 2, 1);
    assert_eq!((down.h_out(), down.w_out()), (4, 5));
    check_conv_backward("conv 3x3 s2 p1", down, 40);
}

#[test]
fn conv2d_1x1_is_a_matmul_over_channels() {
    let s = conv_shape(5, 1, 1, 0);
    let hw = s.h * s.w;
    let x = rand(s.n * s.c_in * hw, -1.0, 1.0, 50);
    let w = rand(s.c_out * s.c_in, -1.0, 1.0, 51);
    let b = rand(s.c_out, -1.0, 1.0, 52);
    let y = cpu::conv::conv2d(&x, &w, Some(&b), &s);
    // Per sample: y[co, p] = sum_ci w[co, ci] x[ci, p] + b[co].
    let mut want = cpu::matmul::matmul(
        &w,
        &x[..s.c_in * hw],
        None,
        cpu::matmul::MatmulShape::new(1, s.c_out, s.c_in, hw),
    );
    want.extend(cpu::matmul::matmul(
        &w,
        &x[s.c_in * hw..],
        None,
        cpu::matmul::MatmulShape::new(1, s.c_out, s.c_in, hw),
    ));
    for (i, v) in want.iter_mut().enumerate() {
        *v += b[(i / hw) % s.c_out];
    }
    assert_near("1x1 conv", &y, &want, 1e-12);
}

#[test]
fn conv2d_stride_2_subsamples_the_stride_1_output() {
    // With the same padding, output (oy, ox) of a stride-2 conv reads the window of
    // output (2 oy, 2 ox) of the stride-1 conv.
    let s2 = conv_shape(4, 3, 2, 1);
    let s1 = ConvShape { stride: 1, ..s2 };
    let x = rand(s2.n * s2.c_in * s2.h * s2.w, -1.0, 1.0, 60);
    let w = rand(s2.c_out * s2.c_in * 9, -1.0, 1.0, 61);
    let b = rand(s2.c_out, -1.0, 1.0, 62);
    let y1 = cpu::conv::conv2d(&x, &w, Some(&b), &s1);
    let y2 = cpu::conv::conv2d(&x, &w, Some(&b), &s2);
    let (h2, w2) = (s2.h_out(), s2.w_out());
    let mut want = Vec::new();
    for plane in 0..s2.n * s2.c_out {
        for oy in 0..h2 {
            for ox in 0..w2 {
                want.push(y1[(plane * s1.h_out() + 2 * oy) * s1.w_out() + 2 * ox]);
            }
        }
    }
    assert_near("stride 2", &y2, &want, 1e-12);
}

const GN: (usize, usize, usize, usize, f64) = (2, 6, 63, 3, 1e-5); // n, c, hw, groups, eps

#[test]
fn group_norm_backward_matches_finite_differences() {
    let (n, c, hw, groups, eps) = GN;
    let x = rand(n * c * hw, -2.0, 3.0, 70);
    let gamma = rand(c, 0.5, 1.5, 71);
    let beta = rand(c, -1.0, 1.0, 72);
    let r = rand(n * c * hw, -1.0, 1.0, 73);
    let fwd = |x: &[f64], g: &[f64], b: &[f64]| {
        cpu::group_norm::group_norm(
            x,
            g,
            b,
            cpu::group_norm::GroupNormShape { n, c, hw, groups },
            eps,
        )
    };
    let (dx, dgamma, dbeta) = cpu::group_norm::group_norm_backward(
        &x,
        &gamma,
        &r,
        cpu::group_norm::GroupNormShape { n, c, hw, groups },
        eps,
    );
    assert_grad(
        "gn dx",
        &dx,
        &numeric_grad(&x, &r, &|x| fwd(x, &gamma, &beta)),
    );
    assert_grad(
        "gn dgamma",
        &dgamma,
        &numeric_grad(&gamma, &r, &|g| fwd(&x, g, &beta)),
    );
    assert_grad(
        "gn dbeta",
        &dbeta,
        &numeric_grad(&beta, &r, &|b| fwd(&x, &gamma, b)),
    );
}

#[test]
fn group_norm_silu_backward_matches_finite_differences() {
    let (n, c, hw, groups, eps) = GN;
    let x = rand(n * c * hw, -2.0, 3.0, 80);
    let gamma = rand(c, 0.5, 1.5, 81);
    let beta = rand(c, -1.0, 1.0, 82);
    let r = rand(n * c * hw, -1.0, 1.0, 83);
    let fwd = |x: &[f64], g: &[f64], b: &[f64]| {
        cpu::group_norm::group_norm_silu(
            x,
            g,
            b,
            cpu::group_norm::GroupNormShape { n, c, hw, groups },
            eps,
        )
    };
    let (dx, dgamma, dbeta) = cpu::group_norm::group_norm_silu_backward(
        &x,
        &gamma,
        &beta,
        &r,
        cpu::group_norm::GroupNormShape { n, c, hw, groups },
        eps,
    );
    assert_grad(
        "gn silu dx",
        &dx,
        &numeric_grad(&x, &r, &|x| fwd(x, &gamma, &beta)),
    );
    assert_grad(
        "gn silu dgamma",
        &dgamma,
        &numeric_grad(&gamma, &r, &|g| fwd(&x, g, &beta)),
    );
    assert_grad(
        "gn silu dbeta",
        &dbeta,
        &numeric_grad(&beta, &r, &|b| fwd(&x, &gamma, b)),
    );
}

#[test]
fn group_norm_standardizes_each_group() {
    let (n, c, hw, groups, eps) = GN;
    // Each group gets its own offset and spread, so per-channel or whole-sample statistics
    // would not standardize it.
    let x: Vec<f64> = rand(n * c * hw, -1.0, 1.0, 90)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let g = (i / hw / (c / groups)) as f64;
            5.0 * g + (1.0 + g) * v
        })
        .collect();
    let y = cpu::group_norm::group_norm(
        &x,
        &[1.0; 6],
        &[0.0; 6],
        cpu::group_norm::GroupNormShape { n, c, hw, groups },
        eps,
    );
    for (gi, run) in y.chunks(c / groups * hw).enumerate() {
        let mean = run.iter().sum::<f64>() / run.len() as f64;
        let var = run.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / run.len() as f64;
        assert!(mean.abs() < 1e-12, "group {gi}: mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "group {gi}: var {var}");
    }
    // gamma and beta act per channel after the standardization.
    let gamma = rand(c, 0.5, 1.5, 91);
    let beta = rand(c, -1.0, 1.0, 92);
    let z = cpu::group_norm::group_norm(
        &x,
        &gamma,
        &beta,
        cpu::group_norm::GroupNormShape { n, c, hw, groups },
        eps,
    );
    let want: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v * gamma[(i / hw) % c] + beta[(i / hw) % c])
        .collect();
    assert_near("affine", &z, &want, 1e-12);
}

#[test]
fn resample_backward_matches_finite_differences_and_round_trips() {
    let (n, c, h, w) = (2, 3, 7, 9);
    let x = rand(n * c * h * w, -1.0, 1.0, 100);
    let r = rand(n * c * 4 * h * w, -1.0, 1.0, 101);
    let up = cpu::resample::upsample_nearest2x(&x, n, c, h, w);
    assert_eq!(up.len(), 4 * x.len());
    // Spot-check the layout: the bottom-right of the last plane's last 2x2 block.
    assert_eq!(up[up.len() - 1], x[x.len() - 1]);
    // Plane 1, output (3, 3) copies input (1, 1).
    assert_eq!(up[(2 * h) * (2 * w) + 3 * (2 * w) + 3], x[h * w + w + 1]);
    assert_grad(
        "upsample",
        &cpu::resample::upsample_nearest2x_backward(&r, n, c, h, w),
        &numeric_grad(&x, &r, &|x| {
            cpu::resample::upsample_nearest2x(x, n, c, h, w)
        }),
    );
    // Each input is copied into 4 outputs, so the backward of the forward is 4x.
    let back = cpu::resample::upsample_nearest2x_backward(&up, n, c, h, w);
    let four_x: Vec<f64> = x.iter().map(|v| 4.0 * v).collect();
    assert_near("upsample round trip", &back, &four_x, 1e-15);

    let (ca, cb, hw) = (3, 5, 13);
    let a = rand(n * ca * hw, -1.0, 1.0, 102);
    let b = rand(n * cb * hw, -1.0, 1.0, 103);
    let r = rand(n * (ca + cb) * hw, -1.0, 1.0, 104);
    let y = cpu::resample::concat_channels(&a, &b, n, ca, cb, hw);
    // Sample 1 starts with a's sample 1, then b's sample 1.
    assert_eq!(y[(ca + cb) * hw], a[ca * hw]);
    assert_eq!(y[(ca + cb) * hw + ca * hw], b[cb * hw]);
    let (da, db) = cpu::resample::concat_channels_backward(&r, n, ca, cb, hw);
    assert_grad(
        "concat da",
        &da,
        &numeric_grad(&a, &r, &|a| {
            cpu::resample::concat_channels(a, &b, n, ca, cb, hw)
        }),
    );
    assert_grad(
        "concat db",
        &db,
        &numeric_grad(&b, &r, &|b| {
            cpu::resample::concat_channels(&a, b, n, ca, cb, hw)
        }),
    );
    assert_eq!(
        cpu::resample::concat_channels_backward(&y, n, ca, cb, hw),
        (a, b)
    );
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let (rows, cols) = (5, 7);
    let x = rand(rows * cols, -3.0, 3.0, 110);
    let r = rand(rows * cols, -1.0, 1.0, 111);
    let y = cpu::attention::softmax(&x, rows, cols);
    assert_grad(
        "softmax",
        &cpu::attention::softmax_backward(&y, &r, rows, cols),
        &numeric_grad(&x, &r, &|x| cpu::attention::softmax(x, rows, cols)),
    );
}

#[test]
fn softmax_rows_sum_to_one_and_are_shift_invariant_near_1000() {
    let (rows, cols) = (4, 9);
    let x = rand(rows * cols, -3.0, 3.0, 120);
    let y = cpu::attention::softmax(&x, rows, cols);
    for row in y.chunks(cols) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(row.iter().all(|&v| v > 0.0));
    }
    // A naive exp(1000) overflows to inf and gives NaN.
    let shifted: Vec<f64> = x.iter().map(|v| v + 1000.0).collect();
    assert_near(
        "shifted",
        &cpu::attention::softmax(&shifted, rows, cols),
        &y,
        1e-12,
    );
    // Larger inputs get more weight.
    assert!(cpu::attention::softmax(&[0.0, 1.0], 1, 2)[1] > 0.7);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let (n, c, hw) = (2, 6, 15);
    let q = rand(n * c * hw, -1.0, 1.0, 130);
    let k = rand(n * c * hw, -1.0, 1.0, 131);
    let v = rand(n * c * hw, -1.0, 1.0, 132);
    let r = rand(n * c * hw, -1.0, 1.0, 133);
    let fwd = |q: &[f64], k: &[f64], v: &[f64]| cpu::attention::attention(q, k, v, n, c, hw).0;
    let (dq, dk, dv) = cpu::attention::attention_backward(&q, &k, &v, &r, n, c, hw);
    assert_grad(
        "attention dq",
        &dq,
        &numeric_grad(&q, &r, &|q| fwd(q, &k, &v)),
    );
    assert_grad(
        "attention dk",
        &dk,
        &numeric_grad(&k, &r, &|k| fwd(&q, k, &v)),
    );
    assert_grad(
        "attention dv",
        &dv,
        &numeric_grad(&v, &r, &|v| fwd(&q, &k, v)),
    );
}

#[test]
fn attention_forward_checks() {
    // One position attends only to itself: out = v, weights = 1.
    let (n, c) = (3, 5);
    let q = rand(n * c, -1.0, 1.0, 140);
    let k = rand(n * c, -1.0, 1.0, 141);
    let v = rand(n * c, -1.0, 1.0, 142);
    let (out, weights) = cpu::attention::attention(&q, &k, &v, n, c, 1);
    assert_near("hw = 1 out", &out, &v, 1e-15);
    assert_near("hw = 1 weights", &weights, &[1.0; 3], 1e-15);

    // Zero queries give uniform weights, so every output is the mean of v over positions.
    let (n, c, hw) = (2, 3, 11);
    let k = rand(n * c * hw, -1.0, 1.0, 143);
    let v = rand(n * c * hw, -1.0, 1.0, 144);
    let (out, weights) = cpu::attention::attention(&vec![0.0; n * c * hw], &k, &v, n, c, hw);
    assert_near(
        "uniform weights",
        &weights,
        &vec![1.0 / hw as f64; n * hw * hw],
        1e-15,
    );
    for (plane_out, plane_v) in out.chunks(hw).zip(v.chunks(hw)) {
        let mean = plane_v.iter().sum::<f64>() / hw as f64;
        assert_near("mean of v", plane_out, &[mean; 11], 1e-12);
    }

    // A query aligned with one key and scaled up picks out that key's value.
    let (c, hw) = (2, 3);
    let q = [0.0, 0.0, 0.0, 100.0, 100.0, 100.0]; // every query is (0, 100)
    let k = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]; // key 1 is (0, 1)
    let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let (out, _) = cpu::attention::attention(&q, &k, &v, 1, c, hw);
    assert_near(
        "hard attention",
        &out,
        &[2.0, 2.0, 2.0, 5.0, 5.0, 5.0],
        1e-12,
    );
}

#[test]
fn channel_bias_backward_matches_finite_differences() {
    let (n, c, hw) = (2, 6, 63);
    let x = rand(n * c * hw, -1.0, 1.0, 150);
    let bias = rand(n * c, -1.0, 1.0, 151);
    let r = rand(n * c * hw, -1.0, 1.0, 152);
    let y = cpu::channel_bias::add_channel_bias(&x, &bias, n, c, hw);
    assert_eq!(y[hw + 2], x[hw + 2] + bias[1]);
    assert_eq!(y[c * hw], x[c * hw] + bias[c]);
    let (dx, dbias) = cpu::channel_bias::add_channel_bias_backward(&r, n, c, hw);
    assert_grad(
        "channel bias dx",
        &dx,
        &numeric_grad(&x, &r, &|x| {
            cpu::channel_bias::add_channel_bias(x, &bias, n, c, hw)
        }),
    );
    assert_grad(
        "channel bias dbias",
        &dbias,
        &numeric_grad(&bias, &r, &|b| {
            cpu::channel_bias::add_channel_bias(&x, b, n, c, hw)
        }),
    );
}

#[test]
fn dropout_backward_matches_finite_differences_and_shares_the_mask() {
    let x = rand(2 * 6 * 63, -1.0, 1.0, 160);
    let r = rand(x.len(), -1.0, 1.0, 161);
    let (p, seed, stream) = (0.25, 9, 4);
    let dx = cpu::dropout::dropout_backward(&r, p, (seed, stream), 0);
    assert_grad(
        "dropout",
        &dx,
        &numeric_grad(&x, &r, &|x| cpu::dropout::dropout(x, p, (seed, stream), 0)),
    );
    let y = cpu::dropout::dropout(&x, p, (seed, stream), 0);
    for (i, (yv, dv)) in y.iter().zip(&dx).enumerate() {
        assert_eq!(*yv == 0.0, *dv == 0.0, "mask differs at {i}");
    }
    // Another stream draws another mask.
    let other = cpu::dropout::dropout(&x, p, (seed, stream + 1), 0);
    assert!(other
        .iter()
        .zip(&y)
        .any(|(a, b)| (*a == 0.0) != (*b == 0.0)));
    assert_eq!(cpu::dropout::dropout(&x, 0.0, (seed, stream), 0), x);
}

#[test]
fn timestep_embedding_matches_hand_computed_values() {
    // dim 7: half 3, freqs [1, 10000^(-1/3), 10000^(-2/3)], one zero pad.
    let e = cpu::time_embedding::timestep_embedding(&[0, 1, 250], 7);
    assert_eq!(e.len(), 21);
    assert_eq!(&e[..7], &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let f1 = 10_000f64.powf(-1.0 / 3.0);
    let f2 = 10_000f64.powf(-2.0 / 3.0);
    let row = |t: f64| {
        vec![
            t.cos(),
            (t * f1).cos(),
            (t * f2).cos(),
            t.sin(),
            (t * f1).sin(),
            (t * f2).sin(),
            0.0,
        ]
    };
    assert_near("t = 1", &e[7..14], &row(1.0), 1e-14);
    assert_near("t = 250", &e[14..], &row(250.0), 1e-12);
}
