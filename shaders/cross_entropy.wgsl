// cross_entropy.wgsl: softmax cross-entropy of logits [n_rows, n_classes] against integer labels
// [n_rows], L = (1 / n_rows) sum_r (logsumexp(logits[r, :]) - logits[r, labels[r]]).
// cross_entropy_fwd: one thread per row writes its loss and its logsumexp (the max is subtracted
// first, so large logits do not overflow); the mean is reduce.wgsl's sum of the losses.
// cross_entropy_bwd: one thread per element, dlogits[r, j] = (exp(logits[r, j] - lse[r])
// - [j == labels[r]]) * scale * dloss[0], scale = 1 / n_rows; it reads the forward's lse instead
// of recomputing the row, so it stays O(1) per element for any class count.
// Geometry: Gpu::groups_1d(n_rows) and groups_1d(n_rows * n_classes). CPU twin:
// src/cpu/cross_entropy.rs.

struct CrossEntropyParams {
    n_rows: u32,
    n_classes: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: CrossEntropyParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> dloss: array<f32>;
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(WG)
fn cross_entropy_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = linear_index(wid, nwg, lid);
    if (r < p.n_rows) {
        let row = r * p.n_classes;
        var m = logits[row];
        for (var j = 1u; j < p.n_classes; j++) {
            m = max(m, logits[row + j]);
        }
        var s = 0.0;
        for (var j = 0u; j < p.n_classes; j++) {
            s += exp(logits[row + j] - m);
        }
        let l = m + log(s);
        lse_out[r] = l;
        losses[r] = l - logits[row + labels[r]];
    }
}

@compute @workgroup_size(WG)
fn cross_entropy_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n_rows * p.n_classes) {
        let r = i / p.n_classes;
        let j = i % p.n_classes;
        let target_one = select(0.0, 1.0, j == labels[r]);
        dlogits[i] = (exp(logits[i] - lse[r]) - target_one) * p.scale * dloss[0];
    }
}
