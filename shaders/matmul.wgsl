// matmul.wgsl: batched C[b] = A[b] B[b] (+ bias per column), any transposes through strides.
// Element (m, k) of A[b] is a[b * a_batch + m * a_row + k * a_col]; likewise B with (k, n).
// C is contiguous [batch, M, N]. matmul_fwd_bias adds a bias (length N) per column; matmul_fwd
// has no bias binding (a binding is in an entry point's layout only where it is used);
// matmul_fwd_acc adds the product onto c in place; matmul_fwd_colsum also writes op(B)'s column
// sums (a linear layer's bias gradient beside its weight gradient).
// Geometry: workgroups (ceil(N / 64), ceil(M / 64), batch) of 16 x 16 threads; each thread owns
// a 4 x 4 block of C (rows ty + 16 i, cols tx + 16 j), so the 64 x 64 tile is built from
// 16-deep slices of A and B staged in workgroup memory. Global loads are coalesced along
// whichever axis of A and B is contiguous. CPU twin: src/cpu/matmul.rs.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    _pad_k: u32,
    a_batch: u32,
    a_row: u32,
    a_col: u32,
    _pad0: u32,
    b_batch: u32,
    b_row: u32,
    b_col: u32,
    _pad1: u32,
    // matmul_fwd_ubo: where the dispatch's first batch entry of A and B starts in its window,
    // and of C in c.
    a_off: u32,
    b_off: u32,
    c_off: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> colsum: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

// A thread's 4 x 4 block of C[wid.z] (rows row0 + ty + 16 i, cols col0 + tx + 16 j).
fn fwd_block(wid: vec3<u32>, lid: vec3<u32>, li: u32) -> array<f32, 16> {
    var unused: array<f32, 4>;
    return block(wid, lid, li, &unused, false);
}

// fwd_block; with want_sums, the threads of row ty = 0 also add up their four columns of op(B)
// over all of K into `sums`, in k order (as reduce.wgsl's sum_rows_fwd does).
fn block(wid: vec3<u32>, lid: vec3<u32>, li: u32, sums: ptr<function, array<f32, 4>>,
         want_sums: bool) -> array<f32, 16> {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let a_base = wid.z * p.a_batch;
    let b_base = wid.z * p.b_batch;
    let a_k_fastest = p.a_col == 1u;
    let b_n_fastest = p.b_col == 1u;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * THREADS;
            var kk: u32;
            var mm: u32;
            if (a_k_fastest) {
                kk = idx % TILE_K;
                mm = idx / TILE_K;
            } else {
                mm = idx % TILE_M;
                kk = idx / TILE_M;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var va = 0.0;
            if (gm < p.m && gk < p.k) {
                va = a[a_base + gm * p.a_row + gk * p.a_col];
            }
            tile_a[kk * TILE_M + mm] = va;

            var nn: u32;
            if (b_n_fastest) {
                nn = idx % TILE_N;
                kk = idx / TILE_N;
            } else {
                kk = idx % TILE_K;
                nn = idx / TILE_K;
            }
            let gn = col0 + nn;
            let gk2 = k0 + kk;
            var vb = 0.0;
            if (gn < p.n && gk2 < p.k) {
                vb = b[b_base + gk2 * p.b_row + gn * p.b_col];
            }
            tile_b[kk * TILE_N + nn] = vb;
        }
        workgroupBarrier();
        if (want_sums && lid.y == 0u) {
            for (var kk = 0u; kk < TILE_K; kk++) {
                for (var j = 0u; j < 4u; j++) {
                    (*sums)[j] += tile_b[kk * TILE_N + lid.x + 16u * j];
                }
            }
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = tile_a[kk * TILE_M + lid.y + 16u * i];
                bv[i] = tile_b[kk * TILE_N + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    return acc;
}

fn fwd_store(wid: vec3<u32>, lid: vec3<u32>, acc: array<f32, 16>) {
    store(wid, lid, acc, false);
}

fn store(wid: vec3<u32>, lid: vec3<u32>, acc: array<f32, 16>, accumulate: bool) {
    let c_base = wid.z * p.m * p.n;
    for (var i = 0u; i < 4u; i++) {
        let row = wid.y * TILE_M + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = wid.x * TILE_N + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                let at = c_base + row * p.n + col;
                if (accumulate) {
                    c[at] = c[at] + acc[i * 4u + j];
                } else {
                    c[at] = acc[i * 4u + j];
                }
            }
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn matmul_fwd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    fwd_store(wid, lid, fwd_block(wid, lid, li));
}

// matmul_fwd_acc: the product added onto c in place (a gradient's earlier part, see
// autograd.rs).
@compute @workgroup_size(16, 16, 1)
fn matmul_fwd_acc(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    store(wid, lid, fwd_block(wid, lid, li), true);
}

// matmul_fwd_colsum: matmul_fwd, and colsum[col] = sum over k of op(B)[k, col], written by the
// first row tile's workgroups: a linear layer's weight gradient x^T dy and its bias gradient (the
// column sums of dy) in one pass. Batch 1.
@compute @workgroup_size(16, 16, 1)
fn matmul_fwd_colsum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    var sums: array<f32, 4>;
    let first_rows = wid.y == 0u;
    fwd_store(wid, lid, block(wid, lid, li, &sums, first_rows));
    if (first_rows && lid.y == 0u) {
        for (var j = 0u; j < 4u; j++) {
            let col = wid.x * TILE_N + lid.x + 16u * j;
            if (col < p.n) {
                colsum[col] = sums[j];
            }
        }
    }
}

// matmul_fwd_bias: the same plus bias[col].
@compute @workgroup_size(16, 16, 1)
fn matmul_fwd_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    var acc = fwd_block(wid, lid, li);
    for (var j = 0u; j < 4u; j++) {
        let col = wid.x * TILE_N + lid.x + 16u * j;
        if (col < p.n) {
            let b = bias[col];
            for (var i = 0u; i < 4u; i++) {
                acc[i * 4u + j] += b;
            }
        }
    }
    fwd_store(wid, lid, acc);
}
