// gemm: C[M, N] = (accumulate ? C : 0) + op(A)[M, K] * op(B)[K, N] + (has_bias ? bias[N] : 0)
//
// Every matrix product of the engine goes through this one kernel: the input projection of all
// T steps, the recurrent product per step, the head, and the backward and weight-gradient
// products. Operands are addressed by element offset and row stride inside larger buffers, so a
// time step's slice of a [T, B, H] buffer is used in place.
//   trans_a = 0: A is stored [M, K] (A[m * lda + k]);  1: stored [K, M] (A[k * lda + m]).
//   trans_b = 0: B is stored [K, N] (B[k * ldb + n]);  1: stored [N, K] (B[n * ldb + k]).
// Tiling: a 16x16 workgroup computes a 64x64 tile of C, each invocation a 4x4 block held in four
// vec4 accumulators (registers, not an indexed private array: much faster on lavapipe). K is
// walked in slices of 16 staged in workgroup memory. Loads map consecutive invocations to
// consecutive addresses for either storage order. Summation order is fixed: results are
// bit-reproducible.

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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: GemmParams;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// a_tile[k * TILE_M + m], b_tile[k * TILE_N + n]
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

fn load_a(row: u32, col: u32) -> f32 {
    // row in 0..M, col in 0..K
    if (row >= p.m || col >= p.k) {
        return 0.0;
    }
    if (p.trans_a == 0u) {
        return a[p.a_offset + row * p.lda + col];
    }
    return a[p.a_offset + col * p.lda + row];
}

fn load_b(row: u32, col: u32) -> f32 {
    // row in 0..K, col in 0..N
    if (row >= p.k || col >= p.n) {
        return 0.0;
    }
    if (p.trans_b == 0u) {
        return b[p.b_offset + row * p.ldb + col];
    }
    return b[p.b_offset + col * p.ldb + row];
}

@compute @workgroup_size(16, 16, 1)
fn gemm(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Tiles along M use y and z, so M may exceed 65535 * 64 rows.
    let tile_row = (wg.y + wg.z * groups.y) * TILE_M;
    let tile_col = wg.x * TILE_N;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // 1024 elements per tile, 4 per invocation. The fastest-varying index follows the
        // operand's storage order so neighbouring invocations read neighbouring addresses.
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * 256u;
            var am: u32;
            var ak: u32;
            if (p.trans_a == 0u) {
                ak = e % TILE_K;
                am = e / TILE_K;
            } else {
                am = e % TILE_M;
                ak = e / TILE_M;
            }
            a_tile[ak * TILE_M + am] = load_a(tile_row + am, k0 + ak);
            var bk: u32;
            var bn: u32;
            if (p.trans_b == 0u) {
                bn = e % TILE_N;
                bk = e / TILE_N;
            } else {
                bk = e % TILE_K;
                bn = e / TILE_K;
            }
            b_tile[bk * TILE_N + bn] = load_b(k0 + bk, tile_col + bn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let ai = kk * TILE_M + row0;
            let bi = kk * TILE_N + col0;
            let av = vec4<f32>(a_tile[ai], a_tile[ai + 1u], a_tile[ai + 2u], a_tile[ai + 3u]);
            let bv = vec4<f32>(b_tile[bi], b_tile[bi + 1u], b_tile[bi + 2u], b_tile[bi + 3u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    store_row(tile_row + row0, tile_col + col0, acc0);
    store_row(tile_row + row0 + 1u, tile_col + col0, acc1);
    store_row(tile_row + row0 + 2u, tile_col + col0, acc2);
    store_row(tile_row + row0 + 3u, tile_col + col0, acc3);
}

fn store_row(row: u32, col: u32, value: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n < p.n) {
            let idx = p.c_offset + row * p.ldc + n;
            var v = value[j];
            if (p.has_bias != 0u) {
                v += bias[p.bias_offset + n];
            }
            if (p.accumulate != 0u) {
                v += c[idx];
            }
            c[idx] = v;
        }
    }
}
