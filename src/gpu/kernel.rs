//! Kernels and the pipeline cache. A kernel is a WGSL entry point; its bind group layout is read
//! off the shader with naga (which globals the entry point uses, read-only or read-write), so the
//! Rust side never repeats the binding list by hand.

use std::borrow::Cow;

/// One WGSL file: common.wgsl prepended to the op's own file.
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// An entry point of a shader.
pub struct Kernel {
    pub shader: &'static Shader,
    pub entry: &'static str,
}

/// The parameter struct every kernel names `p`: a uniform binding fed from the arena with a
/// dynamic offset. Other uniform bindings are tensors (read-only constants such as packed conv
/// weights, which CPU drivers load once per SIMD batch instead of once per lane).
pub const PARAMS_NAME: &str = "p";

/// Name of the pipeline-overridable workgroup size of 1-D kernels.
pub const WORKGROUP_OVERRIDE: &str = "WG";

pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub uniform_binding: Option<u32>,
    /// Bytes of the WGSL parameter struct `p` as naga lays it out: the Rust struct a dispatch
    /// passes must have exactly this size (checked at every dispatch).
    pub params_size: Option<u32>,
    /// Bindings fed from tensors (storage, or uniform other than `p`), in binding order, with
    /// their WGSL names: a dispatch names each tensor it binds.
    pub storage_bindings: Vec<(u32, String)>,
}

/// Parses and validates a shader with naga; the error names the shader.
pub fn parse(shader: &Shader) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(shader.source)
        .map_err(|e| format!("{}.wgsl: {}", shader.name, e.emit_to_string(shader.source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default() | naga::valid::Capabilities::SUBGROUP,
    )
    .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
    .subgroup_operations(
        naga::valid::SubgroupOperationSet::BASIC
            | naga::valid::SubgroupOperationSet::BALLOT
            | naga::valid::SubgroupOperationSet::ARITHMETIC,
    )
    .validate(&module)
    .map_err(|e| format!("{}.wgsl: {}", shader.name, e.emit_to_string(shader.source)))?;
    Ok((module, info))
}

fn binding_name(kernel: &Kernel, var: &naga::GlobalVariable) -> String {
    var.name.clone().unwrap_or_else(|| {
        panic!(
            "{}.wgsl {}: a tensor binding without a name",
            kernel.shader.name, kernel.entry
        )
    })
}

pub fn create_pipeline(device: &wgpu::Device, kernel: &Kernel, workgroup_1d: u32) -> Pipeline {
    let (module, info) = parse(kernel.shader).unwrap_or_else(|e| panic!("invalid shader: {e}"));
    let (ep_index, _) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, ep)| ep.name == kernel.entry)
        .unwrap_or_else(|| {
            panic!(
                "{}.wgsl has no entry point {}",
                kernel.shader.name, kernel.entry
            )
        });
    let uses = info.get_entry_point(ep_index);
    let mut entries = Vec::new();
    let mut uniform_binding = None;
    let mut params_size = None;
    let mut storage_bindings = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let (Some(binding), false) = (&var.binding, uses[handle].is_empty()) else {
            continue;
        };
        assert_eq!(
            binding.group, 0,
            "{}: only bind group 0 is used",
            kernel.entry
        );
        let ty = match var.space {
            naga::AddressSpace::Uniform if var.name.as_deref() == Some(PARAMS_NAME) => {
                uniform_binding = Some(binding.binding);
                params_size = Some(module.types[var.ty].inner.size(module.to_ctx()));
                wgpu::BufferBindingType::Uniform
            }
            naga::AddressSpace::Uniform => {
                storage_bindings.push((binding.binding, binding_name(kernel, var)));
                wgpu::BufferBindingType::Uniform
            }
            naga::AddressSpace::Storage { access } => {
                storage_bindings.push((binding.binding, binding_name(kernel, var)));
                wgpu::BufferBindingType::Storage {
                    read_only: !access.contains(naga::StorageAccess::STORE),
                }
            }
            _ => continue,
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: binding.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: uniform_binding == Some(binding.binding),
                min_binding_size: None,
            },
            count: None,
        });
    }
    storage_bindings.sort_unstable();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(kernel.entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(kernel.shader.name),
        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(kernel.shader.source)),
    };
    // Every loop in our kernels is bounded by a count from its parameters, so wgpu's injected
    // loop-iteration guard only costs time: it keeps LLVM (lavapipe) from optimising the inner
    // loops of matmul and conv, about 2x on matmul. Bounds and division checks stay on.
    let checks = wgpu::ShaderRuntimeChecks {
        force_loop_bounding: false,
        ..wgpu::ShaderRuntimeChecks::checked()
    };
    // SAFETY: the only check turned off is the loop guard, and every loop here terminates.
    let shader_module = unsafe { device.create_shader_module_trusted(desc, checks) };
    let has_override = module
        .overrides
        .iter()
        .any(|(_, o)| o.name.as_deref() == Some(WORKGROUP_OVERRIDE));
    let constants = [(WORKGROUP_OVERRIDE, workgroup_1d as f64)];
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.entry),
        layout: Some(&pipeline_layout),
        module: &shader_module,
        entry_point: Some(kernel.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: if has_override { &constants } else { &[] },
            // Every kernel writes its workgroup memory before reading it.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    Pipeline {
        pipeline,
        layout,
        uniform_binding,
        params_size,
        storage_bindings,
    }
}
