//! GPU against the CPU reference: q_sample, p_sample and DDIM (shaders/diffusion.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::diffusion::schedule::TABLE_COLS;
use ddpm::diffusion::{BetaSchedule, Schedule};
use ddpm::ops;

#[test]
fn q_sample_and_p_sample_match_reference() {
    use ddpm::cpu::diffusion::VarianceKind;
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
                    dpm_solver: false,
                    spacing: None,
                    steps: None,
                };
                let (seed, stream) = (11, 100 + t as u32);
                let got = ops::diffusion::p_sample(
                    &gpu,
                    &table,
                    &gpu.upload(&x_t, &[batch, per_sample]),
                    &gpu.upload(&eps, &[batch, per_sample]),
                    ops::diffusion::ReverseStep {
                        t,
                        noise: ops::diffusion::NoiseKey::new(seed, stream),
                    },
                    opts,
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
            let step = ops::diffusion::ReverseStep {
                t,
                noise: ops::diffusion::NoiseKey::new(3, 7),
            };
            let got = ops::diffusion::ddim_step(&gpu, &table, &gx, &geps, step, eta, clip);
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
        let step = ops::diffusion::ReverseStep {
            t,
            noise: ops::diffusion::NoiseKey::new(9, 10),
        };
        let got = ops::diffusion::p_sample_learned(&gpu, &table, &gx, &ge, &gv, step, clip);
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
