//! The schedule tables against independent computations, and free of NaN and Inf at the ends.

use ddpm::diffusion::{BetaSchedule, Schedule};

const ALL: [BetaSchedule; 3] = [
    BetaSchedule::Linear,
    BetaSchedule::Sigmoid,
    BetaSchedule::Cosine,
];

fn close(what: &str, got: f64, want: f64, rtol: f64) {
    assert!(
        (got - want).abs() <= rtol * want.abs().max(1e-300),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn betas_follow_their_formulas() {
    let linear = BetaSchedule::Linear.betas(1000);
    close("linear first", linear[0], 1e-4, 1e-12);
    close("linear last", linear[999], 0.02, 1e-12);
    close(
        "linear step",
        linear[1] - linear[0],
        (0.02 - 1e-4) / 999.0,
        1e-9,
    );

    let sigmoid = BetaSchedule::Sigmoid.betas(100);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    close(
        "sigmoid first",
        sigmoid[0],
        sig(-6.0) * (5e-3 - 1e-5) + 1e-5,
        1e-12,
    );
    close(
        "sigmoid middle",
        sigmoid[50],
        sig(-6.0 + 12.0 * 50.0 / 99.0) * (5e-3 - 1e-5) + 1e-5,
        1e-12,
    );

    // Cosine, straight from seed 004's alpha_bar with its own loop.
    let t_max = 1000usize;
    let cosine = BetaSchedule::Cosine.betas(t_max);
    let f = |t: usize| {
        let x = (t as f64 / t_max as f64 + 0.008) / (1.0 + 0.008) * std::f64::consts::FRAC_PI_2;
        x.cos() * x.cos()
    };
    for t in [0, 1, 500, 998, 999] {
        close(
            &format!("cosine beta {t}"),
            cosine[t],
            (1.0 - f(t + 1) / f(t)).min(0.999),
            1e-10,
        );
    }
    assert_eq!(cosine[999], 0.999, "the last cosine beta is clipped");
    assert!(
        cosine.windows(2).all(|w| w[0] <= w[1]),
        "cosine betas increase"
    );
}

#[test]
fn tables_match_independent_computation() {
    for kind in ALL {
        let t_max = if kind == BetaSchedule::Sigmoid {
            100
        } else {
            1000
        };
        let s = Schedule::new(kind, t_max);
        let mut log_sum = 0.0;
        for t in 0..t_max {
            // alphas_cumprod as exp(sum log(1 - beta)): a different route than the running product.
            log_sum += (1.0 - s.betas[t]).ln();
            let abar = log_sum.exp();
            let abar_prev = if t == 0 {
                1.0
            } else {
                (log_sum - (1.0 - s.betas[t]).ln()).exp()
            };
            let what = format!("{kind} t={t}");
            close(
                &format!("{what} alphas_cumprod"),
                s.alphas_cumprod[t],
                abar,
                1e-9,
            );
            close(
                &format!("{what} prev"),
                s.alphas_cumprod_prev[t],
                abar_prev,
                1e-9,
            );
            close(
                &format!("{what} sqrt"),
                s.sqrt_alphas_cumprod[t],
                abar.sqrt(),
                1e-9,
            );
            close(
                &format!("{what} sqrt 1-"),
                s.sqrt_one_minus_alphas_cumprod[t],
                (1.0 - abar).sqrt(),
                1e-8,
            );
            // Posterior q(x_{t-1} | x_t, x_0) from the Gaussian product formula: precision is
            // the sum of 1 / (1 - abar_prev) and alpha_t / beta_t.
            if t > 0 {
                let alpha = 1.0 - s.betas[t];
                let var = 1.0 / (1.0 / (1.0 - abar_prev) + alpha / s.betas[t]);
                close(
                    &format!("{what} posterior_variance"),
                    s.posterior_variance[t],
                    var,
                    1e-8,
                );
                close(
                    &format!("{what} coef1"),
                    s.posterior_mean_coef1[t],
                    var * abar_prev.sqrt() / (1.0 - abar_prev),
                    1e-8,
                );
                close(
                    &format!("{what} coef2"),
                    s.posterior_mean_coef2[t],
                    var * alpha.sqrt() / s.betas[t],
                    1e-8,
                );
                close(
                    &format!("{what} log var"),
                    s.posterior_log_variance_clipped[t],
                    var.ln(),
                    1e-8,
                );
            }
            // x_0 = sqrt_recip * x_t - sqrt_recipm1 * eps inverts q_sample.
            let (x0, eps) = (0.3, -1.2);
            let x_t = abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps;
            let back =
                s.sqrt_recip_alphas_cumprod[t] * x_t - s.sqrt_recipm1_alphas_cumprod[t] * eps;
            assert!((back - x0).abs() < 1e-6, "{what}: x_0 recovered as {back}");
        }
        assert_eq!(s.posterior_variance[0], 0.0);
        assert_eq!(
            s.posterior_log_variance_clipped[0],
            s.posterior_log_variance_clipped[1]
        );
    }
}

#[test]
fn no_table_holds_nan_or_inf_at_the_ends() {
    for kind in ALL {
        for t_max in [50, 100, 1000, 4000] {
            let s = Schedule::new(kind, t_max);
            let tables: [(&str, &Vec<f64>); 12] = [
                ("betas", &s.betas),
                ("alphas_cumprod", &s.alphas_cumprod),
                ("alphas_cumprod_prev", &s.alphas_cumprod_prev),
                ("alphas_cumprod_next", &s.alphas_cumprod_next),
                ("sqrt_alphas_cumprod", &s.sqrt_alphas_cumprod),
                (
                    "sqrt_one_minus_alphas_cumprod",
                    &s.sqrt_one_minus_alphas_cumprod,
                ),
                (
                    "log_one_minus_alphas_cumprod",
                    &s.log_one_minus_alphas_cumprod,
                ),
                ("sqrt_recip_alphas_cumprod", &s.sqrt_recip_alphas_cumprod),
                (
                    "sqrt_recipm1_alphas_cumprod",
                    &s.sqrt_recipm1_alphas_cumprod,
                ),
                (
                    "posterior_log_variance_clipped",
                    &s.posterior_log_variance_clipped,
                ),
                ("posterior_mean_coef1", &s.posterior_mean_coef1),
                ("posterior_mean_coef2", &s.posterior_mean_coef2),
            ];
            for (name, table) in tables {
                for t in [0, t_max - 1] {
                    assert!(
                        table[t].is_finite(),
                        "{kind} T={t_max} {name}[{t}] = {}",
                        table[t]
                    );
                }
            }
            assert!(
                s.gpu_table().iter().all(|v| v.is_finite()),
                "{kind} T={t_max}: f32 table"
            );
        }
    }
}

#[test]
fn schedule_names_parse() {
    for kind in ALL {
        assert_eq!(kind.name().parse::<BetaSchedule>(), Ok(kind));
    }
    assert!("quadratic"
        .parse::<BetaSchedule>()
        .unwrap_err()
        .contains("linear, sigmoid or cosine"));
}
