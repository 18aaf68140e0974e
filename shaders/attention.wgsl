// attention.wgsl: numerically stable softmax over the last axis of [rows, cols], with a scale
// folded in (attention's 1 / sqrt(C)): y = softmax(scale * x).
// softmax_fwd: one workgroup per row: the row max, the sum of exp(scale x - max), then y.
// softmax_bwd: one workgroup per row: dx = scale * y * (dy - sum_j dy_j y_j).
// Geometry: rows workgroups (split over y past 65,535) of WG threads. CPU twin:
// src/cpu/attention.rs.

struct SoftmaxParams {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> scratch: array<f32, 256>;

fn tree(lid: u32, value: f32, take_max: bool) -> f32 {
    scratch[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            let other = scratch[lid + stride];
            scratch[lid] = select(scratch[lid] + other, max(scratch[lid], other), take_max);
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    let len = select(0u, p.cols, row < p.rows);
    let base = row * p.cols;
    var m = -3.0e38;
    for (var j = lid; j < len; j += WG) {
        m = max(m, p.scale * x[base + j]);
    }
    m = tree(lid, m, true);
    var s = 0.0;
    for (var j = lid; j < len; j += WG) {
        s += exp(p.scale * x[base + j] - m);
    }
    s = tree(lid, s, false);
    for (var j = lid; j < len; j += WG) {
        out[base + j] = exp(p.scale * x[base + j] - m) / s;
    }
}

@compute @workgroup_size(WG)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    let len = select(0u, p.cols, row < p.rows);
    let base = row * p.cols;
    // x holds the forward output y here.
    var d = 0.0;
    for (var j = lid; j < len; j += WG) {
        d += dy[base + j] * x[base + j];
    }
    d = tree(lid, d, false);
    for (var j = lid; j < len; j += WG) {
        out[base + j] = p.scale * x[base + j] * (dy[base + j] - d);
    }
}

// softmax_fwd_rows / softmax_bwd_rows: one thread per row, for short rows (attention over a
// 7x7 or 8x8 map has 49 or 64 columns), where a workgroup per row would leave most of its
// threads idle and pay three barrier trees. Same maths as above.
@compute @workgroup_size(WG)
fn softmax_fwd_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = linear_index(wid, nwg, lid);
    if (row < p.rows) {
        let base = row * p.cols;
        var m = -3.0e38;
        for (var j = 0u; j < p.cols; j++) {
            m = max(m, p.scale * x[base + j]);
        }
        var s = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            s += exp(p.scale * x[base + j] - m);
        }
        for (var j = 0u; j < p.cols; j++) {
            out[base + j] = exp(p.scale * x[base + j] - m) / s;
        }
    }
}

@compute @workgroup_size(WG)
fn softmax_bwd_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = linear_index(wid, nwg, lid);
    if (row < p.rows) {
        let base = row * p.cols;
        var d = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            d += dy[base + j] * x[base + j];
        }
        for (var j = 0u; j < p.cols; j++) {
            out[base + j] = p.scale * x[base + j] * (dy[base + j] - d);
        }
    }
}
