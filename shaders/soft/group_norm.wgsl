// soft/group_norm.wgsl: the group-norm kernels of the software-adapter wing
// (ops::soft::group_norm), for CPU adapters; a GPU never runs these. The same bindings as
// group_norm.wgsl, with the wing's own parameters (mirrored by
// ops::soft::group_norm::SoftGroupNormParams). CPU twin: src/cpu/group_norm.rs.

struct SoftGroupNormParams {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    fuse_silu: u32,
    // group_norm_bwd*: floats per sample in `param_part`, and where the dbeta sums start in
    // it (dgamma's at 0).
    part_row: u32,
    beta_offset: u32,
    // group_norm.wgsl's fused dropout, which the wing's kernels never run (they see drop_p = 0).
    drop_p: f32,
    drop_seed: u32,
    drop_stream: u32,
    drop_offset: u32,
    // group_norm_*_sg (group_norm_subgroup.wgsl): the dispatch's first (sample, group), whole
    // groups per window, and where window j's first group starts in it (shift{j}).
    first_group: u32,
    groups_per_window: u32,
    _pad0: u32,
    _pad1: u32,
    shift0: u32,
    shift1: u32,
    shift2: u32,
    shift3: u32,
}

@group(0) @binding(0) var<uniform> p: SoftGroupNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
// Per-sample sums of g xhat (dgamma) and g (dbeta): one buffer, so that one reduction adds both
// over the samples.
@group(0) @binding(7) var<storage, read_write> param_part: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// ---- CPU adapters (lavapipe): one thread per (sample, group) and no barriers. On llvmpipe a
// workgroup barrier suspends and resumes every SIMD row of the workgroup, and the tree sums of
// group_norm.wgsl cost about ten barriers each (one per channel in the backward), which dominated these
// kernels. Each thread here sums its group channel by channel in a fixed order (deterministic;
// per-channel partial sums keep the rounding close to the tree's). Same outputs and formulas as
// group_norm_fwd / group_norm_bwd. Geometry: ceil(n * groups / 16) workgroups of 16 threads,
// split over x and y above 65,535 (x + 65,535 y).

fn cpu_group(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * 65535u) * 16u + lid;
}

@compute @workgroup_size(16)
fn group_norm_fwd_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ng = cpu_group(wid, lid);
    if (ng >= p.n * p.groups) {
        return;
    }
    let cg = p.c / p.groups;
    let count = f32(cg * p.hw);
    let base = ng * cg * p.hw;
    var total = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        let row = base + ci * p.hw;
        var acc = 0.0;
        for (var i = 0u; i < p.hw; i++) {
            acc += x[row + i];
        }
        total += acc;
    }
    let mean = total / count;
    var total2 = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        let row = base + ci * p.hw;
        var acc = 0.0;
        for (var i = 0u; i < p.hw; i++) {
            let d = x[row + i] - mean;
            acc += d * d;
        }
        total2 += acc;
    }
    let rstd = inverseSqrt(total2 / count + p.eps);
    stats[2u * ng] = mean;
    stats[2u * ng + 1u] = rstd;
    let c0 = (ng % p.groups) * cg;
    for (var ci = 0u; ci < cg; ci++) {
        let row = base + ci * p.hw;
        let gm = gamma[c0 + ci];
        let bt = beta[c0 + ci];
        for (var i = 0u; i < p.hw; i++) {
            var y = (x[row + i] - mean) * rstd * gm + bt;
            if (p.fuse_silu == 1u) {
                y = y * sigmoid(y);
            }
            out[row + i] = y;
        }
    }
}

// g = dy, times SiLU'(z) at the pre-activation z = xhat gamma + beta when fused.
fn upstream(idx: u32, xhat: f32, gm: f32, bt: f32) -> f32 {
    var g = dy[idx];
    if (p.fuse_silu == 1u) {
        let z = xhat * gm + bt;
        let s = sigmoid(z);
        g = g * s * (1.0 + z * (1.0 - s));
    }
    return g;
}

@compute @workgroup_size(16)
fn group_norm_bwd_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ng = cpu_group(wid, lid);
    if (ng >= p.n * p.groups) {
        return;
    }
    let cg = p.c / p.groups;
    let count = f32(cg * p.hw);
    let base = ng * cg * p.hw;
    let mean = stats[2u * ng];
    let rstd = stats[2u * ng + 1u];
    let c0 = (ng % p.groups) * cg;
    let sample = ng / p.groups;
    var group_sums = vec2<f32>(0.0);
    for (var ci = 0u; ci < cg; ci++) {
        let ch = c0 + ci;
        let gm = gamma[ch];
        let bt = beta[ch];
        let row = base + ci * p.hw;
        var part = vec2<f32>(0.0);
        for (var i = 0u; i < p.hw; i++) {
            let xhat = (x[row + i] - mean) * rstd;
            let g = upstream(row + i, xhat, gm, bt);
            part += vec2<f32>(g * xhat, g);
        }
        param_part[sample * p.part_row + ch] = part.x;
        param_part[sample * p.part_row + p.beta_offset + ch] = part.y;
        group_sums += vec2<f32>(part.y * gm, part.x * gm);
    }
    let mean_g = group_sums.x / count;
    let mean_gx = group_sums.y / count;
    for (var ci = 0u; ci < cg; ci++) {
        let ch = c0 + ci;
        let gm = gamma[ch];
        let bt = beta[ch];
        let row = base + ci * p.hw;
        for (var i = 0u; i < p.hw; i++) {
            let xhat = (x[row + i] - mean) * rstd;
            let g = upstream(row + i, xhat, gm, bt);
            out[row + i] = rstd * (g * gm - mean_g - xhat * mean_gx);
        }
    }
}
