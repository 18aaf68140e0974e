// prediction.wgsl: what the model predicts (eps, x0 or v) and the tensors derived from it, per
// element, reading the f32 schedule table of diffusion.wgsl ([T][TABLE_COLS], same columns).
// With abar = alphas_cumprod[t], x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and
// v = sqrt(abar) eps - sqrt(1 - abar) x0 (diffusers' get_velocity):
// prediction_to_eps: eps from x_t and the model output y: y (eps), (sqrt(1 / abar) x_t - y) /
//   sqrt(1 / abar - 1) (x0), sqrt(abar) y + sqrt(1 - abar) x_t (v).
// prediction_to_x0: x0 from x_t and y: sqrt(1 / abar) x_t - sqrt(1 / abar - 1) y (eps), y (x0),
//   sqrt(abar) x_t - sqrt(1 - abar) y (v); clamped to [-1, 1] when clip = 1.
// prediction_target: the training target from x_start (x_in) and the noise (y_in): the noise
//   (eps), x_start (x0), or sqrt(abar) noise - sqrt(1 - abar) x_start (v).
// min_snr_weights: Hang et al. 2023's min-SNR-gamma loss weight of each sample, with
//   snr = abar / (1 - abar): min(snr, gamma) / snr (eps), min(snr, gamma) (x0),
//   min(snr, gamma) / (snr + 1) (v); one weight per timesteps_in entry.
// offset_noise: y_out[i] = y_in[i] + scale z[first_offset + i / per_sample], z the standard
//   normals of (seed, stream): one offset per (sample, channel) shared by its per_sample = H W
//   elements; first_offset = first row * C for rows first.. of a step's batch.
// The table row of element i is timesteps_in[i / per_sample] (a sampling step fills one row for
//   the batch).
// prediction: 0 eps, 1 x0, 2 v. Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/prediction.rs.

const P_TABLE_COLS: u32 = 12u;
const P_COL_SQRT_ALPHAS_CUMPROD: u32 = 0u;
const P_COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD: u32 = 1u;
const P_COL_SQRT_RECIP_ALPHAS_CUMPROD: u32 = 2u;
const P_COL_SQRT_RECIPM1_ALPHAS_CUMPROD: u32 = 3u;
const P_COL_ALPHAS_CUMPROD: u32 = 8u;

struct PredictionParams {
    n: u32,
    per_sample: u32,
    prediction: u32,
    clip: u32,
    seed: u32,
    stream: u32,
    gamma: f32,
    scale: f32,
    first_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PredictionParams;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> x_in: array<f32>;
@group(0) @binding(3) var<storage, read> y_in: array<f32>;
@group(0) @binding(4) var<storage, read> timesteps_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> y_out: array<f32>;

fn table_at(t: u32, col: u32) -> f32 {
    return table[t * P_TABLE_COLS + col];
}

fn row_of(i: u32) -> u32 {
    return timesteps_in[i / p.per_sample];
}

@compute @workgroup_size(WG)
fn prediction_to_eps(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let t = row_of(i);
        let x_t = x_in[i];
        let y = y_in[i];
        var eps = y;
        if (p.prediction == 1u) {
            eps = (table_at(t, P_COL_SQRT_RECIP_ALPHAS_CUMPROD) * x_t - y)
                / table_at(t, P_COL_SQRT_RECIPM1_ALPHAS_CUMPROD);
        } else if (p.prediction == 2u) {
            eps = table_at(t, P_COL_SQRT_ALPHAS_CUMPROD) * y
                + table_at(t, P_COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD) * x_t;
        }
        y_out[i] = eps;
    }
}

@compute @workgroup_size(WG)
fn prediction_to_x0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let t = row_of(i);
        let x_t = x_in[i];
        let y = y_in[i];
        var x0 = y;
        if (p.prediction == 0u) {
            x0 = table_at(t, P_COL_SQRT_RECIP_ALPHAS_CUMPROD) * x_t
                - table_at(t, P_COL_SQRT_RECIPM1_ALPHAS_CUMPROD) * y;
        } else if (p.prediction == 2u) {
            x0 = table_at(t, P_COL_SQRT_ALPHAS_CUMPROD) * x_t
                - table_at(t, P_COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD) * y;
        }
        y_out[i] = select(x0, clamp(x0, -1.0, 1.0), p.clip == 1u);
    }
}

@compute @workgroup_size(WG)
fn prediction_target(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let t = row_of(i);
        let x_start = x_in[i];
        let noise = y_in[i];
        var result = noise;
        if (p.prediction == 1u) {
            result = x_start;
        } else if (p.prediction == 2u) {
            result = table_at(t, P_COL_SQRT_ALPHAS_CUMPROD) * noise
                - table_at(t, P_COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD) * x_start;
        }
        y_out[i] = result;
    }
}

@compute @workgroup_size(WG)
fn min_snr_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let abar = table_at(timesteps_in[i], P_COL_ALPHAS_CUMPROD);
        let snr = abar / (1.0 - abar);
        let clipped = min(snr, p.gamma);
        var w = clipped / snr;
        if (p.prediction == 1u) {
            w = clipped;
        } else if (p.prediction == 2u) {
            w = clipped / (snr + 1.0);
        }
        y_out[i] = w;
    }
}

@compute @workgroup_size(WG)
fn offset_noise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        y_out[i] = y_in[i] + p.scale * random_normal_at(p.seed, p.stream, p.first_offset + i / p.per_sample);
    }
}
