//! What the kernel plans depend on: the adapter's facts and the environment knobs, read once
//! when the device opens. Every op picks its kernels with a pure function of these and a shape,
//! so the same capabilities give the same plan with or without a device: nn::plan prints them,
//! and a table test pins the plans of the presets' shapes on a GPU and on CPU adapters.

/// The facts and knobs the kernel plans read. Plain data: tests build one by hand
/// (`Capabilities::gpu`, `Capabilities::lavapipe`) or override one field of a device's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The ops run the software-adapter wing (ops::soft): a CPU adapter (lavapipe, WARP,
    /// SwiftShader), unless DDPM_KERNELS=gpu asked for the GPU path there (CI checks it that way).
    pub soft_kernels: bool,
    /// Subgroups of at least 8 invocations, requested on CPU adapters only (the wing's
    /// subgroup kernels broadcast from lanes 0..7); DDPM_SUBGROUPS=0 turns them off.
    pub subgroups: bool,
    /// A storage load whose address differs between SIMD lanes costs a loop over the lanes:
    /// llvmpipe up to Mesa 22 (4.2 ns per lane-load on a 2-core VM with Mesa 22.3.6, 1.2-1.5 ns
    /// with 25.0.7). The group-norm windows run only where this holds.
    pub lane_looped_loads: bool,
    /// How many workgroups the tiled convolutions' split-K aims for: 512, or
    /// DDPM_TILED_WORKGROUPS (1 turns the splits off, for comparing on one card).
    pub tiled_workgroups: usize,
    /// Largest uniform binding in bytes (the wing's 64 KiB windows need all of it).
    pub max_uniform_binding: u64,
    /// Uniform buffers one shader stage may bind.
    pub max_uniform_buffers_per_stage: u32,
    /// Alignment of uniform and of storage binding offsets, in bytes.
    pub uniform_align: u32,
    pub storage_align: u32,
    /// Largest storage binding in bytes (the smaller of the binding and buffer limits).
    pub max_binding_bytes: u64,
    /// Workgroups per grid dimension.
    pub max_groups_per_dim: u32,
    /// Host cores: a CPU adapter runs its workgroups on them, so the wing sizes its grids by it.
    pub cores: usize,
}

/// The split-K target of the tiled convolutions without DDPM_TILED_WORKGROUPS.
pub const TILED_WORKGROUPS: usize = 512;

impl Capabilities {
    /// Reads the adapter's facts and the knobs. `subgroups` is whether the device was opened
    /// with subgroups of at least 8 lanes.
    pub fn read(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, subgroups: bool) -> Self {
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let gpu_kernels = std::env::var_os("DDPM_KERNELS").is_some_and(|v| v == "gpu");
        Capabilities {
            soft_kernels: cpu && !gpu_kernels,
            subgroups,
            lane_looped_loads: cpu && mesa_major(&info.driver_info).is_some_and(|m| m <= 22),
            tiled_workgroups: std::env::var("DDPM_TILED_WORKGROUPS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(TILED_WORKGROUPS),
            max_uniform_binding: limits.max_uniform_buffer_binding_size,
            max_uniform_buffers_per_stage: limits.max_uniform_buffers_per_shader_stage,
            uniform_align: limits.min_uniform_buffer_offset_alignment,
            storage_align: limits.min_storage_buffer_offset_alignment,
            max_binding_bytes: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            max_groups_per_dim: limits
                .max_compute_workgroups_per_dimension
                .min(super::MAX_GROUPS_PER_DIM),
            cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// A discrete GPU as wgpu reports an NVIDIA card through Vulkan (the H100 the benchmarks
    /// use): the plans a GPU runs.
    pub fn gpu() -> Self {
        Capabilities {
            soft_kernels: false,
            subgroups: false,
            lane_looped_loads: false,
            tiled_workgroups: TILED_WORKGROUPS,
            max_uniform_binding: 65_536,
            max_uniform_buffers_per_stage: 12,
            uniform_align: 64,
            storage_align: 16,
            max_binding_bytes: 1 << 31,
            max_groups_per_dim: super::MAX_GROUPS_PER_DIM,
            cores: 2,
        }
    }

    /// lavapipe on a 2-core VM (CI's machine), Mesa `major`: the plans a CPU adapter runs.
    pub fn lavapipe(mesa_major: u32) -> Self {
        Capabilities {
            soft_kernels: true,
            subgroups: true,
            lane_looped_loads: mesa_major <= 22,
            tiled_workgroups: TILED_WORKGROUPS,
            max_uniform_binding: 65_536,
            max_uniform_buffers_per_stage: 1_000_000,
            uniform_align: 32,
            storage_align: 32,
            max_binding_bytes: 1 << 27,
            max_groups_per_dim: super::MAX_GROUPS_PER_DIM,
            cores: 2,
        }
    }
}

/// Each set of kernels a device with `caps` can run, named: the GPU path, then the wing
/// without uniform windows, with them, with subgroups, and with subgroups where storage loads
/// are lane-looped (the last two only where the device has subgroups). Tests run every plan on
/// one device this way; the benchmarks compare them.
pub fn profiles(caps: &Capabilities) -> Vec<(&'static str, Capabilities)> {
    let soft = Capabilities {
        soft_kernels: true,
        subgroups: false,
        lane_looped_loads: false,
        ..*caps
    };
    let mut out = vec![
        (
            "gpu",
            Capabilities {
                soft_kernels: false,
                ..*caps
            },
        ),
        (
            "soft-storage",
            Capabilities {
                max_uniform_binding: 0,
                ..soft
            },
        ),
        ("soft-windows", soft),
    ];
    if caps.subgroups {
        let subgroups = Capabilities {
            subgroups: true,
            ..soft
        };
        out.push(("soft-subgroups", subgroups));
        out.push((
            "soft-subgroups-lane-looped",
            Capabilities {
                lane_looped_loads: true,
                ..subgroups
            },
        ));
    }
    out
}

/// The major version in a Mesa driver string ("Mesa 22.3.6 (LLVM 15.0.6)" -> 22).
fn mesa_major(driver_info: &str) -> Option<u32> {
    let version = driver_info.split("Mesa ").nth(1)?;
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mesa_major_reads_the_driver_string() {
        assert_eq!(super::mesa_major("Mesa 22.3.6 (LLVM 15.0.6)"), Some(22));
        assert_eq!(
            super::mesa_major("llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)"),
            Some(25)
        );
        assert_eq!(super::mesa_major("580.159.04"), None);
    }
}
