// group_norm.wgsl: group normalisation with learned scale and shift, optionally fused with SiLU
// (the ResBlocks' GN -> SiLU). x is [n, c, hw]; channels form `groups` contiguous groups.
// group_norm_fwd: one workgroup per (sample, group): mean, then the biased variance from the
//   centred values (two passes, stable), y = (x - mean) rstd gamma + beta, then SiLU if fused.
//   Writes stats[(n, g)] = (mean, rstd) for the backward.
// group_norm_bwd: one workgroup per (sample, group): with g = dy (times SiLU' of the
//   pre-activation when fused) and xhat = (x - mean) rstd,
//   dx = rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat)), and per-(sample, channel)
//   partial sums of g xhat and g in one buffer; reduce.wgsl's sum_rows_fwd adds the samples:
//   dgamma, dbeta. group_norm_bwd_acc adds dx onto `out` in place (see autograd.rs).
// With drop_p > 0 both fuse the ResBlock's dropout after the norm: the forward writes
//   dropout(y), the backward takes dy through the same mask first (unet_misc.wgsl's mask).
// Geometry: n * groups workgroups of WG threads. CPU twin: src/cpu/group_norm.rs.

struct GroupNormParams {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    fuse_silu: u32,
    // group_norm_bwd: floats per sample in `param_part`, and where the dbeta sums start in it
    // (dgamma's at 0).
    part_row: u32,
    beta_offset: u32,
    // Inverted dropout after the norm (and SiLU) when drop_p > 0, the GPU path's fusion of
    // unet_misc.wgsl's dropout_fwd: the same mask, keyed by (drop_seed, drop_stream) at element
    // drop_offset + i.
    drop_p: f32,
    drop_seed: u32,
    drop_stream: u32,
    drop_offset: u32,
}

@group(0) @binding(0) var<uniform> p: GroupNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
// Per-sample sums of g xhat (dgamma) and g (dbeta): one buffer, so that one reduction adds both
// over the samples.
@group(0) @binding(7) var<storage, read_write> param_part: array<f32>;

var<workgroup> scratch: array<vec2<f32>, 256>;

fn tree_sum2(lid: u32, value: vec2<f32>) -> vec2<f32> {
    scratch[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    // Nobody may overwrite scratch[0] before everyone has read it.
    workgroupBarrier();
    return total;
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// v through the inverted-dropout mask of element i: with e = drop_offset + i, kept (scaled by
// 1 / (1 - p)) when the uniform from word e % 4 of Philox draw e / 4 is >= p, exactly as
// dropout_fwd decides; v itself when drop_p is 0.
fn dropped(v: f32, i: u32) -> f32 {
    if (p.drop_p == 0.0) {
        return v;
    }
    let e = p.drop_offset + i;
    let bits = random_bits(p.drop_seed, p.drop_stream, e / 4u)[e % 4u];
    let keep = f32(bits >> 8u) * (1.0 / 16777216.0) >= p.drop_p;
    return select(0.0, v / (1.0 - p.drop_p), keep);
}

@compute @workgroup_size(WG)
fn group_norm_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ng = wid.x + wid.y * 65535u;
    let cg = p.c / p.groups;
    let count = cg * p.hw;
    // Out-of-range workgroups (grid padding) still run the barriers, with an empty range.
    let valid = ng < p.n * p.groups;
    let base = select(0u, ng * count, valid);
    let len = select(0u, count, valid);
    var acc = 0.0;
    for (var i = lid; i < len; i += WG) {
        acc += x[base + i];
    }
    let mean = tree_sum2(lid, vec2<f32>(acc, 0.0)).x / f32(count);
    var acc2 = 0.0;
    for (var i = lid; i < len; i += WG) {
        let d = x[base + i] - mean;
        acc2 += d * d;
    }
    let var_ = tree_sum2(lid, vec2<f32>(acc2, 0.0)).x / f32(count);
    let rstd = inverseSqrt(var_ + p.eps);
    if (valid && lid == 0u) {
        stats[2u * ng] = mean;
        stats[2u * ng + 1u] = rstd;
    }
    let c0 = (ng % p.groups) * cg;
    for (var i = lid; i < len; i += WG) {
        let ch = c0 + i / p.hw;
        var y = (x[base + i] - mean) * rstd * gamma[ch] + beta[ch];
        if (p.fuse_silu == 1u) {
            y = y * sigmoid(y);
        }
        out[base + i] = dropped(y, base + i);
    }
}

@compute @workgroup_size(WG)
fn group_norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    bwd(wid, lid, false);
}

// group_norm_bwd_acc: dx added onto `out` (the gradient x already has from its other uses), so
// the autograd's separate add pass is not needed.
@compute @workgroup_size(WG)
fn group_norm_bwd_acc(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    bwd(wid, lid, true);
}

fn bwd(wid: vec3<u32>, lid: u32, accumulate: bool) {
    let ng = wid.x + wid.y * 65535u;
    let cg = p.c / p.groups;
    let count = cg * p.hw;
    let valid = ng < p.n * p.groups;
    let base = select(0u, ng * count, valid);
    let len = select(0u, count, valid);
    let mean = select(0.0, stats[2u * ng], valid);
    let rstd = select(0.0, stats[2u * ng + 1u], valid);
    let c0 = (ng % p.groups) * cg;
    let sample = ng / p.groups;
    // Per channel: sums of g * xhat and g (for dgamma, dbeta), accumulated into the group's
    // sums of g * gamma and g * gamma * xhat (for dx).
    var group_sums = vec2<f32>(0.0);
    for (var ci = 0u; ci < cg; ci++) {
        let ch = c0 + ci;
        var part = vec2<f32>(0.0);
        if (valid) {
            for (var i = lid; i < p.hw; i += WG) {
                let idx = base + ci * p.hw + i;
                let xhat = (x[idx] - mean) * rstd;
                var g = dropped(dy[idx], idx);
                if (p.fuse_silu == 1u) {
                    let z = xhat * gamma[ch] + beta[ch];
                    let s = sigmoid(z);
                    g = g * s * (1.0 + z * (1.0 - s));
                }
                part += vec2<f32>(g * xhat, g);
            }
        }
        let total = tree_sum2(lid, part);
        if (valid && lid == 0u) {
            param_part[sample * p.part_row + ch] = total.x;
            param_part[sample * p.part_row + p.beta_offset + ch] = total.y;
        }
        let gm = gamma[min(ch, p.c - 1u)];
        group_sums += vec2<f32>(total.y * gm, total.x * gm);
    }
    let mean_g = group_sums.x / f32(count);
    let mean_gx = group_sums.y / f32(count);
    for (var i = lid; i < len; i += WG) {
        let idx = base + i;
        let ch = c0 + i / p.hw;
        let xhat = (x[idx] - mean) * rstd;
        var g = dropped(dy[idx], idx);
        if (p.fuse_silu == 1u) {
            let z = xhat * gamma[ch] + beta[ch];
            let s = sigmoid(z);
            g = g * s * (1.0 + z * (1.0 - s));
        }
        let dx = rstd * (g * gamma[ch] - mean_g - xhat * mean_gx);
        if (accumulate) {
            out[idx] = out[idx] + dx;
        } else {
            out[idx] = dx;
        }
    }
}
