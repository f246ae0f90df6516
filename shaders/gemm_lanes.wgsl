// gemm_lanes: C[M, N] = (accumulate ? C : 0) + op(A)[M, K] * op(B)[K, N] + (has_bias ? bias : 0)
// for CPU adapters whose subgroups are 8 lanes wide (llvmpipe on AVX2). Same parameters and
// bindings as gemm.wgsl, plus `trans_c`: the host may compute C^T = op(B)^T op(A)^T instead,
// by swapping the operands, when that shape suits these kernels better (few columns).
//
// Why lanes share rows: on llvmpipe a workgroup of 8 invocations is one 8-wide SIMD loop, and
// every load from a storage buffer is a scalar loop over the lanes, about 8 ns per lane and
// element (measured), while an 8-wide FMA costs a fraction of that. gemm_block_* (gemm.wgsl)
// gives each lane its own rows and columns, so a group loads 8 * (R + C) elements per k. Here
// the 8 lanes share one set of rows: each lane loads an eighth of op(A)'s column and
// subgroupBroadcast (a register shuffle) hands every lane all of it. A 32 x 64 tile of C costs
// 32 + 64 lane-loads per k for 2048 FMAs, against 256 for 16x16 blocks: 1.5-2.8x as fast on
// the engine's large products, level on the thin ones (see BENCHMARKS.md).
//
// As in gemm_block_*: rows and columns past the edge are clamped to the last one (the copies
// compute identical values, so their stores are idempotent), the accumulators start from bias
// (+ C) and add k in order, so the result is bit-reproducible, and every lane runs the k loop
// (subgroupBroadcast needs them all) before a lane past the last column returns. A workgroup is
// one subgroup of 8 (the host checks the adapter's subgroup size), and a lane is named by its
// subgroup invocation id, the index subgroupBroadcast takes.

// (gemm_params.wgsl and tile.wgsl come first: the parameters, C, bias, and the tile's start
// and store)

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;

// op(A)[rows, k] and op(B)[k, cols].
fn a_at(s: Strides, rows: vec4<u32>, k: u32) -> vec4<f32> {
    let o = p.a_offset + rows * s.a_m + k * s.a_k;
    return vec4<f32>(a[o.x], a[o.y], a[o.z], a[o.w]);
}

fn b_at(s: Strides, k: u32, cols: vec4<u32>) -> vec4<f32> {
    let o = p.b_offset + k * s.b_k + cols * s.b_n;
    return vec4<f32>(b[o.x], b[o.y], b[o.z], b[o.w]);
}

// ---------------------------------------------------------------------------------------------
// gemm_lanes_32x8: the group's tile is 32 rows x 64 columns; lane l owns columns 8l..8l+7 of
// it (two quads) for all 32 rows, and loads rows 4l..4l+3 of op(A)'s column k. Per k and lane:
// 4 + 8 loads, 8 broadcasts, 256 FMAs.

@compute @workgroup_size(8, 1, 1)
fn gemm_lanes_32x8(
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let s = strides();
    let origin = tile_origin(wg, groups, 32u, 64u);
    let col = origin.y + lane * 8u;
    let last_row = p.m - 1u;
    let r0 = quad(origin.x, last_row);
    let r1 = quad(origin.x + 4u, last_row);
    let r2 = quad(origin.x + 8u, last_row);
    let r3 = quad(origin.x + 12u, last_row);
    let r4 = quad(origin.x + 16u, last_row);
    let r5 = quad(origin.x + 20u, last_row);
    let r6 = quad(origin.x + 24u, last_row);
    let r7 = quad(origin.x + 28u, last_row);
    let mine = quad(origin.x + lane * 4u, last_row);
    let c0 = quad(col, p.n - 1u);
    let c1 = quad(col + 4u, p.n - 1u);
    var acc0 = start8(s, r0, c0, c1);
    var acc1 = start8(s, r1, c0, c1);
    var acc2 = start8(s, r2, c0, c1);
    var acc3 = start8(s, r3, c0, c1);
    var acc4 = start8(s, r4, c0, c1);
    var acc5 = start8(s, r5, c0, c1);
    var acc6 = start8(s, r6, c0, c1);
    var acc7 = start8(s, r7, c0, c1);
    for (var k = 0u; k < p.k; k++) {
        let x = a_at(s, mine, k);
        let y0 = b_at(s, k, c0);
        let y1 = b_at(s, k, c1);
        update8(&acc0, subgroupBroadcast(x, 0u), y0, y1);
        update8(&acc1, subgroupBroadcast(x, 1u), y0, y1);
        update8(&acc2, subgroupBroadcast(x, 2u), y0, y1);
        update8(&acc3, subgroupBroadcast(x, 3u), y0, y1);
        update8(&acc4, subgroupBroadcast(x, 4u), y0, y1);
        update8(&acc5, subgroupBroadcast(x, 5u), y0, y1);
        update8(&acc6, subgroupBroadcast(x, 6u), y0, y1);
        update8(&acc7, subgroupBroadcast(x, 7u), y0, y1);
    }
    if (col >= p.n) {
        return;
    }
    store8(s, r0, c0, c1, acc0);
    store8(s, r1, c0, c1, acc1);
    store8(s, r2, c0, c1, acc2);
    store8(s, r3, c0, c1, acc3);
    store8(s, r4, c0, c1, acc4);
    store8(s, r5, c0, c1, acc5);
    store8(s, r6, c0, c1, acc6);
    store8(s, r7, c0, c1, acc7);
}

// ---------------------------------------------------------------------------------------------
// gemm_lanes_64x8, for large products: twice the rows of gemm_lanes_32x8 for the same columns,
// so per k and lane 8 + 8 loads, 16 broadcasts and 512 FMAs: a third faster on a 512 cube and
// on dW_hh. LLVM takes about 4 s to compile it (once per machine: Mesa caches it on disk).

@compute @workgroup_size(8, 1, 1)
fn gemm_lanes_64x8(
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let s = strides();
    let origin = tile_origin(wg, groups, 64u, 64u);
    let col = origin.y + lane * 8u;
    let last_row = p.m - 1u;
    let r0 = quad(origin.x + 0u, last_row);
    let r1 = quad(origin.x + 4u, last_row);
    let r2 = quad(origin.x + 8u, last_row);
    let r3 = quad(origin.x + 12u, last_row);
    let r4 = quad(origin.x + 16u, last_row);
    let r5 = quad(origin.x + 20u, last_row);
    let r6 = quad(origin.x + 24u, last_row);
    let r7 = quad(origin.x + 28u, last_row);
    let r8 = quad(origin.x + 32u, last_row);
    let r9 = quad(origin.x + 36u, last_row);
    let r10 = quad(origin.x + 40u, last_row);
    let r11 = quad(origin.x + 44u, last_row);
    let r12 = quad(origin.x + 48u, last_row);
    let r13 = quad(origin.x + 52u, last_row);
    let r14 = quad(origin.x + 56u, last_row);
    let r15 = quad(origin.x + 60u, last_row);
    let mine_lo = quad(origin.x + lane * 8u, last_row);
    let mine_hi = quad(origin.x + lane * 8u + 4u, last_row);
    let c0 = quad(col, p.n - 1u);
    let c1 = quad(col + 4u, p.n - 1u);
    var acc0 = start8(s, r0, c0, c1);
    var acc1 = start8(s, r1, c0, c1);
    var acc2 = start8(s, r2, c0, c1);
    var acc3 = start8(s, r3, c0, c1);
    var acc4 = start8(s, r4, c0, c1);
    var acc5 = start8(s, r5, c0, c1);
    var acc6 = start8(s, r6, c0, c1);
    var acc7 = start8(s, r7, c0, c1);
    var acc8 = start8(s, r8, c0, c1);
    var acc9 = start8(s, r9, c0, c1);
    var acc10 = start8(s, r10, c0, c1);
    var acc11 = start8(s, r11, c0, c1);
    var acc12 = start8(s, r12, c0, c1);
    var acc13 = start8(s, r13, c0, c1);
    var acc14 = start8(s, r14, c0, c1);
    var acc15 = start8(s, r15, c0, c1);
    for (var k = 0u; k < p.k; k++) {
        let lo = a_at(s, mine_lo, k);
        let hi = a_at(s, mine_hi, k);
        let y0 = b_at(s, k, c0);
        let y1 = b_at(s, k, c1);
        update8(&acc0, subgroupBroadcast(lo, 0u), y0, y1);
        update8(&acc1, subgroupBroadcast(hi, 0u), y0, y1);
        update8(&acc2, subgroupBroadcast(lo, 1u), y0, y1);
        update8(&acc3, subgroupBroadcast(hi, 1u), y0, y1);
        update8(&acc4, subgroupBroadcast(lo, 2u), y0, y1);
        update8(&acc5, subgroupBroadcast(hi, 2u), y0, y1);
        update8(&acc6, subgroupBroadcast(lo, 3u), y0, y1);
        update8(&acc7, subgroupBroadcast(hi, 3u), y0, y1);
        update8(&acc8, subgroupBroadcast(lo, 4u), y0, y1);
        update8(&acc9, subgroupBroadcast(hi, 4u), y0, y1);
        update8(&acc10, subgroupBroadcast(lo, 5u), y0, y1);
        update8(&acc11, subgroupBroadcast(hi, 5u), y0, y1);
        update8(&acc12, subgroupBroadcast(lo, 6u), y0, y1);
        update8(&acc13, subgroupBroadcast(hi, 6u), y0, y1);
        update8(&acc14, subgroupBroadcast(lo, 7u), y0, y1);
        update8(&acc15, subgroupBroadcast(hi, 7u), y0, y1);
    }
    if (col >= p.n) {
        return;
    }
    store8(s, r0, c0, c1, acc0);
    store8(s, r1, c0, c1, acc1);
    store8(s, r2, c0, c1, acc2);
    store8(s, r3, c0, c1, acc3);
    store8(s, r4, c0, c1, acc4);
    store8(s, r5, c0, c1, acc5);
    store8(s, r6, c0, c1, acc6);
    store8(s, r7, c0, c1, acc7);
    store8(s, r8, c0, c1, acc8);
    store8(s, r9, c0, c1, acc9);
    store8(s, r10, c0, c1, acc10);
    store8(s, r11, c0, c1, acc11);
    store8(s, r12, c0, c1, acc12);
    store8(s, r13, c0, c1, acc13);
    store8(s, r14, c0, c1, acc14);
    store8(s, r15, c0, c1, acc15);
}

// ---------------------------------------------------------------------------------------------
// gemm_lanes_8x16, for products with few rows (M <= 8, or few columns with trans_c): the
// group's tile is 8 rows x 128 columns; lane l owns 16 columns and loads row l of op(A)'s
// column k. Per k and lane: 1 + 16 loads, 8 broadcasts, 128 FMAs.

// 4 rows x 16 columns of C.
struct Quad16 {
    t0: mat4x4<f32>,
    t1: mat4x4<f32>,
    t2: mat4x4<f32>,
    t3: mat4x4<f32>,
}

struct Cols16 {
    c0: vec4<u32>,
    c1: vec4<u32>,
    c2: vec4<u32>,
    c3: vec4<u32>,
}

struct Row16 {
    y0: vec4<f32>,
    y1: vec4<f32>,
    y2: vec4<f32>,
    y3: vec4<f32>,
}

fn start16(s: Strides, rows: vec4<u32>, cols: Cols16) -> Quad16 {
    return Quad16(start(s, rows, cols.c0), start(s, rows, cols.c1), start(s, rows, cols.c2),
        start(s, rows, cols.c3));
}

fn b_at16(s: Strides, k: u32, cols: Cols16) -> Row16 {
    return Row16(b_at(s, k, cols.c0), b_at(s, k, cols.c1), b_at(s, k, cols.c2),
        b_at(s, k, cols.c3));
}

fn update16(acc: ptr<function, Quad16>, x: vec4<f32>, y: Row16) {
    (*acc).t0 += outer(x, y.y0);
    (*acc).t1 += outer(x, y.y1);
    (*acc).t2 += outer(x, y.y2);
    (*acc).t3 += outer(x, y.y3);
}

fn store16(s: Strides, rows: vec4<u32>, cols: Cols16, acc: Quad16) {
    store(s, rows, cols.c0, acc.t0);
    store(s, rows, cols.c1, acc.t1);
    store(s, rows, cols.c2, acc.t2);
    store(s, rows, cols.c3, acc.t3);
}

@compute @workgroup_size(8, 1, 1)
fn gemm_lanes_8x16(
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let s = strides();
    let origin = tile_origin(wg, groups, 8u, 128u);
    let col = origin.y + lane * 16u;
    let last_row = p.m - 1u;
    let last_col = p.n - 1u;
    let r0 = quad(origin.x, last_row);
    let r1 = quad(origin.x + 4u, last_row);
    let mine = min(origin.x + lane, last_row);
    let cols = Cols16(quad(col, last_col), quad(col + 4u, last_col), quad(col + 8u, last_col),
        quad(col + 12u, last_col));
    var acc0 = start16(s, r0, cols);
    var acc1 = start16(s, r1, cols);
    for (var k = 0u; k < p.k; k++) {
        let x = a[p.a_offset + mine * s.a_m + k * s.a_k];
        let y = b_at16(s, k, cols);
        let x0 = vec4<f32>(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u),
            subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u));
        let x1 = vec4<f32>(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u),
            subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
        update16(&acc0, x0, y);
        update16(&acc1, x1, y);
    }
    if (col >= p.n) {
        return;
    }
    store16(s, r0, cols, acc0);
    store16(s, r1, cols, acc1);
}
