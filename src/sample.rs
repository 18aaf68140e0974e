//! `ddpm sample`: regenerate a run's outputs from a checkpoint, drawn in chunks that fit the
//! device (crate::chunked), stopped by Ctrl-C at a step boundary with what was finished kept.

use std::path::Path;

use anyhow::{bail, Result};

use crate::checkpoint;
use crate::config::TrainConfig;
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
    /// `--spacing`: the timesteps DDIM or DPM-Solver++ visit (None: the sampler's default).
    pub spacing: Option<crate::diffusion::respace::Spacing>,
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
/// Deterministic samplers map x_T ~ N(0, I) through the probability-flow ODE, which is only
/// right when q(x_T) is that Gaussian. A schedule that leaves signal at T (the toy preset's 100
/// sigmoid betas end at alpha_bar_T = 0.78) makes them start from the wrong distribution; the
/// ancestral sampler's fresh noise corrects much of it. Says so when alpha_bar_T > 0.01.
pub fn terminal_signal_note(cfg: &TrainConfig) -> Option<String> {
    let schedule = crate::diffusion::Schedule::new(cfg.schedule, cfg.n_timesteps);
    let alpha_bar = *schedule.alphas_cumprod.last()?;
    (alpha_bar > 0.01).then(|| {
        format!(
            "this model's schedule ({} {} betas) ends at alpha_bar_T = {alpha_bar:.3}: x_T keeps \
             {:.0}% of the data's scale, but DDIM and DPM-Solver++ start from pure noise and \
             follow a deterministic path from it, so their samples come out too spread (on the \
             toy preset MMD^2 ~0.19 against ~0.065 ancestral, at 20 steps as at 100). Use \
             --sampler ancestral, or train with a schedule that ends near 0 (--timesteps 1000 \
             --schedule linear, or cosine)",
            cfg.n_timesteps,
            cfg.schedule,
            100.0 * alpha_bar.sqrt()
        )
    })
}

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
    if args.ddim_eta == Some(0.0) || args.dpm_solver {
        if let Some(note) = terminal_signal_note(&cfg) {
            eprintln!("note: {note}");
        }
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
                spacing: args.spacing,
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
                spacing: args.spacing,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::BetaSchedule;

    #[test]
    fn deterministic_samplers_are_warned_of_a_schedule_that_keeps_signal_at_t() {
        let toy = TrainConfig::toy();
        let note = terminal_signal_note(&toy).expect("the toy's schedule keeps signal");
        assert!(note.contains("alpha_bar_T = 0.778"), "{note}");
        for schedule in [BetaSchedule::Linear, BetaSchedule::Cosine] {
            let cfg = TrainConfig {
                n_timesteps: 1000,
                schedule,
                ..TrainConfig::toy()
            };
            assert_eq!(terminal_signal_note(&cfg), None, "{schedule}");
        }
    }
}
