//! The `toy` preset's pieces (seed 000): the 2-D data, the MLP, and the outputs written after
//! training and by `ddpm sample`: samples.npy, samples.png, diffusion.gif and the MMD^2.

use std::path::Path;

use anyhow::{Context, Result};
use rand::SeedableRng;

use crate::config::TrainConfig;
use crate::data::toy::ToyData;
use crate::diffusion::gaussian::GaussianDiffusion;
use crate::diffusion::host::q_sample;
use crate::diffusion::Schedule;
use crate::gpu::Gpu;
use crate::metrics::mmd2_unbiased;
use crate::nn::mlp::Mlp;
use crate::ops::diffusion::PSampleOptions;
use crate::tensor::Tensor;
use crate::viz;

/// Independent sample sets whose MMD^2 estimates are averaged.
pub const MMD_DRAWS: u32 = 4;
/// Size of the training set, as in the seed (make_s_curve(10**4)).
pub const N_DATA: usize = 10_000;
/// Frames of each half of the GIF (forward noising, then the reverse chain).
const GIF_FRAMES_PER_HALF: usize = 40;
const PLOT_SIZE: u32 = 320;

pub fn data_kind(cfg: &TrainConfig) -> Result<ToyData> {
    cfg.data
        .parse::<ToyData>()
        .map_err(|e| anyhow::anyhow!("--data: {e}"))
}

/// The training set, fixed by the run's seed.
pub fn training_data(cfg: &TrainConfig) -> Result<Vec<[f32; 2]>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    Ok(data_kind(cfg)?.sample(N_DATA, &mut rng))
}

/// Fresh points for evaluation, independent of the training set.
pub fn fresh_data(cfg: &TrainConfig, n: usize) -> Result<Vec<[f32; 2]>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5eed_f00d_0000_0001);
    Ok(data_kind(cfg)?.sample(n, &mut rng))
}

pub fn model(cfg: &TrainConfig) -> Mlp {
    Mlp::with_output(
        2,
        if cfg.learn_sigma { 4 } else { 2 },
        cfg.hidden,
        cfg.n_timesteps,
    )
}

pub fn diffusion(gpu: &Gpu, cfg: &TrainConfig) -> Result<GaussianDiffusion> {
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(cfg.schedule, cfg.n_timesteps));
    Ok(diffusion.with_learned_variance(cfg.learn_sigma))
}

fn to_points(flat: &[f32]) -> Vec<[f32; 2]> {
    flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

/// The run's own sampler: ancestral steps over every timestep, with its variance and clipping.
pub fn default_options(cfg: &TrainConfig) -> Result<PSampleOptions> {
    Ok(PSampleOptions {
        variance: cfg.variance,
        clip_denoised: cfg.clip_denoised,
        ddim_eta: None,
        steps: None,
    })
}

pub struct SampleReport {
    /// Mean of MMD_DRAWS estimates, and its standard error.
    pub mmd2: f64,
    pub mmd2_stderr: f64,
    pub n_samples: usize,
}

/// Samples `n` points with `weights`, writes samples.npy, samples.png and diffusion.gif to
/// `out`, and returns the MMD^2 against fresh data.
pub fn write_samples(
    gpu: &Gpu,
    cfg: &TrainConfig,
    weights: &Tensor,
    n: usize,
    seed: u32,
    out: &Path,
    opts: PSampleOptions,
) -> Result<SampleReport> {
    let model = model(cfg);
    let diffusion = diffusion(gpu, cfg)?;
    let sampler = diffusion
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let t_max = cfg.n_timesteps;
    let every = t_max.div_ceil(GIF_FRAMES_PER_HALF).max(1);
    let sample_steps = sampler.n_timesteps();
    let sample_every = sample_steps.div_ceil(GIF_FRAMES_PER_HALF).max(1);
    let (x0, frames) = sampler.p_sample_loop(
        gpu,
        &model,
        weights,
        &[n, 2],
        opts,
        seed,
        Some(sample_every),
        None,
    );
    let samples = to_points(&gpu.read(&x0));
    let data = training_data(cfg)?;
    let fresh = fresh_data(cfg, n)?;
    // One estimate from 2,000 samples scatters by about +-0.0007, as much as the quality
    // differences that matter near 0.003; so the report is the mean over MMD_DRAWS independent
    // sample sets (seeds seed, seed + 1, ...), each against the same fresh data.
    let mut estimates = vec![mmd2_unbiased(&samples, &fresh, &data)];
    for k in 1..MMD_DRAWS {
        let (x, _) = sampler.p_sample_loop(
            gpu,
            &model,
            weights,
            &[n, 2],
            opts,
            seed.wrapping_add(k),
            None,
            None,
        );
        estimates.push(mmd2_unbiased(&to_points(&gpu.read(&x)), &fresh, &data));
    }
    let mmd2 = estimates.iter().sum::<f64>() / estimates.len() as f64;
    let spread =
        estimates.iter().map(|e| (e - mmd2).powi(2)).sum::<f64>() / (estimates.len() as f64 - 1.0);
    let mmd2_stderr = (spread / estimates.len() as f64).sqrt();

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let flat: Vec<f32> = samples.iter().flatten().copied().collect();
    viz::save_npy_f32(&out.join("samples.npy"), &flat, &[n, 2])?;
    let bounds = viz::Bounds::around(&data, 0.15);
    let mut plot = viz::scatter_png(&samples, Some(&data), bounds, PLOT_SIZE);
    let label = format!("{n} samples  MMD2 {mmd2:.4}");
    eprintln!(
        "MMD^2 {mmd2:.5} +- {mmd2_stderr:.5}: mean of {MMD_DRAWS} draws of {n} samples against {n} fresh data points"
    );
    viz::draw_text(&mut plot, 6, 6, &label, image::Rgb([0, 0, 0]), 2);
    viz::save_png(&plot, &out.join("samples.png"))?;

    // The GIF: seed 000's animation, q(x_t) of the data for t = 0..T, then the reverse chain.
    let schedule = &diffusion.schedule;
    let shown: Vec<[f32; 2]> = data.iter().take(n).copied().collect();
    let x_start: Vec<f64> = shown.iter().flatten().map(|&v| v as f64).collect();
    let mut images = Vec::new();
    let frame = |points: &[[f32; 2]], label: &str| {
        // Each frame scaled to its own points, as the seed's matplotlib animation does: the
        // data is ~0.1 wide while x_T is ~N(0, I).
        let mut img = viz::scatter_png(points, None, viz::Bounds::around(points, 0.1), PLOT_SIZE);
        viz::draw_text(&mut img, 6, 6, label, image::Rgb([0, 0, 0]), 2);
        img
    };
    for t in (0..t_max).step_by(every).chain(std::iter::once(t_max - 1)) {
        let noise = crate::rng::normals(seed, 0x4000_0000 + t as u32, x_start.len());
        let timesteps = vec![t as u32; shown.len()];
        let x_t = q_sample(schedule, &x_start, &noise, &timesteps);
        let pts: Vec<f32> = x_t.iter().map(|&v| v as f32).collect();
        images.push(frame(&to_points(&pts), &format!("q(x_{t})")));
    }
    for (i, f) in frames.iter().enumerate() {
        // Frame i follows min(i * sample_every, steps) reverse steps.
        let done = (i * sample_every).min(sample_steps);
        let pts = to_points(&gpu.read(f));
        images.push(frame(&pts, &format!("p step {done}/{sample_steps}")));
    }
    // Hold the last frame so the loop pauses on the result.
    let last = images.last().cloned();
    images.extend(std::iter::repeat_n(last, 12).flatten());
    viz::save_gif(&images, 60, &out.join("diffusion.gif"))?;
    Ok(SampleReport {
        mmd2,
        mmd2_stderr,
        n_samples: n,
    })
}
