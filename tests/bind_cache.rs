//! Bind groups reused across dispatches (src/gpu/bind_cache.rs): a dispatch that binds the same
//! buffer at another offset gets its own bind group, the cache stays correct past its bound,
//! and repeated training steps land in the same pooled buffers, so they create no bind groups.

mod common;

use common::{gpu, uniform};
use ddpm::config::TrainConfig;
use ddpm::gpu::bind_cache::MAX_ENTRIES;
use ddpm::ops::arith;
use ddpm::optim::TrainState;
use ddpm::presets::toy;
use ddpm::train::{optim_config, Trainer};

/// Elements between the slices: 256 bytes keeps every adapter's storage-offset alignment.
const STRIDE: usize = 64;

#[test]
fn the_same_buffer_at_another_offset_binds_its_own_range() {
    let gpu = gpu();
    let x: Vec<f32> = (0..2 * STRIDE).map(|i| i as f32).collect();
    let flat = gpu.upload(&x, &[2 * STRIDE]);
    let first = flat.slice_flat(0, &[STRIDE]);
    let second = flat.slice_flat(STRIDE, &[STRIDE]);
    // The first sum is read and dropped, so the second one gets the same output buffer and
    // only the input offset tells the two dispatches apart.
    let sum = gpu.read(&arith::add(&gpu, &first, &first));
    assert_eq!(sum[5], 10.0);
    let sum = gpu.read(&arith::add(&gpu, &second, &second));
    let want: Vec<f32> = x[STRIDE..].iter().map(|v| 2.0 * v).collect();
    assert_eq!(sum, want, "the second slice's own elements, doubled");
}

#[test]
fn results_stay_right_after_the_cache_is_emptied() {
    let gpu = gpu();
    let slices = MAX_ENTRIES + 100;
    let x = uniform(slices * STRIDE, -1.0, 1.0, 7);
    let flat = gpu.upload(&x, &[slices * STRIDE]);
    let out = gpu.zeros(&[slices * STRIDE]);
    for i in 0..slices {
        let part = flat.slice_flat(i * STRIDE, &[STRIDE]);
        let doubled = arith::scale(&gpu, &part, 2.0);
        gpu.copy(&doubled, &out.slice_flat(i * STRIDE, &[STRIDE]));
    }
    let got = gpu.read(&out);
    for (i, (g, v)) in got.iter().zip(&x).enumerate() {
        assert_eq!(*g, 2.0 * v, "element {i} after {slices} distinct bindings");
    }
    assert!(gpu.n_bind_groups_created() > MAX_ENTRIES);
}

#[test]
fn repeated_training_steps_create_no_bind_groups() {
    let gpu = gpu();
    let cfg = TrainConfig {
        batch_size: 64,
        ..TrainConfig::toy()
    };
    let model = toy::model(&cfg);
    let diffusion = toy::diffusion(&gpu, &cfg).unwrap();
    let trainer = Trainer {
        gpu: &gpu,
        model: &model,
        diffusion: &diffusion,
        optim: optim_config(&cfg),
        seed: 1,
        antithetic: true,
    };
    let mut state = TrainState::new(&gpu, &model.layout, 1);
    let batch = gpu.upload(&uniform(64 * 2, -0.1, 0.1, 1), &[64, 2]);
    let mut step = || {
        drop(trainer.record_step(&mut state, &batch));
        gpu.submit();
    };
    // The first steps take buffers in the order the fresh state leaves them; from then on the
    // free set at each step's start is the same.
    for _ in 0..3 {
        step();
    }
    let created = gpu.n_bind_groups_created();
    for _ in 0..3 {
        step();
    }
    gpu.wait();
    assert_eq!(
        gpu.n_bind_groups_created(),
        created,
        "steps after the first few reuse every bind group"
    );
}
