//! Readback: mappable staging buffers, read either blocking (a full sync) or polled later, so the
//! training loop can look at its losses without waiting for the GPU.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

pub struct Staging {
    buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
}

impl Staging {
    pub fn new(device: &wgpu::Device, bytes: u64) -> Staging {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes.div_ceil(4) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Staging {
            buffer,
            state: Arc::new(AtomicU8::new(IDLE)),
        }
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Asks for a mapping once the submitted copy into this buffer has run.
    pub fn start_map(&self) {
        self.state.store(PENDING, Ordering::SeqCst);
        let state = self.state.clone();
        self.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            state.store(if r.is_ok() { READY } else { FAILED }, Ordering::SeqCst);
        });
    }

    pub fn is_pending(&self) -> bool {
        self.state.load(Ordering::SeqCst) == PENDING
    }

    /// The bytes if the mapping has completed, without blocking; the buffer is unmapped after.
    pub fn try_take(&self, device: &wgpu::Device) -> Option<Vec<u8>> {
        let _ = device.poll(wgpu::PollType::Poll);
        self.take_if_ready()
    }

    fn take_if_ready(&self) -> Option<Vec<u8>> {
        match self.state.load(Ordering::SeqCst) {
            READY => {
                let bytes = self.buffer.get_mapped_range(..).ok().map(|v| v.to_vec());
                self.buffer.unmap();
                self.state.store(IDLE, Ordering::SeqCst);
                bytes
            }
            FAILED => {
                self.state.store(IDLE, Ordering::SeqCst);
                None
            }
            _ => None,
        }
    }

    /// Maps and reads, waiting for the GPU.
    pub fn read_blocking(&self, device: &wgpu::Device) -> Vec<u8> {
        self.read_after(device, None)
    }

    /// Maps and reads, waiting only for `submission` (the one that holds the copy into this
    /// buffer) rather than for everything queued after it; `None` waits for all.
    pub fn read_after(
        &self,
        device: &wgpu::Device,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Vec<u8> {
        if self.state.load(Ordering::SeqCst) == IDLE {
            self.start_map();
        }
        loop {
            let _ = device.poll(wgpu::PollType::Wait {
                submission_index: submission.clone(),
                timeout: None,
            });
            match self.state.load(Ordering::SeqCst) {
                PENDING => continue,
                FAILED => panic!("mapping a staging buffer failed: the GPU device was lost"),
                _ => return self.take_if_ready().unwrap_or_default(),
            }
        }
    }
}
