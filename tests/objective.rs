//! The training objective on the GPU: the loss of a step regresses the chosen prediction's
//! target (eps, x0 or v), weighted by min-SNR-gamma when asked, and offset noise adds one normal
//! per sample and channel to the step's eps; each checked against the CPU twins from what the
//! step drew.

mod common;

use common::gpu;
use ddpm::autograd::Ctx;
use ddpm::config::TrainConfig;
use ddpm::diffusion::gaussian::streams;
use ddpm::diffusion::{Prediction, Schedule};
use ddpm::nn::{Conditioning, Denoiser};
use ddpm::optim::TrainState;
use ddpm::presets::toy;
use ddpm::train::{optim_config, Trainer};

/// One step's loss and the loss the CPU computes from the step's own draws and model output.
fn step_loss(cfg: &TrainConfig) -> (f64, f64) {
    let gpu = gpu();
    let model = toy::model(cfg);
    let diffusion = toy::diffusion(&gpu, cfg).unwrap();
    let trainer = Trainer {
        gpu: &gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(cfg),
        seed: cfg.seed as u32,
        antithetic: cfg.antithetic,
    };
    let batch = cfg.batch_size;
    let mut state = TrainState::new(&gpu, &model.layout, 1);
    // A copy: the step updates the parameters in place.
    let host_params = gpu.read(&state.params);
    let weights_before = gpu.upload(&host_params, &[host_params.len()]);
    let x_host = common::uniform(batch * 2, -1.0, 1.0, 17);
    let x = gpu.upload(&x_host, &[batch, 2]);
    let tl = trainer.record_step_drawn(&mut state, &x, None);
    let loss = gpu.read(&tl.loss.tensor)[0] as f64;
    let timesteps = gpu.read_u32(&tl.timesteps);
    let noise = common::to_f64(&gpu.read(&tl.noise));
    // The model's output at the step's x_t with the weights before the update.
    let mut cx = Ctx::no_grad(&gpu);
    let params = model.layout().vars(&mut cx, &weights_before, None);
    let x_t = cx.constant(tl.x_t.clone());
    let out = Denoiser::forward(
        &model,
        &mut cx,
        &params,
        &x_t,
        Conditioning::at(&tl.timesteps),
    );
    let out = common::to_f64(&gpu.read(&out.tensor));

    let s = Schedule::new(cfg.schedule, cfg.n_timesteps);
    let x_start = common::to_f64(&x_host);
    let target = ddpm::cpu::prediction::target(&s, cfg.prediction, &x_start, &noise, &timesteps);
    let weights = match cfg.min_snr_gamma {
        Some(g) => ddpm::cpu::prediction::min_snr_weights(&s, cfg.prediction, &timesteps, g),
        None => vec![1.0; batch],
    };
    let want = (0..batch * 2)
        .map(|i| weights[i / 2] * (out[i] - target[i]).powi(2))
        .sum::<f64>()
        / (batch * 2) as f64;
    (loss, want)
}

fn toy(prediction: Prediction) -> TrainConfig {
    TrainConfig {
        batch_size: 24,
        hidden: 16,
        prediction,
        seed: 5,
        ..TrainConfig::toy()
    }
}

#[test]
fn each_prediction_regresses_its_target() {
    for prediction in [Prediction::Eps, Prediction::X0, Prediction::V] {
        for gamma in [None, Some(5.0), Some(0.5)] {
            let cfg = TrainConfig {
                min_snr_gamma: gamma,
                ..toy(prediction)
            };
            let (got, want) = step_loss(&cfg);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs() + 1e-6,
                "{prediction}, min-snr {gamma:?}: loss {got} vs {want}"
            );
        }
    }
}

#[test]
fn offset_noise_shifts_each_samples_eps_by_one_normal_per_channel() {
    let gpu = gpu();
    let cfg = TrainConfig {
        offset_noise: 0.3,
        ..toy(Prediction::Eps)
    };
    let model = toy::model(&cfg);
    let diffusion = toy::diffusion(&gpu, &cfg).unwrap();
    let trainer = Trainer {
        gpu: &gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 5,
        antithetic: true,
    };
    let mut state = TrainState::new(&gpu, &model.layout, 1);
    state.step = 3;
    let x = gpu.upload(&common::uniform(48, -1.0, 1.0, 17), &[24, 2]);
    let tl = trainer.record_step_drawn(&mut state, &x, None);
    let noise = gpu.read(&tl.noise);
    let base = ddpm::rng::normals(5, streams::for_step(3, streams::NOISE), 48);
    // The toy's points have two channels and no spatial axes: one offset per element.
    let offsets = ddpm::rng::normals(5, streams::for_step(3, streams::OFFSET), 48);
    let want = ddpm::cpu::prediction::offset_noise(&base, &offsets, 1, 0.3);
    common::assert_close("offset noise", &noise, &want, 1e-5, 1e-5);
    let (got, want) = step_loss(&cfg);
    assert!((got - want).abs() <= 1e-5 * want + 1e-6, "{got} vs {want}");
}

/// The toy MLP read as an eps model, re-expressed as a model of another target: its output is
/// the x0 or v that its eps implies at x_t. Sampling this model with that prediction must give
/// what the eps model gives with eps prediction.
struct AsTarget<'a> {
    mlp: &'a ddpm::nn::mlp::Mlp,
    prediction: Prediction,
    /// The trained (not respaced) table: the model is called with trained timesteps.
    table: ddpm::tensor::Tensor,
}

impl Denoiser for AsTarget<'_> {
    fn layout(&self) -> &ddpm::nn::params::ParamLayout {
        &self.mlp.layout
    }
    fn class_rows(&self) -> Option<usize> {
        None
    }
    fn forward(
        &self,
        cx: &mut Ctx,
        params: &[ddpm::autograd::Var],
        x: &ddpm::autograd::Var,
        cond: Conditioning,
    ) -> ddpm::autograd::Var {
        use ddpm::ops::prediction::{target, to_x0};
        let gpu = cx.gpu;
        let eps = Denoiser::forward(self.mlp, cx, params, x, cond);
        let t = cond.timesteps;
        let x0 = to_x0(
            gpu,
            Prediction::Eps,
            &self.table,
            &x.tensor,
            &eps.tensor,
            t,
            false,
        );
        let y = target(gpu, self.prediction, &self.table, &x0, &eps.tensor, t);
        cx.constant(y)
    }
}

#[test]
fn every_sampler_reads_x0_and_v_models_as_the_eps_model_they_imply() {
    use ddpm::diffusion::gaussian::ChainOptions;
    use ddpm::ops::diffusion::PSampleOptions;
    let gpu = gpu();
    let cfg = TrainConfig {
        hidden: 32,
        n_timesteps: 40,
        ..TrainConfig::toy()
    };
    let mlp = toy::model(&cfg);
    let host = mlp.layout.init(3);
    let weights = gpu.upload(&host, &[host.len()]);
    let ancestral = toy::default_options(&cfg).unwrap();
    let samplers = [
        ("ancestral", ancestral),
        (
            "ddim",
            PSampleOptions {
                ddim_eta: Some(0.0),
                steps: Some(10),
                ..ancestral
            },
        ),
        (
            "dpm++2m",
            PSampleOptions {
                dpm_solver: true,
                spacing: None,
                steps: Some(8),
                ..ancestral
            },
        ),
    ];
    let shape = [50, 2];
    for (what, opts) in samplers {
        let eps_diffusion = toy::diffusion(&gpu, &cfg).unwrap();
        let want = eps_diffusion
            .for_sampling(&gpu, &opts)
            .unwrap()
            .p_sample_loop(&gpu, &mlp, &weights, &shape, ChainOptions::new(opts, 9))
            .0;
        let want = common::to_f64(&gpu.read(&want));
        for prediction in [Prediction::X0, Prediction::V] {
            let pcfg = TrainConfig {
                prediction,
                ..cfg.clone()
            };
            let diffusion = toy::diffusion(&gpu, &pcfg).unwrap();
            let model = AsTarget {
                mlp: &mlp,
                prediction,
                table: diffusion.table.clone(),
            };
            let got = diffusion
                .for_sampling(&gpu, &opts)
                .unwrap()
                .p_sample_loop(&gpu, &model, &weights, &shape, ChainOptions::new(opts, 9))
                .0;
            common::assert_close(
                &format!("{what}, {prediction} prediction"),
                &gpu.read(&got),
                &want,
                2e-3,
                2e-3,
            );
        }
    }
}
