//! Gradient accumulation: K micro-batches of B rows train exactly the step of one batch of KB
//! rows (every draw keyed by the row within the whole batch), up to float rounding; whole runs
//! agree too, class labels, label dropout, offset noise and dropout included.

mod common;

use common::gpu;
use ddpm::config::TrainConfig;
use ddpm::diffusion::gaussian::{BatchRows, GaussianDiffusion};
use ddpm::diffusion::{BetaSchedule, Schedule};
use ddpm::gpu::Gpu;
use ddpm::nn::unet::{UNet, UNetConfig};
use ddpm::nn::Denoiser;
use ddpm::optim::TrainState;
use ddpm::train::{optim_config, MicroBatch, Trainer};

/// The largest |a - b| over the largest |b|: the error relative to the values' scale.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / scale
}

/// `steps` updates of a small class-conditional UNet (dropout, offset noise) on a fixed batch of
/// `rows` images split into `k` micro-batches; returns each step's loss and gradient, and the
/// weights at the end.
fn train_split(
    gpu: &Gpu,
    k: usize,
    rows: usize,
    steps: usize,
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<f32>) {
    let model = UNet::new(UNetConfig {
        image_size: 8,
        in_channels: 1,
        out_channels: 1,
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![4],
        groups: 4,
        dropout: 0.2,
    })
    .with_classes(Some(3));
    let cfg = TrainConfig {
        offset_noise: 0.1,
        ..TrainConfig::toy()
    };
    let diffusion = GaussianDiffusion::new(gpu, Schedule::new(BetaSchedule::Linear, 50))
        .with_objective(cfg.objective());
    let trainer = Trainer {
        gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 7,
        antithetic: true,
    };
    let size = rows / k;
    let per_row = 64;
    let images = common::uniform(rows * per_row, -1.0, 1.0, 11);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 4).collect();
    let inputs: Vec<_> = (0..k)
        .map(|i| {
            let range = i * size..(i + 1) * size;
            let x = &images[range.start * per_row..range.end * per_row];
            (
                gpu.upload(x, &[size, 1, 8, 8]),
                gpu.upload_u32(&labels[range.clone()], &[size]),
            )
        })
        .collect();
    let mut state = TrainState::new(gpu, model.layout(), 5);
    let (mut losses, mut grads) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let micro: Vec<MicroBatch> = inputs
            .iter()
            .enumerate()
            .map(|(i, (x, y))| MicroBatch {
                x_start: x,
                classes: Some(y),
                rows: BatchRows::micro(i, size, k),
            })
            .collect();
        let step = trainer.record_accumulated_step(&mut state, &micro, None);
        gpu.submit();
        losses.extend(gpu.read(&step.loss));
        grads.push(gpu.read(&state.grads));
    }
    (losses, grads, gpu.read(&state.params))
}

#[test]
fn micro_batches_give_the_gradient_and_update_of_the_whole_batch() {
    let gpu = gpu();
    let (loss_1, grads_1, params_1) = train_split(&gpu, 1, 6, 3);
    for k in [2, 3] {
        let (loss_k, grads_k, params_k) = train_split(&gpu, k, 6, 3);
        for (step, (a, b)) in loss_k.iter().zip(&loss_1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "K = {k}, step {step}: loss {a} vs {b}"
            );
        }
        for (step, (a, b)) in grads_k.iter().zip(&grads_1).enumerate() {
            let err = relative_error(a, b);
            assert!(err < 1e-5, "K = {k}, step {step}: gradient off by {err:e}");
        }
        let err = relative_error(&params_k, &params_1);
        assert!(err < 1e-6, "K = {k}: weights off by {err:e}");
    }
}

fn gaussians(batch_size: usize, grad_accum: usize) -> TrainConfig {
    TrainConfig {
        data: "gaussians".into(),
        class_cond: true,
        offset_noise: 0.05,
        batch_size,
        grad_accum,
        steps: 40,
        n_samples: 64,
        log_every: 5,
        checkpoint_every: 0,
        ..TrainConfig::toy()
    }
}

#[test]
fn a_toy_run_with_grad_accum_trains_as_the_k_times_batch() {
    let gpu = gpu();
    let new = ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse);
    let dir = |name: &str| {
        let d = std::env::temp_dir().join(format!("ddpm-accum-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    };
    let (whole_dir, split_dir) = (dir("whole"), dir("split"));
    let whole = ddpm::presets::run(&gpu, &gaussians(96, 1), &whole_dir, new).unwrap();
    let split = ddpm::presets::run(&gpu, &gaussians(24, 4), &split_dir, new).unwrap();
    assert_eq!(whole.losses.len(), 40);
    for (step, (a, b)) in split.losses.iter().zip(&whole.losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "step {step}: loss {a} vs {b}"
        );
    }
    let load = |d: &std::path::Path| {
        ddpm::checkpoint::load(&d.join("checkpoint.safetensors"))
            .unwrap()
            .state
    };
    let (a, b) = (load(&split_dir), load(&whole_dir));
    let err = relative_error(&a.params, &b.params);
    assert!(err < 1e-5, "weights after 40 steps off by {err:e}");
    std::fs::remove_dir_all(&whole_dir).ok();
    std::fs::remove_dir_all(&split_dir).ok();
}
