//! DDPM_PROFILE: time and calls per entry point. Where the adapter has timestamp queries, every
//! dispatch gets a compute pass of its own with a timestamp at each end, so the table holds GPU
//! time measured inside the normal, batched submits (what a real step pays, minus the gaps
//! between passes). Elsewhere every dispatch runs alone and the host clock times it, submit and
//! wait included, so there a kernel's share is its latency times its calls.

use std::cell::RefCell;
use std::collections::HashMap;

use super::readback::Staging;

/// Dispatches timed between two resolves of the query set.
const SLOTS: u32 = 2048;

pub struct Profile {
    /// Calls and seconds per entry point.
    totals: RefCell<HashMap<&'static str, (usize, f64)>>,
    pub timestamps: Option<Timestamps>,
}

pub struct Timestamps {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
    /// The entry point of each slot written since the last resolve.
    pending: RefCell<Vec<&'static str>>,
}

/// What a submit must read back once it completes: the staged timestamps of `entries`.
pub struct Resolved {
    staging: Staging,
    entries: Vec<&'static str>,
}

impl Profile {
    /// `timestamps`: the device was created with `Features::TIMESTAMP_QUERY`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, timestamps: bool) -> Profile {
        let timestamps = timestamps.then(|| Timestamps {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * SLOTS,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: 2 * SLOTS as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
            pending: RefCell::default(),
        });
        Profile {
            totals: RefCell::default(),
            timestamps,
        }
    }

    pub fn add(&self, entry: &'static str, seconds: f64) {
        let mut totals = self.totals.borrow_mut();
        let slot = totals.entry(entry).or_default();
        slot.0 += 1;
        slot.1 += seconds;
    }

    /// Adds the timestamps of a completed submit.
    pub fn collect(&self, device: &wgpu::Device, resolved: Resolved) {
        let bytes = resolved.staging.read_blocking(device);
        // Copied out, since the readback's bytes need not be 8-byte aligned.
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes[..resolved.entries.len() * 16]);
        let period_ns = self.timestamps.as_ref().map_or(1.0, |t| t.period_ns);
        for (entry, pair) in resolved.entries.iter().zip(ticks.chunks_exact(2)) {
            // A driver may wrap or reorder the two reads; such a pass counts as zero.
            let elapsed = pair[1].saturating_sub(pair[0]) as f64 * period_ns * 1e-9;
            self.add(entry, elapsed);
        }
    }

    /// The table, slowest first, under a line saying which clock measured it.
    pub fn report(&self) -> String {
        let totals = self.totals.borrow();
        let total: f64 = totals.values().map(|v| v.1).sum();
        let mut rows: Vec<_> = totals.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut out = if self.timestamps.is_some() {
            String::from("GPU time from timestamp queries, one compute pass per dispatch\n")
        } else {
            String::from("host clock, each dispatch submitted and waited for alone\n")
        };
        out += &format!(
            "{:<32} {:>6} {:>7} {:>10}\n",
            "kernel", "share", "calls", "ms"
        );
        for (entry, (calls, secs)) in rows {
            out += &format!(
                "{entry:<32} {:>5.1}% {calls:>7} {:>10.3}\n",
                100.0 * secs / total.max(1e-12),
                secs * 1e3
            );
        }
        out
    }
}

impl Timestamps {
    /// True when every slot is taken: the caller submits (which resolves them) first.
    pub fn full(&self) -> bool {
        self.pending.borrow().len() as u32 >= SLOTS
    }

    /// The timestamp writes of the next dispatch's pass, which belongs to `entry`.
    pub fn next(&self, entry: &'static str) -> wgpu::ComputePassTimestampWrites<'_> {
        let mut pending = self.pending.borrow_mut();
        let slot = pending.len() as u32;
        assert!(
            slot < SLOTS,
            "profile: resolve before recording more dispatches"
        );
        pending.push(entry);
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(2 * slot),
            end_of_pass_write_index: Some(2 * slot + 1),
        }
    }

    /// Records the resolve and the copy to a staging buffer for the slots written so far.
    pub fn resolve(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Option<Resolved> {
        let entries = std::mem::take(&mut *self.pending.borrow_mut());
        if entries.is_empty() {
            return None;
        }
        let queries = 2 * entries.len() as u32;
        let bytes = queries as u64 * 8;
        let staging = Staging::new(device, bytes);
        encoder.resolve_query_set(&self.query_set, 0..queries, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, staging.buffer(), 0, bytes);
        Some(Resolved { staging, entries })
    }
}
