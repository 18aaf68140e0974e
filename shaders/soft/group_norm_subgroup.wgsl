// soft/group_norm_subgroup.wgsl: group_norm_fwd_cpu / group_norm_bwd_cpu for CPU adapters with
// subgroups, reading x (and dy) through 64 KiB uniform windows instead of storage buffers,
// which Mesa 22.3.6's llvmpipe loads in a loop over the SIMD lanes (~4 ns per lane-load; the
// forward reads each element 3 times, the backward x and dy twice each). A workgroup of 8
// invocations (one subgroup: one SIMD row on llvmpipe) takes one (sample, group); its lanes
// split each channel's pixels 4 at a time and subgroupAdd sums their partial sums, in place of
// the barriers that a CPU driver pays for dearly. Up to four x windows (xw0..3, and dy windows
// dyw0..3 for the backward): window j holds groups_per_window whole groups, the dispatch's
// groups j * groups_per_window onwards (from first_group), the first at float shift{j} of it.
// Workgroup k of the dispatch takes group first_group + k, in window k / groups_per_window.
// Each workgroup runs the code of every window with a constant window index (a uniform-buffer
// variable cannot be picked at run time) and empty loops for the windows that are not its own.
// Same outputs and formulas as group_norm.wgsl's kernels. Built as its own module
// (soft/group_norm.wgsl + this file), used only where the device has subgroups.
// Geometry: (groups in the dispatch, 1, 1) workgroups of 8.

@group(0) @binding(8) var<uniform> xw0: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> xw1: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<uniform> xw2: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> xw3: array<vec4<f32>, 4096>;
@group(0) @binding(12) var<uniform> dyw0: array<vec4<f32>, 4096>;
@group(0) @binding(13) var<uniform> dyw1: array<vec4<f32>, 4096>;
@group(0) @binding(14) var<uniform> dyw2: array<vec4<f32>, 4096>;
@group(0) @binding(15) var<uniform> dyw3: array<vec4<f32>, 4096>;

// Float e of x window j (j a constant at every call).
fn xw_at(j: u32, e: u32) -> f32 {
    switch j {
        case 0u: { return xw0[e >> 2u][e & 3u]; }
        case 1u: { return xw1[e >> 2u][e & 3u]; }
        case 2u: { return xw2[e >> 2u][e & 3u]; }
        default: { return xw3[e >> 2u][e & 3u]; }
    }
}

fn dyw_at(j: u32, e: u32) -> f32 {
    switch j {
        case 0u: { return dyw0[e >> 2u][e & 3u]; }
        case 1u: { return dyw1[e >> 2u][e & 3u]; }
        case 2u: { return dyw2[e >> 2u][e & 3u]; }
        default: { return dyw3[e >> 2u][e & 3u]; }
    }
}

// Floats e .. e + 3 of x (dy) window j. Planes need not start at a multiple of 4 floats: a
// uniform gather costs the same per float, aligned or not.
fn x4_at(j: u32, e: u32) -> vec4<f32> {
    return vec4<f32>(xw_at(j, e), xw_at(j, e + 1u), xw_at(j, e + 2u), xw_at(j, e + 3u));
}

fn dy4_at(j: u32, e: u32) -> vec4<f32> {
    return vec4<f32>(dyw_at(j, e), dyw_at(j, e + 1u), dyw_at(j, e + 2u), dyw_at(j, e + 3u));
}

// Which of the 4 pixels from pixel q of a channel lie inside it.
fn in_plane(q: u32) -> vec4<bool> {
    return vec4<u32>(q, q + 1u, q + 2u, q + 3u) < vec4<u32>(p.hw);
}

fn sigmoid4(v: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-v));
}

// Stores the valid ones of 4 values from out[o].
fn store4(o: u32, v: vec4<f32>, ok: vec4<bool>) {
    for (var k = 0u; k < 4u; k++) {
        if (ok[k]) {
            out[o + k] = v[k];
        }
    }
}

// The forward of group `gid`, local group `local` of window j, where `mine` says whether the
// workgroup's group is in window j (else every loop is empty).
fn gn_fwd_window(j: u32, mine: bool, shift: u32, local: u32, gid: u32, lane: u32) {
    let cg = select(0u, p.c / p.groups, mine);
    let count = f32((p.c / p.groups) * p.hw);
    let base = shift + local * (p.c / p.groups) * p.hw;
    var acc = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        for (var q = 4u * lane; q < p.hw; q += 32u) {
            let v = select(vec4<f32>(0.0), x4_at(j, base + ci * p.hw + q), in_plane(q));
            acc += (v.x + v.y) + (v.z + v.w);
        }
    }
    let mean = subgroupAdd(acc) / count;
    var acc2 = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        for (var q = 4u * lane; q < p.hw; q += 32u) {
            let d = select(vec4<f32>(0.0), x4_at(j, base + ci * p.hw + q) - mean, in_plane(q));
            acc2 += dot(d, d);
        }
    }
    let rstd = inverseSqrt(subgroupAdd(acc2) / count + p.eps);
    if (mine && lane == 0u) {
        stats[2u * gid] = mean;
        stats[2u * gid + 1u] = rstd;
    }
    let c0 = (gid % p.groups) * (p.c / p.groups);
    let out_base = gid * (p.c / p.groups) * p.hw;
    for (var ci = 0u; ci < cg; ci++) {
        let gm = gamma[c0 + ci];
        let bt = beta[c0 + ci];
        for (var q = 4u * lane; q < p.hw; q += 32u) {
            var y = (x4_at(j, base + ci * p.hw + q) - mean) * rstd * gm + bt;
            if (p.fuse_silu == 1u) {
                y = y * sigmoid4(y);
            }
            store4(out_base + ci * p.hw + q, y, in_plane(q));
        }
    }
}

@compute @workgroup_size(8)
fn group_norm_fwd_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let j = wid.x / p.groups_per_window;
    let local = wid.x % p.groups_per_window;
    let gid = p.first_group + wid.x;
    gn_fwd_window(0u, j == 0u, p.shift0, local, gid, li);
    gn_fwd_window(1u, j == 1u, p.shift1, local, gid, li);
    gn_fwd_window(2u, j == 2u, p.shift2, local, gid, li);
    gn_fwd_window(3u, j == 3u, p.shift3, local, gid, li);
}

// g = dy, times SiLU'(z) at the pre-activation z = xhat gamma + beta when fused (4 pixels).
fn upstream4(dyv: vec4<f32>, xhat: vec4<f32>, gm: f32, bt: f32) -> vec4<f32> {
    if (p.fuse_silu == 1u) {
        let z = xhat * gm + bt;
        let s = sigmoid4(z);
        return dyv * s * (1.0 + z * (1.0 - s));
    }
    return dyv;
}

// The backward of group `gid` (see gn_fwd_window).
fn gn_bwd_window(j: u32, mine: bool, shift: u32, local: u32, gid: u32, lane: u32) {
    let cg = select(0u, p.c / p.groups, mine);
    let count = f32((p.c / p.groups) * p.hw);
    let base = shift + local * (p.c / p.groups) * p.hw;
    let g = min(gid, p.n * p.groups - 1u);
    let mean = stats[2u * g];
    let rstd = stats[2u * g + 1u];
    let c0 = (gid % p.groups) * (p.c / p.groups);
    let sample = gid / p.groups;
    var group_sums = vec2<f32>(0.0);
    for (var ci = 0u; ci < cg; ci++) {
        let ch = c0 + ci;
        let gm = gamma[ch];
        let bt = beta[ch];
        var part = vec2<f32>(0.0);
        for (var q = 4u * lane; q < p.hw; q += 32u) {
            let e = base + ci * p.hw + q;
            let xhat = (x4_at(j, e) - mean) * rstd;
            let up = select(vec4<f32>(0.0), upstream4(dy4_at(j, e), xhat, gm, bt), in_plane(q));
            part += vec2<f32>(dot(up, xhat), (up.x + up.y) + (up.z + up.w));
        }
        let total = subgroupAdd(part);
        if (lane == 0u) {
            param_part[sample * p.part_row + ch] = total.x;
            param_part[sample * p.part_row + p.beta_offset + ch] = total.y;
        }
        group_sums += vec2<f32>(total.y * gm, total.x * gm);
    }
    let mean_g = group_sums.x / count;
    let mean_gx = group_sums.y / count;
    let out_base = gid * (p.c / p.groups) * p.hw;
    for (var ci = 0u; ci < cg; ci++) {
        let gm = gamma[c0 + ci];
        let bt = beta[c0 + ci];
        for (var q = 4u * lane; q < p.hw; q += 32u) {
            let e = base + ci * p.hw + q;
            let xhat = (x4_at(j, e) - mean) * rstd;
            let up = upstream4(dy4_at(j, e), xhat, gm, bt);
            store4(out_base + ci * p.hw + q, rstd * (up * gm - mean_g - xhat * mean_gx), in_plane(q));
        }
    }
}

@compute @workgroup_size(8)
fn group_norm_bwd_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let j = wid.x / p.groups_per_window;
    let local = wid.x % p.groups_per_window;
    let gid = p.first_group + wid.x;
    gn_bwd_window(0u, j == 0u, p.shift0, local, gid, li);
    gn_bwd_window(1u, j == 1u, p.shift1, local, gid, li);
    gn_bwd_window(2u, j == 2u, p.shift2, local, gid, li);
    gn_bwd_window(3u, j == 3u, p.shift3, local, gid, li);
}
