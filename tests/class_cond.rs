//! Class-conditional training and classifier-free guidance end to end: a conditional step with
//! every label "no class" is the unconditional step; guidance at w = 0 and w = 1 is the
//! unconditional and the conditional chain bit for bit; a conditional toy run resumes exactly
//! and its guided samples land on the requested mode.

mod common;

use common::gpu;
use ddpm::config::TrainConfig;
use ddpm::diffusion::gaussian::{ChainOptions, ClassGuidance, GaussianDiffusion};
use ddpm::diffusion::{BetaSchedule, Schedule, VarianceKind};
use ddpm::gpu::Gpu;
use ddpm::nn::mlp::Mlp;
use ddpm::nn::unet::{UNet, UNetConfig};
use ddpm::nn::Denoiser;
use ddpm::ops::diffusion::PSampleOptions;
use ddpm::optim::TrainState;
use ddpm::train::{optim_config, Trainer};

fn tiny_unet(out_channels: usize) -> UNetConfig {
    UNetConfig {
        image_size: 8,
        in_channels: 1,
        out_channels,
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![4],
        groups: 4,
        dropout: 0.0,
    }
}

/// One training step of `model` on a fixed batch with `classes` (None: unconditional); returns
/// the loss and the weights after the update. Clipping is off: the global gradient norm would
/// include the class table's gradient, which an unconditional model does not have.
fn one_step(
    gpu: &Gpu,
    model: &dyn Denoiser,
    x_shape: &[usize],
    classes: Option<&[u32]>,
) -> (Vec<f32>, Vec<f32>) {
    let cfg = TrainConfig {
        grad_clip: 0.0,
        ..TrainConfig::toy()
    };
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(BetaSchedule::Linear, 50));
    let trainer = Trainer {
        gpu,
        model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 3,
        antithetic: true,
    };
    let n: usize = x_shape.iter().product();
    let x = gpu.upload(&common::uniform(n, -1.0, 1.0, 4), x_shape);
    let mut state = TrainState::new(gpu, model.layout(), 5);
    let classes = classes.map(|c| gpu.upload_u32(c, &[c.len()]));
    let tl = trainer.record_step_classes(&mut state, &x, None, classes.as_ref());
    gpu.submit();
    (gpu.read(&tl.loss.tensor), gpu.read(&state.params))
}

#[test]
fn a_conditional_step_with_every_label_no_class_is_the_unconditional_step() {
    let gpu = gpu();
    let plain = Mlp::new(2, 32, 50);
    let conditional = Mlp::new(2, 32, 50).with_classes(Some(5));
    let null = vec![5u32; 16];
    let (loss_a, params_a) = one_step(&gpu, &plain, &[16, 2], None);
    let (loss_b, params_b) = one_step(&gpu, &conditional, &[16, 2], Some(&null));
    assert_eq!(loss_a, loss_b, "MLP loss");
    assert_eq!(
        params_a,
        params_b[..params_a.len()],
        "MLP weights after the step"
    );
    let some_class = vec![2u32; 16];
    let (loss_c, _) = one_step(&gpu, &conditional, &[16, 2], Some(&some_class));
    assert_ne!(loss_a, loss_c, "a class changes the step");

    let plain = UNet::new(tiny_unet(1));
    let conditional = UNet::new(tiny_unet(1)).with_classes(Some(3));
    let null = vec![3u32; 2];
    let (loss_a, params_a) = one_step(&gpu, &plain, &[2, 1, 8, 8], None);
    let (loss_b, params_b) = one_step(&gpu, &conditional, &[2, 1, 8, 8], Some(&null));
    assert_eq!(loss_a, loss_b, "UNet loss");
    assert_eq!(
        params_a,
        params_b[..params_a.len()],
        "UNet weights after the step"
    );
}

/// Weights with every parameter random, the "no class" row too (it starts at zero, which would
/// make unconditional and conditional outputs trivially related).
fn random_weights(gpu: &Gpu, model: &dyn Denoiser) -> ddpm::tensor::Tensor {
    let n = model.layout().n_total;
    gpu.upload(&common::uniform(n, -0.1, 0.1, 9), &[n])
}

fn chain(
    gpu: &Gpu,
    model: &dyn Denoiser,
    learn_sigma: bool,
    shape: &[usize],
    guidance: Option<ClassGuidance>,
) -> Vec<f32> {
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(BetaSchedule::Cosine, 12))
        .with_learned_variance(learn_sigma);
    let opts = PSampleOptions {
        variance: VarianceKind::Posterior,
        clip_denoised: false,
        ddim_eta: None,
        steps: None,
        dpm_solver: false,
        spacing: None,
    };
    let weights = random_weights(gpu, model);
    let (x0, _) = diffusion.p_sample_loop(
        gpu,
        model,
        &weights,
        shape,
        ChainOptions {
            guidance,
            ..ChainOptions::new(opts, 17)
        },
    );
    gpu.read(&x0)
}

/// The kernels whose sums run in an order independent of the batch: the GPU path with the
/// split-K convolutions unsplit. The split count and the software wing's kernels are chosen by
/// size, so there a doubled batch may round differently at some sizes (not at these).
fn batch_invariant(gpu: &Gpu) {
    let caps = gpu.caps();
    gpu.set_caps(ddpm::gpu::Capabilities {
        soft_kernels: false,
        tiled_workgroups: 1,
        ..caps
    });
}

#[test]
fn guidance_at_zero_and_one_is_the_unconditional_and_the_conditional_chain_bit_for_bit() {
    let gpu = gpu();
    for (kernels, learn_sigma) in [(0, false), (0, true), (1, false), (1, true)] {
        if kernels == 1 {
            batch_invariant(&gpu);
        }
        let k = if learn_sigma { 2 } else { 1 };
        let mlp = Mlp::with_output(2, 2 * k, 32, 12).with_classes(Some(4));
        let unet = UNet::new(tiny_unet(k)).with_classes(Some(3));
        let cases: [(&dyn Denoiser, Vec<usize>, u32); 2] =
            [(&mlp, vec![6, 2], 4), (&unet, vec![3, 1, 8, 8], 3)];
        for (model, shape, null) in cases {
            let n = shape[0];
            let classes: Vec<u32> = (0..n as u32).map(|i| i % null).collect();
            let nulls = vec![null; n];
            let with = |classes: &[u32], scale: f32| {
                let g = ClassGuidance { classes, scale };
                chain(&gpu, model, learn_sigma, &shape, Some(g))
            };
            let unconditional = chain(&gpu, model, learn_sigma, &shape, None);
            let conditional = with(&classes, 1.0);
            assert_eq!(
                unconditional,
                with(&nulls, 1.0),
                "no guidance is 'no class'"
            );
            assert_ne!(conditional, unconditional, "the classes matter");
            // w = 0 runs the doubled batch [x; x] with classes [y; no class] and keeps the
            // unconditional noise prediction exactly. A learned variance follows the
            // conditional model at every w (only the mean is guided), so there w = 0 is the
            // unconditional mean with the conditional variance.
            let at_zero = with(&classes, 0.0);
            if learn_sigma {
                assert_ne!(at_zero, unconditional, "the variance stays conditional");
            } else {
                assert_eq!(at_zero, unconditional, "w = 0 is unconditional");
            }
            // Just off 1 the doubled batch runs, and lands next to the conditional chain.
            let near_one = with(&classes, 1.0 + 1e-6);
            for (a, b) in near_one.iter().zip(&conditional) {
                assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
            }
            assert_ne!(with(&classes, 3.0), conditional, "w = 3 guides");
        }
    }
}

fn gaussians(steps: u64) -> TrainConfig {
    TrainConfig {
        data: "gaussians".into(),
        class_cond: true,
        steps,
        n_samples: 64,
        log_every: 5,
        checkpoint_every: 0,
        ..TrainConfig::toy()
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-class-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

#[test]
fn a_class_conditional_run_resumes_exactly() {
    let gpu = gpu();
    let new = ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse);
    let full_dir = tmp("full");
    let full = ddpm::presets::run(&gpu, &gaussians(30), &full_dir, new).unwrap();
    let split_dir = tmp("split");
    ddpm::presets::run(&gpu, &gaussians(15), &split_dir, new).unwrap();
    let resumed =
        ddpm::presets::run(&gpu, &gaussians(30), &split_dir, ddpm::train::Start::Resume).unwrap();
    assert_eq!(resumed.losses, full.losses[15..].to_vec(), "resumed losses");
    let load = |dir: &std::path::Path| {
        ddpm::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let (a, b) = (load(&full_dir), load(&split_dir));
    assert_eq!(a.state.params, b.state.params, "resumed weights");
    let names: Vec<String> = (0..8).map(|k| k.to_string()).collect();
    assert_eq!(a.config.classes, names, "the checkpoint names the classes");
    std::fs::remove_dir_all(&full_dir).ok();
    std::fs::remove_dir_all(&split_dir).ok();
}

#[test]
fn guided_samples_of_a_short_gaussians_run_land_on_the_requested_mode() {
    let gpu = gpu();
    let dir = tmp("modes");
    let cfg = gaussians(1500);
    ddpm::presets::run(
        &gpu,
        &cfg,
        &dir,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    let ckpt = ddpm::checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let cfg = ckpt.config;
    let weights = gpu.upload(&ckpt.state.ema, &[ckpt.state.ema.len()]);
    let classes = vec![3u32; 400];
    let score = |scale: f32| {
        let report = ddpm::presets::toy::write_samples_chunked(
            &gpu,
            &cfg,
            &weights,
            classes.len(),
            0,
            &dir.join(format!("w{scale}")),
            ddpm::presets::toy::default_options(&cfg).unwrap(),
            None,
            Some(ClassGuidance {
                classes: &classes,
                scale,
            }),
        )
        .unwrap();
        assert_eq!(report.per_class.len(), 1);
        report.per_class[0].nearest_fraction
    };
    let unconditional = score(0.0);
    let guided = score(3.0);
    // Unconditional samples spread over the eight modes; guided ones find mode 3.
    assert!(unconditional < 0.5, "w = 0: {unconditional}");
    assert!(guided >= 0.95, "w = 3: {guided}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn guided_draws_in_chunks_equal_one_chain() {
    let gpu = gpu();
    let model = Mlp::with_output(2, 2, 32, 12).with_classes(Some(4));
    let weights = random_weights(&gpu, &model);
    let diffusion = GaussianDiffusion::new(&gpu, Schedule::new(BetaSchedule::Cosine, 12));
    let classes: Vec<u32> = (0..11).map(|i| i % 5).collect();
    let draw = |chunk: usize| {
        let sampler = ddpm::chunked::ChunkedSampler {
            gpu: &gpu,
            diffusion: &diffusion,
            model: &model,
            weights: &weights,
            sample_shape: &[2],
            opts: PSampleOptions {
                variance: VarianceKind::Beta,
                clip_denoised: false,
                ddim_eta: None,
                steps: None,
                dpm_solver: false,
                spacing: None,
            },
            seed: 5,
            chunk,
            guidance: Some(ClassGuidance {
                classes: &classes,
                scale: 2.5,
            }),
        };
        let mut out = Vec::new();
        sampler
            .draw(classes.len(), None, None, &mut |_, x| {
                out.extend(x);
                Ok(())
            })
            .unwrap();
        out
    };
    // Chains of 2 (a chunk of 4 halved for the doubled batch) against one chain of 11.
    assert_eq!(draw(4), draw(22));
}

/// A folder with one subfolder per class: "bright" images light in the top-left quarter and
/// "dark" ones light in the bottom-right, with a little per-image variation.
fn class_folder(dir: &std::path::Path) {
    for (class, corner) in [("bright", 0u32), ("dark", 4)] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..30u32 {
            let img = image::RgbImage::from_fn(8, 8, |x, y| {
                let lit = (corner..corner + 4).contains(&x) && (corner..corner + 4).contains(&y);
                let v = if lit {
                    200 + (i * 7 + x) % 50
                } else {
                    (i * 3 + y) % 40
                };
                image::Rgb([v as u8, (v / 2) as u8, 255 - v as u8])
            });
            img.save(sub.join(format!("{i:02}.png"))).unwrap();
        }
    }
}

#[test]
fn a_class_folder_trains_conditionally_and_eval_every_logs_the_quality() {
    let dir = tmp("folder");
    let data = dir.join("data");
    class_folder(&data);
    let out = dir.join("run");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args([
            "train",
            "--preset",
            "rgb64",
            "--data",
            data.to_str().unwrap(),
        ])
        .args([
            "--image-size",
            "8",
            "--channels",
            "16",
            "--channel-mult",
            "1,2",
        ])
        .args([
            "--res-blocks",
            "1",
            "--attention-res",
            "none",
            "--groups",
            "4",
        ])
        .args([
            "--timesteps",
            "20",
            "--schedule",
            "cosine",
            "--sample-steps",
            "4",
        ])
        .args(["--steps", "4"])
        .args([
            "--batch-size",
            "4",
            "--class-cond",
            "--eval-every",
            "2",
            "--n-eval",
            "16",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    let config: TrainConfig = TrainConfig::from_json(&config).unwrap();
    assert_eq!(
        config.classes,
        ["bright", "dark"],
        "classes from the subfolders"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evaluated: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r.get("fid").is_some())
        .collect();
    let steps: Vec<u64> = evaluated
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        [2, 4],
        "every 2 steps, the last at the end:\n{metrics}"
    );
    for record in &evaluated {
        for figure in ["fid", "kid", "precision", "recall", "class_match"] {
            let v = record[figure].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite(), "{figure} in {record}");
        }
    }
    assert!(stderr.contains("class match"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
