//! Buffer pool: storage buffers are recycled by exact size, so after the first training step
//! every tensor a step needs is already there and a step allocates nothing. A request takes the
//! free buffer of that size created first: the free set at the start of a step is the same each
//! step, so every step's tensors land in the same buffers as the last one's, and the Gpu's bind
//! groups (gpu::bind_cache) are reused instead of rebuilt.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};

/// Usage of every pooled buffer: bindable as storage, copyable both ways.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
pub struct Pool {
    /// Free buffers by size, each keyed by its creation serial.
    free: HashMap<u64, BTreeMap<usize, wgpu::Buffer>>,
    n_created: usize,
    bytes_created: u64,
}

/// A GPU buffer owned by one tensor (or shared by clones of it); back to the pool on drop.
pub struct Storage {
    buffer: Option<wgpu::Buffer>,
    serial: usize,
    pool: Weak<RefCell<Pool>>,
}

impl Storage {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer is only taken on drop")
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let (Some(buffer), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                let free = pool.free.entry(buffer.size()).or_default();
                free.insert(self.serial, buffer);
            }
        }
    }
}

/// Sizes are rounded up to 16 bytes: bindings must be non-empty and vec4-friendly.
pub fn padded_size(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

pub fn alloc(pool_rc: &Rc<RefCell<Pool>>, device: &wgpu::Device, bytes: u64) -> Rc<Storage> {
    let size = padded_size(bytes);
    let recycled = pool_rc
        .borrow_mut()
        .free
        .get_mut(&size)
        .and_then(BTreeMap::pop_first);
    let (serial, buffer) = recycled.unwrap_or_else(|| {
        let mut pool = pool_rc.borrow_mut();
        pool.n_created += 1;
        pool.bytes_created += size;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pooled"),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        });
        (pool.n_created, buffer)
    });
    Rc::new(Storage {
        buffer: Some(buffer),
        serial,
        pool: Rc::downgrade(pool_rc),
    })
}

impl Pool {
    /// Buffers created so far; a step that allocates nothing leaves this unchanged.
    pub fn n_created(&self) -> usize {
        self.n_created
    }

    pub fn bytes_created(&self) -> u64 {
        self.bytes_created
    }
}
