//! Readback: mappable staging buffers, read either blocking (a full sync), polled later (so the
//! training loop can look at its losses without waiting for the GPU), or awaited (a browser
//! cannot block its thread: there the mapping completes on the event loop, without a poll).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

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

    /// Maps and reads without blocking: the future resolves when the mapping's callback has
    /// run. Natively the device is polled until then; in a browser the callback comes from the
    /// event loop, so the caller's executor (wasm-bindgen-futures) must be free to return to it.
    pub async fn read_async(&self, device: &wgpu::Device) -> Result<Vec<u8>, String> {
        struct Slot {
            result: Option<Result<(), wgpu::BufferAsyncError>>,
            waker: Option<Waker>,
        }
        let slot = Arc::new(Mutex::new(Slot {
            result: None,
            waker: None,
        }));
        let done = slot.clone();
        self.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            let mut slot = done.lock().unwrap_or_else(|e| e.into_inner());
            slot.result = Some(r);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        });
        if !cfg!(target_arch = "wasm32") {
            let _ = device.poll(wgpu::PollType::wait_indefinitely());
        }
        let mapped = std::future::poll_fn(|cx| {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            match slot.result.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        mapped.map_err(|e| format!("mapping a staging buffer failed (device lost?): {e}"))?;
        let bytes = self
            .buffer
            .get_mapped_range(..)
            .map_err(|e| format!("reading a mapped staging buffer: {e}"))?
            .to_vec();
        self.buffer.unmap();
        Ok(bytes)
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
        // A browser never completes a mapping while its thread waits: this would spin forever.
        if cfg!(target_arch = "wasm32") {
            panic!("a blocking readback in a browser: use Gpu::read_async (or Staging::try_take)");
        }
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
