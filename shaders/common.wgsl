// common.wgsl: helpers prepended to every shader file. No bindings here.
// - WG: the workgroup size of 1-D kernels, a pipeline override set from Rust (Gpu::workgroup_1d).
// - linear_index: rebuilds a 1-D thread index from a grid split over x and y (65,535 limit).
// - Philox4x32-10, a counter-based RNG keyed by (seed, stream) and counted by index: the same
//   bits as src/cpu/rng.rs, so noise drawn on the GPU can be replayed exactly on the CPU.

override WG: u32 = 256u;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// (hi, lo) 32-bit halves of the 64-bit product a * b, from 16-bit pieces (WGSL has no mulhi).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        let p0 = mul_hi_lo(0xD2511F53u, c.x);
        let p1 = mul_hi_lo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// Four random words for element `index` of stream `stream` under `seed`.
fn random_bits(seed: u32, stream: u32, index: u32) -> vec4<u32> {
    return philox4x32(vec4<u32>(index, 0u, 0u, 0u), vec2<u32>(seed, stream));
}

// The element `offset + i` of a draw, `offset` a 64-bit index as (lo, hi): the counter's second
// word carries the high bits, so an index below 2^32 gives random_bits' words. A draw split into
// chunks (offset = the chunk's first element) then equals the whole draw.
fn random_bits_from(seed: u32, stream: u32, offset: vec2<u32>, i: u32) -> vec4<u32> {
    let lo = offset.x + i;
    let hi = offset.y + select(0u, 1u, lo < i);
    return philox4x32(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(seed, stream));
}

// Uniform in [0, 1) from the top 24 bits: exact in f32, identical to the CPU twin.
fn bits_to_unit(bits: u32) -> f32 {
    return f32(bits >> 8u) * (1.0 / 16777216.0);
}

// Standard normal by Box-Muller (cosine branch); the first uniform is moved to (0, 1].
fn random_normal_at(seed: u32, stream: u32, index: u32) -> f32 {
    return normal_from_bits(random_bits(seed, stream, index));
}

// random_normal_at of element offset + i (see random_bits_from).
fn random_normal_from(seed: u32, stream: u32, offset: vec2<u32>, i: u32) -> f32 {
    return normal_from_bits(random_bits_from(seed, stream, offset, i));
}

fn normal_from_bits(bits: vec4<u32>) -> f32 {
    let u1 = (f32(bits.x >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = bits_to_unit(bits.y);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
