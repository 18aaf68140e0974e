//! Central differences in f64 against every backward of the CPU reference: the reference is
//! what the GPU kernels are checked against, so it is checked first.

use ddpm::cpu;

mod common;

use common::{assert_grad, numeric_grad, rand64 as rand};

#[test]
fn linear_backward_matches_finite_differences() {
    let (rows, d_in, d_out) = (4, 3, 5);
    let x = rand(rows * d_in, -1.0, 1.0, 1);
    let w = rand(d_in * d_out, -1.0, 1.0, 2);
    let b = rand(d_out, -1.0, 1.0, 3);
    let r = rand(rows * d_out, -1.0, 1.0, 4);
    let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
        cpu::matmul::matmul(
            x,
            w,
            Some(b),
            cpu::matmul::MatmulShape::new(1, rows, d_in, d_out),
        )
    };
    let (dx, dw, db) = cpu::matmul::linear_backward(&x, &w, &r, rows, d_in, d_out);
    assert_grad("linear dx", &dx, &numeric_grad(&x, &r, &|x| fwd(x, &w, &b)));
    assert_grad("linear dw", &dw, &numeric_grad(&w, &r, &|w| fwd(&x, w, &b)));
    assert_grad("linear db", &db, &numeric_grad(&b, &r, &|b| fwd(&x, &w, b)));
}

#[test]
fn transposed_matmul_backward_identities_match_finite_differences() {
    // The GPU's MatmulBackward uses: for C = A^T B, dA = B dC^T; for C = A B^T, dB = dC^T A.
    let (m, k, n) = (3, 4, 2);
    let a_t = rand(k * m, -1.0, 1.0, 5); // A stored [k, m]
    let b = rand(k * n, -1.0, 1.0, 6);
    let r = rand(m * n, -1.0, 1.0, 7);
    let da = cpu::matmul::matmul(
        &b,
        &r,
        None,
        cpu::matmul::MatmulShape::new(1, k, n, m).transposed(false, true),
    );
    let numeric = numeric_grad(&a_t, &r, &|a| {
        cpu::matmul::matmul(
            a,
            &b,
            None,
            cpu::matmul::MatmulShape::new(1, m, k, n).transposed(true, false),
        )
    });
    assert_grad("A^T B: dA", &da, &numeric);

    let a = rand(m * k, -1.0, 1.0, 8);
    let b_t = rand(n * k, -1.0, 1.0, 9); // B stored [n, k]
    let db = cpu::matmul::matmul(
        &r,
        &a,
        None,
        cpu::matmul::MatmulShape::new(1, n, m, k).transposed(true, false),
    );
    let numeric = numeric_grad(&b_t, &r, &|bt| {
        cpu::matmul::matmul(
            &a,
            bt,
            None,
            cpu::matmul::MatmulShape::new(1, m, k, n).transposed(false, true),
        )
    });
    assert_grad("A B^T: dB", &db, &numeric);
}

#[test]
fn activation_backward_matches_finite_differences() {
    // Keep ReLU inputs away from its kink at 0.
    let x: Vec<f64> = rand(50, -3.0, 3.0, 10)
        .into_iter()
        .map(|v| if v.abs() < 0.01 { 0.5 } else { v })
        .collect();
    let r = rand(50, -1.0, 1.0, 11);
    assert_grad(
        "relu",
        &cpu::activation::relu_backward(&x, &r),
        &numeric_grad(&x, &r, &cpu::activation::relu),
    );
    assert_grad(
        "silu",
        &cpu::activation::silu_backward(&x, &r),
        &numeric_grad(&x, &r, &cpu::activation::silu),
    );
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let (n_rows, dim) = (5, 3);
    let index = [4u32, 1, 4, 0, 4];
    let table = rand(n_rows * dim, -1.0, 1.0, 12);
    let r = rand(index.len() * dim, -1.0, 1.0, 13);
    let analytic = cpu::embedding::embedding_backward(&r, &index, dim, n_rows);
    let numeric = numeric_grad(&table, &r, &|t| cpu::embedding::embedding(t, &index, dim));
    assert_grad("embedding", &analytic, &numeric);
}

#[test]
fn mse_and_arith_backward_match_finite_differences() {
    let pred = rand(20, -2.0, 2.0, 14);
    let target = rand(20, -2.0, 2.0, 15);
    let analytic = cpu::loss::mse_backward(&pred, &target, 1.0);
    let numeric = numeric_grad(&pred, &[1.0], &|p| vec![cpu::loss::mse(p, &target)]);
    assert_grad("mse", &analytic, &numeric);

    let b = rand(20, -2.0, 2.0, 16);
    let r = rand(20, -1.0, 1.0, 17);
    // d(a * b)/da = b * r, as MulBackward computes.
    assert_grad(
        "mul",
        &cpu::arith::mul(&r, &b),
        &numeric_grad(&pred, &r, &|a| cpu::arith::mul(a, &b)),
    );
    assert_grad(
        "scale",
        &cpu::arith::scale(&r, 0.3),
        &numeric_grad(&pred, &r, &|a| cpu::arith::scale(a, 0.3)),
    );
}
