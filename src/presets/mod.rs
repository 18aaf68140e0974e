//! The presets: each recipe's default configuration, where its training batches come from, and
//! its run (training, then the pictures and metrics it writes). `toy` is the 2-D MLP of seed 000;
//! `images` holds the UNet presets `mnist` and `emoji`. The step loop they share is `train`'s.

pub mod defaults_help;
pub mod images;
pub mod toy;

use std::path::Path;

use anyhow::Result;

use crate::config::{Preset, TrainConfig};
use crate::gpu::Gpu;
use crate::train::{RunReport, Start};

impl TrainConfig {
    pub fn preset(preset: Preset) -> TrainConfig {
        match preset {
            Preset::Toy => TrainConfig::toy(),
            Preset::Mnist => TrainConfig::mnist(),
            Preset::Emoji => TrainConfig::emoji(),
            Preset::Rgb64 => TrainConfig::rgb64(),
        }
    }
}

/// Trains any configuration: the toy MLP on 2-D points, or the UNet on images. With
/// `Start::Resume`, `out` must hold a run, and training continues from its checkpoint to
/// `cfg.steps`. The settings, the device's limits and the data are checked before the run
/// directory is claimed, so a run refused for any of them writes nothing.
pub fn run(gpu: &Gpu, cfg: &TrainConfig, out: &Path, start: Start) -> Result<RunReport> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    check_params_fit(gpu, cfg)?;
    match &cfg.unet {
        None => toy::run(gpu, cfg, out, start),
        Some(_) => images::run(gpu, cfg, out, start),
    }
}

/// Refuses a model whose parameters (one flat buffer, as are the gradients and Adam's moments)
/// would not fit one storage binding of the device.
fn check_params_fit(gpu: &Gpu, cfg: &TrainConfig) -> Result<()> {
    let layout = match &cfg.unet {
        None => toy::model(cfg).layout,
        Some(_) => images::model(cfg)?.layout,
    };
    let bytes = layout.n_total as u64 * 4;
    if bytes > gpu.max_binding_bytes() {
        anyhow::bail!(
            "the model has {} parameters ({} MiB), more than one buffer of this device holds ({} \
             MiB per storage binding on {}): make it smaller ({})",
            layout.n_params(),
            bytes >> 20,
            gpu.max_binding_bytes() >> 20,
            gpu.info.name,
            match cfg.unet {
                None => "hidden or n_timesteps",
                Some(_) => "base_channels, channel_mult or num_res_blocks",
            }
        );
    }
    Ok(())
}
