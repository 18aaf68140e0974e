//! Batched matrix product with optional transposes and bias, and its backward.

/// The dimensions of a batched product: `batch` products op(A) op(B) of [m, k] by [k, n], where
/// op(X) is X^T when its flag is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatmulShape {
    /// `batch` products of [m, k] by [k, n], neither operand transposed.
    pub fn new(batch: usize, m: usize, k: usize, n: usize) -> MatmulShape {
        MatmulShape {
            batch,
            m,
            k,
            n,
            trans_a: false,
            trans_b: false,
        }
    }

    /// The same product with A stored transposed when `trans_a`, B when `trans_b`.
    pub fn transposed(self, trans_a: bool, trans_b: bool) -> MatmulShape {
        MatmulShape {
            trans_a,
            trans_b,
            ..self
        }
    }
}

/// C[b] = op(A[b]) op(B[b]) (+ bias per column); A is [batch, m, k] (or [batch, k, m] when
/// `trans_a`), B is [batch, k, n] (or [batch, n, k] when `trans_b`); C is [batch, m, n].
pub fn matmul(a: &[f64], b: &[f64], bias: Option<&[f64]>, s: MatmulShape) -> Vec<f64> {
    let MatmulShape {
        batch,
        m,
        k,
        n,
        trans_a,
        trans_b,
    } = s;
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        let a = &a[bi * m * k..(bi + 1) * m * k];
        let b = &b[bi * k * n..(bi + 1) * k * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias.map_or(0.0, |bias| bias[j]);
                for kk in 0..k {
                    let av = if trans_a {
                        a[kk * m + i]
                    } else {
                        a[i * k + kk]
                    };
                    let bv = if trans_b {
                        b[j * k + kk]
                    } else {
                        b[kk * n + j]
                    };
                    acc += av * bv;
                }
                c[bi * m * n + i * n + j] = acc;
            }
        }
    }
    c
}

/// Gradients of y = x w + bias for x [rows, d_in], w [d_in, d_out]: (dx, dw, dbias).
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    rows: usize,
    d_in: usize,
    d_out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let dx = matmul(
        dy,
        w,
        None,
        MatmulShape::new(1, rows, d_out, d_in).transposed(false, true),
    );
    let dw = matmul(
        x,
        dy,
        None,
        MatmulShape::new(1, d_in, rows, d_out).transposed(true, false),
    );
    let db = crate::cpu::reduce::sum_rows(dy, d_out);
    (dx, dw, db)
}
