//! Softmax cross-entropy against integer labels (shaders/cross_entropy.wgsl), the classifier's
//! loss (src/quality/). The forward keeps each row's logsumexp for the backward, which then
//! needs one pass over the logits and no second reduction.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::CROSS_ENTROPY;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CrossEntropyParams {
    n_rows: u32,
    n_classes: u32,
    scale: f32,
    _pad: u32,
}

static CROSS_ENTROPY_FWD: Kernel = Kernel {
    shader: &CROSS_ENTROPY,
    entry: "cross_entropy_fwd",
};
static CROSS_ENTROPY_BWD: Kernel = Kernel {
    shader: &CROSS_ENTROPY,
    entry: "cross_entropy_bwd",
};

fn params(logits: &Tensor, labels: &Tensor) -> CrossEntropyParams {
    assert_eq!(
        logits.shape.len(),
        2,
        "cross_entropy: logits are [rows, classes]"
    );
    let (n_rows, n_classes) = (logits.shape[0], logits.shape[1]);
    assert_eq!(labels.numel(), n_rows, "cross_entropy: one label per row");
    assert!(n_classes > 0, "cross_entropy: no classes");
    CrossEntropyParams {
        n_rows: super::count_u32(n_rows, "cross_entropy"),
        n_classes: n_classes as u32,
        scale: 1.0 / n_rows as f32,
        _pad: 0,
    }
}

/// Each row's loss [n_rows] and logsumexp [n_rows]. Labels are u32 and must be < n_classes
/// (the caller's data check; an out-of-range label would read past its row).
pub fn cross_entropy_rows(gpu: &Gpu, logits: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
    let p = params(logits, labels);
    let losses = gpu.empty(&[logits.shape[0]]);
    let lse = gpu.empty(&[logits.shape[0]]);
    gpu.dispatch(
        &CROSS_ENTROPY_FWD,
        &p,
        &[
            ("logits", logits),
            ("labels", labels),
            ("losses", &losses),
            ("lse_out", &lse),
        ],
        gpu.groups_1d(logits.shape[0]),
    );
    (losses, lse)
}

/// The gradient of the mean loss times dloss[0] with respect to the logits.
pub fn cross_entropy_backward(
    gpu: &Gpu,
    logits: &Tensor,
    labels: &Tensor,
    lse: &Tensor,
    dloss: &Tensor,
) -> Tensor {
    let p = params(logits, labels);
    let dlogits = gpu.empty(&logits.shape);
    gpu.dispatch(
        &CROSS_ENTROPY_BWD,
        &p,
        &[
            ("logits", logits),
            ("labels", labels),
            ("lse", lse),
            ("dloss", dloss),
            ("dlogits", &dlogits),
        ],
        gpu.groups_1d(logits.numel()),
    );
    dlogits
}

struct CrossEntropyBackward {
    logits: Tensor,
    labels: Tensor,
    lse: Tensor,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(cross_entropy_backward(
            gpu,
            &self.logits,
            &self.labels,
            &self.lse,
            dy,
        ))]
    }
}

/// The mean cross-entropy as a one-element var, differentiable in the logits.
pub fn cross_entropy_var(cx: &mut Ctx, logits: &Var, labels: &Tensor) -> Var {
    let (losses, lse) = cross_entropy_rows(cx.gpu, &logits.tensor, labels);
    let out = super::reduce::mean(cx.gpu, &losses);
    let node = CrossEntropyBackward {
        logits: logits.tensor.clone(),
        labels: labels.clone(),
        lse,
    };
    cx.record(node, &[logits], out)
}
