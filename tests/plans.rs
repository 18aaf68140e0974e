//! The kernel plans of the image presets, pinned without a GPU: for each preset's UNet at its
//! batch, on a GPU (as wgpu reports an NVIDIA card) and on lavapipe with Mesa 25 and Mesa 22,
//! the table nn::plan prints must equal tests/plans/<preset>-<adapter>.txt. A change of plan
//! shows up here as a diff to review; DDPM_BLESS_PLANS=1 rewrites the files.

use ddpm::config::TrainConfig;
use ddpm::gpu::Capabilities;
use ddpm::nn::plan::unet_table;
use ddpm::nn::unet::UNet;

fn check(preset: &str, cfg: TrainConfig) {
    let unet = UNet::new(cfg.unet.clone().expect("an image preset"));
    for (adapter, caps) in [
        ("gpu", Capabilities::gpu()),
        ("lavapipe-mesa25", Capabilities::lavapipe(25)),
        ("lavapipe-mesa22", Capabilities::lavapipe(22)),
    ] {
        let table = unet_table(&caps, &unet, cfg.batch_size);
        let path = format!(
            "{}/tests/plans/{preset}-{adapter}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        if std::env::var_os("DDPM_BLESS_PLANS").is_some() {
            std::fs::write(&path, &table).unwrap();
            continue;
        }
        let pinned = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (DDPM_BLESS_PLANS=1 writes it)"));
        assert_eq!(
            table, pinned,
            "the {preset} plan on {adapter} changed; review it and rerun with DDPM_BLESS_PLANS=1"
        );
    }
}

#[test]
fn mnist_plans_are_pinned() {
    check("mnist", TrainConfig::mnist());
}

#[test]
fn emoji_plans_are_pinned() {
    check("emoji", TrainConfig::emoji());
}

#[test]
fn the_gpu_path_runs_no_kernel_of_the_wing() {
    // Every entry point a GPU plan names lives in shaders/*.wgsl, none in shaders/soft/.
    let soft: String = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/soft"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for cfg in [TrainConfig::mnist(), TrainConfig::emoji()] {
        let unet = UNet::new(cfg.unet.clone().unwrap());
        let table = unet_table(&Capabilities::gpu(), &unet, cfg.batch_size);
        for entry in table.split(['(', ')', ',', ' ']).filter(|w| {
            w.contains('_')
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }) {
            assert!(
                !soft.contains(&format!("fn {entry}(")),
                "the GPU plan dispatches {entry}, a kernel of the wing"
            );
        }
    }
}
