//! `ddpm bench`: times kernels and whole training steps on the current adapter. Each case is
//! recorded `reps` times into one submit after a warm-up, so the time per call includes the
//! dispatch overhead a training step pays, not a readback per call.

use std::time::Instant;

use crate::config::TrainConfig;
use crate::gpu::Gpu;
use crate::ops;
use crate::optim::TrainState;
use crate::shape::ConvShape;
use crate::tensor::Tensor;
use crate::toy;
use crate::train::{optim_config, Trainer};

pub struct BenchResult {
    pub name: String,
    pub ms: f64,
    /// GFLOP/s for compute-bound cases, GB/s for memory-bound ones.
    pub rate: f64,
    pub unit: &'static str,
}

fn time(gpu: &Gpu, reps: usize, mut f: impl FnMut() -> Tensor) -> f64 {
    drop(f());
    gpu.wait();
    let start = Instant::now();
    for _ in 0..reps {
        drop(f());
    }
    gpu.wait();
    start.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn rand(gpu: &Gpu, shape: &[usize], stream: u32) -> Tensor {
    ops::rng::uniform(gpu, shape, 1, stream)
}

/// `DDPM_BENCH_FILTER=substring` runs only the cases whose name contains it (for timing one
/// kernel without the whole, slow suite); unset or empty runs everything.
fn selected(filter: &Option<String>, name: &str) -> bool {
    filter.as_deref().is_none_or(|f| name.contains(f))
}

pub fn run(gpu: &Gpu, quick: bool) -> Vec<BenchResult> {
    let reps = if quick { 3 } else { 20 };
    let filter = std::env::var("DDPM_BENCH_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let mut out = Vec::new();
    let mut push = |name: String, ms: f64, work: f64, unit: &'static str| {
        out.push(BenchResult {
            name,
            ms,
            rate: work / (ms * 1e-3) / 1e9,
            unit,
        });
    };
    let own = gpu.caps();
    for (variant, caps) in crate::gpu::caps::profiles(&own).into_iter().take(3) {
        gpu.set_caps(caps);
        for (m, k, n) in [(128, 128, 128), (512, 512, 512), (2000, 128, 128)] {
            let a = rand(gpu, &[m, k], 1);
            let b = rand(gpu, &[k, n], 2);
            let flops = 2.0 * (m * k * n) as f64;
            let name = format!("matmul {variant} {m}x{k}x{n}");
            if selected(&filter, &name) {
                let ms = time(gpu, reps, || {
                    ops::matmul::matmul(gpu, &a, &b, None, false, false)
                });
                push(name, ms, flops, "GFLOP/s");
            }
            let at = rand(gpu, &[k, m], 3);
            let name = format!("matmul {variant} A^T {m}x{k}x{n}");
            if selected(&filter, &name) {
                let ms = time(gpu, reps, || {
                    ops::matmul::matmul(gpu, &at, &b, None, true, false)
                });
                push(name, ms, flops, "GFLOP/s");
            }
        }
    }
    gpu.set_caps(own);
    // The GPU target: 4096^3 (137 GFLOP, ~30 s a call on lavapipe, so GPUs only).
    if !gpu.is_cpu() {
        let size = 4096;
        let a = rand(gpu, &[size, size], 1);
        let b = rand(gpu, &[size, size], 2);
        let name = format!("matmul {size}x{size}x{size}");
        if selected(&filter, &name) {
            let ms = time(gpu, reps, || {
                ops::matmul::matmul(gpu, &a, &b, None, false, false)
            });
            push(name, ms, 2.0 * (size as f64).powi(3), "GFLOP/s");
        }
    }
    let n = 1 << 20;
    let x = rand(gpu, &[n], 4);
    let name = String::from("silu_fwd 1M");
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || ops::activation::silu(gpu, &x));
        push(name, ms, 8.0 * n as f64, "GB/s");
    }
    let name = String::from("sum 1M");
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || ops::reduce::sum(gpu, &x));
        push(name, ms, 4.0 * n as f64, "GB/s");
    }
    let small = rand(gpu, &[128 * 128], 5);
    let name = String::from("relu_fwd 16K (dispatch overhead)");
    if selected(&filter, &name) {
        let ms = time(gpu, reps * 5, || ops::activation::relu(gpu, &small));
        push(name, ms, 8.0 * small.numel() as f64, "GB/s");
    }

    // The mnist UNet's layers at batch 32.
    let n = 32;
    let conv_shapes = [
        ("conv 32->32 3x3 @28", 32, 32, 28, 1, 3),
        ("conv 32->32 3x3 s2 @28", 32, 32, 28, 2, 3),
        ("conv 96->32 3x3 @28", 96, 32, 28, 1, 3),
        ("conv 96->32 1x1 @28", 96, 32, 28, 1, 1),
        ("conv 64->64 3x3 @14", 64, 64, 14, 1, 3),
        ("conv 64->64 3x3 @7", 64, 64, 7, 1, 3),
    ];
    // DDPM_BENCH_CONV_REPS overrides the count, for steadier A/B timings or a profiler.
    let conv_reps = std::env::var("DDPM_BENCH_CONV_REPS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|&r| r > 0)
        .unwrap_or(if quick { 1 } else { 5 });
    for (case, c_in, c_out, size, stride, kernel) in conv_shapes {
        let s = ConvShape {
            n,
            c_in,
            h: size,
            w: size,
            c_out,
            kernel,
            stride,
            padding: kernel / 2,
        };
        let x = rand(gpu, &[n, c_in, size, size], 20);
        let w = rand(gpu, &[c_out, c_in, kernel, kernel], 21);
        let b = rand(gpu, &[c_out], 22);
        let dy = rand(gpu, &[n, c_out, s.h_out(), s.w_out()], 23);
        let flops = 2.0 * (n * c_out * s.h_out() * s.w_out() * c_in * kernel * kernel) as f64;
        let name = format!("{case} fwd");
        if selected(&filter, &name) {
            let ms = time(gpu, conv_reps, || {
                ops::conv::conv2d(gpu, &x, &w, Some(&b), stride, s.padding)
            });
            push(name, ms, flops, "GFLOP/s");
        }
        let name = format!("{case} bwd_x");
        if selected(&filter, &name) {
            let ms = time(gpu, conv_reps, || {
                ops::conv::conv2d_backward_x(gpu, &w, &dy, &s)
            });
            push(name, ms, flops, "GFLOP/s");
        }
        let name = format!("{case} bwd_w");
        if selected(&filter, &name) {
            let ms = time(gpu, conv_reps, || {
                ops::conv::conv2d_backward_w(gpu, &x, &dy, &s)
            });
            push(name, ms, flops, "GFLOP/s");
        }
    }
    let gn = ops::group_norm::GroupNormOptions {
        groups: 8,
        fuse_silu: true,
    };
    for (c, size) in [(32, 28), (64, 14)] {
        let x = rand(gpu, &[n, c, size, size], 24);
        let (g, b) = (rand(gpu, &[c], 25), rand(gpu, &[c], 26));
        let bytes = 8.0 * x.numel() as f64;
        let name = format!("group_norm+silu fwd {c}ch @{size}");
        if selected(&filter, &name) {
            let ms = time(gpu, conv_reps, || {
                ops::group_norm::group_norm(gpu, &x, &g, &b, gn).0
            });
            push(name, ms, bytes, "GB/s");
        }
        let (_, stats) = ops::group_norm::group_norm(gpu, &x, &g, &b, gn);
        let name = format!("group_norm+silu bwd {c}ch @{size}");
        if selected(&filter, &name) {
            let ms = time(gpu, conv_reps, || {
                ops::group_norm::group_norm_backward(gpu, &x, &g, &b, &stats, &x, gn).0
            });
            push(name, ms, 2.0 * bytes, "GB/s");
        }
    }
    let scores = rand(gpu, &[n, 49, 49], 27);
    let name = String::from("attention softmax fwd 64ch @7");
    if selected(&filter, &name) {
        let ms = time(gpu, conv_reps, || {
            ops::attention::softmax(gpu, &scores, 0.125)
        });
        push(name, ms, 8.0 * scores.numel() as f64, "GB/s");
    }
    let q = rand(gpu, &[n, 64, 49], 28);
    let name = String::from("attention q^T k 64ch @7");
    if selected(&filter, &name) {
        let ms = time(gpu, conv_reps, || {
            ops::matmul::matmul(gpu, &q, &q, None, true, false)
        });
        push(name, ms, 2.0 * (n * 49 * 49 * 64) as f64, "GFLOP/s");
    }

    // The whole step at the batch 32; on GPUs also at the preset's 64 and at 128, where
    // a big card is better filled.
    let step_batches: &[usize] = if gpu.is_cpu() { &[32] } else { &[32, 64, 128] };
    for &n in step_batches {
        let name = format!("mnist UNet training step (batch {n})");
        if !selected(&filter, &name) {
            continue;
        }
        let mnist = TrainConfig {
            batch_size: n,
            ..TrainConfig::mnist()
        };
        let unet = crate::nn::unet::UNet::new(mnist.unet.clone().expect("mnist has a UNet"));
        let unet_diffusion = crate::images::diffusion(gpu, &mnist).expect("mnist schedule");
        let unet_trainer = Trainer {
            gpu,
            model: &unet,
            diffusion: &unet_diffusion,
            optim: optim_config(&mnist),
            seed: 0,
            antithetic: false,
        };
        let mut unet_state = TrainState::new(gpu, &unet.layout, 0);
        let images = rand(gpu, &[n, 1, 28, 28], 29);
        let step_reps = match (gpu.is_cpu(), quick) {
            (_, true) => 1,
            (true, false) => 3,
            (false, false) => 20,
        };
        let ms = time(gpu, step_reps, || {
            let loss = unet_trainer.record_step(&mut unet_state, &images);
            gpu.submit();
            loss
        });
        // Host time of a step recorded while the device is idle, after the timed steps (so the
        // pipelines and bind groups exist, as in training): recording (the tape, the bind
        // groups, wgpu's command recording) and the submit. Idle, because a software adapter
        // runs the previous step's kernels on the same cores the host records with.
        let host_reps = if gpu.is_cpu() || quick { 1 } else { 10 };
        let (mut record, mut submit, mut dispatches) = (0.0, 0.0, 0);
        for _ in 0..host_reps {
            gpu.wait();
            let (started, before) = (Instant::now(), gpu.n_dispatches());
            drop(unet_trainer.record_step(&mut unet_state, &images));
            let recorded = Instant::now();
            gpu.submit();
            record += (recorded - started).as_secs_f64();
            submit += recorded.elapsed().as_secs_f64();
            dispatches += gpu.n_dispatches() - before;
        }
        gpu.wait();
        // 1.66 GFLOP per image for forward, backward and the update (the count).
        push(name, ms, 1.66e9 * n as f64, "GFLOP/s");
        // Where the host's share of a step matters: a GPU that finishes the kernels sooner than
        // the CPU records them waits on the host. (Lavapipe runs the kernels inside the submit,
        // so there only the recording line is host time.)
        let per_step = dispatches as f64 / host_reps as f64;
        push(
            format!("  host: recording it ({per_step:.0} dispatches)"),
            record * 1e3 / host_reps as f64,
            per_step * 1e6,
            "k dispatch/s",
        );
        push(
            String::from("  host: submitting it"),
            submit * 1e3 / host_reps as f64,
            per_step * 1e6,
            "k dispatch/s",
        );
    }

    // The pieces of a toy training step (batch 128, hidden 128, T = 100, 72k parameters).
    let index = ops::rng::timesteps(gpu, 128, 100, true, 0, 8);
    let dy = rand(gpu, &[128, 128], 9);
    let name = String::from("embedding_bwd 100x128, batch 128");
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || {
            ops::embedding::embedding_backward(gpu, &[100, 128], &index, &dy)
        });
        push(name, ms, 4.0 * (100 * 128 * 128) as f64, "GB/s");
    }
    let flat = rand(gpu, &[72_066], 10);
    let name = String::from("grad norm 72k");
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || ops::optim::grad_norm(gpu, &flat));
        push(name, ms, 4.0 * flat.numel() as f64, "GB/s");
    }
    let (m1, m2, m3) = (
        rand(gpu, &[72_066], 11),
        rand(gpu, &[72_066], 12),
        rand(gpu, &[72_066], 13),
    );
    let norm = ops::optim::grad_norm(gpu, &flat);
    let adam = crate::optim::AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        max_norm: 1.0,
    };
    let name = String::from("adam_step 72k");
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || {
            let tensors = ops::optim::AdamTensors {
                param: &m1,
                grad: &flat,
                grad_norm: &norm,
                exp_avg: &m2,
                exp_avg_sq: &m3,
            };
            ops::optim::adam_step(gpu, &adam, 1e-3, 1, tensors);
            norm.clone()
        });
        push(name, ms, 28.0 * flat.numel() as f64, "GB/s");
    }
    for (m, k, n, ta) in [
        (128, 2, 128, false),
        (128, 128, 2, false),
        (2, 128, 128, true),
        (128, 128, 128, true),
    ] {
        let a = if ta {
            rand(gpu, &[k, m], 14)
        } else {
            rand(gpu, &[m, k], 14)
        };
        let b = rand(gpu, &[k, n], 15);
        let name = format!("matmul {m}x{k}x{n} trans_a={ta}");
        if selected(&filter, &name) {
            let ms = time(gpu, reps, || {
                ops::matmul::matmul(gpu, &a, &b, None, ta, false)
            });
            push(name, ms, 2.0 * (m * k * n) as f64, "GFLOP/s");
        }
    }

    let cfg = TrainConfig::toy();
    let model = toy::model(&cfg);
    let diffusion = toy::diffusion(gpu, &cfg).expect("toy schedule");
    let trainer = Trainer {
        gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 0,
        antithetic: true,
    };
    let mut state = TrainState::new(gpu, &model.layout, 0);
    let batch = rand(gpu, &[cfg.batch_size, 2], 6);
    let flops = 6.0 * cfg.batch_size as f64 * model.layout.n_params() as f64;
    let t = ops::rng::timesteps(gpu, cfg.batch_size, cfg.n_timesteps, true, 0, 16);
    let name = format!("toy forward only (batch {})", cfg.batch_size);
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || {
            let mut cx = crate::autograd::Ctx::no_grad(gpu);
            let params = model.layout.vars(&mut cx, &state.params, None);
            let x = cx.constant(batch.clone());
            let out = model.forward(&mut cx, &params, &x, &t);
            gpu.submit();
            out.tensor
        });
        push(name, ms, flops / 3.0, "GFLOP/s");
    }
    let name = format!("toy forward + backward (batch {})", cfg.batch_size);
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || {
            let mut cx = crate::autograd::Ctx::new(gpu);
            let params = model
                .layout
                .vars(&mut cx, &state.params, Some(&state.grads));
            let x = cx.constant(batch.clone());
            let out = model.forward(&mut cx, &params, &x, &t);
            let loss = ops::loss::mse_var(&mut cx, &out, &batch);
            ops::backward(&mut cx, &loss);
            gpu.submit();
            loss.tensor
        });
        push(name, ms, flops, "GFLOP/s");
    }
    let name = format!("toy training step (batch {})", cfg.batch_size);
    if selected(&filter, &name) {
        let ms = time(gpu, reps, || {
            let loss = trainer.record_step(&mut state, &batch);
            gpu.submit();
            loss
        });
        let flops = 6.0 * cfg.batch_size as f64 * model.layout.n_params() as f64;
        push(name, ms, flops, "GFLOP/s");
    }
    out
}
