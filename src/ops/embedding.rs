//! Embedding lookup (shaders/embedding.wgsl): rows of a [n_rows, dim] table picked by u32
//! indices; the backward scatters without float atomics.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::shaders::EMBEDDING;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbeddingParams {
    batch: u32,
    dim: u32,
    n_rows: u32,
    _pad: u32,
}

static EMBEDDING_FWD: Kernel = Kernel {
    shader: &EMBEDDING,
    entry: "embedding_fwd",
};
static ONE_HOT: Kernel = Kernel {
    shader: &EMBEDDING,
    entry: "one_hot",
};
static EMBEDDING_BWD: Kernel = Kernel {
    shader: &EMBEDDING,
    entry: "embedding_bwd",
};

fn params(batch: usize, table: &[usize]) -> EmbeddingParams {
    let [n_rows, dim] = table else {
        panic!("embedding table must be [n_rows, dim], got {table:?}")
    };
    EmbeddingParams {
        batch: batch as u32,
        dim: *dim as u32,
        n_rows: *n_rows as u32,
        _pad: 0,
    }
}

/// out[b] = table[index[b]]; `index` holds u32 values below n_rows.
pub fn embedding(gpu: &Gpu, table: &Tensor, index: &Tensor) -> Tensor {
    let batch = index.numel();
    let p = params(batch, &table.shape);
    let out = gpu.empty(&[batch, p.dim as usize]);
    gpu.dispatch(
        &EMBEDDING_FWD,
        &p,
        &[("index", index), ("table", table), ("out", &out)],
        gpu.groups_1d(out.numel()),
    );
    out
}

/// dtable with one thread per table element looping over the batch (the direct kernel).
pub fn embedding_backward_loop(
    gpu: &Gpu,
    table_shape: &[usize],
    index: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let p = params(index.numel(), table_shape);
    let dtable = gpu.empty(table_shape);
    gpu.dispatch(
        &EMBEDDING_BWD,
        &p,
        &[("index", index), ("dy", dy), ("out", &dtable)],
        gpu.groups_1d(dtable.numel()),
    );
    dtable
}

/// How the table's gradient runs: one dispatch of the loop kernel on GPUs; on CPU adapters,
/// where long per-thread loops are expensive, the one-hot matmul (several times faster there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingGradPlan {
    /// embedding_bwd: a thread per table element looping over the batch.
    Loop,
    /// one_hot, then the product one_hot(index) dy by the matmul plan.
    OneHotMatmul,
}

pub fn plan_backward(caps: &Capabilities) -> EmbeddingGradPlan {
    if caps.soft_kernels {
        EmbeddingGradPlan::OneHotMatmul
    } else {
        EmbeddingGradPlan::Loop
    }
}

pub fn embedding_backward(gpu: &Gpu, table_shape: &[usize], index: &Tensor, dy: &Tensor) -> Tensor {
    match plan_backward(&gpu.caps()) {
        EmbeddingGradPlan::OneHotMatmul => embedding_backward_one_hot(gpu, table_shape, index, dy),
        EmbeddingGradPlan::Loop => embedding_backward_loop(gpu, table_shape, index, dy),
    }
}

/// dtable = one_hot(index) dy as a matmul: the same fixed-order sum as the loop kernel.
pub fn embedding_backward_one_hot(
    gpu: &Gpu,
    table_shape: &[usize],
    index: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let p = params(index.numel(), table_shape);
    let one_hot = gpu.empty(&[p.n_rows as usize, p.batch as usize]);
    gpu.dispatch(
        &ONE_HOT,
        &p,
        &[("index", index), ("out", &one_hot)],
        gpu.groups_1d(one_hot.numel()),
    );
    super::matmul::matmul(
        gpu,
        &one_hot,
        &dy.reshape(&[p.batch as usize, p.dim as usize]),
        None,
        false,
        false,
    )
}

struct EmbeddingBackward {
    table_shape: Vec<usize>,
    index: Tensor,
}

impl Backward for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(embedding_backward(
            gpu,
            &self.table_shape,
            &self.index,
            dy,
        ))]
    }
}

pub fn embedding_var(cx: &mut Ctx, table: &Var, index: &Tensor) -> Var {
    let out = embedding(cx.gpu, &table.tensor, index);
    let node = EmbeddingBackward {
        table_shape: table.shape().to_vec(),
        index: index.clone(),
    };
    cx.record(node, &[table], out)
}
