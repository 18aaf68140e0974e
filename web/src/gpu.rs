//! Opening the browser's device: the library's async `Gpu::new_async`, plus what a page needs
//! around it: the adapter's limits checked against what the kernels bind, and WebGPU errors that
//! no error scope caught kept for the page instead of lost in the console.

use std::sync::Mutex;

use ddpm::gpu::{Gpu, Kernel};
use ddpm::shaders;

static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn record_error(message: String) {
    ERRORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(message);
}

pub fn last_error() -> Option<String> {
    ERRORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last()
        .cloned()
}

/// Uncaptured errors recorded so far (a test checks that none happened during it).
pub fn n_errors() -> usize {
    ERRORS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Every compute entry point of the project's shaders, read off each module by naga.
pub fn entry_points() -> Result<Vec<Kernel>, String> {
    let mut kernels = Vec::new();
    for shader in shaders::ALL {
        let (module, _) = ddpm::gpu::kernel::parse(shader)?;
        for ep in &module.entry_points {
            if ep.stage == naga::ShaderStage::Compute {
                // The kernel cache keys by &'static str; a test leaks ~100 short names once.
                let entry: &'static str = Box::leak(ep.name.clone().into_boxed_str());
                kernels.push(Kernel { shader, entry });
            }
        }
    }
    Ok(kernels)
}

/// Whether a shader needs the subgroup feature (the software-adapter wing's subgroup kernels).
pub fn needs_subgroups(kernel: &Kernel) -> bool {
    kernel.shader.source.contains("enable subgroups") || kernel.shader.name.ends_with("_subgroup")
}

/// The storage buffers the hungriest entry point binds in one stage.
fn storage_buffers_needed() -> Result<u32, String> {
    let mut most = 0;
    for shader in shaders::ALL {
        let (module, info) = ddpm::gpu::kernel::parse(shader)?;
        for (i, _) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let n = module
                .global_variables
                .iter()
                .filter(|(h, v)| {
                    !uses[*h].is_empty() && matches!(v.space, naga::AddressSpace::Storage { .. })
                })
                .count();
            most = most.max(n as u32);
        }
    }
    Ok(most)
}

/// The device, or a message for the page saying what is missing and how to get it.
pub async fn open() -> Result<Gpu, String> {
    let gpu = Gpu::new_async(None).await.map_err(|e| e.to_string())?;
    gpu.device
        .on_uncaptured_error(std::sync::Arc::new(|e: wgpu::Error| {
            let message = format!("WebGPU error: {e}");
            web_sys::console::error_1(&message.as_str().into());
            record_error(message);
        }));
    // Chromium reports its software adapter (SwiftShader) as a CPU, which would select the
    // kernels tuned for Mesa's llvmpipe; through Tint and SwiftShader's JIT the first of those,
    // soft/conv's conv2d_fwd_k3s1_cpu, takes ~3 minutes to create its pipeline. The GPU path
    // compiles in about a second per kernel, so the browser always plans for it.
    let caps = gpu.caps();
    gpu.set_caps(ddpm::gpu::Capabilities {
        soft_kernels: false,
        subgroups: false,
        ..caps
    });
    let needed = storage_buffers_needed()?;
    let have = gpu.limits.max_storage_buffers_per_shader_stage;
    if have < needed {
        return Err(format!(
            "this adapter ({}) binds at most {have} storage buffers per shader stage; ddpm's \
             kernels need {needed}. Try another browser or GPU (WebGPU's default is 8).",
            gpu.describe()
        ));
    }
    Ok(gpu)
}

/// One line for the page: the adapter's name, backend, type and driver where the browser tells.
pub fn describe(gpu: &Gpu) -> String {
    let info = &gpu.info;
    let name = [
        info.name.as_str(),
        info.driver.as_str(),
        info.driver_info.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "{} (WebGPU, {:?}; max storage binding {} MiB)",
        if name.is_empty() {
            "unnamed adapter"
        } else {
            &name
        },
        info.device_type,
        gpu.max_binding_bytes() >> 20
    )
}
