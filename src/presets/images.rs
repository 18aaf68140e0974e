//! The image presets (`mnist`, `emoji`, `rgb64`): their configurations, batches of images (with random
//! flips), the UNet, training with sample grids and a loss curve, and sampling: samples.png (a grid), samples.npy (u8, N x H x W x C) and
//! denoise.gif (the chain from noise to image).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::{Preset, TrainConfig};
use crate::data::images::{self, to_u8_nhwc};
use crate::diffusion::gaussian::{streams, BatchRows};
use crate::diffusion::gaussian::{ChainOptions, ClassGuidance, GaussianDiffusion};
use crate::diffusion::{BetaSchedule, Prediction, Schedule, VarianceKind};
use crate::gpu::Gpu;
use crate::nn::unet::{UNet, UNetConfig};
use crate::ops::diffusion::PSampleOptions;
use crate::optim::{LrSchedule, TrainState};
use crate::tensor::Tensor;
use crate::train::{self, BatchSource, LoopOptions, RunReport, Start};
use crate::viz;

/// Frames of denoise.gif (plus the final image, held).
const GIF_FRAMES: usize = 40;

impl TrainConfig {
    /// Preset `mnist` of shared/MODEL.md: the default job.
    pub fn mnist() -> TrainConfig {
        TrainConfig {
            preset: Preset::Mnist,
            data: "assets/mnist".into(),
            hidden: 0,
            n_timesteps: 1000,
            schedule: BetaSchedule::Linear,
            steps: 10_000,
            batch_size: 64,
            lr: 2e-4,
            warmup_steps: 500,
            grad_clip: 1.0,
            ema_decay: 0.999,
            antithetic: false,
            seed: 0,
            n_samples: 64,
            variance: VarianceKind::Beta,
            clip_denoised: true,
            log_every: 50,
            checkpoint_every: 1000,
            unet: Some(UNetConfig {
                image_size: 28,
                in_channels: 1,
                out_channels: 1,
                base_channels: 32,
                channel_mult: vec![1, 2, 2],
                num_res_blocks: 2,
                attention_resolutions: vec![7],
                groups: 8,
                dropout: 0.1,
            }),
            flip: false,
            sample_every: 2000,
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

    /// Preset `emoji`: seed 003's recipe at 32x32 on Noto Emoji.
    pub fn emoji() -> TrainConfig {
        TrainConfig {
            preset: Preset::Emoji,
            data: "assets/noto-emoji-32/noto-emoji-32x32x3-idx4-ubyte.gz".into(),
            flip: true,
            unet: Some(UNetConfig {
                image_size: 32,
                in_channels: 3,
                out_channels: 3,
                base_channels: 64,
                channel_mult: vec![1, 2, 2, 2],
                num_res_blocks: 2,
                attention_resolutions: vec![8],
                groups: 32,
                dropout: 0.1,
            }),
            ..TrainConfig::mnist()
        }
    }

    /// Preset `rgb64`: seed 003's recipe (64x64 colour photos, random flips, T = 300 linear
    /// betas, batch 128) with a UNet sized for 64x64 (improved-diffusion's 64x64 layout at half
    /// its width: ch 64, multipliers (1, 2, 2, 4), attention at 16x16 and 8x8) and the
    /// posterior variance when sampling. The data are the user's: --data FOLDER.
    pub fn rgb64() -> TrainConfig {
        TrainConfig {
            preset: Preset::Rgb64,
            data: String::new(),
            flip: true,
            n_timesteps: 300,
            batch_size: 128,
            variance: VarianceKind::Posterior,
            unet: Some(UNetConfig {
                image_size: 64,
                in_channels: 3,
                out_channels: 3,
                base_channels: 64,
                channel_mult: vec![1, 2, 2, 4],
                num_res_blocks: 2,
                attention_resolutions: vec![16, 8],
                groups: 32,
                dropout: 0.1,
            }),
            ..TrainConfig::mnist()
        }
    }
}

pub fn unet_config(cfg: &TrainConfig) -> Result<&UNetConfig> {
    cfg.unet
        .as_ref()
        .context("this preset has no UNet configuration")
}

pub fn diffusion(gpu: &Gpu, cfg: &TrainConfig) -> Result<GaussianDiffusion> {
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(cfg.schedule, cfg.n_timesteps));
    Ok(diffusion
        .with_learned_variance(cfg.learn_sigma)
        .with_objective(cfg.objective()))
}

/// Bytes per image of the UNet's widest tensor: a concatenation at level 0 (2x the level's
/// channels, at most the widest level plus a skip) at full resolution, or attention weights
/// [hw, hw].
pub fn bytes_per_image(unet: &UNetConfig) -> u64 {
    let max_mult = unet.channel_mult.iter().max().copied().unwrap_or(1);
    let channels = 2 * unet.base_channels * max_mult;
    let pixels = unet.image_size * unet.image_size;
    let widest = (channels * pixels * 4) as u64;
    let attn = unet
        .attention_resolutions
        .iter()
        .map(|r| (r * r * r * r * 4) as u64)
        .max()
        .unwrap_or(0);
    widest.max(attn)
}

/// Refuses batches whose largest activation would not fit one storage binding of the device.
pub fn check_batch_fits(gpu: &Gpu, unet: &UNetConfig, batch: usize, what: &str) -> Result<()> {
    let need = (batch as u64).saturating_mul(bytes_per_image(unet));
    if need > gpu.max_binding_bytes() {
        bail!(
            "{what} {batch} needs {} MiB in one buffer, more than this device allows ({} MiB per \
             storage binding on {}): lower {what}",
            need >> 20,
            gpu.max_binding_bytes() >> 20,
            gpu.info.name
        );
    }
    Ok(())
}

/// On a software adapter, `cfg` with its sample grids cut to 16 images, of 50 respaced steps
/// unless the run chose its sampling steps: a full 1000-step chain for a 64-image grid takes
/// hours on a CPU. Choosing the steps does not lift the grid's cut (each image costs the same
/// whatever the steps). None on GPUs.
pub fn software_sampling(gpu: &Gpu, cfg: &TrainConfig) -> Option<TrainConfig> {
    gpu.is_cpu().then(|| TrainConfig {
        sample_steps: cfg.sample_steps.or(Some(50.min(cfg.n_timesteps))),
        n_grid: cfg.n_grid.min(SOFTWARE_GRID),
        ..cfg.clone()
    })
}

/// Respaced steps of the samples training's evaluations score when the run sets no
/// sample_steps: all of mnist's 1,000 would make the end-of-run FID of 2,000 images cost more
/// than the training itself; 100 keep it near a quarter of it, the same at every evaluation.
pub const EVAL_SAMPLE_STEPS: usize = 100;

/// Images in a sample grid on a software adapter.
pub const SOFTWARE_GRID: usize = 16;

/// Batches of images drawn by the step number, each flipped with probability 1/2 when `flip`.
pub struct ImageBatches {
    pub set: crate::data::idx::ImageSet,
    /// Each image's class (a class-conditional run).
    pub labels: Option<Vec<u32>>,
    pub batch_size: usize,
    pub flip: bool,
}

impl BatchSource for ImageBatches {
    fn shape(&self) -> Vec<usize> {
        vec![
            self.batch_size,
            self.set.channels,
            self.set.height,
            self.set.width,
        ]
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
        let indices = train::batch_indices(seed, step, rows.clone(), self.set.n);
        if let (Some(out), Some(all)) = (labels, &self.labels) {
            for (dst, &i) in out.iter_mut().zip(&indices) {
                *dst = all[i];
            }
        }
        let stream = streams::for_step(step, streams::FLIP);
        let flips: Vec<bool> = rows
            .map(|i| self.flip && crate::rng::uniform(seed, stream, i as u32) < 0.5)
            .collect();
        out.copy_from_slice(&images::batch_nchw(&self.set, &indices, &flips));
    }
}

/// Trains the UNet (from `out`'s checkpoint with `resume`) with sample grids along the way, then
/// writes loss.png and the samples.
pub fn run(gpu: &Gpu, cfg: &TrainConfig, out: &Path, start: Start) -> Result<RunReport> {
    // The cut applies to this run's pictures only: the checkpoint keeps the run's own choice, so
    // the run resumed or sampled on a GPU gets its full grids.
    let software = software_sampling(gpu, cfg);
    let grids = match &software {
        Some(software) => {
            crate::parallel::root_eprintln(format_args!(
                "software adapter: sample grids of {} images with {} respaced steps (--sample-steps N changes the steps)",
                software.n_grid,
                software.sample_steps.unwrap_or(0)
            ));
            software
        }
        None => cfg,
    };
    let unet_cfg = unet_config(cfg)?;
    check_batch_fits(gpu, unet_cfg, cfg.batch_size, "--batch-size")?;
    check_batch_fits(gpu, unet_cfg, grids.n_grid, "the sample grid of")?;
    let (set, labels) = if cfg.class_cond {
        crate::data::labels::load_labelled(&cfg.data, unet_cfg.image_size, unet_cfg.in_channels)?
    } else {
        let set = images::load(&cfg.data, unet_cfg.image_size, unet_cfg.in_channels)?;
        (set, None)
    };
    let cfg = &cfg
        .with_classes(labels.as_ref().map(|l| l.class_names.clone()))
        .map_err(anyhow::Error::msg)?;
    // The grids' settings follow the run's, classes included.
    let software = software.map(|s| TrainConfig {
        classes: cfg.classes.clone(),
        ..s
    });
    let grids = software.as_ref().unwrap_or(cfg);
    let model = model(cfg)?;
    let _claimed = train::prepare_out_dir(cfg, out, start)?;
    let diffusion = diffusion(gpu, cfg)?;
    let mut state = train::start_state(gpu, cfg, &model, out, start.is_resume())?;
    crate::parallel::root_eprintln(format_args!(
        "model: UNet, {} parameters; data: {} ({} images of {}x{}x{}); T = {} ({} betas); step {} of {}",
        model.layout.n_params(),
        cfg.data,
        set.n,
        set.height,
        set.width,
        set.channels,
        cfg.n_timesteps,
        cfg.schedule,
        state.step,
        cfg.steps
    ));
    let batches = ImageBatches {
        set,
        labels: labels.map(|l| l.of_image),
        batch_size: cfg.batch_size,
        flip: cfg.flip,
    };
    let first = state.step;
    let mut sample_hook = |gpu: &Gpu, state: &TrainState| -> Result<()> {
        let grid = sample_grid(
            gpu,
            grids,
            &model,
            &diffusion,
            &state.ema,
            grids.n_grid,
            cfg.seed as u32,
        )?;
        viz::save_png(
            &grid,
            &out.join(format!("samples-step{:06}.png", state.step)),
        )?;
        Ok(())
    };
    let options = LoopOptions {
        gpu,
        cfg,
        model: &model,
        diffusion: &diffusion,
        batches: &batches,
        out,
    };
    // The evaluator (its classifier trained once and cached beside the data or in the run
    // directory) is built at the first evaluation, so training starts at once.
    let mut evaluator: Option<crate::quality::Evaluator> = None;
    let eval_cfg = TrainConfig {
        sample_steps: grids
            .sample_steps
            .or(Some(EVAL_SAMPLE_STEPS.min(cfg.n_timesteps))),
        ..grids.clone()
    };
    let mut eval_hook = |gpu: &Gpu, state: &TrainState| -> Result<Vec<(&'static str, f64)>> {
        if evaluator.is_none() {
            let shape = Some((unet_cfg.image_size, unet_cfg.in_channels));
            evaluator = Some(crate::quality::Evaluator::for_data(
                gpu,
                &cfg.data,
                shape,
                Some(out),
            )?);
        }
        let evaluator = evaluator.as_ref().expect("built above");
        let classes = cfg.n_classes().map(|k| {
            crate::class_choice::per_sample(&crate::class_choice::ClassChoice::All, cfg.n_eval, k).0
        });
        let guidance = classes.as_ref().map(|classes| ClassGuidance {
            classes,
            scale: 1.0,
        });
        let n = classes.as_ref().map_or(cfg.n_eval, Vec::len);
        let report = sample_and_score(
            gpu,
            &eval_cfg,
            &state.ema,
            evaluator,
            n,
            cfg.seed as u32,
            guidance,
        )?;
        eprintln!(
            "step {} (EMA samples, {} respaced steps): {report}",
            state.step,
            eval_cfg.sample_steps.unwrap_or(cfg.n_timesteps)
        );
        let mut figures = vec![
            ("fid", report.fid),
            ("kid", report.kid),
            ("precision", report.precision),
            ("recall", report.recall),
        ];
        figures.extend(report.class_match.map(|m| ("class_match", m)));
        Ok(figures)
    };
    // Default: once at the end on a GPU; a software adapter samples thousands of images slowly,
    // so there only when asked.
    let (every, at_end) = match cfg.eval_every {
        Some(0) => (0, false),
        Some(every) => (every, true),
        None => (0, software.is_none()),
    };
    let hooks = train::Hooks {
        on_sample: &mut sample_hook,
        on_eval: (every > 0 || at_end).then_some(train::Evaluations {
            every,
            at_end,
            hook: &mut eval_hook,
        }),
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
    write_loss_plot(out)?;
    if !done.interrupted {
        let classes = grid_classes(grids, grids.n_grid);
        let guidance = classes.as_ref().map(|classes| ClassGuidance {
            classes,
            scale: 1.0,
        });
        write_samples_chunked(
            gpu,
            grids,
            &state.ema,
            classes.as_ref().map_or(grids.n_grid, Vec::len),
            cfg.seed as u32,
            out,
            default_options(grids)?,
            None,
            guidance,
        )
        .map_err(|e| {
            crate::interrupt::exit_if_interrupted(e, &crate::chunked::after_training(out))
        })?;
    }
    Ok(RunReport {
        out_dir: out.to_path_buf(),
        steps: state.step,
        seconds: done.seconds,
        final_loss: done.final_loss,
        mmd2: None,
        losses: done.losses,
        interrupted: done.interrupted,
    })
}

pub fn default_options(cfg: &TrainConfig) -> Result<PSampleOptions> {
    Ok(PSampleOptions {
        variance: cfg.variance,
        clip_denoised: cfg.clip_denoised,
        ddim_eta: None,
        dpm_solver: false,
        spacing: None,
        steps: cfg.sample_steps,
    })
}

/// loss.png from log.txt (the whole run, resumed parts included): the loss of each logged
/// interval against the step it ends at.
fn write_loss_plot(out: &Path) -> Result<()> {
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let metrics: Vec<(f64, f64)> = read("metrics.jsonl")
        .lines()
        .filter_map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((record["step"].as_f64()?, record["loss"].as_f64()?))
        })
        .collect();
    let log: Vec<(f64, f64)> = read("log.txt")
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let step = words.nth(1)?.parse().ok()?;
            let loss = words.nth(1)?.parse().ok()?;
            Some((step, loss))
        })
        .collect();
    // A run begun before metrics.jsonl existed and resumed since has the longer history in
    // log.txt.
    let points = if metrics.len() >= log.len() {
        metrics
    } else {
        log
    };
    let plot = viz::line_plot(
        &points,
        640,
        360,
        "training loss",
        "step",
        "loss (log scale)",
    )?;
    viz::save_png(&plot, &out.join("loss.png"))?;
    Ok(())
}

fn image_shape(model: &UNet, n: usize) -> [usize; 4] {
    let c = &model.config;
    [n, c.in_channels, c.image_size, c.image_size]
}

fn to_grid(gpu: &Gpu, model: &UNet, x: &Tensor, n: usize, cols: usize) -> image::RgbImage {
    let c = &model.config;
    let pixels = to_u8_nhwc(&gpu.read(x), n, c.in_channels, c.image_size, c.image_size);
    let shape = [c.image_size, c.image_size, c.in_channels];
    viz::image_grid_cols(&pixels, n, shape, 2, cols)
}

/// The UNet of a configuration, with its class embedding when class-conditional.
pub fn model(cfg: &TrainConfig) -> Result<UNet> {
    Ok(UNet::new(unet_config(cfg)?.clone()).with_classes(cfg.n_classes()))
}

/// The classes of a class-conditional run's sample grids and final samples: n / classes of
/// each, one grid row per class (None for an unconditional run).
pub fn grid_classes(cfg: &TrainConfig, n: usize) -> Option<Vec<u32>> {
    let n_classes = cfg.n_classes()?;
    let all = crate::class_choice::ClassChoice::All;
    Some(crate::class_choice::per_sample(&all, n, n_classes).0)
}

fn sample_grid(
    gpu: &Gpu,
    cfg: &TrainConfig,
    model: &UNet,
    diffusion: &GaussianDiffusion,
    weights: &Tensor,
    n: usize,
    seed: u32,
) -> Result<image::RgbImage> {
    let opts = default_options(cfg)?;
    let sampler = diffusion
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let classes = grid_classes(cfg, n);
    let guidance = classes.as_ref().map(|classes| ClassGuidance {
        classes,
        scale: 1.0,
    });
    let n = classes.as_ref().map_or(n, Vec::len);
    let (x0, _) = sampler.p_sample_loop(
        gpu,
        model,
        weights,
        &image_shape(model, n),
        ChainOptions {
            guidance,
            ..ChainOptions::new(opts, seed)
        },
    );
    Ok(to_grid(gpu, model, &x0, n, grid_cols(n, guidance.as_ref())))
}

/// Samples n images with `weights` and writes samples.png, samples.npy and denoise.gif.
pub fn write_samples(
    gpu: &Gpu,
    cfg: &TrainConfig,
    weights: &Tensor,
    n: usize,
    seed: u32,
    out: &Path,
    opts: PSampleOptions,
) -> Result<()> {
    write_samples_chunked(gpu, cfg, weights, n, seed, out, opts, None, None)
}

/// Images per grid row: one row per class when a draw spans several classes (they come in
/// runs, class_choice::per_sample), else a square grid.
fn grid_cols(n: usize, guidance: Option<&ClassGuidance>) -> usize {
    let square = (n as f64).sqrt().ceil().max(1.0) as usize;
    let Some(classes) = guidance.map(|g| &g.classes[..n.min(g.classes.len())]) else {
        return square;
    };
    match classes.iter().position(|&y| y != classes[0]) {
        Some(run) => run,
        None => square,
    }
}

/// `write_samples` in chains of at most `max_chunk` images (and at most what fits the device;
/// crate::chunked explains why the images do not depend on it). samples.npy holds all n; the
/// grid and denoise.gif show the first chain's. Ctrl-C stops at a step boundary with an
/// Interrupted error that says what was kept.
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
) -> Result<()> {
    let unet_cfg = unet_config(cfg)?;
    let chunk = crate::chunked::max_chunk(gpu, bytes_per_image(unet_cfg), max_chunk)?;
    let model = model(cfg)?;
    let diffusion = diffusion(gpu, cfg)?
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let c = &model.config;
    let (channels, size) = (c.in_channels, c.image_size);
    let sampler = crate::chunked::ChunkedSampler {
        gpu,
        diffusion: &diffusion,
        model: &model,
        weights,
        sample_shape: &[channels, size, size],
        opts,
        seed,
        chunk,
        guidance,
    };
    let every = diffusion.n_timesteps().div_ceil(GIF_FRAMES).max(1);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let npy = out.join("samples.npy");
    let mut stream = crate::chunked::NpyStream::create(&npy, "|u1", &[size, size, channels], n)?;
    let mut shown = Vec::new();
    let bar = crate::progress::bar("sample", sampler.steps(n));
    let drawn = sampler.draw(n, Some(every), Some(&bar), &mut |first, x| {
        let b = x.len() / (channels * size * size);
        let pixels = to_u8_nhwc(&x, b, channels, size, size);
        if first == 0 {
            shown = pixels.clone();
        }
        stream.append(&pixels)
    });
    bar.finish_and_clear();
    let drawn = match drawn {
        Ok(drawn) => drawn,
        Err(e) => {
            stream.discard();
            return Err(e);
        }
    };
    if drawn.interrupted {
        return Err(crate::chunked::keep_partial(stream, out, drawn.completed, n).into());
    }
    stream.finish(&npy)?;
    let n_shown = n.min(sampler.chain_len());
    let cols = grid_cols(n_shown, guidance.as_ref());
    viz::save_png(
        &viz::image_grid_cols(&shown, n_shown, [size, size, channels], 2, cols),
        &out.join("samples.png"),
    )?;
    let mut gif: Vec<_> = drawn
        .frames
        .iter()
        .map(|f| to_grid(gpu, &model, f, n_shown, cols))
        .collect();
    let last = gif.last().cloned();
    gif.extend(std::iter::repeat_n(last, 15).flatten());
    viz::save_gif(&gif, 80, &out.join("denoise.gif"))?;
    Ok(())
}

/// Draws `n` samples with `weights` under the run's sampling settings (classes and guidance
/// when given) and scores them with `evaluator`; with classes, the report says how often the
/// classifier agrees with them. Training's --eval-every uses it too.
pub fn sample_and_score(
    gpu: &Gpu,
    cfg: &TrainConfig,
    weights: &Tensor,
    evaluator: &crate::quality::Evaluator,
    n: usize,
    seed: u32,
    guidance: Option<ClassGuidance>,
) -> Result<crate::quality::QualityReport> {
    let unet = unet_config(cfg)?;
    let model = model(cfg)?;
    let opts = crate::ops::diffusion::PSampleOptions {
        steps: cfg.sample_steps,
        ..default_options(cfg)?
    };
    let diffusion = diffusion(gpu, cfg)?
        .for_sampling(gpu, &opts)
        .map_err(anyhow::Error::msg)?;
    let (c, size) = (unet.in_channels, unet.image_size);
    let chunk = crate::chunked::max_chunk(gpu, bytes_per_image(unet), None)?;
    let sampler = crate::chunked::ChunkedSampler {
        gpu,
        diffusion: &diffusion,
        model: &model,
        weights,
        sample_shape: &[c, size, size],
        opts,
        seed,
        chunk,
        guidance,
    };
    let bar = crate::progress::bar("sample", sampler.steps(n));
    let mut pixels = Vec::with_capacity(n * size * size * c);
    let drawn = sampler.draw(n, None, Some(&bar), &mut |_, x| {
        let b = x.len() / (c * size * size);
        pixels.extend(crate::data::images::to_u8_nhwc(&x, b, c, size, size));
        Ok(())
    })?;
    bar.finish_and_clear();
    if drawn.interrupted {
        return Err(crate::interrupt::Interrupted {
            kept: format!(
                "{} of {n} samples were drawn and none were scored",
                drawn.completed
            ),
        }
        .into());
    }
    let samples = crate::data::idx::ImageSet {
        n,
        height: size,
        width: size,
        channels: c,
        pixels,
    };
    evaluator.score(gpu, &samples, guidance.map(|g| g.classes))
}
