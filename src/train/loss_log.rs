//! Loss readback without stalls: each step copies its loss and its gradient norm (before
//! clipping) into a ring on the GPU; every
//! `every` steps the ring is copied to one of two staging buffers and mapped asynchronously,
//! and the host picks the values up later. Waiting happens only when the GPU is two whole
//! intervals behind, which also stops the host from queueing work without bound.

use std::collections::VecDeque;

use crate::gpu::readback::Staging;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

pub struct LossLog {
    every: usize,
    /// Chunks count from the run's first step, so a resumed run starts a fresh ring.
    start_step: u64,
    ring: Tensor,
    staging: [Staging; 2],
    next_staging: usize,
    /// (staging index, step of the first loss in it), oldest first.
    in_flight: VecDeque<(usize, u64)>,
    to_map: Option<(usize, u64)>,
}

/// Losses of `every` consecutive steps, starting at (0-based) step `first_step`, and the
/// gradient norm of each step.
pub struct LossChunk {
    pub first_step: u64,
    pub losses: Vec<f32>,
    pub grad_norms: Vec<f32>,
}

impl LossChunk {
    pub fn mean(&self) -> f64 {
        mean(&self.losses)
    }

    pub fn mean_grad_norm(&self) -> f64 {
        mean(&self.grad_norms)
    }

    /// Splits the ring's interleaved (loss, gradient norm) pairs.
    fn from_pairs(first_step: u64, pairs: &[f32]) -> LossChunk {
        LossChunk {
            first_step,
            losses: pairs.iter().step_by(2).copied().collect(),
            grad_norms: pairs.iter().skip(1).step_by(2).copied().collect(),
        }
    }

    /// The first step whose loss is NaN or infinite.
    pub fn first_non_finite(&self) -> Option<u64> {
        self.losses
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| self.first_step + i as u64)
    }
}

fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64
}

impl LossLog {
    pub fn new(gpu: &Gpu, every: usize, start_step: u64) -> LossLog {
        LossLog {
            every,
            start_step,
            ring: gpu.zeros(&[every, 2]),
            staging: [
                Staging::new(&gpu.device, every as u64 * 8),
                Staging::new(&gpu.device, every as u64 * 8),
            ],
            next_staging: 0,
            in_flight: VecDeque::new(),
            to_map: None,
        }
    }

    /// Records the copy of this step's loss and gradient norm (0-based `step`); call before the
    /// step's submit.
    pub fn record(
        &mut self,
        gpu: &Gpu,
        loss: &Tensor,
        grad_norm: &Tensor,
        step: u64,
    ) -> Vec<LossChunk> {
        let slot = ((step - self.start_step) % self.every as u64) as usize;
        gpu.copy(loss, &self.ring.slice_flat(2 * slot, &[1]));
        gpu.copy(grad_norm, &self.ring.slice_flat(2 * slot + 1, &[1]));
        let mut done = Vec::new();
        if slot + 1 == self.every {
            if self.in_flight.len() == self.staging.len() {
                done.extend(self.wait_oldest(gpu));
            }
            let which = self.next_staging;
            self.next_staging = (which + 1) % self.staging.len();
            gpu.copy_raw(
                self.ring.buffer(),
                self.ring.offset(),
                self.staging[which].buffer(),
                0,
                self.ring.bytes(),
            );
            self.to_map = Some((which, step + 1 - self.every as u64));
        }
        done
    }

    /// Call right after the step's submit: starts mapping a ring copy recorded in this step.
    pub fn after_submit(&mut self) {
        if let Some((which, first)) = self.to_map.take() {
            self.staging[which].start_map();
            self.in_flight.push_back((which, first));
        }
    }

    /// Chunks whose readback has completed, without waiting.
    pub fn poll(&mut self, gpu: &Gpu) -> Vec<LossChunk> {
        let mut out = Vec::new();
        while let Some(&(which, first_step)) = self.in_flight.front() {
            match self.staging[which].try_take(&gpu.device) {
                Some(bytes) => {
                    self.in_flight.pop_front();
                    out.push(LossChunk::from_pairs(
                        first_step,
                        bytemuck::cast_slice(&bytes),
                    ));
                }
                None => break,
            }
        }
        out
    }

    fn wait_oldest(&mut self, gpu: &Gpu) -> Option<LossChunk> {
        let (which, first_step) = self.in_flight.pop_front()?;
        let bytes = self.staging[which].read_blocking(&gpu.device);
        Some(LossChunk::from_pairs(
            first_step,
            bytemuck::cast_slice(&bytes),
        ))
    }

    /// The first `count` losses of the ring, a chunk cut short by the end of the run
    /// (blocking; call after `drain`).
    pub fn read_partial(&self, gpu: &Gpu, first_step: u64, count: usize) -> LossChunk {
        let pairs = gpu.read(&self.ring.slice_flat(0, &[count, 2]));
        LossChunk::from_pairs(first_step, &pairs)
    }

    /// Waits for everything in flight (end of training).
    pub fn drain(&mut self, gpu: &Gpu) -> Vec<LossChunk> {
        let mut out = Vec::new();
        while let Some(chunk) = self.wait_oldest(gpu) {
            out.push(chunk);
        }
        out
    }
}
