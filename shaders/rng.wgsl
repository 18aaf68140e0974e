// rng.wgsl: random tensors from the counter-based Philox generator of common.wgsl.
// random_normal: out[i] = N(0, 1) draw number offset + i of (seed, stream), offset a 64-bit
//   index as (offset_lo, offset_hi) (0 for a whole draw; a chunk's first element otherwise).
// random_uniform: out[i] = U[0, 1) draw number i of (seed, stream).
// sample_timesteps: t[i] in [0, T) as u32 for row first + i of a batch of `total` rows (first =
//   offset_lo; total = n for a whole batch); with antithetic = 1 the first ceil(total/2) rows are
//   uniform draws and the rest mirror them (t -> T - 1 - t), the seed's variance-reduction trick.
//   A micro-batch (rows first..first+n) so draws exactly its rows of the whole batch.
// Geometry: Gpu::groups_1d(n). CPU twin: src/cpu/rng.rs.

struct RngParams {
    n: u32,
    seed: u32,
    stream: u32,
    n_timesteps: u32,
    antithetic: u32,
    offset_lo: u32,
    offset_hi: u32,
    total: u32,
}

@group(0) @binding(0) var<uniform> p: RngParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> timesteps: array<u32>;

@compute @workgroup_size(WG)
fn random_normal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = random_normal_from(p.seed, p.stream, vec2<u32>(p.offset_lo, p.offset_hi), i);
    }
}

@compute @workgroup_size(WG)
fn random_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = bits_to_unit(random_bits(p.seed, p.stream, i).x);
    }
}

@compute @workgroup_size(WG)
fn sample_timesteps(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid);
    if (i < p.n) {
        let row = p.offset_lo + i;
        let half = (p.total + 1u) / 2u;
        let mirrored = p.antithetic == 1u && row >= half;
        let draw = select(row, row - half, mirrored);
        let t = random_bits(p.seed, p.stream, draw).x % p.n_timesteps;
        timesteps[i] = select(t, p.n_timesteps - 1u - t, mirrored);
    }
}
