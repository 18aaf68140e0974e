//! Bind groups kept from one dispatch to the next. Creating a bind group was ~6 us of the ~7 us
//! the host spent recording each dispatch of an mnist training step (2-core VM, lavapipe), and a
//! step binds the same pooled buffers at the same offsets every time (the pool hands them out in
//! the same order), so from the second step on every bind group is found here.
//!
//! The key is the pipeline and each storage binding's buffer, offset and size: equal keys bind
//! exactly the same memory. The uniform binding is the Gpu's one parameter arena at a dynamic
//! offset, the same for every bind group of a pipeline, so it is not part of the key. Pooled
//! buffers live as long as the Gpu, so holding them here keeps nothing alive that the pool would
//! have freed; the cache is emptied when it reaches `MAX_ENTRIES` so a long run over many shapes
//! (sampling at several batch sizes, evaluations) stays bounded.

use std::collections::HashMap;

/// Bind groups kept at most; a training step of the presets' models uses under a thousand.
pub const MAX_ENTRIES: usize = 16_384;

/// One storage binding: the buffer, the byte offset and the byte size.
pub type Binding = (wgpu::Buffer, u64, u64);

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The pipeline's address in the Gpu's pipeline table, which never drops one.
    pipeline: usize,
    bindings: Vec<Binding>,
}

#[derive(Default)]
pub struct BindCache {
    groups: HashMap<Key, wgpu::BindGroup>,
    created: usize,
}

impl BindCache {
    /// The bind group of `pipeline` over `bindings`, from the cache or made by `create` (and
    /// kept).
    pub fn get_or_create(
        &mut self,
        pipeline: usize,
        bindings: Vec<Binding>,
        create: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        let key = Key { pipeline, bindings };
        if let Some(group) = self.groups.get(&key) {
            return group.clone();
        }
        if self.groups.len() >= MAX_ENTRIES {
            self.groups.clear();
        }
        let group = create();
        self.created += 1;
        self.groups.insert(key, group.clone());
        group
    }

    /// Bind groups created so far (a repeated step adds none).
    pub fn created(&self) -> usize {
        self.created
    }

    /// Bind groups held now.
    pub fn held(&self) -> usize {
        self.groups.len()
    }
}
