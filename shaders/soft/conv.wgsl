// soft/conv.wgsl: the convolution kernels of the software-adapter wing (ops::soft::conv), for
// CPU adapters such as lavapipe, where every barrier is a coroutine switch, workgroup memory buys
// nothing, and a storage load whose address differs between lanes may cost a loop over the
// lanes. The same bindings as conv.wgsl (x, weight, bias, dy, out), with the wing's own
// parameters, mirrored by ops::soft::conv::SoftConvParams; a GPU never runs these. CPU twin:
// src/cpu/conv.rs.

struct SoftConvParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kernel: u32,
    stride: u32,
    padding: u32,
    h_out: u32,
    w_out: u32,
    has_bias: u32,
    // The weight gradients: (n, p) columns (direct) or output rows (blocked) per chunk.
    chunk: u32,
    // conv2d_pack_weight: 1 packs the stride-1 input-gradient convolution's weights.
    flip: u32,
    // conv2d_pack_weight: output channels per packed block (8; 16 or 32 for the *_ubo kernels).
    pack_width: u32,
    // The *_ubo kernels: the dispatch's block of output channels, its input channels
    // [ci_begin, ci_end), and whether it adds to the output of the previous chunk (1).
    block: u32,
    ci_begin: u32,
    ci_end: u32,
    accumulate: u32,
    // conv2d_pad_planes and the *_ubo weight gradients: floats per padded dy plane.
    plane_stride: u32,
    // conv2d_pad_planes: floats per padded row, and the zero rows and columns before the first
    // row and column of the plane. conv2d_bwd_w_k3s1_ubo: the row stride of its dy planes.
    row_stride: u32,
    border: u32,
    // conv2d_bwd_w_k3s1_ubo: the window's input channels [x_begin, x_end) of sample `block`,
    // and the floats per padded x plane (x_row floats per row; conv2d_fwd_k3s1_sg_x's x too).
    x_begin: u32,
    x_end: u32,
    x_plane_stride: u32,
    x_row: u32,
    // conv2d_bwd_w_k3s1_sg: floats per row of the partial sums, and where the bias gradient's
    // partial sums start in a row (the weight gradient's start at 0).
    partial_row: u32,
    bias_offset: u32,
    // conv2d_fwd_k3s1_sg_x (conv_subgroup.wgsl): input channels per x window, windows per
    // sample, the dispatch's first sample, and where each window's first plane starts in it
    // (windows start at aligned floats). It reads x_row and x_plane_stride too.
    x_window_planes: u32,
    x_windows_per_sample: u32,
    sample: u32,
    x_shift0: u32,
    x_shift1: u32,
    x_shift2: u32,
    x_shift3: u32,
    // conv2d_bwd_w_k3s1_sg (conv_subgroup.wgsl): samples per dispatch (1 to 4), each in its own
    // x and dy window.
    window_samples: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: SoftConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// ---- Direct kernels: no workgroup memory and no barriers, as matmul_fwd_direct. A thread owns 4 rows x 8 columns of the GEMM (rows ty + 4 i, columns
// tx + 16 j) in eight vec4 accumulators; per-column pixel coordinates are computed once, and
// the tap (ci or co, ky, kx) of each K step is the same for every thread. Workgroups of 16 x 4
// threads cover 16 rows x 128 columns. Same outputs as the tiled entry points above.

struct Columns {
    base: array<u32, 8>,
    y0: array<i32, 8>,
    x0: array<i32, 8>,
    ok: array<bool, 8>,
}

// Pixel columns (n, oy, ox) of the forward / weight-gradient GEMM, as input coordinates.
fn forward_columns(col0: u32, cols: u32) -> Columns {
    var c: Columns;
    let hw_out = p.h_out * p.w_out;
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + 16u * j;
        c.ok[j] = col < cols;
        let cc = select(0u, col, col < cols);
        let pix = cc % hw_out;
        c.base[j] = (cc / hw_out) * p.c_in * p.h * p.w;
        c.y0[j] = i32((pix / p.w_out) * p.stride) - i32(p.padding);
        c.x0[j] = i32((pix % p.w_out) * p.stride) - i32(p.padding);
    }
    return c;
}

fn gather_x4(c: Columns, half: u32, ci: u32, ky: u32, kx: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        let j = half * 4u + q;
        let iy = c.y0[j] + i32(ky);
        let ix = c.x0[j] + i32(kx);
        if (c.ok[j] && iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
            v[q] = x[c.base[j] + (ci * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    return v;
}

struct Acc {
    r0a: vec4<f32>, r0b: vec4<f32>,
    r1a: vec4<f32>, r1b: vec4<f32>,
    r2a: vec4<f32>, r2b: vec4<f32>,
    r3a: vec4<f32>, r3b: vec4<f32>,
}

fn acc_add(acc: ptr<function, Acc>, a: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>) {
    (*acc).r0a = fma(vec4<f32>(a.x), lo, (*acc).r0a);
    (*acc).r0b = fma(vec4<f32>(a.x), hi, (*acc).r0b);
    (*acc).r1a = fma(vec4<f32>(a.y), lo, (*acc).r1a);
    (*acc).r1b = fma(vec4<f32>(a.y), hi, (*acc).r1b);
    (*acc).r2a = fma(vec4<f32>(a.z), lo, (*acc).r2a);
    (*acc).r2b = fma(vec4<f32>(a.z), hi, (*acc).r2b);
    (*acc).r3a = fma(vec4<f32>(a.w), lo, (*acc).r3a);
    (*acc).r3b = fma(vec4<f32>(a.w), hi, (*acc).r3b);
}

fn acc_get(acc: Acc, i: u32, j: u32) -> f32 {
    var lo: vec4<f32>;
    var hi: vec4<f32>;
    switch i {
        case 0u: { lo = acc.r0a; hi = acc.r0b; }
        case 1u: { lo = acc.r1a; hi = acc.r1b; }
        case 2u: { lo = acc.r2a; hi = acc.r2b; }
        default: { lo = acc.r3a; hi = acc.r3b; }
    }
    return select(hi[j % 4u], lo[j % 4u], j < 4u);
}

fn acc_zero() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z);
}

// The accumulators of a conv2d_fwd_direct thread: rows (output channels) row0 + 4 i.
fn fwd_direct_acc(wid: vec3<u32>, lid: vec3<u32>) -> Acc {
    let kk2 = p.kernel * p.kernel;
    let k_total = p.c_in * kk2;
    let cols = p.n * p.h_out * p.w_out;
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    let c = forward_columns(col0, cols);
    // Rows past c_out read row 0 and are never stored.
    var w_rows: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + 4u * i;
        w_rows[i] = select(0u, co, co < p.c_out) * k_total;
    }
    var acc = acc_zero();
    for (var kk = 0u; kk < k_total; kk++) {
        let ci = kk / kk2;
        let ky = (kk % kk2) / p.kernel;
        let kx = kk % p.kernel;
        let a = vec4<f32>(weight[w_rows.x + kk], weight[w_rows.y + kk], weight[w_rows.z + kk], weight[w_rows.w + kk]);
        acc_add(&acc, a, gather_x4(c, 0u, ci, ky, kx), gather_x4(c, 1u, ci, ky, kx));
    }
    return acc;
}

fn fwd_direct_store(wid: vec3<u32>, lid: vec3<u32>, acc: Acc) {
    let cols = p.n * p.h_out * p.w_out;
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    let hw_out = p.h_out * p.w_out;
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + 4u * i;
        for (var j = 0u; j < 8u; j++) {
            let col = col0 + 16u * j;
            if (co < p.c_out && col < cols) {
                out[((col / hw_out) * p.c_out + co) * hw_out + col % hw_out] = acc_get(acc, i, j);
            }
        }
    }
}

@compute @workgroup_size(16, 4, 1)
fn conv2d_fwd_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    fwd_direct_store(wid, lid, fwd_direct_acc(wid, lid));
}

// conv2d_fwd_direct_bias: the same plus bias[co] (rows past c_out read channel 0, not stored).
@compute @workgroup_size(16, 4, 1)
fn conv2d_fwd_direct_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = fwd_direct_acc(wid, lid);
    let row0 = wid.y * 16u + lid.y;
    var b: vec4<f32>;
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + 4u * i;
        b[i] = bias[select(0u, co, co < p.c_out)];
    }
    acc.r0a += vec4<f32>(b.x);
    acc.r0b += vec4<f32>(b.x);
    acc.r1a += vec4<f32>(b.y);
    acc.r1b += vec4<f32>(b.y);
    acc.r2a += vec4<f32>(b.z);
    acc.r2b += vec4<f32>(b.z);
    acc.r3a += vec4<f32>(b.w);
    acc.r3b += vec4<f32>(b.w);
    fwd_direct_store(wid, lid, acc);
}

@compute @workgroup_size(16, 4, 1)
fn conv2d_bwd_x_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kk2 = p.kernel * p.kernel;
    let k_total = p.c_out * kk2;
    let hw = p.h * p.w;
    let cols = p.n * hw;
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    // Columns are input pixels (n, iy, ix): the output pixel under tap (ky, kx) is
    // ((iy + pad - ky) / s, (ix + pad - kx) / s) where that divides exactly.
    var base: array<u32, 8>;
    var ty: array<i32, 8>;
    var tx: array<i32, 8>;
    var ok: array<bool, 8>;
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + 16u * j;
        ok[j] = col < cols;
        let cc = select(0u, col, col < cols);
        base[j] = (cc / hw) * p.c_out * p.h_out * p.w_out;
        ty[j] = i32((cc % hw) / p.w) + i32(p.padding);
        tx[j] = i32(cc % p.w) + i32(p.padding);
    }
    var w_rows: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        let ci = row0 + 4u * i;
        w_rows[i] = select(0u, ci, ci < p.c_in) * kk2;
    }
    let s = i32(p.stride);
    var acc = acc_zero();
    for (var kk = 0u; kk < k_total; kk++) {
        let co = kk / kk2;
        let tap = kk % kk2;
        let ky = i32(tap / p.kernel);
        let kx = i32(tap % p.kernel);
        let wo = co * p.c_in * kk2 + tap;
        let a = vec4<f32>(weight[wo + w_rows.x], weight[wo + w_rows.y], weight[wo + w_rows.z], weight[wo + w_rows.w]);
        var b: array<vec4<f32>, 2>;
        for (var j = 0u; j < 8u; j++) {
            let yy = ty[j] - ky;
            let xx = tx[j] - kx;
            var v = 0.0;
            if (ok[j] && yy >= 0 && xx >= 0 && yy % s == 0 && xx % s == 0) {
                let oy = u32(yy / s);
                let ox = u32(xx / s);
                if (oy < p.h_out && ox < p.w_out) {
                    v = dy[base[j] + (co * p.h_out + oy) * p.w_out + ox];
                }
            }
            b[j / 4u][j % 4u] = v;
        }
        acc_add(&acc, a, b[0], b[1]);
    }
    for (var i = 0u; i < 4u; i++) {
        let ci = row0 + 4u * i;
        for (var j = 0u; j < 8u; j++) {
            let col = col0 + 16u * j;
            if (ci < p.c_in && col < cols) {
                out[((col / hw) * p.c_in + ci) * hw + col % hw] = acc_get(acc, i, j);
            }
        }
    }
}

// Weight gradient: rows co, columns the taps (ci, ky, kx), reduction over the z-th chunk of
// output pixels (n, oy, ox).
@compute @workgroup_size(16, 4, 1)
fn conv2d_bwd_w_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kk2 = p.kernel * p.kernel;
    let k_cols = p.c_in * kk2;
    let hw_out = p.h_out * p.w_out;
    let np_total = p.n * hw_out;
    let row0 = wid.y * 16u + lid.y;
    let col0 = wid.x * 128u + lid.x;
    let np_begin = wid.z * p.chunk;
    let np_end = min(np_begin + p.chunk, np_total);
    // Per column: the tap's input-channel offset and (ky, kx).
    var cbase: array<u32, 8>;
    var cky: array<i32, 8>;
    var ckx: array<i32, 8>;
    var ok: array<bool, 8>;
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + 16u * j;
        ok[j] = col < k_cols;
        let cc = select(0u, col, col < k_cols);
        cbase[j] = (cc / kk2) * p.h * p.w;
        cky[j] = i32((cc % kk2) / p.kernel);
        ckx[j] = i32(cc % p.kernel);
    }
    var dy_rows: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + 4u * i;
        dy_rows[i] = select(0u, co, co < p.c_out) * hw_out;
    }
    var acc = acc_zero();
    for (var np = np_begin; np < np_end; np++) {
        let n = np / hw_out;
        let pix = np % hw_out;
        let dy_base = n * p.c_out * hw_out + pix;
        let a = vec4<f32>(dy[dy_base + dy_rows.x], dy[dy_base + dy_rows.y], dy[dy_base + dy_rows.z], dy[dy_base + dy_rows.w]);
        let y0 = i32((pix / p.w_out) * p.stride) - i32(p.padding);
        let x0 = i32((pix % p.w_out) * p.stride) - i32(p.padding);
        let x_base = n * p.c_in * p.h * p.w;
        var b: array<vec4<f32>, 2>;
        for (var j = 0u; j < 8u; j++) {
            let iy = y0 + cky[j];
            let ix = x0 + ckx[j];
            var v = 0.0;
            if (ok[j] && iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
                v = x[x_base + cbase[j] + u32(iy) * p.w + u32(ix)];
            }
            b[j / 4u][j % 4u] = v;
        }
        acc_add(&acc, a, b[0], b[1]);
    }
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + 4u * i;
        for (var j = 0u; j < 8u; j++) {
            let col = col0 + 16u * j;
            if (co < p.c_out && col < k_cols) {
                out[(wid.z * p.c_out + co) * k_cols + col] = acc_get(acc, i, j);
            }
        }
    }
}

// conv2d_flip_weight: out[ci, co, ky, kx] = weight[co, ci, k - 1 - ky, k - 1 - kx]. For stride 1
// the input gradient is the forward convolution of dy with these weights and padding
// k - 1 - padding, which lets CPU adapters reuse the fast direct forward kernel.
// Geometry: Gpu::groups_1d(weight elements).
@compute @workgroup_size(WG)
fn conv2d_flip_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lidx: u32) {
    let i = linear_index(wid, nwg, lidx);
    let kk2 = p.kernel * p.kernel;
    if (i < p.c_out * p.c_in * kk2) {
        let ci = i / (p.c_out * kk2);
        let co = (i / kk2) % p.c_out;
        let tap = i % kk2;
        let flipped = kk2 - 1u - tap;
        out[i] = weight[(co * p.c_in + ci) * kk2 + flipped];
    }
}

// ---- Register-blocked kernels for CPU adapters (lavapipe), 3x3 and 1x1 taps. On llvmpipe a
// thread is one lane of an 8-wide SIMD loop, and a storage load whose address differs between
// lanes is a scalar loop over the lanes: the cost is the number of loaded elements per lane, not
// the FMAs. So a thread owns PX = 4 consecutive output pixels of one row, in NB = 4 samples,
// times the CB = 8 output channels of its workgroup's channel block (128 accumulators): per
// input row (ci, ky) it loads 3 + PX (stride 2: 5 + 2 PX) input pixels per sample and uses each
// for up to 3 taps x 8 channels, and each weight once for 4 pixels x 4 samples. The weights of
// the channel block come packed by conv2d_pack_weight and are staged in workgroup memory, where
// every lane reads the same address (~25% faster than reading them from the storage buffer on
// Mesa 25.0.7, which loads them once and broadcasts; no difference on 22.3.6). Padding is a
// select on a clamped, always-valid load; no division in the loop. Measured alternatives: 8
// samples per thread (256 accumulators) is 10-15% faster on Mesa 22.3.6 only and takes LLVM
// ~26 s instead of ~9 s to compile per kernel; 16 channels x 2 samples is 12% faster on Mesa 25
// and 20% slower on 22.3.6; a runtime-bounded (not unrolled) ky loop is 2x slower.
// Geometry: workgroups of 64 threads over (sample block, oy, pixel group), grid
// (ceil(items / 64), ceil(c_out / 8), 1), items = ceil(n / 4) * h_out * ceil(w_out / 4)
// (1x1: ceil(n / 4) * ceil(h w / 4)).

@group(0) @binding(6) var<storage, read> wpack: array<vec4<f32>>;

const PX: u32 = 4u;
const CB: u32 = 8u;
const NB: u32 = 4u;
// Staged weights: CB channels x (ci, tap) as vec4 pairs, in chunks of input channels.
const WSH: u32 = 576u;
var<workgroup> wsh: array<vec4<f32>, 576>;

struct Acc8 {
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
    c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
}

fn acc8_zero() -> Acc8 {
    let z = vec4<f32>(0.0);
    return Acc8(z, z, z, z, z, z, z, z);
}

// acc[j] += w_j * xv for the 8 channels j = (wa, wb) of one tap; xv: the tap's input at 4 pixels.
fn acc8_fma(acc: ptr<function, Acc8>, wa: vec4<f32>, wb: vec4<f32>, xv: vec4<f32>) {
    (*acc).c0 = fma(vec4<f32>(wa.x), xv, (*acc).c0);
    (*acc).c1 = fma(vec4<f32>(wa.y), xv, (*acc).c1);
    (*acc).c2 = fma(vec4<f32>(wa.z), xv, (*acc).c2);
    (*acc).c3 = fma(vec4<f32>(wa.w), xv, (*acc).c3);
    (*acc).c4 = fma(vec4<f32>(wb.x), xv, (*acc).c4);
    (*acc).c5 = fma(vec4<f32>(wb.y), xv, (*acc).c5);
    (*acc).c6 = fma(vec4<f32>(wb.z), xv, (*acc).c6);
    (*acc).c7 = fma(vec4<f32>(wb.w), xv, (*acc).c7);
}

fn acc8_get(acc: Acc8, j: u32) -> vec4<f32> {
    switch j {
        case 0u: { return acc.c0; }
        case 1u: { return acc.c1; }
        case 2u: { return acc.c2; }
        case 3u: { return acc.c3; }
        case 4u: { return acc.c4; }
        case 5u: { return acc.c5; }
        case 6u: { return acc.c6; }
        default: { return acc.c7; }
    }
}

// Stores channels cb * 8 + j (j < 8, below c_total) of the n_valid (at most 4) pixels from flat
// pixel pix0 of sample n, in an [n, c_total, hw_total] tensor.
fn store8(acc: Acc8, n: u32, cb: u32, pix0: u32, n_valid: u32, valid: bool, c_total: u32, hw_total: u32) {
    for (var j = 0u; j < CB; j++) {
        let co = cb * CB + j;
        let v = acc8_get(acc, j);
        for (var q = 0u; q < PX; q++) {
            if (valid && co < c_total && q < n_valid) {
                out[(n * c_total + co) * hw_total + pix0 + q] = v[q];
            }
        }
    }
}

// What a thread of the register-blocked and window forward kernels ends with: four 8-channel
// accumulators and where they go. The kernel bodies return it and the entry points store it,
// the `_bias` ones after adding the bias, so only their layouts hold the bias binding. Blocked
// kernels: a_i is sample n + i of block cb. Rows2 kernels: a0, a1 are blocks cb, cb + 1 at
// pixel pix0 (row oy), a2, a3 the same one row down. 1x1 window kernels: a_i is block cb + i.
struct Fwd4 {
    a0: Acc8, a1: Acc8, a2: Acc8, a3: Acc8,
    n: u32,
    cb: u32,
    pix0: u32,
    n_valid: u32,
    oy: u32,
    valid: bool,
}

// acc + bias[cb * 8 + j] on channel j (channels past c_out read channel 0 and are never stored).
fn acc8_bias(a: Acc8, cb: u32) -> Acc8 {
    var b: array<f32, 8>;
    for (var j = 0u; j < CB; j++) {
        let co = cb * CB + j;
        b[j] = bias[select(0u, co, co < p.c_out)];
    }
    return Acc8(a.c0 + vec4<f32>(b[0]), a.c1 + vec4<f32>(b[1]), a.c2 + vec4<f32>(b[2]), a.c3 + vec4<f32>(b[3]),
                a.c4 + vec4<f32>(b[4]), a.c5 + vec4<f32>(b[5]), a.c6 + vec4<f32>(b[6]), a.c7 + vec4<f32>(b[7]));
}

fn store_blocked(r: Fwd4) {
    let hw_out = p.h_out * p.w_out;
    store8(r.a0, r.n, r.cb, r.pix0, r.n_valid, r.valid && r.n < p.n, p.c_out, hw_out);
    store8(r.a1, r.n + 1u, r.cb, r.pix0, r.n_valid, r.valid && r.n + 1u < p.n, p.c_out, hw_out);
    store8(r.a2, r.n + 2u, r.cb, r.pix0, r.n_valid, r.valid && r.n + 2u < p.n, p.c_out, hw_out);
    store8(r.a3, r.n + 3u, r.cb, r.pix0, r.n_valid, r.valid && r.n + 3u < p.n, p.c_out, hw_out);
}

fn blocked_bias(r: Fwd4) -> Fwd4 {
    var o = r;
    o.a0 = acc8_bias(r.a0, r.cb);
    o.a1 = acc8_bias(r.a1, r.cb);
    o.a2 = acc8_bias(r.a2, r.cb);
    o.a3 = acc8_bias(r.a3, r.cb);
    return o;
}

// Copies wpack[begin, begin + len) to wsh; len <= WSH. The first barrier keeps the previous
// chunk alive until every thread is done with it.
fn stage_weights(li: u32, begin: u32, len: u32) {
    workgroupBarrier();
    for (var e = li; e < len; e += 64u) {
        wsh[e] = wpack[begin + e];
    }
    workgroupBarrier();
}

// x[row + ix] for 0 <= ix < w, else 0 (the load is clamped into the row and its value dropped).
fn xat(row: u32, ix: i32, row_ok: bool) -> f32 {
    let ok = row_ok && ix >= 0 && ix < i32(p.w);
    return select(0.0, x[row + u32(clamp(ix, 0, i32(p.w) - 1))], ok);
}

// The 8-channel weights (wa, wb) of taps kx = 0, 1, 2 of one kernel row.
struct Taps3 { a0: vec4<f32>, b0: vec4<f32>, a1: vec4<f32>, b1: vec4<f32>, a2: vec4<f32>, b2: vec4<f32> }

// The inputs of 4 output pixels under taps kx = 0, 1, 2 of one row.
struct Row3 { k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32> }

fn row_s1(row: u32, ix0: i32, row_ok: bool) -> Row3 {
    let x0 = xat(row, ix0, row_ok);
    let x1 = xat(row, ix0 + 1, row_ok);
    let x2 = xat(row, ix0 + 2, row_ok);
    let x3 = xat(row, ix0 + 3, row_ok);
    let x4 = xat(row, ix0 + 4, row_ok);
    let x5 = xat(row, ix0 + 5, row_ok);
    return Row3(vec4<f32>(x0, x1, x2, x3), vec4<f32>(x1, x2, x3, x4), vec4<f32>(x2, x3, x4, x5));
}

fn row_s2(row: u32, ix0: i32, row_ok: bool) -> Row3 {
    let x0 = xat(row, ix0, row_ok);
    let x1 = xat(row, ix0 + 1, row_ok);
    let x2 = xat(row, ix0 + 2, row_ok);
    let x3 = xat(row, ix0 + 3, row_ok);
    let x4 = xat(row, ix0 + 4, row_ok);
    let x5 = xat(row, ix0 + 5, row_ok);
    let x6 = xat(row, ix0 + 6, row_ok);
    let x7 = xat(row, ix0 + 7, row_ok);
    let x8 = xat(row, ix0 + 8, row_ok);
    return Row3(vec4<f32>(x0, x2, x4, x6), vec4<f32>(x1, x3, x5, x7), vec4<f32>(x2, x4, x6, x8));
}

fn taps3(acc: ptr<function, Acc8>, w: Taps3, r: Row3) {
    acc8_fma(acc, w.a0, w.b0, r.k0);
    acc8_fma(acc, w.a1, w.b1, r.k1);
    acc8_fma(acc, w.a2, w.b2, r.k2);
}

fn fwd_k3s1_cpu(wid: vec3<u32>, li: u32) -> Fwd4 {
    let gw = (p.w_out + PX - 1u) / PX;
    let items = ((p.n + NB - 1u) / NB) * p.h_out * gw;
    let item = wid.x * 64u + li;
    let valid = item < items;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = (it / gw) % p.h_out;
    let n0 = (it / (gw * p.h_out)) * NB;
    let cb = wid.y;
    let ix0 = i32(ox0) - i32(p.padding);
    let hw = p.h * p.w;
    let chw = p.c_in * hw;
    // Samples past the batch read the last one and are never stored.
    var a0 = acc8_zero();
    let s0 = min(n0, p.n - 1u) * chw;
    var a1 = acc8_zero();
    let s1 = min(n0 + 1u, p.n - 1u) * chw;
    var a2 = acc8_zero();
    let s2 = min(n0 + 2u, p.n - 1u) * chw;
    var a3 = acc8_zero();
    let s3 = min(n0 + 3u, p.n - 1u) * chw;
    let ci_chunk = WSH / 18u;
    for (var c0 = 0u; c0 < p.c_in; c0 += ci_chunk) {
        let c1 = min(c0 + ci_chunk, p.c_in);
        stage_weights(li, (cb * p.c_in + c0) * 18u, (c1 - c0) * 18u);
        var wi = 0u;
        for (var ci = c0; ci < c1; ci++) {
            let plane = ci * hw;
            for (var ky = 0u; ky < 3u; ky++) {
                let iy = i32(oy + ky) - i32(p.padding);
                let row_ok = iy >= 0 && iy < i32(p.h);
                let row = plane + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                let w = Taps3(wsh[wi], wsh[wi + 1u], wsh[wi + 2u], wsh[wi + 3u], wsh[wi + 4u], wsh[wi + 5u]);
                wi += 6u;
                taps3(&a0, w, row_s1(s0 + row, ix0, row_ok));
                taps3(&a1, w, row_s1(s1 + row, ix0, row_ok));
                taps3(&a2, w, row_s1(s2 + row, ix0, row_ok));
                taps3(&a3, w, row_s1(s3 + row, ix0, row_ok));
            }
        }
    }
    let pix0 = oy * p.w_out + ox0;
    return Fwd4(a0, a1, a2, a3, n0, cb, pix0, p.w_out - ox0, oy, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(fwd_k3s1_cpu(wid, li));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_cpu_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(blocked_bias(fwd_k3s1_cpu(wid, li)));
}

fn fwd_k3s2_cpu(wid: vec3<u32>, li: u32) -> Fwd4 {
    let gw = (p.w_out + PX - 1u) / PX;
    let items = ((p.n + NB - 1u) / NB) * p.h_out * gw;
    let item = wid.x * 64u + li;
    let valid = item < items;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = (it / gw) % p.h_out;
    let n0 = (it / (gw * p.h_out)) * NB;
    let cb = wid.y;
    let ix0 = i32(ox0 * 2u) - i32(p.padding);
    let hw = p.h * p.w;
    let chw = p.c_in * hw;
    // Samples past the batch read the last one and are never stored.
    var a0 = acc8_zero();
    let s0 = min(n0, p.n - 1u) * chw;
    var a1 = acc8_zero();
    let s1 = min(n0 + 1u, p.n - 1u) * chw;
    var a2 = acc8_zero();
    let s2 = min(n0 + 2u, p.n - 1u) * chw;
    var a3 = acc8_zero();
    let s3 = min(n0 + 3u, p.n - 1u) * chw;
    let ci_chunk = WSH / 18u;
    for (var c0 = 0u; c0 < p.c_in; c0 += ci_chunk) {
        let c1 = min(c0 + ci_chunk, p.c_in);
        stage_weights(li, (cb * p.c_in + c0) * 18u, (c1 - c0) * 18u);
        var wi = 0u;
        for (var ci = c0; ci < c1; ci++) {
            let plane = ci * hw;
            for (var ky = 0u; ky < 3u; ky++) {
                let iy = i32(oy * 2u + ky) - i32(p.padding);
                let row_ok = iy >= 0 && iy < i32(p.h);
                let row = plane + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                let w = Taps3(wsh[wi], wsh[wi + 1u], wsh[wi + 2u], wsh[wi + 3u], wsh[wi + 4u], wsh[wi + 5u]);
                wi += 6u;
                taps3(&a0, w, row_s2(s0 + row, ix0, row_ok));
                taps3(&a1, w, row_s2(s1 + row, ix0, row_ok));
                taps3(&a2, w, row_s2(s2 + row, ix0, row_ok));
                taps3(&a3, w, row_s2(s3 + row, ix0, row_ok));
            }
        }
    }
    let pix0 = oy * p.w_out + ox0;
    return Fwd4(a0, a1, a2, a3, n0, cb, pix0, p.w_out - ox0, oy, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s2_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(fwd_k3s2_cpu(wid, li));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s2_cpu_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(blocked_bias(fwd_k3s2_cpu(wid, li)));
}

// 1x1, stride 1, no padding: a GEMM over flat pixels; a thread owns 4 consecutive pixels.
fn fwd_k1_cpu(wid: vec3<u32>, li: u32) -> Fwd4 {
    let hw = p.h * p.w;
    let gw = (hw + PX - 1u) / PX;
    let items = ((p.n + NB - 1u) / NB) * gw;
    let item = wid.x * 64u + li;
    let valid = item < items;
    let it = select(0u, item, valid);
    let pix0 = (it % gw) * PX;
    let n0 = (it / gw) * NB;
    let cb = wid.y;
    let chw = p.c_in * hw;
    // Pixels past the end repeat the last one; they are never stored.
    let last = hw - 1u;
    let i0 = min(pix0, last);
    let i1 = min(pix0 + 1u, last);
    let i2 = min(pix0 + 2u, last);
    let i3 = min(pix0 + 3u, last);
    // Samples past the batch read the last one and are never stored.
    var a0 = acc8_zero();
    let s0 = min(n0, p.n - 1u) * chw;
    var a1 = acc8_zero();
    let s1 = min(n0 + 1u, p.n - 1u) * chw;
    var a2 = acc8_zero();
    let s2 = min(n0 + 2u, p.n - 1u) * chw;
    var a3 = acc8_zero();
    let s3 = min(n0 + 3u, p.n - 1u) * chw;
    let ci_chunk = WSH / 2u;
    for (var c0 = 0u; c0 < p.c_in; c0 += ci_chunk) {
        let c1 = min(c0 + ci_chunk, p.c_in);
        stage_weights(li, (cb * p.c_in + c0) * 2u, (c1 - c0) * 2u);
        var wi = 0u;
        for (var ci = c0; ci < c1; ci++) {
            let plane = ci * hw;
            let wa = wsh[wi];
            let wb = wsh[wi + 1u];
            wi += 2u;
            let b0 = s0 + plane;
            acc8_fma(&a0, wa, wb, vec4<f32>(x[b0 + i0], x[b0 + i1], x[b0 + i2], x[b0 + i3]));
            let b1 = s1 + plane;
            acc8_fma(&a1, wa, wb, vec4<f32>(x[b1 + i0], x[b1 + i1], x[b1 + i2], x[b1 + i3]));
            let b2 = s2 + plane;
            acc8_fma(&a2, wa, wb, vec4<f32>(x[b2 + i0], x[b2 + i1], x[b2 + i2], x[b2 + i3]));
            let b3 = s3 + plane;
            acc8_fma(&a3, wa, wb, vec4<f32>(x[b3 + i0], x[b3 + i1], x[b3 + i2], x[b3 + i3]));
        }
    }
    return Fwd4(a0, a1, a2, a3, n0, cb, pix0, hw - pix0, 0u, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(fwd_k1_cpu(wid, li));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_cpu_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_blocked(blocked_bias(fwd_k1_cpu(wid, li)));
}

// conv2d_bwd_x_k3s2_cpu: the input gradient of a 3x3, stride-2, padding-1 convolution on CPU
// adapters, without the divisibility test per tap: input row iy = 2 a + parity receives output
// row oy = a through ky = 1 when iy is even, and oy = a + 1 through ky = 0 and oy = a through
// ky = 2 when odd; the parity is wid.z, so the loop runs only over the taps that exist. Along a
// row, the 4 pixels ix0 + q (ix0 = 4 gx, b = 2 gx) take dy at ox = b, b + 1, b + 2:
//   q = 0: kx 1 at b;   q = 1: kx 0 at b + 1, kx 2 at b;   q = 2: kx 1 at b + 1;
//   q = 3: kx 0 at b + 2, kx 2 at b + 1.
// Register blocking as the forward kernels: 4 pixels x 4 samples x 8 input channels per thread,
// weights packed with flip = 2 and staged in workgroup memory.
// Geometry: (ceil(items / 64), ceil(c_in / 8), 2), items = ceil(n / 4) * ceil(h / 2) * ceil(w / 4).

fn dyat(row: u32, ox: u32, row_ok: bool) -> f32 {
    return select(0.0, dy[row + min(ox, p.w_out - 1u)], row_ok && ox < p.w_out);
}

fn row_s2_transposed(row: u32, b: u32, row_ok: bool) -> Row3 {
    let d0 = dyat(row, b, row_ok);
    let d1 = dyat(row, b + 1u, row_ok);
    let d2 = dyat(row, b + 2u, row_ok);
    return Row3(vec4<f32>(0.0, d1, 0.0, d2), vec4<f32>(d0, 0.0, d1, 0.0), vec4<f32>(0.0, d0, 0.0, d1));
}

// Adds output row oy (kernel row at wsh[wi], 3 taps) to the 4 samples at planes `planes`.
fn s2_transposed_row(a0: ptr<function, Acc8>, a1: ptr<function, Acc8>, a2: ptr<function, Acc8>,
                     a3: ptr<function, Acc8>, planes: vec4<u32>, oy: u32, b: u32, wi: u32) {
    let row_ok = oy < p.h_out;
    let row = min(oy, p.h_out - 1u) * p.w_out;
    let w = Taps3(wsh[wi], wsh[wi + 1u], wsh[wi + 2u], wsh[wi + 3u], wsh[wi + 4u], wsh[wi + 5u]);
    taps3(a0, w, row_s2_transposed(planes.x + row, b, row_ok));
    taps3(a1, w, row_s2_transposed(planes.y + row, b, row_ok));
    taps3(a2, w, row_s2_transposed(planes.z + row, b, row_ok));
    taps3(a3, w, row_s2_transposed(planes.w + row, b, row_ok));
}

@compute @workgroup_size(64)
fn conv2d_bwd_x_k3s2_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let gw = (p.w + PX - 1u) / PX;
    let hh = (p.h + 1u) / 2u;
    let items = ((p.n + NB - 1u) / NB) * hh * gw;
    let item = wid.x * 64u + li;
    let it = select(0u, item, item < items);
    let gx = it % gw;
    let a = (it / gw) % hh;
    let n0 = (it / (gw * hh)) * NB;
    let parity = wid.z;
    let iy = 2u * a + parity;
    let valid = item < items && iy < p.h;
    let cb = wid.y;
    let b = 2u * gx;
    let hw_out = p.h_out * p.w_out;
    let chw = p.c_out * hw_out;
    // Samples past the batch read the last one and are never stored.
    var a0 = acc8_zero();
    let s0 = min(n0, p.n - 1u) * chw;
    var a1 = acc8_zero();
    let s1 = min(n0 + 1u, p.n - 1u) * chw;
    var a2 = acc8_zero();
    let s2 = min(n0 + 2u, p.n - 1u) * chw;
    var a3 = acc8_zero();
    let s3 = min(n0 + 3u, p.n - 1u) * chw;
    let co_chunk = WSH / 18u;
    for (var c0 = 0u; c0 < p.c_out; c0 += co_chunk) {
        let c1 = min(c0 + co_chunk, p.c_out);
        stage_weights(li, (cb * p.c_out + c0) * 18u, (c1 - c0) * 18u);
        for (var co = c0; co < c1; co++) {
            let plane = co * hw_out;
            let wi = (co - c0) * 18u;
            // Even rows: ky = 1 from oy = a. Odd rows: ky = 0 from oy = a + 1, ky = 2 from a.
            if (parity == 0u) {
                s2_transposed_row(&a0, &a1, &a2, &a3, vec4<u32>(s0, s1, s2, s3) + plane, a, b, wi + 6u);
            } else {
                s2_transposed_row(&a0, &a1, &a2, &a3, vec4<u32>(s0, s1, s2, s3) + plane, a + 1u, b, wi);
                s2_transposed_row(&a0, &a1, &a2, &a3, vec4<u32>(s0, s1, s2, s3) + plane, a, b, wi + 12u);
            }
        }
    }
    let hw = p.h * p.w;
    let ix0 = 4u * gx;
    let pix0 = iy * p.w + ix0;
    store8(a0, n0, cb, pix0, p.w - ix0, valid && n0 < p.n, p.c_in, hw);
    store8(a1, n0 + 1u, cb, pix0, p.w - ix0, valid && n0 + 1u < p.n, p.c_in, hw);
    store8(a2, n0 + 2u, cb, pix0, p.w - ix0, valid && n0 + 2u < p.n, p.c_in, hw);
    store8(a3, n0 + 3u, cb, pix0, p.w - ix0, valid && n0 + 3u < p.n, p.c_in, hw);
}

// conv2d_bwd_w_k3s{1,2}_cpu: the weight gradient of 3x3 convolutions on CPU adapters. A thread
// owns two input channels (ci and ci + 16; lanes: consecutive ci) and all 9 taps of the CB = 8
// output channels of its workgroup's block (144 accumulators), and sums over the z-th chunk of
// output rows (n, oy): per 4-pixel group and kernel row it loads 3 + 4 (stride 2: 5 + 8) inputs
// per channel and takes the 8 channels' dy from workgroup memory, where every lane reads the same
// address. dy rows are staged DSH vec4s at a time as [row][channel][pixel group], zero past
// w_out and c_out. Two channels per thread share each dy read: 23% faster on Mesa 22.3.6, which
// pays a per-lane loop even for those, and the same on 25.0.7.
// Output: partial sums [chunk, c_out, c_in * 9], summed by reduce.wgsl's sum_rows_fwd.
// Geometry: 16 threads, grid (ceil(c_in / 32), ceil(c_out / 8), ceil(n h_out / chunk)).

const DSH: u32 = 512u;
var<workgroup> dsh: array<vec4<f32>, 512>;

struct Acc9 { k0: vec3<f32>, k1: vec3<f32>, k2: vec3<f32> }

fn store_acc9(a: Acc9, o: u32, ok: bool) {
    if (ok) {
        out[o] = a.k0.x;
        out[o + 1u] = a.k0.y;
        out[o + 2u] = a.k0.z;
        out[o + 3u] = a.k1.x;
        out[o + 4u] = a.k1.y;
        out[o + 5u] = a.k1.z;
        out[o + 6u] = a.k2.x;
        out[o + 7u] = a.k2.y;
        out[o + 8u] = a.k2.z;
    }
}

// dsh[((r - r0) CB + j) gw + g] = dy[n, cb CB + j, oy, 4 g .. 4 g + 3] for rows r = (n, oy) in
// [r0, r1). The first barrier keeps the previous stage alive until everyone is done with it.
fn stage_dy(li: u32, r0: u32, r1: u32, cb: u32, gw: u32) {
    workgroupBarrier();
    let hw_out = p.h_out * p.w_out;
    for (var e = li; e < (r1 - r0) * CB * gw; e += 16u) {
        let g = e % gw;
        let j = (e / gw) % CB;
        let r = r0 + e / (gw * CB);
        let co = cb * CB + j;
        let base = ((r / p.h_out) * p.c_out + min(co, p.c_out - 1u)) * hw_out + (r % p.h_out) * p.w_out;
        var v = vec4<f32>(0.0);
        for (var q = 0u; q < PX; q++) {
            let ox = g * PX + q;
            v[q] = select(0.0, dy[base + min(ox, p.w_out - 1u)], co < p.c_out && ox < p.w_out);
        }
        dsh[e] = v;
    }
    workgroupBarrier();
}

@compute @workgroup_size(16)
fn conv2d_bwd_w_k3s1_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ci0 = wid.x * 32u + li;
    let cb = wid.y;
    let gw = (p.w_out + PX - 1u) / PX;
    let rows_per_stage = DSH / (CB * gw);
    let r_begin = wid.z * p.chunk;
    let r_end = min(r_begin + p.chunk, p.n * p.h_out);
    let hw = p.h * p.w;
    let cc0 = min(ci0, p.c_in - 1u);
    var a0_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a1_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a2_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a3_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a4_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a5_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a6_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a7_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    let cc1 = min(ci0 + 16u, p.c_in - 1u);
    var a0_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a1_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a2_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a3_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a4_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a5_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a6_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a7_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    for (var r0 = r_begin; r0 < r_end; r0 += rows_per_stage) {
        let r1 = min(r0 + rows_per_stage, r_end);
        stage_dy(li, r0, r1, cb, gw);
        for (var r = r0; r < r1; r++) {
            let n = r / p.h_out;
            let oy = r % p.h_out;
            let plane0 = (n * p.c_in + cc0) * hw;
            let plane1 = (n * p.c_in + cc1) * hw;
            var di = (r - r0) * CB * gw;
            for (var g = 0u; g < gw; g++) {
                let ix0 = i32(g * PX) - i32(p.padding);
                let d0 = dsh[di];
                let d1 = dsh[di + 1u * gw];
                let d2 = dsh[di + 2u * gw];
                let d3 = dsh[di + 3u * gw];
                let d4 = dsh[di + 4u * gw];
                let d5 = dsh[di + 5u * gw];
                let d6 = dsh[di + 6u * gw];
                let d7 = dsh[di + 7u * gw];
                di += 1u;
                {
                    let iy = i32(oy) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s1(plane0 + yoff, ix0, row_ok);
                    a0_0.k0 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k0 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k0 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k0 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k0 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k0 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k0 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k0 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s1(plane1 + yoff, ix0, row_ok);
                    a0_1.k0 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k0 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k0 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k0 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k0 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k0 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k0 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k0 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
                {
                    let iy = i32(oy + 1u) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s1(plane0 + yoff, ix0, row_ok);
                    a0_0.k1 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k1 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k1 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k1 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k1 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k1 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k1 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k1 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s1(plane1 + yoff, ix0, row_ok);
                    a0_1.k1 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k1 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k1 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k1 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k1 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k1 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k1 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k1 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
                {
                    let iy = i32(oy + 2u) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s1(plane0 + yoff, ix0, row_ok);
                    a0_0.k2 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k2 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k2 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k2 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k2 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k2 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k2 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k2 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s1(plane1 + yoff, ix0, row_ok);
                    a0_1.k2 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k2 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k2 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k2 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k2 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k2 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k2 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k2 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
            }
        }
    }
    let k_cols = p.c_in * 9u;
    let o0 = (wid.z * p.c_out + cb * CB) * k_cols + cc0 * 9u;
    store_acc9(a0_0, o0, ci0 < p.c_in && cb * CB < p.c_out);
    store_acc9(a1_0, o0 + 1u * k_cols, ci0 < p.c_in && cb * CB + 1u < p.c_out);
    store_acc9(a2_0, o0 + 2u * k_cols, ci0 < p.c_in && cb * CB + 2u < p.c_out);
    store_acc9(a3_0, o0 + 3u * k_cols, ci0 < p.c_in && cb * CB + 3u < p.c_out);
    store_acc9(a4_0, o0 + 4u * k_cols, ci0 < p.c_in && cb * CB + 4u < p.c_out);
    store_acc9(a5_0, o0 + 5u * k_cols, ci0 < p.c_in && cb * CB + 5u < p.c_out);
    store_acc9(a6_0, o0 + 6u * k_cols, ci0 < p.c_in && cb * CB + 6u < p.c_out);
    store_acc9(a7_0, o0 + 7u * k_cols, ci0 < p.c_in && cb * CB + 7u < p.c_out);
    let o1 = (wid.z * p.c_out + cb * CB) * k_cols + cc1 * 9u;
    store_acc9(a0_1, o1, ci0 + 16u < p.c_in && cb * CB < p.c_out);
    store_acc9(a1_1, o1 + 1u * k_cols, ci0 + 16u < p.c_in && cb * CB + 1u < p.c_out);
    store_acc9(a2_1, o1 + 2u * k_cols, ci0 + 16u < p.c_in && cb * CB + 2u < p.c_out);
    store_acc9(a3_1, o1 + 3u * k_cols, ci0 + 16u < p.c_in && cb * CB + 3u < p.c_out);
    store_acc9(a4_1, o1 + 4u * k_cols, ci0 + 16u < p.c_in && cb * CB + 4u < p.c_out);
    store_acc9(a5_1, o1 + 5u * k_cols, ci0 + 16u < p.c_in && cb * CB + 5u < p.c_out);
    store_acc9(a6_1, o1 + 6u * k_cols, ci0 + 16u < p.c_in && cb * CB + 6u < p.c_out);
    store_acc9(a7_1, o1 + 7u * k_cols, ci0 + 16u < p.c_in && cb * CB + 7u < p.c_out);
}

@compute @workgroup_size(16)
fn conv2d_bwd_w_k3s2_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ci0 = wid.x * 32u + li;
    let cb = wid.y;
    let gw = (p.w_out + PX - 1u) / PX;
    let rows_per_stage = DSH / (CB * gw);
    let r_begin = wid.z * p.chunk;
    let r_end = min(r_begin + p.chunk, p.n * p.h_out);
    let hw = p.h * p.w;
    let cc0 = min(ci0, p.c_in - 1u);
    var a0_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a1_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a2_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a3_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a4_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a5_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a6_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a7_0 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    let cc1 = min(ci0 + 16u, p.c_in - 1u);
    var a0_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a1_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a2_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a3_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a4_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a5_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a6_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a7_1 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    for (var r0 = r_begin; r0 < r_end; r0 += rows_per_stage) {
        let r1 = min(r0 + rows_per_stage, r_end);
        stage_dy(li, r0, r1, cb, gw);
        for (var r = r0; r < r1; r++) {
            let n = r / p.h_out;
            let oy = r % p.h_out;
            let plane0 = (n * p.c_in + cc0) * hw;
            let plane1 = (n * p.c_in + cc1) * hw;
            var di = (r - r0) * CB * gw;
            for (var g = 0u; g < gw; g++) {
                let ix0 = i32(g * PX * 2u) - i32(p.padding);
                let d0 = dsh[di];
                let d1 = dsh[di + 1u * gw];
                let d2 = dsh[di + 2u * gw];
                let d3 = dsh[di + 3u * gw];
                let d4 = dsh[di + 4u * gw];
                let d5 = dsh[di + 5u * gw];
                let d6 = dsh[di + 6u * gw];
                let d7 = dsh[di + 7u * gw];
                di += 1u;
                {
                    let iy = i32(oy * 2u) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s2(plane0 + yoff, ix0, row_ok);
                    a0_0.k0 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k0 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k0 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k0 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k0 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k0 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k0 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k0 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s2(plane1 + yoff, ix0, row_ok);
                    a0_1.k0 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k0 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k0 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k0 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k0 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k0 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k0 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k0 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
                {
                    let iy = i32(oy * 2u + 1u) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s2(plane0 + yoff, ix0, row_ok);
                    a0_0.k1 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k1 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k1 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k1 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k1 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k1 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k1 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k1 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s2(plane1 + yoff, ix0, row_ok);
                    a0_1.k1 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k1 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k1 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k1 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k1 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k1 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k1 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k1 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
                {
                    let iy = i32(oy * 2u + 2u) - i32(p.padding);
                    let row_ok = iy >= 0 && iy < i32(p.h);
                    let yoff = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;
                    let xr0 = row_s2(plane0 + yoff, ix0, row_ok);
                    a0_0.k2 += vec3<f32>(dot(d0, xr0.k0), dot(d0, xr0.k1), dot(d0, xr0.k2));
                    a1_0.k2 += vec3<f32>(dot(d1, xr0.k0), dot(d1, xr0.k1), dot(d1, xr0.k2));
                    a2_0.k2 += vec3<f32>(dot(d2, xr0.k0), dot(d2, xr0.k1), dot(d2, xr0.k2));
                    a3_0.k2 += vec3<f32>(dot(d3, xr0.k0), dot(d3, xr0.k1), dot(d3, xr0.k2));
                    a4_0.k2 += vec3<f32>(dot(d4, xr0.k0), dot(d4, xr0.k1), dot(d4, xr0.k2));
                    a5_0.k2 += vec3<f32>(dot(d5, xr0.k0), dot(d5, xr0.k1), dot(d5, xr0.k2));
                    a6_0.k2 += vec3<f32>(dot(d6, xr0.k0), dot(d6, xr0.k1), dot(d6, xr0.k2));
                    a7_0.k2 += vec3<f32>(dot(d7, xr0.k0), dot(d7, xr0.k1), dot(d7, xr0.k2));
                    let xr1 = row_s2(plane1 + yoff, ix0, row_ok);
                    a0_1.k2 += vec3<f32>(dot(d0, xr1.k0), dot(d0, xr1.k1), dot(d0, xr1.k2));
                    a1_1.k2 += vec3<f32>(dot(d1, xr1.k0), dot(d1, xr1.k1), dot(d1, xr1.k2));
                    a2_1.k2 += vec3<f32>(dot(d2, xr1.k0), dot(d2, xr1.k1), dot(d2, xr1.k2));
                    a3_1.k2 += vec3<f32>(dot(d3, xr1.k0), dot(d3, xr1.k1), dot(d3, xr1.k2));
                    a4_1.k2 += vec3<f32>(dot(d4, xr1.k0), dot(d4, xr1.k1), dot(d4, xr1.k2));
                    a5_1.k2 += vec3<f32>(dot(d5, xr1.k0), dot(d5, xr1.k1), dot(d5, xr1.k2));
                    a6_1.k2 += vec3<f32>(dot(d6, xr1.k0), dot(d6, xr1.k1), dot(d6, xr1.k2));
                    a7_1.k2 += vec3<f32>(dot(d7, xr1.k0), dot(d7, xr1.k1), dot(d7, xr1.k2));
                }
            }
        }
    }
    let k_cols = p.c_in * 9u;
    let o0 = (wid.z * p.c_out + cb * CB) * k_cols + cc0 * 9u;
    store_acc9(a0_0, o0, ci0 < p.c_in && cb * CB < p.c_out);
    store_acc9(a1_0, o0 + 1u * k_cols, ci0 < p.c_in && cb * CB + 1u < p.c_out);
    store_acc9(a2_0, o0 + 2u * k_cols, ci0 < p.c_in && cb * CB + 2u < p.c_out);
    store_acc9(a3_0, o0 + 3u * k_cols, ci0 < p.c_in && cb * CB + 3u < p.c_out);
    store_acc9(a4_0, o0 + 4u * k_cols, ci0 < p.c_in && cb * CB + 4u < p.c_out);
    store_acc9(a5_0, o0 + 5u * k_cols, ci0 < p.c_in && cb * CB + 5u < p.c_out);
    store_acc9(a6_0, o0 + 6u * k_cols, ci0 < p.c_in && cb * CB + 6u < p.c_out);
    store_acc9(a7_0, o0 + 7u * k_cols, ci0 < p.c_in && cb * CB + 7u < p.c_out);
    let o1 = (wid.z * p.c_out + cb * CB) * k_cols + cc1 * 9u;
    store_acc9(a0_1, o1, ci0 + 16u < p.c_in && cb * CB < p.c_out);
    store_acc9(a1_1, o1 + 1u * k_cols, ci0 + 16u < p.c_in && cb * CB + 1u < p.c_out);
    store_acc9(a2_1, o1 + 2u * k_cols, ci0 + 16u < p.c_in && cb * CB + 2u < p.c_out);
    store_acc9(a3_1, o1 + 3u * k_cols, ci0 + 16u < p.c_in && cb * CB + 3u < p.c_out);
    store_acc9(a4_1, o1 + 4u * k_cols, ci0 + 16u < p.c_in && cb * CB + 4u < p.c_out);
    store_acc9(a5_1, o1 + 5u * k_cols, ci0 + 16u < p.c_in && cb * CB + 5u < p.c_out);
    store_acc9(a6_1, o1 + 6u * k_cols, ci0 + 16u < p.c_in && cb * CB + 6u < p.c_out);
    store_acc9(a7_1, o1 + 7u * k_cols, ci0 + 16u < p.c_in && cb * CB + 7u < p.c_out);
}

// ---- Kernels for CPU adapters with the weights (or dy) in a uniform buffer. llvmpipe runs 8
// lanes as one SIMD batch. Mesa 22 loads a storage or workgroup element in a loop over the lanes,
// with a branch per lane, even where every lane reads the same address (the kernels above pay
// that for every weight); a uniform-buffer element is a straight-line gather there (8 scalar
// loads, no branch), or a single broadcast load where its offset derives from constants alone
// (nir_src_is_always_uniform: loop counters and the workgroup id do not count). Mesa 25 gathers
// the window reads below too (read from its machine code), at a quarter of the cost of its
// storage loads on this machine; a microbenchmark is in BENCHMARKS.md. So the blocking minimises
// gathered elements per FMA. The packed weights of
// one block of output channels and a chunk of input channels fill at most the 64 KiB window
// `wuni`; the host dispatches each (block, chunk), and the chunks after the first add to the
// output (each output element has one owner thread: deterministic).

// Output channels per thread of the 1x1 kernel.
const UB: u32 = 32u;
// The window: at most 4096 vec4s of packed weights (or dy planes) per dispatch.
@group(0) @binding(7) var<uniform> wuni: array<vec4<f32>, 4096>;

// Writes channels cb8 * 8 + j of 4 pixels from flat pixel pix0 of sample n (first chunk), or adds
// them to what the previous chunks wrote.
fn store8_chunk(acc: Acc8, n: u32, cb8: u32, pix0: u32, n_valid: u32, valid: bool) {
    let hw = p.h_out * p.w_out;
    for (var j = 0u; j < CB; j++) {
        let co = cb8 * CB + j;
        if (valid && co < p.c_out) {
            let v = acc8_get(acc, j);
            for (var q = 0u; q < PX; q++) {
                if (q < n_valid) {
                    let o = (n * p.c_out + co) * hw + pix0 + q;
                    var prev = 0.0;
                    if (p.accumulate == 1u) {
                        prev = out[o];
                    }
                    out[o] = prev + v[q];
                }
            }
        }
    }
}

// Stores a rows2 thread's 16 output channels (two 8-channel halves, blocks cb8 and cb8 + 1) x 4
// pixels from (oy, ox0) and the row below: a0/a1 row oy, a2/a3 row oy + 1 (when inside).
fn store_rows2(r: Fwd4) {
    let second = r.valid && r.oy + 1u < p.h_out;
    store8_chunk(r.a0, r.n, r.cb, r.pix0, r.n_valid, r.valid);
    store8_chunk(r.a1, r.n, r.cb + 1u, r.pix0, r.n_valid, r.valid);
    store8_chunk(r.a2, r.n, r.cb, r.pix0 + p.w_out, r.n_valid, second);
    store8_chunk(r.a3, r.n, r.cb + 1u, r.pix0 + p.w_out, r.n_valid, second);
}

// A rows2 thread's Fwd4 for its (n, block cb8, rows oy and oy + 1, pixels ox0 ..).
fn rows2(a0: Acc8, a1: Acc8, a2: Acc8, a3: Acc8, n: u32, cb8: u32, oy: u32, ox0: u32, valid: bool) -> Fwd4 {
    return Fwd4(a0, a1, a2, a3, n, cb8, oy * p.w_out + ox0, p.w_out - ox0, oy, valid);
}

// The bias, added by the first chunk only.
fn rows2_bias(r: Fwd4) -> Fwd4 {
    var o = r;
    if (p.accumulate == 0u) {
        o.a0 = acc8_bias(r.a0, r.cb);
        o.a1 = acc8_bias(r.a1, r.cb + 1u);
        o.a2 = acc8_bias(r.a2, r.cb);
        o.a3 = acc8_bias(r.a3, r.cb + 1u);
    }
    return o;
}

fn store_k1_chunk(r: Fwd4) {
    store8_chunk(r.a0, r.n, r.cb, r.pix0, r.n_valid, r.valid);
    store8_chunk(r.a1, r.n, r.cb + 1u, r.pix0, r.n_valid, r.valid);
    store8_chunk(r.a2, r.n, r.cb + 2u, r.pix0, r.n_valid, r.valid);
    store8_chunk(r.a3, r.n, r.cb + 3u, r.pix0, r.n_valid, r.valid);
}

// The bias, added by the first chunk only.
fn k1_chunk_bias(r: Fwd4) -> Fwd4 {
    var o = r;
    if (p.accumulate == 0u) {
        o.a0 = acc8_bias(r.a0, r.cb);
        o.a1 = acc8_bias(r.a1, r.cb + 1u);
        o.a2 = acc8_bias(r.a2, r.cb + 2u);
        o.a3 = acc8_bias(r.a3, r.cb + 3u);
    }
    return o;
}

// The stride-1 3x3 convolution (forward, and the stride-1 input gradient with flipped weights):
// a thread takes 16 output channels x 4 pixels of rows oy and oy + 1 (128 accumulators). Per
// input channel it gathers 4 input rows (24 elements for 8 pixels) and uses each window weight
// for both rows (8 FMAs per element). Measured against the alternatives on Mesa 22.3.6 / 25.0.7:
// 32 channels x 1 row (18 gathered + 288 window elements per 4 pixels) was 1.4x slower on 22
// and level on 25; 8 channels x 4 rows was slower on both; the weights staged in workgroup
// memory instead of the window were 2x slower on 25 and 5x on 22; one vec4 load for the 4
// middle inputs of a row instead of 4 scalars changed nothing. The window packs [ci][tap][16]
// (4 vec4s per tap; at most 113 input channels per chunk). Geometry: (ceil(items / 64), 1, 1),
// items = n * ceil(h_out / 2) * ceil(w_out / 4); block = a block of 16 output channels.

fn ubo_taps3_16(base: u32, k: u32) -> Taps3 {
    let o = base + 2u * k;
    return Taps3(wuni[o], wuni[o + 1u], wuni[o + 4u], wuni[o + 5u], wuni[o + 8u], wuni[o + 9u]);
}

fn fwd_k3s1_ubo_rows2(wid: vec3<u32>, li: u32) -> Fwd4 {
    let gw = (p.w_out + PX - 1u) / PX;
    let gh = (p.h_out + 1u) / 2u;
    let items = p.n * gh * gw;
    let item = wid.x * 64u + li;
    let valid = item < items;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = ((it / gw) % gh) * 2u;
    let n = it / (gw * gh);
    let ix0 = i32(ox0) - i32(p.padding);
    let hw = p.h * p.w;
    let sample = n * p.c_in * hw;
    let iy0 = i32(oy) - i32(p.padding);
    let ok0 = iy0 >= 0 && iy0 < i32(p.h);
    let ok1 = iy0 + 1 >= 0 && iy0 + 1 < i32(p.h);
    let ok2 = iy0 + 2 >= 0 && iy0 + 2 < i32(p.h);
    let ok3 = iy0 + 3 >= 0 && iy0 + 3 < i32(p.h);
    let y0 = u32(clamp(iy0, 0, i32(p.h) - 1)) * p.w;
    let y1 = u32(clamp(iy0 + 1, 0, i32(p.h) - 1)) * p.w;
    let y2 = u32(clamp(iy0 + 2, 0, i32(p.h) - 1)) * p.w;
    let y3 = u32(clamp(iy0 + 3, 0, i32(p.h) - 1)) * p.w;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        let plane = sample + ci * hw;
        let wci = (ci - p.ci_begin) * 36u;
        let r0 = row_s1(plane + y0, ix0, ok0);
        let r1 = row_s1(plane + y1, ix0, ok1);
        let r2 = row_s1(plane + y2, ix0, ok2);
        let r3 = row_s1(plane + y3, ix0, ok3);
        let t00 = ubo_taps3_16(wci, 0u);
        let t01 = ubo_taps3_16(wci, 1u);
        taps3(&a0, t00, r0);
        taps3(&a1, t01, r0);
        taps3(&a2, t00, r1);
        taps3(&a3, t01, r1);
        let t10 = ubo_taps3_16(wci + 12u, 0u);
        let t11 = ubo_taps3_16(wci + 12u, 1u);
        taps3(&a0, t10, r1);
        taps3(&a1, t11, r1);
        taps3(&a2, t10, r2);
        taps3(&a3, t11, r2);
        let t20 = ubo_taps3_16(wci + 24u, 0u);
        let t21 = ubo_taps3_16(wci + 24u, 1u);
        taps3(&a0, t20, r2);
        taps3(&a1, t21, r2);
        taps3(&a2, t20, r3);
        taps3(&a3, t21, r3);
    }
    let cb8 = p.block * 2u;
    return rows2(a0, a1, a2, a3, n, cb8, oy, ox0, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_ubo_rows2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_rows2(fwd_k3s1_ubo_rows2(wid, li));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_ubo_rows2_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_rows2(rows2_bias(fwd_k3s1_ubo_rows2(wid, li)));
}

// The 1x1 convolution (a matmul per sample): UB = 32 output channels x 4 pixels of one sample
// per thread, each gathered input pixel feeding 32 FMAs. The window packs
// [ci][32] (8 vec4s per input channel). Geometry: (ceil(n * ceil(h w / 4) / 64), 1, 1).
fn fwd_k1_ubo(wid: vec3<u32>, li: u32) -> Fwd4 {
    let hw = p.h * p.w;
    let gw = (hw + PX - 1u) / PX;
    let item = wid.x * 64u + li;
    let valid = item < p.n * gw;
    let it = select(0u, item, valid);
    let pix0 = (it % gw) * PX;
    let n = it / gw;
    // Pixels past the end repeat the last one; they are never stored.
    let last = hw - 1u;
    let i1 = min(pix0 + 1u, last);
    let i2 = min(pix0 + 2u, last);
    let i3 = min(pix0 + 3u, last);
    let sample = n * p.c_in * hw;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        let b = sample + ci * hw;
        let xv = vec4<f32>(x[b + pix0], x[b + i1], x[b + i2], x[b + i3]);
        let o = (ci - p.ci_begin) * 8u;
        acc8_fma(&a0, wuni[o], wuni[o + 1u], xv);
        acc8_fma(&a1, wuni[o + 2u], wuni[o + 3u], xv);
        acc8_fma(&a2, wuni[o + 4u], wuni[o + 5u], xv);
        acc8_fma(&a3, wuni[o + 6u], wuni[o + 7u], xv);
    }
    let cb8 = p.block * (UB / CB);
    return Fwd4(a0, a1, a2, a3, n, cb8, pix0, hw - pix0, 0u, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_ubo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_k1_chunk(fwd_k1_ubo(wid, li));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_ubo_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    store_k1_chunk(k1_chunk_bias(fwd_k1_ubo(wid, li)));
}

// ---- Weight gradients for CPU adapters with dy in uniform windows (the *_ubo kernels above
// explain why): dy comes one sample and a run of output channels at a time through `wuni`, its
// planes padded by conv2d_pad_planes so that every window starts aligned. Each dispatch adds
// to the partial sums of its parts, and a last pass (sum_rows) adds the parts up.

const WB: u32 = 16u;

// Writes (first sample) or adds (later samples) one channel pair's 9 taps at out[o ..].
fn store_acc9_chunk(a: Acc9, o: u32, ok: bool) {
    if (ok) {
        var prev = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
        if (p.accumulate == 1u) {
            prev = Acc9(vec3<f32>(out[o], out[o + 1u], out[o + 2u]),
                        vec3<f32>(out[o + 3u], out[o + 4u], out[o + 5u]),
                        vec3<f32>(out[o + 6u], out[o + 7u], out[o + 8u]));
        }
        store_acc9(Acc9(prev.k0 + a.k0, prev.k1 + a.k1, prev.k2 + a.k2), o, true);
    }
}

// conv2d_bwd_w_k3s1_ubo: the stride-1 3x3 weight gradient,
// dW[co, ci, ky, kx] = sum over (n, oy, ox) of dy[n, co, oy, ox] x[n, ci, oy + ky - pad, ox + kx - pad],
// with both operands in uniform windows: Mesa 22's llvmpipe loads a storage element whose
// address differs between lanes in a loop over the lanes (4.2 ns per lane-load on the 2-core
// CI machine), a uniform-buffer element in straight-line code (0.5-1 ns). x comes padded by
// conv2d_pad_planes: each plane has h_out + 2 rows of x_row floats (a multiple of 4), x[iy][ix]
// at row iy + padding, column ix + padding, and zeros around, so a thread reads 6 consecutive
// elements per kernel row without a bounds test. dy rows are padded with zeros to row_stride (a
// multiple of 4), so 4 output pixels are one vec4. The window `xuni` holds the planes of input
// channels [x_begin, x_end) of sample `block`, and `wuni` the dy planes of its output channels
// [ci_begin, ci_end) (named for the window, as in the forward kernels). A lane owns one input
// channel and sums 16 output channels x 9 taps (144 accumulators) over the output rows of its
// part (`chunk` rows): each gathered x element feeds 48 FMAs, each dy element 36. Measured on
// Mesa 22.3.6 at 32 -> 32 channels, 28x28, batch 32: 43-57 ms, against 89 ms with x read from
// the storage buffer. Grid (row parts, ceil((x_end - x_begin) / 8), ceil(window channels / 16)),
// workgroups of 8 (one SIMD batch on llvmpipe).
@group(0) @binding(8) var<uniform> xuni: array<vec4<f32>, 4096>;

// x values at columns c .. c + 5 of a padded row (c a multiple of 4).
struct X6 { a: vec4<f32>, b: vec2<f32> }

fn x6(e: u32) -> X6 {
    let v = e >> 2u;
    return X6(xuni[v], xuni[v + 1u].xy);
}

// The 9 taps of one output channel at 4 pixels: a.k{ky}[kx] += sum over q of d[q] x_ky[q + kx].
fn acc9_rows(a: ptr<function, Acc9>, d: vec4<f32>, r0: X6, r1: X6, r2: X6) {
    (*a).k0 = fma(vec3<f32>(d.x), r0.a.xyz, (*a).k0);
    (*a).k0 = fma(vec3<f32>(d.y), vec3<f32>(r0.a.yzw), (*a).k0);
    (*a).k0 = fma(vec3<f32>(d.z), vec3<f32>(r0.a.zw, r0.b.x), (*a).k0);
    (*a).k0 = fma(vec3<f32>(d.w), vec3<f32>(r0.a.w, r0.b.xy), (*a).k0);
    (*a).k1 = fma(vec3<f32>(d.x), r1.a.xyz, (*a).k1);
    (*a).k1 = fma(vec3<f32>(d.y), vec3<f32>(r1.a.yzw), (*a).k1);
    (*a).k1 = fma(vec3<f32>(d.z), vec3<f32>(r1.a.zw, r1.b.x), (*a).k1);
    (*a).k1 = fma(vec3<f32>(d.w), vec3<f32>(r1.a.w, r1.b.xy), (*a).k1);
    (*a).k2 = fma(vec3<f32>(d.x), r2.a.xyz, (*a).k2);
    (*a).k2 = fma(vec3<f32>(d.y), vec3<f32>(r2.a.yzw), (*a).k2);
    (*a).k2 = fma(vec3<f32>(d.z), vec3<f32>(r2.a.zw, r2.b.x), (*a).k2);
    (*a).k2 = fma(vec3<f32>(d.w), vec3<f32>(r2.a.w, r2.b.xy), (*a).k2);
}

@compute @workgroup_size(8)
fn conv2d_bwd_w_k3s1_ubo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let local = wid.y * 8u + li;
    let ci = p.x_begin + local;
    let ci_ok = ci < p.x_end;
    let xp = min(local, p.x_end - p.x_begin - 1u) * p.x_plane_stride;
    let cb = wid.z * WB;
    let oy0 = wid.x * p.chunk;
    let oy1 = min(oy0 + p.chunk, p.h_out);
    let z9 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a0 = z9;
    var a1 = z9;
    var a2 = z9;
    var a3 = z9;
    var a4 = z9;
    var a5 = z9;
    var a6 = z9;
    var a7 = z9;
    var a8 = z9;
    var a9 = z9;
    var a10 = z9;
    var a11 = z9;
    var a12 = z9;
    var a13 = z9;
    var a14 = z9;
    var a15 = z9;
    for (var oy = oy0; oy < oy1; oy++) {
        let row = xp + oy * p.x_row;
        for (var ox0 = 0u; ox0 < p.w_out; ox0 += PX) {
            let r0 = x6(row + ox0);
            let r1 = x6(row + p.x_row + ox0);
            let r2 = x6(row + 2u * p.x_row + ox0);
            let dp = cb * p.plane_stride + oy * p.row_stride + ox0;
            acc9_rows(&a0, wuni[(dp + 0u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a1, wuni[(dp + 1u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a2, wuni[(dp + 2u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a3, wuni[(dp + 3u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a4, wuni[(dp + 4u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a5, wuni[(dp + 5u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a6, wuni[(dp + 6u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a7, wuni[(dp + 7u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a8, wuni[(dp + 8u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a9, wuni[(dp + 9u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a10, wuni[(dp + 10u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a11, wuni[(dp + 11u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a12, wuni[(dp + 12u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a13, wuni[(dp + 13u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a14, wuni[(dp + 14u * p.plane_stride) >> 2u], r0, r1, r2);
            acc9_rows(&a15, wuni[(dp + 15u * p.plane_stride) >> 2u], r0, r1, r2);
        }
    }
    let k_cols = p.c_in * 9u;
    let co0 = p.ci_begin + cb;
    let o = (wid.x * p.c_out + co0) * k_cols + ci * 9u;
    store_acc9_chunk(a0, o + 0u * k_cols, ci_ok && co0 + 0u < p.ci_end);
    store_acc9_chunk(a1, o + 1u * k_cols, ci_ok && co0 + 1u < p.ci_end);
    store_acc9_chunk(a2, o + 2u * k_cols, ci_ok && co0 + 2u < p.ci_end);
    store_acc9_chunk(a3, o + 3u * k_cols, ci_ok && co0 + 3u < p.ci_end);
    store_acc9_chunk(a4, o + 4u * k_cols, ci_ok && co0 + 4u < p.ci_end);
    store_acc9_chunk(a5, o + 5u * k_cols, ci_ok && co0 + 5u < p.ci_end);
    store_acc9_chunk(a6, o + 6u * k_cols, ci_ok && co0 + 6u < p.ci_end);
    store_acc9_chunk(a7, o + 7u * k_cols, ci_ok && co0 + 7u < p.ci_end);
    store_acc9_chunk(a8, o + 8u * k_cols, ci_ok && co0 + 8u < p.ci_end);
    store_acc9_chunk(a9, o + 9u * k_cols, ci_ok && co0 + 9u < p.ci_end);
    store_acc9_chunk(a10, o + 10u * k_cols, ci_ok && co0 + 10u < p.ci_end);
    store_acc9_chunk(a11, o + 11u * k_cols, ci_ok && co0 + 11u < p.ci_end);
    store_acc9_chunk(a12, o + 12u * k_cols, ci_ok && co0 + 12u < p.ci_end);
    store_acc9_chunk(a13, o + 13u * k_cols, ci_ok && co0 + 13u < p.ci_end);
    store_acc9_chunk(a14, o + 14u * k_cols, ci_ok && co0 + 14u < p.ci_end);
    store_acc9_chunk(a15, o + 15u * k_cols, ci_ok && co0 + 15u < p.ci_end);
}

// The 1x1 weight gradient, dW[co, ci] = sum over (n, pixel) of dy[n, co, pixel] x[n, ci, pixel],
// with dy in the uniform window as above. A lane owns 4 input channels (16 per-lane loads per 4
// pixels) and 16 output channels of the window, so each gathered element feeds 16 FMAs and each
// window element 4. Workgroups of 8 lanes (one SIMD batch: 32 input channels), each summing the
// flat pixels [wid.x chunk, + chunk) of the sample. Grid (pixel parts, ceil(c_in / 32),
// ceil(window channels / 16)).

// dy of the window at flat pixels q .. q + 3 of the plane element e0 (zero past the plane).
fn dyw_flat(e0: u32, q: u32, hw: u32) -> vec4<f32> {
    return vec4<f32>(wuni[e0 >> 2u][e0 & 3u],
                     select(0.0, wuni[(e0 + 1u) >> 2u][(e0 + 1u) & 3u], q + 1u < hw),
                     select(0.0, wuni[(e0 + 2u) >> 2u][(e0 + 2u) & 3u], q + 2u < hw),
                     select(0.0, wuni[(e0 + 3u) >> 2u][(e0 + 3u) & 3u], q + 3u < hw));
}

// Writes (first sample) or adds (later samples) input channels c0 .. c0 + 3 of one output
// channel's row at out[o + c0 ..].
fn store4_chunk(a: vec4<f32>, o: u32, c0: u32, ok: bool) {
    for (var k = 0u; k < 4u; k++) {
        if (ok && c0 + k < p.c_in) {
            var prev = 0.0;
            if (p.accumulate == 1u) {
                prev = out[o + c0 + k];
            }
            out[o + c0 + k] = prev + a[k];
        }
    }
}

@compute @workgroup_size(8)
fn conv2d_bwd_w_k1_ubo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let hw = p.h * p.w;
    let cb = wid.z * WB;
    let q0 = wid.x * p.chunk;
    let q1 = min(q0 + p.chunk, hw);
    let c0 = (wid.y * 8u + li) * 4u;
    let sample = p.block * p.c_in * hw;
    let top = p.c_in - 1u;
    let b0 = sample + min(c0, top) * hw;
    let b1 = sample + min(c0 + 1u, top) * hw;
    let b2 = sample + min(c0 + 2u, top) * hw;
    let b3 = sample + min(c0 + 3u, top) * hw;
    let last = hw - 1u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    for (var q = q0; q < q1; q += PX) {
        // Pixels past the plane repeat the last one; their dy is zero.
        let i1 = min(q + 1u, last);
        let i2 = min(q + 2u, last);
        let i3 = min(q + 3u, last);
        let x0 = vec4<f32>(x[b0 + q], x[b0 + i1], x[b0 + i2], x[b0 + i3]);
        let x1 = vec4<f32>(x[b1 + q], x[b1 + i1], x[b1 + i2], x[b1 + i3]);
        let x2 = vec4<f32>(x[b2 + q], x[b2 + i1], x[b2 + i2], x[b2 + i3]);
        let x3 = vec4<f32>(x[b3 + q], x[b3 + i1], x[b3 + i2], x[b3 + i3]);
        {
            let d = dyw_flat((0u + cb) * p.plane_stride + q, q, hw);
            a0 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((1u + cb) * p.plane_stride + q, q, hw);
            a1 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((2u + cb) * p.plane_stride + q, q, hw);
            a2 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((3u + cb) * p.plane_stride + q, q, hw);
            a3 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((4u + cb) * p.plane_stride + q, q, hw);
            a4 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((5u + cb) * p.plane_stride + q, q, hw);
            a5 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((6u + cb) * p.plane_stride + q, q, hw);
            a6 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((7u + cb) * p.plane_stride + q, q, hw);
            a7 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((8u + cb) * p.plane_stride + q, q, hw);
            a8 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((9u + cb) * p.plane_stride + q, q, hw);
            a9 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((10u + cb) * p.plane_stride + q, q, hw);
            a10 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((11u + cb) * p.plane_stride + q, q, hw);
            a11 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((12u + cb) * p.plane_stride + q, q, hw);
            a12 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((13u + cb) * p.plane_stride + q, q, hw);
            a13 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((14u + cb) * p.plane_stride + q, q, hw);
            a14 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = dyw_flat((15u + cb) * p.plane_stride + q, q, hw);
            a15 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
    }
    let co0 = p.ci_begin + cb;
    let o = (wid.x * p.c_out + co0) * p.c_in;
    store4_chunk(a0, o + 0u * p.c_in, c0, co0 + 0u < p.ci_end);
    store4_chunk(a1, o + 1u * p.c_in, c0, co0 + 1u < p.ci_end);
    store4_chunk(a2, o + 2u * p.c_in, c0, co0 + 2u < p.ci_end);
    store4_chunk(a3, o + 3u * p.c_in, c0, co0 + 3u < p.ci_end);
    store4_chunk(a4, o + 4u * p.c_in, c0, co0 + 4u < p.ci_end);
    store4_chunk(a5, o + 5u * p.c_in, c0, co0 + 5u < p.ci_end);
    store4_chunk(a6, o + 6u * p.c_in, c0, co0 + 6u < p.ci_end);
    store4_chunk(a7, o + 7u * p.c_in, c0, co0 + 7u < p.ci_end);
    store4_chunk(a8, o + 8u * p.c_in, c0, co0 + 8u < p.ci_end);
    store4_chunk(a9, o + 9u * p.c_in, c0, co0 + 9u < p.ci_end);
    store4_chunk(a10, o + 10u * p.c_in, c0, co0 + 10u < p.ci_end);
    store4_chunk(a11, o + 11u * p.c_in, c0, co0 + 11u < p.ci_end);
    store4_chunk(a12, o + 12u * p.c_in, c0, co0 + 12u < p.ci_end);
    store4_chunk(a13, o + 13u * p.c_in, c0, co0 + 13u < p.ci_end);
    store4_chunk(a14, o + 14u * p.c_in, c0, co0 + 14u < p.ci_end);
    store4_chunk(a15, o + 15u * p.c_in, c0, co0 + 15u < p.ci_end);
}

// The planes of x ([n c_in] planes of h w floats) at a stride of plane_stride floats (a multiple
// of 8), each row at a stride of row_stride floats after `border` zero rows and columns,
// zero-filled elsewhere (the weight gradients bind dy here as x, with c_in = its channels and
// h, w = its size). A thread writes 8 consecutive elements of one plane and divides only for the
// first: integer division is a scalar loop over the lanes on CPU drivers.
// Geometry: Gpu::groups_1d(n c_in plane_stride / 8).
@compute @workgroup_size(WG)
fn conv2d_pad_planes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lidx: u32) {
    let i0 = linear_index(wid, nwg, lidx) * 8u;
    if (i0 < p.n * p.c_in * p.plane_stride) {
        let e0 = i0 % p.plane_stride;
        let plane = (i0 / p.plane_stride) * p.h * p.w;
        var y = i32(e0 / p.row_stride) - i32(p.border);
        var c = i32(e0 % p.row_stride) - i32(p.border);
        let last = p.n * p.c_in * p.h * p.w - 1u;
        for (var k = 0u; k < 8u; k++) {
            let inside = y >= 0 && y < i32(p.h) && c >= 0 && c < i32(p.w);
            let src = plane + u32(clamp(y, 0, i32(p.h) - 1)) * p.w + u32(clamp(c, 0, i32(p.w) - 1));
            out[i0 + k] = select(0.0, x[min(src, last)], inside);
            c += 1;
            if (c == i32(p.row_stride) - i32(p.border)) {
                c = -i32(p.border);
                y += 1;
            }
        }
    }
}

// conv2d_pack_weight: the weights of a (possibly transposed) convolution in the order the CPU
// kernels above read them: packed[cb][ci][tap][j] = W[cb * 8 + j][ci][tap], zero past the last
// output channel. flip = 0: W = weight. flip = 1: W is the stride-1 input-gradient
// convolution's weight, W[ci][co][tap] = weight[co][ci][k * k - 1 - tap] (rows c_in, inputs
// c_out). flip = 2: the transpose without the flip, W[ci][co][tap] = weight[co][ci][tap]. Geometry: Gpu::groups_1d(ceil(rows / 8) * 8 * inputs * k * k).
@compute @workgroup_size(WG)
fn conv2d_pack_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lidx: u32) {
    let i = linear_index(wid, nwg, lidx);
    let kk2 = p.kernel * p.kernel;
    var rows = p.c_out;
    var inputs = p.c_in;
    if (p.flip != 0u) {
        rows = p.c_in;
        inputs = p.c_out;
    }
    let width = p.pack_width;
    if (i < ((rows + width - 1u) / width) * width * inputs * kk2) {
        let j = i % width;
        let tap = (i / width) % kk2;
        let ci = (i / (width * kk2)) % inputs;
        let row = (i / (width * kk2 * inputs)) * width + j;
        var v = 0.0;
        if (row < rows) {
            if (p.flip == 1u) {
                v = weight[(ci * p.c_in + row) * kk2 + kk2 - 1u - tap];
            } else if (p.flip == 2u) {
                v = weight[(ci * p.c_in + row) * kk2 + tap];
            } else {
                v = weight[(row * p.c_in + ci) * kk2 + tap];
            }
        }
        out[i] = v;
    }
}
