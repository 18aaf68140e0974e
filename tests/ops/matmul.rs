//! GPU against the CPU reference: matmul and linear (shaders/matmul.wgsl, the wing's
//! shaders/soft/matmul.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::gpu::caps::profiles;
use ddpm::ops;

#[test]
fn matmul_matches_reference_for_every_transpose_and_bias() {
    let gpu = gpu();
    let own = gpu.caps();
    let (batch, m, k, n) = (2, 37, 19, 45);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let a_shape = if trans_a {
            [batch, k, m]
        } else {
            [batch, m, k]
        };
        let b_shape = if trans_b {
            [batch, n, k]
        } else {
            [batch, k, n]
        };
        let a = uniform(batch * m * k, -1.0, 1.0, 1);
        let b = uniform(batch * k * n, -1.0, 1.0, 2);
        let bias = uniform(n, -1.0, 1.0, 3);
        let ga = gpu.upload(&a, &a_shape);
        let gb = gpu.upload(&b, &b_shape);
        let gbias = gpu.upload(&bias, &[n]);
        for (with_bias, (variant, caps)) in [false, true]
            .into_iter()
            .flat_map(|b| profiles(&own).into_iter().take(3).map(move |p| (b, p)))
        {
            gpu.set_caps(caps);
            let c = ops::matmul::matmul(
                &gpu,
                &ga,
                &gb,
                with_bias.then_some(&gbias),
                trans_a,
                trans_b,
            );
            assert_eq!(c.shape, vec![batch, m, n]);
            let bias64 = to_f64(&bias);
            let want = cpu::matmul::matmul(
                &to_f64(&a),
                &to_f64(&b),
                with_bias.then_some(bias64.as_slice()),
                cpu::matmul::MatmulShape::new(batch, m, k, n).transposed(trans_a, trans_b),
            );
            let what = format!("matmul {variant} ta={trans_a} tb={trans_b} bias={with_bias}");
            assert_close(&what, &gpu.read(&c), &want, 1e-5, 1e-4);
            if !with_bias && ops::matmul::accumulates(&caps) {
                // Added onto what c already holds, in place (matmul_fwd_acc).
                let earlier = uniform(batch * m * n, -2.0, 2.0, 4);
                let into = gpu.upload(&earlier, &[batch, m, n]);
                let flags = (trans_a, trans_b);
                let sum = ops::matmul::matmul_into(&gpu, &ga, &gb, flags, into);
                let want: Vec<f64> = want
                    .iter()
                    .zip(&earlier)
                    .map(|(w, e)| w + *e as f64)
                    .collect();
                assert_close(&format!("{what} into"), &gpu.read(&sum), &want, 1e-5, 1e-4);
            }
        }
    }
    gpu.set_caps(own);
}

#[test]
fn matmul_shares_a_2d_operand_across_the_batch_and_handles_a_realistic_shape() {
    let gpu = gpu();
    let (batch, m, k, n) = (3, 5, 128, 130);
    let a = uniform(batch * m * k, -1.0, 1.0, 4);
    let w = uniform(k * n, -1.0, 1.0, 5);
    let c = ops::matmul::matmul(
        &gpu,
        &gpu.upload(&a, &[batch, m, k]),
        &gpu.upload(&w, &[k, n]),
        None,
        false,
        false,
    );
    let w_batched: Vec<f64> = (0..batch).flat_map(|_| to_f64(&w)).collect();
    let want = cpu::matmul::matmul(
        &to_f64(&a),
        &w_batched,
        None,
        cpu::matmul::MatmulShape::new(batch, m, k, n),
    );
    assert_close("matmul shared weights", &gpu.read(&c), &want, 1e-4, 1e-4);

    let (m, k, n) = (128, 128, 128);
    let a = uniform(m * k, -1.0, 1.0, 6);
    let b = uniform(k * n, -1.0, 1.0, 7);
    let want = cpu::matmul::matmul(
        &to_f64(&a),
        &to_f64(&b),
        None,
        cpu::matmul::MatmulShape::new(1, m, k, n),
    );
    let own = gpu.caps();
    for (variant, caps) in profiles(&own).into_iter().take(3) {
        gpu.set_caps(caps);
        let (ga, gb) = (gpu.upload(&a, &[m, k]), gpu.upload(&b, &[k, n]));
        let c = ops::matmul::matmul(&gpu, &ga, &gb, None, false, false);
        assert_close(
            &format!("matmul {variant} 128^3"),
            &gpu.read(&c),
            &want,
            1e-4,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

#[test]
fn matmul_uniform_windows_span_several_dispatches() {
    // A batch entry of A holds 4270 floats, so a 64 KiB window holds 3 of them: the 5 entries
    // take two dispatches, the second starting 2 floats past an aligned window start. B is
    // batched, then shared by every entry.
    let gpu = gpu();
    let (batch, m, k, n) = (5, 61, 70, 33);
    let a = uniform(batch * m * k, -1.0, 1.0, 11);
    let b = uniform(batch * k * n, -1.0, 1.0, 12);
    let ga = gpu.upload(&a, &[batch, m, k]);
    // The wing with uniform windows.
    let own = gpu.caps();
    let (_, windows) = profiles(&own)[2];
    assert_eq!(
        ops::matmul::plan(&windows, [m * k, k * n]),
        ops::matmul::MatmulPlan::Windows
    );
    gpu.set_caps(windows);
    for shared in [false, true] {
        let (gb, b_all) = if shared {
            let b0 = &b[..k * n];
            let tiled: Vec<f64> = (0..batch).flat_map(|_| to_f64(b0)).collect();
            (gpu.upload(b0, &[k, n]), tiled)
        } else {
            (gpu.upload(&b, &[batch, k, n]), to_f64(&b))
        };
        let c = ops::matmul::matmul(&gpu, &ga, &gb, None, false, false);
        let want = cpu::matmul::matmul(
            &to_f64(&a),
            &b_all,
            None,
            cpu::matmul::MatmulShape::new(batch, m, k, n),
        );
        assert_close(
            &format!("matmul Windows shared_b={shared}"),
            &gpu.read(&c),
            &want,
            1e-4,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

/// matmul_fwd_colsum: the product and op(B)'s column sums in one pass (a linear layer's weight
/// and bias gradients), over several row and column tiles and every transpose, on the GPU path.
#[test]
fn matmul_colsum_matches_reference() {
    let gpu = gpu();
    let own = gpu.caps();
    let (_, caps) = profiles(&own)[0];
    assert!(ops::matmul::accumulates(&caps), "the GPU profile");
    gpu.set_caps(caps);
    let (m, k, n) = (70, 37, 130);
    for (trans_a, trans_b) in [(true, false), (false, false), (false, true), (true, true)] {
        let a_shape = if trans_a { [k, m] } else { [m, k] };
        let b_shape = if trans_b { [n, k] } else { [k, n] };
        let a = uniform(m * k, -1.0, 1.0, 21);
        let b = uniform(k * n, -1.0, 1.0, 22);
        let (ga, gb) = (gpu.upload(&a, &a_shape), gpu.upload(&b, &b_shape));
        let (c, colsum) = ops::matmul::matmul_colsum(&gpu, &ga, &gb, trans_a, trans_b);
        let shape = cpu::matmul::MatmulShape::new(1, m, k, n).transposed(trans_a, trans_b);
        let want = cpu::matmul::matmul(&to_f64(&a), &to_f64(&b), None, shape);
        let what = format!("matmul_colsum ta={trans_a} tb={trans_b}");
        assert_close(&what, &gpu.read(&c), &want, 1e-5, 1e-4);
        let b64 = to_f64(&b);
        let at = |kk: usize, j: usize| {
            if trans_b {
                b64[j * k + kk]
            } else {
                b64[kk * n + j]
            }
        };
        let sums: Vec<f64> = (0..n).map(|j| (0..k).map(|kk| at(kk, j)).sum()).collect();
        assert_close(
            &format!("{what} sums"),
            &gpu.read(&colsum),
            &sums,
            1e-5,
            1e-5,
        );
    }
    gpu.set_caps(own);
}
