// conv.wgsl: the GPU path of 2-D convolution (NCHW, weight [c_out, c_in, k, k], stride, zero
// padding) as an implicit GEMM: the im2col matrix is never stored; each tile gathers its slice of it.
//   conv2d_fwd:   Y[co, (n, p)]       = W[co, (ci, ky, kx)] * X_col[(ci, ky, kx), (n, p)]
//                 (conv2d_fwd_bias: + bias[co]; two entry points, so a bias-less call binds no
//                 bias; conv2d_fwd_bias_residual: + bias[co] + addend[n, co, p], a residual
//                 connection; conv2d_fwd_bias_shift: + bias[co] + addend[n, co], a ResBlock's
//                 time projection; the epilogue saves the add pass and its dispatch)
//   conv2d_bwd_x: dX[ci, (n, iy, ix)]  = W^T[ci, (co, ky, kx)] * dY_col[(co, ky, kx), (n, iy, ix)]
//                 (conv2d_bwd_x_acc adds it onto `out` in place, see autograd.rs)
//   conv2d_bwd_w: dW_part[z, co, (ci, ky, kx)] = sum over the z-th chunk of (n, p) of
//                 dY[co, (n, p)] * X_col[(ci, ky, kx), (n, p)]   (split-K; a second pass sums
//                 the chunks: deterministic, no float atomics); with has_bias, also
//                 db_part[z, co] = sum over the chunk of dY[co, (n, p)], in the same rows
// Geometry: 16 x 16 threads, 64 x 64 output tiles, 16-deep K slices in workgroup memory, 4 x 4
// outputs per thread (rows ty + 16 i, cols tx + 16 j). Grid: (ceil(cols / 64), ceil(rows / 64),
// z), z = split of K for fwd and bwd_x (each writes its own copy of the output, summed on the
// host's side by sum_rows: small grids get parallelism without atomics), chunk for bwd_w. CPU
// twin: src/cpu/conv.rs.

struct ConvParams {
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
    // bwd_w: (n, p) columns per chunk; fwd and bwd_x: K rows per split (a multiple of 16).
    chunk: u32,
    // bwd_w: floats per row of the partial sums, and where the bias gradient's partial sums
    // start in a row (the weight gradient's start at 0).
    partial_row: u32,
    bias_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> addend: array<f32>;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE] rows of the left matrix
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE] columns of the right matrix

// Staging the 64 x 16 slices: each thread loads 4 elements of each slice per K step. The column
// of the im2col matrix a thread loads stays fixed across K steps (forward and input gradient) or
// its rows do (weight gradient), so pixel coordinates are computed once, and the position along
// K advances by TILE_K with a carry instead of being divided out per element. The next slice is
// loaded into registers while the current one is multiplied, so global latency overlaps the FMAs.

// (channel, tap) of im2col row kk, the tap being ky * kernel + kx.
struct Tap {
    c: u32,
    t: u32,
}

fn tap_of(kk: u32) -> Tap {
    let kk2 = p.kernel * p.kernel;
    return Tap(kk / kk2, kk % kk2);
}

// The tap TILE_K rows further down (TILE_K % kk2 < kk2, so one carry suffices).
fn tap_next(a: Tap) -> Tap {
    let kk2 = p.kernel * p.kernel;
    var c = a.c + TILE_K / kk2;
    var t = a.t + TILE_K % kk2;
    if (t >= kk2) {
        t -= kk2;
        c += 1u;
    }
    return Tap(c, t);
}

// A pixel column of the im2col matrix: the offset of its sample's planes, the coordinates that
// tap (0, 0) reads, and whether the column exists (past the end it reads nothing).
struct Window {
    base: u32,
    y0: i32,
    x0: i32,
    valid: bool,
}

// Output pixel `col` = (n, oy, ox) of the forward convolution.
fn fwd_window(col: u32) -> Window {
    let hw_out = p.h_out * p.w_out;
    let cols = p.n * hw_out;
    let c = min(col, cols - 1u);
    let n = c / hw_out;
    let pix = c % hw_out;
    return Window(
        n * p.c_in * p.h * p.w,
        i32((pix / p.w_out) * p.stride) - i32(p.padding),
        i32((pix % p.w_out) * p.stride) - i32(p.padding),
        col < cols,
    );
}

// The input pixel under tap (ky, kx) of channel c, or 0 in the padding.
fn x_at(win: Window, c: u32, ky: u32, kx: u32) -> f32 {
    let iy = win.y0 + i32(ky);
    let ix = win.x0 + i32(kx);
    if (!win.valid || c >= p.c_in || iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    return x[win.base + (c * p.h + u32(iy)) * p.w + u32(ix)];
}

fn x_at_tap(win: Window, tap: Tap) -> f32 {
    let ky = tap.t / p.kernel;
    return x_at(win, tap.c, ky, tap.t - ky * p.kernel);
}

// Input pixel `col` = (n, iy, ix) of the input gradient: y0, x0 are iy + padding, ix + padding.
fn bwd_x_window(col: u32) -> Window {
    let hw = p.h * p.w;
    let cols = p.n * hw;
    let c = min(col, cols - 1u);
    let n = c / hw;
    let pix = c % hw;
    return Window(
        n * p.c_out * p.h_out * p.w_out,
        i32(pix / p.w) + i32(p.padding),
        i32(pix % p.w) + i32(p.padding),
        col < cols,
    );
}

// The output gradient that the window's input pixel receives through `tap` of output channel
// tap.c, or 0 where no output pixel maps there.
fn dy_at(win: Window, tap: Tap) -> f32 {
    let ky = tap.t / p.kernel;
    let ty = win.y0 - i32(ky);
    let tx = win.x0 - i32(tap.t - ky * p.kernel);
    if (!win.valid || tap.c >= p.c_out || ty < 0 || tx < 0) {
        return 0.0;
    }
    var oy = u32(ty);
    var ox = u32(tx);
    if (p.stride != 1u) {
        if (oy % p.stride != 0u || ox % p.stride != 0u) {
            return 0.0;
        }
        oy /= p.stride;
        ox /= p.stride;
    }
    if (oy >= p.h_out || ox >= p.w_out) {
        return 0.0;
    }
    return dy[win.base + (tap.c * p.h_out + oy) * p.w_out + ox];
}

fn tile_product(lid: vec3<u32>, kk: u32, acc: ptr<function, array<f32, 16>>) {
    var av: array<f32, 4>;
    var bv: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) {
        av[i] = tile_a[kk * TILE + lid.y + 16u * i];
        bv[i] = tile_b[kk * TILE + lid.x + 16u * i];
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            (*acc)[i * 4u + j] = fma(av[i], bv[j], (*acc)[i * 4u + j]);
        }
    }
}

// The 16 K steps of one staged slice pair.
fn tile_products(lid: vec3<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        tile_product(lid, kk, acc);
    }
}

// The forward GEMM of one thread: its 4 x 4 block of split wid.z's partial product (rows
// row0 + ty + 16 i, columns col0 + tx + 16 j), without the bias.
fn fwd_block(wid: vec3<u32>, lid: vec3<u32>, li: u32) -> array<f32, 16> {
    let k_total = p.c_in * p.kernel * p.kernel;
    let cols = p.n * p.h_out * p.w_out;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // Split z of the K axis (p.chunk deep, a multiple of TILE_K; one split covers all of K).
    let k_begin = wid.z * p.chunk;
    let k_end = min(k_begin + p.chunk, k_total);
    // Weights: rows li / 16 + 16 r at k li % 16 (consecutive threads walk the contiguous k).
    // Image: column li % 64 (consecutive threads walk pixels) at k li / 64 + 4 r.
    let ka = li % TILE_K;
    let kb = li / TILE;
    let win = fwd_window(col0 + li % TILE);
    var tap_c: array<u32, 4>;
    var tap_t: array<u32, 4>;
    var ra: array<f32, 4>;
    var rb: array<f32, 4>;
    for (var r = 0u; r < 4u; r++) {
        let tap = tap_of(k_begin + kb + 4u * r);
        tap_c[r] = tap.c;
        tap_t[r] = tap.t;
        let co = row0 + li / TILE_K + 16u * r;
        ra[r] = 0.0;
        if (co < p.c_out && k_begin + ka < k_total) {
            ra[r] = weight[co * k_total + k_begin + ka];
        }
        rb[r] = x_at_tap(win, tap);
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    // Only the last split can end inside a slice, where K itself ends: the taps past K read 0.
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            tile_a[ka * TILE + li / TILE_K + 16u * r] = ra[r];
            tile_b[(kb + 4u * r) * TILE + li % TILE] = rb[r];
        }
        workgroupBarrier();
        let k1 = k0 + TILE_K;
        if (k1 < k_end) {
            for (var r = 0u; r < 4u; r++) {
                let tap = tap_next(Tap(tap_c[r], tap_t[r]));
                tap_c[r] = tap.c;
                tap_t[r] = tap.t;
                let co = row0 + li / TILE_K + 16u * r;
                ra[r] = 0.0;
                if (co < p.c_out && k1 + ka < k_total) {
                    ra[r] = weight[co * k_total + k1 + ka];
                }
                rb[r] = x_at_tap(win, tap);
            }
        }
        tile_products(lid, &acc);
        workgroupBarrier();
    }
    return acc;
}

// Stores a thread's block; split z writes its own copy of y (summed by the host's sum_rows).
fn fwd_store(wid: vec3<u32>, lid: vec3<u32>, acc: array<f32, 16>) {
    let cols = p.n * p.h_out * p.w_out;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let hw_out = p.h_out * p.w_out;
    let split = wid.z * cols * p.c_out;
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + lid.x + 16u * j;
        if (col < cols) {
            let base = split + (col / hw_out) * p.c_out * hw_out + col % hw_out;
            for (var i = 0u; i < 4u; i++) {
                let co = row0 + lid.y + 16u * i;
                if (co < p.c_out) {
                    out[base + co * hw_out] = acc[i * 4u + j];
                }
            }
        }
    }
}

// conv2d_fwd: a convolution without bias (the bias binding is not in its layout).
@compute @workgroup_size(16, 16, 1)
fn conv2d_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    fwd_store(wid, lid, fwd_block(wid, lid, li));
}

// conv2d_fwd_bias: the same plus bias[co], added by split 0 only.
@compute @workgroup_size(16, 16, 1)
fn conv2d_fwd_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    var acc = fwd_block(wid, lid, li);
    if (wid.z == 0u) {
        for (var i = 0u; i < 4u; i++) {
            let co = wid.y * TILE + lid.y + 16u * i;
            if (co < p.c_out) {
                let b = bias[co];
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += b;
                }
            }
        }
    }
    fwd_store(wid, lid, acc);
}

// conv2d_fwd_bias_residual: conv2d_fwd_bias, then + addend[n, co, oy, ox] (same shape as the
// output), both by split 0 only, in the order an add after the convolution would take.
@compute @workgroup_size(16, 16, 1)
fn conv2d_fwd_bias_residual(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    fwd_store(wid, lid, fwd_epilogue(wid, lid, fwd_block(wid, lid, li), false));
}

// conv2d_fwd_bias_shift: conv2d_fwd_bias, then + addend[n, co] at every pixel of sample n, both
// by split 0 only.
@compute @workgroup_size(16, 16, 1)
fn conv2d_fwd_bias_shift(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    fwd_store(wid, lid, fwd_epilogue(wid, lid, fwd_block(wid, lid, li), true));
}

// Split 0's bias[co] + addend: addend[n, co] when `per_channel`, else addend[n, co, oy, ox].
fn fwd_epilogue(wid: vec3<u32>, lid: vec3<u32>, block: array<f32, 16>,
                per_channel: bool) -> array<f32, 16> {
    var acc = block;
    if (wid.z != 0u) {
        return acc;
    }
    let hw_out = p.h_out * p.w_out;
    let cols = p.n * hw_out;
    for (var i = 0u; i < 4u; i++) {
        let co = wid.y * TILE + lid.y + 16u * i;
        if (co < p.c_out) {
            let b = bias[co];
            for (var j = 0u; j < 4u; j++) {
                let col = wid.x * TILE + lid.x + 16u * j;
                if (col < cols) {
                    let channel = (col / hw_out) * p.c_out + co;
                    let at = select(channel * hw_out + col % hw_out, channel, per_channel);
                    acc[i * 4u + j] = acc[i * 4u + j] + b + addend[at];
                }
            }
        }
    }
    return acc;
}

@compute @workgroup_size(16, 16, 1)
fn conv2d_bwd_x(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    bwd_x(wid, lid, li, false);
}

// conv2d_bwd_x_acc: the input gradient added onto `out` (the gradient x already has from its
// other uses), one split only, so the autograd's separate add pass is not needed.
@compute @workgroup_size(16, 16, 1)
fn conv2d_bwd_x_acc(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    bwd_x(wid, lid, li, true);
}

fn bwd_x(wid: vec3<u32>, lid: vec3<u32>, li: u32, accumulate: bool) {
    let kk2 = p.kernel * p.kernel;
    let k_total = p.c_out * kk2;
    let cols = p.n * p.h * p.w;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // W^T[ci, (co, ky, kx)] = weight[co, ci, ky, kx]: rows ci = li / 16 + 16 r, k li % 16, so a
    // thread's k (one tap) is shared by its four rows.
    let k_begin = wid.z * p.chunk;
    let k_end = min(k_begin + p.chunk, k_total);
    let ka = li % TILE_K;
    let kb = li / TILE;
    let win = bwd_x_window(col0 + li % TILE);
    var tap_a = tap_of(k_begin + ka);
    var tap_c: array<u32, 4>;
    var tap_t: array<u32, 4>;
    var ra: array<f32, 4>;
    var rb: array<f32, 4>;
    for (var r = 0u; r < 4u; r++) {
        let tap = tap_of(k_begin + kb + 4u * r);
        tap_c[r] = tap.c;
        tap_t[r] = tap.t;
        let ci = row0 + li / TILE_K + 16u * r;
        ra[r] = 0.0;
        if (ci < p.c_in && tap_a.c < p.c_out) {
            ra[r] = weight[(tap_a.c * p.c_in + ci) * kk2 + tap_a.t];
        }
        rb[r] = dy_at(win, tap);
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            tile_a[ka * TILE + li / TILE_K + 16u * r] = ra[r];
            tile_b[(kb + 4u * r) * TILE + li % TILE] = rb[r];
        }
        workgroupBarrier();
        if (k0 + TILE_K < k_end) {
            tap_a = tap_next(tap_a);
            for (var r = 0u; r < 4u; r++) {
                let tap = tap_next(Tap(tap_c[r], tap_t[r]));
                tap_c[r] = tap.c;
                tap_t[r] = tap.t;
                let ci = row0 + li / TILE_K + 16u * r;
                ra[r] = 0.0;
                if (ci < p.c_in && tap_a.c < p.c_out) {
                    ra[r] = weight[(tap_a.c * p.c_in + ci) * kk2 + tap_a.t];
                }
                rb[r] = dy_at(win, tap);
            }
        }
        tile_products(lid, &acc);
        workgroupBarrier();
    }
    let hw = p.h * p.w;
    let split = wid.z * cols * p.c_in;
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + lid.x + 16u * j;
        if (col < cols) {
            let base = split + (col / hw) * p.c_in * hw + col % hw;
            for (var i = 0u; i < 4u; i++) {
                let ci = row0 + lid.y + 16u * i;
                if (ci < p.c_in) {
                    let at = base + ci * hw;
                    if (accumulate) {
                        out[at] = out[at] + acc[i * 4u + j];
                    } else {
                        out[at] = acc[i * 4u + j];
                    }
                }
            }
        }
    }
}

// A position (n, pix) along the weight gradient's K axis, the flattened (sample, output pixel).
struct Sample {
    n: u32,
    pix: u32,
}

fn sample_of(np: u32) -> Sample {
    let hw_out = p.h_out * p.w_out;
    return Sample(np / hw_out, np % hw_out);
}

// TILE_K positions further on (planes smaller than TILE_K carry more than once).
fn sample_next(s: Sample) -> Sample {
    let hw_out = p.h_out * p.w_out;
    var next = Sample(s.n, s.pix + TILE_K);
    while (next.pix >= hw_out) {
        next.pix -= hw_out;
        next.n += 1u;
    }
    return next;
}

fn sample_window(s: Sample) -> Window {
    let oy = s.pix / p.w_out;
    return Window(
        s.n * p.c_in * p.h * p.w,
        i32(oy * p.stride) - i32(p.padding),
        i32((s.pix - oy * p.w_out) * p.stride) - i32(p.padding),
        true,
    );
}

@compute @workgroup_size(16, 16, 1)
fn conv2d_bwd_w(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let k_cols = p.c_in * p.kernel * p.kernel;
    let hw_out = p.h_out * p.w_out;
    let np_total = p.n * hw_out;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let np_begin = wid.z * p.chunk;
    let np_end = min(np_begin + p.chunk, np_total);
    // dY[co, (n, p)]: rows co = li / 16 + 16 r at k li % 16 (contiguous pixels). X_col: columns
    // (ci, ky, kx) = li / 16 + 16 r, fixed for the whole pass, at k li % 16.
    let kt = li % TILE_K;
    var s = sample_of(np_begin + kt);
    var ci: array<u32, 4>;
    var ky: array<u32, 4>;
    var kx: array<u32, 4>;
    var ra: array<f32, 4>;
    var rb: array<f32, 4>;
    var win = sample_window(s);
    for (var r = 0u; r < 4u; r++) {
        let col = col0 + li / TILE_K + 16u * r;
        let tap = tap_of(col);
        ci[r] = select(p.c_in, tap.c, col < k_cols); // c_in reads nothing
        ky[r] = tap.t / p.kernel;
        kx[r] = tap.t % p.kernel;
        let co = row0 + li / TILE_K + 16u * r;
        let here = np_begin + kt < np_end;
        ra[r] = 0.0;
        rb[r] = 0.0;
        if (here && co < p.c_out) {
            ra[r] = dy[(s.n * p.c_out + co) * hw_out + s.pix];
        }
        if (here) {
            rb[r] = x_at(win, ci[r], ky[r], kx[r]);
        }
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    // The bias gradient rides along: the first column tile's threads of column 0 add up the dy
    // rows they stage anyway.
    let sums_bias = p.has_bias == 1u && wid.x == 0u && lid.x == 0u;
    var bias_acc = vec4<f32>(0.0);
    for (var k0 = np_begin; k0 < np_end; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            tile_a[kt * TILE + li / TILE_K + 16u * r] = ra[r];
            tile_b[kt * TILE + li / TILE_K + 16u * r] = rb[r];
        }
        workgroupBarrier();
        if (sums_bias) {
            for (var kk = 0u; kk < TILE_K; kk++) {
                let t = kk * TILE + lid.y;
                bias_acc += vec4<f32>(tile_a[t], tile_a[t + 16u], tile_a[t + 32u], tile_a[t + 48u]);
            }
        }
        let k1 = k0 + TILE_K;
        if (k1 < np_end) {
            let here = k1 + kt < np_end;
            if (here) {
                s = sample_next(s);
                win = sample_window(s);
            }
            for (var r = 0u; r < 4u; r++) {
                let co = row0 + li / TILE_K + 16u * r;
                ra[r] = 0.0;
                rb[r] = 0.0;
                if (here && co < p.c_out) {
                    ra[r] = dy[(s.n * p.c_out + co) * hw_out + s.pix];
                }
                if (here) {
                    rb[r] = x_at(win, ci[r], ky[r], kx[r]);
                }
            }
        }
        tile_products(lid, &acc);
        workgroupBarrier();
    }
    let part = wid.z * p.partial_row;
    for (var i = 0u; i < 4u; i++) {
        let co = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (co < p.c_out && col < k_cols) {
                out[part + co * k_cols + col] = acc[i * 4u + j];
            }
        }
        if (sums_bias && co < p.c_out) {
            out[part + p.bias_offset + co] = bias_acc[i];
        }
    }
}

// conv2d_bwd_bias_partial: out[z, co] = sum of dy[n, co, p] over the z-th chunk of (n, p);
// one thread per (co, z). The chunks are summed by reduce.wgsl's sum_rows_fwd. The loop steps
// (n, p) by carrying p into n rather than dividing per element (an integer division is a
// scalar loop on CPU drivers).
@compute @workgroup_size(WG)
fn conv2d_bwd_bias_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lidx: u32) {
    let i = linear_index(wid, nwg, lidx);
    let hw_out = p.h_out * p.w_out;
    let np_total = p.n * hw_out;
    let n_chunks = (np_total + p.chunk - 1u) / p.chunk;
    if (i < p.c_out * n_chunks) {
        let z = i / p.c_out;
        let co = i % p.c_out;
        let start = z * p.chunk;
        var q = start % hw_out;
        var idx = ((start / hw_out) * p.c_out + co) * hw_out + q;
        var acc = 0.0;
        for (var np = start; np < min(start + p.chunk, np_total); np++) {
            acc += dy[idx];
            q += 1u;
            idx += 1u;
            if (q == hw_out) {
                q = 0u;
                idx += (p.c_out - 1u) * hw_out;
            }
        }
        out[z * p.c_out + co] = acc;
    }
}

