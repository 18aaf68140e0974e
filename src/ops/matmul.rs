//! Matrix products: batched matmul with transposes, and the linear layer y = x w + bias with w
//! stored [d_in, d_out], so the forward pass needs no transpose. The plan, and the GPU path
//! (shaders/matmul.wgsl, workgroup-memory tiles); CPU adapters run the wing's kernels
//! (ops::soft::matmul).

use bytemuck::{Pod, Zeroable};

use super::soft;
use crate::autograd::{take_earlier, Backward, Ctx, Var};
use crate::gpu::{Capabilities, Gpu, Kernel};
use crate::shaders::MATMUL;
use crate::tensor::Tensor;

/// Mirrors `MatmulParams` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub _pad_k: u32,
    pub a_batch: u32,
    pub a_row: u32,
    pub a_col: u32,
    pub _pad0: u32,
    pub b_batch: u32,
    pub b_row: u32,
    pub b_col: u32,
    pub _pad1: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub _pad2: u32,
}

static MATMUL_FWD: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd",
};
static MATMUL_FWD_COLSUM: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd_colsum",
};
static MATMUL_FWD_ACC: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd_acc",
};
static MATMUL_FWD_BIAS: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd_bias",
};
const TILE: usize = 64;

/// (batch, rows, cols) of a 2-D or 3-D tensor.
pub(crate) fn dims(t: &Tensor) -> (usize, usize, usize) {
    match t.shape.as_slice() {
        [r, c] => (1, *r, *c),
        [b, r, c] => (*b, *r, *c),
        s => panic!("matmul takes 2-D or 3-D tensors, got {s:?}"),
    }
}

/// How a product runs: workgroup-memory tiles on GPUs; on CPU adapters (the wing), a
/// barrier-free register-blocked kernel, reading both operands through 64 KiB uniform windows
/// where a batch entry of each fits one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPlan {
    /// matmul_fwd: 64 x 64 tiles.
    Tiled,
    /// matmul_fwd_ubo: 32 x 32 tiles, operands in uniform windows.
    Windows,
    /// matmul_fwd_direct: 16 x 128 tiles.
    Direct,
}

/// The plan for operands whose batch entries hold `entries` floats each.
pub fn plan(caps: &Capabilities, entries: [usize; 2]) -> MatmulPlan {
    if !caps.soft_kernels {
        MatmulPlan::Tiled
    } else if soft::matmul::windows_fit(caps, entries) {
        MatmulPlan::Windows
    } else {
        MatmulPlan::Direct
    }
}

impl MatmulPlan {
    /// The plan's entry point without a bias (with one: the `_bias` twin).
    pub fn entry(self) -> &'static str {
        match self {
            MatmulPlan::Tiled => "matmul_fwd",
            MatmulPlan::Windows => "matmul_fwd_ubo",
            MatmulPlan::Direct => "matmul_fwd_direct",
        }
    }
}

/// op(A) op(B) (+ bias per column), batched over a leading axis; a 2-D operand is shared by
/// every batch entry. op(X) is X^T when its flag is set.
pub fn matmul(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_a: bool,
    trans_b: bool,
) -> Tensor {
    product(gpu, a, b, bias, (trans_a, trans_b), None, None)
}

/// (op(A) op(B), the column sums of op(B)) in one pass, for 2-D operands on the GPU path (where
/// `accumulates` holds): a linear layer's weight gradient x^T dy and bias gradient.
pub fn matmul_colsum(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> (Tensor, Tensor) {
    assert!(
        a.shape.len() == 2 && b.shape.len() == 2,
        "matmul_colsum: 2-D operands"
    );
    let n = if trans_b { b.shape[0] } else { b.shape[1] };
    let colsum = gpu.empty(&[n]);
    let c = product(gpu, a, b, None, (trans_a, trans_b), None, Some(&colsum));
    (c, colsum)
}

/// Whether `matmul_into` runs on this adapter: the GPU path's tiled kernel (the software wing's
/// kernels write the product alone).
pub fn accumulates(caps: &Capabilities) -> bool {
    !caps.soft_kernels
}

/// `into` += op(A) op(B), in place (where `accumulates` holds): a gradient's earlier part.
pub fn matmul_into(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    (trans_a, trans_b): (bool, bool),
    into: Tensor,
) -> Tensor {
    product(gpu, a, b, None, (trans_a, trans_b), Some(into), None)
}

fn product(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    (trans_a, trans_b): (bool, bool),
    into: Option<Tensor>,
    colsum: Option<&Tensor>,
) -> Tensor {
    let (batch_a, ra, ca) = dims(a);
    let (batch_b, rb, cb) = dims(b);
    let (m, k) = if trans_a { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if trans_b { (cb, rb) } else { (rb, cb) };
    assert_eq!(
        k, k2,
        "matmul: inner dimensions differ ({:?} x {:?})",
        a.shape, b.shape
    );
    assert!(
        batch_a == batch_b || batch_a == 1 || batch_b == 1,
        "matmul: batch sizes differ"
    );
    let batch = batch_a.max(batch_b);
    if let Some(bias) = bias {
        assert_eq!(bias.numel(), n, "matmul: bias length");
    }
    let u = |v: usize| super::count_u32(v, "matmul");
    let (a_row, a_col) = if trans_a { (1, ca) } else { (ca, 1) };
    let (b_row, b_col) = if trans_b { (1, cb) } else { (cb, 1) };
    let params = MatmulParams {
        m: u(m),
        n: u(n),
        k: u(k),
        _pad_k: 0,
        a_batch: if batch_a == 1 { 0 } else { u(ra * ca) },
        a_row: u(a_row),
        a_col: u(a_col),
        _pad0: 0,
        b_batch: if batch_b == 1 { 0 } else { u(rb * cb) },
        b_row: u(b_row),
        b_col: u(b_col),
        _pad1: 0,
        a_off: 0,
        b_off: 0,
        c_off: 0,
        _pad2: 0,
    };
    let shape = if a.shape.len() == 3 || b.shape.len() == 3 {
        vec![batch, m, n]
    } else {
        vec![m, n]
    };
    let accumulate = into.is_some();
    assert!(
        (colsum.is_none() || accumulates(&gpu.caps())) && !(accumulate && colsum.is_some()),
        "matmul: column sums on the GPU path, beside a plain product"
    );
    let c = match into {
        Some(into) => {
            assert!(
                accumulates(&gpu.caps()),
                "the wing's kernels write the product alone"
            );
            assert_eq!(into.shape, shape, "matmul_into: the product's shape");
            into
        }
        None => gpu.empty(&shape),
    };
    match plan(&gpu.caps(), [ra * ca, rb * cb]) {
        MatmulPlan::Tiled => {
            let groups = [
                n.div_ceil(TILE) as u32,
                m.div_ceil(TILE) as u32,
                batch as u32,
            ];
            match (bias, colsum) {
                (None, Some(colsum)) => gpu.dispatch(
                    &MATMUL_FWD_COLSUM,
                    &params,
                    &[("a", a), ("b", b), ("c", &c), ("colsum", colsum)],
                    groups,
                ),
                (Some(_), Some(_)) => unreachable!("a bias and column sums"),
                (Some(bias), None) => gpu.dispatch(
                    &MATMUL_FWD_BIAS,
                    &params,
                    &[("a", a), ("b", b), ("bias", bias), ("c", &c)],
                    groups,
                ),
                (None, None) => gpu.dispatch(
                    if accumulate {
                        &MATMUL_FWD_ACC
                    } else {
                        &MATMUL_FWD
                    },
                    &params,
                    &[("a", a), ("b", b), ("c", &c)],
                    groups,
                ),
            }
        }
        MatmulPlan::Windows => {
            soft::matmul::windows(gpu, &params, [a, b], [batch_a, batch_b], bias, &c)
        }
        MatmulPlan::Direct => soft::matmul::direct(gpu, &params, [a, b], batch, bias, &c),
    }
    c
}

struct MatmulBackward {
    a: Tensor,
    b: Tensor,
    trans_a: bool,
    trans_b: bool,
}

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, gpu: &Gpu, dc: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (a, b, ta, tb) = (&self.a, &self.b, self.trans_a, self.trans_b);
        // C = op(A) op(B): d op(A) = dC op(B)^T and d op(B) = op(A)^T dC, transposed back
        // when the operand itself was stored transposed.
        let da = needs[0].then(|| {
            if ta {
                matmul(gpu, b, dc, None, tb, true)
            } else {
                matmul(gpu, dc, b, None, false, !tb)
            }
        });
        let db = needs[1].then(|| {
            if tb {
                matmul(gpu, dc, a, None, true, ta)
            } else {
                matmul(gpu, a, dc, None, !ta, false)
            }
        });
        vec![da, db]
    }
}

/// Differentiable batched matmul; both operands must have the same batch size.
pub fn matmul_var(cx: &mut Ctx, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Var {
    assert_eq!(
        a.shape().len(),
        b.shape().len(),
        "matmul_var: operands of equal rank"
    );
    let c = matmul(cx.gpu, &a.tensor, &b.tensor, None, trans_a, trans_b);
    let node = MatmulBackward {
        a: a.tensor.clone(),
        b: b.tensor.clone(),
        trans_a,
        trans_b,
    };
    cx.record(node, &[a, b], c)
}

struct LinearBackward {
    x: Tensor,
    w: Tensor,
}

impl Backward for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn backward(&self, gpu: &Gpu, dy: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.backward_into(gpu, dy, needs, &mut [])
    }
    fn backward_into(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        needs: &[bool],
        into: &mut [Option<Tensor>],
    ) -> Vec<Option<Tensor>> {
        let dx_into = take_earlier(into, 0, accumulates(&gpu.caps()));
        let dx = needs[0].then(|| match dx_into {
            Some(into) => matmul_into(gpu, dy, &self.w, (false, true), into),
            None => matmul(gpu, dy, &self.w, None, false, true),
        });
        // The bias gradient beside the weight gradient, in its pass (the GPU path).
        let (dw, db) = match (needs[1], needs[2], accumulates(&gpu.caps())) {
            (true, true, true) => {
                let (dw, db) = matmul_colsum(gpu, &self.x, dy, true, false);
                (Some(dw), Some(db))
            }
            _ => (
                needs[1].then(|| matmul(gpu, &self.x, dy, None, true, false)),
                needs[2].then(|| super::reduce::sum_rows(gpu, dy)),
            ),
        };
        vec![dx, dw, db]
    }
}

/// y = x w + bias for x [rows, d_in], w [d_in, d_out], bias [d_out].
pub fn linear(cx: &mut Ctx, x: &Var, w: &Var, bias: &Var) -> Var {
    assert_eq!(x.shape().len(), 2, "linear: x is [rows, d_in]");
    let y = matmul(
        cx.gpu,
        &x.tensor,
        &w.tensor,
        Some(&bias.tensor),
        false,
        false,
    );
    let node = LinearBackward {
        x: x.tensor.clone(),
        w: w.tensor.clone(),
    };
    cx.record(node, &[x, w, bias], y)
}
