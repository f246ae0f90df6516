// gemm_split_32x32 (GPUs): C[M, N] = (accumulate ? C : 0) + op(A) op(B) + (has_bias ? bias : 0)
// for products with few tiles of C and a long K: the recurrent products of one time step
// (M = batch) and the weight gradients (K = T * batch).
//
// gemm_tiled gives each 64x64 tile of C to one workgroup that walks all of K. When C has only
// a few dozen tiles (dE/dh_{t-1} = dgates_t W_hh at batch 256, hidden 512: M = 256, N = 512,
// K = 2048 is 32 tiles) most of a GPU's multiprocessors sit idle while 32 workgroups each run
// 128 dependent slices of K. Here a workgroup computes a 32x32 tile (4x as many workgroups) and
// splits K into 4 contiguous quarters, one per group of 64 invocations (4x shorter chains).
// Each quarter sums its k in increasing order into 4x4 blocks; at the end the four partial
// tiles meet in workgroup memory and are added in quarter order. No atomics: the result is
// bit-reproducible, and C is read (when accumulating) and written once.
//
// A weight gradient's C can be so small (dW_hh at hidden 128: 512 x 128, 64 workgroups) and its
// K so long (T * batch = 64,000) that even the quarters are long chains. Then the host splits K
// further into k_parts contiguous parts, each its own set of workgroups: part j writes its
// partial C (no bias, no C) to the slice j * M * ldc of a scratch buffer bound as C, and
// gemm_split_sum adds the parts in order, then bias and C. One extra dispatch, still no atomics.
//
// The parameters are gemm_params.wgsl's (it comes first); row_blocks and trans_c are unused.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;

const SPLIT_TILE: u32 = 32u;
const SPLIT_K: u32 = 16u;
const QUARTERS: u32 = 4u;
// Staging: per quarter op(A)[32 rows, 16 k] at [q * 1024 + k * 32 + m] and
// op(B)[16 k, 32 cols] at [q * 1024 + 512 + k * 32 + n]. Reduction: quarter q's 32x32 partial
// tile at [q * 1024 + row * 32 + col]. Both fill 16 KiB.
var<workgroup> split_mem: array<f32, 4096>;

fn split_load_a(row: u32, col: u32, k_end: u32) -> f32 {
    // row in 0..M, col in 0..k_end (the end of this quarter's K range)
    if (row >= p.m || col >= k_end) {
        return 0.0;
    }
    if (p.trans_a == 0u) {
        return a[p.a_offset + row * p.lda + col];
    }
    return a[p.a_offset + col * p.lda + row];
}

fn split_load_b(row: u32, col: u32, k_end: u32) -> f32 {
    // row in 0..k_end, col in 0..N
    if (row >= k_end || col >= p.n) {
        return 0.0;
    }
    if (p.trans_b == 0u) {
        return b[p.b_offset + row * p.ldb + col];
    }
    return b[p.b_offset + col * p.ldb + row];
}

@compute @workgroup_size(64, 4, 1)
fn gemm_split_32x32(
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Tiles along M use y and z, as in gemm_tiled; x runs over the column tiles of each part.
    let col_tiles = (p.n + SPLIT_TILE - 1u) / SPLIT_TILE;
    let part = wg.x / col_tiles;
    let tile_row = (wg.y + wg.z * groups.y) * SPLIT_TILE;
    let tile_col = (wg.x % col_tiles) * SPLIT_TILE;
    let t = local.x;
    let q = local.y;
    let row0 = (t / 8u) * 4u;
    let col0 = (t % 8u) * 4u;

    // Quarter q of this part sums k in [k_begin, k_end); every quarter runs the same number of
    // slices so the barriers stay in uniform control flow (slices past a quarter's end load
    // zeros).
    let slices = (p.k + SPLIT_K - 1u) / SPLIT_K;
    let per_quarter = (slices + p.k_parts * QUARTERS - 1u) / (p.k_parts * QUARTERS);
    let k_begin = (part * QUARTERS + q) * per_quarter * SPLIT_K;
    let k_end = min(p.k, k_begin + per_quarter * SPLIT_K);
    let stage = q * 1024u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var s = 0u; s < per_quarter; s++) {
        let k0 = k_begin + s * SPLIT_K;
        // 512 elements of each operand per quarter, 8 per invocation; the fastest-varying
        // index follows the operand's storage order so neighbours read neighbouring addresses.
        for (var r = 0u; r < 8u; r++) {
            let e = t + r * 64u;
            var am: u32;
            var ak: u32;
            if (p.trans_a == 0u) {
                ak = e % SPLIT_K;
                am = e / SPLIT_K;
            } else {
                am = e % SPLIT_TILE;
                ak = e / SPLIT_TILE;
            }
            split_mem[stage + ak * SPLIT_TILE + am] = split_load_a(tile_row + am, k0 + ak, k_end);
            var bk: u32;
            var bn: u32;
            if (p.trans_b == 0u) {
                bn = e % SPLIT_TILE;
                bk = e / SPLIT_TILE;
            } else {
                bk = e % SPLIT_K;
                bn = e / SPLIT_K;
            }
            split_mem[stage + 512u + bk * SPLIT_TILE + bn] =
                split_load_b(k0 + bk, tile_col + bn, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < SPLIT_K; kk++) {
            let ai = stage + kk * SPLIT_TILE + row0;
            let bi = stage + 512u + kk * SPLIT_TILE + col0;
            let av = vec4<f32>(split_mem[ai], split_mem[ai + 1u], split_mem[ai + 2u],
                split_mem[ai + 3u]);
            let bv = vec4<f32>(split_mem[bi], split_mem[bi + 1u], split_mem[bi + 2u],
                split_mem[bi + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    // The partial tiles, then each invocation finishes 4 consecutive elements of the tile.
    let partial = q * 1024u + row0 * SPLIT_TILE + col0;
    for (var j = 0u; j < 4u; j++) {
        split_mem[partial + j] = acc0[j];
        split_mem[partial + SPLIT_TILE + j] = acc1[j];
        split_mem[partial + 2u * SPLIT_TILE + j] = acc2[j];
        split_mem[partial + 3u * SPLIT_TILE + j] = acc3[j];
    }
    workgroupBarrier();
    let first = lid * 4u;
    let row = tile_row + first / SPLIT_TILE;
    let col = tile_col + first % SPLIT_TILE;
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n < p.n) {
            let e = first + j;
            var v = ((split_mem[e] + split_mem[1024u + e]) + split_mem[2048u + e])
                + split_mem[3072u + e];
            if (p.has_bias != 0u) {
                v += bias[p.bias_offset + n];
            }
            let idx = p.c_offset + part * p.m * p.ldc + row * p.ldc + n;
            if (p.accumulate != 0u) {
                v += c[idx];
            }
            c[idx] = v;
        }
    }
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
    var v = a[p.a_offset + e];
    for (var part = 1u; part < p.k_parts; part++) {
        v += a[p.a_offset + part * p.m * p.n + e];
    }
    if (p.has_bias != 0u) {
        v += bias[p.bias_offset + col];
    }
    let idx = p.c_offset + row * p.ldc + col;
    if (p.accumulate != 0u) {
        v += c[idx];
    }
    c[idx] = v;
}
