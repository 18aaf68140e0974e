//! The `toy` preset (seed 000): its configuration, the 2-D data and its batches, the MLP, the
//! run, and the outputs written after training and by `ddpm sample`: samples.npy, samples.png,
//! diffusion.gif and the MMD^2.

use std::path::Path;

use anyhow::{Context, Result};
use rand::SeedableRng;

use crate::config::{Preset, TrainConfig};
use crate::data::toy::{Labelled, ToyData};
use crate::diffusion::gaussian::{BatchRows, ClassGuidance, GaussianDiffusion};
use crate::diffusion::host::q_sample;
use crate::diffusion::{BetaSchedule, Prediction, Schedule, VarianceKind};
use crate::gpu::Gpu;
use crate::metrics::mmd2_unbiased;
use crate::nn::mlp::Mlp;
use crate::ops::diffusion::PSampleOptions;
use crate::optim::{LrSchedule, TrainState};
use crate::tensor::Tensor;
use crate::train::{self, BatchSource, LoopOptions, RunReport, Start};
use crate::viz;

/// Independent sample sets whose MMD^2 estimates are averaged.
pub const MMD_DRAWS: u32 = 4;
/// Size of the training set, as in the seed (make_s_curve(10**4)).
pub const N_DATA: usize = 10_000;
/// Frames of each half of the GIF (forward noising, then the reverse chain).
const GIF_FRAMES_PER_HALF: usize = 40;
const PLOT_SIZE: u32 = 320;

impl TrainConfig {
    /// Preset `toy` of shared/MODEL.md: seed 000's S-curve MLP.
    pub fn toy() -> TrainConfig {
        TrainConfig {
            preset: Preset::Toy,
            data: "s-curve".into(),
            hidden: 128,
            n_timesteps: 100,
            schedule: BetaSchedule::Sigmoid,
            steps: 100_000,
            batch_size: 128,
            lr: 1e-3,
            warmup_steps: 0,
            grad_clip: 1.0,
            ema_decay: 0.99,
            antithetic: true,
            seed: 0,
            n_samples: 2000,
            variance: VarianceKind::Beta,
            clip_denoised: false,
            log_every: 100,
            checkpoint_every: 5000,
            unet: None,
            flip: false,
            sample_every: 0,
            n_grid: 64,
            learn_sigma: false,
            sample_steps: None,
            importance_sampling: false,
            lr_schedule: LrSchedule::Constant,
            lr_min: 0.0,
            ema_warmup: None,
            class_cond: false,
            classes: Vec::new(),
            p_uncond: 0.1,
            eval_every: None,
            n_eval: 2000,
            prediction: Prediction::Eps,
            min_snr_gamma: None,
            offset_noise: 0.0,
            grad_accum: 1,
        }
    }
}

pub fn data_kind(cfg: &TrainConfig) -> Result<ToyData> {
    cfg.data
        .parse::<ToyData>()
        .map_err(|e| anyhow::anyhow!("--data: {e}"))
}

/// The training set, fixed by the run's seed.
pub fn training_data(cfg: &TrainConfig) -> Result<Vec<[f32; 2]>> {
    Ok(labelled_training_data(cfg)?.0)
}

/// The training set with each point's class (moons, gaussians).
pub fn labelled_training_data(cfg: &TrainConfig) -> Result<Labelled> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    Ok(data_kind(cfg)?.sample_labelled(N_DATA, &mut rng))
}

/// Fresh points for evaluation, independent of the training set.
pub fn fresh_data(cfg: &TrainConfig, n: usize) -> Result<Vec<[f32; 2]>> {
    Ok(labelled_fresh_data(cfg, n)?.0)
}

/// `fresh_data` with each point's class (moons, gaussians).
pub fn labelled_fresh_data(cfg: &TrainConfig, n: usize) -> Result<Labelled> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5eed_f00d_0000_0001);
    Ok(data_kind(cfg)?.sample_labelled(n, &mut rng))
}

/// The run's configuration with its data set's classes when it is class-conditional (an
/// error naming the fix when the set has none).
pub fn with_data_classes(cfg: &TrainConfig) -> Result<TrainConfig> {
    cfg.with_classes(data_kind(cfg)?.classes())
        .map_err(anyhow::Error::msg)
}

pub fn model(cfg: &TrainConfig) -> Mlp {
    Mlp::with_output(
        2,
        if cfg.learn_sigma { 4 } else { 2 },
        cfg.hidden,
        cfg.n_timesteps,
    )
    .with_classes(cfg.n_classes())
}

pub fn diffusion(gpu: &Gpu, cfg: &TrainConfig) -> Result<GaussianDiffusion> {
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(cfg.schedule, cfg.n_timesteps));
    Ok(diffusion
        .with_learned_variance(cfg.learn_sigma)
        .with_objective(cfg.objective()))
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
        dpm_solver: false,
        spacing: None,
        steps: None,
    })
}

/// Refuses training batches whose hidden activations [batch, hidden] would not fit one storage
/// binding of the device.
pub fn check_batch_fits(gpu: &Gpu, cfg: &TrainConfig) -> Result<()> {
    let need = cfg.batch_size as u64 * cfg.hidden.max(4) as u64 * 4;
    if need > gpu.max_binding_bytes() {
        anyhow::bail!(
            "--batch-size {} needs {} MiB in one buffer, more than this device allows ({} MiB \
             per storage binding on {}): lower --batch-size to {} or less",
            cfg.batch_size,
            need >> 20,
            gpu.max_binding_bytes() >> 20,
            gpu.info.name,
            gpu.max_binding_bytes() / (cfg.hidden.max(4) as u64 * 4)
        );
    }
    Ok(())
}

/// Batches of points drawn from the training set by the step number.
struct ToyBatches {
    data: Vec<[f32; 2]>,
    /// Each point's class (labelled sets).
    labels: Option<Vec<u32>>,
    batch_size: usize,
}

impl BatchSource for ToyBatches {
    fn shape(&self) -> Vec<usize> {
        vec![self.batch_size, 2]
    }
    fn batch(
        &self,
        seed: u32,
        step: u64,
        rows: BatchRows,
        out: &mut [f32],
        labels: Option<&mut [u32]>,
    ) {
        let rows = rows.range();
        let indices = train::batch_indices(seed, step, rows, self.data.len());
        for (dst, &i) in out.chunks_exact_mut(2).zip(&indices) {
            dst.copy_from_slice(&self.data[i]);
        }
        if let (Some(out), Some(all)) = (labels, &self.labels) {
            for (dst, &i) in out.iter_mut().zip(&indices) {
                *dst = all[i];
            }
        }
    }
}

/// Trains the MLP (from `out`'s checkpoint with `resume`), then writes the samples and their MMD^2.
pub fn run(gpu: &Gpu, cfg: &TrainConfig, out: &Path, start: Start) -> Result<RunReport> {
    let cfg = &with_data_classes(cfg)?;
    check_batch_fits(gpu, cfg)?;
    let (data, labels) = labelled_training_data(cfg)?;
    let model = model(cfg);
    let _claimed = train::prepare_out_dir(cfg, out, start)?;
    let diffusion = diffusion(gpu, cfg)?;
    let mut state = train::start_state(gpu, cfg, &model, out, start.is_resume())?;
    crate::parallel::root_eprintln(format_args!(
        "model: MLP, {} parameters; data: {} ({} points); T = {} ({} betas); step {} of {}",
        model.layout.n_params(),
        cfg.data,
        data.len(),
        cfg.n_timesteps,
        cfg.schedule,
        state.step,
        cfg.steps
    ));
    let batches = ToyBatches {
        data,
        labels,
        batch_size: cfg.batch_size,
    };
    let first = state.step;
    let mut no_samples = |_: &Gpu, _: &TrainState| Ok(());
    let options = LoopOptions {
        gpu,
        cfg,
        model: &model,
        diffusion: &diffusion,
        batches: &batches,
        out,
    };
    let hooks = train::Hooks {
        on_sample: &mut no_samples,
        on_eval: None,
    };
    let done = train::train_loop(&options, &mut state, hooks)?;
    if !crate::parallel::ranks().is_root() {
        // The other MPI ranks only train: rank 0 writes the samples and reports.
        return Ok(RunReport {
            out_dir: out.to_path_buf(),
            steps: state.step,
            seconds: done.seconds,
            final_loss: done.final_loss,
            mmd2: None,
            losses: done.losses,
            interrupted: done.interrupted,
        });
    }
    train::print_speed(gpu, cfg, state.step - first, done.seconds);
    let mmd2 = if done.interrupted {
        None
    } else {
        let opts = default_options(cfg)?;
        Some(
            write_samples(
                gpu,
                cfg,
                &state.ema,
                cfg.n_samples,
                cfg.seed as u32,
                out,
                opts,
            )
            .map_err(|e| {
                crate::interrupt::exit_if_interrupted(e, &crate::chunked::after_training(out))
            })?
            .mmd2,
        )
    };
    Ok(RunReport {
        out_dir: out.to_path_buf(),
        steps: state.step,
        seconds: done.seconds,
        final_loss: done.final_loss,
        mmd2,
        losses: done.losses,
        interrupted: done.interrupted,
    })
}

pub struct SampleReport {
    /// Mean of MMD_DRAWS estimates, and its standard error.
    pub mmd2: f64,
    pub mmd2_stderr: f64,
    pub n_samples: usize,
    /// Class-conditional sampling: each requested class's score.
    pub per_class: Vec<ClassScore>,
}

/// How the samples drawn for one class of a labelled toy set came out.
#[derive(Clone, Debug)]
pub struct ClassScore {
    pub class: u32,
    pub name: String,
    /// Samples of this class scored.
    pub n: usize,
    /// The fraction whose nearest mode (ToyData::nearest_class) is the requested class.
    pub nearest_fraction: f64,
    /// MMD^2 against as many fresh points of the class.
    pub mmd2: f64,
}

impl std::fmt::Display for ClassScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "class {} ({}): {:.1}% of {} samples nearest its mode, MMD^2 {:.5}",
            self.class,
            self.name,
            100.0 * self.nearest_fraction,
            self.n,
            self.mmd2
        )
    }
}

/// Fresh points whose classes follow `classes` (point i of class classes[i]), drawn from a
/// pool of fresh labelled points, with each point's class.
fn fresh_matching(cfg: &TrainConfig, classes: &[u32]) -> Result<Vec<[f32; 2]>> {
    let n_classes = cfg.classes.len().max(1);
    let mut pool_size = classes.len() * n_classes + 64;
    loop {
        let (points, labels) = labelled_fresh_data(cfg, pool_size)?;
        let labels = labels.context("class-conditional toy data has labels")?;
        let mut by_class: Vec<Vec<[f32; 2]>> = vec![Vec::new(); n_classes];
        for (p, y) in points.into_iter().zip(labels) {
            by_class[y as usize].push(p);
        }
        let mut taken = vec![0usize; n_classes];
        let matched: Option<Vec<[f32; 2]>> = classes
            .iter()
            .map(|&y| {
                let point = by_class[y as usize].get(taken[y as usize]).copied();
                taken[y as usize] += 1;
                point
            })
            .collect();
        match matched {
            Some(points) => return Ok(points),
            None => pool_size *= 2,
        }
    }
}

/// `ddpm eval` of a class-conditional toy checkpoint: n / classes samples of each class drawn
/// with guidance `scale` from the EMA weights, each class scored (nearest-mode fraction,
/// MMD^2). None for an unconditional or an image checkpoint.
pub fn eval_classes(
    gpu: &Gpu,
    checkpoint: &Path,
    n: usize,
    seed: u32,
    scale: f32,
) -> Result<Option<Vec<ClassScore>>> {
    let ckpt = crate::checkpoint::load(checkpoint)?;
    let cfg = &ckpt.config;
    let Some(n_classes) = cfg.n_classes().filter(|_| cfg.unet.is_none()) else {
        return Ok(None);
    };
    crate::class_choice::check_guidance(scale)?;
    let model = model(cfg);
    ckpt.check_layout(checkpoint, &model.layout)?;
    let weights = gpu.upload(&ckpt.state.ema, &[ckpt.state.ema.len()]);
    let all = crate::class_choice::ClassChoice::All;
    let (classes, _) = crate::class_choice::per_sample(&all, n, n_classes);
    let opts = default_options(cfg)?;
    let diffusion = diffusion(gpu, cfg)?
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let sampler = crate::chunked::ChunkedSampler {
        gpu,
        diffusion: &diffusion,
        model: &model,
        weights: &weights,
        sample_shape: &[2],
        opts,
        seed,
        chunk: chain_points(gpu, cfg, None)?,
        guidance: Some(ClassGuidance {
            classes: &classes,
            scale,
        }),
    };
    let bar = crate::progress::bar("sample", sampler.steps(classes.len()));
    let mut samples = Vec::new();
    let drawn = sampler.draw(classes.len(), None, Some(&bar), &mut |_, x| {
        samples.extend(to_points(&x));
        Ok(())
    })?;
    bar.finish_and_clear();
    if drawn.interrupted {
        return Err(crate::interrupt::Interrupted {
            kept: "the per-class scores were not computed".into(),
        }
        .into());
    }
    let data = training_data(cfg)?;
    Ok(Some(class_scores(cfg, &samples, &classes, &data)?))
}

/// Each requested class's nearest-mode fraction and MMD^2 (samples[i] was drawn for
/// classes[i]).
fn class_scores(
    cfg: &TrainConfig,
    samples: &[[f32; 2]],
    classes: &[u32],
    data: &[[f32; 2]],
) -> Result<Vec<ClassScore>> {
    let kind = data_kind(cfg)?;
    let mut requested: Vec<u32> = classes.to_vec();
    requested.sort_unstable();
    requested.dedup();
    requested
        .into_iter()
        .map(|class| {
            let mine: Vec<[f32; 2]> = samples
                .iter()
                .zip(classes)
                .filter(|(_, &y)| y == class)
                .map(|(p, _)| *p)
                .collect();
            let nearest = mine
                .iter()
                .filter(|p| kind.nearest_class(**p) == Some(class))
                .count();
            let fresh = fresh_matching(cfg, &vec![class; mine.len()])?;
            Ok(ClassScore {
                class,
                name: cfg.classes.get(class as usize).cloned().unwrap_or_default(),
                n: mine.len(),
                nearest_fraction: nearest as f64 / mine.len().max(1) as f64,
                mmd2: mmd2_unbiased(&mine, &fresh, data),
            })
        })
        .collect()
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
    write_samples_chunked(gpu, cfg, weights, n, seed, out, opts, None, None)
}

/// Points the plot and each MMD^2 estimate use at most: the estimate is O(n^2) (10,000 points:
/// about a second per draw), and a plot of more points shows no more.
pub const MMD_MAX_POINTS: usize = 10_000;

/// Bytes per point of the MLP's widest tensor (a hidden layer, or the output).
pub fn bytes_per_point(cfg: &TrainConfig) -> u64 {
    (cfg.hidden.max(4) * 4) as u64
}

/// Points per chain at most, below what the device holds (262,144 of the preset's MLP in 128
/// MiB): a step of this many points takes seconds on lavapipe, so Ctrl-C is answered within
/// seconds, while a GPU is busy long before (a hidden layer is 2 GFLOP per step).
pub const MAX_CHAIN: usize = 65_536;

/// The points per chain for sampling or scoring under a requested `max` (the device's and
/// MAX_CHAIN's limits apply anyway).
pub fn chain_points(gpu: &Gpu, cfg: &TrainConfig, max: Option<usize>) -> Result<usize> {
    let max = max.map_or(MAX_CHAIN, |m| m.min(MAX_CHAIN));
    crate::chunked::max_chunk(gpu, bytes_per_point(cfg), Some(max))
}

/// `write_samples` in chains of at most `max_chunk` points (and at most what fits the device;
/// crate::chunked explains why the points do not depend on it), with a progress bar over every
/// step. samples.npy holds all n points; the plot and the MMD^2 use the first MMD_MAX_POINTS,
/// diffusion.gif the first chain's. Ctrl-C stops at a step boundary with an Interrupted error
/// that says what was kept.
#[allow(clippy::too_many_arguments)]
pub fn write_samples_chunked(
    gpu: &Gpu,
    cfg: &TrainConfig,
    weights: &Tensor,
    n: usize,
    seed: u32,
    out: &Path,
    opts: PSampleOptions,
    max_chunk: Option<usize>,
    guidance: Option<ClassGuidance>,
) -> Result<SampleReport> {
    let model = model(cfg);
    let diffusion = diffusion(gpu, cfg)?;
    let for_sampling = diffusion
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let sampler = crate::chunked::ChunkedSampler {
        gpu,
        diffusion: &for_sampling,
        model: &model,
        weights,
        sample_shape: &[2],
        opts,
        seed,
        chunk: chain_points(gpu, cfg, max_chunk)?,
        guidance,
    };
    let t_max = cfg.n_timesteps;
    let every = t_max.div_ceil(GIF_FRAMES_PER_HALF).max(1);
    let sample_steps = for_sampling.n_timesteps();
    let sample_every = sample_steps.div_ceil(GIF_FRAMES_PER_HALF).max(1);
    let scored = n.min(MMD_MAX_POINTS);
    let bar = crate::progress::bar(
        "sample",
        sampler.steps(n) + (MMD_DRAWS as u64 - 1) * sampler.steps(scored),
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let npy = out.join("samples.npy");
    let mut stream = crate::chunked::NpyStream::create(&npy, "<f4", &[2], n)?;
    let mut samples = Vec::new();
    let drawn = sampler.draw(n, Some(sample_every), Some(&bar), &mut |first, x| {
        if first < scored {
            samples.extend(to_points(&x).into_iter().take(scored - first));
        }
        stream.append(bytemuck::cast_slice(&x))
    });
    let drawn = match drawn {
        Ok(drawn) => drawn,
        Err(e) => {
            stream.discard();
            return Err(e);
        }
    };
    if drawn.interrupted {
        bar.finish_and_clear();
        return Err(crate::chunked::keep_partial(stream, out, drawn.completed, n).into());
    }
    stream.finish(&npy)?;
    let data = training_data(cfg)?;
    // Class-conditional samples are compared with fresh points of the classes asked for.
    let fresh = match guidance {
        Some(g) => fresh_matching(cfg, &g.classes[..scored])?,
        None => fresh_data(cfg, scored)?,
    };
    let per_class = match guidance {
        Some(g) => class_scores(cfg, &samples, &g.classes[..scored], &data)?,
        None => Vec::new(),
    };
    for score in &per_class {
        eprintln!("{score}");
    }
    // One estimate from 2,000 samples scatters by about +-0.0007, as much as the quality
    // differences that matter near 0.003; so the report is the mean over MMD_DRAWS independent
    // sample sets (seeds seed, seed + 1, ...), each against the same fresh data.
    let mut estimates = vec![mmd2_unbiased(&samples, &fresh, &data)];
    for k in 1..MMD_DRAWS {
        let other = crate::chunked::ChunkedSampler {
            seed: seed.wrapping_add(k),
            ..sampler
        };
        let mut points = Vec::new();
        let drawn = other.draw(scored, None, Some(&bar), &mut |_, x| {
            points.extend(to_points(&x));
            Ok(())
        })?;
        if drawn.interrupted {
            bar.finish_and_clear();
            return Err(crate::interrupt::Interrupted {
                kept: format!(
                    "{} holds all {n} samples; samples.png, diffusion.gif and the MMD^2 (draw {} \
                     of {MMD_DRAWS} was running) were not written",
                    npy.display(),
                    k + 1
                ),
            }
            .into());
        }
        estimates.push(mmd2_unbiased(&points, &fresh, &data));
    }
    bar.finish_and_clear();
    let mmd2 = estimates.iter().sum::<f64>() / estimates.len() as f64;
    let spread =
        estimates.iter().map(|e| (e - mmd2).powi(2)).sum::<f64>() / (estimates.len() as f64 - 1.0);
    let mmd2_stderr = (spread / estimates.len() as f64).sqrt();

    let bounds = viz::Bounds::around(&data, 0.15);
    let mut plot = viz::scatter_png(&samples, Some(&data), bounds, PLOT_SIZE);
    let label = if scored < n {
        format!("{n} samples ({scored} shown)  MMD2 {mmd2:.4}")
    } else {
        format!("{n} samples  MMD2 {mmd2:.4}")
    };
    eprintln!(
        "MMD^2 {mmd2:.5} +- {mmd2_stderr:.5}: mean of {MMD_DRAWS} draws of {scored} samples against {scored} fresh data points"
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
    for (i, f) in drawn.frames.iter().enumerate() {
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
        per_class,
    })
}
