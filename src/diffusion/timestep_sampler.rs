//! How training draws t (improved-diffusion's resample.py), on the host: uniformly, or by
//! importance sampling with p_t proportional to sqrt(E[L_t^2]) over a moving history of losses.
//!
//! Either way the draw returns importance weights 1 / (T p_t) that the per-sample losses are
//! multiplied by before the batch mean, so E[w L_t] = mean_t L_t: the objective is unchanged and
//! only its variance drops. Randomness comes from a caller-supplied uniform source (the project's
//! counter-based RNG), so a run is reproducible and the draw can be replayed.
//!
//! The loss-aware sampler needs the per-sample, unweighted losses of every step on the host (a
//! readback). Its history is a moving window, so feeding it losses one or a few steps late (the
//! readback that does not stall the GPU) changes nothing that matters. The IDDPM paper uses it for
//! the pure L_vlb objective; improved-diffusion's train_util feeds it whatever `loss` is trained.

/// Losses kept per timestep (resample.py's `history_per_term`).
pub const HISTORY_PER_TERM: usize = 10;
/// Probability mass spread uniformly over all timesteps once warmed up, so no t is starved.
pub const UNIFORM_PROB: f64 = 0.001;

/// resample.py's `ScheduleSampler`: unnormalised positive weights over t, and the draw.
pub trait ScheduleSampler {
    fn n_timesteps(&self) -> usize;

    /// One positive weight per timestep; they need not sum to 1.
    fn weights(&self) -> Vec<f64>;

    /// Whether `update` uses its arguments (so the trainer knows whether to read losses back).
    fn is_loss_aware(&self) -> bool {
        false
    }

    /// Record per-sample unweighted losses for the timesteps they were computed at.
    fn update(&mut self, _ts: &[u32], _losses: &[f64]) {}

    /// `batch` timesteps with their importance weights; see `sample_from_weights`.
    fn sample(&self, batch: usize, uniform01: impl FnMut() -> f64) -> (Vec<u32>, Vec<f64>)
    where
        Self: Sized,
    {
        sample_from_weights(&self.weights(), batch, uniform01)
    }
}

/// resample.py's `ScheduleSampler.sample`: p = w / sum(w), then for each of `batch` draws
/// u = uniform01() in [0, 1), t = the first index with cdf[t] > u, where cdf is the cumulative sum
/// of p divided by its last entry (numpy's `random.choice`: inverse CDF, so zero-probability
/// timesteps are never drawn), and weight = 1 / (T p_t).
pub fn sample_from_weights(
    weights: &[f64],
    batch: usize,
    mut uniform01: impl FnMut() -> f64,
) -> (Vec<u32>, Vec<f64>) {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let mut cdf: Vec<f64> = p
        .iter()
        .scan(0.0, |acc, &pi| {
            *acc += pi;
            Some(*acc)
        })
        .collect();
    let last = cdf[n - 1];
    cdf.iter_mut().for_each(|c| *c /= last);
    (0..batch)
        .map(|_| {
            let u = uniform01();
            // min() only guards a source that returns 1.0, which has nowhere to go.
            let t = cdf.partition_point(|&c| c <= u).min(n - 1);
            (t as u32, 1.0 / (n as f64 * p[t]))
        })
        .unzip()
}

/// Every t equally likely; all weights are 1.
#[derive(Clone, Debug)]
pub struct UniformSampler {
    n_timesteps: usize,
}

impl UniformSampler {
    pub fn new(n_timesteps: usize) -> Self {
        UniformSampler { n_timesteps }
    }
}

impl ScheduleSampler for UniformSampler {
    fn n_timesteps(&self) -> usize {
        self.n_timesteps
    }

    fn weights(&self) -> Vec<f64> {
        vec![1.0; self.n_timesteps]
    }
}

/// resample.py's `LossSecondMomentResampler`: the last `HISTORY_PER_TERM` losses of every t;
/// uniform until every t has a full history, then
/// w_t = (1 - UNIFORM_PROB) * s_t / sum_t s_t + UNIFORM_PROB / T, s_t = sqrt(mean of L_t^2).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossSecondMomentResampler {
    /// `loss_history[t][..loss_counts[t]]`, oldest first (the losses, squared when weighing).
    loss_history: Vec<[f64; HISTORY_PER_TERM]>,
    loss_counts: Vec<usize>,
}

impl LossSecondMomentResampler {
    pub fn new(n_timesteps: usize) -> Self {
        LossSecondMomentResampler {
            loss_history: vec![[0.0; HISTORY_PER_TERM]; n_timesteps],
            loss_counts: vec![0; n_timesteps],
        }
    }

    /// Every timestep has a full history, so the weights are no longer uniform.
    pub fn warmed_up(&self) -> bool {
        self.loss_counts.iter().all(|&c| c == HISTORY_PER_TERM)
    }
}

impl ScheduleSampler for LossSecondMomentResampler {
    fn n_timesteps(&self) -> usize {
        self.loss_counts.len()
    }

    fn weights(&self) -> Vec<f64> {
        let n = self.n_timesteps();
        if !self.warmed_up() {
            return vec![1.0; n];
        }
        let second_moment_roots: Vec<f64> = self
            .loss_history
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / HISTORY_PER_TERM as f64).sqrt())
            .collect();
        let total: f64 = second_moment_roots.iter().sum();
        if total == 0.0 {
            // All recorded losses are 0: resample.py divides by zero here; uniform is the limit.
            return vec![1.0; n];
        }
        second_moment_roots
            .iter()
            .map(|s| s / total * (1.0 - UNIFORM_PROB) + UNIFORM_PROB / n as f64)
            .collect()
    }

    fn is_loss_aware(&self) -> bool {
        true
    }

    /// `update_with_all_losses`: append each loss to its t's history, dropping the oldest once full.
    fn update(&mut self, ts: &[u32], losses: &[f64]) {
        assert_eq!(ts.len(), losses.len(), "one loss per timestep");
        for (&t, &loss) in ts.iter().zip(losses) {
            let t = t as usize;
            let count = &mut self.loss_counts[t];
            let history = &mut self.loss_history[t];
            if *count == HISTORY_PER_TERM {
                history.rotate_left(1);
                history[HISTORY_PER_TERM - 1] = loss;
            } else {
                history[*count] = loss;
                *count += 1;
            }
        }
    }
}

/// One training step's draw, with its per-sample losses once they are on the host (the
/// training loop's importance sampling feeds the sampler these a few steps late).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingStep {
    pub step: u64,
    pub timesteps: Vec<u32>,
    pub losses: Option<Vec<f32>>,
}

/// What a checkpoint keeps of importance sampling: the sampler and the steps whose losses it
/// has not seen yet.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplerState {
    pub sampler: LossSecondMomentResampler,
    pub pending: Vec<PendingStep>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_cdf_skips_zero_weights_and_picks_by_mass() {
        let w = [0.0, 1.0, 0.0, 3.0];
        let us = [0.0, 0.2499, 0.25, 0.9999];
        let mut it = us.iter().copied();
        let (t, weights) = sample_from_weights(&w, 4, || it.next().unwrap());
        assert_eq!(t, vec![1, 1, 3, 3]);
        assert_eq!(weights, vec![1.0, 1.0, 1.0 / 3.0, 1.0 / 3.0]);
    }

    #[test]
    fn history_drops_the_oldest() {
        let mut s = LossSecondMomentResampler::new(1);
        for k in 0..12 {
            s.update(&[0], &[k as f64]);
        }
        assert_eq!(s.loss_history[0][0], 2.0);
        assert_eq!(s.loss_history[0][9], 11.0);
    }
}
