//! Importance-sampled timesteps: the weighted loss agrees with the uniform one at unit weights
//! and weighs each sample's loss as drawn; a run warms the sampler up, leaves uniform sampling,
//! and resumes exactly, sampler included.

mod common;

use common::gpu;
use ddpm::config::TrainConfig;
use ddpm::diffusion::gaussian::TimestepDraw;
use ddpm::diffusion::timestep_sampler::ScheduleSampler;
use ddpm::optim::TrainState;
use ddpm::presets::toy;
use ddpm::train::{optim_config, Trainer};

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn the_weighted_loss_matches_the_uniform_one_and_weighs_each_sample() {
    let gpu = gpu();
    let batch = 16;
    let cfg = TrainConfig {
        batch_size: batch,
        n_timesteps: 50,
        antithetic: false,
        ..TrainConfig::toy()
    }
    .with_iddpm();
    let model = toy::model(&cfg);
    let diffusion = toy::diffusion(&gpu, &cfg).unwrap();
    let trainer = Trainer {
        gpu: &gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 3,
        antithetic: false,
    };
    let x = gpu.upload(&common::uniform(batch * 2, -1.0, 1.0, 9), &[batch, 2]);

    // The uniform path draws t on the GPU; the weighted path gets the same t with weights 1.
    let mut uniform_state = TrainState::new(&gpu, &model.layout, 1);
    let uniform = trainer.record_step_drawn(&mut uniform_state, &x, None);
    let timesteps = gpu.read_u32(&uniform.timesteps);
    let loss = gpu.read(&uniform.loss.tensor)[0];
    let grads = gpu.read(&uniform_state.grads);

    let draw = |weights: &[f32]| TimestepDraw {
        timesteps: gpu.upload_u32(&timesteps, &[batch]),
        weights: gpu.upload(weights, &[batch]),
    };
    let mut unit_state = TrainState::new(&gpu, &model.layout, 1);
    let unit = trainer.record_step_drawn(&mut unit_state, &x, Some(&draw(&vec![1.0; batch])));
    let unit_loss = gpu.read(&unit.loss.tensor)[0];
    let per_sample = gpu.read(unit.per_sample_losses.as_ref().unwrap());
    assert!(
        ((unit_loss - loss) / loss).abs() < 1e-5,
        "unit weights: loss {unit_loss} vs uniform {loss}"
    );
    let mean = per_sample.iter().map(|&l| l as f64).sum::<f64>() / batch as f64;
    assert!(
        ((mean - loss as f64) / loss as f64).abs() < 1e-5,
        "per-sample losses average to the loss: {mean} vs {loss}"
    );
    let err = rel_l2(&gpu.read(&unit_state.grads), &grads);
    assert!(err < 1e-5, "unit weights: gradient rel L2 {err:e}");

    // Other weights: the loss is the weighted mean of the same per-sample losses.
    let weights: Vec<f32> = (0..batch).map(|i| 0.25 * (i % 5) as f32).collect();
    let mut weighted_state = TrainState::new(&gpu, &model.layout, 1);
    let weighted = trainer.record_step_drawn(&mut weighted_state, &x, Some(&draw(&weights)));
    let got = gpu.read(&weighted.loss.tensor)[0] as f64;
    let want = weights
        .iter()
        .zip(&per_sample)
        .map(|(&w, &l)| w as f64 * l as f64)
        .sum::<f64>()
        / batch as f64;
    assert!(
        ((got - want) / want).abs() < 1e-5,
        "weighted loss {got} vs sum_b w_b L_b / B = {want}"
    );
    assert_eq!(
        gpu.read(weighted.per_sample_losses.as_ref().unwrap()),
        per_sample,
        "the sampler learns from unweighted losses"
    );
}

fn importance_toy(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 64,
        n_timesteps: 20,
        antithetic: false,
        importance_sampling: true,
        log_every: 5,
        checkpoint_every: 0,
        n_samples: 64,
        ..TrainConfig::toy()
    }
    .with_iddpm()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

#[test]
fn an_importance_sampled_run_leaves_uniform_sampling_and_resumes_exactly() {
    let gpu = gpu();
    let steps = 30;
    let out = tmp("importance-full");
    let full = ddpm::presets::run(
        &gpu,
        &importance_toy(steps),
        &out,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    assert!(full.losses.iter().all(|l| l.is_finite()));
    let a = ddpm::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let sampler = a
        .sampler
        .as_ref()
        .expect("the checkpoint holds the sampler");
    // 64 draws per step over 20 timesteps fill every history of 10 within a few steps.
    assert!(sampler.sampler.warmed_up(), "every t has a full history");
    let w = sampler.sampler.weights();
    let (lo, hi) = w
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    assert!(
        hi > 1.5 * lo,
        "p_t follows the losses, not uniform: weights from {lo:.4} to {hi:.4}"
    );
    assert_eq!(
        sampler.pending.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![steps - 2, steps - 1],
        "the last two steps' losses wait for the next draw"
    );

    let split = tmp("importance-split");
    ddpm::presets::run(
        &gpu,
        &importance_toy(steps / 2),
        &split,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    let resumed = ddpm::presets::run(
        &gpu,
        &importance_toy(steps),
        &split,
        ddpm::train::Start::Resume,
    )
    .unwrap();
    assert_eq!(
        resumed.losses,
        full.losses[steps as usize / 2..].to_vec(),
        "resumed losses"
    );
    let b = ddpm::checkpoint::load(&split.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.state.params, b.state.params, "resumed weights");
    assert_eq!(a.sampler, b.sampler, "resumed sampler");
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(&split).ok();
}

#[test]
fn importance_sampling_and_antithetic_pairs_are_refused_together() {
    let cfg = TrainConfig {
        antithetic: true,
        importance_sampling: true,
        ..TrainConfig::toy()
    };
    let err = cfg.validate().unwrap_err();
    assert!(err.contains("antithetic"), "{err}");
}
