//! Sampling an image checkpoint in the page: the file a person uploads (`ddpm train`'s
//! checkpoint.safetensors, its configuration inside) is checked as the CLI checks it, then its
//! EMA weights run the reverse chain one step at a time, and the page draws x_t as it goes.

use std::path::Path;
use std::rc::Rc;

use ddpm::checkpoint::{self, Checkpoint};
use ddpm::config::TrainConfig;
use ddpm::data::images::to_u8_nhwc;
use ddpm::diffusion::gaussian::{ChainOptions, ClassGuidance, GaussianDiffusion, ReverseChain};
use ddpm::gpu::Gpu;
use ddpm::nn::unet::UNet;
use ddpm::presets::images;
use ddpm::tensor::Tensor;
use wasm_bindgen::prelude::*;

/// The most images one draw asks for (the page's grid).
pub const MAX_IMAGES: usize = 64;

/// A checkpoint loaded onto the device: its model, process and EMA weights.
pub struct Loaded {
    pub gpu: Rc<Gpu>,
    pub cfg: TrainConfig,
    pub model: UNet,
    pub diffusion: GaussianDiffusion,
    pub weights: Tensor,
}

/// One draw: how many images, steps, which class (None: unconditional) and guidance scale.
#[derive(Clone, Copy)]
pub struct Draw {
    pub n: usize,
    pub steps: usize,
    pub class: Option<u32>,
    pub guidance: f32,
    pub seed: u32,
}

/// x_t of a draw as the page shows it: RGBA pixels of a grid `width` x `height`, after
/// `steps_done` of the draw's steps.
pub struct Frame {
    pub rgba: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub steps_done: usize,
}

impl Loaded {
    /// Parses and checks `bytes` (named `name` in messages) and uploads the EMA weights.
    pub fn new(gpu: Rc<Gpu>, bytes: &[u8], name: &str) -> Result<Loaded, String> {
        let path = Path::new(name);
        let ckpt: Checkpoint = checkpoint::from_bytes(bytes, path).map_err(|e| format!("{e:#}"))?;
        let cfg = ckpt.config.clone();
        let Some(unet) = &cfg.unet else {
            return Err(format!(
                "{name} is a checkpoint of the 2-D toy ({} data), not of an image model; train \
                 the toy live above, or upload a checkpoint of --preset mnist, emoji or rgb64",
                cfg.data
            ));
        };
        unet.validate()?;
        let model = images::model(&cfg).map_err(|e| format!("{e:#}"))?;
        ckpt.check_layout(path, &model.layout)
            .map_err(|e| format!("{e:#}"))?;
        // One image's activations must fit a storage binding of this browser's device.
        images::check_batch_fits(&gpu, unet, 1, "one image").map_err(|e| format!("{e:#}"))?;
        let weight_bytes = ckpt.state.ema.len() as u64 * 4;
        if weight_bytes > gpu.max_binding_bytes() {
            return Err(format!(
                "the model's {} MiB of weights exceed this browser's {} MiB per storage buffer; \
                 sample it with the native `ddpm sample`",
                weight_bytes >> 20,
                gpu.max_binding_bytes() >> 20
            ));
        }
        let diffusion = images::diffusion(&gpu, &cfg).map_err(|e| format!("{e:#}"))?;
        let weights = gpu.upload(&ckpt.state.ema, &[ckpt.state.ema.len()]);
        Ok(Loaded {
            gpu,
            cfg,
            model,
            diffusion,
            weights,
        })
    }

    /// The class names of a class-conditional model (empty otherwise).
    pub fn classes(&self) -> Vec<String> {
        if self.cfg.class_cond {
            self.cfg.classes.clone()
        } else {
            Vec::new()
        }
    }

    /// One line for the page: what the checkpoint holds.
    pub fn describe(&self) -> String {
        let unet = &self.model.config;
        format!(
            "{}x{}x{} UNet, {} parameters, trained {} steps; T = {} ({} betas), predicts {}{}",
            unet.image_size,
            unet.image_size,
            unet.in_channels,
            self.model.layout.n_params(),
            self.cfg.steps,
            self.cfg.n_timesteps,
            self.cfg.schedule,
            self.cfg.prediction,
            if self.cfg.class_cond {
                format!(", {} classes", self.cfg.classes.len())
            } else {
                String::new()
            }
        )
    }

    /// Refuses a draw the model or the device cannot do, with what to change.
    pub fn check(&self, draw: &Draw) -> Result<(), String> {
        if draw.n == 0 || draw.n > MAX_IMAGES {
            return Err(format!(
                "the number of images must be 1 to {MAX_IMAGES}, got {}",
                draw.n
            ));
        }
        let t = self.cfg.n_timesteps;
        if draw.steps == 0 || draw.steps > t {
            return Err(format!(
                "steps must be 1 to the model's {t} timesteps, got {}",
                draw.steps
            ));
        }
        if let Some(c) = draw.class {
            let n_classes = self.classes().len();
            if c as usize >= n_classes {
                return Err(format!(
                    "class {c} asked of a model with {n_classes} classes"
                ));
            }
        }
        if !(draw.guidance.is_finite() && draw.guidance >= 0.0) {
            return Err(format!(
                "the guidance scale must be a number >= 0, got {}",
                draw.guidance
            ));
        }
        // A guided draw runs the doubled batch.
        let rows = if draw.class.is_some() && draw.guidance != 1.0 {
            2 * draw.n
        } else {
            draw.n
        };
        let unet = &self.model.config;
        images::check_batch_fits(&self.gpu, unet, rows, "the number of images")
            .map_err(|e| format!("{e:#}"))
    }

    /// The process the draw samples with: `steps` respaced steps of the model's own sampler.
    pub fn sampler(&self, draw: &Draw) -> Result<GaussianDiffusion, String> {
        let opts = self.options(draw)?;
        self.diffusion.for_sampling(&self.gpu, &opts)
    }

    /// The model's own sampling options with the draw's steps.
    pub fn options(&self, draw: &Draw) -> Result<ddpm::ops::diffusion::PSampleOptions, String> {
        let mut opts = images::default_options(&self.cfg).map_err(|e| format!("{e:#}"))?;
        opts.steps = Some(draw.steps);
        Ok(opts)
    }

    /// Runs the draw's chain with `sampler`, calling `on_frame` with x_t about `frames` times
    /// (x_T first, x_0 last); returns x_0 as the model's floats (NCHW).
    pub async fn run<F: FnMut(Frame)>(
        &self,
        sampler: &GaussianDiffusion,
        draw: &Draw,
        frames: usize,
        mut on_frame: F,
    ) -> Result<Vec<f32>, String> {
        let gpu = &self.gpu;
        let classes = draw.class.map(|c| vec![c; draw.n]);
        let mut chain = ChainOptions::new(self.options(draw)?, draw.seed);
        chain.guidance = classes.as_deref().map(|classes| ClassGuidance {
            classes,
            scale: draw.guidance,
        });
        let unet = &self.model.config;
        let shape = [draw.n, unet.in_channels, unet.image_size, unet.image_size];
        let mut reverse =
            ReverseChain::new(sampler, gpu, &self.model, &self.weights, &shape, &chain);
        let every = draw.steps.div_ceil(frames.max(2) - 1).max(1);
        let mut done = 0;
        loop {
            let last = reverse.next_t().is_none();
            if done % every == 0 || last {
                let x = gpu.read_async(reverse.x()).await?;
                on_frame(self.frame(&x, draw.n, done));
                if last {
                    return Ok(x);
                }
            }
            reverse.step(gpu);
            gpu.submit();
            done += 1;
        }
    }

    fn frame(&self, x: &[f32], n: usize, steps_done: usize) -> Frame {
        let unet = &self.model.config;
        let (c, size) = (unet.in_channels, unet.image_size);
        let pixels = to_u8_nhwc(x, n, c, size, size);
        let cols = (n as f64).sqrt().ceil() as usize;
        let grid = ddpm::viz::image_grid_cols(&pixels, n, [size, size, c], 1, cols);
        let (width, height) = (grid.width() as usize, grid.height() as usize);
        let mut rgba = Vec::with_capacity(width * height * 4);
        for p in grid.pixels() {
            rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
        }
        Frame {
            rgba,
            width,
            height,
            steps_done,
        }
    }
}

/// An uploaded image checkpoint, ready to sample. `sample` returns a promise; the page draws
/// each frame its callback receives.
#[wasm_bindgen]
pub struct ImageSampler {
    loaded: Rc<Loaded>,
    busy: Rc<std::cell::Cell<bool>>,
}

#[wasm_bindgen]
impl ImageSampler {
    /// Opens the device and loads `bytes` (the file `name`); rejects with a message for the
    /// page when the file is not a usable image checkpoint.
    pub async fn load(bytes: Vec<u8>, name: String) -> Result<ImageSampler, JsValue> {
        let gpu = crate::gpu::open()
            .await
            .map_err(|e| JsValue::from_str(&e))?;
        let loaded = Loaded::new(Rc::new(gpu), &bytes, &name).map_err(|e| JsValue::from_str(&e))?;
        Ok(ImageSampler {
            loaded: Rc::new(loaded),
            busy: Rc::default(),
        })
    }

    pub fn classes(&self) -> Vec<String> {
        self.loaded.classes()
    }

    pub fn describe(&self) -> String {
        self.loaded.describe()
    }

    /// The model's trained timesteps (the most steps a draw can take).
    pub fn n_timesteps(&self) -> u32 {
        self.loaded.cfg.n_timesteps as u32
    }

    /// Samples `n` images with `steps` respaced steps (`class` < 0: unconditional), calling
    /// `on_frame(rgba, width, height, steps_done)` with x_t about `frames` times. Resolves when
    /// x_0 has been drawn.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        n: u32,
        steps: u32,
        class: i32,
        guidance: f32,
        seed: u32,
        frames: u32,
        on_frame: js_sys::Function,
    ) -> js_sys::Promise {
        let (loaded, busy) = (self.loaded.clone(), self.busy.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            if busy.replace(true) {
                return Err(JsValue::from_str("a draw is already running"));
            }
            let draw = Draw {
                n: n as usize,
                steps: steps as usize,
                class: (class >= 0).then_some(class as u32),
                guidance,
                seed,
            };
            let result = sample_with_callback(&loaded, &draw, frames, on_frame).await;
            busy.set(false);
            result
                .map(|()| JsValue::UNDEFINED)
                .map_err(|e| JsValue::from_str(&e))
        })
    }
}

/// Runs `draw`, handing each frame to the page's callback.
async fn sample_with_callback(
    loaded: &Loaded,
    draw: &Draw,
    frames: u32,
    on_frame: js_sys::Function,
) -> Result<(), String> {
    loaded.check(draw)?;
    let sampler = loaded.sampler(draw)?;
    let mut failed = None;
    loaded
        .run(&sampler, draw, frames as usize, |frame| {
            let rgba = js_sys::Uint8ClampedArray::from(&frame.rgba[..]);
            let args = js_sys::Array::of4(
                &rgba,
                &JsValue::from(frame.width as u32),
                &JsValue::from(frame.height as u32),
                &JsValue::from(frame.steps_done as u32),
            );
            if let Err(e) = on_frame.apply(&JsValue::NULL, &args) {
                failed.get_or_insert(format!("the page's frame callback failed: {e:?}"));
            }
        })
        .await?;
    failed.map_or(Ok(()), Err)
}
