//! The toy model of seed 000: an MLP on 2-D points with a learned embedding of t added after
//! each hidden linear layer.
//! x(2) -> Linear(2,H) + Emb_1[t] -> ReLU -> Linear(H,H) + Emb_2[t] -> ReLU
//!      -> Linear(H,H) + Emb_3[t] -> ReLU -> Linear(H,2)
//! A class-conditional MLP adds a class embedding ClassEmb_i[y] next to each Emb_i[t]; its last
//! row is "no class" (classifier-free guidance) and starts at zero.

use crate::autograd::{Ctx, Var};
use crate::nn::params::{Init, ParamLayout};
use crate::ops::{activation, arith, embedding, matmul};
use crate::tensor::Tensor;

pub struct Mlp {
    pub layout: ParamLayout,
    n_hidden_layers: usize,
    /// Rows of each class embedding (classes + "no class"); None when unconditional.
    pub class_rows: Option<usize>,
}

impl Mlp {
    pub fn new(data_dim: usize, hidden: usize, n_timesteps: usize) -> Mlp {
        Mlp::with_output(data_dim, data_dim, hidden, n_timesteps)
    }

    /// An MLP with `out_dim` outputs: 2 * data_dim when the variance is learned (IDDPM).
    pub fn with_output(data_dim: usize, out_dim: usize, hidden: usize, n_timesteps: usize) -> Mlp {
        let mut layout = ParamLayout::default();
        let linear = |layout: &mut ParamLayout, name: &str, d_in: usize, d_out: usize| {
            // PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
            let bound = 1.0 / (d_in as f64).sqrt();
            layout.add(
                &format!("{name}.weight"),
                &[d_in, d_out],
                Init::Uniform(bound),
            );
            layout.add(&format!("{name}.bias"), &[d_out], Init::Uniform(bound));
        };
        let n_hidden_layers = 3;
        for i in 0..n_hidden_layers {
            let d_in = if i == 0 { data_dim } else { hidden };
            linear(&mut layout, &format!("linears.{i}"), d_in, hidden);
            // nn.Embedding's default init: N(0, 1).
            layout.add(
                &format!("step_embeddings.{i}.weight"),
                &[n_timesteps, hidden],
                Init::Normal(1.0),
            );
        }
        linear(
            &mut layout,
            &format!("linears.{n_hidden_layers}"),
            hidden,
            out_dim,
        );
        Mlp {
            layout,
            n_hidden_layers,
            class_rows: None,
        }
    }

    /// The MLP conditioned on `n_classes` classes: class embeddings appended after every other
    /// parameter, so an unconditional model's parameters keep their offsets.
    pub fn with_classes(mut self, n_classes: Option<usize>) -> Mlp {
        let Some(n_classes) = n_classes else {
            return self;
        };
        let hidden = self.layout.specs[0].shape[1];
        for i in 0..self.n_hidden_layers {
            self.layout.add(
                &format!("class_embeddings.{i}.weight"),
                &[n_classes + 1, hidden],
                Init::NormalZeroLastRow(1.0),
            );
        }
        self.class_rows = Some(n_classes + 1);
        self
    }

    /// Predicted noise for points x [batch, 2] at timesteps t (u32 [batch]), unconditional.
    pub fn forward(&self, cx: &mut Ctx, params: &[Var], x: &Var, t: &Tensor) -> Var {
        self.forward_classes(cx, params, x, t, None)
    }

    /// `forward` with the class embeddings of `classes` (u32 [batch]) added next to the time
    /// embeddings; `classes` must be given exactly when the model is class-conditional.
    pub fn forward_classes(
        &self,
        cx: &mut Ctx,
        params: &[Var],
        x: &Var,
        t: &Tensor,
        classes: Option<&Tensor>,
    ) -> Var {
        assert_eq!(classes.is_some(), self.class_rows.is_some(), "classes");
        let k = 3 * self.n_hidden_layers;
        let mut h = x.clone();
        for i in 0..self.n_hidden_layers {
            let (w, b, emb) = (&params[3 * i], &params[3 * i + 1], &params[3 * i + 2]);
            let z = matmul::linear(cx, &h, w, b);
            let e = embedding::embedding_var(cx, emb, t);
            let z = arith::add_var(cx, &z, &e);
            let z = match classes {
                Some(classes) => {
                    let c = embedding::embedding_var(cx, &params[k + 2 + i], classes);
                    arith::add_var(cx, &z, &c)
                }
                None => z,
            };
            h = activation::relu_var(cx, &z);
        }
        matmul::linear(cx, &h, &params[k], &params[k + 1])
    }
}
