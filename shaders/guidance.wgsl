// guidance.wgsl: classifier-free guidance, its training side and its sampling side.
// drop_labels: labels_out[i] = null_class with probability p_uncond, else labels[i]; the draw is
//   U[0, 1) number first + i of (seed, stream), first the row of labels[0] in the step's whole
//   batch (keyed by the training step, so a resumed run drops the same labels, and a micro-batch
//   drops those of its rows). p_uncond is compared as p_uncond_bits / 2^24 against the 24-bit uniform, exactly
//   as the CPU twin does.
// guide: out2 [2n, c_out, rest] holds the conditional outputs (rows 0..n) then the unconditional
//   ones (rows n..2n); guided[b, c, r] = w * cond + (1 - w) * uncond for c < c_guided (the noise
//   channels), cond for the rest (a learned variance follows the conditional model). The form
//   w * cond + (1 - w) * uncond gives cond exactly at w = 1 and uncond exactly at w = 0.
// Geometry: Gpu::groups_1d over the outputs. CPU twin: src/cpu/guidance.rs.

struct GuidanceParams {
    n: u32,
    c_out: u32,
    c_guided: u32,
    rest: u32,
    w: f32,
    seed: u32,
    stream: u32,
    null_class: u32,
    p_uncond_bits: u32,
    first: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: GuidanceParams;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> labels_out: array<u32>;
@group(0) @binding(3) var<storage, read> out2: array<f32>;
@group(0) @binding(4) var<storage, read_write> guided: array<f32>;

@compute @workgroup_size(WG)
fn drop_labels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let u24 = random_bits(p.seed, p.stream, p.first + i).x >> 8u;
        labels_out[i] = select(labels[i], p.null_class, u24 < p.p_uncond_bits);
    }
}

@compute @workgroup_size(WG)
fn guide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    let per_sample = p.c_out * p.rest;
    if (i < p.n * per_sample) {
        let c = (i % per_sample) / p.rest;
        let cond = out2[i];
        if (c < p.c_guided) {
            let uncond = out2[i + p.n * per_sample];
            guided[i] = p.w * cond + (1.0 - p.w) * uncond;
        } else {
            guided[i] = cond;
        }
    }
}
