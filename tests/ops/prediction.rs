//! GPU against the CPU reference: the prediction-target conversions, the training target, the
//! min-SNR weights and offset noise (shaders/prediction.wgsl), and the conversion identities
//! that make eps, x0 and v prediction interchangeable on a fixed model output.

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::diffusion::schedule::TABLE_COLS;
use ddpm::diffusion::{BetaSchedule, Prediction, Schedule};
use ddpm::ops;

const PREDICTIONS: [Prediction; 3] = [Prediction::Eps, Prediction::X0, Prediction::V];

#[test]
fn conversions_and_targets_match_reference() {
    let gpu = gpu();
    let schedule = Schedule::new(BetaSchedule::Linear, 1000);
    let table = gpu.upload(&schedule.gpu_table(), &[1000, TABLE_COLS]);
    // 5 samples of 3x7 elements: not a multiple of the workgroup size.
    let (batch, per_sample) = (5, 3 * 7);
    let n = batch * per_sample;
    let shape = [batch, 3, 7];
    let timesteps: Vec<u32> = vec![0, 1, 500, 998, 999];
    let t_gpu = gpu.upload_u32(&timesteps, &[batch]);
    let x = uniform(n, -3.0, 3.0, 31);
    let y = uniform(n, -2.0, 2.0, 32);
    let (x_gpu, y_gpu) = (gpu.upload(&x, &shape), gpu.upload(&y, &shape));
    for prediction in PREDICTIONS {
        let got = ops::prediction::to_eps(&gpu, prediction, &table, &x_gpu, &y_gpu, &t_gpu);
        let want =
            cpu::prediction::to_eps(&schedule, prediction, &to_f64(&x), &to_f64(&y), &timesteps);
        // x0 -> eps divides by sqrt(1 / abar - 1), 0.01 at t = 0: the f32 table's rounding
        // grows by that much there.
        assert_close(
            &format!("to_eps {prediction}"),
            &gpu.read(&got),
            &want,
            1e-4,
            1e-4,
        );
        for clip in [false, true] {
            let got =
                ops::prediction::to_x0(&gpu, prediction, &table, &x_gpu, &y_gpu, &t_gpu, clip);
            let want = cpu::prediction::to_x0(
                &schedule,
                prediction,
                &to_f64(&x),
                &to_f64(&y),
                &timesteps,
                clip,
            );
            // eps -> x0 multiplies by sqrt(1 / abar - 1), up to ~160 at t = 999.
            assert_close(
                &format!("to_x0 {prediction} clip {clip}"),
                &gpu.read(&got),
                &want,
                1e-4,
                1e-5,
            );
        }
        let got = ops::prediction::target(&gpu, prediction, &table, &x_gpu, &y_gpu, &t_gpu);
        let want =
            cpu::prediction::target(&schedule, prediction, &to_f64(&x), &to_f64(&y), &timesteps);
        assert_close(
            &format!("target {prediction}"),
            &gpu.read(&got),
            &want,
            1e-6,
            1e-5,
        );
        let got = ops::prediction::min_snr_weights(&gpu, prediction, &table, &t_gpu, 5.0);
        let want = cpu::prediction::min_snr_weights(&schedule, prediction, &timesteps, 5.0);
        assert_close(
            &format!("min_snr {prediction}"),
            &gpu.read(&got),
            &want,
            1e-6,
            1e-4,
        );
    }
}

#[test]
fn offset_noise_adds_one_normal_per_sample_and_channel() {
    let gpu = gpu();
    let (batch, channels, hw) = (3, 5, 7 * 9);
    let noise = uniform(batch * channels * hw, -2.0, 2.0, 41);
    let shape = [batch, channels, 7, 9];
    let (seed, stream) = (6, 13);
    let key = (seed, stream);
    let got = ops::prediction::offset_noise(&gpu, &gpu.upload(&noise, &shape), 0.1, key, 0);
    let offsets = ddpm::rng::normals(seed, stream, batch * channels);
    let want = cpu::prediction::offset_noise(&to_f64(&noise), &offsets, hw, 0.1);
    assert_close("offset_noise", &gpu.read(&got), &want, 1e-6, 1e-6);
    // Rows 1.. as a micro-batch (first row 1): its rows of the whole batch's offsets.
    let rest = &noise[channels * hw..];
    let part = gpu.upload(rest, &[batch - 1, channels, 7, 9]);
    let got = ops::prediction::offset_noise(&gpu, &part, 0.1, key, 1);
    let want_rest = &want[channels * hw..];
    assert_close(
        "offset_noise of rows 1..",
        &gpu.read(&got),
        want_rest,
        1e-6,
        1e-6,
    );
}

/// A fixed model output read as each target, converted to the eps it implies: predicting the
/// eps a sample was noised with, its x0 or its v gives back that eps (and x0), on the GPU.
#[test]
fn every_target_implies_the_same_eps_and_x0() {
    let gpu = gpu();
    let schedule = Schedule::new(BetaSchedule::Cosine, 1000);
    let table = gpu.upload(&schedule.gpu_table(), &[1000, TABLE_COLS]);
    let (batch, per_sample) = (4, 33);
    let n = batch * per_sample;
    let shape = [batch, per_sample];
    let timesteps: Vec<u32> = vec![3, 250, 600, 900];
    let t_gpu = gpu.upload_u32(&timesteps, &[batch]);
    let x0 = uniform(n, -1.0, 1.0, 51);
    let eps = uniform(n, -2.0, 2.0, 52);
    let (x0_gpu, eps_gpu) = (gpu.upload(&x0, &shape), gpu.upload(&eps, &shape));
    let x_t = ops::diffusion::q_sample(&gpu, &table, &x0_gpu, &eps_gpu, &t_gpu);
    for prediction in PREDICTIONS {
        // The perfect model output of this target is its training target.
        let y = ops::prediction::target(&gpu, prediction, &table, &x0_gpu, &eps_gpu, &t_gpu);
        let got_eps = ops::prediction::to_eps(&gpu, prediction, &table, &x_t, &y, &t_gpu);
        assert_close(
            &format!("eps from {prediction}"),
            &gpu.read(&got_eps),
            &to_f64(&eps),
            2e-3,
            1e-3,
        );
        let got_x0 = ops::prediction::to_x0(&gpu, prediction, &table, &x_t, &y, &t_gpu, false);
        assert_close(
            &format!("x0 from {prediction}"),
            &gpu.read(&got_x0),
            &to_f64(&x0),
            2e-3,
            1e-3,
        );
    }
    // And in f64, where the identities hold to rounding.
    let xt64 = cpu::diffusion::q_sample(&schedule, &to_f64(&x0), &to_f64(&eps), &timesteps);
    for prediction in PREDICTIONS {
        let y = cpu::prediction::target(
            &schedule,
            prediction,
            &to_f64(&x0),
            &to_f64(&eps),
            &timesteps,
        );
        let e = cpu::prediction::to_eps(&schedule, prediction, &xt64, &y, &timesteps);
        let worst = e
            .iter()
            .zip(&eps)
            .map(|(a, b)| (a - *b as f64).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-9, "{prediction}: eps off by {worst}");
    }
}
