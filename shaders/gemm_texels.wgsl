// gemm_texels: gemm_lanes_64x8 (the same parameters, tile, lanes and order of sums, so the same
// bits) with op(A) and op(B) read from rgba32float textures instead of storage buffers, for
// llvmpipe.
//
// Why textures: llvmpipe compiles a load from a storage buffer to a scalar loop over the 8
// lanes with a bounds check per element, but a texel fetch to vector address arithmetic and
// one 16-byte load per lane: four floats for little more than the price of one. On the
// products of (128, 256, 64, 256) this tile runs at 53-55 GFLOP/s per step and 52 on dW_hh,
// where gemm_lanes_64x8 runs at 44-47 and 34 (BENCHMARKS.md). The host fills the textures
// first (texels.rs): texel (x, y) holds op(B)[k = y, n = 4x .. 4x+3], and op(A) either the same
// way along M (gemm_texels_tn) or row y's k = 4x .. 4x+3 (gemm_texels_nn: a plain copy of a
// row-major A).
//
// Rows and columns past the edge are clamped, as in the lanes kernels: to the last row (along
// K) or to the last texel, whose columns past the edge repeat the last column (pack.wgsl) or
// do not exist (copies need whole texels); a quad of rows or columns starts at a multiple of 4,
// so it lies either inside the matrix or wholly past its edge, where it is not stored.
//
// (gemm_params.wgsl and tile.wgsl come first: the parameters, C, bias, and the tile's start
// and store)

@group(0) @binding(0) var a: texture_2d<f32>;
@group(0) @binding(1) var b: texture_2d<f32>;

// Texels along K: the 4 x 4 block of op(A) rows `rows` at k4 .. k4+3, one texel per row,
// transposed so that column j holds the quad at k4 + j.
fn a_block(rows: vec4<u32>, k4: u32) -> mat4x4<f32> {
    let x = k4 / 4u;
    return transpose(mat4x4<f32>(textureLoad(a, vec2<u32>(x, rows.x), 0),
        textureLoad(a, vec2<u32>(x, rows.y), 0), textureLoad(a, vec2<u32>(x, rows.z), 0),
        textureLoad(a, vec2<u32>(x, rows.w), 0)));
}

// Column j of a block, j not a constant: selects, which llvmpipe keeps in registers (a
// dynamically indexed matrix would go through memory).
fn column(block: mat4x4<f32>, j: u32) -> vec4<f32> {
    return select(select(block[0], block[1], j == 1u), select(block[2], block[3], j == 3u),
        j >= 2u);
}

// A 64 x 64 tile: lane l's 8 columns for all 64 rows, quads of rows in the order of
// gemm_lanes_64x8 (q0: rows 0-3, q1: rows 4-7, ...).
struct Tile64 {
    q0: Quad8,
    q1: Quad8,
    q2: Quad8,
    q3: Quad8,
    q4: Quad8,
    q5: Quad8,
    q6: Quad8,
    q7: Quad8,
    q8: Quad8,
    q9: Quad8,
    q10: Quad8,
    q11: Quad8,
    q12: Quad8,
    q13: Quad8,
    q14: Quad8,
    q15: Quad8,
}

// Row quad i of the tile starting at `row0`, clamped to the last row.
fn rows_of(row0: u32, i: u32) -> vec4<u32> {
    return quad(row0 + 4u * i, p.m - 1u);
}

fn start64(s: Strides, row0: u32, c0: vec4<u32>, c1: vec4<u32>) -> Tile64 {
    return Tile64(start8(s, rows_of(row0, 0u), c0, c1), start8(s, rows_of(row0, 1u), c0, c1),
        start8(s, rows_of(row0, 2u), c0, c1), start8(s, rows_of(row0, 3u), c0, c1),
        start8(s, rows_of(row0, 4u), c0, c1), start8(s, rows_of(row0, 5u), c0, c1),
        start8(s, rows_of(row0, 6u), c0, c1), start8(s, rows_of(row0, 7u), c0, c1),
        start8(s, rows_of(row0, 8u), c0, c1), start8(s, rows_of(row0, 9u), c0, c1),
        start8(s, rows_of(row0, 10u), c0, c1), start8(s, rows_of(row0, 11u), c0, c1),
        start8(s, rows_of(row0, 12u), c0, c1), start8(s, rows_of(row0, 13u), c0, c1),
        start8(s, rows_of(row0, 14u), c0, c1), start8(s, rows_of(row0, 15u), c0, c1));
}

// update8 by value: naga 30's SPIR-V writer fails on `&(*acc).q0` passed to a function.
fn plus8(q: Quad8, x: vec4<f32>, y0: vec4<f32>, y1: vec4<f32>) -> Quad8 {
    return Quad8(q.t0 + outer(x, y0), q.t1 + outer(x, y1));
}

// One k: lane l holds rows 8l..8l+3 (lo) and 8l+4..8l+7 (hi) of op(A)'s column k and its own
// columns of op(B)'s row k; the broadcasts hand every lane all 64 rows.
fn update64(acc: ptr<function, Tile64>, lo: vec4<f32>, hi: vec4<f32>, y0: vec4<f32>,
    y1: vec4<f32>) {
    (*acc).q0 = plus8((*acc).q0, subgroupBroadcast(lo, 0u), y0, y1);
    (*acc).q1 = plus8((*acc).q1, subgroupBroadcast(hi, 0u), y0, y1);
    (*acc).q2 = plus8((*acc).q2, subgroupBroadcast(lo, 1u), y0, y1);
    (*acc).q3 = plus8((*acc).q3, subgroupBroadcast(hi, 1u), y0, y1);
    (*acc).q4 = plus8((*acc).q4, subgroupBroadcast(lo, 2u), y0, y1);
    (*acc).q5 = plus8((*acc).q5, subgroupBroadcast(hi, 2u), y0, y1);
    (*acc).q6 = plus8((*acc).q6, subgroupBroadcast(lo, 3u), y0, y1);
    (*acc).q7 = plus8((*acc).q7, subgroupBroadcast(hi, 3u), y0, y1);
    (*acc).q8 = plus8((*acc).q8, subgroupBroadcast(lo, 4u), y0, y1);
    (*acc).q9 = plus8((*acc).q9, subgroupBroadcast(hi, 4u), y0, y1);
    (*acc).q10 = plus8((*acc).q10, subgroupBroadcast(lo, 5u), y0, y1);
    (*acc).q11 = plus8((*acc).q11, subgroupBroadcast(hi, 5u), y0, y1);
    (*acc).q12 = plus8((*acc).q12, subgroupBroadcast(lo, 6u), y0, y1);
    (*acc).q13 = plus8((*acc).q13, subgroupBroadcast(hi, 6u), y0, y1);
    (*acc).q14 = plus8((*acc).q14, subgroupBroadcast(lo, 7u), y0, y1);
    (*acc).q15 = plus8((*acc).q15, subgroupBroadcast(hi, 7u), y0, y1);
}

// Quad i's 4 x 8 values, unless its rows (or the lane's second column quad) lie past the edge.
fn store_quad(s: Strides, row0: u32, i: u32, col: u32, c0: vec4<u32>, c1: vec4<u32>, q: Quad8) {
    if (row0 + 4u * i >= p.m) {
        return;
    }
    let rows = rows_of(row0, i);
    store(s, rows, c0, q.t0);
    if (col + 4u < p.n) {
        store(s, rows, c1, q.t1);
    }
}

fn store64(s: Strides, row0: u32, col: u32, c0: vec4<u32>, c1: vec4<u32>, t: Tile64) {
    store_quad(s, row0, 0u, col, c0, c1, t.q0);
    store_quad(s, row0, 1u, col, c0, c1, t.q1);
    store_quad(s, row0, 2u, col, c0, c1, t.q2);
    store_quad(s, row0, 3u, col, c0, c1, t.q3);
    store_quad(s, row0, 4u, col, c0, c1, t.q4);
    store_quad(s, row0, 5u, col, c0, c1, t.q5);
    store_quad(s, row0, 6u, col, c0, c1, t.q6);
    store_quad(s, row0, 7u, col, c0, c1, t.q7);
    store_quad(s, row0, 8u, col, c0, c1, t.q8);
    store_quad(s, row0, 9u, col, c0, c1, t.q9);
    store_quad(s, row0, 10u, col, c0, c1, t.q10);
    store_quad(s, row0, 11u, col, c0, c1, t.q11);
    store_quad(s, row0, 12u, col, c0, c1, t.q12);
    store_quad(s, row0, 13u, col, c0, c1, t.q13);
    store_quad(s, row0, 14u, col, c0, c1, t.q14);
    store_quad(s, row0, 15u, col, c0, c1, t.q15);
}

// The kernel body; `a_along_k` is a constant in each entry point, so each compiles to one
// branch-free loop.
fn texels_64x8(a_along_k: bool, lane: u32, wg: vec3<u32>, groups: vec3<u32>) {
    let s = strides();
    let origin = tile_origin(wg, groups, 64u, 64u);
    let row0 = origin.x;
    let col = origin.y + lane * 8u;
    let mine_lo = rows_of(row0, 2u * lane);
    let mine_hi = rows_of(row0, 2u * lane + 1u);
    let c0 = quad(col, p.n - 1u);
    let c1 = quad(col + 4u, p.n - 1u);
    var acc = start64(s, row0, c0, c1);
    let x_lo = mine_lo.x / 4u;
    let x_hi = mine_hi.x / 4u;
    let x0 = c0.x / 4u;
    let x1 = c1.x / 4u;
    if (!a_along_k) {
        for (var k = 0u; k < p.k; k++) {
            let lo = textureLoad(a, vec2<u32>(x_lo, k), 0);
            let hi = textureLoad(a, vec2<u32>(x_hi, k), 0);
            let y0 = textureLoad(b, vec2<u32>(x0, k), 0);
            let y1 = textureLoad(b, vec2<u32>(x1, k), 0);
            update64(&acc, lo, hi, y0, y1);
        }
    } else {
        // A texel of A holds four k: the blocks are fetched once per four k and the inner loop
        // picks their columns. (Unrolling the four k instead makes a loop body four times the
        // size, which ran at two thirds of the speed.)
        for (var k4 = 0u; k4 < p.k; k4 += 4u) {
            let a_lo = a_block(mine_lo, k4);
            let a_hi = a_block(mine_hi, k4);
            // a bound the compiler cannot count keeps this loop rolled
            for (var j = 0u; j < min(4u, p.k - k4); j++) {
                let y0 = textureLoad(b, vec2<u32>(x0, k4 + j), 0);
                let y1 = textureLoad(b, vec2<u32>(x1, k4 + j), 0);
                update64(&acc, column(a_lo, j), column(a_hi, j), y0, y1);
            }
        }
    }
    if (col >= p.n) {
        return;
    }
    store64(s, row0, col, c0, c1, acc);
}

// One entry point per layout of A: nn has A stored [M, K], tn [K, M]; B is always [K, N].

@compute @workgroup_size(8, 1, 1)
fn gemm_texels_nn(
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    texels_64x8(true, lane, wg, groups);
}

@compute @workgroup_size(8, 1, 1)
fn gemm_texels_tn(
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    texels_64x8(false, lane, wg, groups);
}
