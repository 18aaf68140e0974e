// vlb.wgsl: IDDPM's variational-bound term per element, in bits, and its gradient with
// respect to the model's variance channels v (the mean is treated as a constant: the hybrid
// loss stops its gradient inside this term). improved-diffusion's _vb_terms_bpd:
//   model mean from pred_xstart = sqrt_recip_alphas_cumprod x_t - sqrt_recipm1 eps (no clipping),
//   model log variance = frac log(beta_t) + (1 - frac) posterior_log_variance_clipped[t],
//   t > 0: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) / ln 2,
//   t = 0: -log of the discretised Gaussian decoder likelihood of x_0 (256 bins, edges at
//          +-1/255, outer bins open, logs clamped at 1e-12) / ln 2; or, with continuous = 1
//          (2-D toy data), the Gaussian negative log density of x_0 / ln 2.
// vb_terms_fwd: term[i]; vb_terms_bwd: dv[i] = scale * dloss[0] * w * dterm/dv with w = 1;
// vb_terms_bwd_weighted: the same with w the weight of i's sample (weights[i / per_sample],
// importance-sampled timesteps; only it binds weights).
// Table columns as diffusion.wgsl. Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/vlb.rs.

const VLB_TABLE_COLS: u32 = 12u;
const V_SQRT_RECIP: u32 = 2u;
const V_SQRT_RECIPM1: u32 = 3u;
const V_COEF1: u32 = 4u;
const V_COEF2: u32 = 5u;
const V_LOG_BETAS: u32 = 10u;
const V_POST_LOG_VAR: u32 = 11u;
const LN_2: f32 = 0.6931471805599453;
const BIN_HALF_WIDTH: f32 = 0.00392156862745098;
const LOG_CLAMP: f32 = 1e-12;

struct VlbParams {
    n: u32,
    per_sample: u32,
    scale: f32,
    continuous: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: VlbParams;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> x_start: array<f32>;
@group(0) @binding(3) var<storage, read> x_t: array<f32>;
@group(0) @binding(4) var<storage, read> eps: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> timesteps: array<u32>;
@group(0) @binding(7) var<storage, read> dloss: array<f32>;
@group(0) @binding(8) var<storage, read> weights: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;

fn col(t: u32, c: u32) -> f32 {
    return table[t * VLB_TABLE_COLS + c];
}

// The tanh approximation of the normal CDF, 0.5 (1 + tanh(y)), written as sigmoid(2 y): the
// same function, but 1 + tanh(y) loses every digit in f32 once y < -4, exactly where the
// decoder's tail bins live. `survival` is 1 - cdf computed the same way.
fn cdf_arg(x: f32) -> f32 {
    return 0.7978845608028654 * (x + 0.044715 * x * x * x);
}

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

fn cdf(x: f32) -> f32 {
    return sigmoid(2.0 * cdf_arg(x));
}

fn survival(x: f32) -> f32 {
    return sigmoid(-2.0 * cdf_arg(x));
}

// d cdf / dx = 0.5 sech^2(y) y' = 2 sigmoid(2y) sigmoid(-2y) y'.
fn cdf_dx(x: f32) -> f32 {
    let y = cdf_arg(x);
    return 2.0 * sigmoid(2.0 * y) * sigmoid(-2.0 * y) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

struct Terms {
    value: f32,
    dv: f32,
}

fn terms(i: u32) -> Terms {
    let t = timesteps[i / p.per_sample];
    let xt = x_t[i];
    let x0 = x_start[i];
    let pred_xstart = col(t, V_SQRT_RECIP) * xt - col(t, V_SQRT_RECIPM1) * eps[i];
    let mean = col(t, V_COEF1) * pred_xstart + col(t, V_COEF2) * xt;
    let log_beta = col(t, V_LOG_BETAS);
    let post_log_var = col(t, V_POST_LOG_VAR);
    let frac = (v[i] + 1.0) * 0.5;
    let log_var = frac * log_beta + (1.0 - frac) * post_log_var;
    let dlv = 0.5 * (log_beta - post_log_var);
    var r: Terms;
    if (t == 0u && p.continuous == 1u) {
        let d = x0 - mean;
        let inv_var = exp(-log_var);
        r.value = 0.5 * (1.8378770664093453 + log_var + d * d * inv_var) / LN_2;
        r.dv = 0.5 * (1.0 - d * d * inv_var) * dlv / LN_2;
    } else if (t == 0u) {
        let log_scale = 0.5 * log_var;
        let centered = x0 - mean;
        let inv_stdv = exp(-log_scale);
        let plus_in = inv_stdv * (centered + BIN_HALF_WIDTH);
        let min_in = inv_stdv * (centered - BIN_HALF_WIDTH);
        var prob: f32;
        var dprob: f32;
        if (x0 < -0.999) {
            prob = cdf(plus_in);
            dprob = -cdf_dx(plus_in) * plus_in;
        } else if (x0 > 0.999) {
            prob = survival(min_in);
            dprob = cdf_dx(min_in) * min_in;
        } else {
            // A difference of two numbers near 1 in the upper tail: take it between survivals.
            prob = select(cdf(plus_in) - cdf(min_in), survival(min_in) - survival(plus_in), min_in > 0.0);
            dprob = min_in * cdf_dx(min_in) - plus_in * cdf_dx(plus_in);
        }
        r.value = -log(max(prob, LOG_CLAMP)) / LN_2;
        r.dv = select(-(dprob / prob) * 0.5 * dlv / LN_2, 0.0, prob < LOG_CLAMP);
    } else {
        let true_mean = col(t, V_COEF1) * x0 + col(t, V_COEF2) * xt;
        let d = true_mean - mean;
        let ratio = exp(post_log_var - log_var);
        let inv_var = exp(-log_var);
        r.value = 0.5 * (-1.0 + log_var - post_log_var + ratio + d * d * inv_var) / LN_2;
        r.dv = 0.5 * (1.0 - ratio - d * d * inv_var) * dlv / LN_2;
    }
    return r;
}

@compute @workgroup_size(WG)
fn vb_terms_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = terms(i).value;
    }
}

fn dv_at(i: u32, w: f32) -> f32 {
    return p.scale * dloss[0] * w * terms(i).dv;
}

@compute @workgroup_size(WG)
fn vb_terms_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = dv_at(i, 1.0);
    }
}

@compute @workgroup_size(WG)
fn vb_terms_bwd_weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = dv_at(i, weights[i / p.per_sample]);
    }
}
