// resample.wgsl: nearest-neighbour 2x upsampling and channel concatenation (the UNet's skips).
// upsample_nearest2x_fwd: y[n, c, 2i + a, 2j + b] = x[n, c, i, j]; one thread per output.
// upsample_nearest2x_bwd: dx[n, c, i, j] = sum of the 2 x 2 block of dy; one thread per input.
// concat_fwd: y[n, 0..ca] = a[n], y[n, ca..ca + cb] = b[n] (each [c, hw]); one thread per output.
// concat_bwd: splits dy into da and db; one thread per element of dy.
// Geometry: Gpu::groups_1d(elements). CPU twin: src/cpu/resample.rs.

struct ResampleParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ca: u32,
    cb: u32,
    hw: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: ResampleParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_b: array<f32>;

@compute @workgroup_size(WG)
fn upsample_nearest2x_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    let w2 = 2u * p.w;
    let h2 = 2u * p.h;
    if (i < p.n * p.c * h2 * w2) {
        let plane = i / (h2 * w2);
        let y = (i % (h2 * w2)) / w2;
        let xx = i % w2;
        out[i] = a[(plane * p.h + y / 2u) * p.w + xx / 2u];
    }
}

@compute @workgroup_size(WG)
fn upsample_nearest2x_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n * p.c * p.h * p.w) {
        let plane = i / (p.h * p.w);
        let y = (i % (p.h * p.w)) / p.w;
        let xx = i % p.w;
        let w2 = 2u * p.w;
        let top = (plane * 2u * p.h + 2u * y) * w2 + 2u * xx;
        out[i] = a[top] + a[top + 1u] + a[top + w2] + a[top + w2 + 1u];
    }
}

@compute @workgroup_size(WG)
fn concat_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    let c = p.ca + p.cb;
    if (i < p.n * c * p.hw) {
        let sample = i / (c * p.hw);
        let ch = (i / p.hw) % c;
        let pix = i % p.hw;
        if (ch < p.ca) {
            out[i] = a[(sample * p.ca + ch) * p.hw + pix];
        } else {
            out[i] = b[(sample * p.cb + ch - p.ca) * p.hw + pix];
        }
    }
}

@compute @workgroup_size(WG)
fn concat_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    let c = p.ca + p.cb;
    if (i < p.n * c * p.hw) {
        let sample = i / (c * p.hw);
        let ch = (i / p.hw) % c;
        let pix = i % p.hw;
        if (ch < p.ca) {
            out[(sample * p.ca + ch) * p.hw + pix] = a[i];
        } else {
            out_b[(sample * p.cb + ch - p.ca) * p.hw + pix] = a[i];
        }
    }
}
