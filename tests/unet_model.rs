//! The whole UNet: one training step on the GPU against the same step composed from the f64
//! CPU reference on a small reverse-mode tape (llm.c style), with and without dropout; and the
//! real mnist configuration runs forward and backward with finite values.

mod common;

use std::collections::HashMap;

use common::{gpu, to_f64, uniform};
use ddpm::autograd::Ctx;
use ddpm::cpu;
use ddpm::cpu::conv::ConvShape;
use ddpm::nn::unet::{DropoutKey, UNet, UNetConfig};
use ddpm::ops;

/// Backward of one op: the output's gradient to one gradient per input.
type BackFn = Box<dyn Fn(&[f64]) -> Vec<Vec<f64>>>;

struct Node {
    inputs: Vec<usize>,
    output: usize,
    back: BackFn,
}

/// A minimal f64 reverse-mode tape: values indexed by id, nodes in creation (topological)
/// order, gradients of values used more than once accumulated.
#[derive(Default)]
struct Tape {
    vals: Vec<Vec<f64>>,
    nodes: Vec<Node>,
}

impl Tape {
    fn leaf(&mut self, value: Vec<f64>) -> usize {
        self.vals.push(value);
        self.vals.len() - 1
    }

    fn op(
        &mut self,
        inputs: &[usize],
        value: Vec<f64>,
        back: impl Fn(&[f64]) -> Vec<Vec<f64>> + 'static,
    ) -> usize {
        let output = self.leaf(value);
        self.nodes.push(Node {
            inputs: inputs.to_vec(),
            output,
            back: Box::new(back),
        });
        output
    }

    fn val(&self, id: usize) -> Vec<f64> {
        self.vals[id].clone()
    }

    /// Gradients of every value given the gradient `dout` of value `out`.
    fn backward(&self, out: usize, dout: Vec<f64>) -> Vec<Option<Vec<f64>>> {
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; self.vals.len()];
        grads[out] = Some(dout);
        for node in self.nodes.iter().rev() {
            let Some(dy) = grads[node.output].take() else {
                continue;
            };
            let input_grads = (node.back)(&dy);
            assert_eq!(input_grads.len(), node.inputs.len());
            for (&id, g) in node.inputs.iter().zip(input_grads) {
                assert_eq!(
                    g.len(),
                    self.vals[id].len(),
                    "gradient length of value {id}"
                );
                grads[id] = Some(match grads[id].take() {
                    Some(acc) => cpu::arith::add(&acc, &g),
                    None => g,
                });
            }
            // Keep the output's gradient for inspection (it is not used again).
            grads[node.output] = Some(dy);
        }
        grads
    }
}

/// A feature map on the tape: value id and its [c, h, w] per sample.
#[derive(Clone, Copy)]
struct Fm {
    id: usize,
    c: usize,
    h: usize,
    w: usize,
}

/// The UNet forward composed from ddpm::cpu, parameters looked up by name.
struct CpuUNet<'a> {
    tape: Tape,
    cfg: &'a UNetConfig,
    n: usize,
    /// name -> (leaf id, shape)
    params: HashMap<String, (usize, Vec<usize>)>,
    used: Vec<String>,
}

impl<'a> CpuUNet<'a> {
    fn new(unet: &'a UNet, flat: &[f64], n: usize) -> CpuUNet<'a> {
        let mut tape = Tape::default();
        let mut params = HashMap::new();
        for s in &unet.layout.specs {
            let id = tape.leaf(flat[s.offset..s.offset + s.numel()].to_vec());
            params.insert(s.name.clone(), (id, s.shape.clone()));
        }
        CpuUNet {
            tape,
            cfg: &unet.config,
            n,
            params,
            used: Vec::new(),
        }
    }

    fn param(&mut self, name: &str) -> (usize, Vec<usize>) {
        let p = self
            .params
            .get(name)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
            .clone();
        self.used.push(name.to_owned());
        p
    }

    fn has(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// `{name}.weight` [c_out, c_in, k, k] and `{name}.bias`, padding k / 2.
    fn conv(&mut self, x: Fm, name: &str, stride: usize) -> Fm {
        let (w_id, shape) = self.param(&format!("{name}.weight"));
        let (b_id, _) = self.param(&format!("{name}.bias"));
        assert_eq!(shape[1], x.c, "{name}: input channels");
        let s = ConvShape {
            n: self.n,
            c_in: x.c,
            h: x.h,
            w: x.w,
            c_out: shape[0],
            kernel: shape[2],
            stride,
            padding: shape[2] / 2,
        };
        let (xv, wv, bv) = (
            self.tape.val(x.id),
            self.tape.val(w_id),
            self.tape.val(b_id),
        );
        let y = cpu::conv::conv2d(&xv, &wv, Some(&bv), &s);
        let id = self.tape.op(&[x.id, w_id, b_id], y, move |dy| {
            let (dx, dw, db) = cpu::conv::conv2d_backward(&xv, &wv, dy, &s);
            vec![dx, dw, db]
        });
        Fm {
            id,
            c: s.c_out,
            h: s.h_out(),
            w: s.w_out(),
        }
    }

    /// Group norm with `{name}.weight` / `{name}.bias`, fused with SiLU when `silu`.
    fn norm(&mut self, x: Fm, name: &str, silu: bool) -> Fm {
        let (g_id, _) = self.param(&format!("{name}.weight"));
        let (b_id, _) = self.param(&format!("{name}.bias"));
        let (n, c, hw, groups) = (self.n, x.c, x.h * x.w, self.cfg.groups);
        let eps = ops::group_norm::EPS as f64;
        let (xv, gv, bv) = (
            self.tape.val(x.id),
            self.tape.val(g_id),
            self.tape.val(b_id),
        );
        let y = if silu {
            cpu::group_norm::group_norm_silu(
                &xv,
                &gv,
                &bv,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        } else {
            cpu::group_norm::group_norm(
                &xv,
                &gv,
                &bv,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        };
        let id = self.tape.op(&[x.id, g_id, b_id], y, move |dy| {
            let (dx, dg, db) = if silu {
                cpu::group_norm::group_norm_silu_backward(
                    &xv,
                    &gv,
                    &bv,
                    dy,
                    cpu::group_norm::GroupNormShape { n, c, hw, groups },
                    eps,
                )
            } else {
                cpu::group_norm::group_norm_backward(
                    &xv,
                    &gv,
                    dy,
                    cpu::group_norm::GroupNormShape { n, c, hw, groups },
                    eps,
                )
            };
            vec![dx, dg, db]
        });
        Fm { id, ..x }
    }

    /// y = x w + b for x [n, d_in], w [d_in, d_out]; returns (id, d_out).
    fn linear(&mut self, x: usize, name: &str) -> (usize, usize) {
        let (w_id, shape) = self.param(&format!("{name}.weight"));
        let (b_id, _) = self.param(&format!("{name}.bias"));
        let (rows, d_in, d_out) = (self.n, shape[0], shape[1]);
        let (xv, wv, bv) = (self.tape.val(x), self.tape.val(w_id), self.tape.val(b_id));
        assert_eq!(xv.len(), rows * d_in, "{name}: input width");
        let y = cpu::matmul::matmul(
            &xv,
            &wv,
            Some(&bv),
            cpu::matmul::MatmulShape::new(1, rows, d_in, d_out),
        );
        let id = self.tape.op(&[x, w_id, b_id], y, move |dy| {
            let (dx, dw, db) = cpu::matmul::linear_backward(&xv, &wv, dy, rows, d_in, d_out);
            vec![dx, dw, db]
        });
        (id, d_out)
    }

    fn silu(&mut self, x: usize) -> usize {
        let xv = self.tape.val(x);
        let y = cpu::activation::silu(&xv);
        self.tape.op(&[x], y, move |dy| {
            vec![cpu::activation::silu_backward(&xv, dy)]
        })
    }

    fn add(&mut self, a: Fm, b: Fm) -> Fm {
        assert_eq!((a.c, a.h, a.w), (b.c, b.h, b.w), "add: shapes");
        let y = cpu::arith::add(&self.tape.vals[a.id], &self.tape.vals[b.id]);
        let id = self
            .tape
            .op(&[a.id, b.id], y, |dy| vec![dy.to_vec(), dy.to_vec()]);
        Fm { id, ..a }
    }

    fn channel_bias(&mut self, x: Fm, bias: usize) -> Fm {
        let (n, c, hw) = (self.n, x.c, x.h * x.w);
        let y = cpu::channel_bias::add_channel_bias(
            &self.tape.vals[x.id],
            &self.tape.vals[bias],
            n,
            c,
            hw,
        );
        let id = self.tape.op(&[x.id, bias], y, move |dy| {
            let (dx, db) = cpu::channel_bias::add_channel_bias_backward(dy, n, c, hw);
            vec![dx, db]
        });
        Fm { id, ..x }
    }

    fn concat(&mut self, a: Fm, b: Fm) -> Fm {
        assert_eq!((a.h, a.w), (b.h, b.w), "concat: spatial sizes");
        let (n, ca, cb, hw) = (self.n, a.c, b.c, a.h * a.w);
        let y = cpu::resample::concat_channels(
            &self.tape.vals[a.id],
            &self.tape.vals[b.id],
            n,
            ca,
            cb,
            hw,
        );
        let id = self.tape.op(&[a.id, b.id], y, move |dy| {
            let (da, db) = cpu::resample::concat_channels_backward(dy, n, ca, cb, hw);
            vec![da, db]
        });
        Fm {
            id,
            c: ca + cb,
            ..a
        }
    }

    fn upsample(&mut self, x: Fm) -> Fm {
        let (n, c, h, w) = (self.n, x.c, x.h, x.w);
        let y = cpu::resample::upsample_nearest2x(&self.tape.vals[x.id], n, c, h, w);
        let id = self.tape.op(&[x.id], y, move |dy| {
            vec![cpu::resample::upsample_nearest2x_backward(dy, n, c, h, w)]
        });
        Fm {
            id,
            c,
            h: 2 * h,
            w: 2 * w,
        }
    }

    fn dropout(&mut self, x: Fm, p: f64, key: DropoutKey) -> Fm {
        let pair = (key.seed, key.stream);
        let offset = key.first_row * x.c * x.h * x.w;
        let y = cpu::dropout::dropout(&self.tape.vals[x.id], p, pair, offset);
        let id = self.tape.op(&[x.id], y, move |dy| {
            vec![cpu::dropout::dropout_backward(dy, p, pair, offset)]
        });
        Fm { id, ..x }
    }

    fn res_block(&mut self, x: Fm, emb: usize, name: &str, dropout: Option<DropoutKey>) -> Fm {
        let h = self.norm(x, &format!("{name}.in_norm"), true);
        let h = self.conv(h, &format!("{name}.in_conv"), 1);
        let (shift, d_out) = self.linear(emb, &format!("{name}.emb"));
        assert_eq!(d_out, h.c, "{name}: time projection width");
        let h = self.channel_bias(h, shift);
        let mut h = self.norm(h, &format!("{name}.out_norm"), true);
        if let (Some(key), true) = (dropout, self.cfg.dropout > 0.0) {
            h = self.dropout(h, self.cfg.dropout as f64, key);
        }
        let h = self.conv(h, &format!("{name}.out_conv"), 1);
        let skip_name = format!("{name}.skip");
        let skip = if self.has(&format!("{skip_name}.weight")) {
            self.conv(x, &skip_name, 1)
        } else {
            x
        };
        self.add(skip, h)
    }

    fn attention(&mut self, x: Fm, name: &str) -> Fm {
        let h = self.norm(x, &format!("{name}.norm"), false);
        let q = self.conv(h, &format!("{name}.q"), 1);
        let k = self.conv(h, &format!("{name}.k"), 1);
        let v = self.conv(h, &format!("{name}.v"), 1);
        let (n, c, hw) = (self.n, x.c, x.h * x.w);
        let (qv, kv, vv) = (
            self.tape.val(q.id),
            self.tape.val(k.id),
            self.tape.val(v.id),
        );
        let (a, _) = cpu::attention::attention(&qv, &kv, &vv, n, c, hw);
        let a = self.tape.op(&[q.id, k.id, v.id], a, move |dy| {
            let (dq, dk, dv) = cpu::attention::attention_backward(&qv, &kv, &vv, dy, n, c, hw);
            vec![dq, dk, dv]
        });
        let out = self.conv(Fm { id: a, ..x }, &format!("{name}.proj_out"), 1);
        self.add(x, out)
    }

    /// The forward of src/nn/unet.rs: returns the output's value id.
    fn forward(&mut self, x: &[f64], t: &[u32], dropout: Option<DropoutKey>) -> usize {
        let cfg = self.cfg;
        let ch = cfg.base_channels;
        let temb = self
            .tape
            .leaf(cpu::time_embedding::timestep_embedding(t, ch));
        let (h, _) = self.linear(temb, "time_embed.0");
        let h = self.silu(h);
        let (emb, _) = self.linear(h, "time_embed.2");
        let emb = self.silu(emb);

        let x = Fm {
            id: self.tape.leaf(x.to_vec()),
            c: cfg.in_channels,
            h: cfg.image_size,
            w: cfg.image_size,
        };
        let mut n_dropout = 0u32;
        let mut key = || {
            n_dropout += 1;
            dropout.map(|k| DropoutKey {
                stream: k.stream ^ (n_dropout << 24),
                ..k
            })
        };
        let mut h = self.conv(x, "input_blocks.0", 1);
        let mut skips = vec![h];
        let levels = cfg.channel_mult.len();
        for level in 0..levels {
            for i in 0..cfg.num_res_blocks {
                let name = format!("down.{level}.{i}");
                h = self.res_block(h, emb, &name, key());
                if cfg.attention_resolutions.contains(&h.h) {
                    h = self.attention(h, &format!("{name}.attn"));
                }
                skips.push(h);
            }
            if level + 1 < levels {
                h = self.conv(h, &format!("down.{level}.downsample"), 2);
                skips.push(h);
            }
        }
        h = self.res_block(h, emb, "middle.0", key());
        h = self.attention(h, "middle.1");
        h = self.res_block(h, emb, "middle.2", key());
        for level in (0..levels).rev() {
            for i in 0..=cfg.num_res_blocks {
                let skip = skips.pop().expect("one skip per up block");
                h = self.concat(h, skip);
                let name = format!("up.{level}.{i}");
                h = self.res_block(h, emb, &name, key());
                if cfg.attention_resolutions.contains(&h.h) {
                    h = self.attention(h, &format!("{name}.attn"));
                }
            }
            if level > 0 {
                h = self.upsample(h);
                h = self.conv(h, &format!("up.{level}.upsample"), 1);
            }
        }
        assert!(skips.is_empty(), "every skip is consumed");
        let h = self.norm(h, "out.0", true);
        let out = self.conv(h, "out.2", 1);
        assert_eq!(
            (out.c, out.h, out.w),
            (cfg.out_channels, cfg.image_size, cfg.image_size)
        );
        out.id
    }
}

/// Loss, output and flat gradients (the layout of `unet.layout`) of one step on the CPU.
fn cpu_step(
    unet: &UNet,
    flat: &[f64],
    x: &[f64],
    t: &[u32],
    target: &[f64],
    dropout: Option<DropoutKey>,
) -> (f64, Vec<f64>, Vec<f64>) {
    let mut model = CpuUNet::new(unet, flat, t.len());
    let out = model.forward(x, t, dropout);
    let mut used = model.used.clone();
    used.sort();
    used.dedup();
    assert_eq!(
        used.len(),
        unet.layout.specs.len(),
        "the CPU composition uses every parameter exactly as named"
    );
    assert_eq!(model.used.len(), used.len(), "no parameter is used twice");
    let pred = model.tape.val(out);
    let loss = cpu::loss::mse(&pred, target);
    let grads = model
        .tape
        .backward(out, cpu::loss::mse_backward(&pred, target, 1.0));
    let mut flat_grads = vec![0.0; flat.len()];
    for s in &unet.layout.specs {
        let (id, _) = model.params[&s.name];
        let g = grads[id]
            .as_ref()
            .unwrap_or_else(|| panic!("{} got no gradient on the CPU", s.name));
        flat_grads[s.offset..s.offset + s.numel()].copy_from_slice(g);
    }
    (loss, pred, flat_grads)
}

fn small_config(dropout: f32) -> UNetConfig {
    UNetConfig {
        image_size: 8,
        in_channels: 1,
        out_channels: 1,
        base_channels: 8,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![4],
        groups: 4,
        dropout,
    }
}

/// `layout.init`, then random values for the zero-initialised tensors (the last conv of
/// each ResBlock, the attention projections, conv_out) so gradients flow through every
/// path, and perturbed group-norm affines so gamma and beta cannot be confused.
fn test_weights(unet: &UNet, seed: u32) -> Vec<f32> {
    let mut flat = unet.layout.init(seed as u64);
    for (i, s) in unet.layout.specs.iter().enumerate() {
        let range = s.offset..s.offset + s.numel();
        let salt = seed * 1000 + i as u32;
        let zero_init = ["out_conv", "proj_out", "out.2"]
            .iter()
            .any(|z| s.name.contains(z));
        let is_norm = s.name.contains("norm") || s.name.starts_with("out.0");
        if zero_init {
            let fan_in: usize = match s.shape.len() {
                4 => s.shape[1..].iter().product(),
                _ => s.numel(),
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            flat[range].copy_from_slice(&uniform(s.numel(), -bound, bound, salt));
        } else if is_norm {
            let centre = if s.name.ends_with("weight") { 1.0 } else { 0.0 };
            flat[range].copy_from_slice(&uniform(s.numel(), centre - 0.2, centre + 0.2, salt));
        }
    }
    flat
}

fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
    err / norm.max(1e-30)
}

fn check_training_step(config: UNetConfig, dropout: Option<DropoutKey>, gpu_kernels: bool) {
    let gpu = gpu();
    if gpu_kernels {
        gpu.set_caps(ddpm::gpu::Capabilities {
            soft_kernels: false,
            ..gpu.caps()
        });
    }
    let n = 2;
    let unet = UNet::new(config);
    unet.config.validate().unwrap();
    let cfg = &unet.config;
    let flat = test_weights(&unet, 7);
    let x_shape = [n, cfg.in_channels, cfg.image_size, cfg.image_size];
    let out_shape = [n, cfg.out_channels, cfg.image_size, cfg.image_size];
    let x = uniform(x_shape.iter().product(), -1.0, 1.0, 11);
    let target = uniform(out_shape.iter().product(), -1.0, 1.0, 12);
    let t = [3u32, 17];

    let weights = gpu.upload(&flat, &[flat.len()]);
    let grads = gpu.zeros(&[flat.len()]);
    let mut cx = Ctx::new(&gpu);
    let params = unet.layout.vars(&mut cx, &weights, Some(&grads));
    let xv = cx.constant(gpu.upload(&x, &x_shape));
    let out = unet.forward(&mut cx, &params, &xv, &gpu.upload_u32(&t, &[n]), dropout);
    assert_eq!(out.shape(), out_shape.as_slice());
    let loss = ops::loss::mse_var(&mut cx, &out, &gpu.upload(&target, &out_shape));
    ops::backward(&mut cx, &loss);

    let (want_loss, want_out, want_grads) = cpu_step(
        &unet,
        &to_f64(&flat),
        &to_f64(&x),
        &t,
        &to_f64(&target),
        dropout,
    );
    let out_err = relative_l2(&gpu.read(&out.tensor), &want_out);
    assert!(out_err <= 1e-3, "output: relative L2 error {out_err:e}");
    let got_loss = gpu.read(&loss.tensor)[0] as f64;
    assert!(
        (got_loss - want_loss).abs() <= 1e-3 * want_loss.abs(),
        "loss {got_loss} vs {want_loss}"
    );
    let got = gpu.read(&grads);
    let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut worst = (String::new(), 0.0f64);
    let mut failures = Vec::new();
    for s in &unet.layout.specs {
        let range = s.offset..s.offset + s.numel();
        let want = &want_grads[range.clone()];
        if let Some(block) = s.name.strip_suffix(".k.bias") {
            // The key bias adds q_i . b to every score of row i, which the softmax ignores:
            // its exact gradient is zero, so only rounding is left on either side. Both must
            // be negligible next to the key weight's gradient.
            let k_weight = unet
                .layout
                .specs
                .iter()
                .find(|w| w.name == format!("{block}.k.weight"))
                .expect("a key weight beside the key bias");
            let scale = norm(&want_grads[k_weight.offset..k_weight.offset + k_weight.numel()]);
            let (cpu_norm, gpu_norm) = (norm(want), norm(&to_f64(&got[range])));
            let negligible = cpu_norm <= 1e-12 * scale && gpu_norm <= 1e-5 * scale;
            if !negligible {
                failures.push(format!(
                    "{}: should be ~0 but the reference has norm {cpu_norm:e} and the GPU \
                     {gpu_norm:e} (key weight gradient norm {scale:e})",
                    s.name
                ));
            }
            continue;
        }
        assert!(
            want.iter().any(|&g| g != 0.0),
            "{}: the reference gradient is zero, so the check proves nothing",
            s.name
        );
        let err = relative_l2(&got[range], want);
        if err.is_nan() || err > worst.1 {
            worst = (s.name.clone(), err);
        }
        if err.is_nan() || err > 1e-2 {
            failures.push(format!("{}: relative L2 error {err:e}", s.name));
        }
    }
    eprintln!(
        "loss {got_loss} vs {want_loss}; output error {out_err:e}; worst gradient {} {:e}",
        worst.0, worst.1
    );
    assert!(
        failures.is_empty(),
        "gradients disagree:\n{}",
        failures.join("\n")
    );
}

#[test]
fn unet_training_step_matches_the_cpu_composition() {
    check_training_step(small_config(0.0), None, false);
}

#[test]
fn unet_training_step_with_dropout_matches_the_cpu_composition() {
    let key = DropoutKey {
        seed: 5,
        stream: 9,
        first_row: 0,
    };
    check_training_step(small_config(0.1), Some(key), false);
}

/// The same check through the kernels GPUs run (tiled matmul and conv with split-K, workgroup
/// group norm, the loop embedding gradient), so a CPU-only CI machine proves that path too.
#[test]
fn unet_training_step_through_the_gpu_kernels_matches_the_cpu_composition() {
    let key = DropoutKey {
        seed: 5,
        stream: 9,
        first_row: 0,
    };
    check_training_step(small_config(0.1), Some(key), true);
}

#[test]
fn mnist_unet_step_has_the_right_shape_and_finite_values() {
    let gpu = gpu();
    let unet = UNet::new(UNetConfig {
        image_size: 28,
        in_channels: 1,
        out_channels: 1,
        base_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 2,
        attention_resolutions: vec![7],
        groups: 8,
        dropout: 0.1,
    });
    unet.config.validate().unwrap();
    let flat = unet.layout.init(1);
    let shape = [1, 1, 28, 28];
    let x = uniform(28 * 28, -1.0, 1.0, 21);
    let target = uniform(28 * 28, -1.0, 1.0, 22);
    let weights = gpu.upload(&flat, &[flat.len()]);
    let grads = gpu.zeros(&[flat.len()]);
    let mut cx = Ctx::new(&gpu);
    let params = unet.layout.vars(&mut cx, &weights, Some(&grads));
    let xv = cx.constant(gpu.upload(&x, &shape));
    let key = DropoutKey {
        seed: 1,
        stream: 2,
        first_row: 0,
    };
    let out = unet.forward(
        &mut cx,
        &params,
        &xv,
        &gpu.upload_u32(&[500], &[1]),
        Some(key),
    );
    assert_eq!(out.shape(), shape.as_slice());
    assert!(gpu.read(&out.tensor).iter().all(|v| v.is_finite()));
    let loss = ops::loss::mse_var(&mut cx, &out, &gpu.upload(&target, &shape));
    ops::backward(&mut cx, &loss);
    let loss = gpu.read(&loss.tensor)[0];
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    let got = gpu.read(&grads);
    for s in &unet.layout.specs {
        let g = &got[s.offset..s.offset + s.numel()];
        assert!(
            g.iter().all(|v| v.is_finite()),
            "{}: non-finite gradient",
            s.name
        );
    }
    // conv_out starts at zero, but its own gradient does not.
    let conv_out = unet
        .layout
        .specs
        .iter()
        .find(|s| s.name == "out.2.weight")
        .expect("conv_out");
    let g = &got[conv_out.offset..conv_out.offset + conv_out.numel()];
    assert!(g.iter().any(|&v| v != 0.0), "conv_out gets a gradient");
}
