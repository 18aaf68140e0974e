//! Tensor: a shape and a range of a GPU buffer, contiguous f32 (or u32 bits) in NCHW order.
//! The only "view" is a byte offset, used for parameters that live in one flat buffer.

use std::rc::Rc;

use super::pool::Storage;

#[derive(Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    storage: Rc<Storage>,
    offset: u64,
}

impl Tensor {
    pub(crate) fn new(shape: Vec<usize>, storage: Rc<Storage>, offset: u64) -> Tensor {
        Tensor {
            shape,
            storage,
            offset,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        (self.numel() * 4) as u64
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer()
    }

    /// Byte offset of element 0 inside the buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same elements under another shape with the same count.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.numel(),
            "reshape {:?} -> {shape:?}",
            self.shape
        );
        Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
            offset: self.offset,
        }
    }

    /// A contiguous sub-range of `len` elements starting at element `start`, for the flat
    /// parameter buffer (the start must keep the storage-offset alignment).
    pub fn slice_flat(&self, start: usize, shape: &[usize]) -> Tensor {
        let len: usize = shape.iter().product();
        assert!(start + len <= self.numel(), "slice out of range");
        Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
            offset: self.offset + (start * 4) as u64,
        }
    }

    pub fn same_storage(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.storage, &other.storage)
    }

    /// Whether this tensor is all that holds its buffer (no clone or view of it is alive), so
    /// writing it in place changes nothing anyone else reads.
    pub fn is_unique(&self) -> bool {
        Rc::strong_count(&self.storage) == 1
    }

    /// Bytes a binding of this tensor covers (at least one element, as bindings are non-empty).
    pub fn binding_size(&self) -> u64 {
        self.bytes().max(4)
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.binding_size()),
        })
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}
