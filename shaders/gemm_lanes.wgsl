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

struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_offset: u32,
    b_offset: u32,
    c_offset: u32,
    bias_offset: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32,
    has_bias: u32,
    // ceil(M / rows of the group's tile)
    row_blocks: u32,
    // 1: C is stored transposed (C[i, j] at c_offset + j * ldc + i), bias runs along its rows
    trans_c: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: GemmParams;

// Element strides of op(A) along M and K, op(B) along K and N, C along M and N.
struct Strides {
    a_m: u32,
    a_k: u32,
    b_k: u32,
    b_n: u32,
    c_m: u32,
    c_n: u32,
}

fn strides() -> Strides {
    let ta = p.trans_a != 0u;
    let tb = p.trans_b != 0u;
    let tc = p.trans_c != 0u;
    return Strides(
        select(p.lda, 1u, ta),
        select(1u, p.lda, ta),
        select(p.ldb, 1u, tb),
        select(1u, p.ldb, tb),
        select(p.ldc, 1u, tc),
        select(1u, p.ldc, tc),
    );
}

// Four consecutive indices from `first`, clamped to `last`.
fn quad(first: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// op(A)[rows, k] and op(B)[k, cols].
fn a_at(s: Strides, rows: vec4<u32>, k: u32) -> vec4<f32> {
    let o = p.a_offset + rows * s.a_m + k * s.a_k;
    return vec4<f32>(a[o.x], a[o.y], a[o.z], a[o.w]);
}

fn b_at(s: Strides, k: u32, cols: vec4<u32>) -> vec4<f32> {
    let o = p.b_offset + k * s.b_k + cols * s.b_n;
    return vec4<f32>(b[o.x], b[o.y], b[o.z], b[o.w]);
}

// A 4x4 tile of C by columns: t[j][i] = C[rows[i], cols[j]].
fn outer(x: vec4<f32>, y: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(x * y.x, x * y.y, x * y.z, x * y.w);
}

fn c_index(s: Strides, rows: vec4<u32>, col: u32) -> vec4<u32> {
    return p.c_offset + rows * s.c_m + col * s.c_n;
}

fn c_column(s: Strides, rows: vec4<u32>, col: u32) -> vec4<f32> {
    let o = c_index(s, rows, col);
    return vec4<f32>(c[o.x], c[o.y], c[o.z], c[o.w]);
}

// The tile's starting value: bias, plus C when accumulating.
fn start(s: Strides, rows: vec4<u32>, cols: vec4<u32>) -> mat4x4<f32> {
    var t = mat4x4<f32>();
    if (p.has_bias != 0u) {
        // Clamped into the binding: a product without bias binds a 4-word dummy.
        let last = vec4<u32>(arrayLength(&bias) - 1u);
        if (p.trans_c != 0u) {
            let i = min(p.bias_offset + rows, last);
            let v = vec4<f32>(bias[i.x], bias[i.y], bias[i.z], bias[i.w]);
            t = mat4x4<f32>(v, v, v, v);
        } else {
            let j = min(p.bias_offset + cols, last);
            t = mat4x4<f32>(vec4<f32>(bias[j.x]), vec4<f32>(bias[j.y]), vec4<f32>(bias[j.z]),
                vec4<f32>(bias[j.w]));
        }
    }
    if (p.accumulate != 0u) {
        t += mat4x4<f32>(c_column(s, rows, cols.x), c_column(s, rows, cols.y),
            c_column(s, rows, cols.z), c_column(s, rows, cols.w));
    }
    return t;
}

fn store_column(s: Strides, rows: vec4<u32>, col: u32, v: vec4<f32>) {
    let o = c_index(s, rows, col);
    c[o.x] = v.x;
    c[o.y] = v.y;
    c[o.z] = v.z;
    c[o.w] = v.w;
}

fn store(s: Strides, rows: vec4<u32>, cols: vec4<u32>, t: mat4x4<f32>) {
    store_column(s, rows, cols.x, t[0]);
    store_column(s, rows, cols.y, t[1]);
    store_column(s, rows, cols.z, t[2]);
    store_column(s, rows, cols.w, t[3]);
}

// Where a group's tile starts: row blocks vary fastest, so neighbouring groups share columns.
fn tile_origin(wg: vec3<u32>, groups: vec3<u32>, rows: u32, cols: u32) -> vec2<u32> {
    let g = wg.x + wg.y * groups.x;
    return vec2<u32>((g % p.row_blocks) * rows, (g / p.row_blocks) * cols);
}

// ---------------------------------------------------------------------------------------------
// gemm_lanes_32x8: the group's tile is 32 rows x 64 columns; lane l owns columns 8l..8l+7 of
// it (two quads) for all 32 rows, and loads rows 4l..4l+3 of op(A)'s column k. Per k and lane:
// 4 + 8 loads, 8 broadcasts, 256 FMAs.

// 4 rows x 8 columns of C.
struct Quad8 {
    t0: mat4x4<f32>,
    t1: mat4x4<f32>,
}

fn start8(s: Strides, rows: vec4<u32>, c0: vec4<u32>, c1: vec4<u32>) -> Quad8 {
    return Quad8(start(s, rows, c0), start(s, rows, c1));
}

fn update8(acc: ptr<function, Quad8>, x: vec4<f32>, y0: vec4<f32>, y1: vec4<f32>) {
    (*acc).t0 += outer(x, y0);
    (*acc).t1 += outer(x, y1);
}

fn store8(s: Strides, rows: vec4<u32>, c0: vec4<u32>, c1: vec4<u32>, acc: Quad8) {
    store(s, rows, c0, acc.t0);
    store(s, rows, c1, acc.t1);
}

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
