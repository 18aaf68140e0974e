//! GPU against the CPU reference: the VLB terms and their v-gradient (shaders/vlb.wgsl).

use crate::common::{assert_close, gpu, uniform};
use ddpm::cpu;
use ddpm::diffusion::schedule::TABLE_COLS;
use ddpm::diffusion::{BetaSchedule, Schedule};
use ddpm::ops;

#[test]
fn vb_terms_and_their_gradient_match_reference() {
    let gpu = gpu();
    let s = Schedule::new(BetaSchedule::Cosine, 1000);
    let table = gpu.upload(&s.gpu_table(), &[1000, TABLE_COLS]);
    let (batch, per_sample) = (6, 50);
    let n = batch * per_sample;
    // x_0 on the 256-level grid, with the outer bins (-1 and 1) present.
    let x0: Vec<f32> = (0..n)
        .map(|i| match i % 10 {
            0 => -1.0,
            1 => 1.0,
            _ => (((cpu::rng::uniform(1, 2, i as u32) * 255.0).round() / 127.5) - 1.0) as f32,
        })
        .collect();
    let x_t = uniform(n, -2.0, 2.0, 3);
    let eps = uniform(n, -2.0, 2.0, 4);
    let v = uniform(n, -1.0, 1.0, 5);
    let timesteps: Vec<u32> = vec![0, 0, 1, 10, 500, 999];
    let inputs = ops::vlb::VlbInputs {
        table,
        x_start: gpu.upload(&x0, &[batch, per_sample]),
        x_t: gpu.upload(&x_t, &[batch, per_sample]),
        eps: gpu.upload(&eps, &[batch, per_sample]),
        timesteps: gpu.upload_u32(&timesteps, &[batch]),
        continuous: false,
    };
    let gv = gpu.upload(&v, &[batch, per_sample]);
    let terms = ops::vlb::vb_terms(&gpu, &inputs, &gv);
    let dloss = gpu.upload(&[0.75], &[1]);
    let dv = ops::vlb::vb_terms_backward(&gpu, &inputs, &gv, &dloss, 2.0);
    let (mut want, mut want_dv) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = timesteps[i / per_sample] as usize;
        let args = (x0[i] as f64, x_t[i] as f64, eps[i] as f64, v[i] as f64);
        want.push(cpu::vlb::vb_term_elementwise(
            &s, t, args.0, args.1, args.2, args.3,
        ));
        want_dv.push(1.5 * cpu::vlb::vb_term_elementwise_dv(&s, t, args.0, args.1, args.2, args.3));
    }
    // f32 logs of tiny posterior variances at t = 1: a few 1e-3 relative.
    assert_close("vb_terms_fwd", &gpu.read(&terms), &want, 2e-3, 2e-3);
    assert_close("vb_terms_bwd", &gpu.read(&dv), &want_dv, 2e-3, 2e-3);

    // Importance weights scale each sample's gradient.
    let weights = [3.0f32, 0.0, 1.0, 0.25, 2.0, 1.5];
    let gw = gpu.upload(&weights, &[batch]);
    let dv_w = ops::vlb::vb_terms_backward_weighted(&gpu, &inputs, &gv, &dloss, 2.0, Some(&gw));
    let want_w: Vec<f64> = want_dv
        .iter()
        .enumerate()
        .map(|(i, g)| g * weights[i / per_sample] as f64)
        .collect();
    assert_close(
        "vb_terms_bwd weighted",
        &gpu.read(&dv_w),
        &want_w,
        2e-3,
        2e-3,
    );
}
