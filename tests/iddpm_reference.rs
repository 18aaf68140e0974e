//! The IDDPM references (VLB terms, DDIM, respacing, timestep resampling) against closed forms,
//! central differences and values worked out by hand from improved-diffusion's algorithms.

use std::f64::consts::{LN_2, PI};

use ddpm::cpu::ddim::ddim_step;
use ddpm::cpu::diffusion::{p_sample, VarianceKind};
use ddpm::cpu::rng;
use ddpm::cpu::vlb::*;
use ddpm::diffusion::respace::{respace, space_timesteps};
use ddpm::diffusion::timestep_sampler::{
    LossSecondMomentResampler, ScheduleSampler, UniformSampler, HISTORY_PER_TERM, UNIFORM_PROB,
};
use ddpm::diffusion::{BetaSchedule, Schedule};

fn close(what: &str, got: f64, want: f64, atol: f64, rtol: f64) {
    assert!(
        (got - want).abs() <= atol + rtol * want.abs(),
        "{what}: got {got}, want {want}"
    );
}

/// x_start on the 256-level grid of uint8 data scaled to [-1, 1].
fn pixel(k: u32) -> f64 {
    k as f64 / 127.5 - 1.0
}

fn q_sample(s: &Schedule, t: usize, x0: f64, eps: f64) -> f64 {
    s.sqrt_alphas_cumprod[t] * x0 + s.sqrt_one_minus_alphas_cumprod[t] * eps
}

/// d/dv by central differences next to the analytic derivative, for one element; returns it.
fn check_dv(s: &Schedule, t: usize, x0: f64, x_t: f64, eps: f64, v: f64) -> f64 {
    let h = 1e-5;
    let num = (vb_term_elementwise(s, t, x0, x_t, eps, v + h)
        - vb_term_elementwise(s, t, x0, x_t, eps, v - h))
        / (2.0 * h);
    let ana = vb_term_elementwise_dv(s, t, x0, x_t, eps, v);
    assert!(
        (num - ana).abs() <= 1e-7 + 1e-6 * ana.abs(),
        "t {t} x0 {x0} eps {eps} v {v}: numeric {num} vs analytic {ana}"
    );
    ana
}

#[test]
fn vb_dv_matches_central_differences_for_the_kl_terms() {
    for s in [
        Schedule::new(BetaSchedule::Cosine, 1000),
        Schedule::new(BetaSchedule::Linear, 100),
    ] {
        let n_t = s.n_timesteps();
        let mut checked = 0;
        for (i, t) in [1, 2, 7, n_t / 2, n_t - 2, n_t - 1].into_iter().enumerate() {
            for j in 0..6u32 {
                let idx = i as u32 * 16 + j;
                let x0 = pixel(rng::random_bits(1, 0, idx)[0] % 256);
                let noise = rng::normal(1, 1, idx);
                // A wrong eps prediction, so the mean term of the KL is not zero.
                let eps = noise + 0.3 * rng::normal(1, 2, idx);
                let v = 2.4 * rng::uniform(1, 3, idx) - 1.2;
                check_dv(&s, t, x0, q_sample(&s, t, x0, noise), eps, v);
                checked += 1;
            }
        }
        assert_eq!(checked, 36);
    }
}

#[test]
fn vb_dv_matches_central_differences_for_the_decoder_term() {
    let s = Schedule::new(BetaSchedule::Cosine, 1000);
    let mut nonzero = 0;
    // Outer bins (open to -inf and +inf), their neighbours, and the middle.
    for k in [0, 1, 2, 127, 128, 253, 254, 255] {
        let x0 = pixel(k);
        for (j, eps_err) in [-0.4, 0.0, 0.25].into_iter().enumerate() {
            let noise = rng::normal(2, 0, k * 4 + j as u32);
            let x_t = q_sample(&s, 0, x0, noise);
            for v in [-1.0, -0.3, 0.4, 1.0] {
                if check_dv(&s, 0, x0, x_t, noise + eps_err, v).abs() > 1e-3 {
                    nonzero += 1;
                }
            }
        }
    }
    // The bins are not clamped away: the derivative is really exercised.
    assert_eq!(nonzero, 8 * 3 * 4);
}

#[test]
fn decoder_term_is_the_discretised_nll_of_the_model_mean() {
    let s = Schedule::new(BetaSchedule::Linear, 1000);
    let (x0, noise, eps, v) = (pixel(200), 0.7, 0.5, 0.3);
    let x_t = q_sample(&s, 0, x0, noise);
    // At t = 0, posterior_mean_coef1 = 1 and coef2 = 0: the mean is pred_xstart itself.
    let mean = (x_t - (1.0 - s.alphas_cumprod[0]).sqrt() * eps) / s.alphas_cumprod[0].sqrt();
    let log_var = 0.65 * s.betas[0].ln() + 0.35 * s.posterior_variance[1].ln();
    let std = (0.5 * log_var).exp();
    let cdf = |z: f64| approx_standard_normal_cdf(z / std);
    let p = cdf(x0 - mean + 1.0 / 255.0) - cdf(x0 - mean - 1.0 / 255.0);
    assert!(p > 1e-6, "the test wants an unclamped bin, p = {p}");
    close(
        "decoder nll",
        vb_term_elementwise(&s, 0, x0, x_t, eps, v),
        -p.ln() / LN_2,
        0.0,
        1e-9,
    );
    // Far from the mean the clamp holds the cost at -log2(1e-12) and passes no gradient.
    let far = q_sample(&s, 0, -0.5, 0.0);
    close(
        "clamped",
        vb_term_elementwise(&s, 0, 0.5, far, 0.0, 0.0),
        -(1e-12f64).ln() / LN_2,
        0.0,
        1e-12,
    );
    assert_eq!(vb_term_elementwise_dv(&s, 0, 0.5, far, 0.0, 0.0), 0.0);
}

#[test]
fn kl_term_matches_the_posterior_written_from_alpha_bar() {
    // An independent route: posterior and model Gaussians from alphas_cumprod alone, KL from
    // variances (not log variances).
    let s = Schedule::new(BetaSchedule::Cosine, 1000);
    let kl = |m1: f64, var1: f64, m2: f64, var2: f64| {
        0.5 * ((var2 / var1).ln() + (var1 + (m1 - m2) * (m1 - m2)) / var2 - 1.0)
    };
    for t in [1usize, 10, 400, 998] {
        let (a, ap) = (s.alphas_cumprod[t], s.alphas_cumprod[t - 1]);
        let beta = 1.0 - a / ap;
        let (x0, noise, eps, v) = (pixel(77), -1.1, -0.6, 0.35);
        let x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * noise;
        let post_mean = |x0: f64| {
            ap.sqrt() * beta / (1.0 - a) * x0 + (1.0 - beta).sqrt() * (1.0 - ap) / (1.0 - a) * x_t
        };
        let post_var = beta * (1.0 - ap) / (1.0 - a);
        let pred_x0 = (x_t - (1.0 - a).sqrt() * eps) / a.sqrt();
        let frac = (v + 1.0) / 2.0;
        let model_var = beta.powf(frac) * post_var.powf(1.0 - frac);
        let want = kl(post_mean(x0), post_var, post_mean(pred_x0), model_var) / LN_2;
        close(
            &format!("kl at t {t}"),
            vb_term_elementwise(&s, t, x0, x_t, eps, v),
            want,
            1e-12,
            1e-8,
        );
    }
}

#[test]
fn normal_kl_matches_its_closed_form() {
    for (m1, lv1, m2, lv2) in [
        (0.0f64, 0.0f64, 0.0f64, 0.0f64),
        (0.5, -2.0, -0.3, 0.7),
        (1.5, 1.0, 1.0, -3.0),
    ] {
        let (s1, s2) = ((0.5 * lv1).exp(), (0.5 * lv2).exp());
        let want = (s2 / s1).ln() + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2.0 * s2 * s2) - 0.5;
        close("kl", normal_kl(m1, lv1, m2, lv2), want, 1e-14, 1e-12);
        let h = 1e-6;
        let num = (normal_kl(m1, lv1, m2, lv2 + h) - normal_kl(m1, lv1, m2, lv2 - h)) / (2.0 * h);
        close(
            "dkl/dlogvar2",
            normal_kl_dlogvar2(m1, lv1, m2, lv2),
            num,
            1e-8,
            1e-6,
        );
    }
    assert!(normal_kl(0.2, -0.4, 0.2, -0.4).abs() < 1e-15);
}

#[test]
fn discretised_likelihood_sums_to_one_over_the_256_bins() {
    for (mean, log_scale) in [(0.0, -3.0), (0.9, -1.0), (-0.97, -5.0), (0.3, 1.0)] {
        let total: f64 = (0..256)
            .map(|k| discretized_gaussian_log_likelihood(pixel(k), mean, log_scale).exp())
            .sum();
        close(
            &format!("mass, mean {mean} log_scale {log_scale}"),
            total,
            1.0,
            1e-9,
            0.0,
        );
    }
}

#[test]
fn discretised_likelihood_tends_to_density_times_bin_width() {
    // A scale many bins wide: P(bin) ~ pdf * 2/255, up to the tanh approximation (< 1e-3).
    let (mean, log_scale) = (0.1, -1.5f64);
    for k in [100, 128, 140] {
        let x = pixel(k);
        let discrete_bits = -discretized_gaussian_log_likelihood(x, mean, log_scale) / LN_2;
        let continuous_bits = gaussian_nll_bits(x, mean, 2.0 * log_scale);
        close(
            "bits",
            discrete_bits,
            continuous_bits - (2.0f64 / 255.0).log2(),
            2e-3,
            0.0,
        );
    }
}

#[test]
fn gaussian_nll_and_prior_follow_their_formulas() {
    close(
        "standard normal at 0",
        gaussian_nll_bits(0.0, 0.0, 0.0),
        0.5 * (2.0 * PI).log2(),
        0.0,
        1e-14,
    );
    let (x, mean, var) = (0.3f64, -0.2f64, 0.04f64);
    let density = (-(x - mean).powi(2) / (2.0 * var)).exp() / (2.0 * PI * var).sqrt();
    close(
        "density",
        gaussian_nll_bits(x, mean, var.ln()),
        -density.log2(),
        0.0,
        1e-12,
    );

    for s in [
        Schedule::new(BetaSchedule::Cosine, 1000),
        Schedule::new(BetaSchedule::Linear, 1000),
    ] {
        let a = *s.alphas_cumprod.last().unwrap();
        let xs = [-1.0, -0.2, 0.6, 1.0];
        let want = xs
            .iter()
            .map(|x| 0.5 * (-1.0 - (1.0 - a).ln() + (1.0 - a) + a * x * x) / LN_2)
            .sum::<f64>()
            / 4.0;
        close("prior", prior_bpd(&s, &xs), want, 1e-15, 1e-9);
        assert!(prior_bpd(&s, &xs) < 1e-4, "x_T is almost N(0, 1)");
    }
}

#[test]
fn per_sample_terms_are_element_means_with_matching_gradients() {
    let s = Schedule::new(BetaSchedule::Cosine, 200);
    let (n, per) = (3usize, 5usize);
    let ts = [0u32, 17, 199];
    let x0: Vec<f64> = (0..15)
        .map(|i| pixel(rng::random_bits(3, 0, i)[0] % 256))
        .collect();
    let noise = rng::normals(3, 1, n * per);
    let x_t: Vec<f64> = (0..n * per)
        .map(|i| q_sample(&s, ts[i / per] as usize, x0[i], noise[i]))
        .collect();
    let eps: Vec<f64> = noise.iter().map(|e| e * 0.9 + 0.05).collect();
    let v: Vec<f64> = (0..(n * per) as u32)
        .map(|i| rng::uniform(3, 2, i) * 2.0 - 1.0)
        .collect();
    let terms = vb_terms_bpd(&s, &x0, &x_t, &eps, &v, &ts);
    let grads = vb_terms_bpd_dv(&s, &x0, &x_t, &eps, &v, &ts);
    for b in 0..n {
        let t = ts[b] as usize;
        let mean = (b * per..(b + 1) * per)
            .map(|i| vb_term_elementwise(&s, t, x0[i], x_t[i], eps[i], v[i]))
            .sum::<f64>()
            / per as f64;
        close("per-sample mean", terms[b], mean, 0.0, 1e-14);
    }
    let h = 1e-6;
    for i in 0..n * per {
        let mut vp = v.clone();
        vp[i] += h;
        let mut vm = v.clone();
        vm[i] -= h;
        let sum = |v: &[f64]| {
            vb_terms_bpd(&s, &x0, &x_t, &eps, v, &ts)
                .iter()
                .sum::<f64>()
        };
        let num = (sum(&vp) - sum(&vm)) / (2.0 * h);
        close(&format!("grad {i}"), grads[i], num, 1e-7, 1e-5);
    }
}

#[test]
fn hybrid_scale_is_t_over_1000() {
    assert_eq!(hybrid_vb_scale(1000), 1.0);
    assert_eq!(hybrid_vb_scale(4000), 4.0);
    assert_eq!(hybrid_vb_scale(100), 0.1);
}

#[test]
fn learned_range_spans_posterior_to_beta() {
    let (lb, lp) = (-3.0, -5.0);
    assert_eq!(model_log_variance(1.0, lb, lp), lb);
    assert_eq!(model_log_variance(-1.0, lb, lp), lp);
    assert_eq!(model_log_variance(0.0, lb, lp), -4.0);
}

#[test]
fn space_timesteps_matches_respace_py_by_hand() {
    // 300 steps in three sections of 100: strides 99/9 = 11, 99/14 and 99/19, summed in floats
    // and rounded half to even (99/14 * 7 sums to 49.4999..., so 149, not 150).
    let mut want: Vec<usize> = (0..10).map(|k| 11 * k).collect();
    want.extend([
        100, 107, 114, 121, 128, 135, 142, 149, 157, 164, 171, 178, 185, 192, 199,
    ]);
    want.extend([
        200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252, 257, 263, 268, 273, 278, 283, 289,
        294, 299,
    ]);
    assert_eq!(space_timesteps(300, "10,15,20").unwrap(), want);

    // Ten steps in sections of 4, 3, 3 (the first gets the remainder): stride 1.5 gives 0, 2, 3;
    // a count of 1 takes the section's first step; stride 2 gives 7, 9.
    assert_eq!(
        space_timesteps(10, "3,1,2").unwrap(),
        vec![0, 2, 3, 4, 7, 9]
    );

    // DDIM striding: the first integer stride with ceil(T / stride) == N.
    let ddim50 = space_timesteps(1000, "ddim50").unwrap();
    assert_eq!(ddim50, (0..1000).step_by(20).collect::<Vec<_>>());
    assert_eq!(space_timesteps(10, "ddim3").unwrap(), vec![0, 4, 8]);
    assert_eq!(
        space_timesteps(100, "ddim7").unwrap(),
        vec![0, 15, 30, 45, 60, 75, 90]
    );
    assert_eq!(
        space_timesteps(10, "ddim10").unwrap(),
        (0..10).collect::<Vec<_>>()
    );

    // One section of 50 over 1000: stride 999/49, both ends kept.
    let s50 = space_timesteps(1000, "50").unwrap();
    assert_eq!(s50.len(), 50);
    assert_eq!(&s50[..5], &[0, 20, 41, 61, 82]);
    assert_eq!(&s50[45..], &[917, 938, 958, 979, 999]);

    assert!(space_timesteps(1000, "ddim").is_err());
    assert!(space_timesteps(100, "10,x").is_err());
}

#[test]
fn respaced_tables_keep_alphas_cumprod_at_the_kept_steps() {
    for kind in [BetaSchedule::Cosine, BetaSchedule::Linear] {
        let base = Schedule::new(kind, 1000);
        for spec in ["50", "ddim50", "10,15,20"] {
            let kept = space_timesteps(1000, spec).unwrap();
            let r = respace(&base, &kept);
            assert_eq!(r.timestep_map, kept);
            let s = &r.schedule;
            assert_eq!(s.n_timesteps(), kept.len());
            for (i, &k) in kept.iter().enumerate() {
                // Up to rounding: the cosine tail's abar ~ 1e-9 is rebuilt from products of
                // 1 - beta ~ 1e-3, each carrying a relative error near 1e-13.
                close(
                    "abar",
                    s.alphas_cumprod[i],
                    base.alphas_cumprod[k],
                    0.0,
                    1e-10,
                );
                // Betas from the kept alphas_cumprod, not the original betas at the kept steps.
                let prev = if i == 0 {
                    1.0
                } else {
                    base.alphas_cumprod[kept[i - 1]]
                };
                close(
                    "beta",
                    s.betas[i],
                    1.0 - base.alphas_cumprod[k] / prev,
                    1e-15,
                    1e-10,
                );
                close(
                    "posterior variance",
                    s.posterior_variance[i],
                    s.betas[i] * (1.0 - prev) / (1.0 - base.alphas_cumprod[k]),
                    1e-18,
                    1e-10,
                );
                assert!(
                    s.posterior_log_variance_clipped[i].is_finite()
                        && s.sqrt_recipm1_alphas_cumprod[i].is_finite(),
                    "{kind} {spec} step {i}"
                );
            }
        }
        // Keeping everything (in any order, with repeats) gives the original process back.
        let mut all: Vec<usize> = (0..1000).rev().collect();
        all.push(3);
        let same = respace(&base, &all);
        assert_eq!(same.timestep_map, (0..1000).collect::<Vec<_>>());
        for t in 0..1000 {
            close("beta", same.schedule.betas[t], base.betas[t], 1e-15, 1e-9);
        }
    }
}

#[test]
fn ddim_eta_zero_is_deterministic_and_follows_the_q_sample_path() {
    let base = Schedule::new(BetaSchedule::Cosine, 1000);
    let r = respace(&base, &space_timesteps(1000, "ddim50").unwrap());
    let s = &r.schedule;
    for t in [1usize, 10, 25, 49] {
        let (a, ap) = (s.alphas_cumprod[t], s.alphas_cumprod_prev[t]);
        for k in 0..8u32 {
            let x0 = 1.6 * rng::uniform(4, 0, k) - 0.8;
            let eps = rng::normal(4, 1, k);
            let x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
            let step = ddim_step(x_t, eps, a, ap, 0.0, rng::normal(4, 2, k), false);
            assert_eq!(
                step,
                ddim_step(x_t, eps, a, ap, 0.0, -7.0, false),
                "eta = 0 ignores the noise"
            );
            // The true eps takes x_t to the q_sample of the same x0 and eps at abar_prev.
            let want = ap.sqrt() * x0 + (1.0 - ap).sqrt() * eps;
            close(&format!("t {t}"), step, want, 1e-12, 1e-12);
        }
    }
    // The last step (abar_prev = 1) lands on x0 itself.
    let a = s.alphas_cumprod[0];
    assert_eq!(s.alphas_cumprod_prev[0], 1.0);
    let x_t = a.sqrt() * 0.3 + (1.0 - a).sqrt() * 0.9;
    close(
        "last",
        ddim_step(x_t, 0.9, a, 1.0, 1.0, 3.0, false),
        0.3,
        1e-12,
        0.0,
    );
}

#[test]
fn ddim_eta_one_is_the_ddpm_step_with_posterior_variance() {
    let base = Schedule::new(BetaSchedule::Linear, 1000);
    let r = respace(&base, &space_timesteps(1000, "100").unwrap());
    let s = &r.schedule;
    for t in [1usize, 2, 50, 99] {
        let x_t: Vec<f64> = rng::normals(5, t as u32, 6);
        // Large eps errors push pred_xstart outside [-1, 1], so clipping matters.
        let eps: Vec<f64> = rng::normals(6, t as u32, 6)
            .iter()
            .map(|e| 3.0 * e)
            .collect();
        let z = rng::normals(7, t as u32, 6);
        for clip in [false, true] {
            let want = p_sample(s, &x_t, &eps, &z, t, clip, VarianceKind::Posterior);
            for i in 0..6 {
                let got = ddim_step(
                    x_t[i],
                    eps[i],
                    s.alphas_cumprod[t],
                    s.alphas_cumprod_prev[t],
                    1.0,
                    z[i],
                    clip,
                );
                close(
                    &format!("t {t} clip {clip} i {i}"),
                    got,
                    want[i],
                    1e-10,
                    1e-10,
                );
            }
        }
    }
}

#[test]
fn resampler_is_uniform_until_every_t_has_a_full_history() {
    let n_t = 20;
    let mut s = LossSecondMomentResampler::new(n_t);
    let all: Vec<u32> = (0..n_t as u32).collect();
    for round in 0..HISTORY_PER_TERM {
        assert!(s.weights().iter().all(|&w| w == 1.0), "round {round}");
        // Every t but the last gets its value; the last lags one round behind.
        let losses: Vec<f64> = all.iter().map(|&t| (t + 1) as f64).collect();
        s.update(&all[..n_t - 1], &losses[..n_t - 1]);
        if round > 0 {
            s.update(&[n_t as u32 - 1], &[n_t as f64]);
        }
    }
    assert!(!s.warmed_up());
    assert!(s.weights().iter().all(|&w| w == 1.0));
    s.update(&[n_t as u32 - 1], &[n_t as f64]);
    assert!(s.warmed_up());

    // Now p_t is proportional to sqrt(E[L_t^2]) = t + 1, mixed with UNIFORM_PROB.
    let total: f64 = (1..=n_t).map(|t| t as f64).sum();
    let w = s.weights();
    for (t, &wt) in w.iter().enumerate() {
        let want = (1.0 - UNIFORM_PROB) * (t + 1) as f64 / total + UNIFORM_PROB / n_t as f64;
        close(&format!("weight {t}"), wt, want, 0.0, 1e-12);
    }
    close("sum", w.iter().sum(), 1.0, 1e-12, 0.0);

    // A history of alternating +-L has second moment L^2, whatever the signs.
    let mut s2 = LossSecondMomentResampler::new(2);
    for k in 0..HISTORY_PER_TERM {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        s2.update(&[0, 1], &[sign * 2.0, 3.0]);
    }
    let w2 = s2.weights();
    close(
        "ratio",
        (w2[1] - 0.0005) / (w2[0] - 0.0005),
        1.5,
        0.0,
        1e-12,
    );
}

#[test]
fn importance_weights_keep_the_weighted_loss_unbiased() {
    let n_t = 50usize;
    let mut s = LossSecondMomentResampler::new(n_t);
    // The sampler learns p_t ~ t + 1, while the losses we average are a different shape, so the
    // weights really must correct for p.
    for _ in 0..HISTORY_PER_TERM {
        let ts: Vec<u32> = (0..n_t as u32).collect();
        let hist: Vec<f64> = ts.iter().map(|&t| (t + 1) as f64).collect();
        s.update(&ts, &hist);
    }
    let loss = |t: usize| 1.0 + (t as f64 * 0.37).sin();
    let want = (0..n_t).map(loss).sum::<f64>() / n_t as f64;

    let p: Vec<f64> = {
        let w = s.weights();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    };
    // The exact spread of w * L under p, for a 5-sigma tolerance on the sample mean.
    let second: f64 = (0..n_t)
        .map(|t| p[t] * (loss(t) / (n_t as f64 * p[t])).powi(2))
        .sum();
    let sd = (second - want * want).sqrt();

    let draws = 200_000usize;
    let mut counter = 0u32;
    let (ts, weights) = s.sample(draws, || {
        counter += 1;
        rng::uniform(11, 0, counter)
    });
    let est = ts
        .iter()
        .zip(&weights)
        .map(|(&t, &w)| w * loss(t as usize))
        .sum::<f64>()
        / draws as f64;
    let tol = 5.0 * sd / (draws as f64).sqrt();
    assert!(
        (est - want).abs() < tol,
        "E[w L] = {est}, mean L = {want}, tolerance {tol}"
    );

    // The draws follow p (each bin within 5 sigma of its binomial count).
    let mut counts = vec![0usize; n_t];
    for &t in &ts {
        counts[t as usize] += 1;
    }
    for t in 0..n_t {
        let expect = draws as f64 * p[t];
        let sigma = (draws as f64 * p[t] * (1.0 - p[t])).sqrt();
        assert!(
            (counts[t] as f64 - expect).abs() < 5.0 * sigma + 1.0,
            "t {t}: {} draws, expected {expect}",
            counts[t]
        );
    }
    // And the weights are 1 / (T p_t).
    for (&t, &w) in ts.iter().zip(&weights).take(100) {
        close("weight", w, 1.0 / (n_t as f64 * p[t as usize]), 0.0, 1e-12);
    }
}

#[test]
fn uniform_sampler_draws_every_t_with_weight_one() {
    let s = UniformSampler::new(7);
    assert!(!s.is_loss_aware());
    let mut i = 0u32;
    let (ts, w) = s.sample(7000, || {
        i += 1;
        rng::uniform(12, 0, i)
    });
    assert!(w.iter().all(|&x| (x - 1.0).abs() < 1e-15));
    let mut counts = [0usize; 7];
    ts.iter().for_each(|&t| counts[t as usize] += 1);
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
}
