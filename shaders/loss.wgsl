// loss.wgsl: backward of the mean squared error L = mean((pred - target)^2), optionally with a
// weight per sample (importance-sampled timesteps: L = (1 / n) sum_i w[sample(i)] (pred - target)^2).
// mse_bwd: dpred[i] = (2 / n) * w * (pred[i] - target[i]) * dloss[0] with w = 1;
// mse_bwd_weighted: the same with w = weights[i / per_sample] (only it binds weights). The forward
// is sub_fwd then a sum of squares (reduce.wgsl), or per-sample row sums when weighted.
// Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/loss.rs.

struct LossParams {
    n: u32,
    per_sample: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> target_values: array<f32>;
@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> dpred: array<f32>;

fn mse_grad(i: u32, w: f32) -> f32 {
    return (2.0 / f32(p.n)) * w * (pred[i] - target_values[i]) * dloss[0];
}

@compute @workgroup_size(WG)
fn mse_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        dpred[i] = mse_grad(i, 1.0);
    }
}

@compute @workgroup_size(WG)
fn mse_bwd_weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        dpred[i] = mse_grad(i, weights[i / p.per_sample]);
    }
}
