//! `ddpm sample`: regenerate a run's outputs from a checkpoint.

use std::path::Path;

use anyhow::{bail, Result};

use crate::checkpoint;
use crate::diffusion::VarianceKind;
use crate::gpu::Gpu;
use crate::ops::diffusion::PSampleOptions;
use crate::presets::toy;

pub struct SampleArgs<'a> {
    pub checkpoint: &'a Path,
    pub out: &'a Path,
    pub n: Option<usize>,
    pub seed: u32,
    pub variance: Option<VarianceKind>,
    pub clip_x0: bool,
    pub use_ema: bool,
    /// Sample with this many timesteps (respaced); None: the run's sample_steps, else all of the
    /// trained ones (images on a software adapter: 50).
    pub steps: Option<usize>,
    /// Some(eta): DDIM steps (eta = 0 is deterministic).
    pub ddim_eta: Option<f32>,
}

/// Writes the samples; returns the MMD^2 for the toy preset (None for images).
pub fn run(gpu: &Gpu, args: &SampleArgs) -> Result<Option<f64>> {
    let ckpt = checkpoint::load(args.checkpoint)?;
    let mut cfg = ckpt.config.clone();
    if let Some(v) = args.variance {
        cfg.variance = v;
    }
    cfg.clip_denoised |= args.clip_x0;
    let host = if args.use_ema {
        &ckpt.state.ema
    } else {
        &ckpt.state.params
    };
    if let (Some(_), None, Some(software)) = (
        &cfg.unet,
        args.steps,
        crate::presets::images::software_sampling(gpu, &cfg),
    ) {
        cfg = software;
        eprintln!(
            "software adapter: {} images with {} respaced steps (--n and --steps to change)",
            args.n.unwrap_or(cfg.n_grid),
            cfg.sample_steps.unwrap_or(0)
        );
    }
    let n = args.n.unwrap_or(if cfg.unet.is_some() {
        cfg.n_grid
    } else {
        cfg.n_samples
    });
    if n == 0 {
        bail!("--n must be at least 1");
    }
    match &cfg.unet {
        None => {
            ckpt.check_layout(args.checkpoint, &toy::model(&cfg).layout)?;
            let weights = gpu.upload(host, &[host.len()]);
            let opts = PSampleOptions {
                steps: args.steps,
                ddim_eta: args.ddim_eta,
                ..toy::default_options(&cfg)?
            };
            let report = toy::write_samples(gpu, &cfg, &weights, n, args.seed, args.out, opts)?;
            Ok(Some(report.mmd2))
        }
        Some(unet) => {
            unet.validate().map_err(anyhow::Error::msg)?;
            ckpt.check_layout(
                args.checkpoint,
                &crate::nn::unet::UNet::new(unet.clone()).layout,
            )?;
            let weights = gpu.upload(host, &[host.len()]);
            let opts = PSampleOptions {
                steps: args.steps.or(cfg.sample_steps),
                ddim_eta: args.ddim_eta,
                ..crate::presets::images::default_options(&cfg)?
            };
            crate::presets::images::write_samples(
                gpu, &cfg, &weights, n, args.seed, args.out, opts,
            )?;
            Ok(None)
        }
    }
}
