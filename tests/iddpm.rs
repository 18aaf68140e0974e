//! IDDPM on the GPU against the CPU reference: the VLB terms and their v-gradient, the
//! learned-variance reverse step, and a short --iddpm toy run through training and sampling.

mod common;

use common::{assert_close, gpu, to_f64, uniform};
use ddpm::config::TrainConfig;
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
}

#[test]
fn the_learned_variance_step_matches_reference() {
    let gpu = gpu();
    let s = Schedule::new(BetaSchedule::Cosine, 100);
    let table = gpu.upload(&s.gpu_table(), &[100, TABLE_COLS]);
    let n = 333;
    let (x, eps, v) = (
        uniform(n, -2.0, 2.0, 6),
        uniform(n, -2.0, 2.0, 7),
        uniform(n, -1.0, 1.0, 8),
    );
    let (gx, ge, gv) = (
        gpu.upload(&x, &[n]),
        gpu.upload(&eps, &[n]),
        gpu.upload(&v, &[n]),
    );
    for (t, clip) in [(0, false), (1, true), (50, false), (99, true)] {
        let got = ops::diffusion::p_sample_learned(&gpu, &table, &gx, &ge, &gv, t, clip, 9, 10);
        let z = cpu::rng::normals(9, 10, n);
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mut m =
                    cpu::vlb::p_mean_variance(&s, t, x[i] as f64, eps[i] as f64, v[i] as f64);
                if clip {
                    let xs = m.pred_xstart.clamp(-1.0, 1.0);
                    m.mean =
                        s.posterior_mean_coef1[t] * xs + s.posterior_mean_coef2[t] * x[i] as f64;
                }
                let noise = if t > 0 {
                    (0.5 * m.log_variance).exp() * z[i]
                } else {
                    0.0
                };
                m.mean + noise
            })
            .collect();
        assert_close(
            &format!("p_sample_learned t={t}"),
            &gpu.read(&got),
            &want,
            1e-4,
            1e-4,
        );
    }
    let _ = to_f64(&x);
}

#[test]
fn a_short_iddpm_toy_run_trains_and_samples_with_the_learned_variance() {
    let gpu = gpu();
    let cfg = TrainConfig {
        steps: 400,
        n_samples: 500,
        log_every: 50,
        checkpoint_every: 0,
        ..TrainConfig::toy()
    }
    .with_iddpm();
    assert_eq!(toy_outputs(&cfg), 4, "noise and variance channels");
    let out = std::env::temp_dir().join(format!("ddpm-iddpm-{}", std::process::id()));
    let report = ddpm::train::run(&gpu, &cfg, &out, false).unwrap();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (early, late) = (mean(&report.losses[..50]), mean(&report.losses[350..]));
    assert!(report.losses.iter().all(|l| l.is_finite()));
    assert!(
        late < early,
        "the hybrid loss falls: {early:.4} -> {late:.4}"
    );
    let mmd2 = report.mmd2.unwrap();
    assert!(
        mmd2.is_finite() && mmd2 < 0.4,
        "samples with the learned variance: MMD^2 {mmd2}"
    );
    std::fs::remove_dir_all(&out).ok();
}

fn toy_outputs(cfg: &TrainConfig) -> usize {
    let model = ddpm::toy::model(cfg);
    model.layout.specs.last().unwrap().numel()
}
