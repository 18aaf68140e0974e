// optim.wgsl: the optimiser over flat parameter buffers, one thread per parameter.
// adam_step: clip_scale = min(1, max_norm / (norm + 1e-6)) from the global gradient norm that
//   reduce.wgsl left on the GPU (no readback), then Adam with bias corrections (and decoupled
//   weight decay when weight_decay > 0). lr, bias_correction1/2 are set per step by the host.
// ema_update: ema = decay * ema + (1 - decay) * param.
// Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/optim.rs.

struct OptimParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    max_norm: f32,
    weight_decay: f32,
    decay: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> grad_norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<f32>;
@group(0) @binding(6) var<storage, read> source_param: array<f32>;
@group(0) @binding(7) var<storage, read_write> ema: array<f32>;

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        var clip_scale = 1.0;
        if (p.max_norm > 0.0) {
            clip_scale = min(1.0, p.max_norm / (grad_norm[0] + 1e-6));
        }
        let g = grad[i] * clip_scale;
        let m = p.beta1 * exp_avg[i] + (1.0 - p.beta1) * g;
        let v = p.beta2 * exp_avg_sq[i] + (1.0 - p.beta2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let m_hat = m / p.bias_correction1;
        let v_hat = v / p.bias_correction2;
        var w = param[i];
        w = w - p.lr * p.weight_decay * w;
        param[i] = w - p.lr * m_hat / (sqrt(v_hat) + p.eps);
    }
}

@compute @workgroup_size(WG)
fn ema_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        ema[i] = p.decay * ema[i] + (1.0 - p.decay) * source_param[i];
    }
}
