//! The sample-quality evaluator (src/quality): the metrics against closed forms and their
//! expected orderings on synthetic features, the classifier end to end on a slice of MNIST
//! (FID ~0 for a set against itself and rising with added pixel noise), the cache (reused,
//! and retrained when corrupt, to the same weights), and `ddpm eval --samples` refusing bad
//! files with a message and a non-zero exit.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ddpm::data::idx::ImageSet;
use ddpm::data::labels::{read_idx_labelled, Labels};
use ddpm::quality::classifier::Recipe;
use ddpm::quality::{metrics, Evaluator, Splits};

/// `n` rows of `dim` N(0, 1) features from the counter-based RNG, shifted by `shift` and
/// scaled by `scale` per dimension.
fn gaussian(n: usize, dim: usize, seed: u32, shift: f64, scale: f64) -> Vec<f32> {
    (0..n * dim)
        .map(|i| (shift + scale * ddpm::rng::normal(seed, 3, i as u32)) as f32)
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-quality-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_eigen_solver_and_the_frechet_distance_match_closed_forms() {
    // A symmetric matrix with known eigenvalues: Q diag(l) Q^T for a rotation Q in a plane.
    let (c, s) = (0.6f64, 0.8f64);
    let q = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
    let l = [3.0, 1.0, 0.25];
    let a: Vec<f64> = (0..9)
        .map(|k| {
            (0..3)
                .map(|m| q[(k / 3) * 3 + m] * l[m] * q[(k % 3) * 3 + m])
                .sum()
        })
        .collect();
    let (mut values, _) = metrics::symmetric_eigen(&a, 3);
    values.sort_by(f64::total_cmp);
    for (got, want) in values.iter().zip([0.25, 1.0, 3.0]) {
        assert!((got - want).abs() < 1e-12, "{values:?}");
    }
    // Diagonal covariances: FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2; rotating both
    // Gaussians by the same Q leaves it unchanged and makes the covariances non-diagonal.
    let (da, db) = ([4.0, 1.0, 0.5], [1.0, 2.0, 0.5]);
    let rotate = |d: &[f64; 3]| -> Vec<f64> {
        (0..9)
            .map(|k| {
                (0..3)
                    .map(|m| q[(k / 3) * 3 + m] * d[m] * q[(k % 3) * 3 + m])
                    .sum()
            })
            .collect()
    };
    let (mu1, mu2) = ([1.0, 0.0, 0.0], [0.0, 2.0, 0.0]);
    let want = 1.0
        + 4.0
        + da.iter()
            .zip(&db)
            .map(|(a, b): (&f64, &f64)| (a.sqrt() - b.sqrt()).powi(2))
            .sum::<f64>();
    let got = metrics::frechet_distance(&mu1, &rotate(&da), &mu2, &rotate(&db));
    assert!((got - want).abs() < 1e-10, "fid {got}, closed form {want}");
}

#[test]
fn fid_of_a_set_against_itself_is_zero_and_grows_with_noise() {
    let dim = 16;
    let a = gaussian(2000, dim, 1, 0.0, 1.0);
    let same = metrics::fid(&a, &a, dim);
    assert!(same.abs() < 1e-9, "fid of a set against itself: {same}");
    // An independent draw of the same distribution: only the finite-sample bias, about
    // dim^2 / n = 0.13 here.
    let b = gaussian(2000, dim, 2, 0.0, 1.0);
    let floor = metrics::fid(&a, &b, dim);
    assert!(
        floor > 0.0 && floor < 0.4,
        "fid of two draws of one Gaussian: {floor}"
    );
    let mut last = floor;
    for sigma in [0.25, 0.5, 1.0] {
        let noise = gaussian(2000, dim, 9, 0.0, sigma);
        let noisy: Vec<f32> = b.iter().zip(&noise).map(|(x, e)| x + e).collect();
        let fid = metrics::fid(&a, &noisy, dim);
        assert!(fid > last, "sigma {sigma}: fid {fid} after {last}");
        last = fid;
    }
}

#[test]
fn kid_is_near_zero_for_one_distribution_and_positive_for_another() {
    let dim = 16;
    let a = gaussian(600, dim, 4, 0.0, 1.0);
    let b = gaussian(600, dim, 5, 0.0, 1.0);
    let same = metrics::kid(&a, &b, dim, 10, 300, 0);
    assert!(same.std > 0.0);
    assert!(
        same.mean.abs() < 3.0 * same.std + 1e-3,
        "kid {} +- {}",
        same.mean,
        same.std
    );
    let shifted = gaussian(600, dim, 6, 0.3, 1.0);
    let far = metrics::kid(&a, &shifted, dim, 10, 300, 0);
    assert!(
        far.mean > same.mean + 5.0 * far.std.max(same.std),
        "kid {} vs {}",
        far.mean,
        same.mean
    );
    // The estimate is unbiased: a set against itself is not exactly 0 but is tiny; and it is
    // reproducible for a seed.
    let again = metrics::kid(&a, &shifted, dim, 10, 300, 0);
    assert_eq!(far.mean, again.mean);
}

#[test]
fn precision_and_recall_tell_fidelity_from_coverage() {
    let dim = 4;
    let real = gaussian(400, dim, 7, 0.0, 1.0);
    let (p, r) = metrics::precision_recall(&real, &real, dim, 3);
    assert_eq!((p, r), (1.0, 1.0));
    // Samples collapsed onto a few real points: all of them realistic, little covered.
    let collapsed: Vec<f32> = real[..10 * dim]
        .iter()
        .copied()
        .cycle()
        .take(400 * dim)
        .collect();
    let (p, r) = metrics::precision_recall(&real, &collapsed, dim, 3);
    assert!(p > 0.99 && r < 0.2, "collapsed: precision {p} recall {r}");
    // Samples far off the data: nothing realistic.
    let far = gaussian(400, dim, 8, 10.0, 1.0);
    let (p, _) = metrics::precision_recall(&real, &far, dim, 3);
    assert_eq!(p, 0.0);
    // Nearest distances: every real row's nearest neighbour in the set itself is 0 unless
    // excluded.
    let d = metrics::nearest_distances(&real[..40], &real, dim, 1, false);
    assert!(d.iter().all(|&v| v < 1e-3), "{d:?}");
    let d = metrics::nearest_distances(&real[..40], &real, dim, 1, true);
    assert!(d.iter().all(|&v| v > 1e-3), "{d:?}");
}

fn mnist_slice(n_train: usize, n_test: usize, folder: &Path) -> Splits {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let (train, labels) = read_idx_labelled(&root.join("train-images-idx3-ubyte.gz")).unwrap();
    let (test, test_labels) = read_idx_labelled(&root.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels: Labels = labels.unwrap().take(n_train);
    Splits {
        train: train.take(n_train),
        train_labels: Some(labels),
        test: test.take(n_test),
        test_labels: Some(test_labels.unwrap().of_image[..n_test].to_vec()),
        held_out: "the first t10k images".into(),
        folder: folder.to_path_buf(),
    }
}

/// Gaussian pixel noise of `sigma` (in 0-255 units), rounded and clipped as a u8 sample is.
fn with_noise(set: &ImageSet, sigma: f64) -> ImageSet {
    let pixels = set
        .pixels
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (v as f64 + sigma * ddpm::rng::normal(11, 0, i as u32))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    ImageSet {
        pixels,
        ..set.clone()
    }
}

#[test]
fn on_mnist_fid_is_near_zero_for_real_images_and_rises_with_noise() {
    let gpu = common::gpu();
    let dir = scratch("mnist");
    // A short recipe on 3,000 images (the standard one trains 600 steps on 60,000): enough for
    // features that separate digits, in seconds on lavapipe.
    let recipe = Recipe {
        steps: 120,
        batch: 32,
        lr: 3e-3,
        seed: 0,
    };
    let evaluator = Evaluator::from_splits(
        &gpu,
        "mnist slice",
        mnist_slice(3000, 600, &dir),
        None,
        recipe,
    )
    .unwrap();
    assert!(
        evaluator.accuracy > 0.8,
        "held-out accuracy {}",
        evaluator.accuracy
    );
    assert!(evaluator
        .cache_path
        .as_ref()
        .is_some_and(|p| p.starts_with(&dir)));
    // The held-out images themselves: FID 0, precision and recall 1, no memorisation signal.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let (test, _) = read_idx_labelled(&root.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let held_out = test.take(600);
    let report = evaluator.score(&gpu, &held_out, None).unwrap();
    assert!(
        report.fid < 1e-6,
        "fid of the held-out split against itself: {}",
        report.fid
    );
    assert_eq!((report.precision, report.recall), (1.0, 1.0));
    // Noisier copies of the same images: FID rises from 0 with the noise.
    let mut fids = Vec::new();
    for sigma in [20.0, 40.0, 80.0] {
        let report = evaluator
            .score(&gpu, &with_noise(&held_out, sigma), None)
            .unwrap();
        fids.push(report.fid);
    }
    assert!(fids[0] > 1e-3, "fid at noise 20: {fids:?}");
    assert!(
        fids.windows(2).all(|w| w[1] > w[0]),
        "fid against noise 20, 40, 80: {fids:?}"
    );
    // Other real images (from the training split) score better than heavily noised ones.
    let (train, labels) = read_idx_labelled(&root.join("train-images-idx3-ubyte.gz")).unwrap();
    let real = ImageSet {
        n: 600,
        pixels: train.pixels[5000 * 784..5600 * 784].to_vec(),
        ..train.clone()
    };
    let report = evaluator.score(&gpu, &real, None).unwrap();
    assert!(
        report.fid < fids[2],
        "real {} against noise 80 {}",
        report.fid,
        fids[2]
    );
    eprintln!(
        "fid: real training images {}, held-out + noise 20, 40, 80: {fids:?}",
        report.fid
    );
    // Requested classes: the true labels agree far more often than shifted ones.
    let labels = &labels.unwrap().of_image[5000..5600];
    let right = evaluator.score(&gpu, &real, Some(labels)).unwrap();
    let wrong: Vec<u32> = labels.iter().map(|l| (l + 1) % 10).collect();
    let wrong = evaluator.score(&gpu, &real, Some(&wrong)).unwrap();
    let (right, wrong) = (right.class_match.unwrap(), wrong.class_match.unwrap());
    assert!(
        right > 0.8 && wrong < 0.2,
        "class match {right} (true labels), {wrong} (shifted)"
    );
    // The last line of the report is the `fid ... kid ...` line.
    let text = report.to_string();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("fid ") && last.contains(" kid "), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_cache_is_reused_and_a_corrupt_one_is_retrained_to_the_same_weights() {
    let gpu = common::gpu();
    let dir = scratch("cache");
    let recipe = Recipe {
        steps: 4,
        batch: 8,
        lr: 1e-3,
        seed: 3,
    };
    let first =
        Evaluator::from_splits(&gpu, "slice", mnist_slice(200, 50, &dir), None, recipe).unwrap();
    let path = first.cache_path.clone().expect("the folder is writable");
    let probe = mnist_slice(200, 50, &dir).test.take(20);
    let (features, _) = first.features(&gpu, &probe).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let reused =
        Evaluator::from_splits(&gpu, "slice", mnist_slice(200, 50, &dir), None, recipe).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified,
        "not rewritten"
    );
    assert_eq!(reused.features(&gpu, &probe).unwrap().0, features);
    // One flipped bit in the weights: the checksum refuses it and training runs again, to the
    // same weights (the recipe is deterministic).
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let retrained =
        Evaluator::from_splits(&gpu, "slice", mnist_slice(200, 50, &dir), None, recipe).unwrap();
    assert_eq!(retrained.features(&gpu, &probe).unwrap().0, features);
    assert_ne!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the corrupt cache was replaced"
    );
    // Other data (one label changed): another key, so another file.
    let mut other = mnist_slice(200, 50, &dir);
    if let Some(l) = other.train_labels.as_mut() {
        l.of_image[0] = (l.of_image[0] + 1) % 10;
    }
    let other = Evaluator::from_splits(&gpu, "slice", other, None, recipe).unwrap();
    assert_ne!(other.cache_path, Some(path));
    std::fs::remove_dir_all(&dir).ok();
}

/// `ddpm eval --samples FILE --data D` with its output; the adapter is never needed, since the
/// file is checked before it starts.
fn eval_samples(samples: &Path, data: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(["eval", "--samples"])
        .arg(samples)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn eval_samples_refuses_bad_files_with_the_problem_and_the_fix() {
    let dir = scratch("cli");
    // A tiny IDX data set of 8x8 grey images.
    let mut idx = vec![0, 0, 8, 3];
    for d in [20u32, 8, 8] {
        idx.extend(d.to_be_bytes());
    }
    idx.extend(vec![7u8; 20 * 64]);
    let data = dir.join("tiny-idx3-ubyte");
    std::fs::write(&data, idx).unwrap();
    let f = |name: &str| dir.join(name);
    let floats = |values: &[f32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    npy(&f("nchw.npy"), "|u1", &[10, 1, 8, 8], &[0; 640]);
    npy(&f("f64.npy"), "<f8", &[10, 8, 8, 1], &[0; 5120]);
    npy(&f("rank2.npy"), "|u1", &[10, 64], &[0; 640]);
    npy(
        &f("range.npy"),
        "<f4",
        &[10, 8, 8, 1],
        &floats(&vec![200.0; 640]),
    );
    npy(&f("size.npy"), "|u1", &[10, 16, 16, 3], &[0; 7680]);
    npy(&f("short.npy"), "|u1", &[10, 8, 8, 1], &[0; 100]);
    std::fs::write(f("text.npy"), "not numpy").unwrap();
    let cases = [
        ("nchw.npy", "transpose(0, 2, 3, 1)"),
        ("f64.npy", "dtype <f8: samples must be uint8"),
        ("rank2.npy", "must be a 4-D array"),
        ("range.npy", "must be in [-1, 1], but these span [200, 200]"),
        ("size.npy", "the samples are 16x16x3 (H x W x C) but"),
        ("short.npy", "truncated"),
        ("text.npy", "not a readable .npy file"),
    ];
    for (name, expected) in cases {
        let (ok, stderr) = eval_samples(&f(name), &data);
        assert!(!ok, "{name} was accepted");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            !stderr.contains("adapter:"),
            "{name}: the GPU started before the check: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rotations_for_the_proxy_task_are_four_distinct_quarter_turns() {
    use ddpm::quality::classifier::rotate;
    // 3 x 3, two channels: pixel (y, x) holds (10 y + x, 100 + 10 y + x).
    let img: Vec<u8> = (0..9u8)
        .flat_map(|p| [10 * (p / 3) + p % 3, 100 + 10 * (p / 3) + p % 3])
        .collect();
    let turned: Vec<Vec<u8>> = (0..4).map(|k| rotate(&img, 3, 2, k)).collect();
    // One counter-clockwise quarter turn: the top row becomes the old right column, read
    // top to bottom.
    let top_row: Vec<u8> = turned[1][..6].iter().step_by(2).copied().collect();
    assert_eq!(top_row, vec![2, 12, 22]);
    assert_eq!(&turned[1][..2], &[2, 102], "channels move together");
    assert_eq!(turned[0], img);
    assert_eq!(
        rotate(&turned[1], 3, 2, 3),
        img,
        "four quarter turns are the identity"
    );
    assert_eq!(rotate(&turned[1], 3, 2, 1), turned[2]);
    for a in 0..4 {
        for b in a + 1..4 {
            assert_ne!(turned[a], turned[b], "turns {a} and {b}");
        }
    }
}
