//! Sample quality against a data set (`ddpm eval --quality`, `ddpm eval --samples`): FID, KID,
//! precision/recall, a memorisation distance and, for class-conditional samples, how often the
//! classifier agrees with the requested class. All of them are measured on the penultimate
//! features of a small classifier trained with ddpm's own kernels on the data's training split
//! (classifier.rs explains its shape and the rotation proxy task for unlabelled data), against
//! the held-out split: MNIST's t10k files where they exist, else every 10th image.
//!
//! The trained classifier and the features of both splits are cached in one file keyed by a
//! hash of the data (pixels and labels of both splits) and of the classifier's version and
//! recipe, beside the data when that folder is writable, else in the given cache folder. A
//! cache that is corrupt, truncated or keyed for other data is retrained, not trusted.
//!
//! Library use (training's --eval-every, conditional sampling):
//! ```no_run
//! # fn f(gpu: &ddpm::gpu::Gpu, samples: &ddpm::data::idx::ImageSet) -> anyhow::Result<()> {
//! let evaluator = ddpm::quality::Evaluator::for_data(gpu, "assets/mnist", None, None)?;
//! let report = evaluator.score(gpu, samples, None)?;
//! println!("{report}"); // the last line is `fid X kid Y +- S ...`
//! # Ok(()) }
//! ```

pub mod classifier;
pub mod metrics;
pub mod samples;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::data::idx::ImageSet;
use crate::data::images;
use crate::data::labels::{self, Labels};
use crate::gpu::Gpu;
use classifier::{Classifier, Recipe, Split, Task, FEATURE_DIM};

/// Neighbours of the precision/recall manifolds (Kynkaanniemi et al.'s k = 3).
pub const PR_K: usize = 3;
/// KID's subsets: as many as torch-fidelity's default 100 would cost seconds on 2 cores for no
/// better estimate at these sample counts; 50 of up to 1,000 rows.
const KID_SUBSETS: usize = 50;
const KID_SUBSET_SIZE: usize = 1000;
/// Held-out rows the memorisation reference is measured on (evenly spaced over the split).
const MEMORISATION_REFERENCE_ROWS: usize = 2000;

/// A data set's two splits, as the evaluator uses them.
pub struct Splits {
    pub train: ImageSet,
    pub train_labels: Option<Labels>,
    pub test: ImageSet,
    pub test_labels: Option<Vec<u32>>,
    /// How the held-out split was chosen, for the report.
    pub held_out: String,
    /// The folder the cache goes beside.
    pub folder: PathBuf,
}

/// MNIST's name for the held-out file of a training file, if it exists.
fn t10k_beside(train: &Path) -> Option<PathBuf> {
    let name = train.file_name()?.to_str()?;
    let test = train.with_file_name(format!("t10k-{}", name.strip_prefix("train-")?));
    test.is_file().then_some(test)
}

/// Every 10th image (index % 10 == 9) held out, the rest for training.
fn split_every_10th(
    set: &ImageSet,
    labels: Option<Labels>,
) -> (ImageSet, Option<Labels>, ImageSet, Option<Vec<u32>>) {
    let bytes = set.image_bytes();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let (mut train_labels, mut test_labels) = (Vec::new(), Vec::new());
    for i in 0..set.n {
        let held = i % 10 == 9;
        let (px, lb) = if held {
            (&mut test, &mut test_labels)
        } else {
            (&mut train, &mut train_labels)
        };
        px.extend_from_slice(&set.pixels[i * bytes..(i + 1) * bytes]);
        if let Some(l) = &labels {
            lb.push(l.of_image[i]);
        }
    }
    let make = |pixels: Vec<u8>| ImageSet {
        n: pixels.len() / bytes,
        pixels,
        ..*set
    };
    let train_labels = labels.as_ref().map(|l| Labels {
        class_names: l.class_names.clone(),
        of_image: train_labels,
    });
    let test_labels = labels.is_some().then_some(test_labels);
    (make(train), train_labels, make(test), test_labels)
}

/// Loads `data` (an MNIST-style folder or IDX file, with its t10k split where it exists, or any
/// set `labels::load_labelled` reads, split every 10th image). `shape` (size, channels) is only
/// needed for image folders, which are resized to it.
pub fn load_splits(data: &str, shape: Option<(usize, usize)>) -> Result<Splits> {
    let resolved = images::resolve(data);
    let train_file = if resolved.is_dir() {
        images::TRAIN_IMAGE_FILES
            .iter()
            .map(|n| resolved.join(n))
            .find(|p| p.is_file())
    } else if resolved.is_file() {
        Some(resolved.clone())
    } else {
        return Err(images::not_found(data));
    };
    let folder = match &train_file {
        Some(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => resolved.clone(),
    };
    if let Some(train_path) = &train_file {
        if let Some(test_path) = t10k_beside(train_path) {
            let (train, train_labels) = labels::read_idx_labelled(train_path)?;
            let (test, test_labels) = labels::read_idx_labelled(&test_path)?;
            if (test.height, test.width, test.channels)
                != (train.height, train.width, train.channels)
            {
                bail!(
                    "{} holds {}x{}x{} images but {} holds {}x{}x{}: the splits must match",
                    train_path.display(),
                    train.height,
                    train.width,
                    train.channels,
                    test_path.display(),
                    test.height,
                    test.width,
                    test.channels
                );
            }
            if train_labels.is_some() != test_labels.is_some() {
                bail!(
                    "only one of {} and {} has a labels file beside it: add the missing one, or \
                     move both away to evaluate them as unlabelled",
                    train_path.display(),
                    test_path.display()
                );
            }
            let held_out = format!("{}", test_path.display());
            return Ok(Splits {
                train,
                train_labels,
                test,
                test_labels: test_labels.map(|l| l.of_image),
                held_out,
                folder,
            });
        }
        let (set, labels) = labels::read_idx_labelled(train_path)?;
        return Ok(split_splits(set, labels, train_path, folder));
    }
    let Some((size, channels)) = shape else {
        bail!(
            "{data} is an image folder, which is resized to the samples' size: score samples \
             against it (their size sets it) or pass the size"
        );
    };
    let (set, labels) = labels::load_labelled(data, size, channels)?;
    Ok(split_splits(set, labels, &resolved, folder))
}

fn split_splits(set: ImageSet, labels: Option<Labels>, source: &Path, folder: PathBuf) -> Splits {
    let (train, train_labels, test, test_labels) = split_every_10th(&set, labels);
    Splits {
        train,
        train_labels,
        test,
        test_labels,
        held_out: format!("every 10th image of {}", source.display()),
        folder,
    }
}

/// FNV-1a, 64-bit: a dependency-free hash for the cache key (not a defence against an
/// adversary, only against evaluating with features trained on other data).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

fn cache_key(splits: &Splits, task: &Task, recipe: &Recipe) -> u64 {
    let mut h = Fnv::new();
    h.u64(classifier::VERSION as u64);
    h.u64(recipe.steps as u64);
    h.u64(recipe.batch as u64);
    h.u64(recipe.lr.to_bits());
    h.u64(recipe.seed as u64);
    h.u64(task.n_outputs() as u64);
    for (set, labels) in [
        (
            &splits.train,
            splits.train_labels.as_ref().map(|l| &l.of_image[..]),
        ),
        (&splits.test, splits.test_labels.as_deref()),
    ] {
        for d in [set.n, set.height, set.width, set.channels] {
            h.u64(d as u64);
        }
        h.bytes(&set.pixels);
        for &l in labels.unwrap_or(&[]) {
            h.u64(l as u64);
        }
    }
    h.0
}

const CACHE_MAGIC: &[u8; 8] = b"DDPMQC01";

/// What the cache file holds besides its magic and checksum.
struct Cached {
    weights: Vec<f32>,
    train_features: Vec<f32>,
    test_features: Vec<f32>,
    accuracy: f64,
    train_seconds: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheHeader {
    version: u32,
    key: String,
    n_weights: usize,
    n_train: usize,
    n_test: usize,
    dim: usize,
    accuracy: f64,
    train_seconds: f64,
}

fn f32_bytes(v: &[f32]) -> impl Iterator<Item = u8> + '_ {
    v.iter().flat_map(|x| x.to_le_bytes())
}

fn encode_cache(key: u64, c: &Cached, n_train: usize, n_test: usize) -> Vec<u8> {
    let header = CacheHeader {
        version: classifier::VERSION,
        key: format!("{key:016x}"),
        n_weights: c.weights.len(),
        n_train,
        n_test,
        dim: FEATURE_DIM,
        accuracy: c.accuracy,
        train_seconds: c.train_seconds,
    };
    let json = serde_json::to_vec(&header).expect("the header serialises");
    let mut out = CACHE_MAGIC.to_vec();
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend(f32_bytes(&c.weights));
    out.extend(f32_bytes(&c.train_features));
    out.extend(f32_bytes(&c.test_features));
    let mut h = Fnv::new();
    h.bytes(&out);
    out.extend(h.0.to_le_bytes());
    out
}

/// The cache's content if it is whole and keyed for this data, else why not.
fn decode_cache(
    bytes: &[u8],
    key: u64,
    n_weights: usize,
    n_train: usize,
    n_test: usize,
) -> Result<Cached, String> {
    if bytes.len() < 24 || &bytes[..8] != CACHE_MAGIC {
        return Err("not an evaluator cache of this version".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut h = Fnv::new();
    h.bytes(body);
    if h.0.to_le_bytes() != sum {
        return Err("its checksum does not match (corrupt or truncated)".into());
    }
    let json_len = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
    let json = body
        .get(16..16usize.saturating_add(json_len))
        .ok_or("its header is truncated")?;
    let header: CacheHeader =
        serde_json::from_slice(json).map_err(|e| format!("its header is unreadable: {e}"))?;
    if header.version != classifier::VERSION || header.key != format!("{key:016x}") {
        return Err("it was written for other data or another classifier version".into());
    }
    let counts = [n_weights, n_train * FEATURE_DIM, n_test * FEATURE_DIM];
    if [
        header.n_weights,
        header.n_train * header.dim,
        header.n_test * header.dim,
    ] != counts
    {
        return Err("its sizes do not match the data".into());
    }
    let floats = &body[16 + json_len..];
    if floats.len() != 4 * counts.iter().sum::<usize>() {
        return Err("its arrays have the wrong length".into());
    }
    let all: Vec<f32> = floats
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (weights, rest) = all.split_at(counts[0]);
    let (train, test) = rest.split_at(counts[1]);
    Ok(Cached {
        weights: weights.to_vec(),
        train_features: train.to_vec(),
        test_features: test.to_vec(),
        accuracy: header.accuracy,
        train_seconds: header.train_seconds,
    })
}

/// A data set's trained feature extractor and the reference statistics the samples are
/// compared with. Built once (`for_data`), then `score` any number of sample sets.
pub struct Evaluator {
    pub data: String,
    pub held_out: String,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub task: Task,
    pub class_names: Option<Vec<String>>,
    /// The classifier's accuracy on the held-out split (its proxy task's, for unlabelled data).
    pub accuracy: f64,
    /// Seconds the classifier took to train, when it was trained (also when read from a cache).
    pub train_seconds: f64,
    /// Where the classifier is cached; None when no folder was writable.
    pub cache_path: Option<PathBuf>,
    pub n_train: usize,
    pub n_test: usize,
    classifier: Classifier,
    weights: Vec<f32>,
    train_features: Vec<f32>,
    test_features: Vec<f32>,
    test_mean: Vec<f64>,
    test_cov: Vec<f64>,
    /// The held-out split's RMS feature value, which KID's features are divided by.
    kid_scale: f32,
    /// Median distance of held-out images to their nearest training image, in features: the
    /// memorisation figure of data the model never saw.
    pub held_out_nearest: f64,
}

impl Evaluator {
    /// The evaluator of `data` with the standard recipe; `shape` (size, channels) only for
    /// image folders; the cache goes beside the data, else into `cache_dir`.
    pub fn for_data(
        gpu: &Gpu,
        data: &str,
        shape: Option<(usize, usize)>,
        cache_dir: Option<&Path>,
    ) -> Result<Evaluator> {
        Evaluator::with_recipe(gpu, data, shape, cache_dir, Recipe::standard())
    }

    /// `for_data` with another recipe (tests train for fewer steps).
    pub fn with_recipe(
        gpu: &Gpu,
        data: &str,
        shape: Option<(usize, usize)>,
        cache_dir: Option<&Path>,
        recipe: Recipe,
    ) -> Result<Evaluator> {
        let splits = load_splits(data, shape)?;
        Evaluator::from_splits(gpu, data, splits, cache_dir, recipe)
    }

    pub fn from_splits(
        gpu: &Gpu,
        data: &str,
        splits: Splits,
        cache_dir: Option<&Path>,
        recipe: Recipe,
    ) -> Result<Evaluator> {
        let (h, w, c) = (
            splits.train.height,
            splits.train.width,
            splits.train.channels,
        );
        if splits.train.n < 10 || splits.test.n < 2 {
            bail!(
                "{data}: {} training and {} held-out images are too few to train and test the \
                 evaluator's classifier",
                splits.train.n,
                splits.test.n
            );
        }
        let task = match &splits.train_labels {
            Some(l) if l.n_classes() >= 2 => Task::Classes {
                n_classes: l.n_classes(),
            },
            _ => {
                if h != w {
                    bail!("{data}: unlabelled data must be square for the rotation task ({h}x{w})");
                }
                Task::Rotation
            }
        };
        if let (Task::Classes { n_classes }, Some(test)) = (&task, &splits.test_labels) {
            if let Some(bad) = test.iter().find(|&&l| l as usize >= *n_classes) {
                bail!(
                    "{}: held-out label {bad} is not one of the {n_classes} training classes",
                    splits.held_out
                );
            }
        }
        let clf = Classifier::new(h, w, c, task.clone());
        let key = cache_key(&splits, &task, &recipe);
        let name = format!("ddpm-quality-{key:016x}.bin");
        let places: Vec<PathBuf> = std::iter::once(splits.folder.join(&name))
            .chain(cache_dir.map(|d| d.join(&name)))
            .collect();
        let (n_train, n_test) = (splits.train.n, splits.test.n);
        let mut cached = None;
        for place in &places {
            let Ok(bytes) = std::fs::read(place) else {
                continue;
            };
            match decode_cache(&bytes, key, clf.layout.n_total, n_train, n_test) {
                Ok(c) => {
                    cached = Some((c, Some(place.clone())));
                    break;
                }
                Err(why) => eprintln!("{}: {why}; training the classifier again", place.display()),
            }
        }
        let (cached, cache_path) = match cached {
            Some(c) => c,
            None => {
                let trained = train_and_measure(gpu, &clf, &splits, &recipe)?;
                let bytes = encode_cache(key, &trained, n_train, n_test);
                let mut written = None;
                for place in &places {
                    let folder_ok = place
                        .parent()
                        .is_some_and(|p| std::fs::create_dir_all(p).is_ok());
                    if folder_ok && crate::checkpoint::write_atomic(place, &bytes).is_ok() {
                        written = Some(place.clone());
                        break;
                    }
                }
                if written.is_none() {
                    eprintln!(
                        "could not cache the evaluator's classifier in {}: it will be trained \
                         again next time (give a writable cache folder)",
                        places
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    );
                }
                (trained, written)
            }
        };
        let (test_mean, test_cov) = metrics::mean_cov(&cached.test_features, FEATURE_DIM);
        let mean_square = cached
            .test_features
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            / cached.test_features.len() as f64;
        let kid_scale = (mean_square.sqrt() as f32).max(f32::MIN_POSITIVE);
        let reference = evenly_spaced_rows(&cached.test_features, MEMORISATION_REFERENCE_ROWS);
        let held_out_nearest = metrics::median(&metrics::nearest_distances(
            &reference,
            &cached.train_features,
            FEATURE_DIM,
            1,
            false,
        ));
        Ok(Evaluator {
            data: data.to_owned(),
            held_out: splits.held_out,
            height: h,
            width: w,
            channels: c,
            task,
            class_names: splits.train_labels.map(|l| l.class_names),
            accuracy: cached.accuracy,
            train_seconds: cached.train_seconds,
            cache_path,
            n_train,
            n_test,
            classifier: clf,
            weights: cached.weights,
            train_features: cached.train_features,
            test_features: cached.test_features,
            test_mean,
            test_cov,
            kid_scale,
            held_out_nearest,
        })
    }

    /// The penultimate-layer features [n * FEATURE_DIM] and the predicted class of each image.
    pub fn features(&self, gpu: &Gpu, images: &ImageSet) -> Result<(Vec<f32>, Vec<u32>)> {
        self.check_shape(images)?;
        let (f, logits) =
            classifier::features_and_logits(gpu, &self.classifier, &self.weights, images, None);
        Ok((f, classifier::argmax_rows(&logits, self.task.n_outputs())))
    }

    fn check_shape(&self, images: &ImageSet) -> Result<()> {
        check_dims(images, (self.height, self.width, self.channels), &self.data)
    }

    /// Scores `samples`; `requested_classes` (one per sample) adds the fraction the classifier
    /// assigns to the class each sample was drawn for.
    pub fn score(
        &self,
        gpu: &Gpu,
        samples: &ImageSet,
        requested_classes: Option<&[u32]>,
    ) -> Result<QualityReport> {
        let started = Instant::now();
        self.check_shape(samples)?;
        if samples.n < 2 * PR_K + 2 {
            bail!(
                "{} samples are too few to score: FID, KID and the k = {PR_K} neighbourhoods \
                 need at least {} (2,000 give the figures in README's table)",
                samples.n,
                2 * PR_K + 2
            );
        }
        let class_match_of = match (requested_classes, &self.task) {
            (None, _) => None,
            (Some(r), Task::Classes { .. }) => {
                if r.len() != samples.n {
                    bail!(
                        "{} requested classes for {} samples: give one per sample",
                        r.len(),
                        samples.n
                    );
                }
                Some(r)
            }
            (Some(_), Task::Rotation) => bail!(
                "{} has no labels, so there is no classifier to check the requested classes with",
                self.data
            ),
        };
        let (features, predicted) = self.features(gpu, samples)?;
        let (mean, cov) = metrics::mean_cov(&features, FEATURE_DIM);
        let fid = metrics::frechet_distance(&mean, &cov, &self.test_mean, &self.test_cov);
        // KID's kernel (x.y / d + 1)^3 is not scale-free: on raw features (unbounded SiLU
        // outputs) it would mostly measure the cube of their norms. Both sets are
        // divided by the held-out split's RMS feature, so x.y / d is O(1) as with Inception's
        // features and KID reads the same across data sets and retrained classifiers.
        let unit = |f: &[f32]| -> Vec<f32> { f.iter().map(|v| v / self.kid_scale).collect() };
        let kid = metrics::kid(
            &unit(&features),
            &unit(&self.test_features),
            FEATURE_DIM,
            KID_SUBSETS,
            KID_SUBSET_SIZE,
            0,
        );
        let real = evenly_spaced_rows(&self.test_features, samples.n);
        let (precision, recall) = metrics::precision_recall(&real, &features, FEATURE_DIM, PR_K);
        let nearest = metrics::median(&metrics::nearest_distances(
            &features,
            &self.train_features,
            FEATURE_DIM,
            1,
            false,
        ));
        let class_match = class_match_of.map(|r| {
            let agree = predicted.iter().zip(r).filter(|(p, r)| p == r).count();
            agree as f64 / samples.n as f64
        });
        let mut class_counts = vec![0usize; self.task.n_outputs()];
        if matches!(self.task, Task::Classes { .. }) {
            for &p in &predicted {
                class_counts[p as usize] += 1;
            }
        }
        Ok(QualityReport {
            n: samples.n,
            data: self.data.clone(),
            held_out: self.held_out.clone(),
            features: format!(
                "{FEATURE_DIM}-d penultimate layer of {} (held-out accuracy {:.2}%)",
                self.task.describe(),
                100.0 * self.accuracy
            ),
            fid,
            kid: kid.mean,
            kid_std: kid.std,
            precision,
            recall,
            nearest_train: nearest,
            held_out_nearest_train: self.held_out_nearest,
            class_match,
            predicted_class_counts: matches!(self.task, Task::Classes { .. })
                .then_some(class_counts),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Refuses samples whose size or channels differ from the data set's images.
pub fn check_samples_match(samples: &ImageSet, data_images: &ImageSet, data: &str) -> Result<()> {
    check_dims(
        samples,
        (data_images.height, data_images.width, data_images.channels),
        data,
    )
}

fn check_dims(images: &ImageSet, (h, w, c): (usize, usize, usize), data: &str) -> Result<()> {
    if (images.height, images.width, images.channels) != (h, w, c) {
        bail!(
            "the samples are {}x{}x{} (H x W x C) but {data} holds {h}x{w}x{c} images: score \
             samples of the data set's size and channels against it (a model trained on it \
             draws them), or pass the --data they were drawn for",
            images.height,
            images.width,
            images.channels,
        );
    }
    Ok(())
}

/// `n` rows spread evenly over the set (all of them when it has fewer): a held-out split sorted
/// by class (an image folder's) still gives every class its share.
fn evenly_spaced_rows(features: &[f32], n: usize) -> Vec<f32> {
    let total = features.len() / FEATURE_DIM;
    let n = n.min(total);
    (0..n)
        .flat_map(|i| {
            let r = i * total / n;
            features[r * FEATURE_DIM..(r + 1) * FEATURE_DIM]
                .iter()
                .copied()
        })
        .collect()
}

/// Trains the classifier on the training split, tests it on the held-out split and extracts
/// both splits' features.
fn train_and_measure(
    gpu: &Gpu,
    clf: &Classifier,
    splits: &Splits,
    recipe: &Recipe,
) -> Result<Cached> {
    eprintln!(
        "training the evaluator's classifier ({}) on {} images for {} steps; it is cached for \
         later runs",
        clf.task.describe(),
        splits.train.n,
        recipe.steps
    );
    let started = Instant::now();
    let bar = crate::progress::bar("classifier", recipe.steps as u64);
    let train_split = Split {
        images: &splits.train,
        labels: splits.train_labels.as_ref().map(|l| &l.of_image[..]),
    };
    let weights = classifier::train(gpu, clf, &train_split, recipe, Some(&bar))?;
    bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();
    let test_split = Split {
        images: &splits.test,
        labels: splits.test_labels.as_deref(),
    };
    let (accuracy, test_features) = classifier::test(gpu, clf, &weights, &test_split);
    let (train_features, _) =
        classifier::features_and_logits(gpu, clf, &weights, &splits.train, None);
    if !accuracy.is_finite() || weights.iter().any(|w| !w.is_finite()) {
        bail!("the evaluator's classifier diverged (non-finite weights); nothing was cached");
    }
    eprintln!(
        "classifier: held-out accuracy {:.2}% after {train_seconds:.0} s of training ({:.0} s \
         with the features of both splits)",
        100.0 * accuracy,
        started.elapsed().as_secs_f64()
    );
    Ok(Cached {
        weights,
        train_features,
        test_features,
        accuracy,
        train_seconds,
    })
}

/// The figures of one set of samples. Display prints a few lines; the last starts with `fid`.
#[derive(Clone, Debug)]
pub struct QualityReport {
    pub n: usize,
    pub data: String,
    pub held_out: String,
    /// What the features are.
    pub features: String,
    pub fid: f64,
    /// KID (unbiased MMD^2, cubic polynomial kernel, on features divided by the held-out
    /// split's RMS value), mean over subsets, and the subsets' standard deviation.
    pub kid: f64,
    pub kid_std: f64,
    pub precision: f64,
    pub recall: f64,
    /// Median over samples of the feature distance to the nearest training image.
    pub nearest_train: f64,
    /// The same for held-out real images: samples well below it are closer to training images
    /// than unseen data is, the sign of memorisation.
    pub held_out_nearest_train: f64,
    /// Fraction of samples the classifier assigns to their requested class.
    pub class_match: Option<f64>,
    /// How many samples the classifier assigns to each class (labelled data only).
    pub predicted_class_counts: Option<Vec<usize>>,
    /// Seconds the scoring took (the features and the figures, not the classifier).
    pub seconds: f64,
}

impl fmt::Display for QualityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "quality of {} samples against {} (held out: {})",
            self.n, self.data, self.held_out
        )?;
        writeln!(f, "  features: {}", self.features)?;
        writeln!(
            f,
            "  memorisation: median feature distance to the nearest training image {:.3} \
             (held-out real images: {:.3}; ratio {:.2}, below 1 = closer than unseen data)",
            self.nearest_train,
            self.held_out_nearest_train,
            self.nearest_train / self.held_out_nearest_train
        )?;
        if let Some(counts) = &self.predicted_class_counts {
            let shares: Vec<String> = counts
                .iter()
                .map(|&c| format!("{:.0}", 100.0 * c as f64 / self.n as f64))
                .collect();
            writeln!(
                f,
                "  predicted classes (% of samples): {}",
                shares.join(" ")
            )?;
        }
        if let Some(m) = self.class_match {
            writeln!(
                f,
                "  class match: {:.2}% of samples are classified as their requested class",
                100.0 * m
            )?;
        }
        write!(
            f,
            "fid {:.3} kid {:.5} +- {:.5} precision {:.3} recall {:.3} memorisation {:.2}",
            self.fid,
            self.kid,
            self.kid_std,
            self.precision,
            self.recall,
            self.nearest_train / self.held_out_nearest_train
        )?;
        if let Some(m) = self.class_match {
            write!(f, " class_match {m:.3}")?;
        }
        Ok(())
    }
}

/// Checks and reads a samples file for `eval --samples`; see samples.rs.
pub fn read_samples(path: &Path, n: Option<usize>) -> Result<ImageSet> {
    let set = samples::read_npy(path)
        .with_context(|| format!("reading samples from {}", path.display()))?;
    Ok(match n {
        Some(n) if n < set.n => set.take(n),
        _ => set,
    })
}
