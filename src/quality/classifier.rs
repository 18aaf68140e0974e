//! The evaluator's feature extractor: a small CNN built from ddpm's own ops, trained with its
//! Adam on the data set's training split, whose penultimate layer gives the features that FID,
//! KID, precision/recall and the memorisation distance are measured in.
//!
//! conv3x3(C->16) SiLU, conv3x3/2(16->32) SiLU, conv3x3/2(32->32) SiLU, flatten,
//! linear(->128) SiLU = the features, linear(128->classes) = the logits.
//!
//! Why this shape: on lavapipe (2 cores, a few GFLOP/s) the budget is a couple of minutes of
//! training, so the network is ~1.7 M multiply-adds per 28x28 image; strided convolutions do the
//! downsampling (no pooling op needed), and a dense layer on the flattened 7x7 map keeps where a
//! stroke is, which a global pool would average away and which is what tells digits apart. No
//! normalisation layers: at this depth Adam trains it without them, and features that do not
//! depend on the batch are what a metric needs. 128 features: Inception's 2048 would need far
//! more samples than the 2,000 a CPU can draw for a stable covariance; 128 dimensions with
//! 2,000 samples keep FID's covariance estimate well conditioned.
//!
//! Data without labels (emoji) train the same network on a proxy task: which of the four
//! rotations (0, 90, 180, 270 degrees) an image was turned by (Gidaris et al. 2018,
//! "Unsupervised representation learning by predicting image rotations"). Telling an emoji's
//! up from its down needs its shape and parts (faces, hands, objects), so its features describe
//! content rather than pixels, which is what a sample-quality ruler should compare.

use anyhow::{bail, Result};

use crate::autograd::{Ctx, Var};
use crate::data::idx::ImageSet;
use crate::gpu::Gpu;
use crate::nn::params::{Init, ParamLayout};
use crate::ops::{activation, conv, cross_entropy, matmul};
use crate::optim::{AdamConfig, LrSchedule, OptimConfig, TrainState};

/// Bump on any change to the network, the recipe or the features: it is part of the cache key,
/// so a cache written by another version is retrained rather than trusted.
pub const VERSION: u32 = 1;
pub const FEATURE_DIM: usize = 128;
const WIDTHS: [usize; 3] = [16, 32, 32];

/// What the classifier learns to predict.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// The data set's classes, one label per training image.
    Classes { n_classes: usize },
    /// Which of four rotations was applied (data without labels).
    Rotation,
}

impl Task {
    pub fn n_outputs(&self) -> usize {
        match self {
            Task::Classes { n_classes } => *n_classes,
            Task::Rotation => 4,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Task::Classes { n_classes } => format!("a {n_classes}-class classifier"),
            Task::Rotation => "a rotation-prediction network (4 rotations)".into(),
        }
    }
}

/// How long and how hard to train; part of the cache key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u32,
}

impl Recipe {
    /// Measured on lavapipe (Mesa 25, 2 cores): see README's evaluator section for the time
    /// and accuracy this gives on MNIST.
    pub fn standard() -> Recipe {
        Recipe {
            steps: 600,
            batch: 64,
            lr: 2e-3,
            seed: 0,
        }
    }
}

pub struct Classifier {
    pub layout: ParamLayout,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub task: Task,
    flat: usize,
}

/// A stride-2, padding-1, 3x3 convolution's output size.
fn halved(size: usize) -> usize {
    (size - 1) / 2 + 1
}

impl Classifier {
    pub fn new(height: usize, width: usize, channels: usize, task: Task) -> Classifier {
        let mut layout = ParamLayout::default();
        let mut c_in = channels;
        for (i, &c_out) in WIDTHS.iter().enumerate() {
            // PyTorch's defaults for Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            let bound = 1.0 / ((c_in * 9) as f64).sqrt();
            layout.add(
                &format!("conv{i}.weight"),
                &[c_out, c_in, 3, 3],
                Init::Uniform(bound),
            );
            layout.add(&format!("conv{i}.bias"), &[c_out], Init::Uniform(bound));
            c_in = c_out;
        }
        let flat = c_in * halved(halved(height)) * halved(halved(width));
        for (name, d_in, d_out) in [
            ("features", flat, FEATURE_DIM),
            ("logits", FEATURE_DIM, task.n_outputs()),
        ] {
            let bound = 1.0 / (d_in as f64).sqrt();
            layout.add(
                &format!("{name}.weight"),
                &[d_in, d_out],
                Init::Uniform(bound),
            );
            layout.add(&format!("{name}.bias"), &[d_out], Init::Uniform(bound));
        }
        Classifier {
            layout,
            height,
            width,
            channels,
            task,
            flat,
        }
    }

    /// (features [n, FEATURE_DIM], logits [n, outputs]) of x [n, C, H, W] in [-1, 1].
    pub fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var) -> (Var, Var) {
        let mut h = x.clone();
        for i in 0..WIDTHS.len() {
            let stride = if i == 0 { 1 } else { 2 };
            h = conv::conv2d_var(cx, &h, &params[2 * i], Some(&params[2 * i + 1]), stride, 1);
            h = activation::silu_var(cx, &h);
        }
        let n = x.shape()[0];
        let h = crate::nn::unet::reshape(cx, &h, &[n, self.flat]);
        let k = 2 * WIDTHS.len();
        let z = matmul::linear(cx, &h, &params[k], &params[k + 1]);
        let features = activation::silu_var(cx, &z);
        let logits = matmul::linear(cx, &features, &params[k + 2], &params[k + 3]);
        (features, logits)
    }
}

/// Images (and, for `Task::Classes`, their labels) the classifier trains or is tested on.
pub struct Split<'a> {
    pub images: &'a ImageSet,
    pub labels: Option<&'a [u32]>,
}

/// A square image turned by `quarter_turns` * 90 degrees counter-clockwise, channels last.
pub fn rotate(img: &[u8], size: usize, channels: usize, quarter_turns: u32) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for y in 0..size {
        for x in 0..size {
            let (sy, sx) = match quarter_turns % 4 {
                0 => (y, x),
                1 => (x, size - 1 - y),
                2 => (size - 1 - y, size - 1 - x),
                _ => (size - 1 - x, y),
            };
            let (dst, src) = ((y * size + x) * channels, (sy * size + sx) * channels);
            out[dst..dst + channels].copy_from_slice(&img[src..src + channels]);
        }
    }
    out
}

/// One batch as f32 NCHW in [-1, 1] and its targets: example `j` is the image at `indices[j]`,
/// turned by `turns[j]` for the rotation task.
fn batch(task: &Task, split: &Split, indices: &[usize], turns: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let set = split.images;
    let targets = match task {
        Task::Classes { .. } => {
            let labels = split.labels.expect("a class task has labels");
            indices.iter().map(|&i| labels[i]).collect()
        }
        Task::Rotation => turns.to_vec(),
    };
    let pixels: Vec<u8> = indices
        .iter()
        .zip(turns)
        .flat_map(|(&i, &t)| match task {
            Task::Classes { .. } => set.image(i).to_vec(),
            Task::Rotation => rotate(set.image(i), set.height, set.channels, t),
        })
        .collect();
    let rotated = ImageSet {
        n: indices.len(),
        pixels,
        ..*set
    };
    let all: Vec<usize> = (0..indices.len()).collect();
    let x = crate::data::images::batch_nchw(&rotated, &all, &vec![false; indices.len()]);
    (x, targets)
}

/// Trains the classifier; returns its weights. Deterministic for a recipe: batches are drawn
/// (with replacement) from the counter-based RNG keyed by the recipe's seed, and no kernel sums
/// with float atomics.
pub fn train(
    gpu: &Gpu,
    clf: &Classifier,
    train_split: &Split,
    recipe: &Recipe,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Vec<f32>> {
    let n = train_split.images.n;
    if n == 0 {
        bail!("no training images to train the evaluator's classifier on");
    }
    let mut state = TrainState::new(gpu, &clf.layout, recipe.seed as u64);
    let optim = OptimConfig {
        adam: AdamConfig {
            lr: recipe.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            // Only a guard against a bad first step: cross-entropy gradients stay well below.
            max_norm: 10.0,
        },
        warmup_steps: (recipe.steps / 20) as u64,
        lr_schedule: LrSchedule::Cosine,
        lr_min: recipe.lr * 0.01,
        total_steps: recipe.steps as u64,
        ema_decay: 0.0,
        ema_warmup: None,
    };
    let (c, h, w) = (clf.channels, clf.height, clf.width);
    for step in 0..recipe.steps {
        if crate::interrupt::requested() {
            bail!("interrupted while training the evaluator's classifier; nothing was cached");
        }
        let first = (step * recipe.batch) as u32;
        let draws: Vec<[u32; 4]> = (0..recipe.batch as u32)
            .map(|j| crate::rng::random_bits(recipe.seed, 0x0c1a, first.wrapping_add(j)))
            .collect();
        let indices: Vec<usize> = draws.iter().map(|d| d[0] as usize % n).collect();
        let turns: Vec<u32> = draws.iter().map(|d| d[1] % 4).collect();
        let (x, y) = batch(&clf.task, train_split, &indices, &turns);
        let x = gpu.upload(&x, &[recipe.batch, c, h, w]);
        let y = gpu.upload_u32(&y, &[recipe.batch]);
        let mut cx = Ctx::new(gpu);
        let params = clf.layout.vars(&mut cx, &state.params, Some(&state.grads));
        let x = cx.constant(x);
        let (_, logits) = clf.forward(&mut cx, &params, &x);
        let loss = cross_entropy::cross_entropy_var(&mut cx, &logits, &y);
        crate::ops::backward(&mut cx, &loss);
        drop(cx);
        state.apply_gradients(gpu, &optim);
        gpu.submit();
        if let Some(bar) = progress {
            bar.inc(1);
        }
    }
    gpu.wait();
    Ok(gpu.read(&state.params))
}

/// Images per forward pass when extracting features: a few tens of MB of activations.
const FEATURE_BATCH: usize = 500;

/// Features [n * FEATURE_DIM] and logits [n * outputs] of `images`, unrotated (for the rotation
/// task, `turns` gives each image's rotation instead, to test the proxy task).
pub fn features_and_logits(
    gpu: &Gpu,
    clf: &Classifier,
    weights: &[f32],
    images: &ImageSet,
    turns: Option<&[u32]>,
) -> (Vec<f32>, Vec<f32>) {
    let weights = gpu.upload(weights, &[weights.len()]);
    let (mut features, mut logits) = (Vec::new(), Vec::new());
    let split = Split {
        images,
        labels: None,
    };
    for start in (0..images.n).step_by(FEATURE_BATCH) {
        let end = (start + FEATURE_BATCH).min(images.n);
        let indices: Vec<usize> = (start..end).collect();
        let no_turns = vec![0; indices.len()];
        let t = turns.map_or(&no_turns[..], |t| &t[start..end]);
        let (x, _) = batch(&Task::Rotation, &split, &indices, t);
        let x = gpu.upload(&x, &[indices.len(), clf.channels, clf.height, clf.width]);
        let mut cx = Ctx::no_grad(gpu);
        let params = clf.layout.vars(&mut cx, &weights, None);
        let x = cx.constant(x);
        let (f, l) = clf.forward(&mut cx, &params, &x);
        features.extend(gpu.read(&f.tensor));
        logits.extend(gpu.read(&l.tensor));
    }
    (features, logits)
}

/// The index of each row's largest logit.
pub fn argmax_rows(logits: &[f32], n_outputs: usize) -> Vec<u32> {
    logits
        .chunks(n_outputs)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// The classifier's accuracy on a held-out split (for the rotation task: each image under a
/// rotation drawn from the seed), and the features of the images as they are.
pub fn test(gpu: &Gpu, clf: &Classifier, weights: &[f32], split: &Split) -> (f64, Vec<f32>) {
    let n = split.images.n;
    let (features, logits) = features_and_logits(gpu, clf, weights, split.images, None);
    let (targets, logits) = match &clf.task {
        Task::Classes { .. } => (split.labels.expect("labels").to_vec(), logits),
        Task::Rotation => {
            let turns: Vec<u32> = (0..n as u32)
                .map(|i| crate::rng::random_bits(0, 0x7e57, i)[0] % 4)
                .collect();
            let (_, l) = features_and_logits(gpu, clf, weights, split.images, Some(&turns));
            (turns, l)
        }
    };
    let predicted = argmax_rows(&logits, clf.task.n_outputs());
    let correct = predicted
        .iter()
        .zip(&targets)
        .filter(|(p, t)| p == t)
        .count();
    (correct as f64 / n.max(1) as f64, features)
}
