// embedding.wgsl: rows of a table [n_rows, dim] picked by u32 indices [batch].
// embedding_fwd: out[b, j] = table[index[b], j]; one thread per output element.
// embedding_bwd: dtable[r, j] = sum over b with index[b] == r of dy[b, j]; one thread per table
//   element looping over the batch in order: no float atomics, deterministic.
// one_hot: out[r, b] = 1 if index[b] == r else 0, so that dtable = one_hot * dy is a matmul:
//   the same deterministic sum, much faster than the loop where loops are costly (lavapipe).
// Geometry: Gpu::groups_1d(elements). CPU twin: src/cpu/embedding.rs.

struct EmbeddingParams {
    batch: u32,
    dim: u32,
    n_rows: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn embedding_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.batch * p.dim) {
        let b = i / p.dim;
        let j = i % p.dim;
        out[i] = table[index[b] * p.dim + j];
    }
}

@compute @workgroup_size(WG)
fn embedding_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n_rows * p.dim) {
        let r = i / p.dim;
        let j = i % p.dim;
        var acc = 0.0;
        for (var b = 0u; b < p.batch; b++) {
            if (index[b] == r) {
                acc += dy[b * p.dim + j];
            }
        }
        out[i] = acc;
    }
}

@compute @workgroup_size(WG)
fn one_hot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n_rows * p.batch) {
        out[i] = select(0.0, 1.0, index[i % p.batch] == i / p.batch);
    }
}
