//! The DDPM-style UNet of shared/MODEL.md (improved-diffusion's UNetModel, scaled down):
//! sinusoidal time embedding -> MLP; conv_in; per level ResBlocks (+ self-attention at the
//! attention resolutions) then a strided-conv downsample; a middle ResBlock-Attention-ResBlock;
//! an up path of num_res_blocks + 1 ResBlocks per level, each on the concatenation of the
//! features and one skip, with nearest-x2-then-conv upsampling; then GN -> SiLU -> conv_out.
//! The last conv of each ResBlock, the attention output projection and conv_out start at zero
//! (improved-diffusion's zero_module), so every block starts as the identity.
//! A class-conditional UNet adds a class embedding to the time embedding (improved-diffusion's
//! label_emb), with one more row for "no class" (classifier-free guidance), which starts at zero.

use serde::{Deserialize, Serialize};

use crate::autograd::{Ctx, Var};
use crate::nn::params::{Init, ParamLayout};
use crate::ops::conv::EpilogueVar;
use crate::ops::{
    activation, arith, attention, conv, embedding, group_norm, matmul, resample, unet_misc,
};
use crate::shape::ConvShape;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    /// in_channels, or 2 * in_channels when the variance is learned.
    pub out_channels: usize,
    /// Channels of level 0 (`ch`).
    pub base_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Feature-map sizes (in pixels) that get self-attention, e.g. [7] for mnist.
    pub attention_resolutions: Vec<usize>,
    pub groups: usize,
    pub dropout: f32,
}

impl UNetConfig {
    pub fn time_embed_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Checks the shapes the network will see, so a bad config fails with a message.
    pub fn validate(&self) -> Result<(), String> {
        if self.channel_mult.is_empty()
            || self.channel_mult.contains(&0)
            || self.base_channels == 0
            || self.groups == 0
            || self.in_channels == 0
            || self.image_size == 0
        {
            return Err(
                "the UNet needs an image size, input channels, at least one level with \
                 channels (no channel_mult of 0) and groups"
                    .into(),
            );
        }
        let levels = self.channel_mult.len();
        if levels > 12 {
            return Err(format!("the UNet has {levels} levels; 12 at most"));
        }
        if !self.image_size.is_multiple_of(1 << (levels - 1)) {
            return Err(format!(
                "image size {} is not divisible by 2^{} for {} levels",
                self.image_size,
                levels - 1,
                levels
            ));
        }
        for mult in &self.channel_mult {
            if !(self.base_channels * mult).is_multiple_of(self.groups) {
                return Err(format!(
                    "{} channels do not split into {} groups",
                    self.base_channels * mult,
                    self.groups
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        let sizes: Vec<usize> = (0..levels).map(|l| self.image_size >> l).collect();
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !sizes.contains(r))
        {
            return Err(format!(
                "attention_resolutions: {r} is not the size of a level (the levels are {sizes:?} \
                 pixels wide), so no block would attend"
            ));
        }
        Ok(())
    }
}

/// Where dropout draws its masks for one training step; None when not training.
#[derive(Clone, Copy, Debug)]
pub struct DropoutKey {
    pub seed: u32,
    pub stream: u32,
    /// The row of the forward's first sample in the step's whole batch: a micro-batch draws
    /// its rows of the whole batch's masks.
    pub first_row: usize,
}

struct ResBlockIds {
    in_norm: (usize, usize),
    in_conv: (usize, usize),
    emb: (usize, usize),
    out_norm: (usize, usize),
    out_conv: (usize, usize),
    skip: Option<(usize, usize)>,
}

struct AttnIds {
    norm: (usize, usize),
    q: (usize, usize),
    k: (usize, usize),
    v: (usize, usize),
    proj: (usize, usize),
}

enum Block {
    Res(ResBlockIds),
    Attn(AttnIds),
    Down((usize, usize)),
    Up((usize, usize)),
    /// Push the current features as a skip.
    Skip,
    /// Concatenate the most recent skip to the features.
    Concat,
}

pub struct UNet {
    pub config: UNetConfig,
    pub layout: ParamLayout,
    time_in: (usize, usize),
    time_out: (usize, usize),
    conv_in: (usize, usize),
    blocks: Vec<Block>,
    out_norm: (usize, usize),
    conv_out: (usize, usize),
    /// The class embedding [classes + 1, time_embed_dim] of a class-conditional UNet.
    label_emb: Option<usize>,
}

struct Builder {
    layout: ParamLayout,
}

impl Builder {
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> (usize, usize) {
        let bound = 1.0 / (d_in as f64).sqrt();
        let w = self.layout.add(
            &format!("{name}.weight"),
            &[d_in, d_out],
            Init::Uniform(bound),
        );
        let b = self
            .layout
            .add(&format!("{name}.bias"), &[d_out], Init::Uniform(bound));
        (w, b)
    }

    fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        zero: bool,
    ) -> (usize, usize) {
        // PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
        let init = if zero {
            Init::Zeros
        } else {
            Init::Uniform(bound)
        };
        let w = self
            .layout
            .add(&format!("{name}.weight"), &[c_out, c_in, k, k], init);
        let b = self.layout.add(
            &format!("{name}.bias"),
            &[c_out],
            if zero {
                Init::Zeros
            } else {
                Init::Uniform(bound)
            },
        );
        (w, b)
    }

    fn norm(&mut self, name: &str, c: usize) -> (usize, usize) {
        let g = self.layout.add(&format!("{name}.weight"), &[c], Init::Ones);
        let b = self.layout.add(&format!("{name}.bias"), &[c], Init::Zeros);
        (g, b)
    }

    fn res_block(&mut self, name: &str, c_in: usize, c_out: usize, emb_dim: usize) -> Block {
        Block::Res(ResBlockIds {
            in_norm: self.norm(&format!("{name}.in_norm"), c_in),
            in_conv: self.conv(&format!("{name}.in_conv"), c_in, c_out, 3, false),
            emb: self.linear(&format!("{name}.emb"), emb_dim, c_out),
            out_norm: self.norm(&format!("{name}.out_norm"), c_out),
            out_conv: self.conv(&format!("{name}.out_conv"), c_out, c_out, 3, true),
            skip: (c_in != c_out)
                .then(|| self.conv(&format!("{name}.skip"), c_in, c_out, 1, false)),
        })
    }

    fn attention(&mut self, name: &str, c: usize) -> Block {
        Block::Attn(AttnIds {
            norm: self.norm(&format!("{name}.norm"), c),
            q: self.conv(&format!("{name}.q"), c, c, 1, false),
            k: self.conv(&format!("{name}.k"), c, c, 1, false),
            v: self.conv(&format!("{name}.v"), c, c, 1, false),
            proj: self.conv(&format!("{name}.proj_out"), c, c, 1, true),
        })
    }
}

impl UNet {
    pub fn new(config: UNetConfig) -> UNet {
        let mut b = Builder {
            layout: ParamLayout::default(),
        };
        let ch = config.base_channels;
        let emb_dim = config.time_embed_dim();
        let time_in = b.linear("time_embed.0", ch, emb_dim);
        let time_out = b.linear("time_embed.2", emb_dim, emb_dim);
        let conv_in = b.conv("input_blocks.0", config.in_channels, ch, 3, false);
        let mut blocks = vec![Block::Skip];
        let mut skip_channels = vec![ch];
        let mut c = ch;
        let mut size = config.image_size;
        let levels = config.channel_mult.len();
        for (level, mult) in config.channel_mult.iter().enumerate() {
            for i in 0..config.num_res_blocks {
                let name = format!("down.{level}.{i}");
                blocks.push(b.res_block(&name, c, ch * mult, emb_dim));
                c = ch * mult;
                if config.attention_resolutions.contains(&size) {
                    blocks.push(b.attention(&format!("{name}.attn"), c));
                }
                blocks.push(Block::Skip);
                skip_channels.push(c);
            }
            if level + 1 < levels {
                blocks.push(Block::Down(b.conv(
                    &format!("down.{level}.downsample"),
                    c,
                    c,
                    3,
                    false,
                )));
                blocks.push(Block::Skip);
                skip_channels.push(c);
                size /= 2;
            }
        }
        blocks.push(b.res_block("middle.0", c, c, emb_dim));
        blocks.push(b.attention("middle.1", c));
        blocks.push(b.res_block("middle.2", c, c, emb_dim));
        for (level, mult) in config.channel_mult.iter().enumerate().rev() {
            for i in 0..=config.num_res_blocks {
                let skip = skip_channels.pop().expect("one skip per up block");
                let name = format!("up.{level}.{i}");
                blocks.push(Block::Concat);
                blocks.push(b.res_block(&name, c + skip, ch * mult, emb_dim));
                c = ch * mult;
                if config.attention_resolutions.contains(&size) {
                    blocks.push(b.attention(&format!("{name}.attn"), c));
                }
            }
            if level > 0 {
                blocks.push(Block::Up(b.conv(
                    &format!("up.{level}.upsample"),
                    c,
                    c,
                    3,
                    false,
                )));
                size *= 2;
            }
        }
        let out_norm = b.norm("out.0", c);
        let conv_out = b.conv("out.2", c, config.out_channels, 3, true);
        UNet {
            config,
            layout: b.layout,
            time_in,
            time_out,
            conv_in,
            blocks,
            out_norm,
            conv_out,
            label_emb: None,
        }
    }

    /// The UNet conditioned on `n_classes` classes: the class embedding comes after every other
    /// parameter, so an unconditional model's parameters keep their offsets.
    pub fn with_classes(mut self, n_classes: Option<usize>) -> UNet {
        if let Some(n_classes) = n_classes {
            self.label_emb = Some(self.layout.add(
                "label_emb.weight",
                &[n_classes + 1, self.config.time_embed_dim()],
                Init::NormalZeroLastRow(1.0),
            ));
        }
        self
    }

    /// Rows of the class embedding (classes + "no class"); None when unconditional.
    pub fn class_rows(&self) -> Option<usize> {
        self.label_emb.map(|id| self.layout.specs[id].shape[0])
    }

    /// eps_theta(x_t, t) for x [n, in_channels, size, size] of an unconditional UNet; `dropout`
    /// None disables dropout.
    pub fn forward(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        dropout: Option<DropoutKey>,
    ) -> Var {
        self.forward_classes(cx, params, x, t, None, dropout)
    }

    /// `forward` with the class embedding of `classes` (u32 [n]) added to the time embedding;
    /// `classes` must be given exactly when the model is class-conditional.
    pub fn forward_classes(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        classes: Option<&Tensor>,
        dropout: Option<DropoutKey>,
    ) -> Var {
        assert_eq!(classes.is_some(), self.label_emb.is_some(), "classes");
        let p = |ids: (usize, usize)| (&params[ids.0], &params[ids.1]);
        let cfg = &self.config;
        let temb = unet_misc::timestep_embedding(cx.gpu, t, cfg.base_channels);
        let temb = cx.constant(temb);
        let (w, b) = p(self.time_in);
        let h = matmul::linear(cx, &temb, w, b);
        let h = activation::silu_var(cx, &h);
        let (w, b) = p(self.time_out);
        let emb = matmul::linear(cx, &h, w, b);
        let emb = match (self.label_emb, classes) {
            (Some(id), Some(classes)) => {
                let y = embedding::embedding_var(cx, &params[id], classes);
                arith::add_var(cx, &emb, &y)
            }
            _ => emb,
        };
        // Every ResBlock's projection starts from SiLU(emb): computed once, used many times.
        let emb = activation::silu_var(cx, &emb);

        let (w, b) = p(self.conv_in);
        let mut h = conv::conv2d_var(cx, x, w, Some(b), 1, 1);
        let mut skips: Vec<Var> = Vec::new();
        let mut n_dropout = 0u32;
        for block in &self.blocks {
            h = match block {
                Block::Skip => {
                    skips.push(h.clone());
                    h
                }
                Block::Concat => {
                    let skip = skips.pop().expect("a skip for every concat");
                    resample::concat_var(cx, &h, &skip)
                }
                Block::Down(ids) => {
                    let (w, b) = p(*ids);
                    conv::conv2d_var(cx, &h, w, Some(b), 2, 1)
                }
                Block::Up(ids) => {
                    let up = resample::upsample_nearest2x_var(cx, &h);
                    let (w, b) = p(*ids);
                    conv::conv2d_var(cx, &up, w, Some(b), 1, 1)
                }
                Block::Res(ids) => {
                    n_dropout += 1;
                    let key = dropout.map(|k| DropoutKey {
                        stream: k.stream ^ (n_dropout << 24),
                        ..k
                    });
                    self.res_block(cx, params, ids, &h, &emb, key)
                }
                Block::Attn(ids) => self.attention(cx, params, ids, &h),
            };
        }
        let (g, b) = p(self.out_norm);
        let h = group_norm::group_norm_var(
            cx,
            &h,
            g,
            b,
            group_norm::GroupNormOptions {
                groups: cfg.groups,
                fuse_silu: true,
            },
        );
        let (w, b) = p(self.conv_out);
        conv::conv2d_var(cx, &h, w, Some(b), 1, 1)
    }

    fn res_block(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        ids: &ResBlockIds,
        x: &Var,
        emb: &Var,
        dropout: Option<DropoutKey>,
    ) -> Var {
        let p = |ids: (usize, usize)| (&params[ids.0], &params[ids.1]);
        let groups = self.config.groups;
        let (g, b) = p(ids.in_norm);
        let h = group_norm::group_norm_var(
            cx,
            x,
            g,
            b,
            group_norm::GroupNormOptions {
                groups,
                fuse_silu: true,
            },
        );
        let (w, b) = p(ids.emb);
        let shift = matmul::linear(cx, emb, w, b);
        let (w, b) = p(ids.in_conv);
        let h = conv::conv2d_epilogue_var(cx, &h, w, b, (1, 1), EpilogueVar::ChannelShift(&shift));
        let (g, b) = p(ids.out_norm);
        let dropout = dropout.map(|key| group_norm::GroupNormDropout {
            p: self.config.dropout,
            key: (key.seed, key.stream),
            offset: key.first_row * (h.tensor.numel() / h.tensor.shape[0]),
        });
        let h = group_norm::group_norm_dropout_var(
            cx,
            &h,
            g,
            b,
            group_norm::GroupNormOptions {
                groups,
                fuse_silu: true,
            },
            dropout,
        );
        let skip = match ids.skip {
            Some(skip) => {
                let (w, b) = p(skip);
                conv::conv2d_var(cx, x, w, Some(b), 1, 0)
            }
            None => x.clone(),
        };
        let (w, b) = p(ids.out_conv);
        conv::conv2d_epilogue_var(cx, &h, w, b, (1, 1), EpilogueVar::Residual(&skip))
    }

    fn attention(&self, cx: &mut Ctx, params: &[Var], ids: &AttnIds, x: &Var) -> Var {
        let p = |ids: (usize, usize)| (&params[ids.0], &params[ids.1]);
        let shape = x.shape().to_vec();
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let (g, b) = p(ids.norm);
        let h = group_norm::group_norm_var(
            cx,
            x,
            g,
            b,
            group_norm::GroupNormOptions {
                groups: self.config.groups,
                fuse_silu: false,
            },
        );
        let project = |cx: &mut Ctx, ids: (usize, usize)| {
            let (w, b) = p(ids);
            let y = conv::conv2d_var(cx, &h, w, Some(b), 1, 0);
            reshape(cx, &y, &[n, c, hw])
        };
        let q = project(cx, ids.q);
        let k = project(cx, ids.k);
        let v = project(cx, ids.v);
        let a = attention::attention_var(cx, &q, &k, &v);
        let a = reshape(cx, &a, &shape);
        let (w, b) = p(ids.proj);
        conv::conv2d_epilogue_var(cx, &a, w, b, (1, 0), EpilogueVar::Residual(x))
    }
}

/// One kernel-shaped op of a UNet step at some batch, for the plan table and `ddpm info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UNetOp {
    Conv(String, ConvShape),
    /// Name, [n, c, hw], groups.
    GroupNorm(String, [usize; 3], usize),
    /// Self-attention over hw positions: a softmax over rows of hw scores.
    Attention(String, usize),
}

impl UNet {
    /// The convolutions and group norms of the forward pass at batch `n`, in order, with their
    /// shapes (from the parameter layout: the same walk as `forward`).
    pub fn ops(&self, n: usize) -> Vec<UNetOp> {
        let spec = |id: usize| &self.layout.specs[id];
        let conv = |ids: (usize, usize), size: usize, stride: usize| {
            let w = spec(ids.0);
            let [c_out, c_in, k, _] = w.shape[..] else {
                unreachable!("conv weights are 4-D")
            };
            let name = w.name.trim_end_matches(".weight").to_string();
            UNetOp::Conv(
                name,
                ConvShape {
                    n,
                    c_in,
                    h: size,
                    w: size,
                    c_out,
                    kernel: k,
                    stride,
                    padding: k / 2,
                },
            )
        };
        let norm = |ids: (usize, usize), size: usize| {
            let g = spec(ids.0);
            let name = g.name.trim_end_matches(".weight").to_string();
            UNetOp::GroupNorm(name, [n, g.shape[0], size * size], self.config.groups)
        };
        let mut size = self.config.image_size;
        let mut out = vec![conv(self.conv_in, size, 1)];
        for block in &self.blocks {
            match block {
                Block::Skip | Block::Concat => {}
                Block::Down(ids) => {
                    out.push(conv(*ids, size, 2));
                    size /= 2;
                }
                Block::Up(ids) => {
                    size *= 2;
                    out.push(conv(*ids, size, 1));
                }
                Block::Res(r) => {
                    out.push(norm(r.in_norm, size));
                    out.push(conv(r.in_conv, size, 1));
                    out.push(norm(r.out_norm, size));
                    out.push(conv(r.out_conv, size, 1));
                    if let Some(skip) = r.skip {
                        out.push(conv(skip, size, 1));
                    }
                }
                Block::Attn(a) => {
                    out.push(norm(a.norm, size));
                    for ids in [a.q, a.k, a.v] {
                        out.push(conv(ids, size, 1));
                    }
                    let name = spec(a.norm.0).name.trim_end_matches(".norm.weight");
                    out.push(UNetOp::Attention(name.to_string(), size * size));
                    out.push(conv(a.proj, size, 1));
                }
            }
        }
        out.push(norm(self.out_norm, size));
        out.push(conv(self.conv_out, size, 1));
        out
    }
}

/// The same values under another shape; the gradient is reshaped back.
pub fn reshape(cx: &mut Ctx, x: &Var, shape: &[usize]) -> Var {
    struct ReshapeBackward(Vec<usize>);
    impl crate::autograd::Backward for ReshapeBackward {
        fn name(&self) -> &'static str {
            "reshape"
        }
        fn backward(
            &self,
            _gpu: &crate::gpu::Gpu,
            dy: &Tensor,
            _needs: &[bool],
        ) -> Vec<Option<Tensor>> {
            vec![Some(dy.reshape(&self.0))]
        }
    }
    let y = x.tensor.reshape(shape);
    cx.record(ReshapeBackward(x.shape().to_vec()), &[x], y)
}
