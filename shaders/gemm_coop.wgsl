// gemm_coop: C[M, N] = (accumulate ? C : 0) + op(A)[M, K] op(B)[K, N] + (has_bias ? bias[N] : 0)
// on cooperative matrices (tensor cores / simdgroup matrices), wgpu/naga 30's experimental
// `wgpu_cooperative_matrix` extension.
//
// src/gpu/kernels.rs puts `enable f16; enable wgpu_cooperative_matrix;` and the element
// aliases in front (A and B f16; C f32 or f16). The device must have been created with
// Features::EXPERIMENTAL_COOPERATIVE_MATRIX | SHADER_F16 and the experimental opt-in
// (RNN_WGPU_MATRIX_UNITS=on, src/gpu/device.rs), and the tiles' shape (T x T x T, f16 A/B,
// f32 C) must be one Adapter::cooperative_matrix_properties() lists.
//
// Same contract as gemm.wgsl:
//   trans_a = 0: A is stored [M, K] (A[m * lda + k]);  1: stored [K, M] (A[k * lda + m]).
//   trans_b = 0: B is stored [K, N] (B[k * ldb + n]);  1: stored [N, K] (B[n * ldb + k]).
//   k_parts > 1: K is split over parts of workgroups (grid x); part j writes its partial C to
//   the slice j * M * ldc of the buffer bound as C (summed afterwards by gemm_split_sum).
//
// Layout of the work:
//   * One workgroup = one subgroup (WG_SIZE invocations, WG_SIZE = the subgroup size). naga
//     emits every cooperative matrix with Subgroup scope, so a subgroup owns its matrices;
//     with a single subgroup per workgroup no subgroup builtins are needed to split work, and
//     every cooperative op is trivially executed by the whole (full) subgroup. WG_SIZE must
//     not exceed the subgroup size (a second subgroup would redo the same tiles and race on
//     the same workgroup memory), nor be smaller (a partial subgroup is undefined behaviour).
//     The host sets it to the adapter's subgroup size, and uses this kernel only where that
//     size is fixed (subgroup_min_size = subgroup_max_size: NVIDIA's 32).
//   * A workgroup computes a BLOCK x BLOCK block of C as TILES x TILES = 2x2 tiles of T x T,
//     each in its own accumulator: per step of T along K it stages op(A)[BLOCK, T] and
//     op(B)[T, BLOCK] into workgroup memory, loads 2 A and 2 B tiles and does 4
//     multiply-adds (each A and B tile used twice).
//   * Staging uses ordinary loads, so edges are plain code: elements past M, N or the end of
//     this part's K are written as 0 (0 * anything adds nothing), and the transposes are
//     resolved here, so the cooperative loads always read row-major tiles (coopLoadT).
//   * At the end the accumulators go to workgroup memory (coopStoreT) and every invocation
//     copies its share of the in-range elements out, adding bias, then old C, in f32.
//   * All cooperative ops sit in control flow that depends only on the uniform buffer and
//     workgroup_id (naga checks this: UniformityRequirements::COOP_OPS).
//
// Grid, like gemm.wgsl's tile_at with BLOCK x BLOCK tiles: x = column block + part *
// ceil(N / BLOCK); row block = y + z * num_workgroups.y (so M may exceed 65535 blocks).
//
// The tiles' edge T (16, or 8: Metal's and llvmpipe's) and their types TileA, TileB and TileC
// come in front of this file (CoopEdge::prelude in src/gpu/kernels.rs): the edge is part of
// the type's name (coop_mat16x16, coop_mat8x8), so it cannot be an override.

// (gemm_layout.wgsl comes first: GemmParams p and the bindings a, b, bias, c)


// Accumulator precision (f32; f16 halves the workgroup memory of the C block).
alias acc_elem = f32;
// Tiles per workgroup along M and along N (the code below is written out for 2).
const TILES: u32 = 2u;
// Rows and columns of C per workgroup.
const BLOCK: u32 = T * TILES;

// Invocations per workgroup: the subgroup size (see above).
override WG_SIZE: u32 = 32u;
// Subgroups per workgroup (step_coop.wgsl's may be more; coop_emulation.wgsl reads it).
const K_PARTS: u32 = 1u;

// op(A)[BLOCK, T] row-major (row r at r * T): tile i is rows iT.., at i * T * T, stride T.
var<workgroup> sa: array<f16, BLOCK * T>;
// op(B)[T, BLOCK] row-major (row kk at kk * BLOCK): tile j is columns jT.., at j * T,
// stride BLOCK.
var<workgroup> sb: array<f16, T * BLOCK>;
// The C block [BLOCK, BLOCK] row-major: tile (i, j) at i * T * BLOCK + j * T, stride BLOCK.
// Every cooperative load/store offset and stride here is a multiple of 16 bytes at T = 8 and
// 16, which Vulkan requires (VUID-RuntimeSpirv-OpCooperativeMatrixLoadKHR-08986) for rows of
// >= 16 bytes: offsets and strides are multiples of T elements of 2 or 4 bytes.
var<workgroup> sc: array<acc_elem, BLOCK * BLOCK>;

// op(A)[row0.., k0..k0+T) into sa, 0 past M or k_end. The fastest-varying index follows A's
// storage order so neighbouring invocations read neighbouring addresses.
fn stage_a(t: u32, row0: u32, k0: u32, k_end: u32) {
    for (var e = t; e < BLOCK * T; e += WG_SIZE) {
        var r = e / T;
        var kk = e % T;
        if (p.trans_a != 0u) {
            r = e % BLOCK;
            kk = e / BLOCK;
        }
        let row = row0 + r;
        let col = k0 + kk;
        var v = f16(0.0);
        if (row < p.m && col < k_end) {
            if (p.trans_a == 0u) {
                v = f16(a[p.a_offset + row * p.lda + col]);
            } else {
                v = f16(a[p.a_offset + col * p.lda + row]);
            }
        }
        sa[r * T + kk] = v;
    }
}

// op(B)[k0..k0+T), col0..) into sb, 0 past k_end or N.
fn stage_b(t: u32, col0: u32, k0: u32, k_end: u32) {
    for (var e = t; e < T * BLOCK; e += WG_SIZE) {
        var kk = e / BLOCK;
        var n = e % BLOCK;
        if (p.trans_b != 0u) {
            kk = e % T;
            n = e / T;
        }
        let row = k0 + kk;
        let col = col0 + n;
        var v = f16(0.0);
        if (row < k_end && col < p.n) {
            if (p.trans_b == 0u) {
                v = f16(b[p.b_offset + row * p.ldb + col]);
            } else {
                v = f16(b[p.b_offset + col * p.ldb + row]);
            }
        }
        sb[kk * BLOCK + n] = v;
    }
}

// The in-range part of the C block from sc to C (this part's slice of it), + bias (+ C).
fn store_block(t: u32, row0: u32, col0: u32, part: u32) {
    for (var e = t; e < BLOCK * BLOCK; e += WG_SIZE) {
        let row = row0 + e / BLOCK;
        let col = col0 + e % BLOCK;
        if (row < p.m && col < p.n) {
            var v = f32(sc[e]);
            if (p.has_bias != 0u) {
                v += bias[p.bias_offset + col];
            }
            let idx = p.c_offset + part * p.m * p.ldc + row * p.ldc + col;
            if (p.accumulate != 0u) {
                v += f32(c[idx]);
            }
            c[idx] = c_elem(v);
        }
    }
}

@compute @workgroup_size(WG_SIZE, 1, 1)
fn gemm_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let col_blocks = (p.n + BLOCK - 1u) / BLOCK;
    let col0 = (wg.x % col_blocks) * BLOCK;
    let part = wg.x / col_blocks;
    let row0 = (wg.y + wg.z * groups.y) * BLOCK;
    let parts = max(p.k_parts, 1u);
    // Workgroups past the last row block (the y * z grid rounds up) or part have nothing to
    // do; the condition is uniform over the workgroup, so returning keeps the barriers and
    // cooperative ops below in uniform control flow. (`|`, not `||`: naga lowers `||` to a
    // branch writing a function variable, which its uniformity analysis treats as
    // non-uniform, and would then reject every cooperative op after this return.)
    if ((row0 >= p.m) | (part >= parts)) {
        return;
    }
    // This part's K: whole steps of T from k_first, none at or past k_end. A trailing part
    // may get no steps and then stores zeros (its partial sum).
    let steps = (p.k + T - 1u) / T;
    let part_steps = (steps + parts - 1u) / parts;
    let k_first = part * part_steps * T;
    let k_end = min(p.k, k_first + part_steps * T);

    // accIJ: tile (I, J) of the block, rows I*T.., columns J*T... They start as zeros loaded
    // from sc rather than as TileC(): naga writes TileC() as OpConstantNull in SPIR-V (fine)
    // but as `TileC {}` in MSL, and a default-constructed simdgroup matrix is not promised
    // to be zero.
    for (var e = t; e < BLOCK * BLOCK; e += WG_SIZE) {
        sc[e] = acc_elem(0.0);
    }
    workgroupBarrier();
    var acc00 = coopLoadT<TileC>(&sc[0], BLOCK);
    var acc01 = coopLoadT<TileC>(&sc[T], BLOCK);
    var acc10 = coopLoadT<TileC>(&sc[T * BLOCK], BLOCK);
    var acc11 = coopLoadT<TileC>(&sc[T * BLOCK + T], BLOCK);
    for (var s = 0u; s < part_steps; s++) {
        let k0 = k_first + s * T;
        if (k0 >= k_end) {
            break;
        }
        stage_a(t, row0, k0, k_end);
        stage_b(t, col0, k0, k_end);
        workgroupBarrier();
        let a0 = coopLoadT<TileA>(&sa[0], T);
        let a1 = coopLoadT<TileA>(&sa[T * T], T);
        let b0 = coopLoadT<TileB>(&sb[0], BLOCK);
        let b1 = coopLoadT<TileB>(&sb[T], BLOCK);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
        // sa and sb are restaged next step: everyone must be done reading them.
        workgroupBarrier();
    }
    // Each tile's region of sc was last read by that tile's own initial load (one subgroup,
    // data-dependent), so storing over it needs no barrier.
    coopStoreT(acc00, &sc[0], BLOCK);
    coopStoreT(acc01, &sc[T], BLOCK);
    coopStoreT(acc10, &sc[T * BLOCK], BLOCK);
    coopStoreT(acc11, &sc[T * BLOCK + T], BLOCK);
    workgroupBarrier();
    store_block(t, row0, col0, part);
}
