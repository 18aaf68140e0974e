//! Sampling in chunks gives the numbers of one chain: the Philox draws of a chunk start where
//! the whole draw would be (64-bit element indices included), and a chunked draw of the toy
//! model equals the unchunked one bit for bit, for the ancestral, the learned-variance, the
//! DDIM and the DPM-Solver++ step, with eps, x0 and v prediction.

use ddpm::chunked::{chunks, ChunkedSampler, NpyStream};
use ddpm::config::TrainConfig;
use ddpm::gpu::Gpu;
use ddpm::ops::diffusion::PSampleOptions;
use ddpm::presets::toy;
use ddpm::sample::check_eta;

fn gpu() -> Gpu {
    Gpu::new(None).expect("a wgpu adapter (lavapipe on CI)")
}

#[test]
fn a_chunk_of_a_normal_draw_starts_where_the_whole_draw_is() {
    let gpu = gpu();
    let whole = gpu.read(&ddpm::ops::rng::normal(&gpu, &[1000], 5, 3));
    let part = gpu.read(&ddpm::ops::rng::normal_from(&gpu, &[300], 5, 3, 600));
    assert_eq!(&whole[600..900], &part[..]);
    // Across 2^32 the counter's second word carries: the draws equal the host's 64-bit ones.
    let first = (1u64 << 32) - 100;
    let across = gpu.read(&ddpm::ops::rng::normal_from(&gpu, &[200], 5, 3, first));
    for (i, &got) in across.iter().enumerate() {
        let want = ddpm::rng::normal_wide(5, 3, first + i as u64);
        assert!(
            (got as f64 - want).abs() < 1e-5,
            "element {i}: {got} vs {want}"
        );
    }
    // Below 2^32 the wide index is the old one.
    assert_eq!(
        ddpm::rng::normal_wide(5, 3, 77),
        ddpm::rng::normal(5, 3, 77)
    );
}

/// `n` samples of the toy model under `opts`, drawn at most `chunk` at a time.
fn draw(gpu: &Gpu, cfg: &TrainConfig, opts: PSampleOptions, n: usize, chunk: usize) -> Vec<f32> {
    let model = toy::model(cfg);
    let weights = model.layout.init(7);
    let weights = gpu.upload(&weights, &[weights.len()]);
    let diffusion = toy::diffusion(gpu, cfg)
        .unwrap()
        .for_sampling(gpu, &opts)
        .unwrap();
    let sampler = ChunkedSampler {
        gpu,
        diffusion: &diffusion,
        model: &model,
        weights: &weights,
        sample_shape: &[2],
        opts,
        seed: 11,
        chunk,
        guidance: None,
    };
    let mut out = Vec::new();
    let drawn = sampler
        .draw(n, None, None, &mut |first, x| {
            assert_eq!(first * 2, out.len(), "chunks arrive in order");
            out.extend(x);
            Ok(())
        })
        .unwrap();
    assert!(!drawn.interrupted);
    assert_eq!(drawn.completed, n);
    out
}

#[test]
fn chunked_toy_sampling_equals_one_chain() {
    let gpu = gpu();
    let mut cfg = TrainConfig::toy();
    cfg.n_timesteps = 20;
    cfg.hidden = 32;
    let ancestral = toy::default_options(&cfg).unwrap();
    let ddim = PSampleOptions {
        ddim_eta: Some(0.7),
        dpm_solver: false,
        spacing: None,
        steps: Some(10),
        ..ancestral
    };
    let dpm = PSampleOptions {
        dpm_solver: true,
        spacing: None,
        steps: Some(8),
        ..ancestral
    };
    let mut iddpm = cfg.clone();
    iddpm.learn_sigma = true;
    let mut v = cfg.clone();
    v.prediction = ddpm::diffusion::Prediction::V;
    let mut x0 = iddpm.clone();
    x0.prediction = ddpm::diffusion::Prediction::X0;
    let n = 37;
    for (what, cfg, opts) in [
        ("ancestral", &cfg, ancestral),
        ("ddim", &cfg, ddim),
        ("learned variance", &iddpm, ancestral),
        ("dpm++2m", &cfg, dpm),
        ("v prediction", &v, ancestral),
        ("v prediction, dpm++2m", &v, dpm),
        ("x0 prediction, learned variance", &x0, ancestral),
    ] {
        let whole = draw(&gpu, cfg, opts, n, n);
        assert_eq!(whole.len(), 2 * n);
        assert!(whole.iter().all(|v| v.is_finite()), "{what}: {whole:?}");
        for chunk in [5, 16] {
            let chunked = draw(&gpu, cfg, opts, n, chunk);
            assert!(
                chunked == whole,
                "{what}, chunks of {chunk}: {chunked:?}\nvs one chain: {whole:?}"
            );
        }
    }
}

#[test]
fn chunks_cover_the_draw_in_order_without_overlap() {
    let all: Vec<_> = chunks(10, 4).collect();
    assert_eq!(all, vec![0..4, 4..8, 8..10]);
    assert_eq!(chunks(8, 4).collect::<Vec<_>>(), vec![0..4, 4..8]);
    assert_eq!(chunks(3, 100).collect::<Vec<_>>(), vec![0..3]);
    assert_eq!(chunks(0, 4).count(), 0);
    // A huge draw is planned lazily: no list of a hundred million ranges.
    let mut huge = chunks(100_000_000, 262_144);
    assert_eq!(huge.next(), Some(0..262_144));
    assert_eq!(huge.last(), Some(99_876_864..100_000_000));
    assert_eq!(chunks(100_000_000, 262_144).count(), 382);
}

#[test]
fn eta_outside_zero_to_one_is_refused_by_name() {
    for eta in [0.0, 0.5, 1.0] {
        check_eta(eta).unwrap();
    }
    for eta in [f32::NAN, -1.0, -0.0001, 1.5, f32::INFINITY] {
        let e = check_eta(eta).unwrap_err().to_string();
        assert!(e.contains("--eta") && e.contains("between 0"), "{eta}: {e}");
    }
}

#[test]
fn a_streamed_npy_reads_back_with_the_rows_written() {
    let dir = std::env::temp_dir().join(format!("ddpm-npy-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("samples.npy");
    // Sized for a billion rows, finished with 5: the header keeps its length.
    let mut s = NpyStream::create(&path, "<f4", &[2], 1_000_000_000).unwrap();
    let values: Vec<f32> = (0..10).map(|i| i as f32 * 0.5).collect();
    s.append(bytemuck::cast_slice(&values[..4])).unwrap();
    s.append(bytemuck::cast_slice(&values[4..])).unwrap();
    assert!(!path.exists(), "renamed into place before it was complete");
    assert_eq!(s.finish(&path).unwrap(), 5);
    let (data, shape) = ddpm::viz::load_npy_f32(&path).unwrap();
    assert_eq!(shape, vec![5, 2]);
    assert_eq!(data, values);
    assert!(!dir.join("samples.npy.tmp").exists());

    let images = dir.join("images.npy");
    let mut s = NpyStream::create(&images, "|u1", &[2, 2, 1], 7).unwrap();
    s.append(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    s.finish(&images).unwrap();
    let (data, shape) = ddpm::viz::load_npy_u8(&images).unwrap();
    assert_eq!(
        (data, shape),
        (vec![1, 2, 3, 4, 5, 6, 7, 8], vec![2, 2, 2, 1])
    );

    // A discarded stream leaves the old file alone.
    let mut s = NpyStream::create(&path, "<f4", &[2], 10).unwrap();
    s.append(bytemuck::cast_slice(&[9.0f32, 9.0])).unwrap();
    s.discard();
    assert_eq!(ddpm::viz::load_npy_f32(&path).unwrap().1, vec![5, 2]);
    assert!(!dir.join("samples.npy.tmp").exists());
    std::fs::remove_dir_all(&dir).ok();
}
