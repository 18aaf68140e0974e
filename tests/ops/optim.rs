//! GPU against the CPU reference: Adam, clipping and EMA (shaders/optim.wgsl).

use crate::common::{assert_close, gpu, to_f64, uniform};
use ddpm::cpu;
use ddpm::ops;

#[test]
fn adam_with_clipping_and_ema_match_reference() {
    let gpu = gpu();
    let n = 1234;
    let cfg = cpu::optim::AdamConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        max_norm: 1.0,
    };
    let param = uniform(n, -1.0, 1.0, 19);
    let m0 = uniform(n, -0.1, 0.1, 20);
    let v0 = uniform(n, 0.0, 0.1, 21);
    // Norm ~ 0.58 * sqrt(n) >> 1, so clipping is active.
    let grad = uniform(n, -1.0, 1.0, 22);
    let (gp, gg, gm, gv) = (
        gpu.upload(&param, &[n]),
        gpu.upload(&grad, &[n]),
        gpu.upload(&m0, &[n]),
        gpu.upload(&v0, &[n]),
    );
    let norm = ops::optim::grad_norm(&gpu, &gg);
    let step = 7;
    let tensors = ops::optim::AdamTensors {
        param: &gp,
        grad: &gg,
        grad_norm: &norm,
        exp_avg: &gm,
        exp_avg_sq: &gv,
    };
    ops::optim::adam_step(&gpu, &cfg, cfg.lr, step, tensors);
    let (mut p64, mut m64, mut v64) = (to_f64(&param), to_f64(&m0), to_f64(&v0));
    cpu::optim::adam_step(&cfg, step, &mut p64, &to_f64(&grad), &mut m64, &mut v64);
    assert_close("adam exp_avg", &gpu.read(&gm), &m64, 1e-7, 1e-4);
    assert_close("adam exp_avg_sq", &gpu.read(&gv), &v64, 1e-9, 1e-4);
    assert_close("adam param", &gpu.read(&gp), &p64, 1e-6, 1e-5);

    let ema = uniform(n, -1.0, 1.0, 23);
    let gema = gpu.upload(&ema, &[n]);
    ops::optim::ema_update(&gpu, &gema, &gp, 0.99);
    let mut ema64 = to_f64(&ema);
    cpu::optim::ema_update(&mut ema64, &p64, 0.99);
    assert_close("ema_update", &gpu.read(&gema), &ema64, 1e-6, 1e-5);
}
