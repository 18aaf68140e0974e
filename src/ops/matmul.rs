//! Matrix products (shaders/matmul.wgsl): batched matmul with transposes, and the linear layer
//! y = x w + bias with w stored [d_in, d_out], so the forward pass needs no transpose.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{Backward, Ctx, Var};
use crate::gpu::{Gpu, Kernel};
use crate::shaders::MATMUL;
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    a_batch: u32,
    a_row: u32,
    a_col: u32,
    _pad0: u32,
    b_batch: u32,
    b_row: u32,
    b_col: u32,
    _pad1: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    _pad2: u32,
}

static MATMUL_FWD: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd",
};
static MATMUL_FWD_DIRECT: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd_direct",
};
static MATMUL_FWD_UBO: Kernel = Kernel {
    shader: &MATMUL,
    entry: "matmul_fwd_ubo",
};
const TILE: usize = 64;
/// Output tile of matmul_fwd_direct: 16 rows x 128 columns.
const DIRECT_TILE: (usize, usize) = (16, 128);
/// Output tile of matmul_fwd_ubo: 32 x 32.
const UBO_TILE: usize = 32;

/// (batch, rows, cols) of a 2-D or 3-D tensor.
fn dims(t: &Tensor) -> (usize, usize, usize) {
    match t.shape.as_slice() {
        [r, c] => (1, *r, *c),
        [b, r, c] => (*b, *r, *c),
        s => panic!("matmul takes 2-D or 3-D tensors, got {s:?}"),
    }
}

/// The implementations of the product: workgroup-memory tiles for GPUs, and a barrier-free
/// register-blocked kernel for CPU adapters, where barriers are expensive and workgroup memory
/// buys nothing. `DirectUniform` is `Direct` reading operands whose batch entries fit a 64 KiB
/// uniform window through windows (ops::window), others as `Direct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    Tiled,
    Direct,
    DirectUniform,
}

impl MatmulVariant {
    pub fn for_adapter(gpu: &Gpu) -> MatmulVariant {
        if !gpu.cpu_kernels() {
            MatmulVariant::Tiled
        } else if super::window::supported(gpu) {
            MatmulVariant::DirectUniform
        } else {
            MatmulVariant::Direct
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
    matmul_variant(
        gpu,
        MatmulVariant::for_adapter(gpu),
        a,
        b,
        bias,
        trans_a,
        trans_b,
    )
}

/// `matmul` with the implementation chosen by the caller (tests cover both on any adapter).
pub fn matmul_variant(
    gpu: &Gpu,
    variant: MatmulVariant,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_a: bool,
    trans_b: bool,
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
        has_bias: bias.is_some() as u32,
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
    let c = gpu.empty(&shape);
    if variant == MatmulVariant::DirectUniform
        && matmul_ubo(gpu, &params, [a, b], [batch_a, batch_b], bias, &c)
    {
        return c;
    }
    let (kernel, (tile_m, tile_n)) = match variant {
        MatmulVariant::Tiled => (&MATMUL_FWD, (TILE, TILE)),
        MatmulVariant::Direct | MatmulVariant::DirectUniform => (&MATMUL_FWD_DIRECT, DIRECT_TILE),
    };
    let groups = [
        n.div_ceil(tile_n) as u32,
        m.div_ceil(tile_m) as u32,
        batch as u32,
    ];
    gpu.dispatch(kernel, &params, &[a, b, bias.unwrap_or(a), &c], groups);
    c
}

/// The product by matmul_fwd_ubo into `c`, where a batch entry of each operand fits a window
/// (false otherwise, and nothing is recorded): a dispatch per run of batch entries whose A and B
/// both fit their windows.
fn matmul_ubo(
    gpu: &Gpu,
    params: &MatmulParams,
    operands: [&Tensor; 2],
    batches: [usize; 2],
    bias: Option<&Tensor>,
    c: &Tensor,
) -> bool {
    use super::window;
    if !window::supported(gpu) {
        return false;
    }
    let align = window::align_floats(gpu);
    let entries = operands.map(|t| {
        let (_, r, c) = dims(t);
        r * c
    });
    if entries
        .iter()
        .any(|&e| e == 0 || e + align > window::WINDOW_FLOATS)
    {
        return false;
    }
    let batch = batches[0].max(batches[1]);
    // Batch entries per dispatch: as many as every batched operand's window holds.
    let per_dispatch = (0..2)
        .filter(|&i| batches[i] > 1)
        .map(|i| (window::WINDOW_FLOATS - align) / entries[i])
        .min()
        .unwrap_or(batch)
        .clamp(1, gpu.limits.max_compute_workgroups_per_dimension as usize);
    let sources = operands.map(|t| window::Windows::new(gpu, t));
    let (m, n) = (params.m as usize, params.n as usize);
    for z0 in (0..batch).step_by(per_dispatch) {
        let [(a_win, a_off), (b_win, b_off)] = [0, 1].map(|i| {
            let start = if batches[i] > 1 { z0 * entries[i] } else { 0 };
            sources[i].at(start)
        });
        let p = MatmulParams {
            a_off: a_off as u32,
            b_off: b_off as u32,
            c_off: super::count_u32(z0 * m * n, "matmul"),
            ..*params
        };
        // Without a bias the bias binding holds A and is not read.
        let groups = [
            n.div_ceil(UBO_TILE) as u32,
            m.div_ceil(UBO_TILE) as u32,
            per_dispatch.min(batch - z0) as u32,
        ];
        gpu.dispatch(
            &MATMUL_FWD_UBO,
            &p,
            &[bias.unwrap_or(operands[0]), c, &a_win, &b_win],
            groups,
        );
    }
    true
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
        vec![
            needs[0].then(|| matmul(gpu, dy, &self.w, None, false, true)),
            needs[1].then(|| matmul(gpu, &self.x, dy, None, true, false)),
            needs[2].then(|| super::reduce::sum_rows(gpu, dy)),
        ]
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
