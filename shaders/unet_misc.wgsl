// unet_misc.wgsl: the UNet's small elementwise ops. CPU twins: src/cpu/time_embedding.rs,
// src/cpu/channel_bias.rs, src/cpu/dropout.rs. Geometry: Gpu::groups_1d(elements).
// timestep_embedding: out[b, i] = cos(t_b f_i) for i < half, sin(t_b f_(i - half)) for
//   half <= i < 2 half, 0 for an odd last column; f_i = exp(-ln(10000) i / half).
// channel_bias_fwd: y[n, c, p] = x[n, c, p] + bias[n, c] (the time projection of a ResBlock).
// channel_bias_bwd: dbias[n, c] = sum_p dy[n, c, p]; one thread per (n, c), in order.
// dropout_fwd: keep element i when the uniform from word e % 4 of Philox draw e / 4 of (seed,
//   stream) is >= p_drop, e = offset + i, scaled by 1 / (1 - p_drop). offset is the index of
//   x[0] in the whole batch's tensor (0, or first row * elements per row for a micro-batch), so
//   a micro-batch gets exactly its rows of the whole batch's mask. A thread owns 4 elements and
//   all four words of one draw (the 10 Philox rounds were most of the kernel when each element
//   drew its own); an offset that is not a multiple of 4 makes it read two draws. The backward
//   is the same kernel applied to dy: the counter redraws the same mask.
//   Geometry: Gpu::groups_1d(ceil(elements / 4)).

struct MiscParams {
    n: u32,
    c: u32,
    hw: u32,
    dim: u32,
    p_drop: f32,
    seed: u32,
    stream: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: MiscParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> timesteps: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn timestep_embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n * p.dim) {
        let b = i / p.dim;
        let j = i % p.dim;
        let half = p.dim / 2u;
        var v = 0.0;
        if (j < 2u * half) {
            let k = j % half;
            let arg = f32(timesteps[b]) * exp(-9.210340371976184 * f32(k) / f32(half));
            v = select(sin(arg), cos(arg), j < half);
        }
        out[i] = v;
    }
}

@compute @workgroup_size(WG)
fn channel_bias_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n * p.c * p.hw) {
        out[i] = x[i] + bias[i / p.hw];
    }
}

@compute @workgroup_size(WG)
fn channel_bias_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n * p.c) {
        var acc = 0.0;
        for (var j = 0u; j < p.hw; j++) {
            acc += x[i * p.hw + j];
        }
        out[i] = acc;
    }
}

@compute @workgroup_size(WG)
fn dropout_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = linear_index(wid, nwg, lid);
    let i0 = 4u * t;
    if (i0 < p.n) {
        // Words r.. of draw d0, then (when r > 0) words ..r of draw d0 + 1.
        let e0 = p.offset + i0;
        let r = e0 % 4u;
        let d0 = e0 / 4u;
        let first = random_bits(p.seed, p.stream, d0);
        var second = first;
        if (r != 0u) {
            second = random_bits(p.seed, p.stream, d0 + 1u);
        }
        for (var k = 0u; k < 4u; k++) {
            if (i0 + k < p.n) {
                let w = r + k;
                let bits = select(first[w % 4u], second[w % 4u], w >= 4u);
                let keep = f32(bits >> 8u) * (1.0 / 16777216.0) >= p.p_drop;
                out[i0 + k] = select(0.0, x[i0 + k] / (1.0 - p.p_drop), keep);
            }
        }
    }
}
