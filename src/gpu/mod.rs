//! The GPU runtime: device, pipeline cache, buffer pool, and the recorder that puts a whole
//! training step into one command encoder with one queue submit. The only module that knows wgpu
//! in depth.

pub mod adapter;
pub mod bind_cache;
pub mod caps;
pub mod deferred;
pub mod kernel;
pub mod pool;
pub mod profile;
pub mod readback;
pub mod tensor;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytemuck::Pod;

pub use adapter::AdapterError;
pub use caps::Capabilities;
pub use kernel::{Kernel, Shader};

pub use tensor::Tensor;

/// Largest workgroup count per grid dimension that every backend accepts.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// Bytes of per-dispatch parameters staged before a submit; a step with more dispatches than fit
/// is submitted in several parts (correct, only slower).
const ARENA_BYTES: u64 = 1 << 20;

/// The recording in progress: one encoder, one open compute pass, and the parameters of every
/// dispatch recorded so far (written to the arena buffer right before the submit).
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    uniforms: Vec<u8>,
    n_dispatches: usize,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Workgroup size of the 1-D kernels, set through the WG override.
    pub workgroup_1d: u32,
    pipelines: RefCell<HashMap<(&'static str, &'static str), Rc<kernel::Pipeline>>>,
    bind_groups: RefCell<bind_cache::BindCache>,
    deferred: deferred::Deferred,
    pool: Rc<RefCell<pool::Pool>>,
    recorder: RefCell<Recorder>,
    arena: wgpu::Buffer,
    uniform_align: u64,
    n_submits: Cell<usize>,
    n_dispatches: Cell<usize>,
    /// What the kernel plans read (see `caps`).
    caps: Cell<Capabilities>,
    last_submission: RefCell<Option<wgpu::SubmissionIndex>>,
    /// With DDPM_DISPATCH_LOG=DIR: the file this process appends dispatched entry points to, and
    /// those written so far (see `log_dispatch`).
    dispatch_log: Option<RefCell<DispatchLog>>,
    /// With DDPM_PROFILE set: time and calls per entry point.
    profile: Option<profile::Profile>,
}

impl Gpu {
    /// Opens the adapter chosen by `adapter_name`, WGPU_ADAPTER_NAME or the default preference.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(adapter_name: Option<&str>) -> Result<Gpu, AdapterError> {
        pollster::block_on(Gpu::new_async(adapter_name))
    }

    /// `Gpu::new` without blocking: a browser hands out adapters and devices only through
    /// promises.
    pub async fn new_async(adapter_name: Option<&str>) -> Result<Gpu, AdapterError> {
        let instance = adapter::create_instance()?;
        let adapter = adapter::select_adapter_async(&instance, adapter_name).await?;
        let info = adapter.get_info();
        // Ask for everything the adapter offers: large storage bindings matter for big batches.
        let limits = adapter.limits();
        // DDPM_PROFILE=host times each dispatch alone by the host clock even where the adapter
        // has timestamp queries.
        let profiling = std::env::var_os("DDPM_PROFILE");
        let timestamps = profiling.as_ref().is_some_and(|v| v != "host")
            && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let profiling = profiling.is_some();
        // The wing's kernels of shaders/soft/conv_subgroup.wgsl broadcast from lanes 0..7 of a
        // subgroup. DDPM_SUBGROUPS=0 turns them off (for comparing, or a driver that gets
        // subgroups wrong).
        let subgroups = info.device_type == wgpu::DeviceType::Cpu
            && adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 8
            && std::env::var_os("DDPM_SUBGROUPS").is_none_or(|v| v != "0");
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ddpm"),
                required_features: if timestamps {
                    wgpu::Features::TIMESTAMP_QUERY
                } else {
                    wgpu::Features::empty()
                } | if subgroups {
                    wgpu::Features::SUBGROUP
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| AdapterError::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let workgroup_1d = 256
            .min(limits.max_compute_invocations_per_workgroup)
            .min(limits.max_compute_workgroup_size_x);
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let uniform_align = limits.min_uniform_buffer_offset_alignment as u64;
        let profile = profiling.then(|| profile::Profile::new(&device, &queue, timestamps));
        let caps = Capabilities::read(&info, &limits, subgroups);
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            workgroup_1d,
            pipelines: RefCell::default(),
            bind_groups: RefCell::default(),
            deferred: Default::default(),
            pool: Rc::default(),
            recorder: RefCell::new(Recorder {
                encoder: None,
                pass: None,
                uniforms: Vec::new(),
                n_dispatches: 0,
            }),
            arena,
            uniform_align,
            n_submits: Cell::new(0),
            n_dispatches: Cell::new(0),
            caps: Cell::new(caps),
            last_submission: RefCell::new(None),
            dispatch_log: std::env::var_os("DDPM_DISPATCH_LOG").map(|dir| {
                RefCell::new(DispatchLog {
                    path: std::path::Path::new(&dir).join(format!("{}.txt", std::process::id())),
                    written: Default::default(),
                })
            }),
            profile,
        })
    }

    /// A software adapter (lavapipe, WARP, SwiftShader).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The adapter's facts and the knobs, read once when the device opened: what every op's
    /// kernel plan is a function of (with the shape).
    pub fn caps(&self) -> Capabilities {
        self.caps.get()
    }

    /// Replaces the capabilities the plans read: tests run each plan on one device by masking
    /// facts off (a CPU adapter without subgroups, without windows, or the GPU path).
    pub fn set_caps(&self, caps: Capabilities) {
        self.caps.set(caps);
    }

    pub fn describe(&self) -> String {
        adapter::describe(&self.info)
    }

    /// Buffers the pool has created so far (for the "a step allocates nothing" test).
    pub fn n_buffers_created(&self) -> usize {
        self.pool.borrow().n_created()
    }

    pub fn bytes_created(&self) -> u64 {
        self.pool.borrow().bytes_created()
    }

    pub fn n_submits(&self) -> usize {
        self.n_submits.get()
    }

    /// Dispatches recorded since the device was created (the bench reports them per step).
    pub fn n_dispatches(&self) -> usize {
        self.n_dispatches.get()
    }

    /// Bind groups created so far: dispatches that bind what an earlier one bound reuse its
    /// bind group (see bind_cache), so a repeated training step adds none.
    pub fn n_bind_groups_created(&self) -> usize {
        self.bind_groups.borrow().created()
    }

    /// The largest storage binding the device takes, for clear "too large" errors.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    fn pipeline(&self, kernel: &Kernel) -> Rc<kernel::Pipeline> {
        let key = (kernel.shader.name, kernel.entry);
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let p = Rc::new(kernel::create_pipeline(
            &self.device,
            kernel,
            self.workgroup_1d,
        ));
        self.pipelines.borrow_mut().insert(key, p.clone());
        p
    }

    /// An uninitialised tensor from the pool.
    pub fn empty(&self, shape: &[usize]) -> Tensor {
        let numel: usize = shape.iter().product();
        let storage = pool::alloc(&self.pool, &self.device, (numel * 4) as u64);
        Tensor::new(shape.to_vec(), storage, 0)
    }

    /// A tensor of zeros, cleared on the GPU in stream order.
    pub fn zeros(&self, shape: &[usize]) -> Tensor {
        let t = self.empty(shape);
        self.clear(&t);
        t
    }

    pub fn clear(&self, t: &Tensor) {
        self.run_deferred_before([t.buffer()]);
        let mut rec = self.recorder.borrow_mut();
        rec.pass = None;
        let enc = rec
            .encoder
            .get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
        enc.clear_buffer(t.buffer(), t.offset(), Some(t.bytes()));
    }

    /// Uploads host data into a new tensor. Queue writes land before the next submit, so any
    /// commands already recorded are submitted first to keep stream order.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Tensor {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "upload shape");
        let t = self.empty(shape);
        self.write(&t, bytemuck::cast_slice(data));
        t
    }

    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Tensor {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "upload shape");
        let t = self.empty(shape);
        self.write(&t, bytemuck::cast_slice(data));
        t
    }

    /// Overwrites a tensor with host data, in stream order.
    pub fn write(&self, t: &Tensor, bytes: &[u8]) {
        assert_eq!(bytes.len() as u64, t.bytes(), "write size");
        if self.recorder.borrow().encoder.is_some() {
            self.submit();
        }
        if !bytes.is_empty() {
            self.queue.write_buffer(t.buffer(), t.offset(), bytes);
        }
    }

    /// Records a copy between tensors of the same size.
    pub fn copy(&self, src: &Tensor, dst: &Tensor) {
        assert_eq!(src.numel(), dst.numel(), "copy size");
        self.copy_raw(
            src.buffer(),
            src.offset(),
            dst.buffer(),
            dst.offset(),
            src.bytes(),
        );
    }

    pub(crate) fn copy_raw(
        &self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        n: u64,
    ) {
        self.run_deferred_before([src, dst]);
        let mut rec = self.recorder.borrow_mut();
        rec.pass = None;
        let enc = rec
            .encoder
            .get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
        enc.copy_buffer_to_buffer(src, src_off, dst, dst_off, n);
    }

    /// Records one dispatch. Each of `tensors` names the WGSL binding it goes to; they must be
    /// exactly the tensor bindings the entry point uses (read off the shader by naga when its
    /// pipeline is created), in any order. `params` goes to its uniform binding through the
    /// arena.
    pub fn dispatch<P: Pod>(
        &self,
        kernel: &Kernel,
        params: &P,
        tensors: &[(&str, &Tensor)],
        groups: [u32; 3],
    ) {
        if groups.contains(&0) {
            return;
        }
        self.run_deferred_before(tensors.iter().map(|(_, t)| t.buffer()));
        assert!(
            groups.iter().all(|&g| g <= MAX_GROUPS_PER_DIM),
            "{}: grid {groups:?} exceeds {MAX_GROUPS_PER_DIM}",
            kernel.entry
        );
        let timestamps = self.profile.as_ref().and_then(|p| p.timestamps.as_ref());
        match (&self.profile, timestamps) {
            (Some(_), Some(t)) if t.full() => self.submit(),
            (Some(_), None) => self.wait(),
            _ => {}
        }
        // Only the profile reads the clock (a browser's std has none: Instant::now panics there).
        let started = self.profile.as_ref().map(|_| std::time::Instant::now());
        let pipeline = self.pipeline(kernel);
        let bound: Vec<&Tensor> = match_bindings(kernel, &pipeline.storage_bindings, tensors);
        let param_bytes = bytemuck::bytes_of(params);
        if let Some(size) = pipeline.params_size {
            assert_eq!(
                param_bytes.len(),
                size as usize,
                "{}: the Rust parameter struct ({} bytes) does not match the WGSL struct `p` \
                 ({size} bytes)",
                kernel.entry,
                param_bytes.len()
            );
        }
        if let Some(log) = &self.dispatch_log {
            log.borrow_mut().write(kernel.entry);
        }
        if pipeline.uniform_binding.is_some() {
            let needed = self.recorder.borrow().uniforms.len() as u64 + param_bytes.len() as u64;
            if needed > ARENA_BYTES {
                self.submit();
            }
        }
        let mut rec = self.recorder.borrow_mut();
        let uniform_offset = rec.uniforms.len() as u64;
        if pipeline.uniform_binding.is_some() {
            rec.uniforms.extend_from_slice(param_bytes);
            let padded =
                (rec.uniforms.len() as u64).div_ceil(self.uniform_align) * self.uniform_align;
            rec.uniforms.resize(padded as usize, 0);
        }
        let key = bound
            .iter()
            .map(|t| (t.buffer().clone(), t.offset(), t.binding_size()))
            .collect();
        let bind_group = self.bind_groups.borrow_mut().get_or_create(
            Rc::as_ptr(&pipeline) as usize,
            key,
            || {
                let mut entries = Vec::with_capacity(bound.len() + 1);
                if let Some(binding) = pipeline.uniform_binding {
                    entries.push(wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &self.arena,
                            offset: 0,
                            size: std::num::NonZeroU64::new(param_bytes.len().max(16) as u64),
                        }),
                    });
                }
                for ((binding, _), t) in pipeline.storage_bindings.iter().zip(&bound) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *binding,
                        resource: t.binding(),
                    });
                }
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(kernel.entry),
                    layout: &pipeline.layout,
                    entries: &entries,
                })
            },
        );
        if timestamps.is_some() {
            // A pass of its own, so its two timestamps bracket this dispatch alone.
            rec.pass = None;
        }
        if rec.pass.is_none() {
            let enc = rec
                .encoder
                .get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
            let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timestamps.map(|t| t.next(kernel.entry)),
            });
            rec.pass = Some(pass.forget_lifetime());
        }
        let pass = rec.pass.as_mut().expect("pass was just opened");
        pass.set_pipeline(&pipeline.pipeline);
        let offsets: &[u32] = if pipeline.uniform_binding.is_some() {
            &[uniform_offset as u32]
        } else {
            &[]
        };
        pass.set_bind_group(0, &bind_group, offsets);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        rec.n_dispatches += 1;
        self.n_dispatches.set(self.n_dispatches.get() + 1);
        drop(rec);
        if let (Some(profile), None, Some(started)) = (&self.profile, timestamps, started) {
            self.wait();
            profile.add(kernel.entry, started.elapsed().as_secs_f64());
        }
    }

    /// The DDPM_PROFILE table: each entry point's share of the time, calls and milliseconds, the
    /// slowest first (None without DDPM_PROFILE).
    pub fn profile_report(&self) -> Option<String> {
        let profile = self.profile.as_ref()?;
        self.wait();
        Some(profile.report())
    }

    /// A 1-D grid of at least `n_threads` threads of `workgroup_1d`, split over two dimensions
    /// when it exceeds the per-dimension limit. Kernels rebuild the index with `linear_index`.
    pub fn groups_1d(&self, n_threads: usize) -> [u32; 3] {
        let groups = n_threads.div_ceil(self.workgroup_1d as usize) as u32;
        if groups <= MAX_GROUPS_PER_DIM {
            [groups, 1, 1]
        } else {
            [MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM), 1]
        }
    }

    /// Submits everything recorded so far (no-op when nothing is recorded).
    pub fn submit(&self) {
        self.run_deferred();
        let mut rec = self.recorder.borrow_mut();
        rec.pass = None;
        let Some(mut encoder) = rec.encoder.take() else {
            return;
        };
        if !rec.uniforms.is_empty() {
            self.queue.write_buffer(&self.arena, 0, &rec.uniforms);
            rec.uniforms.clear();
        }
        rec.n_dispatches = 0;
        let resolved = self
            .profile
            .as_ref()
            .and_then(|p| p.timestamps.as_ref())
            .and_then(|t| t.resolve(&self.device, &mut encoder));
        let index = self.queue.submit(Some(encoder.finish()));
        *self.last_submission.borrow_mut() = Some(index);
        self.n_submits.set(self.n_submits.get() + 1);
        drop(rec);
        if let (Some(profile), Some(resolved)) = (&self.profile, resolved) {
            profile.collect(&self.device, resolved);
        }
    }

    /// The most recent submit, for waiting on that one alone (see readback::Staging::read_after).
    pub fn last_submission(&self) -> Option<wgpu::SubmissionIndex> {
        self.last_submission.borrow().clone()
    }

    /// Blocks until the GPU is idle.
    pub fn wait(&self) {
        self.submit();
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Blocks until `submission` has run; later submits may still be running.
    pub fn wait_for(&self, submission: wgpu::SubmissionIndex) {
        let _ = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        });
    }

    /// Reads a tensor back to the host (a full sync: for tests, checkpoints and final results).
    pub fn read(&self, t: &Tensor) -> Vec<f32> {
        bytemuck::cast_slice(&self.read_bytes(t)).to_vec()
    }

    pub fn read_u32(&self, t: &Tensor) -> Vec<u32> {
        bytemuck::cast_slice(&self.read_bytes(t)).to_vec()
    }

    /// `read` without blocking the thread (the only readback a browser allows).
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>, String> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes_async(t).await?,
        ))
    }

    pub async fn read_u32_async(&self, t: &Tensor) -> Result<Vec<u32>, String> {
        Ok(bytemuck::pod_collect_to_vec(
            &self.read_bytes_async(t).await?,
        ))
    }

    async fn read_bytes_async(&self, t: &Tensor) -> Result<Vec<u8>, String> {
        let staging = readback::Staging::new(&self.device, t.bytes().max(4));
        self.copy_raw(t.buffer(), t.offset(), staging.buffer(), 0, t.bytes());
        self.submit();
        let mut bytes = staging.read_async(&self.device).await?;
        bytes.truncate(t.bytes() as usize);
        Ok(bytes)
    }

    fn read_bytes(&self, t: &Tensor) -> Vec<u8> {
        let staging = readback::Staging::new(&self.device, t.bytes().max(4));
        self.copy_raw(t.buffer(), t.offset(), staging.buffer(), 0, t.bytes());
        self.submit();
        let bytes = staging.read_blocking(&self.device);
        bytes[..t.bytes() as usize].to_vec()
    }
}

/// With DDPM_DISPATCH_LOG=DIR, each process appends every entry point it dispatches to
/// DIR/<pid>.txt, once per device: `cargo xtask test` checks after the suite that every entry
/// point of shaders/ was dispatched by some test.
struct DispatchLog {
    path: std::path::PathBuf,
    written: std::collections::HashSet<&'static str>,
}

impl DispatchLog {
    fn write(&mut self, entry: &'static str) {
        use std::io::Write;
        if !self.written.insert(entry) {
            return;
        }
        let appended = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?
                    .write_all(format!("{entry}\n").as_bytes())
            });
        if let Err(e) = appended {
            eprintln!(
                "DDPM_DISPATCH_LOG: cannot write {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The tensors of a dispatch in the order of `bindings` (the entry point's tensor bindings), by
/// their names; a name missing, unknown or given twice is a programming error, reported with
/// the kernel, the entry point and the names it expects.
fn match_bindings<'t, T>(
    kernel: &Kernel,
    bindings: &[(u32, String)],
    tensors: &[(&str, &'t T)],
) -> Vec<&'t T> {
    let matched: Vec<Option<&T>> = bindings
        .iter()
        .map(|(_, name)| {
            let mut found = tensors.iter().filter(|(n, _)| n == name);
            let first = found.next().map(|&(_, t)| t);
            first.filter(|_| found.next().is_none())
        })
        .collect();
    if tensors.len() != bindings.len() || matched.iter().any(Option::is_none) {
        let expected: Vec<&str> = bindings.iter().map(|(_, n)| n.as_str()).collect();
        let given: Vec<&str> = tensors.iter().map(|&(n, _)| n).collect();
        panic!(
            "{}.wgsl {}: the dispatch binds {given:?}, but the entry point's tensor bindings \
             are {expected:?} (each exactly once)",
            kernel.shader.name, kernel.entry
        );
    }
    matched.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::{match_bindings, Kernel, Shader};

    static SHADER: Shader = Shader {
        name: "conv",
        source: "",
    };
    static KERNEL: Kernel = Kernel {
        shader: &SHADER,
        entry: "conv2d_fwd_bias",
    };

    fn bindings() -> Vec<(u32, String)> {
        ["x", "weight", "bias", "out"]
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u32 + 1, n.to_string()))
            .collect()
    }

    #[test]
    fn tensors_bind_by_name_in_binding_order() {
        let (x, w, b, y) = (1, 2, 3, 4);
        let given = [("out", &y), ("x", &x), ("bias", &b), ("weight", &w)];
        assert_eq!(
            match_bindings(&KERNEL, &bindings(), &given),
            [&1, &2, &3, &4]
        );
    }

    #[test]
    #[should_panic(
        expected = "conv.wgsl conv2d_fwd_bias: the dispatch binds [\"x\", \"weight\", \"out\"], \
                               but the entry point's tensor bindings are [\"x\", \"weight\", \"bias\", \"out\"]"
    )]
    fn a_missing_binding_names_the_kernel_and_the_expected_bindings() {
        let t = 0;
        match_bindings(
            &KERNEL,
            &bindings(),
            &[("x", &t), ("weight", &t), ("out", &t)],
        );
    }

    #[test]
    #[should_panic(expected = "tensor bindings are")]
    fn an_unknown_name_is_refused() {
        let t = 0;
        let given = [("x", &t), ("w", &t), ("bias", &t), ("out", &t)];
        match_bindings(&KERNEL, &bindings(), &given);
    }

    #[test]
    #[should_panic(expected = "tensor bindings are")]
    fn a_name_given_twice_is_refused() {
        let t = 0;
        let given = [("x", &t), ("x", &t), ("bias", &t), ("out", &t)];
        match_bindings(&KERNEL, &bindings(), &given);
    }
}
