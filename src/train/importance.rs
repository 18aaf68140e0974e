//! Importance-sampled timesteps in the training loop (IDDPM section 3.3, improved-diffusion's
//! `loss-second-moment` sampler): the host draws each step's t from a
//! `LossSecondMomentResampler`, uploads t and the weights 1 / (T p_t), and feeds the sampler the
//! per-sample losses the GPU computed.
//!
//! Reading losses back must neither stall the GPU every step nor make a run depend on timing.
//! So the sampler that draws step s has seen exactly the losses of steps up to s - LAG: each
//! step copies its losses into its own staging buffer, mapped after the submit, and the host
//! waits for step s - LAG's buffer only when it draws step s, while steps s - LAG + 1 .. s - 1
//! keep the GPU busy. A checkpoint stores the sampler's history and the losses it has not seen
//! yet, so a resumed run draws the same timesteps as an uninterrupted one.

use std::collections::VecDeque;

use crate::diffusion::gaussian::{streams, TimestepDraw};
use crate::diffusion::timestep_sampler::{
    LossSecondMomentResampler, PendingStep, SamplerState, ScheduleSampler,
};
use crate::gpu::readback::Staging;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Steps between computing a step's losses and the sampler seeing them.
pub const LAG: u64 = 2;

pub struct ImportanceSampling {
    sampler: LossSecondMomentResampler,
    pending: VecDeque<PendingStep>,
    staging: Vec<Staging>,
    /// The submit that copies into each staging buffer, so a read waits for that one alone.
    submitted: Vec<Option<wgpu::SubmissionIndex>>,
    /// The staging buffer recorded in this step, to be mapped after its submit.
    to_map: Option<usize>,
    timesteps: Tensor,
    weights: Tensor,
}

impl ImportanceSampling {
    /// A fresh sampler (uniform until every t has a full history), or the one a checkpoint saved.
    pub fn new(gpu: &Gpu, n_timesteps: usize, batch: usize, saved: Option<SamplerState>) -> Self {
        let (sampler, pending) = match saved {
            Some(s) => (s.sampler, s.pending.into()),
            None => (LossSecondMomentResampler::new(n_timesteps), VecDeque::new()),
        };
        ImportanceSampling {
            sampler,
            pending,
            staging: (0..LAG)
                .map(|_| Staging::new(&gpu.device, batch as u64 * 4))
                .collect(),
            submitted: vec![None; LAG as usize],
            to_map: None,
            timesteps: gpu.upload_u32(&vec![0; batch], &[batch]),
            weights: gpu.zeros(&[batch]),
        }
    }

    fn slot(step: u64) -> usize {
        (step % LAG) as usize
    }

    /// Feeds the sampler every pending step older than `step - LAG + 1`, waiting for the GPU
    /// where its losses are not on the host yet.
    fn catch_up(&mut self, gpu: &Gpu, step: u64) {
        while let Some(front) = self.pending.front() {
            if front.step + LAG > step {
                break;
            }
            let mut done = self.pending.pop_front().expect("front exists");
            let losses = match done.losses.take() {
                Some(l) => l,
                None => self.read_losses(gpu, Self::slot(done.step)),
            };
            self.learn(&done.timesteps, &losses);
        }
    }

    fn learn(&mut self, timesteps: &[u32], losses: &[f32]) {
        // A non-finite loss stops the run at the next loss readback; it must not reach the
        // sampler's history before that.
        let (ts, ls): (Vec<u32>, Vec<f64>) = timesteps
            .iter()
            .zip(losses)
            .filter(|(_, l)| l.is_finite())
            .map(|(&t, &l)| (t, l as f64))
            .unzip();
        self.sampler.update(&ts, &ls);
    }

    /// Draws the timesteps of training step `step` (uniforms from the counter RNG's timestep
    /// stream, so the draw is replayable) and uploads them with their weights.
    pub fn draw(&mut self, gpu: &Gpu, seed: u32, step: u64) -> TimestepDraw {
        self.catch_up(gpu, step);
        let batch = self.timesteps.numel();
        let stream = streams::for_step(step, streams::TIMESTEPS);
        let mut index = 0u32;
        let (timesteps, weights) = self.sampler.sample(batch, || {
            index += 1;
            crate::rng::uniform(seed, stream, index - 1)
        });
        let weights: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        gpu.write(&self.timesteps, bytemuck::cast_slice(&timesteps));
        gpu.write(&self.weights, bytemuck::cast_slice(&weights));
        self.pending.push_back(PendingStep {
            step,
            timesteps,
            losses: None,
        });
        TimestepDraw {
            timesteps: self.timesteps.clone(),
            weights: self.weights.clone(),
        }
    }

    /// Records the copy of step `step`'s per-sample losses; call before the step's submit.
    pub fn record(&mut self, gpu: &Gpu, step: u64, per_sample_losses: &Tensor) {
        let slot = Self::slot(step);
        gpu.copy_raw(
            per_sample_losses.buffer(),
            per_sample_losses.offset(),
            self.staging[slot].buffer(),
            0,
            per_sample_losses.bytes(),
        );
        self.to_map = Some(slot);
    }

    /// Call right after the step's submit.
    pub fn after_submit(&mut self, gpu: &Gpu) {
        if let Some(slot) = self.to_map.take() {
            self.staging[slot].start_map();
            self.submitted[slot] = gpu.last_submission();
        }
    }

    fn read_losses(&self, gpu: &Gpu, slot: usize) -> Vec<f32> {
        let bytes = self.staging[slot].read_after(&gpu.device, self.submitted[slot].clone());
        bytemuck::cast_slice(&bytes).to_vec()
    }

    /// Brings every pending step's losses to the host (waiting for the GPU) and returns what a
    /// checkpoint must hold to continue exactly.
    pub fn state(&mut self, gpu: &Gpu) -> SamplerState {
        for i in 0..self.pending.len() {
            if self.pending[i].losses.is_none() {
                let slot = Self::slot(self.pending[i].step);
                self.pending[i].losses = Some(self.read_losses(gpu, slot));
            }
        }
        SamplerState {
            sampler: self.sampler.clone(),
            pending: self.pending.iter().cloned().collect(),
        }
    }
}
