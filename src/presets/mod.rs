//! The presets: each recipe's default configuration, where its training batches come from, and
//! its run (training, then the pictures and metrics it writes). `toy` is the 2-D MLP of seed 000;
//! `images` holds the UNet presets `mnist` and `emoji`. The step loop they share is `train`'s.

pub mod images;
pub mod toy;

use std::path::Path;

use anyhow::Result;

use crate::config::{Preset, TrainConfig};
use crate::gpu::Gpu;
use crate::train::{self, RunReport};

impl TrainConfig {
    pub fn preset(preset: Preset) -> TrainConfig {
        match preset {
            Preset::Toy => TrainConfig::toy(),
            Preset::Mnist => TrainConfig::mnist(),
            Preset::Emoji => TrainConfig::emoji(),
        }
    }
}

/// Trains any configuration: the toy MLP on 2-D points, or the UNet on images. With `resume`,
/// `out` must hold a run, and training continues from its checkpoint to `cfg.steps`.
pub fn run(gpu: &Gpu, cfg: &TrainConfig, out: &Path, resume: bool) -> Result<RunReport> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    train::prepare_out_dir(cfg, out, resume)?;
    match &cfg.unet {
        None => toy::run(gpu, cfg, out, resume),
        Some(_) => images::run(gpu, cfg, out, resume),
    }
}
