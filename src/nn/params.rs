//! Flat parameter layout: every parameter is a named range of one buffer, aligned so that a
//! slice can be bound directly as a storage buffer (the 256-byte offset alignment WebGPU allows).

use rand::{Rng, SeedableRng};

use crate::autograd::{Ctx, Var};
use crate::tensor::Tensor;

/// Offsets are multiples of 64 floats = 256 bytes, the largest storage offset alignment
/// WebGPU permits, so every adapter accepts them.
pub const ALIGN_FLOATS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(-bound, bound), PyTorch's default for Linear with bound = 1 / sqrt(fan_in).
    Uniform(f64),
    Normal(f64),
    /// N(0, std^2) except the last row (of the first dimension), which starts at zero: a class
    /// embedding whose "no class" row adds nothing until training moves it.
    NormalZeroLastRow(f64),
    Zeros,
    Ones,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamLayout {
    pub specs: Vec<ParamSpec>,
    /// Length of the flat buffers, padding included.
    pub n_total: usize,
}

impl ParamLayout {
    /// Adds a parameter and returns its index.
    pub fn add(&mut self, name: &str, shape: &[usize], init: Init) -> usize {
        let offset = self.n_total.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS;
        let spec = ParamSpec {
            name: name.to_owned(),
            shape: shape.to_vec(),
            offset,
            init,
        };
        self.n_total = offset + spec.numel();
        self.specs.push(spec);
        self.specs.len() - 1
    }

    /// Number of trainable values (padding excluded).
    pub fn n_params(&self) -> usize {
        self.specs.iter().map(ParamSpec::numel).sum()
    }

    /// Initial values of the flat buffer, from `seed` (padding stays zero).
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut flat = vec![0.0f32; self.n_total];
        for spec in &self.specs {
            let dst = &mut flat[spec.offset..spec.offset + spec.numel()];
            let last_row = spec.numel() - spec.numel() / spec.shape[0].max(1);
            for (i, v) in dst.iter_mut().enumerate() {
                *v = match spec.init {
                    Init::Uniform(bound) => rng.random_range(-bound..bound) as f32,
                    Init::Normal(std) => (std * standard_normal(&mut rng)) as f32,
                    Init::NormalZeroLastRow(_) if i >= last_row => 0.0,
                    Init::NormalZeroLastRow(std) => (std * standard_normal(&mut rng)) as f32,
                    Init::Zeros => 0.0,
                    Init::Ones => 1.0,
                };
            }
        }
        flat
    }

    /// Each parameter as a var over a flat weight buffer; with `grads`, gradients flow into the
    /// matching slices of the flat gradient buffer.
    pub fn vars(&self, cx: &mut Ctx, weights: &Tensor, grads: Option<&Tensor>) -> Vec<Var> {
        self.specs
            .iter()
            .map(|s| {
                let w = weights.slice_flat(s.offset, &s.shape);
                match grads {
                    Some(g) => cx.param(w, g.slice_flat(s.offset, &s.shape)),
                    None => cx.constant(w),
                }
            })
            .collect()
    }
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_and_disjoint() {
        let mut layout = ParamLayout::default();
        layout.add("a", &[3, 5], Init::Zeros);
        layout.add("b", &[7], Init::Ones);
        layout.add("c", &[2, 70], Init::Normal(1.0));
        let mut end = 0;
        for s in &layout.specs {
            assert_eq!(s.offset % ALIGN_FLOATS, 0);
            assert!(s.offset >= end);
            end = s.offset + s.numel();
        }
        assert_eq!(layout.n_total, end);
        assert_eq!(layout.n_params(), 15 + 7 + 140);
        let flat = layout.init(1);
        assert_eq!(&flat[64..71], &[1.0; 7]);
        assert_eq!(flat, layout.init(1), "same seed, same weights");
    }
}
