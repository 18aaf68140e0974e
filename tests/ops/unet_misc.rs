//! GPU against the CPU reference: time embedding, channel bias and dropout
//! (shaders/unet_misc.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

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
    let y = ops::unet_misc::dropout(&gpu, &gx, 0.1, (7, 3), 0);
    assert_close(
        "dropout fwd",
        &gpu.read(&y),
        &cpu::dropout::dropout(&to_f64(&x), 0.1, (7, 3), 0),
        1e-6,
        1e-6,
    );
    // A length that is not a multiple of 4: the last thread owns a partial draw.
    let ragged = uniform(105, -1.0, 1.0, 93);
    let y = ops::unet_misc::dropout(&gpu, &gpu.upload(&ragged, &[3, 5, 7]), 0.5, (9, 2), 0);
    assert_close(
        "dropout fwd, 105 elements",
        &gpu.read(&y),
        &cpu::dropout::dropout(&to_f64(&ragged), 0.5, (9, 2), 0),
        1e-6,
        1e-6,
    );
    // Rows 1.. of a micro-batch at element offsets that are and are not multiples of 4: the
    // same elements of the whole batch's mask.
    let whole = cpu::dropout::dropout(&to_f64(&ragged), 0.5, (9, 2), 0);
    for first in [35, 37, 38, 39] {
        let part = &ragged[first..];
        let y = ops::unet_misc::dropout(&gpu, &gpu.upload(part, &[part.len()]), 0.5, (9, 2), first);
        assert_close(
            &format!("dropout fwd at offset {first}"),
            &gpu.read(&y),
            &whole[first..],
            1e-6,
            1e-6,
        );
    }
    let gdy = gpu.upload(&dy, &[n, c, hw]);
    let mut cx = ddpm::autograd::Ctx::new(&gpu);
    let grad = gpu.zeros(&[n, c, hw]);
    let xv = cx.param(gx, grad.clone());
    let dropped = ops::unet_misc::dropout_var(&mut cx, &xv, 0.1, (7, 3), 0);
    let dyv = cx.constant(gdy);
    let weighted = ops::arith::mul_var(&mut cx, &dropped, &dyv);
    let loss = ops::reduce::sum_var(&mut cx, &weighted);
    ops::backward(&mut cx, &loss);
    assert_close(
        "dropout bwd",
        &gpu.read(&grad),
        &cpu::dropout::dropout_backward(&to_f64(&dy), 0.1, (7, 3), 0),
        1e-6,
        1e-6,
    );
}
