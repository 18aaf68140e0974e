//! Sampling with fewer steps than training (improved-diffusion's respace.py): choose which of the
//! T trained timesteps to keep, then build a shorter process whose alphas_cumprod are exactly the
//! trained ones at the kept steps.
//!
//! The respaced process is an ordinary `Schedule`, so p_sample, DDIM and the learned-range
//! variance (whose bounds ln(betas) and posterior_log_variance_clipped are read from the schedule
//! in use) work on it unchanged. The one thing callers must add is the timestep map: at respaced
//! index i the model is evaluated with the original timestep `timestep_map[i]` (respace.py's
//! `_WrappedModel`), since the network was trained on original timesteps (with improved-diffusion's
//! default rescale_timesteps=True the network sees the float timestep_map[i] * 1000 / T_original,
//! the same value the full process would give it at that step).

use super::schedule::Schedule;

/// Defined with the sampling options that carry it (ops stays below diffusion).
pub use crate::ops::diffusion::Spacing;

/// `steps` timesteps evenly spread in log-SNR between the first and the last trained step:
/// for each of `steps` evenly spaced lambda targets, the trained t whose lambda is nearest,
/// sorted (the ends are t = 0 and t = T - 1). Where lambda moves fast between neighbouring
/// steps (the cosine schedule's last few) two targets can share a nearest step: the later one
/// then takes the next step below, so there are always `steps` distinct steps.
pub fn logsnr_timesteps(schedule: &Schedule, steps: usize) -> Result<Vec<usize>, String> {
    let t_max = schedule.n_timesteps();
    if steps == 0 || steps > t_max {
        return Err(format!(
            "--steps must be between 1 and the trained {t_max} timesteps, got {steps}"
        ));
    }
    let lambdas: Vec<f64> = schedule
        .alphas_cumprod
        .iter()
        .map(|&abar| 0.5 * (abar.ln() - (1.0 - abar).ln()))
        .collect();
    let (first, last) = (lambdas[0], lambdas[t_max - 1]);
    let nearest: Vec<usize> = (0..steps)
        .map(|i| {
            let target = if steps == 1 {
                last
            } else {
                first + (last - first) * i as f64 / (steps - 1) as f64
            };
            // lambda falls with t: the nearest trained step to the target.
            (0..t_max)
                .min_by(|&a, &b| {
                    (lambdas[a] - target)
                        .abs()
                        .total_cmp(&(lambdas[b] - target).abs())
                })
                .expect("a schedule has steps")
        })
        .collect();
    // From the noisiest step down: each below the one before, and high enough to leave a
    // distinct step for every target after it.
    let mut kept = Vec::with_capacity(steps);
    for (i, &t) in nearest.iter().enumerate().rev() {
        let below = kept
            .last()
            .map_or(t_max - 1, |&previous: &usize| previous - 1);
        kept.push(t.min(below).max(i));
    }
    kept.reverse();
    Ok(kept)
}

/// respace.py's `space_timesteps`: which of `num_timesteps` steps to keep, sorted and without
/// duplicates (Python returns a set).
///
/// `section_counts` is either comma-separated counts, one per equal section of the process
/// (sizes differ by one when T does not divide: the first T % n sections get the extra step), each
/// section strided by (size - 1) / (count - 1) with Python's round-half-to-even on the running
/// float sum; or "ddimN", the DDIM paper's fixed integer stride: the smallest stride i in
/// 1..T with ceil(T / i) == N, keeping 0, i, 2i, ....
///
/// Errors: an unparsable count, a section with fewer steps than its count, no stride giving
/// exactly N steps for "ddimN", and (stricter than respace.py, which returns an empty set) an
/// empty selection.
pub fn space_timesteps(num_timesteps: usize, section_counts: &str) -> Result<Vec<usize>, String> {
    let steps = if let Some(count) = section_counts.strip_prefix("ddim") {
        let desired_count = parse_count(count, section_counts)?;
        let stride = (1..num_timesteps)
            .find(|&i| num_timesteps.div_ceil(i) == desired_count)
            .ok_or_else(|| {
                format!(
                    "cannot create exactly {desired_count} steps out of {num_timesteps} with an \
                     integer stride"
                )
            })?;
        (0..num_timesteps).step_by(stride).collect()
    } else {
        let counts = section_counts
            .split(',')
            .map(|c| parse_count(c, section_counts))
            .collect::<Result<Vec<usize>, String>>()?;
        let size_per = num_timesteps / counts.len();
        let extra = num_timesteps % counts.len();
        let mut start_idx = 0;
        let mut all_steps = Vec::new();
        for (i, &section_count) in counts.iter().enumerate() {
            let size = size_per + usize::from(i < extra);
            if size < section_count {
                return Err(format!(
                    "cannot divide section of {size} steps into {section_count}"
                ));
            }
            let frac_stride = if section_count <= 1 {
                1.0
            } else {
                (size - 1) as f64 / (section_count - 1) as f64
            };
            // A running sum, not k * stride: that is what respace.py rounds, and the two differ
            // on ties (99/14 summed seven times is 49.499..., not 49.5).
            let mut cur_idx = 0.0f64;
            for _ in 0..section_count {
                all_steps.push(start_idx + cur_idx.round_ties_even() as usize);
                cur_idx += frac_stride;
            }
            start_idx += size;
        }
        all_steps.sort_unstable();
        all_steps.dedup();
        all_steps
    };
    if steps.is_empty() {
        return Err(format!(
            "'{section_counts}' keeps no timesteps out of {num_timesteps}"
        ));
    }
    Ok(steps)
}

fn parse_count(count: &str, whole: &str) -> Result<usize, String> {
    count.trim().parse().map_err(|_| {
        format!(
            "bad timestep respacing '{whole}': '{count}' is not a count (expected e.g. \
             '50', '10,15,20' or 'ddim50')"
        )
    })
}

/// A shorter process and, for each of its steps, the original timestep the model is called with.
#[derive(Clone, Debug)]
pub struct Respaced {
    pub schedule: Schedule,
    pub timestep_map: Vec<usize>,
}

/// respace.py's `SpacedDiffusion.__init__`: over the kept timesteps in increasing order,
/// new_betas[i] = 1 - alphas_cumprod[k_i] / alphas_cumprod[k_{i-1}] (with alphas_cumprod[k_{-1}] =
/// 1), so the new cumulative products telescope to alphas_cumprod[k_i]; then every other table
/// comes from `Schedule::from_betas`. Recomputing betas (not copying them) is the point: keeping
/// the original betas at the kept steps is a known bug that makes the short process far too quiet.
///
/// Panics on an empty list or an index >= T (respace.py would silently ignore it; here it can only
/// be a caller's bug). Order and duplicates in `use_timesteps` do not matter, as it is a set there.
pub fn respace(schedule: &Schedule, use_timesteps: &[usize]) -> Respaced {
    let t_max = schedule.n_timesteps();
    assert!(
        !use_timesteps.is_empty(),
        "respacing needs at least one timestep"
    );
    let mut keep = vec![false; t_max];
    for &t in use_timesteps {
        assert!(t < t_max, "timestep {t} is outside a {t_max}-step schedule");
        keep[t] = true;
    }
    let mut last_alpha_cumprod = 1.0;
    let mut new_betas = Vec::new();
    let mut timestep_map = Vec::new();
    for (i, &alpha_cumprod) in schedule.alphas_cumprod.iter().enumerate() {
        if keep[i] {
            new_betas.push(1.0 - alpha_cumprod / last_alpha_cumprod);
            last_alpha_cumprod = alpha_cumprod;
            timestep_map.push(i);
        }
    }
    Respaced {
        schedule: Schedule::from_betas(new_betas),
        timestep_map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsnr_steps_span_the_process_evenly_in_lambda() {
        use crate::diffusion::BetaSchedule;
        for (beta, t_max, steps) in [
            (BetaSchedule::Linear, 1000, 20),
            (BetaSchedule::Cosine, 1000, 10),
            (BetaSchedule::Sigmoid, 100, 7),
        ] {
            let s = Schedule::new(beta, t_max);
            let kept = logsnr_timesteps(&s, steps).unwrap();
            assert_eq!(kept.len(), steps, "{beta}: {kept:?}");
            assert_eq!(
                (kept[0], kept[steps - 1]),
                (0, t_max - 1),
                "{beta}: {kept:?}"
            );
            assert!(kept.windows(2).all(|w| w[0] < w[1]), "{beta}: {kept:?}");
            let lambda = |t: usize| {
                let abar = s.alphas_cumprod[t];
                0.5 * (abar.ln() - (1.0 - abar).ln())
            };
            if beta == BetaSchedule::Cosine {
                // Its last steps share nearest steps (lambda falls steeply there).
                assert_eq!(&kept[steps - 3..], &[997, 998, 999], "{kept:?}");
                continue;
            }
            let step = (lambda(0) - lambda(t_max - 1)) / (steps - 1) as f64;
            for (i, &t) in kept.iter().enumerate() {
                let target = lambda(0) - step * i as f64;
                // The nearest trained step: within one step's change of lambda of the target.
                let slack = (lambda(t.saturating_sub(1)) - lambda((t + 1).min(t_max - 1))).abs();
                assert!(
                    (lambda(t) - target).abs() <= slack,
                    "{beta}: step {i} at t {t}, lambda {} for target {target}",
                    lambda(t)
                );
            }
        }
        // Uniform in t, the linear schedule's 20 steps leave t < 50 (noise std up to 0.17)
        // to one step; in log-SNR the lowest steps are dense.
        let linear = Schedule::new(BetaSchedule::Linear, 1000);
        let kept = logsnr_timesteps(&linear, 20).unwrap();
        assert!(kept[1] < 10, "{kept:?}");
        for bad in [0, 1001] {
            let err = logsnr_timesteps(&linear, bad).unwrap_err();
            assert!(
                err.contains("--steps must be between 1 and the trained 1000"),
                "{err}"
            );
        }
    }

    #[test]
    fn python_rounds_half_to_even() {
        // Stride 2.5 over a 6-step section: round(2.5) == 2 in Python, not 3.
        assert_eq!(space_timesteps(6, "3").unwrap(), vec![0, 2, 5]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(space_timesteps(100, "ddim7x").is_err());
        assert!(space_timesteps(100, "10,,5").is_err());
        assert!(space_timesteps(10, "6,6").is_err());
        assert!(space_timesteps(10, "ddim6").is_err()); // ceil(10 / i) skips 6
        assert!(space_timesteps(10, "0").is_err());
    }
}
