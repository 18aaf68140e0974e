//! GPU against the CPU reference: group norm (+SiLU) (shaders/group_norm.wgsl and the wing's
//! shaders/soft/group_norm*.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::gpu::caps::profiles;
use ddpm::ops;

fn group_norm_case(
    gpu: &ddpm::gpu::Gpu,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    groups: usize,
    seed: u32,
) {
    let hw = h * w;
    let x = uniform(n * c * hw, -2.0, 3.0, seed);
    let gamma = uniform(c, 0.5, 1.5, seed + 1);
    let beta = uniform(c, -0.5, 0.5, seed + 2);
    let dy = uniform(n * c * hw, -1.0, 1.0, seed + 3);
    let (gx, gg, gb, gdy) = (
        gpu.upload(&x, &[n, c, h, w]),
        gpu.upload(&gamma, &[c]),
        gpu.upload(&beta, &[c]),
        gpu.upload(&dy, &[n, c, h, w]),
    );
    let (x64, g64, b64, dy64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&dy));
    let eps = ops::group_norm::EPS as f64;
    let own = gpu.caps();
    for (fuse, (profile, caps)) in [false, true]
        .into_iter()
        .flat_map(|f| profiles(&own).into_iter().map(move |p| (f, p)))
    {
        gpu.set_caps(caps);
        let plan = ops::group_norm::plan(&caps, [n, c, hw], groups);
        let what = format!(
            "group_norm {profile} {plan:?} fuse_silu={fuse} n={n} c={c} hw={hw} groups={groups}"
        );
        let opts = ops::group_norm::GroupNormOptions {
            groups,
            fuse_silu: fuse,
        };
        let (y, stats) = ops::group_norm::group_norm(gpu, &gx, &gg, &gb, opts);
        let want = if fuse {
            cpu::group_norm::group_norm_silu(
                &x64,
                &g64,
                &b64,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        } else {
            cpu::group_norm::group_norm(
                &x64,
                &g64,
                &b64,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        };
        assert_close(&format!("{what} fwd"), &gpu.read(&y), &want, 1e-4, 1e-4);
        let (dx, dgamma, dbeta) =
            ops::group_norm::group_norm_backward(gpu, &gx, &gg, &gb, &stats, &gdy, opts);
        let (wdx, wdg, wdb) = if fuse {
            cpu::group_norm::group_norm_silu_backward(
                &x64,
                &g64,
                &b64,
                &dy64,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        } else {
            cpu::group_norm::group_norm_backward(
                &x64,
                &g64,
                &dy64,
                cpu::group_norm::GroupNormShape { n, c, hw, groups },
                eps,
            )
        };
        assert_close(&format!("{what} dx"), &gpu.read(&dx), &wdx, 1e-4, 1e-3);
        if ops::group_norm::fuses_dropout(gpu, &gx, groups) {
            // Dropout after the norm in the same pass, and dy through its mask in the backward:
            // the twins composed (the mask of cpu::dropout, 4 elements a Philox draw, with a
            // micro-batch offset that is not a multiple of 4).
            let d = ops::group_norm::GroupNormDropout {
                p: 0.3,
                key: (7, 9),
                offset: 6,
            };
            let (y, stats) = ops::group_norm::group_norm_dropout(gpu, &gx, &gg, &gb, opts, Some(d));
            let dropped = cpu::dropout::dropout(&want, 0.3, d.key, d.offset);
            assert_close(
                &format!("{what} dropout fwd"),
                &gpu.read(&y),
                &dropped,
                1e-4,
                1e-4,
            );
            let saved = (&gx, &gg, &gb, &stats);
            let (dx, dgamma, _) =
                ops::group_norm::group_norm_backward_into(gpu, saved, &gdy, (opts, Some(d)), None);
            let dy_kept = cpu::dropout::dropout_backward(&dy64, 0.3, d.key, d.offset);
            let shape = cpu::group_norm::GroupNormShape { n, c, hw, groups };
            let (wdx, wdg, _) = if fuse {
                cpu::group_norm::group_norm_silu_backward(&x64, &g64, &b64, &dy_kept, shape, eps)
            } else {
                cpu::group_norm::group_norm_backward(&x64, &g64, &dy_kept, shape, eps)
            };
            assert_close(
                &format!("{what} dropout dx"),
                &gpu.read(&dx),
                &wdx,
                1e-4,
                1e-3,
            );
            let got = gpu.read(&dgamma);
            assert_close(&format!("{what} dropout dgamma"), &got, &wdg, 1e-3, 1e-4);
        }
        if ops::group_norm::accumulates_dx(gpu, &gx, groups) {
            // dx added onto a gradient x already has, in place (group_norm_bwd_acc).
            let earlier = uniform(n * c * hw, -2.0, 2.0, seed + 4);
            let into = gpu.upload(&earlier, &[n, c, h, w]);
            let saved = (&gx, &gg, &gb, &stats);
            let (sum, _, _) = ops::group_norm::group_norm_backward_into(
                gpu,
                saved,
                &gdy,
                (opts, None),
                Some(into),
            );
            let want: Vec<f64> = wdx
                .iter()
                .zip(&earlier)
                .map(|(d, e)| d + *e as f64)
                .collect();
            assert_close(
                &format!("{what} dx into"),
                &gpu.read(&sum),
                &want,
                1e-4,
                1e-3,
            );
        }
        assert_close(
            &format!("{what} dgamma"),
            &gpu.read(&dgamma),
            &wdg,
            1e-3,
            1e-4,
        );
        assert_close(
            &format!("{what} dbeta"),
            &gpu.read(&dbeta),
            &wdb,
            1e-3,
            1e-4,
        );
    }
    gpu.set_caps(own);
}

#[test]
fn group_norm_matches_reference() {
    let gpu = gpu();
    group_norm_case(&gpu, 2, 6, 7, 9, 3, 50);
    // Level 1 of the mnist UNet: 64 channels at 14x14, 8 groups.
    group_norm_case(&gpu, 2, 64, 14, 14, 8, 60);
    // Level 0 at 28x28 for three samples: five 3,136-float groups per window, so the subgroup
    // kernels take two dispatches, the second ragged.
    group_norm_case(&gpu, 3, 32, 28, 28, 8, 70);
    // 150 groups of 126 floats, 129 per window: the second window's first group starts off
    // the window alignment.
    group_norm_case(&gpu, 50, 6, 7, 9, 3, 90);
    // A group larger than a window (25,088 floats): the subgroup variant falls back.
    group_norm_case(&gpu, 1, 32, 28, 28, 1, 80);
}
