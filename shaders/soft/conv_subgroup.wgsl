// soft/conv_subgroup.wgsl: the wing's window kernels of soft/conv.wgsl (the *_ubo ones) with the values
// that every lane of a subgroup needs shared by subgroup broadcasts. llvmpipe gathers a window
// element lane by lane (some 20 instructions for 8 scalar loads), even where every lane reads
// the same address; in the *_ubo kernels those gathers of weights (or dy) were as many
// instructions as the FMAs (read from the JIT code on Mesa 22.3.6). Here lane l (the subgroup
// invocation id mod 8) gathers the l-th of every 8 such vec4s and subgroupBroadcast hands each
// to all lanes: a gather feeds 8 lanes instead of one. Built as its own module (soft/conv.wgsl +
// this file), used only where the device has subgroups of at least 8 invocations. Every
// broadcast sits in uniform control flow: loop bounds are the same for all lanes.

// Two 8-channel halves of the 16 output channels' taps of one kernel row.
struct TapsPair { a: Taps3, b: Taps3 }

// The weights of kernel row ky (sg_taps_row{ky}) for two 8-channel halves, from the 36 packed
// vec4s [tap][16] of one input channel: vec4 q lives in lane q % 8 of g{q / 8}. The broadcast
// lane must be a constant, hence one function per row.
fn sg_taps_row0(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, g4: vec4<f32>) -> TapsPair {
    return TapsPair(
        Taps3(subgroupBroadcast(g0, 0u), subgroupBroadcast(g0, 1u), subgroupBroadcast(g0, 4u), subgroupBroadcast(g0, 5u), subgroupBroadcast(g1, 0u), subgroupBroadcast(g1, 1u)),
        Taps3(subgroupBroadcast(g0, 2u), subgroupBroadcast(g0, 3u), subgroupBroadcast(g0, 6u), subgroupBroadcast(g0, 7u), subgroupBroadcast(g1, 2u), subgroupBroadcast(g1, 3u)),
    );
}
fn sg_taps_row1(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, g4: vec4<f32>) -> TapsPair {
    return TapsPair(
        Taps3(subgroupBroadcast(g1, 4u), subgroupBroadcast(g1, 5u), subgroupBroadcast(g2, 0u), subgroupBroadcast(g2, 1u), subgroupBroadcast(g2, 4u), subgroupBroadcast(g2, 5u)),
        Taps3(subgroupBroadcast(g1, 6u), subgroupBroadcast(g1, 7u), subgroupBroadcast(g2, 2u), subgroupBroadcast(g2, 3u), subgroupBroadcast(g2, 6u), subgroupBroadcast(g2, 7u)),
    );
}
fn sg_taps_row2(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>, g4: vec4<f32>) -> TapsPair {
    return TapsPair(
        Taps3(subgroupBroadcast(g3, 0u), subgroupBroadcast(g3, 1u), subgroupBroadcast(g3, 4u), subgroupBroadcast(g3, 5u), subgroupBroadcast(g4, 0u), subgroupBroadcast(g4, 1u)),
        Taps3(subgroupBroadcast(g3, 2u), subgroupBroadcast(g3, 3u), subgroupBroadcast(g3, 6u), subgroupBroadcast(g3, 7u), subgroupBroadcast(g4, 2u), subgroupBroadcast(g4, 3u)),
    );
}

// One input channel's share of 16 output channels x 4 pixels of 2 output rows, the first
// under kernel rows ky = 0, 1, 2 from inputs t0, t1, t2, the second from b0, b1, b2; its
// packed weights at window offset wci: each lane gathers 5 of the 36 vec4s and broadcasts them
// to the others (lane = the subgroup invocation id mod 8).
fn fwd_rows2_taps_sg(a0: ptr<function, Acc8>, a1: ptr<function, Acc8>,
                     a2: ptr<function, Acc8>, a3: ptr<function, Acc8>,
                     t0: Row3, t1: Row3, t2: Row3, b0: Row3, b1: Row3, b2: Row3, wci: u32, lane: u32) {
    let g0 = wuni[wci + lane];
    let g1 = wuni[wci + lane + 8u];
    let g2 = wuni[wci + lane + 16u];
    let g3 = wuni[wci + lane + 24u];
    let g4 = wuni[min(wci + lane + 32u, 4095u)];
    let k0 = sg_taps_row0(g0, g1, g2, g3, g4);
    taps3(a0, k0.a, t0);
    taps3(a1, k0.b, t0);
    taps3(a2, k0.a, b0);
    taps3(a3, k0.b, b0);
    let k1 = sg_taps_row1(g0, g1, g2, g3, g4);
    taps3(a0, k1.a, t1);
    taps3(a1, k1.b, t1);
    taps3(a2, k1.a, b1);
    taps3(a3, k1.b, b1);
    let k2 = sg_taps_row2(g0, g1, g2, g3, g4);
    taps3(a0, k2.a, t2);
    taps3(a1, k2.b, t2);
    taps3(a2, k2.a, b2);
    taps3(a3, k2.b, b2);
}

// The stride-1 case: output rows oy and oy + 1 read input rows r0 .. r3.
fn fwd_rows2_channel_sg(a0: ptr<function, Acc8>, a1: ptr<function, Acc8>,
                        a2: ptr<function, Acc8>, a3: ptr<function, Acc8>,
                        r0: Row3, r1: Row3, r2: Row3, r3: Row3, wci: u32, lane: u32) {
    fwd_rows2_taps_sg(a0, a1, a2, a3, r0, r1, r2, r1, r2, r3, wci, lane);
}

// conv2d_fwd_k3s1_sg_x: the stride-1 3x3 convolution with padding 1 (forward, and the input
// gradient with flipped weights), with x read through uniform windows as well as the weights.
// conv2d_fwd_k3s1_*_rows2 read x from the storage buffer, which Mesa 22.3.6 loads in a loop
// over the lanes with a store-forwarding stall per lane (~40% of their perf samples). The
// thread blocking is rows2's: 16 output channels x 4 pixels of 2 output rows. x comes as
// planes of x_plane_stride floats with rows of x_row floats, both multiples of 4 (the host pads
// rows where w is not), so a thread's middle 4 inputs of a row are one vec4. Up to four x
// windows (xuni, xuni1..3), each holding x_window_planes planes from float x_shift{j}, serve up
// to four samples: x_windows_per_sample windows per sample, sample wid.z of the dispatch
// (output sample `sample` + wid.z) reading its own. Grid (ceil(items / 8), blocks of 16 output
// channels, samples); items = ceil(h_out / 2) * ceil(w_out / 4). The weight window holds the
// blocks' packed weights [block][c_in][tap][16] from the chunk's first input channel of block
// `block`. A thread sums every input channel of the chunk, so only chunks after the first
// (more channels than the windows hold) read-modify-write the output.
@group(0) @binding(9) var<uniform> xuni1: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<uniform> xuni2: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> xuni3: array<vec4<f32>, 4096>;

// Where a thread's inputs lie in a plane: the vec4 index of its middle 4 inputs in each of the
// 4 rows (clamped inside the plane), which rows are inside the image, and whether the columns
// left and right of the middle 4 are (the rest read as zeros).
struct XSpan {
    rows: vec4<u32>,
    row_ok: vec4<bool>,
    left_ok: bool,
    right_ok: bool,
}

fn xv0(v: u32) -> vec4<f32> { return xuni[v]; }
fn xv1(v: u32) -> vec4<f32> { return xuni1[v]; }
fn xv2(v: u32) -> vec4<f32> { return xuni2[v]; }
fn xv3(v: u32) -> vec4<f32> { return xuni3[v]; }

// The vec4 at index v of x window j. Every call passes a constant j, so after inlining only one
// case is left.
fn xv(j: u32, v: u32) -> vec4<f32> {
    switch j {
        case 0u: { return xv0(v); }
        case 1u: { return xv1(v); }
        case 2u: { return xv2(v); }
        default: { return xv3(v); }
    }
}

// The inputs of 4 output pixels under taps kx = 0, 1, 2 of the row whose columns ix0 + 1 ..
// ix0 + 4 are the vec4 at index v of window j: that vec4, the last float of the one before and
// the first of the one after. Zero padding is a select on the gathered values.
fn span_row(j: u32, v: u32, ok: bool, s: XSpan) -> Row3 {
    let m = select(vec4<f32>(0.0), xv(j, v), ok);
    let l = select(0.0, xv(j, max(v, 1u) - 1u).w, ok && s.left_ok);
    let r = select(0.0, xv(j, v + 1u).x, ok && s.right_ok);
    return Row3(vec4<f32>(l, m.xyz), m, vec4<f32>(m.yzw, r));
}

// The 9 taps x 16 output channels x 2 output rows of the input channels in x window j, whose
// first plane starts at float `shift` and whose weights start at window offset `wbase`.
fn fwd_rows2_window(j: u32, shift: u32, begin: u32, end: u32, wbase: u32, s: XSpan, lane: u32,
                    a0: ptr<function, Acc8>, a1: ptr<function, Acc8>,
                    a2: ptr<function, Acc8>, a3: ptr<function, Acc8>) {
    for (var ci = begin; ci < end; ci++) {
        let v = (shift + (ci - begin) * p.x_plane_stride) >> 2u;
        let wci = wbase + (ci - begin) * 36u;
        let r0 = span_row(j, v + s.rows.x, s.row_ok.x, s);
        let r1 = span_row(j, v + s.rows.y, s.row_ok.y, s);
        let r2 = span_row(j, v + s.rows.z, s.row_ok.z, s);
        let r3 = span_row(j, v + s.rows.w, s.row_ok.w, s);
        fwd_rows2_channel_sg(a0, a1, a2, a3, r0, r1, r2, r3, wci, lane);
    }
}

// The input channels [x, y) that x window j holds for sample z of the dispatch (an empty range
// at its first channel if it holds another sample's).
fn x_window_range(j: u32, z: u32) -> vec2<u32> {
    let wps = p.x_windows_per_sample;
    let first = min(p.ci_begin + (j % wps) * p.x_window_planes, p.ci_end);
    let last = min(first + p.x_window_planes, p.ci_end);
    return select(vec2<u32>(first), vec2<u32>(first, last), j / wps == z);
}

fn fwd_k3s1_sg_x(wid: vec3<u32>, li: u32, sg_lane: u32) -> Fwd4 {
    let lane = sg_lane % 8u;
    let gw = (p.w_out + PX - 1u) / PX;
    let gh = (p.h_out + 1u) / 2u;
    let item = wid.x * 8u + li;
    let valid = item < gw * gh;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = (it / gw) * 2u;
    // Padding 1: the middle 4 inputs of a row are columns ox0 .. ox0 + 3, a vec4 (rows and
    // planes are a multiple of 4 floats, and so are the window shifts).
    let iy0 = i32(oy) - 1;
    let hi = i32(p.h) - 1;
    let iy = vec4<i32>(iy0, iy0 + 1, iy0 + 2, iy0 + 3);
    let s = XSpan(
        (vec4<u32>(clamp(iy, vec4<i32>(0), vec4<i32>(hi))) * p.x_row + ox0) >> vec4<u32>(2u),
        (iy >= vec4<i32>(0)) & (iy <= vec4<i32>(hi)),
        ox0 > 0u,
        ox0 + 4u < p.w,
    );
    // Block wid.y's weights start 36 vec4s per input channel of the whole c_in later.
    let wblock = wid.y * p.c_in * 36u;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    // Window j holds planes [first, first + x_window_planes) of sample j / wps of the dispatch,
    // first = ci_begin + (j % wps) * x_window_planes; sample wid.z reads its windows only.
    let r = array<vec2<u32>, 4>(x_window_range(0u, wid.z), x_window_range(1u, wid.z),
                                x_window_range(2u, wid.z), x_window_range(3u, wid.z));
    fwd_rows2_window(0u, p.x_shift0, r[0].x, r[0].y, wblock + (r[0].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_rows2_window(1u, p.x_shift1, r[1].x, r[1].y, wblock + (r[1].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_rows2_window(2u, p.x_shift2, r[2].x, r[2].y, wblock + (r[2].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_rows2_window(3u, p.x_shift3, r[3].x, r[3].y, wblock + (r[3].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    let n = p.sample + wid.z;
    let cb8 = (p.block + wid.y) * 2u;
    return rows2(a0, a1, a2, a3, n, cb8, oy, ox0, valid);
}

@compute @workgroup_size(8)
fn conv2d_fwd_k3s1_sg_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(fwd_k3s1_sg_x(wid, li, sg_lane));
}

@compute @workgroup_size(8)
fn conv2d_fwd_k3s1_sg_x_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(rows2_bias(fwd_k3s1_sg_x(wid, li, sg_lane)));
}

// conv2d_fwd_k3s1_sg_rows2: conv2d_fwd_k3s1_ubo_rows2 with the weights shared by subgroup
// broadcasts, for the shapes conv2d_fwd_k3s1_sg_x does not take (x from the storage buffer).
fn fwd_k3s1_sg_rows2(wid: vec3<u32>, li: u32, sg_lane: u32) -> Fwd4 {
    let lane = sg_lane % 8u;
    let gw = (p.w_out + PX - 1u) / PX;
    let gh = (p.h_out + 1u) / 2u;
    let items = p.n * gh * gw;
    let item = wid.x * 64u + li;
    let valid = item < items;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = ((it / gw) % gh) * 2u;
    let n = it / (gw * gh);
    let ix0 = i32(ox0) - i32(p.padding);
    let hw = p.h * p.w;
    let sample = n * p.c_in * hw;
    let iy0 = i32(oy) - i32(p.padding);
    let ok0 = iy0 >= 0 && iy0 < i32(p.h);
    let ok1 = iy0 + 1 >= 0 && iy0 + 1 < i32(p.h);
    let ok2 = iy0 + 2 >= 0 && iy0 + 2 < i32(p.h);
    let ok3 = iy0 + 3 >= 0 && iy0 + 3 < i32(p.h);
    let y0 = u32(clamp(iy0, 0, i32(p.h) - 1)) * p.w;
    let y1 = u32(clamp(iy0 + 1, 0, i32(p.h) - 1)) * p.w;
    let y2 = u32(clamp(iy0 + 2, 0, i32(p.h) - 1)) * p.w;
    let y3 = u32(clamp(iy0 + 3, 0, i32(p.h) - 1)) * p.w;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        let plane = sample + ci * hw;
        let r0 = row_s1(plane + y0, ix0, ok0);
        let r1 = row_s1(plane + y1, ix0, ok1);
        let r2 = row_s1(plane + y2, ix0, ok2);
        let r3 = row_s1(plane + y3, ix0, ok3);
        fwd_rows2_channel_sg(&a0, &a1, &a2, &a3, r0, r1, r2, r3, (ci - p.ci_begin) * 36u, lane);
    }
    let cb8 = p.block * 2u;
    return rows2(a0, a1, a2, a3, n, cb8, oy, ox0, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_sg_rows2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(fwd_k3s1_sg_rows2(wid, li, sg_lane));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k3s1_sg_rows2_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(rows2_bias(fwd_k3s1_sg_rows2(wid, li, sg_lane)));
}

// The 16 output channels x 9 taps a lane of conv2d_bwd_w_k3s1_sg sums.
struct Acc144 {
    a0: Acc9, a1: Acc9, a2: Acc9, a3: Acc9, a4: Acc9, a5: Acc9, a6: Acc9, a7: Acc9,
    a8: Acc9, a9: Acc9, a10: Acc9, a11: Acc9, a12: Acc9, a13: Acc9, a14: Acc9, a15: Acc9,
}

// conv2d_bwd_w_k3s1_sg's further dy windows, one per sample of the dispatch after the first
// (which is `wuni`, as in conv2d_bwd_w_k3s1_ubo); its x windows are xuni, xuni1..3.
@group(0) @binding(12) var<uniform> dyuni1: array<vec4<f32>, 4096>;
@group(0) @binding(13) var<uniform> dyuni2: array<vec4<f32>, 4096>;
@group(0) @binding(14) var<uniform> dyuni3: array<vec4<f32>, 4096>;

// The vec4 at index v of dy window j (a constant at every call, as for xv).
fn dyv(j: u32, v: u32) -> vec4<f32> {
    switch j {
        case 0u: { return wuni[v]; }
        case 1u: { return dyuni1[v]; }
        case 2u: { return dyuni2[v]; }
        default: { return dyuni3[v]; }
    }
}

// x values at columns c .. c + 5 of a padded row (c a multiple of 4) of x window j.
fn x6_in(j: u32, e: u32) -> X6 {
    let v = e >> 2u;
    return X6(xv(j, v), xv(j, v + 1u).xy);
}

// One sample's share (x window j, dy window j) of a lane's 144 sums over output rows
// [oy0, oy1): lane l gathers the dy of output channels cb + l and cb + l + 8 and broadcasts
// them to the others.
fn bwd_w_sample_sg(j: u32, xp: u32, cb: u32, oy0: u32, oy1: u32, lane: u32, acc: ptr<function, Acc144>,
                   bias: ptr<function, vec2<f32>>) {
    // Pointers to locals, not to members of *acc, for acc9_rows (naga's SPIR-V writer takes no
    // pointer to a struct member as a call argument).
    var a0 = (*acc).a0;
    var a1 = (*acc).a1;
    var a2 = (*acc).a2;
    var a3 = (*acc).a3;
    var a4 = (*acc).a4;
    var a5 = (*acc).a5;
    var a6 = (*acc).a6;
    var a7 = (*acc).a7;
    var a8 = (*acc).a8;
    var a9 = (*acc).a9;
    var a10 = (*acc).a10;
    var a11 = (*acc).a11;
    var a12 = (*acc).a12;
    var a13 = (*acc).a13;
    var a14 = (*acc).a14;
    var a15 = (*acc).a15;
    for (var oy = oy0; oy < oy1; oy++) {
        let row = xp + oy * p.x_row;
        for (var ox0 = 0u; ox0 < p.w_out; ox0 += PX) {
            let r0 = x6_in(j, row + ox0);
            let r1 = x6_in(j, row + p.x_row + ox0);
            let r2 = x6_in(j, row + 2u * p.x_row + ox0);
            let dp = cb * p.plane_stride + oy * p.row_stride + ox0;
            let g0 = dyv(j, (dp + lane * p.plane_stride) >> 2u);
            let g1 = dyv(j, (dp + (lane + 8u) * p.plane_stride) >> 2u);
            // The bias gradient: the sum of dy over the pixels (padding columns are zero).
            *bias += vec2<f32>(dot(g0, vec4<f32>(1.0)), dot(g1, vec4<f32>(1.0)));
            acc9_rows(&a0, subgroupBroadcast(g0, 0u), r0, r1, r2);
            acc9_rows(&a1, subgroupBroadcast(g0, 1u), r0, r1, r2);
            acc9_rows(&a2, subgroupBroadcast(g0, 2u), r0, r1, r2);
            acc9_rows(&a3, subgroupBroadcast(g0, 3u), r0, r1, r2);
            acc9_rows(&a4, subgroupBroadcast(g0, 4u), r0, r1, r2);
            acc9_rows(&a5, subgroupBroadcast(g0, 5u), r0, r1, r2);
            acc9_rows(&a6, subgroupBroadcast(g0, 6u), r0, r1, r2);
            acc9_rows(&a7, subgroupBroadcast(g0, 7u), r0, r1, r2);
            acc9_rows(&a8, subgroupBroadcast(g1, 0u), r0, r1, r2);
            acc9_rows(&a9, subgroupBroadcast(g1, 1u), r0, r1, r2);
            acc9_rows(&a10, subgroupBroadcast(g1, 2u), r0, r1, r2);
            acc9_rows(&a11, subgroupBroadcast(g1, 3u), r0, r1, r2);
            acc9_rows(&a12, subgroupBroadcast(g1, 4u), r0, r1, r2);
            acc9_rows(&a13, subgroupBroadcast(g1, 5u), r0, r1, r2);
            acc9_rows(&a14, subgroupBroadcast(g1, 6u), r0, r1, r2);
            acc9_rows(&a15, subgroupBroadcast(g1, 7u), r0, r1, r2);
        }
    }
    (*acc).a0 = a0;
    (*acc).a1 = a1;
    (*acc).a2 = a2;
    (*acc).a3 = a3;
    (*acc).a4 = a4;
    (*acc).a5 = a5;
    (*acc).a6 = a6;
    (*acc).a7 = a7;
    (*acc).a8 = a8;
    (*acc).a9 = a9;
    (*acc).a10 = a10;
    (*acc).a11 = a11;
    (*acc).a12 = a12;
    (*acc).a13 = a13;
    (*acc).a14 = a14;
    (*acc).a15 = a15;
}

// Adds a bias-gradient partial sum to out[o] (after the first dispatch) or stores it.
fn store_bias_sum(o: u32, v: f32, ok: bool) {
    if (ok) {
        var prev = 0.0;
        if (p.accumulate == 1u) {
            prev = out[o];
        }
        out[o] = prev + v;
    }
}

// conv2d_bwd_w_k3s1_sg: conv2d_bwd_w_k3s1_ubo with the dy pixels shared by subgroup
// broadcasts (every lane of a workgroup reads the same 16 output channels' dy, so lane l
// gathers those of channels l and l + 8: 2 gathers per 4 pixels instead of 16), over
// window_samples (1 to 4) samples per dispatch: sample j of the dispatch in x window j and dy
// window j, all summed before the one read-modify-write of the partial sums, so a dispatch
// does up to 4 samples' work for one dispatch's overhead and one store. Windows past
// window_samples are bound and not read. With has_bias, the bias gradient's partial sums ride
// along (the dy each lane gathers, summed), from bias_offset of each partial row of
// partial_row floats, so one reduction adds both.
@compute @workgroup_size(8)
fn conv2d_bwd_w_k3s1_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
                        @builtin(subgroup_invocation_id) sg_lane: u32) {
    let lane = sg_lane % 8u;
    let local = wid.y * 8u + li;
    let ci = p.x_begin + local;
    let ci_ok = ci < p.x_end;
    let xp = min(local, p.x_end - p.x_begin - 1u) * p.x_plane_stride;
    let cb = wid.z * WB;
    let oy0 = wid.x * p.chunk;
    let oy1 = min(oy0 + p.chunk, p.h_out);
    let z9 = Acc9(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    var a = Acc144(z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9, z9);
    var bias = vec2<f32>(0.0);
    bwd_w_sample_sg(0u, xp, cb, oy0, oy1, lane, &a, &bias);
    if (p.window_samples > 1u) {
        bwd_w_sample_sg(1u, xp, cb, oy0, oy1, lane, &a, &bias);
    }
    if (p.window_samples > 2u) {
        bwd_w_sample_sg(2u, xp, cb, oy0, oy1, lane, &a, &bias);
    }
    if (p.window_samples > 3u) {
        bwd_w_sample_sg(3u, xp, cb, oy0, oy1, lane, &a, &bias);
    }
    let k_cols = p.c_in * 9u;
    let co0 = p.ci_begin + cb;
    let o = wid.x * p.partial_row + co0 * k_cols + ci * 9u;
    // Every workgroup sums the same dy; those of the first input channels store it.
    if (p.has_bias == 1u && wid.y == 0u) {
        let ob = wid.x * p.partial_row + p.bias_offset + co0;
        store_bias_sum(ob + lane, bias.x, co0 + lane < p.ci_end);
        store_bias_sum(ob + lane + 8u, bias.y, co0 + lane + 8u < p.ci_end);
    }
    store_acc9_chunk(a.a0, o + 0u * k_cols, ci_ok && co0 + 0u < p.ci_end);
    store_acc9_chunk(a.a1, o + 1u * k_cols, ci_ok && co0 + 1u < p.ci_end);
    store_acc9_chunk(a.a2, o + 2u * k_cols, ci_ok && co0 + 2u < p.ci_end);
    store_acc9_chunk(a.a3, o + 3u * k_cols, ci_ok && co0 + 3u < p.ci_end);
    store_acc9_chunk(a.a4, o + 4u * k_cols, ci_ok && co0 + 4u < p.ci_end);
    store_acc9_chunk(a.a5, o + 5u * k_cols, ci_ok && co0 + 5u < p.ci_end);
    store_acc9_chunk(a.a6, o + 6u * k_cols, ci_ok && co0 + 6u < p.ci_end);
    store_acc9_chunk(a.a7, o + 7u * k_cols, ci_ok && co0 + 7u < p.ci_end);
    store_acc9_chunk(a.a8, o + 8u * k_cols, ci_ok && co0 + 8u < p.ci_end);
    store_acc9_chunk(a.a9, o + 9u * k_cols, ci_ok && co0 + 9u < p.ci_end);
    store_acc9_chunk(a.a10, o + 10u * k_cols, ci_ok && co0 + 10u < p.ci_end);
    store_acc9_chunk(a.a11, o + 11u * k_cols, ci_ok && co0 + 11u < p.ci_end);
    store_acc9_chunk(a.a12, o + 12u * k_cols, ci_ok && co0 + 12u < p.ci_end);
    store_acc9_chunk(a.a13, o + 13u * k_cols, ci_ok && co0 + 13u < p.ci_end);
    store_acc9_chunk(a.a14, o + 14u * k_cols, ci_ok && co0 + 14u < p.ci_end);
    store_acc9_chunk(a.a15, o + 15u * k_cols, ci_ok && co0 + 15u < p.ci_end);
}

// conv2d_bwd_w_k1_sg: conv2d_bwd_w_k1_ubo with the dy pixels shared by subgroup broadcasts
// (lane l reads output channels l and l + 8 of the 16 every lane needs).
@compute @workgroup_size(8)
fn conv2d_bwd_w_k1_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
                      @builtin(subgroup_invocation_id) sg_lane: u32) {
    let lane = sg_lane % 8u;
    let hw = p.h * p.w;
    let cb = wid.z * WB;
    let q0 = wid.x * p.chunk;
    let q1 = min(q0 + p.chunk, hw);
    let c0 = (wid.y * 8u + li) * 4u;
    let sample = p.block * p.c_in * hw;
    let top = p.c_in - 1u;
    let b0 = sample + min(c0, top) * hw;
    let b1 = sample + min(c0 + 1u, top) * hw;
    let b2 = sample + min(c0 + 2u, top) * hw;
    let b3 = sample + min(c0 + 3u, top) * hw;
    let last = hw - 1u;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    for (var q = q0; q < q1; q += PX) {
        // Pixels past the plane repeat the last one; their dy is zero.
        let i1 = min(q + 1u, last);
        let i2 = min(q + 2u, last);
        let i3 = min(q + 3u, last);
        let x0 = vec4<f32>(x[b0 + q], x[b0 + i1], x[b0 + i2], x[b0 + i3]);
        let x1 = vec4<f32>(x[b1 + q], x[b1 + i1], x[b1 + i2], x[b1 + i3]);
        let x2 = vec4<f32>(x[b2 + q], x[b2 + i1], x[b2 + i2], x[b2 + i3]);
        let x3 = vec4<f32>(x[b3 + q], x[b3 + i1], x[b3 + i2], x[b3 + i3]);
        let g0 = dyw_flat((lane + cb) * p.plane_stride + q, q, hw);
        let g1 = dyw_flat((lane + 8u + cb) * p.plane_stride + q, q, hw);
        {
            let d = subgroupBroadcast(g0, 0u);
            a0 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 1u);
            a1 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 2u);
            a2 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 3u);
            a3 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 4u);
            a4 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 5u);
            a5 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 6u);
            a6 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g0, 7u);
            a7 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 0u);
            a8 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 1u);
            a9 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 2u);
            a10 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 3u);
            a11 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 4u);
            a12 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 5u);
            a13 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 6u);
            a14 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
        {
            let d = subgroupBroadcast(g1, 7u);
            a15 += vec4<f32>(dot(d, x0), dot(d, x1), dot(d, x2), dot(d, x3));
        }
    }
    let co0 = p.ci_begin + cb;
    let o = (wid.x * p.c_out + co0) * p.c_in;
    store4_chunk(a0, o + 0u * p.c_in, c0, co0 + 0u < p.ci_end);
    store4_chunk(a1, o + 1u * p.c_in, c0, co0 + 1u < p.ci_end);
    store4_chunk(a2, o + 2u * p.c_in, c0, co0 + 2u < p.ci_end);
    store4_chunk(a3, o + 3u * p.c_in, c0, co0 + 3u < p.ci_end);
    store4_chunk(a4, o + 4u * p.c_in, c0, co0 + 4u < p.ci_end);
    store4_chunk(a5, o + 5u * p.c_in, c0, co0 + 5u < p.ci_end);
    store4_chunk(a6, o + 6u * p.c_in, c0, co0 + 6u < p.ci_end);
    store4_chunk(a7, o + 7u * p.c_in, c0, co0 + 7u < p.ci_end);
    store4_chunk(a8, o + 8u * p.c_in, c0, co0 + 8u < p.ci_end);
    store4_chunk(a9, o + 9u * p.c_in, c0, co0 + 9u < p.ci_end);
    store4_chunk(a10, o + 10u * p.c_in, c0, co0 + 10u < p.ci_end);
    store4_chunk(a11, o + 11u * p.c_in, c0, co0 + 11u < p.ci_end);
    store4_chunk(a12, o + 12u * p.c_in, c0, co0 + 12u < p.ci_end);
    store4_chunk(a13, o + 13u * p.c_in, c0, co0 + 13u < p.ci_end);
    store4_chunk(a14, o + 14u * p.c_in, c0, co0 + 14u < p.ci_end);
    store4_chunk(a15, o + 15u * p.c_in, c0, co0 + 15u < p.ci_end);
}

// conv2d_fwd_k1_sg: conv2d_fwd_k1_ubo with the weights shared by subgroup broadcasts (lane l
// reads vec4 l of the input channel's 8).
fn fwd_k1_sg(wid: vec3<u32>, li: u32, sg_lane: u32) -> Fwd4 {
    let lane = sg_lane % 8u;
    let hw = p.h * p.w;
    let gw = (hw + PX - 1u) / PX;
    let item = wid.x * 64u + li;
    let valid = item < p.n * gw;
    let it = select(0u, item, valid);
    let pix0 = (it % gw) * PX;
    let n = it / gw;
    // Pixels past the end repeat the last one; they are never stored.
    let last = hw - 1u;
    let i1 = min(pix0 + 1u, last);
    let i2 = min(pix0 + 2u, last);
    let i3 = min(pix0 + 3u, last);
    let sample = n * p.c_in * hw;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        let b = sample + ci * hw;
        let xv = vec4<f32>(x[b + pix0], x[b + i1], x[b + i2], x[b + i3]);
        let o = (ci - p.ci_begin) * 8u;
        let g = wuni[o + lane];
        acc8_fma(&a0, subgroupBroadcast(g, 0u), subgroupBroadcast(g, 1u), xv);
        acc8_fma(&a1, subgroupBroadcast(g, 2u), subgroupBroadcast(g, 3u), xv);
        acc8_fma(&a2, subgroupBroadcast(g, 4u), subgroupBroadcast(g, 5u), xv);
        acc8_fma(&a3, subgroupBroadcast(g, 6u), subgroupBroadcast(g, 7u), xv);
    }
    let cb8 = p.block * (UB / CB);
    return Fwd4(a0, a1, a2, a3, n, cb8, pix0, hw - pix0, 0u, valid);
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_k1_chunk(fwd_k1_sg(wid, li, sg_lane));
}

@compute @workgroup_size(64)
fn conv2d_fwd_k1_sg_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_k1_chunk(k1_chunk_bias(fwd_k1_sg(wid, li, sg_lane)));
}

// conv2d_fwd_k3s2_sg_x: the stride-2 3x3 convolution with padding 1 (the UNet's downsampling),
// with x and the weights read through uniform windows and the weights shared by subgroup
// broadcasts, as conv2d_fwd_k3s1_sg_x does for stride 1 (conv2d_fwd_k3s2_cpu loads both from
// storage: 1-2 GFLOP/s on Mesa 22.3.6). A thread takes 16 output channels x 4 pixels of output
// rows oy and oy + 1, which read input rows 2 oy - 1 .. 2 oy + 3 and columns 2 ox0 - 1 ..
// 2 ox0 + 7. x planes are h w floats as they are (each float gathered on its own, so neither
// rows nor planes need a multiple of 4), zero outside the image by selects. Windows, grid and
// chunks as conv2d_fwd_k3s1_sg_x; items = ceil(h_out / 2) * ceil(w_out / 4).

fn xf(j: u32, e: u32) -> f32 {
    return xv(j, e >> 2u)[e & 3u];
}

// Where a thread's inputs lie in a plane: the float offsets of its 5 input rows (clamped into
// the image) and of its 9 columns (clamped into a row), and which of them are inside.
struct S2Span {
    rows: vec4<u32>,
    row4: u32,
    rows_ok: vec4<bool>,
    row4_ok: bool,
    cols_a: vec4<u32>,
    cols_b: vec4<u32>,
    col8: u32,
    cols_a_ok: vec4<bool>,
    cols_b_ok: vec4<bool>,
    col8_ok: bool,
}

// The inputs of 4 output pixels under taps kx = 0, 1, 2 of the input row at float e (columns
// 2 ox0 - 1 + k, k = 0 .. 8: taps kx take k = kx, kx + 2, kx + 4, kx + 6).
fn s2_row(j: u32, e: u32, ok: bool, s: S2Span) -> Row3 {
    let a = select(vec4<f32>(0.0),
                   vec4<f32>(xf(j, e + s.cols_a.x), xf(j, e + s.cols_a.y), xf(j, e + s.cols_a.z), xf(j, e + s.cols_a.w)),
                   s.cols_a_ok & vec4<bool>(ok));
    let b = select(vec4<f32>(0.0),
                   vec4<f32>(xf(j, e + s.cols_b.x), xf(j, e + s.cols_b.y), xf(j, e + s.cols_b.z), xf(j, e + s.cols_b.w)),
                   s.cols_b_ok & vec4<bool>(ok));
    let z = select(0.0, xf(j, e + s.col8), s.col8_ok && ok);
    return Row3(vec4<f32>(a.x, a.z, b.x, b.z), vec4<f32>(a.y, a.w, b.y, b.w), vec4<f32>(a.z, b.x, b.z, z));
}

fn fwd_s2_window(j: u32, shift: u32, begin: u32, end: u32, wbase: u32, s: S2Span, lane: u32,
                 a0: ptr<function, Acc8>, a1: ptr<function, Acc8>,
                 a2: ptr<function, Acc8>, a3: ptr<function, Acc8>) {
    for (var ci = begin; ci < end; ci++) {
        let e = shift + (ci - begin) * p.x_plane_stride;
        let r0 = s2_row(j, e + s.rows.x, s.rows_ok.x, s);
        let r1 = s2_row(j, e + s.rows.y, s.rows_ok.y, s);
        let r2 = s2_row(j, e + s.rows.z, s.rows_ok.z, s);
        let r3 = s2_row(j, e + s.rows.w, s.rows_ok.w, s);
        let r4 = s2_row(j, e + s.row4, s.row4_ok, s);
        fwd_rows2_taps_sg(a0, a1, a2, a3, r0, r1, r2, r2, r3, r4, wbase + (ci - begin) * 36u, lane);
    }
}

fn fwd_k3s2_sg_x(wid: vec3<u32>, li: u32, sg_lane: u32) -> Fwd4 {
    let lane = sg_lane % 8u;
    let gw = (p.w_out + PX - 1u) / PX;
    let gh = (p.h_out + 1u) / 2u;
    let item = wid.x * 8u + li;
    let valid = item < gw * gh;
    let it = select(0u, item, valid);
    let ox0 = (it % gw) * PX;
    let oy = (it / gw) * 2u;
    let hi = i32(p.h) - 1;
    let wi = i32(p.w) - 1;
    let iy0 = 2 * i32(oy) - 1;
    let iy = vec4<i32>(iy0, iy0 + 1, iy0 + 2, iy0 + 3);
    let ix0 = 2 * i32(ox0) - 1;
    let ixa = vec4<i32>(ix0, ix0 + 1, ix0 + 2, ix0 + 3);
    let ixb = ixa + vec4<i32>(4);
    let s = S2Span(
        vec4<u32>(clamp(iy, vec4<i32>(0), vec4<i32>(hi))) * p.w,
        u32(clamp(iy0 + 4, 0, hi)) * p.w,
        (iy >= vec4<i32>(0)) & (iy <= vec4<i32>(hi)),
        iy0 + 4 <= hi,
        vec4<u32>(clamp(ixa, vec4<i32>(0), vec4<i32>(wi))),
        vec4<u32>(clamp(ixb, vec4<i32>(0), vec4<i32>(wi))),
        u32(clamp(ix0 + 8, 0, wi)),
        (ixa >= vec4<i32>(0)) & (ixa <= vec4<i32>(wi)),
        ixb <= vec4<i32>(wi),
        ix0 + 8 <= wi,
    );
    let wblock = wid.y * p.c_in * 36u;
    var a0 = acc8_zero();
    var a1 = acc8_zero();
    var a2 = acc8_zero();
    var a3 = acc8_zero();
    let r = array<vec2<u32>, 4>(x_window_range(0u, wid.z), x_window_range(1u, wid.z),
                                x_window_range(2u, wid.z), x_window_range(3u, wid.z));
    fwd_s2_window(0u, p.x_shift0, r[0].x, r[0].y, wblock + (r[0].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_s2_window(1u, p.x_shift1, r[1].x, r[1].y, wblock + (r[1].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_s2_window(2u, p.x_shift2, r[2].x, r[2].y, wblock + (r[2].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    fwd_s2_window(3u, p.x_shift3, r[3].x, r[3].y, wblock + (r[3].x - p.ci_begin) * 36u, s, lane, &a0, &a1, &a2, &a3);
    let n = p.sample + wid.z;
    let cb8 = (p.block + wid.y) * 2u;
    return rows2(a0, a1, a2, a3, n, cb8, oy, ox0, valid);
}

@compute @workgroup_size(8)
fn conv2d_fwd_k3s2_sg_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(fwd_k3s2_sg_x(wid, li, sg_lane));
}

@compute @workgroup_size(8)
fn conv2d_fwd_k3s2_sg_x_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32) {
    store_rows2(rows2_bias(fwd_k3s2_sg_x(wid, li, sg_lane)));
}
