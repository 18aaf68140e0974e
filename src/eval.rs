//! `ddpm eval`: negative log-likelihood in bits/dim from the variational bound, IDDPM's
//! evaluation: L_T (the prior term, on the host) + sum over every t of the KL terms + the
//! decoder term at t = 0 (discretised for images, a Gaussian density for the 2-D toy), and a
//! faster estimate from sampled t (T times the mean of a few L_t). Both with standard errors
//! over the evaluated examples. Models with a fixed variance are scored with that variance:
//! the posterior's, or beta_t, which at t = 0 is replaced by the posterior variance of t = 1 as
//! in improved-diffusion's FIXED_LARGE (beta_0 is tiny and would make the decoder term
//! meaningless; sampling is unaffected, since the last step adds no noise).
//!
//! Every draw is keyed by the example's index in the whole set (its noise by element index, its
//! sampled timesteps by example index), so the estimates do not depend on how the examples are
//! batched; a --batch-size larger than the device's storage bindings allow is lowered to what
//! fits. Ctrl-C stops at the next model evaluation and reports the batches finished before.
//!
//! `quality` (`ddpm eval --quality`) draws samples from an image checkpoint with the sampling
//! code `ddpm sample` uses and scores them with crate::quality against the data set.

use std::path::Path;

use anyhow::{bail, Result};

use crate::autograd::Ctx;
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::diffusion::gaussian::{ClassGuidance, GaussianDiffusion};
use crate::diffusion::host::prior_bpd;
use crate::diffusion::VarianceKind;
use crate::gpu::Gpu;
use crate::nn::Denoiser;
use crate::ops;
use crate::tensor::Tensor;

pub struct EvalArgs<'a> {
    pub checkpoint: &'a Path,
    /// Held-out data; default: MNIST's test set for MNIST runs, fresh points for the toy.
    pub data: Option<String>,
    pub n: usize,
    pub batch_size: usize,
    /// Timesteps per example for the fast estimate.
    pub t_samples: usize,
    /// Also compute the full bound over every timestep (T model evaluations per batch).
    pub full: bool,
    pub seed: u32,
    pub use_ema: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Estimate {
    pub mean: f64,
    pub stderr: f64,
}

impl Estimate {
    fn of(values: &[f64]) -> Estimate {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Estimate {
            mean,
            stderr: (var / n).sqrt(),
        }
    }
}

#[derive(Debug)]
pub struct EvalReport {
    pub n: usize,
    pub full: Option<Estimate>,
    pub sampled: Estimate,
    pub data: String,
    /// Ctrl-C stopped the evaluation: the estimates are over the `n` examples of the batches
    /// finished before it.
    pub interrupted: bool,
    /// The batch the examples were scored in (--batch-size, or less where the device needs).
    pub batch_size: usize,
}

/// The examples to score, flattened in the model's layout, and the shape of one.
fn held_out(
    cfg: &TrainConfig,
    data: Option<&str>,
    n: usize,
) -> Result<(Vec<f32>, Vec<usize>, String)> {
    match &cfg.unet {
        None => {
            if let Some(data) = data {
                bail!(
                    "--data {data}: a toy checkpoint is evaluated on fresh points of its own \
                     distribution ({}); --data applies to image checkpoints: drop it",
                    cfg.data
                );
            }
            let points = crate::presets::toy::fresh_data(cfg, n)?;
            Ok((
                points.iter().flatten().copied().collect(),
                vec![2],
                format!("{} fresh {} points", n, cfg.data),
            ))
        }
        Some(unet) => {
            let default = crate::data::images::resolve(&cfg.data).join("t10k-images-idx3-ubyte.gz");
            let path = match data {
                Some(d) => d.to_owned(),
                None if default.is_file() => default.display().to_string(),
                None => cfg.data.clone(),
            };
            let set = if Path::new(&crate::data::images::resolve(&path)).is_file() {
                crate::data::idx::read_images(&crate::data::images::resolve(&path))?
            } else {
                crate::data::images::load(&path, unet.image_size, unet.in_channels)?
            };
            if set.height != unet.image_size
                || set.width != unet.image_size
                || set.channels != unet.in_channels
            {
                bail!(
                    "{path} holds {}x{}x{} images; the model expects {s}x{s}x{}",
                    set.height,
                    set.width,
                    set.channels,
                    unet.in_channels,
                    s = unet.image_size
                );
            }
            let set = set.take(n);
            let indices: Vec<usize> = (0..set.n).collect();
            let x = crate::data::images::batch_nchw(&set, &indices, &vec![false; set.n]);
            Ok((
                x,
                vec![unet.in_channels, unet.image_size, unet.image_size],
                format!("{} images of {path}", set.n),
            ))
        }
    }
}

struct Scorer<'a> {
    gpu: &'a Gpu,
    model: &'a dyn Denoiser,
    diffusion: &'a GaussianDiffusion,
    weights: &'a Tensor,
    fixed_v: f32,
    seed: u32,
}

impl Scorer<'_> {
    /// Per-element VLB terms (bits) of the batch x_0 at per-example timesteps `t_host`; its
    /// noise is draws `first`, `first + 1`, ... of `stream` (first: the batch's first element
    /// in the whole set).
    fn terms(&self, x_start: &Tensor, t_host: &[u32], stream: u32, first: u64) -> Tensor {
        let gpu = self.gpu;
        let t = &gpu.upload_u32(t_host, &[t_host.len()]);
        let noise = ops::rng::normal_from(gpu, &x_start.shape, self.seed, stream, first);
        let x_t = ops::diffusion::q_sample(gpu, &self.diffusion.table, x_start, &noise, t);
        let mut cx = Ctx::no_grad(gpu);
        let params = self.model.layout().vars(&mut cx, self.weights, None);
        let x_var = cx.constant(x_t.clone());
        let out = self
            .model
            .forward(&mut cx, &params, &x_var, crate::nn::Conditioning::at(t));
        let (eps, v) = if self.diffusion.learn_sigma {
            let (a, b) = split(gpu, &out.tensor, &x_start.shape);
            (a, b)
        } else {
            // FIXED_LARGE at t = 0 is the posterior variance of t = 1: the clipped posterior
            // log variance of t = 0, which v = -1 selects.
            let per_example = x_start.numel() / t_host.len();
            let v: Vec<f32> = t_host
                .iter()
                .flat_map(|&t| {
                    let v = if t == 0 { -1.0 } else { self.fixed_v };
                    std::iter::repeat_n(v, per_example)
                })
                .collect();
            (out.tensor, gpu.upload(&v, &x_start.shape))
        };
        // The VLB reads eps: the model's output converted from its prediction target.
        let table = &self.diffusion.table;
        let prediction = self.diffusion.objective.prediction;
        let eps = crate::diffusion::prediction::model_eps(gpu, prediction, table, &x_t, &eps, t);
        let inputs = ops::vlb::VlbInputs {
            table: self.diffusion.table.clone(),
            x_start: x_start.clone(),
            x_t,
            eps,
            timesteps: t.clone(),
            continuous: x_start.shape.len() == 2,
        };
        ops::vlb::vb_terms(gpu, &inputs, &v)
    }
}

/// The noise and variance halves of a 2C-channel output, shaped like x.
fn split(gpu: &Gpu, out: &Tensor, x_shape: &[usize]) -> (Tensor, Tensor) {
    let (n, c) = (x_shape[0], x_shape[1]);
    let rest: usize = x_shape[2..].iter().product();
    let (a, b) = ops::resample::concat_backward(gpu, &out.reshape(&[n, 2 * c, rest.max(1), 1]), c);
    (a.reshape(x_shape), b.reshape(x_shape))
}

fn per_example_means(values: &[f32], n: usize) -> Vec<f64> {
    let per = values.len() / n;
    values
        .chunks(per)
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / per as f64)
        .collect()
}

pub fn run(gpu: &Gpu, args: &EvalArgs) -> Result<EvalReport> {
    let ckpt = checkpoint::load(args.checkpoint)?;
    let cfg = ckpt.config.clone();
    cfg.validate().map_err(anyhow::Error::msg)?;
    let model: Box<dyn Denoiser> = match &cfg.unet {
        None => Box::new(crate::presets::toy::model(&cfg)),
        Some(_) => Box::new(crate::presets::images::model(&cfg)?),
    };
    ckpt.check_layout(args.checkpoint, model.layout())?;
    let diffusion = match &cfg.unet {
        None => crate::presets::toy::diffusion(gpu, &cfg)?,
        Some(_) => crate::presets::images::diffusion(gpu, &cfg)?,
    };
    if args.n == 0 || args.batch_size == 0 || args.t_samples == 0 {
        bail!("--n, --batch-size and --t-samples must be positive");
    }
    if u32::try_from(args.n).is_err() {
        bail!(
            "--n {} is more than the {} examples eval can key its draws by: lower --n",
            args.n,
            u32::MAX
        );
    }
    let batch_size = match &cfg.unet {
        None => crate::presets::toy::chain_points(gpu, &cfg, Some(args.batch_size))?,
        Some(unet) => crate::chunked::max_chunk(
            gpu,
            crate::presets::images::bytes_per_image(unet),
            Some(args.batch_size),
        )?,
    };
    if batch_size < args.batch_size {
        eprintln!(
            "--batch-size {}: scoring {batch_size} examples at a time, what one batch may hold \
             on {} (the estimates do not depend on the batch)",
            args.batch_size, gpu.info.name
        );
    }
    let host = if args.use_ema {
        &ckpt.state.ema
    } else {
        &ckpt.state.params
    };
    let weights = gpu.upload(host, &[host.len()]);
    // A fixed variance as a constant v: +1 gives log(beta_t), -1 the clipped posterior.
    let fixed_v = match cfg.variance {
        VarianceKind::Beta => 1.0,
        VarianceKind::Posterior => -1.0,
    };
    let (data, example_shape, description) = held_out(&cfg, args.data.as_deref(), args.n)?;
    let per_example: usize = example_shape.iter().product();
    let n = data.len() / per_example;
    let scorer = Scorer {
        gpu,
        model: model.as_ref(),
        diffusion: &diffusion,
        weights: &weights,
        fixed_v,
        seed: args.seed,
    };
    let t_max = diffusion.n_timesteps();
    let work = n.div_ceil(batch_size) * (args.t_samples + if args.full { t_max } else { 0 });
    let bar = crate::progress::bar("eval", work as u64);
    let (mut full, mut sampled) = (Vec::new(), Vec::new());
    let mut interrupted = false;
    'batches: for (batch_index, chunk) in data.chunks(batch_size * per_example).enumerate() {
        let b = chunk.len() / per_example;
        let first_example = batch_index * batch_size;
        let first = (first_example * per_example) as u64;
        let mut shape = vec![b];
        shape.extend(&example_shape);
        let x_start = gpu.upload(chunk, &shape);
        let x64: Vec<f64> = chunk.iter().map(|&v| v as f64).collect();
        let prior: Vec<f64> = x64
            .chunks(per_example)
            .map(|x| prior_bpd(&diffusion.schedule, x))
            .collect();
        let mut batch_full = Vec::new();
        if args.full {
            let mut acc = gpu.zeros(&shape);
            for t in 0..t_max {
                if crate::interrupt::requested() {
                    interrupted = true;
                    break 'batches;
                }
                let tt = vec![t as u32; b];
                let terms = scorer.terms(&x_start, &tt, t as u32, first);
                acc = ops::arith::add(gpu, &acc, &terms);
                gpu.submit();
                bar.inc(1);
            }
            let sums = per_example_means(&gpu.read(&acc), b);
            batch_full.extend(sums.iter().zip(&prior).map(|(s, p)| s + p));
        }
        let mut acc = gpu.zeros(&shape);
        for k in 0..args.t_samples {
            if crate::interrupt::requested() {
                interrupted = true;
                break 'batches;
            }
            let stream = 0x8000 + k as u32;
            let t: Vec<u32> = (0..b)
                .map(|i| {
                    let example = (first_example + i) as u32;
                    crate::rng::random_bits(args.seed, stream, example)[0] % t_max as u32
                })
                .collect();
            let terms = scorer.terms(&x_start, &t, stream.wrapping_add(0x4000), first);
            acc = ops::arith::add(gpu, &acc, &terms);
            // One submit per evaluation, so Ctrl-C is seen within one.
            gpu.submit();
            bar.inc(1);
        }
        let means = per_example_means(&gpu.read(&acc), b);
        let scale = t_max as f64 / args.t_samples as f64;
        sampled.extend(means.iter().zip(&prior).map(|(m, p)| scale * m + p));
        full.extend(batch_full);
    }
    bar.finish_and_clear();
    gpu.wait();
    if sampled.is_empty() {
        return Err(crate::interrupt::Interrupted {
            kept: format!(
                "no batch of {batch_size} examples was finished, so there is no estimate (eval \
                 writes no files)"
            ),
        }
        .into());
    }
    if sampled.iter().any(|v| !v.is_finite()) {
        bail!(
            "the bound is not finite for {}: the checkpoint's weights are broken",
            args.checkpoint.display()
        );
    }
    Ok(EvalReport {
        n: sampled.len(),
        full: args.full.then(|| Estimate::of(&full)),
        sampled: Estimate::of(&sampled),
        data: if interrupted {
            format!("the first {} of {description}", sampled.len())
        } else {
            description
        },
        interrupted,
        batch_size,
    })
}

/// `ddpm eval --quality`: what to sample from which checkpoint, and against what.
pub struct QualityArgs<'a> {
    pub checkpoint: &'a Path,
    /// The data set to compare with; default: the checkpoint's training data.
    pub data: Option<String>,
    /// Samples to draw.
    pub n: usize,
    pub seed: u32,
    /// Where the evaluator's classifier is cached if the data's folder is not writable;
    /// default: the checkpoint's folder.
    pub cache: Option<std::path::PathBuf>,
    /// Class-conditional checkpoints: `--class K|NAME|all` (None: unconditional samples), and
    /// the guidance scale. With classes, the report adds how often the classifier agrees.
    pub class: Option<&'a str>,
    pub guidance: f32,
}

/// Draws `n` samples from the checkpoint's EMA weights (with its sampling settings, respaced
/// as `ddpm sample` does on a software adapter) and scores them.
pub fn quality(gpu: &Gpu, args: &QualityArgs) -> Result<crate::quality::QualityReport> {
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    crate::class_choice::check_guidance(args.guidance)?;
    let ckpt = checkpoint::load(args.checkpoint)?;
    let mut cfg = ckpt.config.clone();
    let Some(unet) = cfg.unet.clone() else {
        bail!(
            "--quality scores image samples; {} is a toy checkpoint, which `ddpm sample` scores \
             by MMD (and `ddpm eval` per class when it is class-conditional)",
            args.checkpoint.display()
        );
    };
    unet.validate().map_err(anyhow::Error::msg)?;
    let model = crate::presets::images::model(&cfg)?;
    ckpt.check_layout(args.checkpoint, &model.layout)?;
    let classes = match args.class {
        None => {
            if args.guidance != 1.0 {
                bail!(
                    "--guidance applies to class-conditional samples: add --class K or --class all"
                );
            }
            None
        }
        Some(arg) => {
            let names = cfg.class_cond.then_some(&cfg.classes[..]);
            let choice = crate::class_choice::parse(arg, names)?;
            Some(crate::class_choice::per_sample(&choice, args.n, cfg.classes.len()).0)
        }
    };
    let data = args.data.clone().unwrap_or_else(|| cfg.data.clone());
    let cache = args
        .cache
        .clone()
        .or_else(|| args.checkpoint.parent().map(Path::to_path_buf));
    // The classifier first: a data set that cannot be evaluated fails before minutes of sampling.
    let evaluator = crate::quality::Evaluator::for_data(
        gpu,
        &data,
        Some((unet.image_size, unet.in_channels)),
        cache.as_deref(),
    )?;
    if let Some(software) = crate::presets::images::software_sampling(gpu, &cfg) {
        eprintln!(
            "software adapter: sampling with {} respaced steps",
            software.sample_steps.unwrap_or(0)
        );
        cfg = software;
    }
    let weights = gpu.upload(&ckpt.state.ema, &[ckpt.state.ema.len()]);
    let guidance = classes.as_ref().map(|classes| ClassGuidance {
        classes,
        scale: args.guidance,
    });
    let n = classes.as_ref().map_or(args.n, Vec::len);
    crate::presets::images::sample_and_score(
        gpu, &cfg, &weights, &evaluator, n, args.seed, guidance,
    )
}
