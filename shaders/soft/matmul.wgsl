// soft/matmul.wgsl: the matmul kernels of the software-adapter wing (ops::soft::matmul), for
// CPU adapters. Built as one module with matmul.wgsl prepended (its parameters and bindings); a
// GPU never runs these. CPU twin: src/cpu/matmul.rs.

// matmul_fwd_direct: the same product without workgroup memory or barriers, for CPU adapters
// (lavapipe) where "shared" memory is ordinary memory and every barrier is a coroutine switch.
// A thread owns a 4 x 8 block held in eight vec4 accumulators (named, not an array, so no
// compiler needs to prove the indexing static to keep them in registers). Workgroups of 16 x 4
// threads cover 16 rows x 128 columns; thread (tx, ty) owns rows ty + 4 i (i < 4) and columns
// tx + 16 j (j < 8), so neighbouring threads read neighbouring columns of B.
fn direct_b_row(base: u32, k: u32, cols: array<u32, 8>, half: u32) -> vec4<f32> {
    let o = base + k * p.b_row;
    let j = half * 4u;
    return vec4<f32>(b[o + cols[j]], b[o + cols[j + 1u]], b[o + cols[j + 2u]], b[o + cols[j + 3u]]);
}

// c[row, col] = v where the element exists.
fn store_c(row: u32, col: u32, c_base: u32, v: f32) {
    if (row < p.m && col < p.n) {
        c[c_base + row * p.n + col] = v;
    }
}

// bias[col] for the columns col0 + stride j (j < 4); columns past n (never stored) read column 0.
// Only the _bias entry points call it, so only their layouts hold the bias binding.
fn bias4(col0: u32, stride: u32) -> vec4<f32> {
    var v: vec4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + stride * j;
        v[j] = bias[select(0u, col, col < p.n)];
    }
    return v;
}

fn direct_store(row: u32, col0: u32, c_base: u32, lo: vec4<f32>, hi: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store_c(row, col0 + 16u * j, c_base, lo[j]);
        store_c(row, col0 + 16u * (j + 4u), c_base, hi[j]);
    }
}

// A matmul_fwd_direct thread's accumulators: rows ty + 4 i in ci, columns tx + 16 j in ci.a
// (j < 4) and ci.b (j >= 4).
struct DirectBlock {
    c0a: vec4<f32>,
    c0b: vec4<f32>,
    c1a: vec4<f32>,
    c1b: vec4<f32>,
    c2a: vec4<f32>,
    c2b: vec4<f32>,
    c3a: vec4<f32>,
    c3b: vec4<f32>,
}

fn direct_block(wid: vec3<u32>, lid: vec3<u32>) -> DirectBlock {
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    let a_base = wid.z * p.a_batch;
    let b_base = wid.z * p.b_batch;
    // Out-of-range rows and columns read row/column 0 and are never stored.
    let a0 = a_base + select(0u, row0, row0 < p.m) * p.a_row;
    let a1 = a_base + select(0u, row0 + 4u, row0 + 4u < p.m) * p.a_row;
    let a2 = a_base + select(0u, row0 + 8u, row0 + 8u < p.m) * p.a_row;
    let a3 = a_base + select(0u, row0 + 12u, row0 + 12u < p.m) * p.a_row;
    var cols: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + 16u * j;
        cols[j] = select(0u, col, col < p.n) * p.b_col;
    }
    var c0a = vec4<f32>(0.0);
    var c0b = vec4<f32>(0.0);
    var c1a = vec4<f32>(0.0);
    var c1b = vec4<f32>(0.0);
    var c2a = vec4<f32>(0.0);
    var c2b = vec4<f32>(0.0);
    var c3a = vec4<f32>(0.0);
    var c3b = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ak = k * p.a_col;
        let blo = direct_b_row(b_base, k, cols, 0u);
        let bhi = direct_b_row(b_base, k, cols, 1u);
        let v0 = a[a0 + ak];
        let v1 = a[a1 + ak];
        let v2 = a[a2 + ak];
        let v3 = a[a3 + ak];
        c0a = fma(vec4<f32>(v0), blo, c0a);
        c0b = fma(vec4<f32>(v0), bhi, c0b);
        c1a = fma(vec4<f32>(v1), blo, c1a);
        c1b = fma(vec4<f32>(v1), bhi, c1b);
        c2a = fma(vec4<f32>(v2), blo, c2a);
        c2b = fma(vec4<f32>(v2), bhi, c2b);
        c3a = fma(vec4<f32>(v3), blo, c3a);
        c3b = fma(vec4<f32>(v3), bhi, c3b);
    }
    return DirectBlock(c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b);
}

fn direct_store_block(wid: vec3<u32>, lid: vec3<u32>, r: DirectBlock) {
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    let c_base = wid.z * p.m * p.n;
    direct_store(row0, col0, c_base, r.c0a, r.c0b);
    direct_store(row0 + 4u, col0, c_base, r.c1a, r.c1b);
    direct_store(row0 + 8u, col0, c_base, r.c2a, r.c2b);
    direct_store(row0 + 12u, col0, c_base, r.c3a, r.c3b);
}

@compute @workgroup_size(16, 4, 1)
fn matmul_fwd_direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    direct_store_block(wid, lid, direct_block(wid, lid));
}

// matmul_fwd_direct_bias: the same plus bias[col].
@compute @workgroup_size(16, 4, 1)
fn matmul_fwd_direct_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    var r = direct_block(wid, lid);
    let col0 = wid.x * 128u + lid.x;
    let lo = bias4(col0, 16u);
    let hi = bias4(col0 + 64u, 16u);
    r.c0a += lo;
    r.c0b += hi;
    r.c1a += lo;
    r.c1b += hi;
    r.c2a += lo;
    r.c2b += hi;
    r.c3a += lo;
    r.c3b += hi;
    direct_store_block(wid, lid, r);
}

// matmul_fwd_ubo: the product for CPU adapters with A and B in 64 KiB uniform windows `aw` and
// `bw` (src/ops/window.rs says why), for operands whose batch entries fit a window: a dispatch
// covers the batch entries [z0, z0 + grid z) whose A and B lie in its windows. A thread owns
// rows ty + 8 i and columns tx + 8 j (i, j < 4) in four vec4 accumulators; the 8 lanes of a
// SIMD batch share rows and read consecutive columns. Workgroups of 8 x 8 threads cover 32 x
// 32 outputs, so the small products of attention (49 x 49) waste fewer lanes than
// matmul_fwd_direct's 16 x 128. Grid (ceil(n / 32), ceil(m / 32), entries).
@group(0) @binding(5) var<uniform> aw: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> bw: array<vec4<f32>, 4096>;

fn a_at(e: u32) -> f32 {
    return aw[e >> 2u][e & 3u];
}

fn b_at(e: u32) -> f32 {
    return bw[e >> 2u][e & 3u];
}

fn ubo_store(row: u32, col0: u32, c_base: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store_c(row, col0 + 8u * j, c_base, v[j]);
    }
}

// A matmul_fwd_ubo thread's accumulators: row ty + 8 i in ci, columns tx + 8 j.
struct UboBlock {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
}

fn ubo_block(wid: vec3<u32>, lid: vec3<u32>) -> UboBlock {
    let row0 = wid.y * 32u + lid.y;
    let col0 = wid.x * 32u + lid.x;
    let a_base = p.a_off + wid.z * p.a_batch;
    let b_base = p.b_off + wid.z * p.b_batch;
    // Out-of-range rows and columns read row/column 0 and are never stored.
    let a0 = a_base + select(0u, row0, row0 < p.m) * p.a_row;
    let a1 = a_base + select(0u, row0 + 8u, row0 + 8u < p.m) * p.a_row;
    let a2 = a_base + select(0u, row0 + 16u, row0 + 16u < p.m) * p.a_row;
    let a3 = a_base + select(0u, row0 + 24u, row0 + 24u < p.m) * p.a_row;
    let b0 = b_base + select(0u, col0, col0 < p.n) * p.b_col;
    let b1 = b_base + select(0u, col0 + 8u, col0 + 8u < p.n) * p.b_col;
    let b2 = b_base + select(0u, col0 + 16u, col0 + 16u < p.n) * p.b_col;
    let b3 = b_base + select(0u, col0 + 24u, col0 + 24u < p.n) * p.b_col;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ak = k * p.a_col;
        let bk = k * p.b_row;
        let bv = vec4<f32>(b_at(b0 + bk), b_at(b1 + bk), b_at(b2 + bk), b_at(b3 + bk));
        c0 = fma(vec4<f32>(a_at(a0 + ak)), bv, c0);
        c1 = fma(vec4<f32>(a_at(a1 + ak)), bv, c1);
        c2 = fma(vec4<f32>(a_at(a2 + ak)), bv, c2);
        c3 = fma(vec4<f32>(a_at(a3 + ak)), bv, c3);
    }
    return UboBlock(c0, c1, c2, c3);
}

fn ubo_store_block(wid: vec3<u32>, lid: vec3<u32>, r: UboBlock) {
    let row0 = wid.y * 32u + lid.y;
    let col0 = wid.x * 32u + lid.x;
    let c_base = p.c_off + wid.z * p.m * p.n;
    ubo_store(row0, col0, c_base, r.c0);
    ubo_store(row0 + 8u, col0, c_base, r.c1);
    ubo_store(row0 + 16u, col0, c_base, r.c2);
    ubo_store(row0 + 24u, col0, c_base, r.c3);
}

@compute @workgroup_size(8, 8, 1)
fn matmul_fwd_ubo(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    ubo_store_block(wid, lid, ubo_block(wid, lid));
}

// matmul_fwd_ubo_bias: the same plus bias[col].
@compute @workgroup_size(8, 8, 1)
fn matmul_fwd_ubo_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    var r = ubo_block(wid, lid);
    let b = bias4(wid.x * 32u + lid.x, 8u);
    r.c0 += b;
    r.c1 += b;
    r.c2 += b;
    r.c3 += b;
    ubo_store_block(wid, lid, r);
}
