// gemm: C[M, N] = (accumulate ? C : 0) + op(A)[M, K] op(B)[K, N] + (has_bias ? bias[N] : 0)
//
// Every matrix product of the engine but the per-step recurrent ones (fused.wgsl) goes through
// this file: the input projection of all T steps, the head, a segment border's product, dx and
// the weight gradients. Operands are addressed by element offset and row stride inside larger
// buffers, so a time step's slice of a [T, B, H] buffer is used in place.
//   trans_a = 0: A is stored [M, K] (A[m * lda + k]);  1: stored [K, M] (A[k * lda + m]).
//   trans_b = 0: B is stored [K, N] (B[k * ldb + n]);  1: stored [N, K] (B[n * ldb + k]).
//
// One family of kernels, shaped per pipeline. The register block is the entry point's:
//   gemm_4x4   each invocation a 4x4 block of C in 4 vec4 accumulators;
//   gemm_8x8   each invocation an 8x8 block in 16 (rows 4y..4y+3 and 4(GROUP_M+y).., columns
//              likewise 4*GROUP_N apart, so neighbouring invocations read neighbouring vec4s).
// The rest is `override` constants the host sets when it makes the pipeline (GemmTile in
// src/gpu/tiles.rs): a workgroup is GROUP_N x GROUP_M invocations per slice and SLICES slices
// (workgroup_size z), so its tile of C is (BLOCK * GROUP_M) x (BLOCK * GROUP_N); K is staged
// SLICE_K at a time in workgroup memory as vec4s along M and along N; each slice walks its own
// contiguous range of K, and at the end slices 1.. leave their blocks in workgroup memory and
// slice 0 adds them in slice order. The host may also split K over parts of workgroups
// (p.k_parts, in grid x): part j writes its partial C to the slice j * M * ldc of a scratch
// buffer bound as C, and gemm_split_sum adds the parts in order, then bias and C.
//
// Napkin maths per k (vec4 loads from workgroup memory; global floats staged per workgroup):
//   gemm_4x4  2 loads for 16 FMAs (8 per load); 4*GROUP_M + 4*GROUP_N floats for
//             16*GROUP_M*GROUP_N FMAs: at 16x16, 128 floats for 4096 FMAs (32 per float).
//   gemm_8x8  4 loads for 64 FMAs (16 per load); at 16x16, 256 floats for 16384 FMAs (64).
// Every element of C is summed over k in increasing order within a slice and a part, slices and
// parts added in order, then bias, then C: no atomics, so results are bit-reproducible.

// (gemm_layout.wgsl comes first: GemmParams p and the bindings a, b, bias, c)


// Invocations along N (x) and M (y) per slice, K per stage, slices of K per workgroup (z).
override GROUP_N: u32 = 16u;
override GROUP_M: u32 = 16u;
override SLICE_K: u32 = 16u;
override SLICES: u32 = 1u;
// vec4s of workgroup memory: the host sets the larger of the staging (SLICES * SLICE_K *
// (rows + columns of the tile) / 4) and the blocks slices 1.. leave (GemmTile::memory_vec4s).
override MEMORY: u32 = 512u;

var<workgroup> mem: array<vec4<f32>, MEMORY>;

// op(A)[row, col], 0 past M or past k_end (K, or the end of a slice of it).
fn load_a(row: u32, col: u32, k_end: u32) -> f32 {
    if (row >= p.m || col >= k_end) {
        return 0.0;
    }
    if (p.trans_a == 0u) {
        return f32(a[p.a_offset + row * p.lda + col]);
    }
    return f32(a[p.a_offset + col * p.lda + row]);
}

// op(B)[row, col], 0 past k_end or past N.
fn load_b(row: u32, col: u32, k_end: u32) -> f32 {
    if (row >= k_end || col >= p.n) {
        return 0.0;
    }
    if (p.trans_b == 0u) {
        return f32(b[p.b_offset + row * p.ldb + col]);
    }
    return f32(b[p.b_offset + col * p.ldb + row]);
}

// A workgroup's tile of C: its size, where it starts, and its part of K.
struct Tile {
    rows: u32,
    // vec4s along a row of the tile: its columns / 4
    vcols: u32,
    row: u32,
    col: u32,
    part: u32,
}

// Tiles along M use grid y and z (so M may exceed 65535 tiles); x runs over the column tiles of
// each part.
fn tile_at(block: u32, wg: vec3<u32>, groups: vec3<u32>) -> Tile {
    let rows = block * GROUP_M;
    let cols = block * GROUP_N;
    let col_tiles = (p.n + cols - 1u) / cols;
    return Tile(rows, cols / 4u, (wg.y + wg.z * groups.y) * rows, (wg.x % col_tiles) * cols,
        wg.x / col_tiles);
}

// The K of slice q of a part: stages of SLICE_K from `first`, none at or past `end`. Every slice
// runs the same number of stages so the barriers stay in uniform control flow.
struct Span {
    first: u32,
    end: u32,
    stages: u32,
}

fn span_of(part: u32, q: u32) -> Span {
    let steps = (p.k + SLICE_K - 1u) / SLICE_K;
    let stages = (steps + p.k_parts * SLICES - 1u) / (p.k_parts * SLICES);
    let first = (part * SLICES + q) * stages * SLICE_K;
    return Span(first, min(p.k, first + stages * SLICE_K), stages);
}

// Where slice q's stage starts in `mem`: op(A)[tile rows, SLICE_K] at
// [a_base(q) + kk * rows / 4 + m / 4][m % 4], then op(B)[SLICE_K, tile columns] at
// [b_base(q) + kk * vcols + n / 4][n % 4].
fn a_base(tile: Tile, q: u32) -> u32 {
    return q * SLICE_K * (tile.rows / 4u + tile.vcols);
}

fn b_base(tile: Tile, q: u32) -> u32 {
    return a_base(tile, q) + SLICE_K * (tile.rows / 4u);
}

// Where an invocation works: its workgroup's tile, its slice q of K and that slice's span, its
// index t within the slice, and where its first vec4 of op(A) and of op(B) sit in a stage.
struct Walk {
    tile: Tile,
    q: u32,
    span: Span,
    t: u32,
    av: u32,
    bv: u32,
}

fn walk_of(block: u32, local: vec3<u32>, wg: vec3<u32>, groups: vec3<u32>) -> Walk {
    let tile = tile_at(block, wg, groups);
    let q = local.z;
    return Walk(tile, q, span_of(tile.part, q), local.y * GROUP_N + local.x,
        a_base(tile, q) + local.y, b_base(tile, q) + local.x);
}

// Stage s of the walk's slice: its invocations stage their share of K from span.first + s *
// SLICE_K. The fastest-varying index follows each operand's storage order, so neighbouring
// invocations read neighbouring addresses whichever way it is stored.
fn stage(w: Walk, s: u32) {
    let k0 = w.span.first + s * SLICE_K;
    stage_a(w, k0);
    stage_b(w, k0);
}

fn stage_a(w: Walk, k0: u32) {
    let tile = w.tile;
    let base_a = a_base(tile, w.q);
    for (var e = w.t; e < SLICE_K * tile.rows; e += GROUP_M * GROUP_N) {
        var at = vec2<u32>(e / SLICE_K, e % SLICE_K);
        if (p.trans_a != 0u) {
            at = vec2<u32>(e % tile.rows, e / tile.rows);
        }
        mem[base_a + at.y * (tile.rows / 4u) + at.x / 4u][at.x % 4u] =
            load_a(tile.row + at.x, k0 + at.y, w.span.end);
    }
}

fn stage_b(w: Walk, k0: u32) {
    let tile = w.tile;
    let cols = tile.vcols * 4u;
    let base_b = b_base(tile, w.q);
    for (var e = w.t; e < SLICE_K * cols; e += GROUP_M * GROUP_N) {
        var at = vec2<u32>(e / cols, e % cols);
        if (p.trans_b != 0u) {
            at = vec2<u32>(e % SLICE_K, e / SLICE_K);
        }
        mem[base_b + at.x * tile.vcols + at.y / 4u][at.y % 4u] =
            load_b(k0 + at.x, tile.col + at.y, w.span.end);
    }
}

// Slices 1.. leave the block row `row` (of the tile), vec4 column `vcol`, for slice 0: slice q
// at [((q - 1) * rows + row) * vcols + vcol].
fn park(tile: Tile, q: u32, row: u32, vcol: u32, value: vec4<f32>) {
    mem[((q - 1u) * tile.rows + row) * tile.vcols + vcol] = value;
}

// Slice 0's value plus what slices 1.. left for the same place, in slice order.
fn gathered(tile: Tile, row: u32, vcol: u32, value: vec4<f32>) -> vec4<f32> {
    var sum = value;
    for (var other = 1u; other < SLICES; other++) {
        sum += mem[((other - 1u) * tile.rows + row) * tile.vcols + vcol];
    }
    return sum;
}

// C[row, col..col+3] = value + bias (+ C) for the tile's row `row` and vec4 column `vcol`, the
// columns inside C (none past row M); a part writes its own slice of C.
fn store(tile: Tile, row: u32, vcol: u32, value: vec4<f32>) {
    let m = tile.row + row;
    if (m >= p.m) {
        return;
    }
    let start = p.c_offset + tile.part * p.m * p.ldc + m * p.ldc;
    for (var j = 0u; j < 4u; j++) {
        let n = tile.col + vcol * 4u + j;
        if (n < p.n) {
            var v = value[j];
            if (p.has_bias != 0u) {
                v += bias[p.bias_offset + n];
            }
            if (p.accumulate != 0u) {
                v += f32(c[start + n]);
            }
            c[start + n] = c_elem(v);
        }
    }
}

// The block row's sum over the slices, stored (slice 0 only: the others have parked theirs).
fn finish(tile: Tile, row: u32, vcol: u32, value: vec4<f32>) {
    store(tile, row, vcol, gathered(tile, row, vcol, value));
}

@compute @workgroup_size(GROUP_N, GROUP_M, SLICES)
fn gemm_4x4(
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let w = walk_of(4u, local, wg, groups);
    let tile = w.tile;
    let q = w.q;
    // acc[i]: row 4y + i, columns 4x..4x+3 of the tile
    var acc = mat4x4<f32>();
    for (var s = 0u; s < w.span.stages; s++) {
        stage(w, s);
        workgroupBarrier();
        for (var kk = 0u; kk < SLICE_K; kk++) {
            let av = mem[w.av + kk * (tile.rows / 4u)];
            let bv = mem[w.bv + kk * tile.vcols];
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    let row = local.y * 4u;
    if (SLICES > 1u) {
        if (q > 0u) {
            park(tile, q, row, local.x, acc[0]);
            park(tile, q, row + 1u, local.x, acc[1]);
            park(tile, q, row + 2u, local.x, acc[2]);
            park(tile, q, row + 3u, local.x, acc[3]);
        }
        workgroupBarrier();
        if (q > 0u) {
            return;
        }
    }
    finish(tile, row, local.x, acc[0]);
    finish(tile, row + 1u, local.x, acc[1]);
    finish(tile, row + 2u, local.x, acc[2]);
    finish(tile, row + 3u, local.x, acc[3]);
}

// gemm_8x8's block: row i of it is (columns 0-3 | columns 4-7) = (lo | hi).
struct Block8 {
    r0: mat2x4<f32>,
    r1: mat2x4<f32>,
    r2: mat2x4<f32>,
    r3: mat2x4<f32>,
    r4: mat2x4<f32>,
    r5: mat2x4<f32>,
    r6: mat2x4<f32>,
    r7: mat2x4<f32>,
}

// Row r of the block plus a_r times the columns (b_lo | b_hi).
fn axpy8(row: mat2x4<f32>, a_r: f32, b_lo: vec4<f32>, b_hi: vec4<f32>) -> mat2x4<f32> {
    return mat2x4<f32>(row[0] + a_r * b_lo, row[1] + a_r * b_hi);
}

// One block row at tile row `row`: its lo half at vec4 column x, its hi half GROUP_N further.
fn park8(tile: Tile, q: u32, row: u32, x: u32, value: mat2x4<f32>) {
    park(tile, q, row, x, value[0]);
    park(tile, q, row, x + GROUP_N, value[1]);
}

fn finish8(tile: Tile, row: u32, x: u32, value: mat2x4<f32>) {
    finish(tile, row, x, value[0]);
    finish(tile, row, x + GROUP_N, value[1]);
}

@compute @workgroup_size(GROUP_N, GROUP_M, SLICES)
fn gemm_8x8(
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let w = walk_of(8u, local, wg, groups);
    let tile = w.tile;
    let q = w.q;
    var acc = Block8(mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(),
        mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>());
    for (var s = 0u; s < w.span.stages; s++) {
        stage(w, s);
        workgroupBarrier();
        for (var kk = 0u; kk < SLICE_K; kk++) {
            let a_lo = mem[w.av + kk * (tile.rows / 4u)];
            let a_hi = mem[w.av + kk * (tile.rows / 4u) + GROUP_M];
            let b_lo = mem[w.bv + kk * tile.vcols];
            let b_hi = mem[w.bv + kk * tile.vcols + GROUP_N];
            acc.r0 = axpy8(acc.r0, a_lo.x, b_lo, b_hi);
            acc.r1 = axpy8(acc.r1, a_lo.y, b_lo, b_hi);
            acc.r2 = axpy8(acc.r2, a_lo.z, b_lo, b_hi);
            acc.r3 = axpy8(acc.r3, a_lo.w, b_lo, b_hi);
            acc.r4 = axpy8(acc.r4, a_hi.x, b_lo, b_hi);
            acc.r5 = axpy8(acc.r5, a_hi.y, b_lo, b_hi);
            acc.r6 = axpy8(acc.r6, a_hi.z, b_lo, b_hi);
            acc.r7 = axpy8(acc.r7, a_hi.w, b_lo, b_hi);
        }
        workgroupBarrier();
    }
    let lo = local.y * 4u;
    let hi = (GROUP_M + local.y) * 4u;
    if (SLICES > 1u) {
        if (q > 0u) {
            park8(tile, q, lo, local.x, acc.r0);
            park8(tile, q, lo + 1u, local.x, acc.r1);
            park8(tile, q, lo + 2u, local.x, acc.r2);
            park8(tile, q, lo + 3u, local.x, acc.r3);
            park8(tile, q, hi, local.x, acc.r4);
            park8(tile, q, hi + 1u, local.x, acc.r5);
            park8(tile, q, hi + 2u, local.x, acc.r6);
            park8(tile, q, hi + 3u, local.x, acc.r7);
        }
        workgroupBarrier();
        if (q > 0u) {
            return;
        }
    }
    finish8(tile, lo, local.x, acc.r0);
    finish8(tile, lo + 1u, local.x, acc.r1);
    finish8(tile, lo + 2u, local.x, acc.r2);
    finish8(tile, lo + 3u, local.x, acc.r3);
    finish8(tile, hi, local.x, acc.r4);
    finish8(tile, hi + 1u, local.x, acc.r5);
    finish8(tile, hi + 2u, local.x, acc.r6);
    finish8(tile, hi + 3u, local.x, acc.r7);
}

// gemm_split_sum: C = (the partial C's added in part order) + bias + C. The partials are
// binding 0 (a): part j's element (r, col) at a_offset + j * M * N + r * N + col. One invocation
// per element of C, its index rebuilt from a 2D grid as x + y * num_workgroups.x.
@compute @workgroup_size(64, 1, 1)
fn gemm_split_sum(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let e = gid.x + gid.y * groups.x * 64u;
    if (e >= p.m * p.n) {
        return;
    }
    let row = e / p.n;
    let col = e % p.n;
    var v = f32(a[p.a_offset + e]);
    for (var part = 1u; part < p.k_parts; part++) {
        v += f32(a[p.a_offset + part * p.m * p.n + e]);
    }
    if (p.has_bias != 0u) {
        v += bias[p.bias_offset + col];
    }
    let idx = p.c_offset + row * p.ldc + col;
    if (p.accumulate != 0u) {
        v += f32(c[idx]);
    }
    c[idx] = c_elem(v);
}
