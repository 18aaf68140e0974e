//! `ddpm sample`: regenerate a run's outputs from a checkpoint, drawn in chunks that fit the
//! device (crate::chunked), stopped by Ctrl-C at a step boundary with what was finished kept.

use std::path::Path;

use anyhow::{bail, Result};

use crate::checkpoint;
use crate::diffusion::gaussian::ClassGuidance;
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
    /// DPM-Solver++(2M) steps (ddim_eta is then None).
    pub dpm_solver: bool,
    /// Draw at most this many samples per chain (the device's limit applies anyway); tests use
    /// it to sample in chunks at small sizes.
    pub max_chunk: Option<usize>,
    /// `--class`: a class index or name, or "all"; None samples a class-conditional model
    /// unconditionally.
    pub class: Option<&'a str>,
    /// `--guidance`: the classifier-free guidance scale with --class (1: plain conditional).
    pub guidance: f32,
}

/// Refuses a DDIM eta outside [0, 1]. eta scales the noise of each step between none (0,
/// deterministic DDIM) and the ancestral sampler's (1, DDPM): improved-diffusion documents that
/// range, and above 1 the variance 1 - abar_prev - sigma^2 of the kept direction goes negative
/// (the kernel clamps it, so the samples are neither DDIM nor DDPM). NaN would make every sample
/// NaN.
pub fn check_eta(eta: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&eta) {
        bail!(
            "--eta must be between 0 (deterministic DDIM) and 1 (the ancestral sampler's noise), \
             got {eta}"
        );
    }
    Ok(())
}

/// Writes the samples; returns the MMD^2 for the toy preset (None for images).
pub fn run(gpu: &Gpu, args: &SampleArgs) -> Result<Option<f64>> {
    if let Some(eta) = args.ddim_eta {
        check_eta(eta)?;
    }
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
    if let (Some(_), Some(software)) = (
        &cfg.unet,
        crate::presets::images::software_sampling(gpu, &cfg),
    ) {
        // --steps given here wins over the cut's 50, as --n over its 16 images.
        let steps = args.steps.or(software.sample_steps).unwrap_or(0);
        cfg = software;
        eprintln!(
            "software adapter: {} images with {steps} respaced steps (--n and --steps to change)",
            args.n.unwrap_or(cfg.n_grid),
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
    crate::class_choice::check_guidance(args.guidance)?;
    let classes = match args.class {
        None => None,
        Some(arg) => {
            let names = cfg.class_cond.then_some(&cfg.classes[..]);
            let choice = crate::class_choice::parse(arg, names)?;
            Some(crate::class_choice::per_sample(&choice, n, cfg.classes.len()).0)
        }
    };
    if classes.is_none() && args.guidance != 1.0 {
        bail!("--guidance applies to class-conditional sampling: add --class K (or --class all)");
    }
    let guidance = classes.as_ref().map(|classes| ClassGuidance {
        classes,
        scale: args.guidance,
    });
    // `--class all` draws the same number of each class.
    let n = classes.as_ref().map_or(n, Vec::len);
    match &cfg.unet {
        None => {
            ckpt.check_layout(args.checkpoint, &toy::model(&cfg).layout)?;
            let weights = gpu.upload(host, &[host.len()]);
            let opts = PSampleOptions {
                steps: args.steps,
                ddim_eta: args.ddim_eta,
                dpm_solver: args.dpm_solver,
                ..toy::default_options(&cfg)?
            };
            let report = toy::write_samples_chunked(
                gpu,
                &cfg,
                &weights,
                n,
                args.seed,
                args.out,
                opts,
                args.max_chunk,
                guidance,
            )?;
            Ok(Some(report.mmd2))
        }
        Some(unet) => {
            unet.validate().map_err(anyhow::Error::msg)?;
            ckpt.check_layout(
                args.checkpoint,
                &crate::presets::images::model(&cfg)?.layout,
            )?;
            let weights = gpu.upload(host, &[host.len()]);
            let opts = PSampleOptions {
                steps: args.steps.or(cfg.sample_steps),
                ddim_eta: args.ddim_eta,
                dpm_solver: args.dpm_solver,
                ..crate::presets::images::default_options(&cfg)?
            };
            crate::presets::images::write_samples_chunked(
                gpu,
                &cfg,
                &weights,
                n,
                args.seed,
                args.out,
                opts,
                args.max_chunk,
                guidance,
            )?;
            Ok(None)
        }
    }
}
