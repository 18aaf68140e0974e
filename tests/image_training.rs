//! A short end-to-end run of a small UNet on MNIST (lavapipe in CI): the loss falls, the
//! checkpoint round-trips, sampling gives finite images of the right shape, resume is exact,
//! and bad inputs get messages instead of panics.

mod common;

use common::gpu;
use ddpm::config::TrainConfig;
use ddpm::nn::unet::UNetConfig;

fn tiny_mnist(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        lr: 2e-3,
        warmup_steps: 0,
        n_timesteps: 40,
        log_every: 5,
        checkpoint_every: 0,
        sample_every: 0,
        n_grid: 4,
        unet: Some(UNetConfig {
            image_size: 28,
            in_channels: 1,
            out_channels: 1,
            base_channels: 8,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![14],
            groups: 4,
            dropout: 0.1,
        }),
        ..TrainConfig::mnist()
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

#[test]
fn a_short_mnist_run_learns_samples_and_resumes_exactly() {
    let gpu = gpu();
    let steps = 40;
    let out = tmp("mnist-full");
    let full = ddpm::presets::run(
        &gpu,
        &tiny_mnist(steps),
        &out,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    assert_eq!(full.losses.len(), steps as usize);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (early, late) = (mean(&full.losses[..10]), mean(&full.losses[30..]));
    assert!(
        late < 0.8 * early,
        "the loss falls: first 10 steps {early:.4}, last 10 {late:.4}"
    );

    let (pixels, shape) = read_npy_u8(&out.join("samples.npy"));
    assert_eq!(shape, vec![4, 28, 28, 1]);
    assert_eq!(pixels.len(), 4 * 28 * 28);
    for file in [
        "samples.png",
        "denoise.gif",
        "loss.png",
        "config.json",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }

    // Half the steps, then resume to the end: the same losses and the same weights.
    let split = tmp("mnist-split");
    ddpm::presets::run(
        &gpu,
        &tiny_mnist(steps / 2),
        &split,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    let resumed =
        ddpm::presets::run(&gpu, &tiny_mnist(steps), &split, ddpm::train::Start::Resume).unwrap();
    assert_eq!(
        resumed.losses,
        full.losses[steps as usize / 2..].to_vec(),
        "resumed losses"
    );
    let a = ddpm::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let b = ddpm::checkpoint::load(&split.join("checkpoint.safetensors")).unwrap();
    assert_eq!(
        a.state, b.state,
        "weights, EMA, Adam state and step after resuming"
    );
    assert_eq!(a.config, b.config);
    assert!(
        a.config == tiny_mnist(steps),
        "the checkpoint keeps the run's config, not the software adapter's cut sample grids"
    );

    // The checkpoint samples again through `ddpm sample`'s code path.
    let again = out.join("again");
    let args = ddpm::sample::SampleArgs {
        checkpoint: &out.join("checkpoint.safetensors"),
        out: &again,
        n: Some(2),
        seed: 1,
        variance: Some(ddpm::diffusion::VarianceKind::Posterior),
        clip_x0: true,
        use_ema: false,
        steps: Some(10),
        ddim_eta: Some(0.0),
        dpm_solver: false,
        spacing: None,
        max_chunk: None,
        class: None,
        guidance: 1.0,
    };
    assert_eq!(ddpm::sample::run(&gpu, &args).unwrap(), None);
    assert_eq!(
        read_npy_u8(&again.join("samples.npy")).1,
        vec![2, 28, 28, 1]
    );

    // Without --n and --steps, `ddpm sample` on a software adapter cuts the chain as training
    // does (16 images of 50 respaced steps); GPUs take the run's grid and all its steps. The
    // same weights under T = 100 and a grid of 20 show both cuts.
    let mut ckpt = ddpm::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    ckpt.config.n_timesteps = 100;
    ckpt.config.n_grid = 20;
    let long = out.join("long.safetensors");
    let layout = ddpm::nn::unet::UNet::new(tiny_mnist(1).unet.unwrap()).layout;
    ddpm::checkpoint::save(&long, &ckpt.config, &layout, &ckpt.state).unwrap();
    let sample = |dir: &str, n: Option<usize>, steps: Option<usize>| {
        let args = ddpm::sample::SampleArgs {
            checkpoint: &long,
            out: &out.join(dir),
            n,
            seed: 0,
            variance: None,
            clip_x0: false,
            use_ema: true,
            steps,
            ddim_eta: None,
            dpm_solver: false,
            spacing: None,
            max_chunk: None,
            class: None,
            guidance: 1.0,
        };
        assert_eq!(ddpm::sample::run(&gpu, &args).unwrap(), None);
        read_npy_u8(&out.join(dir).join("samples.npy"))
    };
    let (n, steps) = if gpu.is_cpu() { (16, 50) } else { (20, 100) };
    let defaults = sample("defaults", None, None);
    assert_eq!(defaults.1, vec![n, 28, 28, 1]);
    assert!(
        defaults == sample("explicit", Some(n), Some(steps)),
        "the defaults sample {n} images with {steps} steps"
    );
    // Choosing the steps keeps the software adapter's cut of the grid (it once lifted it to the
    // run's 20).
    assert_eq!(
        sample("steps-only", None, Some(10)).1,
        vec![n, 28, 28, 1],
        "--steps alone samples the default grid"
    );
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(&split).ok();
}

fn read_npy_u8(path: &std::path::Path) -> (Vec<u8>, Vec<usize>) {
    ddpm::viz::load_npy_u8(path).unwrap()
}

#[test]
fn bad_image_inputs_are_refused_with_the_fix() {
    let gpu = gpu();
    let dir = tmp("bad-data");
    std::fs::create_dir_all(&dir).unwrap();

    // A truncated .gz data set.
    let truncated = dir.join("train-images-idx3-ubyte.gz");
    let good = std::fs::read(ddpm::data::images::resolve(
        "assets/mnist/t10k-images-idx3-ubyte.gz",
    ))
    .unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let cfg = TrainConfig {
        data: dir.to_str().unwrap().into(),
        ..tiny_mnist(2)
    };
    let err = ddpm::presets::run(
        &gpu,
        &cfg,
        &dir.join("run"),
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("corrupt or truncated"),
        "{err:#}"
    );

    // Images of the wrong size for the model.
    let cfg = TrainConfig {
        data: "assets/mnist".into(),
        ..TrainConfig::emoji()
    };
    let err = ddpm::presets::run(
        &gpu,
        &TrainConfig {
            steps: 1,
            warmup_steps: 0,
            ..cfg
        },
        &dir.join("run2"),
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("28x28"), "{err:#}");

    // A batch larger than the device's storage bindings allow.
    let cfg = TrainConfig {
        batch_size: 1 << 20,
        ..tiny_mnist(1)
    };
    let err = ddpm::presets::run(
        &gpu,
        &cfg,
        &dir.join("run3"),
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("lower --batch-size"), "{err:#}");

    // A checkpoint of another architecture.
    let run = dir.join("run4");
    ddpm::presets::run(
        &gpu,
        &TrainConfig {
            n_grid: 1,
            ..tiny_mnist(1)
        },
        &run,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    let mut ckpt = ddpm::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    ckpt.config.unet.as_mut().unwrap().base_channels = 16;
    let edited = run.join("edited.safetensors");
    let layout = ddpm::nn::unet::UNet::new(tiny_mnist(1).unet.unwrap()).layout;
    ddpm::checkpoint::save(&edited, &ckpt.config, &layout, &ckpt.state).unwrap();
    let args = ddpm::sample::SampleArgs {
        checkpoint: &edited,
        out: &dir.join("s"),
        n: Some(1),
        seed: 0,
        variance: None,
        clip_x0: false,
        use_ema: true,
        steps: None,
        ddim_eta: None,
        dpm_solver: false,
        spacing: None,
        max_chunk: None,
        class: None,
        guidance: 1.0,
    };
    let err = ddpm::sample::run(&gpu, &args).unwrap_err();
    assert!(
        format!("{err:#}").contains("different architecture"),
        "{err:#}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Preset rgb64 from the command line on a folder of photos of other sizes (resized and
/// centre-cropped), with the model's shape made small by flags: 64x64x3 samples come out.
#[test]
fn rgb64_trains_on_a_folder_of_photos_and_writes_64x64_colour_samples() {
    let dir = tmp("rgb64");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..4u32 {
        let img = image::RgbImage::from_fn(80 + 10 * i, 70, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 3) as u8, (40 * i) as u8])
        });
        img.save(photos.join(format!("photo{i}.png"))).unwrap();
    }
    let run = dir.join("run");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args([
            "train",
            "--preset",
            "rgb64",
            "--data",
            photos.to_str().unwrap(),
        ])
        .args(["--steps", "2", "--batch-size", "2", "--timesteps", "100"])
        .args([
            "--channels",
            "8",
            "--channel-mult",
            "1,2",
            "--res-blocks",
            "1",
        ])
        .args([
            "--attention-res",
            "none",
            "--groups",
            "4",
            "--sample-steps",
            "5",
        ])
        .args(["--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 images of 64x64x3"), "{stderr}");
    let samples = std::fs::read(run.join("samples.npy")).unwrap();
    let header = String::from_utf8_lossy(&samples[..128]);
    assert!(header.contains("'shape': (16, 64, 64, 3"), "{header}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["variance"], "posterior");
    assert_eq!(config["flip"], true);
    std::fs::remove_dir_all(&dir).ok();
}
