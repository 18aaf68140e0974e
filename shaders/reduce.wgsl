// reduce.wgsl: deterministic reductions without atomics, in two passes.
// sum_partial: each of G workgroups (G <= 1024) folds a grid-stride slice of x (or of x^2 when
//   squares = 1) into partials[group] with a fixed tree, so the result never depends on timing.
// sum_final: one workgroup folds the G partials into out[out_index] = finish(sum), where finish is
//   scale * sum (finish_sqrt = 0) or sqrt(sum) (finish_sqrt = 1, for the gradient norm).
// sum_rows_fwd: out[j] = sum_i x[i * cols + j], one thread per column (bias gradients).
//   sum_rows_acc: out[j] += that sum, in place (a gradient's earlier part, see autograd.rs).
//   sum_rows_multi: up to four row sums in one dispatch (sums nothing reads right away, see
//   gpu/deferred.rs).
// row_sums_fwd: out[r] = scale * sum_j f(x[r * cols + j]), f = x or x^2 (squares = 1), one thread
//   per row (per-sample losses: a row is one sample, and there are few).
// CPU twin: src/cpu/reduce.rs.

struct ReduceParams {
    n: u32,
    squares: u32,
    finish_sqrt: u32,
    out_index: u32,
    scale: f32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
    // sum_rows_multi: columns and rows of each slot's x (0 columns: the slot is unused).
    slot_cols: vec4<u32>,
    slot_rows: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> x0: array<f32>;
@group(0) @binding(4) var<storage, read> x1: array<f32>;
@group(0) @binding(5) var<storage, read> x2: array<f32>;
@group(0) @binding(6) var<storage, read> x3: array<f32>;
@group(0) @binding(7) var<storage, read_write> out0: array<f32>;
@group(0) @binding(8) var<storage, read_write> out1: array<f32>;
@group(0) @binding(9) var<storage, read_write> out2: array<f32>;
@group(0) @binding(10) var<storage, read_write> out3: array<f32>;

var<workgroup> scratch: array<f32, 256>;

fn tree_sum(lid: u32, value: f32) -> f32 {
    scratch[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
        workgroupBarrier();
    }
    return scratch[0];
}

@compute @workgroup_size(WG)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    let stride = nwg.x * WG;
    for (var i = wid.x * WG + lid; i < p.n; i += stride) {
        let v = x[i];
        acc += select(v, v * v, p.squares == 1u);
    }
    let total = tree_sum(lid, acc);
    if (lid == 0u) {
        out[wid.x] = total;
    }
}

@compute @workgroup_size(WG)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += x[i];
    }
    let total = tree_sum(lid, acc);
    if (lid == 0u) {
        out[p.out_index] = select(p.scale * total, sqrt(total), p.finish_sqrt == 1u);
    }
}

@compute @workgroup_size(WG)
fn sum_rows_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let j = linear_index(wid, nwg, lid);
    if (j < p.cols) {
        out[j] = column_sum(j);
    }
}

// scale * the sum of column j of x viewed as [n / cols, cols], rows in order.
fn column_sum(j: u32) -> f32 {
    let rows = p.n / p.cols;
    var acc = 0.0;
    for (var i = 0u; i < rows; i++) {
        acc += x[i * p.cols + j];
    }
    return p.scale * acc;
}

fn slot_load(slot: u32, i: u32) -> f32 {
    switch slot {
        case 0u: { return x0[i]; }
        case 1u: { return x1[i]; }
        case 2u: { return x2[i]; }
        default: { return x3[i]; }
    }
}

fn slot_store(slot: u32, j: u32, v: f32) {
    switch slot {
        case 0u: { out0[j] = v; }
        case 1u: { out1[j] = v; }
        case 2u: { out2[j] = v; }
        default: { out3[j] = v; }
    }
}

// sum_rows_multi: up to four sum_rows_fwd in one dispatch, slot s summing x_s's slot_rows[s]
// rows into out_s, in the same order (the same bits); one thread per column of them all.
@compute @workgroup_size(WG)
fn sum_rows_multi(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    var j = linear_index(wid, nwg, lid);
    for (var s = 0u; s < 4u; s++) {
        let cols = p.slot_cols[s];
        if (j < cols) {
            var acc = 0.0;
            for (var i = 0u; i < p.slot_rows[s]; i++) {
                acc += slot_load(s, i * cols + j);
            }
            slot_store(s, j, acc);
            return;
        }
        j -= cols;
    }
}

// sum_rows_acc: sum_rows_fwd added onto `out` (a gradient's earlier part), after the sum.
@compute @workgroup_size(WG)
fn sum_rows_acc(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let j = linear_index(wid, nwg, lid);
    if (j < p.cols) {
        out[j] = out[j] + column_sum(j);
    }
}

@compute @workgroup_size(WG)
fn row_sums_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = linear_index(wid, nwg, lid);
    let rows = p.n / p.cols;
    if (r < rows) {
        var acc = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            let v = x[r * p.cols + j];
            acc += select(v, v * v, p.squares == 1u);
        }
        out[r] = p.scale * acc;
    }
}
