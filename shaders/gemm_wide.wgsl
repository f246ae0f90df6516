// gemm_wide (GPUs, large products): a 16x16 workgroup computes a 128x128 tile of C, each
// invocation an 8x8 block in sixteen vec4 accumulators: rows 4y..4y+3 and 64+4y..64+4y+3,
// columns 4x..4x+3 and 64+4x..64+4x+3 of the tile. K is walked in slices of 8 staged in
// workgroup memory as vec4s along M and N, so per k an invocation reads 4 vec4s (two of op(A),
// two of op(B)) for 64 FMAs, where gemm_tiled reads 8 scalars for 16; and per slice the
// workgroup loads 2 * 128 * 8 floats from global memory for 128 * 128 * 8 FMAs, 64 per load.
// The split in halves 64 apart keeps a warp's reads of one k in consecutive vec4s.
//
// Not Auto's rule anywhere (it was written without a GPU to measure it on): `rnn-wgpu tune`
// times it against the other GPU kernels and takes it where it is faster. Each element of C
// is summed over k in order, from 0, then bias and C are added, as in gemm_tiled.
//
// (gemm_params.wgsl and gemm_loads.wgsl come first: GemmParams, bias, C, op(A), op(B) and
// their loads; trans_c is 0 here)

const WIDE_TILE: u32 = 128u;
const WIDE_K: u32 = 8u;

// wide_a[k * 32 + m / 4][m % 4] = op(A)[tile row + m, k0 + k]; wide_b likewise along N
var<workgroup> wide_a: array<vec4<f32>, 256>;
var<workgroup> wide_b: array<vec4<f32>, 256>;

// Eight rows of a block (a_lo: rows 0-3, a_hi: rows 4-7) times one k of its eight columns.
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

@compute @workgroup_size(16, 16, 1)
fn gemm_wide(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Tiles along M use y and z, so M may exceed 65535 * 128 rows.
    let tile_row = (wg.y + wg.z * groups.y) * WIDE_TILE;
    let tile_col = wg.x * WIDE_TILE;
    var acc = Block8(mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(),
        mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>(), mat2x4<f32>());

    for (var k0 = 0u; k0 < p.k; k0 += WIDE_K) {
        // 1024 elements of each operand's slice, 4 per invocation, neighbouring invocations at
        // neighbouring addresses for either storage order (stage_place_*).
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * 256u;
            let at_a = stage_place_a(e, WIDE_TILE, WIDE_K);
            let va = load_a(tile_row + at_a.x, k0 + at_a.y, p.k);
            wide_a[at_a.y * 32u + at_a.x / 4u][at_a.x % 4u] = va;
            let at_b = stage_place_b(e, WIDE_TILE, WIDE_K);
            let vb = load_b(k0 + at_b.x, tile_col + at_b.y, p.k);
            wide_b[at_b.x * 32u + at_b.y / 4u][at_b.y % 4u] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < WIDE_K; kk++) {
            let a_lo = wide_a[kk * 32u + local.y];
            let a_hi = wide_a[kk * 32u + 16u + local.y];
            let b_lo = wide_b[kk * 32u + local.x];
            let b_hi = wide_b[kk * 32u + 16u + local.x];
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

    let row_lo = tile_row + local.y * 4u;
    let row_hi = row_lo + 64u;
    let col_lo = tile_col + local.x * 4u;
    let col_hi = col_lo + 64u;
    store_wide(row_lo, col_lo, col_hi, acc.r0);
    store_wide(row_lo + 1u, col_lo, col_hi, acc.r1);
    store_wide(row_lo + 2u, col_lo, col_hi, acc.r2);
    store_wide(row_lo + 3u, col_lo, col_hi, acc.r3);
    store_wide(row_hi, col_lo, col_hi, acc.r4);
    store_wide(row_hi + 1u, col_lo, col_hi, acc.r5);
    store_wide(row_hi + 2u, col_lo, col_hi, acc.r6);
    store_wide(row_hi + 3u, col_lo, col_hi, acc.r7);
}

// One row of a block: columns col_lo..col_lo+3 and col_hi..col_hi+3.
fn store_wide(row: u32, col_lo: u32, col_hi: u32, value: mat2x4<f32>) {
    store_row(row, col_lo, value[0]);
    store_row(row, col_hi, value[1]);
}
