// gemm: C[M, N] = (accumulate ? C : 0) + op(A)[M, K] * op(B)[K, N] + (has_bias ? bias[N] : 0)
//
// Every matrix product of the engine but the per-step recurrent ones (fused.wgsl) goes through
// this file: the input projection of all T steps, the head, a segment border's product, dx and
// the weight gradients. Operands are addressed by element offset and row stride inside larger buffers, so a
// time step's slice of a [T, B, H] buffer is used in place.
//   trans_a = 0: A is stored [M, K] (A[m * lda + k]);  1: stored [K, M] (A[k * lda + m]).
//   trans_b = 0: B is stored [K, N] (B[k * ldb + n]);  1: stored [N, K] (B[n * ldb + k]).
// Two families of entry points, chosen by the host (src/gpu/gemm.rs) per adapter and shape:
//   gemm_tiled          for GPUs: 64x64 tiles of C staged through workgroup memory.
//   gemm_block_RxC      for CPU adapters without 8-lane subgroups: each invocation an R x C
//                       block of C read straight from storage, no workgroup memory, no barriers.
// CPU adapters with 8-lane subgroups (llvmpipe on AVX2) use gemm_lanes.wgsl instead: 2x as fast.
// Either way each element of C is summed over k in one fixed order: results are bit-reproducible.

// (gemm_params.wgsl and gemm_loads.wgsl come first: GemmParams, bias, C, outer, op(A), op(B)
// and their loads; trans_c is 0 for these kernels)


// ---------------------------------------------------------------------------------------------
// gemm_tiled (GPUs): a 16x16 workgroup computes a 64x64 tile of C, each invocation a 4x4 block
// in four vec4 accumulators. K is walked in slices of 16 staged in workgroup memory: per slice
// the workgroup loads 2 * 64 * 16 floats (8 KiB) once from global memory and does 64 * 64 * 16
// FMAs on them, 32 FMAs per global load. Loads map consecutive invocations to consecutive
// addresses for either storage order. gemm_tiled_prefetch is the same with the next slice's
// loads issued before this slice's FMAs.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// a_tile[k * TILE_M + m], b_tile[k * TILE_N + n]
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

// The 4 elements of op(A) and of op(B) an invocation stages for the slice from k0. The
// fastest-varying index follows the operand's storage order so neighbouring invocations read
// neighbouring addresses.
struct Slice {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn slice_a(e: u32, tile_row: u32, k0: u32) -> f32 {
    let at = stage_place_a(e, TILE_M, TILE_K);
    return load_a(tile_row + at.x, k0 + at.y, p.k);
}

fn slice_b(e: u32, tile_col: u32, k0: u32) -> f32 {
    let at = stage_place_b(e, TILE_N, TILE_K);
    return load_b(k0 + at.x, tile_col + at.y, p.k);
}

fn load_slice(lid: u32, tile_row: u32, tile_col: u32, k0: u32) -> Slice {
    return Slice(
        vec4<f32>(slice_a(lid, tile_row, k0), slice_a(lid + 256u, tile_row, k0),
            slice_a(lid + 512u, tile_row, k0), slice_a(lid + 768u, tile_row, k0)),
        vec4<f32>(slice_b(lid, tile_col, k0), slice_b(lid + 256u, tile_col, k0),
            slice_b(lid + 512u, tile_col, k0), slice_b(lid + 768u, tile_col, k0)),
    );
}

fn put_a(e: u32, v: f32) {
    let at = stage_place_a(e, TILE_M, TILE_K);
    a_tile[at.y * TILE_M + at.x] = v;
}

fn put_b(e: u32, v: f32) {
    let at = stage_place_b(e, TILE_N, TILE_K);
    b_tile[at.x * TILE_N + at.y] = v;
}

fn put_slice(lid: u32, s: Slice) {
    put_a(lid, s.a.x);
    put_a(lid + 256u, s.a.y);
    put_a(lid + 512u, s.a.z);
    put_a(lid + 768u, s.a.w);
    put_b(lid, s.b.x);
    put_b(lid + 256u, s.b.y);
    put_b(lid + 512u, s.b.z);
    put_b(lid + 768u, s.b.w);
}

// The staged slice's FMAs for the 4x4 block at (row0, col0) of the tile: acc[i] holds its
// row i.
fn slice_fmas(acc: mat4x4<f32>, row0: u32, col0: u32) -> mat4x4<f32> {
    var t = acc;
    for (var kk = 0u; kk < TILE_K; kk++) {
        let ai = kk * TILE_M + row0;
        let bi = kk * TILE_N + col0;
        let av = vec4<f32>(a_tile[ai], a_tile[ai + 1u], a_tile[ai + 2u], a_tile[ai + 3u]);
        let bv = vec4<f32>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
        t[0] += av.x * bv;
        t[1] += av.y * bv;
        t[2] += av.z * bv;
        t[3] += av.w * bv;
    }
    return t;
}

// The kernel body. With `prefetch` (a constant in each entry point) the next slice's global
// loads are issued before this slice's FMAs, so their latency overlaps them (in registers:
// 8 floats an invocation); the sums and their order are the same either way.
fn tiled(prefetch: bool, lid: u32, local: vec3<u32>, wg: vec3<u32>, groups: vec3<u32>) {
    // Tiles along M use y and z, so M may exceed 65535 * 64 rows.
    let tile_row = (wg.y + wg.z * groups.y) * TILE_M;
    let tile_col = wg.x * TILE_N;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;
    var acc = mat4x4<f32>();
    var next = Slice(vec4<f32>(), vec4<f32>());
    if (prefetch) {
        next = load_slice(lid, tile_row, tile_col, 0u);
    }
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        if (prefetch) {
            put_slice(lid, next);
        } else {
            put_slice(lid, load_slice(lid, tile_row, tile_col, k0));
        }
        workgroupBarrier();
        if (prefetch && k0 + TILE_K < p.k) {
            next = load_slice(lid, tile_row, tile_col, k0 + TILE_K);
        }
        acc = slice_fmas(acc, row0, col0);
        workgroupBarrier();
    }
    store_row(tile_row + row0, tile_col + col0, acc[0]);
    store_row(tile_row + row0 + 1u, tile_col + col0, acc[1]);
    store_row(tile_row + row0 + 2u, tile_col + col0, acc[2]);
    store_row(tile_row + row0 + 3u, tile_col + col0, acc[3]);
}

@compute @workgroup_size(16, 16, 1)
fn gemm_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    tiled(false, lid, local, wg, groups);
}

// Not Auto's rule anywhere (no GPU was at hand to measure it): a candidate for tuning.
@compute @workgroup_size(16, 16, 1)
fn gemm_tiled_prefetch(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    tiled(true, lid, local, wg, groups);
}

// ---------------------------------------------------------------------------------------------
// gemm_block_RxC (CPU adapters). On llvmpipe an invocation is one lane of an 8-wide SIMD loop:
// an FMA costs about 0.5 ns of thread time per lane, but every load from storage or workgroup
// memory is a scalar loop over the lanes, about 15 ns per lane and element. Loads, not FMAs,
// set the speed, so each invocation keeps an R x C block of C in registers and per k loads R
// elements of op(A) and C of op(B) for R * C FMAs: 16x16 does 8 FMAs per load where the tiled
// kernel does 2 (plus staging and barriers). Workgroup memory would not help: its loads cost the
// same per-lane loop. Blocks stop at 16x16 because LLVM's compile time grows faster than the
// accumulators: first dispatch 0.6 s for 8x8, 3.5 s for 16x16, 15 s for 32x16 (llvmpipe then
// caches the result on disk), running 1.8x and 2.1x as fast as 8x8 (32x32: 2.8x after 2.5 min
// of compiling).
//
// Rows and columns past the edge of C are clamped to the last one, so the loads need no
// branches; the clamped copies compute bit-identical values. The accumulators start from
// bias (+ C), so every read of C precedes every write: the copies' stores are idempotent and
// the store phase is straight-line (a guarded one took 2-3x as long to compile). Only
// invocations past the last block return early (their clamped blocks belong to others).
// A tile (mat4x4) holds a 4x4 block of C by columns: tile[j][i] = C[row + i, col + j].

struct Block {
    row: u32,
    col: u32,
    // element strides of op(A) along M and K, of op(B) along K and N
    a_row: u32,
    a_k: u32,
    b_k: u32,
    b_col: u32,
}

fn block_at(lid: u32, wg: vec3<u32>, groups: vec3<u32>, rows: u32, cols: u32) -> Block {
    // Neighbouring invocations take neighbouring row blocks of one column block: they share
    // the columns of B in cache.
    let id = (wg.x + wg.y * groups.x) * 8u + lid;
    let ta = p.trans_a != 0u;
    let tb = p.trans_b != 0u;
    return Block(
        (id % p.row_blocks) * rows,
        (id / p.row_blocks) * cols,
        select(p.lda, 1u, ta),
        select(1u, p.lda, ta),
        select(p.ldb, 1u, tb),
        select(1u, p.ldb, tb),
    );
}

// Four consecutive rows (columns) of C from `first`, clamped to the last one.
fn rows4(first: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
}

fn cols4(first: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
}

// Where those rows of op(A) / columns of op(B) start.
fn a_starts(blk: Block, rows: vec4<u32>) -> vec4<u32> {
    return p.a_offset + rows * blk.a_row;
}

fn b_starts(blk: Block, cols: vec4<u32>) -> vec4<u32> {
    return p.b_offset + cols * blk.b_col;
}

// op(A)[rows, k] and op(B)[k, cols]: 4 loads each.
fn a_column(blk: Block, starts: vec4<u32>, k: u32) -> vec4<f32> {
    let o = k * blk.a_k;
    return vec4<f32>(a[starts.x + o], a[starts.y + o], a[starts.z + o], a[starts.w + o]);
}

fn b_row(blk: Block, starts: vec4<u32>, k: u32) -> vec4<f32> {
    let o = k * blk.b_k;
    return vec4<f32>(b[starts.x + o], b[starts.y + o], b[starts.z + o], b[starts.w + o]);
}

fn bias_at(cols: vec4<u32>) -> vec4<f32> {
    if (p.has_bias == 0u) {
        return vec4<f32>(0.0);
    }
    // Clamped into the binding: a product without bias binds a 4-word dummy.
    let j = min(p.bias_offset + cols, vec4<u32>(arrayLength(&bias) - 1u));
    return vec4<f32>(bias[j.x], bias[j.y], bias[j.z], bias[j.w]);
}

// Offsets in c of the starts of C's rows.
fn c_rows(rows: vec4<u32>) -> vec4<u32> {
    return p.c_offset + rows * p.ldc;
}

// The tile's starting value: bias, plus C when accumulating.
fn start_tile(rows: vec4<u32>, cols: vec4<u32>, bias_cols: vec4<f32>) -> mat4x4<f32> {
    let r = c_rows(rows);
    var t = mat4x4<f32>(
        vec4<f32>(bias_cols.x),
        vec4<f32>(bias_cols.y),
        vec4<f32>(bias_cols.z),
        vec4<f32>(bias_cols.w),
    );
    if (p.accumulate != 0u) {
        t += mat4x4<f32>(
            vec4<f32>(c[r.x + cols.x], c[r.y + cols.x], c[r.z + cols.x], c[r.w + cols.x]),
            vec4<f32>(c[r.x + cols.y], c[r.y + cols.y], c[r.z + cols.y], c[r.w + cols.y]),
            vec4<f32>(c[r.x + cols.z], c[r.y + cols.z], c[r.z + cols.z], c[r.w + cols.z]),
            vec4<f32>(c[r.x + cols.w], c[r.y + cols.w], c[r.z + cols.w], c[r.w + cols.w]),
        );
    }
    return t;
}

fn store_tile(rows: vec4<u32>, cols: vec4<u32>, t: mat4x4<f32>) {
    let r = c_rows(rows);
    c[r.x + cols.x] = t[0].x;
    c[r.y + cols.x] = t[0].y;
    c[r.z + cols.x] = t[0].z;
    c[r.w + cols.x] = t[0].w;
    c[r.x + cols.y] = t[1].x;
    c[r.y + cols.y] = t[1].y;
    c[r.z + cols.y] = t[1].z;
    c[r.w + cols.y] = t[1].w;
    c[r.x + cols.z] = t[2].x;
    c[r.y + cols.z] = t[2].y;
    c[r.z + cols.z] = t[2].z;
    c[r.w + cols.z] = t[2].w;
    c[r.x + cols.w] = t[3].x;
    c[r.y + cols.w] = t[3].y;
    c[r.z + cols.w] = t[3].z;
    c[r.w + cols.w] = t[3].w;
}

// A panel is 4 rows x 16 columns of C: four tiles side by side. Structs with named members
// keep every accumulator in a register (indexed private arrays are several times slower).
struct Cols16 {
    c0: vec4<u32>,
    c1: vec4<u32>,
    c2: vec4<u32>,
    c3: vec4<u32>,
}

struct Row16 {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
}

struct Panel {
    t0: mat4x4<f32>,
    t1: mat4x4<f32>,
    t2: mat4x4<f32>,
    t3: mat4x4<f32>,
}

fn cols16(first: u32) -> Cols16 {
    return Cols16(cols4(first), cols4(first + 4u), cols4(first + 8u), cols4(first + 12u));
}

fn b_starts16(blk: Block, cols: Cols16) -> Cols16 {
    return Cols16(
        b_starts(blk, cols.c0),
        b_starts(blk, cols.c1),
        b_starts(blk, cols.c2),
        b_starts(blk, cols.c3),
    );
}

fn b_row16(blk: Block, starts: Cols16, k: u32) -> Row16 {
    return Row16(
        b_row(blk, starts.c0, k),
        b_row(blk, starts.c1, k),
        b_row(blk, starts.c2, k),
        b_row(blk, starts.c3, k),
    );
}

fn bias16(cols: Cols16) -> Row16 {
    return Row16(bias_at(cols.c0), bias_at(cols.c1), bias_at(cols.c2), bias_at(cols.c3));
}

fn start_panel(rows: vec4<u32>, cols: Cols16, bias_cols: Row16) -> Panel {
    return Panel(
        start_tile(rows, cols.c0, bias_cols.c0),
        start_tile(rows, cols.c1, bias_cols.c1),
        start_tile(rows, cols.c2, bias_cols.c2),
        start_tile(rows, cols.c3, bias_cols.c3),
    );
}

// 64 FMAs.
fn update_panel(acc: ptr<function, Panel>, a_k: vec4<f32>, b_k: Row16) {
    (*acc).t0 += outer(a_k, b_k.c0);
    (*acc).t1 += outer(a_k, b_k.c1);
    (*acc).t2 += outer(a_k, b_k.c2);
    (*acc).t3 += outer(a_k, b_k.c3);
}

fn store_panel(rows: vec4<u32>, cols: Cols16, acc: Panel) {
    store_tile(rows, cols.c0, acc.t0);
    store_tile(rows, cols.c1, acc.t1);
    store_tile(rows, cols.c2, acc.t2);
    store_tile(rows, cols.c3, acc.t3);
}

// The general case: per k 32 loads, 256 FMAs.
@compute @workgroup_size(8, 1, 1)
fn gemm_block_16x16(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let blk = block_at(lid, wg, groups, 16u, 16u);
    if (blk.col >= p.n) {
        return;
    }
    let rows0 = rows4(blk.row);
    let rows1 = rows4(blk.row + 4u);
    let rows2 = rows4(blk.row + 8u);
    let rows3 = rows4(blk.row + 12u);
    let a0 = a_starts(blk, rows0);
    let a1 = a_starts(blk, rows1);
    let a2 = a_starts(blk, rows2);
    let a3 = a_starts(blk, rows3);
    let cols = cols16(blk.col);
    let b16 = b_starts16(blk, cols);
    let bias_cols = bias16(cols);
    var acc0 = start_panel(rows0, cols, bias_cols);
    var acc1 = start_panel(rows1, cols, bias_cols);
    var acc2 = start_panel(rows2, cols, bias_cols);
    var acc3 = start_panel(rows3, cols, bias_cols);
    for (var k = 0u; k < p.k; k++) {
        let b_k = b_row16(blk, b16, k);
        update_panel(&acc0, a_column(blk, a0, k), b_k);
        update_panel(&acc1, a_column(blk, a1, k), b_k);
        update_panel(&acc2, a_column(blk, a2, k), b_k);
        update_panel(&acc3, a_column(blk, a3, k), b_k);
    }
    store_panel(rows0, cols, acc0);
    store_panel(rows1, cols, acc1);
    store_panel(rows2, cols, acc2);
    store_panel(rows3, cols, acc3);
}

// Few columns (N <= 4: dx, the head): 32 rows x 4 columns, per k 36 loads for 128 FMAs, and
// each element of A is loaded once.
@compute @workgroup_size(8, 1, 1)
fn gemm_block_32x4(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let blk = block_at(lid, wg, groups, 32u, 4u);
    if (blk.col >= p.n) {
        return;
    }
    let cols = cols4(blk.col);
    let b0 = b_starts(blk, cols);
    let bias_cols = bias_at(cols);
    let rows0 = rows4(blk.row);
    let rows1 = rows4(blk.row + 4u);
    let rows2 = rows4(blk.row + 8u);
    let rows3 = rows4(blk.row + 12u);
    let rows4_ = rows4(blk.row + 16u);
    let rows5 = rows4(blk.row + 20u);
    let rows6 = rows4(blk.row + 24u);
    let rows7 = rows4(blk.row + 28u);
    let a0 = a_starts(blk, rows0);
    let a1 = a_starts(blk, rows1);
    let a2 = a_starts(blk, rows2);
    let a3 = a_starts(blk, rows3);
    let a4 = a_starts(blk, rows4_);
    let a5 = a_starts(blk, rows5);
    let a6 = a_starts(blk, rows6);
    let a7 = a_starts(blk, rows7);
    var acc0 = start_tile(rows0, cols, bias_cols);
    var acc1 = start_tile(rows1, cols, bias_cols);
    var acc2 = start_tile(rows2, cols, bias_cols);
    var acc3 = start_tile(rows3, cols, bias_cols);
    var acc4 = start_tile(rows4_, cols, bias_cols);
    var acc5 = start_tile(rows5, cols, bias_cols);
    var acc6 = start_tile(rows6, cols, bias_cols);
    var acc7 = start_tile(rows7, cols, bias_cols);
    for (var k = 0u; k < p.k; k++) {
        let b_k = b_row(blk, b0, k);
        acc0 += outer(a_column(blk, a0, k), b_k);
        acc1 += outer(a_column(blk, a1, k), b_k);
        acc2 += outer(a_column(blk, a2, k), b_k);
        acc3 += outer(a_column(blk, a3, k), b_k);
        acc4 += outer(a_column(blk, a4, k), b_k);
        acc5 += outer(a_column(blk, a5, k), b_k);
        acc6 += outer(a_column(blk, a6, k), b_k);
        acc7 += outer(a_column(blk, a7, k), b_k);
    }
    store_tile(rows0, cols, acc0);
    store_tile(rows1, cols, acc1);
    store_tile(rows2, cols, acc2);
    store_tile(rows3, cols, acc3);
    store_tile(rows4_, cols, acc4);
    store_tile(rows5, cols, acc5);
    store_tile(rows6, cols, acc6);
    store_tile(rows7, cols, acc7);
}

// Few rows (M <= 4: the head's weight gradient): 4 rows x 32 columns, per k 36 loads for 128
// FMAs, and each element of B is loaded once.
@compute @workgroup_size(8, 1, 1)
fn gemm_block_4x32(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let blk = block_at(lid, wg, groups, 4u, 32u);
    if (blk.col >= p.n) {
        return;
    }
    let rows = rows4(blk.row);
    let a0 = a_starts(blk, rows);
    let cols_lo = cols16(blk.col);
    let cols_hi = cols16(blk.col + 16u);
    let b_lo = b_starts16(blk, cols_lo);
    let b_hi = b_starts16(blk, cols_hi);
    var acc_lo = start_panel(rows, cols_lo, bias16(cols_lo));
    var acc_hi = start_panel(rows, cols_hi, bias16(cols_hi));
    for (var k = 0u; k < p.k; k++) {
        let a_k = a_column(blk, a0, k);
        update_panel(&acc_lo, a_k, b_row16(blk, b_lo, k));
        update_panel(&acc_hi, a_k, b_row16(blk, b_hi, k));
    }
    store_panel(rows, cols_lo, acc_lo);
    store_panel(rows, cols_hi, acc_hi);
}
