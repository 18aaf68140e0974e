//! The browser test suite, run by `cargo xtask web-test` in headless Chromium: every entry
//! point of shaders/ creates its pipeline under Chromium's WGSL compiler (Tint), one kernel per
//! shader file runs against its CPU twin (the same `ddpm::cpu` code as the native suite,
//! compiled to wasm). The page calls `list_checks`, then `run_check` for each name, and reports
//! every result to the test server; then it trains the toy through its own controls (the same
//! `ToySession` a person uses) and checks that the loss falls.

use ddpm::cpu;
use ddpm::gpu::Gpu;
use ddpm::ops;
use ddpm::shape::ConvShape;
use ddpm::tensor::Tensor;
use wasm_bindgen::prelude::*;

use crate::gpu;

/// The kernel checks, each named after the shader file it covers and the entry points it runs.
const KERNELS: &[&str] = &[
    "kernel_activation_silu",
    "kernel_arith_add_mul",
    "kernel_attention_softmax",
    "kernel_conv_conv2d",
    "kernel_cross_entropy_rows",
    "kernel_diffusion_p_sample_ddim",
    "kernel_dpm_solver_step",
    "kernel_embedding",
    "kernel_group_norm",
    "kernel_guidance_guide",
    "kernel_loss_mse",
    "kernel_matmul",
    "kernel_optim_adam_ema",
    "kernel_prediction_to_eps_to_x0",
    "kernel_reduce_sum",
    "kernel_resample_upsample",
    "kernel_rng_uniform_normal",
    "kernel_unet_misc_timestep_embedding",
    "kernel_vlb_vb_terms",
];

/// Every check's name, in the order the page runs them.
#[wasm_bindgen]
pub fn list_checks() -> Vec<String> {
    let mut names = vec!["pipelines_every_entry_point".to_owned()];
    names.extend(KERNELS.iter().map(|name| name.to_string()));
    names.push("image_checkpoint_samples_frame_by_frame".to_owned());
    names
}

/// Runs one check; resolves to a one-line summary, rejects with what went wrong.
#[wasm_bindgen]
pub async fn run_check(name: String) -> Result<String, JsValue> {
    let gpu = gpu::open().await.map_err(|e| JsValue::from_str(&e))?;
    let errors_before = gpu::n_errors();
    let result = match name.as_str() {
        "pipelines_every_entry_point" => pipelines(&gpu).await,
        "image_checkpoint_samples_frame_by_frame" => image_checkpoint(gpu).await,
        _ => kernel(&gpu, &name).await,
    };
    let result = result.and_then(|summary| {
        if gpu::n_errors() > errors_before {
            Err(format!(
                "{summary}; but WebGPU reported: {}",
                gpu::last_error().unwrap_or_default()
            ))
        } else {
            Ok(summary)
        }
    });
    result.map_err(|e| JsValue::from_str(&e))
}

/// Creates the pipeline of every compute entry point inside a validation error scope, so a
/// shader Tint refuses is named with its message (instead of a console line and a dead kernel).
async fn pipelines(gpu: &Gpu) -> Result<String, String> {
    let kernels = gpu::entry_points()?;
    let subgroups = gpu.device.features().contains(wgpu::Features::SUBGROUP);
    let (mut created, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    let mut slowest: Vec<(f64, String)> = Vec::new();
    for kernel in &kernels {
        // A file included in several modules (soft/conv.wgsl in its subgroup module, matmul.wgsl
        // in the wing's) compiles once: every entry point of every file, each once.
        if !seen.insert(kernel.entry) {
            continue;
        }
        let t0 = now_ms();
        if gpu::needs_subgroups(kernel) && !subgroups {
            skipped.push(format!("{}/{}", kernel.shader.name, kernel.entry));
            continue;
        }
        let validation = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = gpu.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let pipeline = ddpm::gpu::kernel::create_pipeline(&gpu.device, kernel, gpu.workgroup_1d);
        let errors = [internal.pop().await, validation.pop().await];
        drop(pipeline);
        slowest.push((
            now_ms() - t0,
            format!("{}/{}", kernel.shader.name, kernel.entry),
        ));
        match errors.into_iter().flatten().next() {
            None => created += 1,
            Some(e) => failures.push(format!("{}.wgsl {}: {e}", kernel.shader.name, kernel.entry)),
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} of {} entry points failed to create a pipeline:\n{}",
            failures.len(),
            kernels.len(),
            failures.join("\n")
        ));
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|(ms, name)| format!("{name} {:.1} s", ms / 1e3))
        .collect();
    Ok(format!(
        "{created} of {} distinct entry points created their pipelines{}; slowest: {}",
        seen.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} subgroup entry points skipped: the device has no subgroups)",
                skipped.len()
            )
        },
        slowest.join(", ")
    ))
}

/// A small class-conditional UNet's checkpoint, made in memory as `ddpm train` writes it:
/// the page's loader accepts it, and its frame-by-frame chain ends at the x_0 of
/// `p_sample_loop` (the CLI's chain) with the same seed; truncated bytes, a toy checkpoint and
/// a checkpoint whose weights do not match its config are each refused with their own message.
async fn image_checkpoint(gpu: Gpu) -> Result<String, String> {
    use crate::images::{Draw, Loaded};
    use ddpm::config::TrainConfig;
    use ddpm::diffusion::gaussian::{ChainOptions, ClassGuidance};
    use ddpm::nn::unet::UNetConfig;
    use ddpm::optim::HostState;

    let err = |e: anyhow::Error| format!("{e:#}");
    let gpu = std::rc::Rc::new(gpu);
    let unet = UNetConfig {
        image_size: 8,
        in_channels: 3,
        out_channels: 3,
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![4],
        groups: 4,
        dropout: 0.0,
    };
    let cfg = TrainConfig {
        n_timesteps: 20,
        class_cond: true,
        classes: vec!["a".into(), "b".into(), "c".into()],
        unet: Some(unet.clone()),
        ..TrainConfig::emoji()
    };
    let model = ddpm::presets::images::model(&cfg).map_err(err)?;
    let host = HostState::fresh(&model.layout, 7);
    let bytes = ddpm::checkpoint::to_bytes(&cfg, &model.layout, &host, None).map_err(err)?;

    let refused = |loaded: Result<Loaded, String>, what: &str, expect: &str| match loaded {
        Ok(_) => Err(format!("{what} was accepted")),
        Err(e) if e.contains(expect) => Ok(()),
        Err(e) => Err(format!("{what}: the message does not say '{expect}': {e}")),
    };
    let truncated = &bytes[..bytes.len() / 2];
    refused(
        Loaded::new(gpu.clone(), truncated, "cut.safetensors"),
        "a truncated file",
        "corrupt",
    )?;
    let toy = TrainConfig::toy();
    let toy_model = ddpm::presets::toy::model(&toy);
    let toy_host = HostState::fresh(&toy_model.layout, 7);
    let toy_bytes =
        ddpm::checkpoint::to_bytes(&toy, &toy_model.layout, &toy_host, None).map_err(err)?;
    refused(
        Loaded::new(gpu.clone(), &toy_bytes, "toy.safetensors"),
        "a toy checkpoint",
        "toy",
    )?;
    let wider = TrainConfig {
        unet: Some(UNetConfig {
            base_channels: 16,
            ..unet.clone()
        }),
        ..cfg.clone()
    };
    let mismatched = ddpm::checkpoint::to_bytes(&wider, &model.layout, &host, None).map_err(err)?;
    refused(
        Loaded::new(gpu.clone(), &mismatched, "wider.safetensors"),
        "weights of another architecture",
        "different architecture",
    )?;

    let loaded = Loaded::new(gpu.clone(), &bytes, "tiny.safetensors")?;
    let draw = Draw {
        n: 4,
        steps: 5,
        class: Some(1),
        guidance: 2.0,
        seed: 11,
    };
    loaded.check(&draw)?;
    for bad in [
        Draw { n: 0, ..draw },
        Draw { steps: 21, ..draw },
        Draw {
            class: Some(3),
            ..draw
        },
        Draw {
            guidance: f32::NAN,
            ..draw
        },
    ] {
        if loaded.check(&bad).is_ok() {
            return Err(format!(
                "a draw of {} images, {} steps, class {:?}, guidance {} was accepted",
                bad.n, bad.steps, bad.class, bad.guidance
            ));
        }
    }
    let sampler = loaded.sampler(&draw)?;
    let mut frames = Vec::new();
    let x0 = loaded
        .run(&sampler, &draw, 10, |f| {
            frames.push((f.steps_done, f.width, f.height, f.rgba))
        })
        .await?;
    let done: Vec<usize> = frames.iter().map(|f| f.0).collect();
    if done != [0, 1, 2, 3, 4, 5] {
        return Err(format!(
            "frames after steps {done:?}, expected one per step 0..=5"
        ));
    }
    let (_, width, height, rgba) = frames.last().expect("frames");
    if rgba.len() != width * height * 4 || *width < 2 * 8 {
        return Err(format!("a {width}x{height} frame of {} bytes", rgba.len()));
    }
    let classes = vec![1u32; draw.n];
    let chain = ChainOptions {
        guidance: Some(ClassGuidance {
            classes: &classes,
            scale: draw.guidance,
        }),
        ..ChainOptions::new(loaded.options(&draw)?, draw.seed)
    };
    let shape = [draw.n, 3, 8, 8];
    let (reference, _) = sampler.p_sample_loop(&gpu, &loaded.model, &loaded.weights, &shape, chain);
    let reference = gpu.read_async(&reference).await?;
    let worst = x0
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    if x0.len() != reference.len() || worst != 0.0 || x0.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "the page's chain ends {worst:e} away from p_sample_loop's x_0 ({} vs {} values)",
            x0.len(),
            reference.len()
        ));
    }
    Ok(format!(
        "{} frames of a guided 5-step draw of 4 8x8 images equal p_sample_loop's x_0; a \
         truncated file, a toy checkpoint and mismatched weights refused",
        frames.len()
    ))
}

/// The page's clock (std's Instant panics in a browser).
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// Uniform values in [lo, hi) from the project's counter-based RNG, as the native tests draw.
fn uniform(n: usize, lo: f64, hi: f64, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| (lo + (hi - lo) * cpu::rng::uniform(seed, 99, i)) as f32)
        .collect()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// |got - want| <= atol + rtol * |want| everywhere; the error names the worst element.
fn close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Result<String, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, the reference has {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst = (0usize, 0.0f64, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = if g.is_nan() {
            f64::INFINITY
        } else {
            (g as f64 - w).abs()
        };
        let excess = err - (atol + rtol * w.abs());
        if excess > worst.1 || i == 0 {
            worst = (i, excess, err);
        }
    }
    let (i, excess, err) = worst;
    if excess > 0.0 {
        return Err(format!(
            "{what}: element {i} is {} but the CPU twin says {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        ));
    }
    Ok(format!(
        "{what}: {} values match the CPU twin (worst |err| {err:.2e})",
        got.len()
    ))
}

async fn read(gpu: &Gpu, t: &Tensor) -> Result<Vec<f32>, String> {
    gpu.read_async(t).await
}

async fn kernel(gpu: &Gpu, name: &str) -> Result<String, String> {
    use ddpm::diffusion::schedule::TABLE_COLS;
    use ddpm::diffusion::{BetaSchedule, Prediction, Schedule};
    match name {
        "kernel_diffusion_p_sample_ddim" => {
            let s = Schedule::new(BetaSchedule::Linear, 1000);
            let table = gpu.upload(&s.gpu_table(), &[1000, TABLE_COLS]);
            let n = 5 * 21;
            let (x_t, eps) = (uniform(n, -3.0, 3.0, 26), uniform(n, -2.0, 2.0, 27));
            let (gx, geps) = (gpu.upload(&x_t, &[5, 21]), gpu.upload(&eps, &[5, 21]));
            let (t, seed, stream) = (10, 11, 110);
            let step = ops::diffusion::ReverseStep {
                t,
                noise: ops::diffusion::NoiseKey::new(seed, stream),
            };
            let opts = ops::diffusion::PSampleOptions {
                variance: cpu::diffusion::VarianceKind::Posterior,
                clip_denoised: true,
                ddim_eta: None,
                dpm_solver: false,
                spacing: None,
                steps: None,
            };
            let got = ops::diffusion::p_sample(gpu, &table, &gx, &geps, step, opts);
            let z = cpu::rng::normals(seed, stream, n);
            let (x64, eps64) = (to_f64(&x_t), to_f64(&eps));
            let want = cpu::diffusion::p_sample(
                &s,
                &x64,
                &eps64,
                &z,
                t,
                true,
                cpu::diffusion::VarianceKind::Posterior,
            );
            close("p_sample", &read(gpu, &got).await?, &want, 1e-4, 1e-4)?;
            let got = ops::diffusion::ddim_step(gpu, &table, &gx, &geps, step, 0.5, false);
            let (abar, prev) = (s.alphas_cumprod[t], s.alphas_cumprod_prev[t]);
            let want: Vec<f64> = (0..n)
                .map(|i| cpu::ddim::ddim_step(x64[i], eps64[i], abar, prev, 0.5, z[i], false))
                .collect();
            close(
                "p_sample, ddim_step",
                &read(gpu, &got).await?,
                &want,
                2e-4,
                2e-4,
            )
        }
        "kernel_dpm_solver_step" => {
            use ddpm::diffusion::dpm_solver::{respaced, step_coefs};
            let s = respaced(&Schedule::new(BetaSchedule::Cosine, 1000), 20)?.schedule;
            let n = 3 * 67;
            let t = 9;
            let (x, m0, m1) = (
                uniform(n, -3.0, 3.0, 60),
                uniform(n, -1.0, 1.0, 61),
                uniform(n, -1.0, 1.0, 62),
            );
            let up = |v: &[f32]| gpu.upload(v, &[3, 67]);
            let coefs = step_coefs(&s, t, true);
            let got = ops::dpm_solver::step(gpu, &up(&x), &up(&m0), &up(&m1), coefs);
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    cpu::dpm_solver::step(
                        x[i] as f64,
                        m0[i] as f64,
                        s.alphas_cumprod[t],
                        s.alphas_cumprod_prev[t],
                        Some((m1[i] as f64, s.alphas_cumprod[t + 1])),
                    )
                })
                .collect();
            close(
                "dpm_solver step",
                &read(gpu, &got).await?,
                &want,
                1e-5,
                1e-5,
            )
        }
        "kernel_optim_adam_ema" => {
            let n = 1234;
            let cfg = cpu::optim::AdamConfig {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                max_norm: 1.0,
            };
            let (param, m0, v0, grad) = (
                uniform(n, -1.0, 1.0, 19),
                uniform(n, -0.1, 0.1, 20),
                uniform(n, 0.0, 0.1, 21),
                uniform(n, -1.0, 1.0, 22),
            );
            let (gp, gg, gm, gv) = (
                gpu.upload(&param, &[n]),
                gpu.upload(&grad, &[n]),
                gpu.upload(&m0, &[n]),
                gpu.upload(&v0, &[n]),
            );
            let norm = ops::optim::grad_norm(gpu, &gg);
            let tensors = ops::optim::AdamTensors {
                param: &gp,
                grad: &gg,
                grad_norm: &norm,
                exp_avg: &gm,
                exp_avg_sq: &gv,
            };
            ops::optim::adam_step(gpu, &cfg, cfg.lr, 7, tensors);
            let (mut p64, mut m64, mut v64) = (to_f64(&param), to_f64(&m0), to_f64(&v0));
            cpu::optim::adam_step(&cfg, 7, &mut p64, &to_f64(&grad), &mut m64, &mut v64);
            close("adam exp_avg", &read(gpu, &gm).await?, &m64, 1e-7, 1e-4)?;
            close("adam exp_avg_sq", &read(gpu, &gv).await?, &v64, 1e-9, 1e-4)?;
            close("adam param", &read(gpu, &gp).await?, &p64, 1e-6, 1e-5)?;
            let ema = uniform(n, -1.0, 1.0, 23);
            let gema = gpu.upload(&ema, &[n]);
            ops::optim::ema_update(gpu, &gema, &gp, 0.99);
            let mut ema64 = to_f64(&ema);
            cpu::optim::ema_update(&mut ema64, &p64, 0.99);
            close(
                "adam, ema_update",
                &read(gpu, &gema).await?,
                &ema64,
                1e-6,
                1e-5,
            )
        }
        "kernel_prediction_to_eps_to_x0" => {
            let s = Schedule::new(BetaSchedule::Linear, 1000);
            let table = gpu.upload(&s.gpu_table(), &[1000, TABLE_COLS]);
            let shape = [5, 3, 7];
            let n = 5 * 21;
            let timesteps: Vec<u32> = vec![0, 1, 500, 998, 999];
            let t_gpu = gpu.upload_u32(&timesteps, &[5]);
            let (x, y) = (uniform(n, -3.0, 3.0, 31), uniform(n, -2.0, 2.0, 32));
            let (gx, gy) = (gpu.upload(&x, &shape), gpu.upload(&y, &shape));
            let (x64, y64) = (to_f64(&x), to_f64(&y));
            let mut summary = String::new();
            for prediction in [Prediction::Eps, Prediction::X0, Prediction::V] {
                let got = ops::prediction::to_eps(gpu, prediction, &table, &gx, &gy, &t_gpu);
                let want = cpu::prediction::to_eps(&s, prediction, &x64, &y64, &timesteps);
                close(
                    &format!("to_eps {prediction}"),
                    &read(gpu, &got).await?,
                    &want,
                    1e-4,
                    1e-4,
                )?;
                let got = ops::prediction::to_x0(gpu, prediction, &table, &gx, &gy, &t_gpu, true);
                let want = cpu::prediction::to_x0(&s, prediction, &x64, &y64, &timesteps, true);
                let what = format!("to_eps, to_x0 {prediction}");
                summary = close(&what, &read(gpu, &got).await?, &want, 1e-4, 1e-5)?;
            }
            Ok(summary)
        }
        "kernel_vlb_vb_terms" => {
            let s = Schedule::new(BetaSchedule::Cosine, 1000);
            let table = gpu.upload(&s.gpu_table(), &[1000, TABLE_COLS]);
            let (batch, per_sample) = (6, 50);
            let n = batch * per_sample;
            // x_0 on the 256-level grid, with the outer bins (-1 and 1) present.
            let x0: Vec<f32> = (0..n)
                .map(|i| match i % 10 {
                    0 => -1.0,
                    1 => 1.0,
                    _ => {
                        (((cpu::rng::uniform(1, 2, i as u32) * 255.0).round() / 127.5) - 1.0) as f32
                    }
                })
                .collect();
            let (x_t, eps, v) = (
                uniform(n, -2.0, 2.0, 3),
                uniform(n, -2.0, 2.0, 4),
                uniform(n, -1.0, 1.0, 5),
            );
            let timesteps: Vec<u32> = vec![0, 0, 1, 10, 500, 999];
            let shape = [batch, per_sample];
            let inputs = ops::vlb::VlbInputs {
                table,
                x_start: gpu.upload(&x0, &shape),
                x_t: gpu.upload(&x_t, &shape),
                eps: gpu.upload(&eps, &shape),
                timesteps: gpu.upload_u32(&timesteps, &[batch]),
                continuous: false,
            };
            let terms = ops::vlb::vb_terms(gpu, &inputs, &gpu.upload(&v, &shape));
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    let t = timesteps[i / per_sample] as usize;
                    let (a, b, c, d) = (x0[i] as f64, x_t[i] as f64, eps[i] as f64, v[i] as f64);
                    cpu::vlb::vb_term_elementwise(&s, t, a, b, c, d)
                })
                .collect();
            // f32 logs of tiny posterior variances at t = 1: a few 1e-3 relative.
            close("vb_terms", &read(gpu, &terms).await?, &want, 2e-3, 2e-3)
        }
        "kernel_activation_silu" => {
            let x = uniform(1000, -4.0, 4.0, 1);
            let y = ops::activation::silu(gpu, &gpu.upload(&x, &[1000]));
            close(
                "silu",
                &read(gpu, &y).await?,
                &cpu::activation::silu(&to_f64(&x)),
                1e-6,
                1e-5,
            )
        }
        "kernel_arith_add_mul" => {
            let (a, b) = (uniform(777, -2.0, 2.0, 2), uniform(777, -2.0, 2.0, 3));
            let (ga, gb) = (gpu.upload(&a, &[777]), gpu.upload(&b, &[777]));
            let sum = read(gpu, &ops::arith::add(gpu, &ga, &gb)).await?;
            close(
                "add",
                &sum,
                &cpu::arith::add(&to_f64(&a), &to_f64(&b)),
                1e-6,
                1e-6,
            )?;
            let prod = read(gpu, &ops::arith::mul(gpu, &ga, &gb)).await?;
            close(
                "add, mul",
                &prod,
                &cpu::arith::mul(&to_f64(&a), &to_f64(&b)),
                1e-6,
                1e-6,
            )
        }
        "kernel_attention_softmax" => {
            let (rows, cols) = (37, 49);
            let x = uniform(rows * cols, -3.0, 3.0, 4);
            let y = ops::attention::softmax(gpu, &gpu.upload(&x, &[rows, cols]), 0.5);
            let scaled: Vec<f64> = x.iter().map(|&v| 0.5 * v as f64).collect();
            let want = cpu::attention::softmax(&scaled, rows, cols);
            close("softmax", &read(gpu, &y).await?, &want, 1e-6, 1e-4)
        }
        "kernel_conv_conv2d" => {
            let s = ConvShape {
                n: 2,
                c_in: 6,
                h: 7,
                w: 9,
                c_out: 5,
                kernel: 3,
                stride: 1,
                padding: 1,
            };
            let x = uniform(s.n * s.c_in * s.h * s.w, -1.0, 1.0, 5);
            let w = uniform(s.c_out * s.c_in * 9, -0.5, 0.5, 6);
            let b = uniform(s.c_out, -0.5, 0.5, 7);
            let y = ops::conv::conv2d(
                gpu,
                &gpu.upload(&x, &[s.n, s.c_in, s.h, s.w]),
                &gpu.upload(&w, &[s.c_out, s.c_in, 3, 3]),
                Some(&gpu.upload(&b, &[s.c_out])),
                s.stride,
                s.padding,
            );
            let want = cpu::conv::conv2d(&to_f64(&x), &to_f64(&w), Some(&to_f64(&b)), &s);
            close("conv2d", &read(gpu, &y).await?, &want, 1e-4, 1e-4)
        }
        "kernel_cross_entropy_rows" => {
            let (rows, classes) = (33, 10);
            let logits = uniform(rows * classes, -3.0, 3.0, 8);
            let labels: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % classes as u32).collect();
            let (losses, _) = ops::cross_entropy::cross_entropy_rows(
                gpu,
                &gpu.upload(&logits, &[rows, classes]),
                &gpu.upload_u32(&labels, &[rows]),
            );
            let want = cpu::cross_entropy::cross_entropy_rows(&to_f64(&logits), &labels, classes);
            close(
                "cross_entropy_rows",
                &read(gpu, &losses).await?,
                &want,
                1e-5,
                1e-5,
            )
        }
        "kernel_embedding" => {
            let (rows, dim, n) = (100, 24, 67);
            let table = uniform(rows * dim, -1.0, 1.0, 9);
            let index: Vec<u32> = (0..n as u32).map(|i| (i * 37) % rows as u32).collect();
            let y = ops::embedding::embedding(
                gpu,
                &gpu.upload(&table, &[rows, dim]),
                &gpu.upload_u32(&index, &[n]),
            );
            let want = cpu::embedding::embedding(&to_f64(&table), &index, dim);
            close("embedding", &read(gpu, &y).await?, &want, 0.0, 0.0)
        }
        "kernel_group_norm" => {
            let (n, c, h, w, groups) = (2, 6, 7, 9, 3);
            let x = uniform(n * c * h * w, -2.0, 3.0, 10);
            let gamma = uniform(c, 0.5, 1.5, 11);
            let beta = uniform(c, -0.5, 0.5, 12);
            let opts = ops::group_norm::GroupNormOptions {
                groups,
                fuse_silu: false,
            };
            let (y, _) = ops::group_norm::group_norm(
                gpu,
                &gpu.upload(&x, &[n, c, h, w]),
                &gpu.upload(&gamma, &[c]),
                &gpu.upload(&beta, &[c]),
                opts,
            );
            let s = cpu::group_norm::GroupNormShape {
                n,
                c,
                hw: h * w,
                groups,
            };
            let eps = ops::group_norm::EPS as f64;
            let want =
                cpu::group_norm::group_norm(&to_f64(&x), &to_f64(&gamma), &to_f64(&beta), s, eps);
            close("group_norm", &read(gpu, &y).await?, &want, 1e-5, 1e-4)
        }
        "kernel_guidance_guide" => {
            let (n, c_out, rest) = (3, 4, 35);
            let host = uniform(2 * n * c_out * rest, -2.0, 2.0, 13);
            let out2 = gpu.upload(&host, &[2 * n, c_out, 5, 7]);
            let got = read(gpu, &ops::guidance::guide(gpu, &out2, 2, 3.0)).await?;
            let want = cpu::guidance::guide(&to_f64(&host), n, c_out, 2, 3.0);
            close("guide", &got, &want, 1e-6, 1e-6)
        }
        "kernel_loss_mse" => {
            let (p, t) = (uniform(1001, -2.0, 2.0, 14), uniform(1001, -2.0, 2.0, 15));
            let loss = ops::loss::mse(gpu, &gpu.upload(&p, &[1001]), &gpu.upload(&t, &[1001]));
            let want = cpu::loss::mse(&to_f64(&p), &to_f64(&t));
            close("mse", &read(gpu, &loss).await?, &[want], 1e-6, 1e-5)
        }
        "kernel_matmul" => {
            let (batch, m, k, n) = (2, 37, 19, 45);
            let a = uniform(batch * m * k, -1.0, 1.0, 16);
            let b = uniform(batch * k * n, -1.0, 1.0, 17);
            let bias = uniform(n, -1.0, 1.0, 18);
            let c = ops::matmul::matmul(
                gpu,
                &gpu.upload(&a, &[batch, m, k]),
                &gpu.upload(&b, &[batch, k, n]),
                Some(&gpu.upload(&bias, &[n])),
                false,
                false,
            );
            let want = cpu::matmul::matmul(
                &to_f64(&a),
                &to_f64(&b),
                Some(&to_f64(&bias)),
                cpu::matmul::MatmulShape::new(batch, m, k, n),
            );
            close("matmul", &read(gpu, &c).await?, &want, 1e-5, 1e-4)
        }
        "kernel_reduce_sum" => {
            let x = uniform(100_003, -1.0, 1.0, 19);
            let s = ops::reduce::sum(gpu, &gpu.upload(&x, &[100_003]));
            close(
                "sum",
                &read(gpu, &s).await?,
                &[cpu::reduce::sum(&to_f64(&x))],
                1e-3,
                1e-4,
            )
        }
        "kernel_resample_upsample" => {
            let (n, c, h, w) = (2, 3, 5, 7);
            let x = uniform(n * c * h * w, -1.0, 1.0, 20);
            let y = ops::resample::upsample_nearest2x(gpu, &gpu.upload(&x, &[n, c, h, w]));
            let want = cpu::resample::upsample_nearest2x(&to_f64(&x), n, c, h, w);
            close("upsample_nearest2x", &read(gpu, &y).await?, &want, 0.0, 0.0)
        }
        "kernel_rng_uniform_normal" => {
            let n = 4099;
            let u = read(gpu, &ops::rng::uniform(gpu, &[n], 42, 5)).await?;
            let want: Vec<f64> = (0..n as u32).map(|i| cpu::rng::uniform(42, 5, i)).collect();
            close("random_uniform", &u, &want, 0.0, 0.0)?;
            let z = read(gpu, &ops::rng::normal(gpu, &[n], 42, 6)).await?;
            // Box-Muller's cos and sin: WGSL only promises them to 2^-11 absolute, and Chromium's
            // software adapter uses that latitude (native lavapipe matches to 2e-5). Scaled by
            // the radius sqrt(-2 ln u) <= 6.7 for 32-bit u, the bound is 3.3e-3.
            let atol = 6.7 / 2048.0;
            let want = cpu::rng::normals(42, 6, n);
            close("random_uniform, random_normal", &z, &want, atol, 2e-5)
        }
        "kernel_unet_misc_timestep_embedding" => {
            let ts: Vec<u32> = (0..13).map(|i| i * 77).collect();
            let dim = 32;
            let y = ops::unet_misc::timestep_embedding(gpu, &gpu.upload_u32(&ts, &[13]), dim);
            let want = cpu::time_embedding::timestep_embedding(&ts, dim);
            close(
                "timestep_embedding",
                &read(gpu, &y).await?,
                &want,
                1e-4,
                1e-4,
            )
        }
        _ => Err(format!("no check named {name}")),
    }
}
