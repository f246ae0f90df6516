// gemm_split_RxR (GPUs): C[M, N] = (accumulate ? C : 0) + op(A) op(B) + (has_bias ? bias : 0)
// for products with few tiles of C and a long K: the weight gradients (K = T * batch), and a
// segment border's recurrent product (M = batch; the per-step ones are in fused.wgsl).
//
// gemm_tiled gives each 64x64 tile of C to one workgroup of 256 invocations that walks all of
// K. When C has only a few dozen tiles (dE/dh_{t-1} = dgates_t W_hh at batch 256, hidden 512:
// M = 256, N = 512, K = 2048 is 32 tiles) most of a GPU's multiprocessors sit idle while 32
// workgroups each run 128 dependent slices of K. Here a workgroup also splits K into SLICES
// contiguous ranges, one per group of invocations, each summing its k in increasing order into
// 4x4 blocks. At the end slices 1.. leave their partial tiles in workgroup memory and slice 0
// adds them to its own in slice order. No atomics: the result is bit-reproducible, and C is
// read (when accumulating) and written once. Two shapes (split_32x32.wgsl, split_64x64.wgsl
// come first and set SPLIT_TILE and SLICES): a 32x32 tile in 4 slices (4x the workgroups of
// gemm_tiled, each 1/4 of the chain) and a 64x64 tile in 2 slices (2x the invocations per
// workgroup, each half the chain, the loads per FMA of gemm_tiled).
//
// A weight gradient's C can be so small (dW_hh at hidden 128: 512 x 128, 64 workgroups) and its
// K so long (T * batch = 64,000) that even the slices are long chains. Then the host splits K
// further into k_parts contiguous parts, each its own set of workgroups: part j writes its
// partial C (no bias, no C) to the slice j * M * ldc of a scratch buffer bound as C, and
// gemm_split_sum adds the parts in order, then bias and C. One extra dispatch, still no atomics.
//
// The parameters are gemm_params.wgsl's (it comes first, then gemm_loads.wgsl, then
// split_32x32.wgsl or split_64x64.wgsl); row_blocks and trans_c are unused.

const SPLIT_K: u32 = 16u;
// Invocations per slice, each a 4x4 block of the tile.
const SLICE_THREADS: u32 = (SPLIT_TILE / 4u) * (SPLIT_TILE / 4u);
// Staging per slice: op(A)[tile rows, 16 k] at [stage + k * SPLIT_TILE + m], then
// op(B)[16 k, tile cols] at [stage + STAGE_B + k * SPLIT_TILE + n].
const STAGE_B: u32 = SPLIT_K * SPLIT_TILE;
const STAGE: u32 = 2u * STAGE_B;
// Both shapes stage 4096 floats (16 KiB, what every WebGPU adapter offers); the partial tiles
// of slices 1.. ((SLICES - 1) * SPLIT_TILE^2: 3072 or 4096) fit in the same memory.
var<workgroup> split_mem: array<f32, 4096>;

// The body of both entry points: invocation t of slice q in workgroup wg.
fn split_tile(t: u32, q: u32, wg: vec3<u32>, groups: vec3<u32>) {
    // Tiles along M use y and z, as in gemm_tiled; x runs over the column tiles of each part.
    let col_tiles = (p.n + SPLIT_TILE - 1u) / SPLIT_TILE;
    let part = wg.x / col_tiles;
    let tile_row = (wg.y + wg.z * groups.y) * SPLIT_TILE;
    let tile_col = (wg.x % col_tiles) * SPLIT_TILE;
    let row0 = (t / (SPLIT_TILE / 4u)) * 4u;
    let col0 = (t % (SPLIT_TILE / 4u)) * 4u;

    // Slice q of this part sums k in [k_begin, k_end); every slice runs the same number of
    // steps so the barriers stay in uniform control flow (steps past a slice's end load zeros).
    let steps = (p.k + SPLIT_K - 1u) / SPLIT_K;
    let per_slice = (steps + p.k_parts * SLICES - 1u) / (p.k_parts * SLICES);
    let k_begin = (part * SLICES + q) * per_slice * SPLIT_K;
    let k_end = min(p.k, k_begin + per_slice * SPLIT_K);
    let stage = q * STAGE;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var s = 0u; s < per_slice; s++) {
        let k0 = k_begin + s * SPLIT_K;
        // STAGE_B elements of each operand per slice; the fastest-varying index follows the
        // operand's storage order so neighbours read neighbouring addresses.
        for (var r = 0u; r < STAGE_B / SLICE_THREADS; r++) {
            let e = t + r * SLICE_THREADS;
            let at_a = stage_place_a(e, SPLIT_TILE, SPLIT_K);
            split_mem[stage + at_a.y * SPLIT_TILE + at_a.x] =
                load_a(tile_row + at_a.x, k0 + at_a.y, k_end);
            let at_b = stage_place_b(e, SPLIT_TILE, SPLIT_K);
            split_mem[stage + STAGE_B + at_b.x * SPLIT_TILE + at_b.y] =
                load_b(k0 + at_b.x, tile_col + at_b.y, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < SPLIT_K; kk++) {
            let ai = stage + kk * SPLIT_TILE + row0;
            let bi = stage + STAGE_B + kk * SPLIT_TILE + col0;
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

    // Slices 1.. leave their blocks in workgroup memory; slice 0 adds them in slice order.
    let block = row0 * SPLIT_TILE + col0;
    if (q > 0u) {
        let at = (q - 1u) * SPLIT_TILE * SPLIT_TILE + block;
        for (var j = 0u; j < 4u; j++) {
            split_mem[at + j] = acc0[j];
            split_mem[at + SPLIT_TILE + j] = acc1[j];
            split_mem[at + 2u * SPLIT_TILE + j] = acc2[j];
            split_mem[at + 3u * SPLIT_TILE + j] = acc3[j];
        }
    }
    workgroupBarrier();
    if (q > 0u) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        var sum = acc0;
        if (i == 1u) {
            sum = acc1;
        } else if (i == 2u) {
            sum = acc2;
        } else if (i == 3u) {
            sum = acc3;
        }
        for (var other = 1u; other < SLICES; other++) {
            let at = (other - 1u) * SPLIT_TILE * SPLIT_TILE + block + i * SPLIT_TILE;
            sum += vec4<f32>(split_mem[at], split_mem[at + 1u], split_mem[at + 2u],
                split_mem[at + 3u]);
        }
        let row = tile_row + row0 + i;
        if (row >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = tile_col + col0 + j;
            if (n < p.n) {
                var v = sum[j];
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
}
