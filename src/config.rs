//! Every setting of a training run, saved as config.json and in each checkpoint, so a run can
//! be repeated and a checkpoint knows which model it holds.

use serde::{Deserialize, Serialize};

use crate::diffusion::{BetaSchedule, Objective, Prediction, VarianceKind};
use crate::nn::unet::UNetConfig;
use crate::optim::{EmaWarmup, LrSchedule};

/// The recipes `ddpm train --preset` starts from; spelled `mnist`, `emoji` or `toy` in
/// config.json and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// A UNet on MNIST (the default job).
    Mnist,
    /// A UNet on Noto Emoji, colour, 32x32.
    Emoji,
    /// Seed 003's recipe: a UNet on a folder of your colour photos (--data), 64x64.
    Rgb64,
    /// An MLP on 2-D point clouds.
    Toy,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Mnist => "mnist",
            Preset::Emoji => "emoji",
            Preset::Rgb64 => "rgb64",
            Preset::Toy => "toy",
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Unknown keys are refused by name, so a misspelled setting is not silently left at its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub preset: Preset,
    /// Data set: a toy name (s-curve, swiss-roll, moons) or a path.
    pub data: String,
    /// Width of the toy MLP's hidden layers.
    pub hidden: usize,
    pub n_timesteps: usize,
    pub schedule: BetaSchedule,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub grad_clip: f64,
    pub ema_decay: f64,
    pub antithetic: bool,
    pub seed: u64,
    /// Samples drawn at the end of training (and by `ddpm sample` by default).
    pub n_samples: usize,
    /// Reverse-step variance.
    pub variance: VarianceKind,
    pub clip_denoised: bool,
    /// Loss readback interval (steps); the progress bar updates this often.
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// The image presets' network; None for the toy MLP.
    #[serde(default)]
    pub unet: Option<UNetConfig>,
    /// Random horizontal flips of training images.
    #[serde(default)]
    pub flip: bool,
    /// Steps between sample grids from the EMA weights (0: only at the end).
    #[serde(default)]
    pub sample_every: u64,
    /// Images in each sample grid.
    #[serde(default = "default_grid")]
    pub n_grid: usize,
    /// IDDPM: the model also predicts the variance (learned range) and trains on the hybrid
    /// loss L_simple + (T / 1000) L_vlb; sampling uses the learned variance.
    #[serde(default)]
    pub learn_sigma: bool,
    /// Timesteps of the sample grids and final samples (respaced); None: all T.
    #[serde(default)]
    pub sample_steps: Option<usize>,
    /// Draw t with p_t proportional to sqrt(E[L_t^2]) over the last 10 losses of each t (once
    /// every t has 10), and weight each sample's loss by 1 / (T p_t); otherwise t is uniform.
    #[serde(default)]
    pub importance_sampling: bool,
    /// The learning rate after the warm-up: constant, or decayed to lr_min at the last step.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub lr_min: f64,
    /// diffusers' EMA warm-up (None: the EMA decays at ema_decay from the first step).
    #[serde(default)]
    pub ema_warmup: Option<EmaWarmup>,
    /// Class-conditional training for classifier-free guidance: the model adds a class
    /// embedding, and each label is trained as "no class" with probability p_uncond.
    #[serde(default)]
    pub class_cond: bool,
    /// The class names of a class-conditional run, label i = classes[i]; taken from the data
    /// when the run starts (kept here so sampling can name classes).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Probability that a training label is replaced by "no class" (class-conditional runs).
    #[serde(default = "default_p_uncond")]
    pub p_uncond: f64,
    /// Image presets: score n_eval samples of the EMA weights with the sample-quality evaluator
    /// (FID, KID, ...) every this many steps and at the end; 0 never. None: at the end of the
    /// run on a GPU, never on a software adapter (where sampling thousands of images is slow).
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// Samples each evaluation scores.
    #[serde(default = "default_n_eval")]
    pub n_eval: usize,
    /// What the model predicts: the noise (eps), the data (x0) or the velocity (v).
    #[serde(default)]
    pub prediction: Prediction,
    /// Min-SNR-gamma loss weighting (Hang et al. 2023); None: every timestep weighs 1.
    #[serde(default)]
    pub min_snr_gamma: Option<f64>,
    /// Offset noise: this times one normal per sample and channel is added to eps (0: none).
    #[serde(default)]
    pub offset_noise: f64,
    /// Gradient accumulation: each update sums the gradients of this many micro-batches of
    /// batch_size, so it trains on batch_size * grad_accum samples in one micro-batch's memory.
    #[serde(default = "default_grad_accum")]
    pub grad_accum: usize,
}

fn default_grad_accum() -> usize {
    1
}

fn default_grid() -> usize {
    64
}

fn default_p_uncond() -> f64 {
    0.1
}

fn default_n_eval() -> usize {
    2000
}

impl TrainConfig {
    /// The training objective GaussianDiffusion runs with.
    pub fn objective(&self) -> Objective {
        Objective {
            prediction: self.prediction,
            min_snr_gamma: self.min_snr_gamma,
            offset_noise: self.offset_noise,
        }
    }

    /// IDDPM's options on any preset: cosine schedule, learned-range variance, hybrid loss.
    pub fn with_iddpm(mut self) -> TrainConfig {
        self.schedule = BetaSchedule::Cosine;
        self.learn_sigma = true;
        if let Some(unet) = &mut self.unet {
            unet.out_channels = 2 * unet.in_channels;
        }
        self
    }

    /// Reads a config.json; an invalid value is reported with the field it is in and, for the
    /// named choices (preset, schedule, variance), the values allowed.
    pub fn from_json(text: &str) -> Result<TrainConfig, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let cfg: TrainConfig =
            serde_path_to_error::deserialize(&mut de).map_err(|e| match e.path().to_string() {
                path if path == "." => e.inner().to_string(),
                path => format!("{path}: {}", e.inner()),
            })?;
        de.end().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// Checks every setting, whether a preset, a config.json, a flag or a checkpoint gave it,
    /// before any GPU work or file write: a bad value is named by the flag that sets it (or by
    /// its config.json key when no flag does), with the range it must be in.
    pub fn validate(&self) -> Result<(), String> {
        match &self.unet {
            None => {
                self.data
                    .parse::<crate::data::toy::ToyData>()
                    .map_err(|e| format!("--data: {e}"))?;
                at_least("hidden", self.hidden as f64, 1.0)?;
                at_most("hidden", self.hidden as f64, MAX_HIDDEN as f64)?;
            }
            Some(unet) => {
                if self.data.trim().is_empty() {
                    return Err(format!(
                        "--data: the {} preset trains on your images: pass --data FOLDER, a \
                         folder of PNG/JPEG/GIF images (resized and centre-cropped to {}x{})",
                        self.preset, unet.image_size, unet.image_size
                    ));
                }
                unet.validate()?;
                let expected = if self.learn_sigma {
                    2 * unet.in_channels
                } else {
                    unet.in_channels
                };
                if unet.out_channels != expected {
                    return Err(format!(
                        "the UNet outputs {} channels but {} are needed ({} input channels{})",
                        unet.out_channels,
                        expected,
                        unet.in_channels,
                        if self.learn_sigma {
                            ", doubled for the learned variance"
                        } else {
                            ""
                        }
                    ));
                }
                at_least("n_grid", self.n_grid as f64, 1.0)?;
            }
        }
        at_least("n_timesteps", self.n_timesteps as f64, 1.0)?;
        at_most("n_timesteps", self.n_timesteps as f64, MAX_TIMESTEPS as f64)?;
        let betas = self.schedule.betas(self.n_timesteps);
        if let Some(b) = betas.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
            return Err(format!(
                "the {} schedule with T = {} gives a beta of {b}, outside (0, 1): use more timesteps or another schedule",
                self.schedule, self.n_timesteps
            ));
        }
        let positive = [
            ("--steps", self.steps as f64),
            ("--batch-size", self.batch_size as f64),
            ("--lr", self.lr),
            ("--n-samples", self.n_samples as f64),
            ("log_every", self.log_every as f64),
        ];
        for (name, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        if self.seed > u32::MAX as u64 {
            return Err(format!(
                "--seed must be at most {} (the kernels draw from 32-bit seeds), got {}",
                u32::MAX,
                self.seed
            ));
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return Err(format!(
                "grad_clip must be a finite number >= 0 (0 turns clipping off), got {}",
                self.grad_clip
            ));
        }
        if self.warmup_steps >= self.steps && self.warmup_steps > 0 {
            return Err(format!(
                "warmup_steps ({}) must be shorter than the run (--steps {}): lower warmup_steps \
                 in the config or raise --steps",
                self.warmup_steps, self.steps
            ));
        }
        if self.lr_schedule != LrSchedule::Constant
            && !(self.lr_min >= 0.0 && self.lr_min < self.lr)
        {
            return Err(format!(
                "--lr-min must be at least 0 and below --lr ({}) for the {} schedule, got {}",
                self.lr, self.lr_schedule, self.lr_min
            ));
        }
        if let Some(w) = self.ema_warmup {
            if !(w.inv_gamma > 0.0
                && w.inv_gamma.is_finite()
                && w.power > 0.0
                && w.power.is_finite())
            {
                return Err(format!(
                    "ema_warmup needs inv_gamma > 0 and power > 0, got {} and {}",
                    w.inv_gamma, w.power
                ));
            }
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(format!(
                "ema_decay must be in [0, 1), got {}",
                self.ema_decay
            ));
        }
        if let Some(k) = self.sample_steps {
            if k == 0 || k > self.n_timesteps {
                return Err(format!(
                    "--sample-steps must be between 1 and the {} trained timesteps, got {k}",
                    self.n_timesteps
                ));
            }
        }
        if self.importance_sampling && self.antithetic {
            return Err(
                "importance-sampled timesteps are drawn one by one on the host, which \
                        antithetic pairs would undo: set antithetic to false"
                    .into(),
            );
        }
        if let Some(gamma) = self.min_snr_gamma {
            if !(gamma > 0.0 && gamma.is_finite()) {
                return Err(format!(
                    "--min-snr must be a positive number (Hang et al. use 5), got {gamma}"
                ));
            }
        }
        if !(self.offset_noise >= 0.0 && self.offset_noise.is_finite()) {
            return Err(format!(
                "--offset-noise must be a finite number >= 0 (0 turns it off; 0.1 is usual), got {}",
                self.offset_noise
            ));
        }
        if self.grad_accum == 0 {
            return Err(
                "--grad-accum must be at least 1 (the micro-batches summed per update; 1 turns \
                 accumulation off)"
                    .into(),
            );
        }
        if self.grad_accum > 1 && self.importance_sampling {
            return Err(format!(
                "--grad-accum {} cannot be combined with importance sampling, whose timesteps \
                 are drawn for one batch at a time: drop --grad-accum and raise --batch-size, \
                 or train without --importance-sampling",
                self.grad_accum
            ));
        }
        if self.batch_size * self.grad_accum < 2 && self.antithetic {
            return Err("antithetic timesteps need --batch-size of at least 2".into());
        }
        if !(0.0..=1.0).contains(&self.p_uncond) {
            return Err(format!(
                "--p-uncond must be a probability in [0, 1], got {}",
                self.p_uncond
            ));
        }
        if self.unet.is_none() && self.eval_every.is_some_and(|e| e > 0) {
            return Err(
                "--eval-every scores image samples with the image evaluator; the toy preset \
                 prints its samples' MMD^2 at the end of the run (and `ddpm eval` scores a toy \
                 checkpoint)"
                    .into(),
            );
        }
        if self.n_eval < 8 {
            return Err(format!(
                "--n-eval must be at least 8 (the evaluator's k = 3 neighbourhoods need them; \
                 2,000 give the figures of README's calibration table), got {}",
                self.n_eval
            ));
        }
        if !self.class_cond && !self.classes.is_empty() {
            return Err(
                "classes are listed but class_cond is false: set class_cond to true (or pass \
                 --class-cond), or remove classes"
                    .into(),
            );
        }
        if self.class_cond && self.classes.len() > MAX_CLASSES {
            return Err(format!(
                "{} classes; a class-conditional model takes at most {MAX_CLASSES}",
                self.classes.len()
            ));
        }
        Ok(())
    }

    /// The number of classes of a class-conditional run (None when unconditional). Known once
    /// the data set's classes are (TrainConfig::classes).
    pub fn n_classes(&self) -> Option<usize> {
        self.class_cond.then_some(self.classes.len())
    }

    /// A class-conditional run's configuration with the data's `classes`, or an error naming
    /// the fix when the data has none or a resumed run's classes differ.
    pub fn with_classes(&self, classes: Option<Vec<String>>) -> Result<TrainConfig, String> {
        if !self.class_cond {
            return Ok(self.clone());
        }
        let Some(classes) = classes else {
            return Err(format!(
                "--class-cond: {} has no labels. Class-conditional training needs labelled data: \
                 mnist (its labels files), an IDX images file with its labels file beside it, a \
                 folder with one subfolder of images per class, or the toy sets moons and \
                 gaussians; or train without --class-cond",
                self.data
            ));
        };
        if classes.len() < 2 {
            return Err(format!(
                "--class-cond: {} has {} class; guidance needs at least 2",
                self.data,
                classes.len()
            ));
        }
        if !self.classes.is_empty() && self.classes != classes {
            return Err(format!(
                "the run was trained on the classes {:?}, but {} has {:?}: train on the same \
                 data, or start a new run",
                self.classes, self.data, classes
            ));
        }
        Ok(TrainConfig {
            classes,
            ..self.clone()
        })
    }
}

/// The most classes a class-conditional model takes (ImageNet has 1,000; a table of this many
/// rows stays small next to any UNet).
pub const MAX_CLASSES: usize = 100_000;

/// The most timesteps a run may have: DDPM trains with 1,000 and IDDPM with 4,000; far more
/// only makes every table and sampling chain longer (10^8 would take minutes before step 1).
pub const MAX_TIMESTEPS: usize = 100_000;

/// The widest toy MLP: its weights and activations stay far below any device's limits.
pub const MAX_HIDDEN: usize = 16_384;

fn at_least(name: &str, v: f64, min: f64) -> Result<(), String> {
    if v < min {
        return Err(format!("{name} must be at least {min}, got {v}"));
    }
    Ok(())
}

fn at_most(name: &str, v: f64, max: f64) -> Result<(), String> {
    if v > max {
        return Err(format!("{name} must be at most {max}, got {v}"));
    }
    Ok(())
}

/// The settings `ddpm train` takes as flags, each written once: the flag, its help, and where
/// `apply` puts it on the configuration of the preset, the config.json or the resumed run.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct ConfigOverrides {
    /// Data: for the toy preset s-curve, swiss-roll or moons; for the image presets an IDX
    /// file, a folder of MNIST-style IDX files, or a folder of PNG/JPEG/GIF images.
    #[arg(long)]
    pub data: Option<String>,
    /// IDDPM: cosine schedule, learned-range variance and the hybrid loss, on any preset.
    #[arg(long)]
    pub iddpm: bool,
    /// Importance-sampled timesteps (IDDPM): p_t proportional to the RMS of each t's recent
    /// losses, each loss weighted by 1 / (T p_t); turns off antithetic pairs.
    #[arg(long)]
    pub importance_sampling: bool,
    /// Timesteps of the sample grids and final samples (respaced; default all T, or 50 on
    /// a software adapter).
    #[arg(long)]
    pub sample_steps: Option<usize>,
    /// Steps between sample grids (0: only at the end).
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Training steps in all (a resumed run trains on to this many).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images (or points) per training step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam's learning rate (after the warm-up).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the weights, the batches and every random draw of the run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Noise schedule.
    #[arg(long, value_enum)]
    pub schedule: Option<BetaSchedule>,
    /// Samples drawn at the end of training.
    #[arg(long)]
    pub n_samples: Option<usize>,
    /// The learning rate after the warm-up: constant, or decayed to --lr-min at the last step
    /// (cosine, linear).
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrSchedule>,
    /// Where a decaying --lr-schedule ends (default 0).
    #[arg(long)]
    pub lr_min: Option<f64>,
    /// Warm the EMA up as diffusers does: decay 1 - (1 + step)^-3/4 until it reaches the
    /// run's ema_decay (0.999 at about 10,000 steps).
    #[arg(long)]
    pub ema_warmup: bool,
    /// Diffusion timesteps T.
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// The model's width: the UNet's level-0 channels, or the toy MLP's hidden units.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Image presets: the side of the square images the UNet is built for (data are resized
    /// and centre-cropped to it from a folder; IDX data must have it).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Image presets: channel multiplier of each UNet level, e.g. 1,2,2,2.
    #[arg(long, value_name = "M,M,...")]
    pub channel_mult: Option<SizeList>,
    /// Image presets: residual blocks per UNet level.
    #[arg(long)]
    pub res_blocks: Option<usize>,
    /// Image presets: feature-map sizes that get self-attention, e.g. 16,8, or none.
    #[arg(long, value_name = "SIZE,SIZE,...|none")]
    pub attention_res: Option<SizeList>,
    /// Image presets: dropout in the residual blocks.
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Image presets: group-norm groups.
    #[arg(long)]
    pub groups: Option<usize>,
    /// Class-conditional training (classifier-free guidance) on labelled data: mnist, IDX
    /// images with their labels file, a folder of class subfolders, or the toy sets moons and
    /// gaussians. Sample with `ddpm sample --class K --guidance W`.
    #[arg(long)]
    pub class_cond: bool,
    /// With --class-cond: the probability that a training label is replaced by "no class",
    /// so the same network also learns the unconditional model guidance needs (default 0.1).
    #[arg(long, requires = "class_cond")]
    pub p_uncond: Option<f64>,
    /// Image presets: score --n-eval samples of the EMA weights with the sample-quality
    /// evaluator (FID, KID, precision, recall) every N steps and at the end, logged next to the
    /// loss; 0 never (default: at the end on a GPU, never on a software adapter).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Samples each --eval-every evaluation scores (default 2000).
    #[arg(long)]
    pub n_eval: Option<usize>,
    /// What the model predicts: eps (the noise), x0 (the data) or v (the velocity
    /// sqrt(abar) eps - sqrt(1 - abar) x0); sampling and `ddpm eval` follow the run's choice.
    #[arg(long, value_enum)]
    pub prediction: Option<Prediction>,
    /// Min-SNR-gamma loss weighting with this gamma (Hang et al. 2023 use 5; default off).
    #[arg(long, value_name = "GAMMA")]
    pub min_snr: Option<f64>,
    /// Offset noise: add S times one normal per sample and channel to eps (default 0, off).
    #[arg(long, value_name = "S")]
    pub offset_noise: Option<f64>,
    /// Gradient accumulation: sum K micro-batches of --batch-size before each update, so a
    /// step trains on K x --batch-size samples in the memory of one micro-batch (default 1).
    #[arg(long, value_name = "K")]
    pub grad_accum: Option<usize>,
}

impl ConfigOverrides {
    /// Puts every given setting on `cfg`; what was not given stays. A UNet setting on the toy
    /// preset is refused, naming the flag.
    pub fn apply(&self, cfg: &mut TrainConfig) -> Result<(), String> {
        let ConfigOverrides {
            data,
            iddpm,
            importance_sampling,
            sample_steps,
            sample_every,
            steps,
            batch_size,
            lr,
            seed,
            schedule,
            n_samples,
            lr_schedule,
            lr_min,
            ema_warmup,
            timesteps,
            channels,
            image_size,
            channel_mult,
            res_blocks,
            attention_res,
            dropout,
            groups,
            class_cond,
            p_uncond,
            eval_every,
            n_eval,
            prediction,
            min_snr,
            offset_noise,
            grad_accum,
        } = self.clone();
        cfg.class_cond |= class_cond;
        set(&mut cfg.p_uncond, p_uncond);
        set(&mut cfg.eval_every, eval_every.map(Some));
        set(&mut cfg.n_eval, n_eval);
        if ema_warmup {
            cfg.ema_warmup = Some(EmaWarmup::default());
        }
        if iddpm {
            *cfg = cfg.clone().with_iddpm();
        }
        if importance_sampling {
            cfg.importance_sampling = true;
            cfg.antithetic = false;
        }
        if let Some(v) = data {
            // Image folders (photos, drawings) get random flips, as the emoji preset does.
            cfg.flip |= cfg.unet.is_some() && crate::data::images::is_image_folder(&v);
            cfg.data = v;
        }
        set(&mut cfg.sample_steps, sample_steps.map(Some));
        set(&mut cfg.sample_every, sample_every);
        set(&mut cfg.steps, steps);
        set(&mut cfg.batch_size, batch_size);
        set(&mut cfg.lr, lr);
        set(&mut cfg.seed, seed);
        set(&mut cfg.schedule, schedule);
        set(&mut cfg.n_samples, n_samples);
        set(&mut cfg.lr_schedule, lr_schedule);
        set(&mut cfg.lr_min, lr_min);
        set(&mut cfg.n_timesteps, timesteps);
        set(&mut cfg.prediction, prediction);
        set(&mut cfg.min_snr_gamma, min_snr.map(Some));
        set(&mut cfg.offset_noise, offset_noise);
        set(&mut cfg.grad_accum, grad_accum);
        match &mut cfg.unet {
            None => {
                set(&mut cfg.hidden, channels);
                let unet_only = [
                    ("--image-size", image_size.is_some()),
                    ("--channel-mult", channel_mult.is_some()),
                    ("--res-blocks", res_blocks.is_some()),
                    ("--attention-res", attention_res.is_some()),
                    ("--dropout", dropout.is_some()),
                    ("--groups", groups.is_some()),
                ];
                if let Some((flag, _)) = unet_only.iter().find(|(_, given)| *given) {
                    return Err(format!(
                        "{flag} sets the UNet of the image presets; the toy preset's MLP takes \
                         --channels (its hidden width) and --timesteps"
                    ));
                }
            }
            Some(unet) => {
                set(&mut unet.base_channels, channels);
                set(&mut unet.image_size, image_size);
                set(&mut unet.channel_mult, channel_mult.map(|l| l.0));
                set(&mut unet.num_res_blocks, res_blocks);
                set(&mut unet.attention_resolutions, attention_res.map(|l| l.0));
                set(&mut unet.dropout, dropout);
                set(&mut unet.groups, groups);
            }
        }
        Ok(())
    }
}

/// A comma-separated list of sizes on the command line (`1,2,2`); `none` or nothing is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeList(pub Vec<usize>);

impl std::str::FromStr for SizeList {
    type Err = String;
    fn from_str(s: &str) -> Result<SizeList, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(SizeList(Vec::new()));
        }
        s.split(',')
            .map(|part| {
                part.trim()
                    .parse()
                    .map_err(|_| format!("'{part}' is not a whole number (give e.g. 1,2,2)"))
            })
            .collect::<Result<_, _>>()
            .map(SizeList)
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::unet::UNetConfig;

    /// A config.json as runs wrote it when preset, schedule and variance were free strings.
    const OLD_CONFIG: &str = r#"{
  "preset": "toy", "data": "s-curve", "hidden": 128, "n_timesteps": 100,
  "schedule": "sigmoid", "steps": 100000, "batch_size": 128, "lr": 0.001,
  "warmup_steps": 0, "grad_clip": 1.0, "ema_decay": 0.99, "antithetic": true, "seed": 0,
  "n_samples": 2000, "variance": "beta", "clip_denoised": false, "log_every": 100,
  "checkpoint_every": 5000, "unet": null, "flip": false, "sample_every": 0, "n_grid": 64,
  "learn_sigma": false, "sample_steps": null, "importance_sampling": false
}"#;

    #[test]
    fn old_config_files_load_and_the_names_are_written_as_before() {
        assert_eq!(TrainConfig::from_json(OLD_CONFIG), Ok(TrainConfig::toy()));
        for (cfg, preset, schedule) in [
            (TrainConfig::toy(), "toy", "sigmoid"),
            (TrainConfig::mnist(), "mnist", "linear"),
            (TrainConfig::emoji(), "emoji", "linear"),
            (TrainConfig::mnist().with_iddpm(), "mnist", "cosine"),
        ] {
            let json = serde_json::to_value(&cfg).unwrap();
            assert_eq!(json["preset"], preset);
            assert_eq!(json["schedule"], schedule);
            assert_eq!(json["variance"], "beta");
            assert_eq!(TrainConfig::from_json(&json.to_string()), Ok(cfg));
        }
        let posterior = TrainConfig {
            variance: VarianceKind::Posterior,
            ..TrainConfig::toy()
        };
        assert_eq!(
            serde_json::to_value(&posterior).unwrap()["variance"],
            "posterior"
        );
        for preset in [Preset::Mnist, Preset::Emoji, Preset::Rgb64, Preset::Toy] {
            assert_eq!(TrainConfig::preset(preset).preset, preset);
        }
    }

    #[test]
    fn an_invalid_value_names_its_field_and_the_valid_values() {
        for (field, bad, valid) in [
            ("schedule", "quadratic", "`linear`, `sigmoid`, `cosine`"),
            ("variance", "learned", "`beta` or `posterior`"),
            ("preset", "cifar", "`mnist`, `emoji`, `rgb64`, `toy`"),
        ] {
            let mut json: serde_json::Value = serde_json::from_str(OLD_CONFIG).unwrap();
            json[field] = bad.into();
            let err = TrainConfig::from_json(&json.to_string()).unwrap_err();
            assert!(err.starts_with(&format!("{field}: ")), "{err}");
            assert!(err.contains(bad) && err.contains(valid), "{err}");
        }
        let err = TrainConfig::from_json(r#"{"preset": "toy"}"#).unwrap_err();
        assert!(err.contains("missing field"), "{err}");
    }

    /// Every range `validate` checks, each refused with the name a user set it by.
    #[test]
    fn every_setting_out_of_range_is_refused_by_its_name() {
        let image = TrainConfig::mnist;
        let toy = TrainConfig::toy;
        let cases: Vec<(TrainConfig, &str)> = vec![
            (
                TrainConfig { hidden: 0, ..toy() },
                "hidden must be at least 1",
            ),
            (
                TrainConfig {
                    hidden: MAX_HIDDEN + 1,
                    ..toy()
                },
                "hidden must be at most",
            ),
            (
                TrainConfig {
                    n_timesteps: 0,
                    ..toy()
                },
                "n_timesteps must be at least 1",
            ),
            (
                TrainConfig {
                    n_timesteps: 100_000_000,
                    ..toy()
                },
                "n_timesteps must be at most 100000",
            ),
            (
                TrainConfig { steps: 0, ..toy() },
                "--steps must be positive",
            ),
            (
                TrainConfig {
                    lr: f64::NAN,
                    ..toy()
                },
                "--lr must be positive",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..image()
                },
                "--lr must be positive",
            ),
            (
                TrainConfig {
                    n_samples: 0,
                    ..toy()
                },
                "--n-samples must be positive",
            ),
            (
                TrainConfig {
                    log_every: 0,
                    ..toy()
                },
                "log_every must be positive",
            ),
            (
                TrainConfig {
                    seed: 1 << 32,
                    ..toy()
                },
                "--seed must be at most 4294967295",
            ),
            (
                TrainConfig {
                    grad_clip: -1.0,
                    ..toy()
                },
                "grad_clip must be a finite number >= 0",
            ),
            (
                TrainConfig {
                    grad_clip: f64::NAN,
                    ..image()
                },
                "grad_clip must be",
            ),
            (
                TrainConfig {
                    warmup_steps: 500,
                    steps: 100,
                    ..image()
                },
                "warmup_steps (500) must be shorter than the run (--steps 100)",
            ),
            (
                TrainConfig {
                    ema_decay: 1.0,
                    ..toy()
                },
                "ema_decay must be in [0, 1)",
            ),
            (
                TrainConfig {
                    sample_steps: Some(0),
                    ..image()
                },
                "--sample-steps must be between 1 and the 1000 trained timesteps, got 0",
            ),
            (
                TrainConfig {
                    sample_steps: Some(5000),
                    ..image()
                },
                "--sample-steps must be between 1 and the 1000 trained timesteps, got 5000",
            ),
            (
                TrainConfig {
                    n_grid: 0,
                    ..image()
                },
                "n_grid must be at least 1",
            ),
            (
                TrainConfig {
                    lr_schedule: LrSchedule::Cosine,
                    lr_min: 1e-3,
                    lr: 1e-3,
                    ..toy()
                },
                "--lr-min must be at least 0 and below --lr (0.001) for the cosine schedule",
            ),
            (
                TrainConfig {
                    ema_warmup: Some(EmaWarmup {
                        inv_gamma: 1.0,
                        power: 0.0,
                    }),
                    ..toy()
                },
                "ema_warmup needs inv_gamma > 0 and power > 0",
            ),
        ];
        for (cfg, expected) in cases {
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(expected), "expected '{expected}', got '{err}'");
        }
        let mut unet = image().unet.unwrap();
        unet.attention_resolutions = vec![5];
        let cfg = TrainConfig {
            unet: Some(unet),
            ..image()
        };
        let err = cfg.validate().unwrap_err();
        assert!(
            err.contains("attention_resolutions: 5 is not the size of a level"),
            "{err}"
        );
        for unet in [
            UNetConfig {
                image_size: 0,
                ..image().unet.unwrap()
            },
            UNetConfig {
                channel_mult: vec![1, 0],
                ..image().unet.unwrap()
            },
            UNetConfig {
                in_channels: 0,
                out_channels: 0,
                ..image().unet.unwrap()
            },
        ] {
            let cfg = TrainConfig {
                unet: Some(unet),
                ..image()
            };
            assert!(cfg.validate().unwrap_err().contains("the UNet needs"));
        }
        // rgb64 trains on the user's images, which it has to be given.
        let err = TrainConfig::rgb64().validate().unwrap_err();
        assert!(
            err.starts_with("--data: the rgb64 preset trains on your images"),
            "{err}"
        );
        // The presets themselves, and the edges of each range, pass.
        for cfg in [
            toy(),
            image(),
            TrainConfig::emoji(),
            TrainConfig {
                data: "photos".into(),
                ..TrainConfig::rgb64()
            },
            TrainConfig {
                warmup_steps: 99,
                steps: 100,
                grad_clip: 0.0,
                ..image()
            },
            TrainConfig {
                seed: u32::MAX as u64,
                sample_steps: Some(1000),
                ..image()
            },
        ] {
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let mut json: serde_json::Value = serde_json::from_str(OLD_CONFIG).unwrap();
        json["stepz"] = 5.into();
        let err = TrainConfig::from_json(&json.to_string()).unwrap_err();
        assert!(err.contains("unknown field `stepz`"), "{err}");
        let mut json = serde_json::to_value(TrainConfig::mnist()).unwrap();
        json["unet"]["chanel_mult"] = serde_json::json!([1, 2]);
        let err = TrainConfig::from_json(&json.to_string()).unwrap_err();
        assert!(err.starts_with("unet.chanel_mult: unknown field"), "{err}");
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        overrides: ConfigOverrides,
    }

    fn parse(args: &[&str]) -> ConfigOverrides {
        use clap::Parser;
        Flags::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
            .unwrap()
            .overrides
    }

    #[test]
    fn every_flag_lands_on_its_field() {
        let mut cfg = TrainConfig::toy();
        parse(&[
            "--data",
            "moons",
            "--sample-steps",
            "7",
            "--sample-every",
            "11",
            "--steps",
            "13",
            "--batch-size",
            "17",
            "--lr",
            "0.5",
            "--seed",
            "19",
            "--schedule",
            "linear",
            "--n-samples",
            "23",
            "--importance-sampling",
            "--lr-schedule",
            "cosine",
            "--lr-min",
            "0.25",
            "--ema-warmup",
        ])
        .apply(&mut cfg)
        .unwrap();
        let expected = TrainConfig {
            data: "moons".into(),
            sample_steps: Some(7),
            sample_every: 11,
            steps: 13,
            batch_size: 17,
            lr: 0.5,
            seed: 19,
            schedule: BetaSchedule::Linear,
            n_samples: 23,
            importance_sampling: true,
            antithetic: false,
            lr_schedule: LrSchedule::Cosine,
            lr_min: 0.25,
            ema_warmup: Some(EmaWarmup::default()),
            ..TrainConfig::toy()
        };
        assert_eq!(cfg, expected);

        // --iddpm comes first, so an explicit --schedule still wins over its cosine.
        let mut cfg = TrainConfig::mnist();
        parse(&["--iddpm", "--schedule", "sigmoid"])
            .apply(&mut cfg)
            .unwrap();
        assert_eq!(
            cfg,
            TrainConfig {
                schedule: BetaSchedule::Sigmoid,
                ..TrainConfig::mnist().with_iddpm()
            }
        );

        // No flags: nothing changes.
        let mut cfg = TrainConfig::emoji();
        parse(&[]).apply(&mut cfg).unwrap();
        assert_eq!(cfg, TrainConfig::emoji());
        assert_eq!(parse(&[]), ConfigOverrides::default());

        // The model's shape, on the UNet and on the toy MLP.
        let mut cfg = TrainConfig::mnist();
        parse(&[
            "--timesteps",
            "300",
            "--channels",
            "64",
            "--image-size",
            "32",
            "--channel-mult",
            "1,2,2,2",
            "--res-blocks",
            "3",
            "--attention-res",
            "16,8",
            "--dropout",
            "0.25",
            "--groups",
            "16",
        ])
        .apply(&mut cfg)
        .unwrap();
        let mut expected = TrainConfig {
            n_timesteps: 300,
            ..TrainConfig::mnist()
        };
        expected.unet = Some(UNetConfig {
            base_channels: 64,
            image_size: 32,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 3,
            attention_resolutions: vec![16, 8],
            dropout: 0.25,
            groups: 16,
            ..TrainConfig::mnist().unet.unwrap()
        });
        assert_eq!(cfg, expected);
        let mut cfg = TrainConfig::mnist();
        parse(&["--attention-res", "none"]).apply(&mut cfg).unwrap();
        assert_eq!(cfg.unet.unwrap().attention_resolutions, Vec::<usize>::new());
        let mut cfg = TrainConfig::toy();
        parse(&["--channels", "32", "--timesteps", "50"])
            .apply(&mut cfg)
            .unwrap();
        assert_eq!((cfg.hidden, cfg.n_timesteps), (32, 50));
        let err = parse(&["--res-blocks", "3"])
            .apply(&mut TrainConfig::toy())
            .unwrap_err();
        assert!(err.starts_with("--res-blocks sets the UNet"), "{err}");
    }
}
