//! IDDPM on the GPU against the CPU reference: a short --iddpm toy run through training and
//! sampling, and bits per dimension. (The VLB kernels' own tests are in tests/ops/vlb.rs, the
//! learned-variance step's in tests/ops/diffusion.rs.)

mod common;

use common::{gpu, to_f64};
use ddpm::config::TrainConfig;
use ddpm::cpu;
use ddpm::diffusion::{BetaSchedule, Schedule};

#[test]
fn a_short_iddpm_toy_run_trains_and_samples_with_the_learned_variance() {
    let gpu = gpu();
    let cfg = TrainConfig {
        steps: 400,
        n_samples: 500,
        log_every: 50,
        checkpoint_every: 0,
        ..TrainConfig::toy()
    }
    .with_iddpm();
    assert_eq!(toy_outputs(&cfg), 4, "noise and variance channels");
    let out = std::env::temp_dir().join(format!("ddpm-iddpm-{}", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let report = ddpm::presets::run(
        &gpu,
        &cfg,
        &out,
        ddpm::train::Start::New(ddpm::run_dir::Existing::Refuse),
    )
    .unwrap();
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (early, late) = (mean(&report.losses[..50]), mean(&report.losses[350..]));
    assert!(report.losses.iter().all(|l| l.is_finite()));
    assert!(
        late < early,
        "the hybrid loss falls: {early:.4} -> {late:.4}"
    );
    let mmd2 = report.mmd2.unwrap();
    assert!(
        mmd2.is_finite() && mmd2 < 0.4,
        "samples with the learned variance: MMD^2 {mmd2}"
    );
    std::fs::remove_dir_all(&out).ok();
}

fn toy_outputs(cfg: &TrainConfig) -> usize {
    let model = ddpm::presets::toy::model(cfg);
    model.layout.specs.last().unwrap().numel()
}

/// The toy MLP's forward pass from the CPU reference.
fn cpu_mlp(mlp: &ddpm::nn::mlp::Mlp, flat: &[f64], x: &[f64], t: &[u32]) -> Vec<f64> {
    let specs = &mlp.layout.specs;
    let get = |i: usize| &flat[specs[i].offset..specs[i].offset + specs[i].numel()];
    let b = t.len();
    let mut h = x.to_vec();
    let mut d_in = 2;
    for layer in 0..3 {
        let hidden = specs[3 * layer + 1].numel();
        let z = cpu::matmul::matmul(
            &h,
            get(3 * layer),
            Some(get(3 * layer + 1)),
            cpu::matmul::MatmulShape::new(1, b, d_in, hidden),
        );
        let e = cpu::embedding::embedding(get(3 * layer + 2), t, hidden);
        h = cpu::activation::relu(&cpu::arith::add(&z, &e));
        d_in = hidden;
    }
    let out_dim = specs[10].numel();
    cpu::matmul::matmul(
        &h,
        get(9),
        Some(get(10)),
        cpu::matmul::MatmulShape::new(1, b, d_in, out_dim),
    )
}

#[test]
fn bits_per_dim_on_the_gpu_equal_the_cpu_composition() {
    let gpu = gpu();
    let cfg = TrainConfig {
        hidden: 16,
        ..TrainConfig::toy()
    };
    let mlp = ddpm::presets::toy::model(&cfg);
    let flat = mlp.layout.init(11);
    let dir = std::env::temp_dir().join(format!("ddpm-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let zeros = vec![0.0; flat.len()];
    let state = ddpm::optim::HostState {
        params: flat.clone(),
        exp_avg: zeros.clone(),
        exp_avg_sq: zeros,
        ema: flat.clone(),
        step: 0,
    };
    ddpm::checkpoint::save(&ckpt, &cfg, &mlp.layout, &state).unwrap();
    let (n, batch, seed) = (8, 4, 3);
    let args = ddpm::eval::EvalArgs {
        checkpoint: &ckpt,
        data: None,
        n,
        batch_size: batch,
        t_samples: 2,
        full: true,
        seed,
        use_ema: true,
    };
    let report = ddpm::eval::run(&gpu, &args).unwrap();

    let s = Schedule::new(BetaSchedule::Sigmoid, 100);
    let points: Vec<f64> = ddpm::presets::toy::fresh_data(&cfg, n)
        .unwrap()
        .iter()
        .flatten()
        .map(|&v| v as f64)
        .collect();
    let flat64 = to_f64(&flat);
    let mut per_example = Vec::new();
    for (bi, x0) in points.chunks(batch * 2).enumerate() {
        let b = x0.len() / 2;
        let mut sums = vec![0.0; b];
        for t in 0..100usize {
            // Noise is keyed by the element's index in the whole set, whatever the batch.
            let noise: Vec<f64> = (0..x0.len())
                .map(|i| cpu::rng::normal(seed, t as u32, (bi * batch * 2 + i) as u32))
                .collect();
            let tt = vec![t as u32; b];
            let x_t = cpu::diffusion::q_sample(&s, x0, &noise, &tt);
            // The x_t the GPU saw is f32.
            let x_t: Vec<f64> = x_t.iter().map(|&v| v as f32 as f64).collect();
            let eps = cpu_mlp(&mlp, &flat64, &x_t, &tt);
            for i in 0..x0.len() {
                // Fixed variance sigma^2 = beta_t is v = +1, except at t = 0, where
                // improved-diffusion's FIXED_LARGE takes posterior_variance[1] (v = -1); there
                // the toy's decoder is a Gaussian density of x_0.
                let term = if t == 0 {
                    let m = cpu::vlb::p_mean_variance(&s, 0, x_t[i], eps[i], -1.0);
                    cpu::vlb::gaussian_nll_bits(x0[i], m.mean, m.log_variance)
                } else {
                    cpu::vlb::vb_term_elementwise(&s, t, x0[i], x_t[i], eps[i], 1.0)
                };
                sums[i / 2] += term / 2.0;
            }
        }
        for (j, x) in x0.chunks(2).enumerate() {
            per_example.push(sums[j] + cpu::vlb::prior_bpd(&s, x));
        }
    }
    let want = per_example.iter().sum::<f64>() / n as f64;
    let got = report.full.unwrap().mean;
    assert!(
        (got - want).abs() <= 1e-3 * want.abs(),
        "bits/dim: GPU {got} vs CPU {want}"
    );
    assert!(report.sampled.mean.is_finite() && report.sampled.stderr >= 0.0);
    std::fs::remove_dir_all(&dir).ok();
}
