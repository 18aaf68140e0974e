//! The toy preset trained live in the page: the same configuration, batches, model, diffusion
//! and Trainer as `ddpm train --preset toy`, stepped from the page's loop a few steps at a time,
//! with the losses and samples read back asynchronously.

use std::cell::RefCell;
use std::rc::Rc;

use ddpm::config::TrainConfig;
use ddpm::diffusion::gaussian::{streams, ChainOptions, ClassGuidance, GaussianDiffusion};
use ddpm::gpu::Gpu;
use ddpm::nn::mlp::Mlp;
use ddpm::nn::Denoiser;
use ddpm::optim::TrainState;
use ddpm::presets::toy;
use ddpm::tensor::Tensor;
use ddpm::train::{self, Trainer};
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub struct Run {
    gpu: Gpu,
    cfg: TrainConfig,
    model: Mlp,
    diffusion: GaussianDiffusion,
    state: TrainState,
    data: Vec<[f32; 2]>,
    labels: Option<Vec<u32>>,
    batch: Tensor,
    batch_labels: Tensor,
}

/// A toy run in the page. Its methods return promises: every readback waits on the browser's
/// event loop.
#[wasm_bindgen]
pub struct ToySession {
    inner: Rc<RefCell<Run>>,
    adapter: String,
    /// The step reached, readable while a `train` call holds the run across its readbacks.
    step: Rc<std::cell::Cell<u64>>,
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

impl Run {
    pub async fn new(
        data: &str,
        class_cond: bool,
        batch_size: usize,
        seed: u64,
    ) -> Result<Run, String> {
        let gpu = crate::gpu::open().await?;
        let mut cfg = TrainConfig::toy();
        cfg.data = data.to_owned();
        cfg.class_cond = class_cond;
        cfg.batch_size = batch_size;
        cfg.seed = seed;
        // The page trains open-ended; the optimiser's schedules read steps only for decay,
        // and the toy's learning rate is constant.
        let cfg = toy::with_data_classes(&cfg).map_err(|e| format!("{e:#}"))?;
        toy::check_batch_fits(&gpu, &cfg).map_err(|e| format!("{e:#}"))?;
        let (data, labels) = toy::labelled_training_data(&cfg).map_err(|e| format!("{e:#}"))?;
        let model = toy::model(&cfg);
        let diffusion = toy::diffusion(&gpu, &cfg).map_err(|e| format!("{e:#}"))?;
        let state = TrainState::new(&gpu, &model.layout, cfg.seed);
        let batch = gpu.empty(&[cfg.batch_size, 2]);
        let batch_labels = gpu.upload_u32(&vec![0; cfg.batch_size], &[cfg.batch_size]);
        Ok(Run {
            gpu,
            cfg,
            model,
            diffusion,
            state,
            data,
            labels,
            batch,
            batch_labels,
        })
    }

    /// Records and submits `n` steps (the batches and label dropout of `train_loop`), keeping
    /// each step's loss tensor; one readback at the end gives all of them.
    pub async fn train(&mut self, n: u32) -> Result<Vec<f32>, String> {
        let gpu = &self.gpu;
        let cfg = &self.cfg;
        let seed = cfg.seed as u32;
        let trainer = Trainer {
            gpu,
            model: &self.model,
            diffusion: &self.diffusion,
            optim: train::optim_config(cfg),
            seed,
            antithetic: cfg.antithetic,
        };
        let null_class = self.model.class_rows().map(|rows| rows as u32 - 1);
        let mut host = vec![0f32; cfg.batch_size * 2];
        let mut host_labels = vec![0u32; cfg.batch_size];
        let mut losses = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let step = self.state.step;
            let indices = train::batch_indices(seed, step, 0..cfg.batch_size, self.data.len());
            for (dst, &i) in host.chunks_exact_mut(2).zip(&indices) {
                dst.copy_from_slice(&self.data[i]);
            }
            gpu.write(&self.batch, bytemuck::cast_slice(&host));
            let classes = match (null_class, &self.labels) {
                (Some(null), Some(all)) => {
                    for (dst, &i) in host_labels.iter_mut().zip(&indices) {
                        *dst = all[i];
                    }
                    gpu.write(&self.batch_labels, bytemuck::cast_slice(&host_labels));
                    let stream = streams::for_step(step, streams::LABELS);
                    Some(ddpm::ops::guidance::drop_labels(
                        gpu,
                        &self.batch_labels,
                        cfg.p_uncond,
                        null,
                        (seed, stream),
                        0,
                    ))
                }
                _ => None,
            };
            let tl =
                trainer.record_step_classes(&mut self.state, &self.batch, None, classes.as_ref());
            gpu.submit();
            losses.push(tl.loss.tensor);
        }
        let mut out = Vec::with_capacity(losses.len());
        for loss in &losses {
            let v = gpu.read_async(loss).await?;
            out.push(v[0]);
        }
        if let Some(bad) = out.iter().find(|l| !l.is_finite()) {
            return Err(format!(
                "the loss became {bad} at step {}: training diverged",
                self.state.step
            ));
        }
        Ok(out)
    }

    /// `n` samples from the EMA weights with the run's own sampler; with `class` (a labelled
    /// set's class-conditional model) guided towards it with scale `guidance`. Returns the
    /// points of the kept frames, x_T first and x_0 last, each n x 2.
    pub async fn sample(
        &self,
        n: usize,
        class: Option<u32>,
        guidance: f32,
        frames: usize,
    ) -> Result<Vec<Vec<f32>>, String> {
        let gpu = &self.gpu;
        let opts = toy::default_options(&self.cfg).map_err(|e| format!("{e:#}"))?;
        let classes = class.map(|c| vec![c; n]);
        let mut chain = ChainOptions::new(opts, self.cfg.seed as u32 ^ self.state.step as u32);
        chain.guidance = classes.as_deref().map(|classes| ClassGuidance {
            classes,
            scale: guidance,
        });
        if frames > 1 {
            chain.keep_every = Some(self.cfg.n_timesteps.div_ceil(frames - 1).max(1));
        }
        let (x0, kept) =
            self.diffusion
                .p_sample_loop(gpu, &self.model, &self.state.ema, &[n, 2], chain);
        let mut out = Vec::new();
        for t in kept.iter().take(kept.len().saturating_sub(1)) {
            out.push(gpu.read_async(t).await?);
        }
        out.push(gpu.read_async(&x0).await?);
        Ok(out)
    }
}

#[wasm_bindgen]
impl ToySession {
    /// Opens the device and sets up a toy run on `data` (s-curve, swiss-roll, moons,
    /// gaussians); `class_cond` for the labelled sets. Rejects with a message for the page.
    pub async fn create(
        data: String,
        class_cond: bool,
        batch_size: u32,
        seed: u32,
    ) -> Result<ToySession, JsValue> {
        let inner = Run::new(&data, class_cond, batch_size as usize, seed as u64)
            .await
            .map_err(js_err)?;
        let adapter = crate::gpu::describe(&inner.gpu);
        Ok(ToySession {
            inner: Rc::new(RefCell::new(inner)),
            adapter,
            step: Rc::default(),
        })
    }

    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    pub fn step(&self) -> f64 {
        self.step.get() as f64
    }

    pub fn n_params(&self) -> u32 {
        self.inner.borrow().model.layout.n_params() as u32
    }

    /// The class names of a class-conditional run (empty otherwise).
    pub fn classes(&self) -> Vec<String> {
        let inner = self.inner.borrow();
        if inner.cfg.class_cond {
            inner.cfg.classes.clone()
        } else {
            Vec::new()
        }
    }

    /// `n` training points (x, y interleaved), for drawing the data under the samples.
    pub fn data_points(&self, n: u32) -> Vec<f32> {
        let inner = self.inner.borrow();
        inner
            .data
            .iter()
            .take(n as usize)
            .flat_map(|p| *p)
            .collect()
    }

    /// Trains `n` steps; resolves to their losses (a Float32Array).
    pub fn train(&self, n: u32) -> Promise {
        let (inner, step) = (self.inner.clone(), self.step.clone());
        future_to_promise(async move {
            let mut inner = inner
                .try_borrow_mut()
                .map_err(|_| js_err("the toy run is busy (train and sample overlap)"))?;
            let losses = inner.train(n).await.map_err(js_err)?;
            step.set(inner.state.step);
            Ok(js_sys::Float32Array::from(&losses[..]).into())
        })
    }

    /// Samples `n` points; `class` < 0 samples unconditionally. Resolves to an array of
    /// `frames` Float32Arrays (x_T first, x_0 last).
    pub fn sample(&self, n: u32, class: i32, guidance: f32, frames: u32) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let inner = inner
                .try_borrow()
                .map_err(|_| js_err("the toy run is busy (train and sample overlap)"))?;
            let class = (class >= 0).then_some(class as u32);
            if let (Some(c), n_classes) = (class, inner.cfg.classes.len()) {
                if !inner.cfg.class_cond || c as usize >= n_classes {
                    return Err(js_err(format!(
                        "class {c} asked of a model with {} classes",
                        if inner.cfg.class_cond { n_classes } else { 0 }
                    )));
                }
            }
            let frames = inner
                .sample(n as usize, class, guidance, frames.max(1) as usize)
                .await
                .map_err(js_err)?;
            let out = js_sys::Array::new();
            for f in frames {
                out.push(&js_sys::Float32Array::from(&f[..]));
            }
            Ok(out.into())
        })
    }
}
