// fused.wgsl's time step with its recurrent product on cooperative matrices (tensor cores,
// simdgroup matrices): for --precision f16 with the matrix units on. One dispatch per step
// forward and one backward, as fused.wgsl; the product of a tile of T batch rows by T hidden
// units runs as TxTxT multiply-adds of f16 tiles into f32 accumulators, then each element
// of the tile goes through the same epilogue as fused.wgsl's (the cell file's add_recurrent and
// cell_forward; h_carry and cell_backward), so the two kernels differ only in the order of
// the sums.
//
// forward,  step t:  C_g[b, j] = sum_k h_{t-1}[b, k] W_hh[g*H + j, k] for every gate g of the
//           tile's units, over k < H: A = h_{t-1} [B, H], B_g = gate g's rows of W_hh read
//           along k. The workgroup owns all gates of its units, as fused.wgsl's does.
// backward, step t:  C[b, j] = sum_k recurrent_grad[t+1][b, k] W_hh[k, j] over k < G*H (none at
//           the segment's last step, p.run_end), joining h_carry before cell_backward.
// The operands are f16 in storage under --precision f16 (h, the gradients and W_hh's working
// copy), so rounding them to the tiles' f16 loses nothing: every product is exact in f32 and
// only the order of the f32 sums differs from fused.wgsl's.
//
// The rules of gemm_coop.wgsl hold here too: every cooperative operation sits in control flow
// uniform over the workgroup, accumulators start as zeros loaded from workgroup memory, tiles
// are staged row-major with ordinary loads (0 past B, H or K), and every cooperative load and
// store offset and stride is a multiple of 16 bytes. Unlike gemm_coop.wgsl a workgroup may be
// several subgroups, K_PARTS of them (the host sets WG_SIZE to K_PARTS times the adapter's
// fixed subgroup size): all of them stage each stage of K together, each multiplies its own
// share of the stage's tiles into its own accumulators, and the epilogue adds the parts. A
// part is a run of WG_SIZE / K_PARTS consecutive invocations, which is how NVIDIA's and
// llvmpipe's drivers (where the matrix units are on) form the subgroups of a one-dimensional
// workgroup, and what naga's HLSL output assumes of subgroup_id; the value only places each
// subgroup's tiles, so control flow stays uniform. Splitting K this way gives a step K_PARTS
// times the invocations, staging loads in flight and multiply-add chains, at the same number
// of workgroups: a step of a small batch has few tiles (B = 32, H = 128 at T = 16: 16
// workgroups), which leave most of a GPU idle.
// The tiles' arrays keep gemm_coop.wgsl's names (sa, sb, sc), which the emulation's stand-ins
// read (coop_emulation.wgsl, RNN_WGPU_MATRIX_UNITS=emulate).
//
// The tiles' edge T (16, or 8: Metal's and llvmpipe's) and their types TileA, TileB and TileC
// come in front of the files (CoopEdge::prelude in src/gpu/kernels.rs): the edge is part of
// the type's name, so it cannot be an override.
//
// K is staged STAGE = 64 at a time (64 / T tiles along K, 64 / T / K_PARTS per part), between
// two barriers: at T = 16 a quarter of the barriers of staging one tile, and each invocation
// has 4x the loads in flight per wait. Napkin maths per stage: forward loads T x 64 values of
// h and G x T x 64 of W_hh for G x T x T x 64 FMAs, G T / (G + 1) a value (LSTM at T = 16:
// 5,120 values for 65,536 FMAs, 12.8 a value; at T = 8, 6.4), rows of W_hh read 128 bytes at
// a time; backward 2 x T x 64 for T x T x 64 (T / 2 a value). The parts share those loads.
//
// Grid: tiles numbered along units first over a 1D grid split over x and y (as fused.wgsl);
// workgroups past the last tile return at once.
//
// step.wgsl and a cell file come first: the bindings, p, GATES, add_recurrent,
// recurrent_grad, cell_forward and cell_backward.

alias acc_elem = f32;
// Values of K per stage (COOP_STAGE in src/gpu/tiles.rs), and the tiles along K they make.
const STAGE: u32 = 64u;
const STAGE_TILES: u32 = STAGE / T;
// The most gates a cell has (the LSTM's): the arrays below hold a tile per gate.
const MOST_GATES: u32 = 4u;

// Subgroups per workgroup, each summing its share of every stage's tiles of K: 1, 2 or 4,
// dividing STAGE_TILES (CoopStep::parts in src/gpu/tiles.rs).
override K_PARTS: u32 = 1u;
// Invocations per workgroup: K_PARTS subgroups.
override WG_SIZE: u32 = 32u;

// A's stage [T rows, STAGE of K] row-major, stride STAGE: K tile i at i * T.
var<workgroup> sa: array<f16, T * STAGE>;
// B's stage per gate [STAGE of K, T units] row-major, stride T: gate g's K tile i at
// (g * STAGE_TILES + i) * T * T (backward: gate 0's).
var<workgroup> sb: array<f16, MOST_GATES * STAGE * T>;
// The accumulators' tiles [T rows, T units], part q's gate g's at (q * MOST_GATES + g) * T * T:
// zeros to start from, then the parts' products for the epilogue.
var<workgroup> sc: array<acc_elem, K_PARTS * MOST_GATES * T * T>;

// Rows first_row.. of a row-major [B, width] matrix at `base`, columns k0..k0+STAGE, into sa
// (0 past B or width); neighbouring invocations read along a row.
fn stage_rows(t: u32, first_row: u32, base: u32, width: u32, k0: u32, from_grad: bool) {
    for (var e = t; e < T * STAGE; e += WG_SIZE) {
        let b = first_row + e / STAGE;
        let k = k0 + e % STAGE;
        var value = f16(0.0);
        if (b < p.batch && k < width) {
            if (from_grad) {
                value = f16(recurrent_grad(base + b * width + k));
            } else {
                value = f16(hs[base + b * width + k]);
            }
        }
        sa[e] = value;
    }
}

// Zeros in sc, then the accumulators loaded from them by the caller, each part from its own
// (so that no part's final store can meet another's first load).
fn zero_accumulators(t: u32) {
    for (var e = t; e < K_PARTS * MOST_GATES * T * T; e += WG_SIZE) {
        sc[e] = acc_elem(0.0);
    }
    workgroupBarrier();
}

// The first of invocation t's part's accumulators in sc.
fn part_accumulators(t: u32) -> u32 {
    return (t / (WG_SIZE / K_PARTS)) * MOST_GATES * T * T;
}

// The first of invocation t's part's tiles of K within a stage.
fn part_tiles(t: u32) -> u32 {
    return (t / (WG_SIZE / K_PARTS)) * (STAGE_TILES / K_PARTS);
}

// Element e of gate g's product: the parts' accumulators summed, in order.
fn parts_sum(g: u32, e: u32) -> f32 {
    var sum = 0.0;
    for (var q = 0u; q < K_PARTS; q++) {
        sum += f32(sc[(q * MOST_GATES + g) * T * T + e]);
    }
    return sum;
}

@compute @workgroup_size(WG_SIZE, 1, 1)
fn step_forward_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let step = p.step;
    // (first row, first unit), inline: computed in a function (even one of its arguments
    // alone), naga's uniformity analysis refused every cooperative operation after the return
    // below.
    let tiles = wg.x + wg.y * groups.x;
    let unit_tiles = (h + T - 1u) / T;
    let tile = vec2<u32>((tiles / unit_tiles) * T, (tiles % unit_tiles) * T);
    // Past the last tile (the grid rounds up): uniform over the workgroup.
    if (tile.x >= p.batch) {
        return;
    }
    zero_accumulators(t);
    // acc_g: gate g's product over this part's tiles of K; the cells with fewer gates leave the
    // rest at zero.
    let own = part_accumulators(t);
    let first = part_tiles(t);
    var acc0 = coopLoadT<TileC>(&sc[own], T);
    var acc1 = coopLoadT<TileC>(&sc[own + T * T], T);
    var acc2 = coopLoadT<TileC>(&sc[own + 2u * T * T], T);
    var acc3 = coopLoadT<TileC>(&sc[own + 3u * T * T], T);
    for (var k0 = 0u; k0 < h; k0 += STAGE) {
        stage_rows(t, tile.x, (step - 1u) * p.batch * h, h, k0, false);
        // sb[g][kk][u] = W_hh[g*H + unit u, k0 + kk]: neighbouring invocations read along k
        for (var e = t; e < GATES * STAGE * T; e += WG_SIZE) {
            let kk = e % STAGE;
            let u = (e / STAGE) % T;
            let g = e / (STAGE * T);
            let j = tile.y + u;
            let k = k0 + kk;
            var w = f16(0.0);
            if (j < h && k < h) {
                w = f16(weight_hh[(g * h + j) * h + k]);
            }
            sb[g * STAGE * T + kk * T + u] = w;
        }
        workgroupBarrier();
        for (var n = 0u; n < STAGE_TILES / K_PARTS; n++) {
            let i = first + n;
            let a = coopLoadT<TileA>(&sa[i * T], STAGE);
            let b0 = coopLoadT<TileB>(&sb[i * T * T], T);
            acc0 = coopMultiplyAdd(a, b0, acc0);
            if (GATES > 1u) {
                let b1 = coopLoadT<TileB>(&sb[(STAGE_TILES + i) * T * T], T);
                acc1 = coopMultiplyAdd(a, b1, acc1);
            }
            if (GATES > 2u) {
                let b2 = coopLoadT<TileB>(&sb[(2u * STAGE_TILES + i) * T * T], T);
                acc2 = coopMultiplyAdd(a, b2, acc2);
            }
            if (GATES > 3u) {
                let b3 = coopLoadT<TileB>(&sb[(3u * STAGE_TILES + i) * T * T], T);
                acc3 = coopMultiplyAdd(a, b3, acc3);
            }
        }
        // sa and sb are restaged next: everyone must be done reading them.
        workgroupBarrier();
    }
    // Each tile's region of sc was last read by that tile's own initial load.
    coopStoreT(acc0, &sc[own], T);
    coopStoreT(acc1, &sc[own + T * T], T);
    coopStoreT(acc2, &sc[own + 2u * T * T], T);
    coopStoreT(acc3, &sc[own + 3u * T * T], T);
    workgroupBarrier();
    for (var e = t; e < T * T; e += WG_SIZE) {
        let b = tile.x + e / T;
        let j = tile.y + e % T;
        if (b < p.batch && j < h) {
            let at = (step - 1u) * p.batch * GATES * h + b * GATES * h + j;
            for (var g = 0u; g < GATES; g++) {
                add_recurrent(at + g * h, parts_sum(g, e));
            }
            cell_forward(step, b * h + j);
        }
    }
}

@compute @workgroup_size(WG_SIZE, 1, 1)
fn step_backward_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let step = p.step;
    let gh = GATES * h;
    // (first row, first unit), inline: computed in a function (even one of its arguments
    // alone), naga's uniformity analysis refused every cooperative operation after the return
    // below.
    let tiles = wg.x + wg.y * groups.x;
    let unit_tiles = (h + T - 1u) / T;
    let tile = vec2<u32>((tiles / unit_tiles) * T, (tiles % unit_tiles) * T);
    if (tile.x >= p.batch) {
        return;
    }
    zero_accumulators(t);
    let own = part_accumulators(t);
    let first = part_tiles(t);
    var acc = coopLoadT<TileC>(&sc[own], T);
    // No product at the segment's last step (the border from the next segment came first).
    let k_end = select(0u, gh, step < p.run_end);
    for (var k0 = 0u; k0 < k_end; k0 += STAGE) {
        stage_rows(t, tile.x, step * p.batch * gh, gh, k0, true);
        // sb[kk][u] = W_hh[k0 + kk, unit u]: neighbouring invocations read along units
        for (var e = t; e < STAGE * T; e += WG_SIZE) {
            let j = tile.y + e % T;
            let k = k0 + e / T;
            var w = f16(0.0);
            if (j < h && k < gh) {
                w = f16(weight_hh[k * h + j]);
            }
            sb[e] = w;
        }
        workgroupBarrier();
        for (var n = 0u; n < STAGE_TILES / K_PARTS; n++) {
            let i = first + n;
            let a = coopLoadT<TileA>(&sa[i * T], STAGE);
            let w = coopLoadT<TileB>(&sb[i * T * T], T);
            acc = coopMultiplyAdd(a, w, acc);
        }
        workgroupBarrier();
    }
    coopStoreT(acc, &sc[own], T);
    workgroupBarrier();
    for (var e = t; e < T * T; e += WG_SIZE) {
        let b = tile.x + e / T;
        let j = tile.y + e % T;
        if (b < p.batch && j < h) {
            let idx = b * h + j;
            if (step < p.run_end) {
                h_carry[idx] += parts_sum(0u, e);
            }
            cell_backward(step, idx);
        }
    }
}
