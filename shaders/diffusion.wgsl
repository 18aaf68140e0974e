// diffusion.wgsl: the forward noising and one reverse step, per element, reading an f32 copy of
// the f64 schedule tables (src/diffusion/schedule.rs), laid out [T][TABLE_COLS].
// q_sample: x_t = sqrt_alphas_cumprod[t_b] * x_start + sqrt_one_minus_alphas_cumprod[t_b] * noise,
//   with t_b the timestep of sample b = i / per_sample.
// p_sample: one step x_t -> x_{t-1} at a timestep t shared by the batch, from the predicted noise:
//   pred_xstart = sqrt_recip_alphas_cumprod[t] x_t - sqrt_recipm1_alphas_cumprod[t] eps
//   (clipped to [-1, 1] when clip_denoised = 1), mean = coef1[t] pred_xstart + coef2[t] x_t,
//   variance = betas[t] (variance_kind 0) or posterior_variance[t] (1), and no noise at t = 0.
// ddim_step: one DDIM step (improved-diffusion's ddim_sample) from alphas_cumprod[t] to
//   alphas_cumprod_prev[t] of the (possibly respaced) table: pred_xstart as above (clipped when
//   asked), eps re-derived from it, sigma = eta sqrt((1 - abar_prev) / (1 - abar))
//   sqrt(1 - abar / abar_prev), x_prev = pred_xstart sqrt(abar_prev)
//   + sqrt(max(1 - abar_prev - sigma^2, 0)) eps + sigma z. eta = 0 is deterministic; at t = 0,
//   abar_prev = 1 makes sigma 0. CPU twin: src/cpu/ddim.rs.
// p_sample_learned: p_sample with the learned-range variance of IDDPM: the model's extra
//   channels v in [-1, 1] give log sigma^2 = frac log(beta_t) + (1 - frac)
//   posterior_log_variance_clipped[t], frac = (v + 1) / 2.
// The steps' fresh noise for element i is draw offset + i of (seed, stream), offset 0 for a whole
//   chain and the chunk's first element for a chunk of one (random_normal_from in common.wgsl).
// fill_timesteps: timesteps[i] = t, so the model sees the sampling step without an upload.
// Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/diffusion.rs.

const TABLE_COLS: u32 = 12u;
const COL_SQRT_ALPHAS_CUMPROD: u32 = 0u;
const COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD: u32 = 1u;
const COL_SQRT_RECIP_ALPHAS_CUMPROD: u32 = 2u;
const COL_SQRT_RECIPM1_ALPHAS_CUMPROD: u32 = 3u;
const COL_POSTERIOR_MEAN_COEF1: u32 = 4u;
const COL_POSTERIOR_MEAN_COEF2: u32 = 5u;
const COL_BETAS: u32 = 6u;
const COL_POSTERIOR_VARIANCE: u32 = 7u;
const COL_ALPHAS_CUMPROD: u32 = 8u;
const COL_ALPHAS_CUMPROD_PREV: u32 = 9u;
const COL_LOG_BETAS: u32 = 10u;
const COL_POSTERIOR_LOG_VARIANCE_CLIPPED: u32 = 11u;

struct DiffusionParams {
    n: u32,
    per_sample: u32,
    t: u32,
    clip_denoised: u32,
    variance_kind: u32,
    seed: u32,
    stream: u32,
    eta: f32,
    // The noise index of element 0 (64-bit, lo then hi): a chunk of a chain draws the noise the
    // whole chain would give its elements.
    offset_lo: u32,
    offset_hi: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: DiffusionParams;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> x_in: array<f32>;
@group(0) @binding(3) var<storage, read> noise_in: array<f32>;
@group(0) @binding(4) var<storage, read> timesteps_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> timesteps_out: array<u32>;
@group(0) @binding(7) var<storage, read> v_in: array<f32>;

fn coef(t: u32, col: u32) -> f32 {
    return table[t * TABLE_COLS + col];
}

@compute @workgroup_size(WG)
fn q_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let t = timesteps_in[i / p.per_sample];
        x_out[i] = coef(t, COL_SQRT_ALPHAS_CUMPROD) * x_in[i]
            + coef(t, COL_SQRT_ONE_MINUS_ALPHAS_CUMPROD) * noise_in[i];
    }
}

// pred_xstart from x_t and the predicted noise at table row t, clipped to [-1, 1] when asked.
fn pred_xstart_at(t: u32, x_t: f32, eps: f32) -> f32 {
    let x0 = coef(t, COL_SQRT_RECIP_ALPHAS_CUMPROD) * x_t - coef(t, COL_SQRT_RECIPM1_ALPHAS_CUMPROD) * eps;
    return select(x0, clamp(x0, -1.0, 1.0), p.clip_denoised == 1u);
}

// The mean of p(x_{t-1} | x_t): the posterior mean q(x_{t-1} | x_t, pred_xstart).
fn model_mean_at(t: u32, x_t: f32, eps: f32) -> f32 {
    return coef(t, COL_POSTERIOR_MEAN_COEF1) * pred_xstart_at(t, x_t, eps) + coef(t, COL_POSTERIOR_MEAN_COEF2) * x_t;
}

@compute @workgroup_size(WG)
fn p_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        var out = model_mean_at(p.t, x_in[i], noise_in[i]);
        if (p.t > 0u) {
            let variance = select(coef(p.t, COL_BETAS), coef(p.t, COL_POSTERIOR_VARIANCE),
                                  p.variance_kind == 1u);
            out += sqrt(variance) * random_normal_from(p.seed, p.stream, vec2<u32>(p.offset_lo, p.offset_hi), i);
        }
        x_out[i] = out;
    }
}

@compute @workgroup_size(WG)
fn p_sample_learned(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        var out = model_mean_at(p.t, x_in[i], noise_in[i]);
        if (p.t > 0u) {
            let frac = (v_in[i] + 1.0) * 0.5;
            let log_variance = frac * coef(p.t, COL_LOG_BETAS)
                + (1.0 - frac) * coef(p.t, COL_POSTERIOR_LOG_VARIANCE_CLIPPED);
            out += exp(0.5 * log_variance) * random_normal_from(p.seed, p.stream, vec2<u32>(p.offset_lo, p.offset_hi), i);
        }
        x_out[i] = out;
    }
}

@compute @workgroup_size(WG)
fn ddim_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let x_t = x_in[i];
        let abar = coef(p.t, COL_ALPHAS_CUMPROD);
        let abar_prev = coef(p.t, COL_ALPHAS_CUMPROD_PREV);
        let sqrt_recip = coef(p.t, COL_SQRT_RECIP_ALPHAS_CUMPROD);
        let sqrt_recipm1 = coef(p.t, COL_SQRT_RECIPM1_ALPHAS_CUMPROD);
        let pred_xstart = pred_xstart_at(p.t, x_t, noise_in[i]);
        let eps = (sqrt_recip * x_t - pred_xstart) / sqrt_recipm1;
        let sigma = p.eta * sqrt((1.0 - abar_prev) / (1.0 - abar)) * sqrt(1.0 - abar / abar_prev);
        var out = pred_xstart * sqrt(abar_prev) + sqrt(max(1.0 - abar_prev - sigma * sigma, 0.0)) * eps;
        if (sigma > 0.0) {
            out += sigma * random_normal_from(p.seed, p.stream, vec2<u32>(p.offset_lo, p.offset_hi), i);
        }
        x_out[i] = out;
    }
}

@compute @workgroup_size(WG)
fn fill_timesteps(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        timesteps_out[i] = p.t;
    }
}
