//! Adapter discovery and selection: honours WGPU_BACKEND, WGPU_ADAPTER_NAME and `--adapter NAME`,
//! and turns "no adapter" into a message that names the fix instead of a panic. In a browser
//! (wasm32) the one backend is WebGPU and the browser picks the adapter; discovery is async
//! there, so the async functions are the real ones and native wraps them in a blocking wait.

use std::fmt;

/// Why no device could be opened; each variant's message tells the user what to do.
#[derive(Debug)]
pub enum AdapterError {
    NoBackends,
    NoAdapters {
        backends: String,
    },
    NoMatch {
        wanted: String,
        available: Vec<String>,
    },
    RequestDevice {
        adapter: String,
        reason: String,
    },
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterError::NoBackends => write!(
                f,
                "no GPU backend is enabled: WGPU_BACKEND is set but names no backend this build \
                 supports.\nfix: unset WGPU_BACKEND, or set it to one of: vulkan, metal, dx12"
            ),
            AdapterError::NoAdapters { backends } => write!(
                f,
                "no GPU adapter found (backends searched: {backends}).\n{}",
                no_adapter_fix()
            ),
            AdapterError::NoMatch { wanted, available } => write!(
                f,
                "no GPU adapter matches '{wanted}' (from --adapter or WGPU_ADAPTER_NAME).\n\
                 available adapters:\n  {}\nfix: pass part of one of these names, \
                 or run `ddpm info` to list them",
                available.join("\n  ")
            ),
            AdapterError::RequestDevice { adapter, reason } => write!(
                f,
                "could not open a device on adapter '{adapter}': {reason}\n\
                 fix: update the GPU driver, or choose another adapter with --adapter NAME \
                 (`ddpm info` lists them)"
            ),
        }
    }
}

impl std::error::Error for AdapterError {}

fn no_adapter_fix() -> &'static str {
    if cfg!(target_arch = "wasm32") {
        "fix: this browser offers no WebGPU adapter. Use Chrome or Edge 113 or later (on Linux \
         start it with --enable-unsafe-webgpu, or enable chrome://flags/#enable-unsafe-webgpu), \
         Safari 26, or Firefox 141 or later on Windows; check that hardware acceleration is on"
    } else if cfg!(target_os = "linux") {
        "fix: install a Vulkan driver. Without a GPU, Mesa's software Vulkan (lavapipe) runs \
         everything on the CPU, slowly:\n  sudo apt-get install mesa-vulkan-drivers libvulkan1\n\
         then run with WGPU_BACKEND=vulkan"
    } else if cfg!(target_os = "macos") {
        "fix: ddpm needs Metal; check that this Mac supports Metal and that WGPU_BACKEND, if \
         set, includes metal"
    } else {
        "fix: install or update the GPU driver (Vulkan or DX12); check that WGPU_BACKEND, if \
         set, names an available backend"
    }
}

/// The instance with the backends this build supports, narrowed by WGPU_BACKEND.
pub fn create_instance() -> Result<wgpu::Instance, AdapterError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends &= if cfg!(target_arch = "wasm32") {
        wgpu::Backends::BROWSER_WEBGPU
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
    };
    if desc.backends.is_empty() {
        return Err(AdapterError::NoBackends);
    }
    Ok(wgpu::Instance::new(desc))
}

/// Every adapter of the enabled backends.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(list_adapters_async(instance))
}

/// Every adapter of the enabled backends. WebGPU cannot enumerate: the browser offers the one
/// it prefers for a high-performance request.
pub async fn list_adapters_async(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    if cfg!(target_arch = "wasm32") {
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        instance
            .request_adapter(&options)
            .await
            .into_iter()
            .collect()
    } else {
        instance.enumerate_adapters(wgpu::Backends::all()).await
    }
}

fn preference(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The adapter named by `wanted` (case-insensitive substring; `--adapter` wins over
/// WGPU_ADAPTER_NAME), or else the most capable one: discrete, integrated, virtual, then CPU.
#[cfg(not(target_arch = "wasm32"))]
pub fn select_adapter(
    instance: &wgpu::Instance,
    wanted: Option<&str>,
) -> Result<wgpu::Adapter, AdapterError> {
    pollster::block_on(select_adapter_async(instance, wanted))
}

/// `select_adapter` without blocking (the only form a browser allows).
pub async fn select_adapter_async(
    instance: &wgpu::Instance,
    wanted: Option<&str>,
) -> Result<wgpu::Adapter, AdapterError> {
    let adapters = list_adapters_async(instance).await;
    if adapters.is_empty() {
        let backends = std::env::var("WGPU_BACKEND").unwrap_or_else(|_| {
            if cfg!(target_arch = "wasm32") {
                "webgpu".into()
            } else {
                "vulkan, metal, dx12".into()
            }
        });
        return Err(AdapterError::NoAdapters { backends });
    }
    let from_env = std::env::var("WGPU_ADAPTER_NAME")
        .ok()
        .filter(|s| !s.is_empty());
    let wanted = wanted.map(str::to_owned).or(from_env);
    match wanted {
        Some(wanted) => {
            let needle = wanted.to_lowercase();
            let names: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                .ok_or(AdapterError::NoMatch {
                    wanted,
                    available: names,
                })
        }
        None => {
            let best = adapters
                .iter()
                .map(|a| preference(a.get_info().device_type))
                .min()
                .expect("adapters is not empty");
            let mut best: Vec<wgpu::Adapter> = adapters
                .into_iter()
                .filter(|a| preference(a.get_info().device_type) == best)
                .collect();
            // One GPU per MPI rank on a machine with several: local rank i takes the i-th.
            let ranks = crate::parallel::ranks();
            let local = crate::parallel::local_rank().filter(|_| ranks.is_parallel());
            let i = local.unwrap_or(0) % best.len();
            Ok(best.swap_remove(i))
        }
    }
}

/// One line naming an adapter: name, backend, type and driver.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{} ({:?}, {:?}, driver: {})",
        info.name,
        info.backend,
        info.device_type,
        if driver.is_empty() {
            "unknown"
        } else {
            &driver
        }
    )
}
