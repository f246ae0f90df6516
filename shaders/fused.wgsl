// One time step in one dispatch: the recurrent product for a tile of (batch rows, hidden
// units), then the cell's pointwise maths on it in the epilogue, so a step costs one dispatch
// forward and one backward instead of a GEMM and a cell kernel each.
//
// forward,  step t:  recurrent[t][b, g*H + j] (+)= sum_k h_{t-1}[b, k] W_hh[g*H + j, k] for the
//           tile's rows b, units j and all G gates g, then cell_forward(t, b*H + j): the
//           workgroup that owns unit j owns all of its gate rows (LSTM i, f, g, o; GRU r, z, n),
//           so the cell needs nothing from another workgroup.
// backward, step t:  h_carry[b, j] += sum_k recurrent_grad[t+1][b, k] W_hh[k, j] over k < G*H
//           (only t < the segment's length, p.run_end; the border from the next segment is a
//           GEMM before the steps), then cell_backward(t, b*H + j), which needs only (b, j) and
//           takes dE/dh_t as dh[t] + h_carry.
// Each sum runs over k in order from 0 in one f32 accumulator per output and layer, the
// layers added in a fixed order, with no atomics, so reruns are bit-identical (and every
// tile shape with K_SPLIT = 1 gives the same bits).
//
// Tiles. An invocation owns ROWS_PER = 4 batch rows by UNITS_PER = 4 units (one vec4 per row and
// gate); a layer of GROUP_UNITS x GROUP_ROWS invocations owns 4*GROUP_ROWS rows by
// 4*GROUP_UNITS units. K runs in stages of K_SPLIT * SLICE values staged in workgroup memory as
// vec4s: rows along batch (stage_rows), units along hidden (stage_units forward, stage_column
// backward). A workgroup is K_SPLIT such layers (workgroup z) over the same outputs: layer q
// sums slice q of every stage, and at the end layer 0 adds the other layers' sums to its own
// in layer order (`layers_sum`) and runs the epilogue. Splitting K so puts K_SPLIT times the
// invocations on a step whose B*H/16 outputs would leave a large GPU's cores mostly idle,
// each summing 1/K_SPLIT of K, at the cost of 2 barriers per accumulator column at the end.
// All four are overridable per pipeline; the host chooses them (StepTile in
// src/gpu/tiles.rs).
// Napkin maths per k, per invocation (workgroup-memory loads, vec4):
//   forward   1 (h) + G (W_hh) loads for 16*G FMAs: LSTM 64 FMAs / 5 loads, GRU 48 / 4, RNN 16 / 2
//   backward  1 (dgates) + 1 (W_hh) loads for 16 FMAs
// and per k an 8x8 workgroup (32 rows, 32 units) loads from global memory
//   forward   32 + G*32 floats for 32*32*G FMAs: 25.6 FMAs a load for the LSTM
//   backward  32 + 32 floats for 32*32 FMAs: 16 FMAs a load.
// Two barriers per slice: longer slices mean fewer (llvmpipe ran the LSTM forward step of
// (32, 100, 2, 128) 8.5x as fast with slices of 32 as of 16).
// The epilogue hands each output to the cell through the step's own gate buffers
// (add_recurrent, then cell_forward reads them back): the same invocation writes and reads the
// same words, so the round trip stays in its cache lines.
//
// step.wgsl and a cell file come first: the bindings, p, GATES, add_recurrent, recurrent_grad,
// cell_forward and cell_backward.

const ROWS_PER: u32 = 4u;
const UNITS_PER: u32 = 4u;

// Invocations along hidden units (x) and batch rows (y) of a workgroup, and K per stage.
override GROUP_UNITS: u32 = 8u;
override GROUP_ROWS: u32 = 8u;
override SLICE: u32 = 16u;
// Layers of invocations splitting each stage of K (workgroup z).
override K_SPLIT: u32 = 1u;
// K per stage is K_SPLIT * SLICE (stage_k), invocations per workgroup K_SPLIT * GROUP_UNITS *
// GROUP_ROWS (invocations); the arrays below write the products out.

// stage_rows[kk * GROUP_ROWS + q][r] = A[tile row 4q + r, k0 + kk], A = h_{t-1} or dgates[t+1]
var<workgroup> stage_rows: array<vec4<f32>, K_SPLIT * SLICE * GROUP_ROWS>;
// forward: stage_units[(kk * GATES + g) * GROUP_UNITS + q][u] = W_hh's weight of gate g,
// unit 4q + u at k0 + kk; backward: stage_column[kk * GROUP_UNITS + q][u] = W_hh[k0 + kk, 4q + u]
var<workgroup> stage_units: array<vec4<f32>, K_SPLIT * SLICE * GATES * GROUP_UNITS>;
var<workgroup> stage_column: array<vec4<f32>, K_SPLIT * SLICE * GROUP_UNITS>;
// layers_sum's exchange: one accumulator column of every invocation
var<workgroup> layer_parts: array<vec4<f32>, K_SPLIT * GROUP_UNITS * GROUP_ROWS>;

// Where this workgroup's tile starts: (first row, first unit). Tiles are numbered along units
// first over a 1D grid (the host splits it over x and y past 65,535 workgroups).
fn fused_tile(wg: vec3<u32>, groups: vec3<u32>) -> vec2<u32> {
    let tile = wg.x + wg.y * groups.x;
    let unit_tiles = (p.hidden + UNITS_PER * GROUP_UNITS - 1u) / (UNITS_PER * GROUP_UNITS);
    return vec2<u32>(
        (tile / unit_tiles) * ROWS_PER * GROUP_ROWS,
        (tile % unit_tiles) * UNITS_PER * GROUP_UNITS,
    );
}

// Invocations per workgroup, and K per stage.
fn invocations() -> u32 {
    return K_SPLIT * GROUP_UNITS * GROUP_ROWS;
}

fn stage_k() -> u32 {
    return K_SPLIT * SLICE;
}

// Rows [first_row, first_row + 4*GROUP_ROWS) of a row-major [B, width] matrix at `base`,
// columns k0 .. k0 + stage_k(), into stage_rows (0 past B or past width).
fn stage_row_slice(lid: u32, first_row: u32, base: u32, width: u32, k0: u32, from_dgates: bool) {
    let stage = stage_k();
    for (var e = lid; e < ROWS_PER * GROUP_ROWS * stage; e += invocations()) {
        let row = e / stage;
        let kk = e % stage;
        let b = first_row + row;
        let k = k0 + kk;
        var value = 0.0;
        if (b < p.batch && k < width) {
            if (from_dgates) {
                value = recurrent_grad(base + b * width + k);
            } else {
                value = f32(hs[base + b * width + k]);
            }
        }
        stage_rows[kk * GROUP_ROWS + row / ROWS_PER][row % ROWS_PER] = value;
    }
}

// acc plus the outer product of w (4 units) and rows (4 batch rows): column r of acc holds
// the 4 units of row r. Accumulators are whole matrices, never indexed by a loop variable, so
// that compilers keep them in registers (an array indexed in a loop may go to local memory).
fn add_outer(acc: mat4x4<f32>, rows: vec4<f32>, w: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(acc[0] + rows.x * w, acc[1] + rows.y * w, acc[2] + rows.z * w,
        acc[3] + rows.w * w);
}

// Layer 0's acc plus the other layers' (each the same outputs' sum over its slices of K), added
// in layer order one column at a time; the other layers get theirs back. Every invocation
// must call it (it has barriers), and only where K_SPLIT > 1. Columns by constant index, so
// that accumulators stay in registers.
fn layers_sum(local: vec3<u32>, acc: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(layers_column(local, acc[0]), layers_column(local, acc[1]),
        layers_column(local, acc[2]), layers_column(local, acc[3]));
}

// One column of layers_sum, through layer_parts.
fn layers_column(local: vec3<u32>, part: vec4<f32>) -> vec4<f32> {
    let layer = GROUP_UNITS * GROUP_ROWS;
    let me = local.y * GROUP_UNITS + local.x;
    layer_parts[local.z * layer + me] = part;
    workgroupBarrier();
    var sum = part;
    if (local.z == 0u) {
        for (var q = 1u; q < K_SPLIT; q++) {
            sum += layer_parts[q * layer + me];
        }
    }
    // layer_parts is rewritten by the next column
    workgroupBarrier();
    return sum;
}

@compute @workgroup_size(GROUP_UNITS, GROUP_ROWS, K_SPLIT)
fn step_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let t = p.step;
    let tile = fused_tile(wg, groups);
    let tile_units = UNITS_PER * GROUP_UNITS;
    // acc_g: gate g's product; column r = row (first + r), component u = unit (first + u).
    // The cells with fewer gates leave the rest untouched (GATES is a constant).
    var acc_0: mat4x4<f32>;
    var acc_1: mat4x4<f32>;
    var acc_2: mat4x4<f32>;
    var acc_3: mat4x4<f32>;
    let stage = stage_k();
    for (var k0 = 0u; k0 < h; k0 += stage) {
        stage_row_slice(lid, tile.x, (t - 1u) * p.batch * h, h, k0, false);
        // W_hh rows of the tile's units, all gates: neighbouring invocations read along k
        for (var e = lid; e < GATES * tile_units * stage; e += invocations()) {
            let kk = e % stage;
            let gate_unit = e / stage;
            let g = gate_unit / tile_units;
            let u = gate_unit % tile_units;
            let j = tile.y + u;
            let k = k0 + kk;
            var w = 0.0;
            if (j < h && k < h) {
                w = f32(weight_hh[(g * h + j) * h + k]);
            }
            stage_units[(kk * GATES + g) * GROUP_UNITS + u / UNITS_PER][u % UNITS_PER] = w;
        }
        workgroupBarrier();
        // this layer's slice of the stage
        for (var kk = local.z * SLICE; kk < (local.z + 1u) * SLICE; kk++) {
            let rows = stage_rows[kk * GROUP_ROWS + local.y];
            let w = kk * GATES * GROUP_UNITS + local.x;
            acc_0 = add_outer(acc_0, rows, stage_units[w]);
            if (GATES > 1u) {
                acc_1 = add_outer(acc_1, rows, stage_units[w + GROUP_UNITS]);
            }
            if (GATES > 2u) {
                acc_2 = add_outer(acc_2, rows, stage_units[w + 2u * GROUP_UNITS]);
            }
            if (GATES > 3u) {
                acc_3 = add_outer(acc_3, rows, stage_units[w + 3u * GROUP_UNITS]);
            }
        }
        workgroupBarrier();
    }
    if (K_SPLIT > 1u) {
        acc_0 = layers_sum(local, acc_0);
        if (GATES > 1u) {
            acc_1 = layers_sum(local, acc_1);
        }
        if (GATES > 2u) {
            acc_2 = layers_sum(local, acc_2);
        }
        if (GATES > 3u) {
            acc_3 = layers_sum(local, acc_3);
        }
    }
    if (local.z > 0u) {
        return;
    }
    let b = tile.x + local.y * ROWS_PER;
    let j = tile.y + local.x * UNITS_PER;
    finish_forward(b, j, acc_0[0], acc_1[0], acc_2[0], acc_3[0]);
    finish_forward(b + 1u, j, acc_0[1], acc_1[1], acc_2[1], acc_3[1]);
    finish_forward(b + 2u, j, acc_0[2], acc_1[2], acc_2[2], acc_3[2]);
    finish_forward(b + 3u, j, acc_0[3], acc_1[3], acc_2[3], acc_3[3]);
}

// Row b, units j..j+3 of step p.step: each gate's product into the step's buffers, then the
// cell.
fn finish_forward(b: u32, j: u32, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>) {
    let h = p.hidden;
    let t = p.step;
    if (b >= p.batch) {
        return;
    }
    for (var u = 0u; u < UNITS_PER; u++) {
        if (j + u < h) {
            let at = (t - 1u) * p.batch * GATES * h + b * GATES * h + j + u;
            add_recurrent(at, g0[u]);
            if (GATES > 1u) {
                add_recurrent(at + h, g1[u]);
            }
            if (GATES > 2u) {
                add_recurrent(at + 2u * h, g2[u]);
            }
            if (GATES > 3u) {
                add_recurrent(at + 3u * h, g3[u]);
            }
            cell_forward(t, b * h + j + u);
        }
    }
}

@compute @workgroup_size(GROUP_UNITS, GROUP_ROWS, K_SPLIT)
fn step_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let t = p.step;
    let gh = GATES * h;
    let tile = fused_tile(wg, groups);
    let tile_units = UNITS_PER * GROUP_UNITS;
    // column r = row (first + r), component u = unit (first + u)
    var acc: mat4x4<f32>;
    // No product at the segment's last step (the border from the next segment came first)
    let k_end = select(0u, gh, t < p.run_end);
    let stage = stage_k();
    for (var k0 = 0u; k0 < k_end; k0 += stage) {
        stage_row_slice(lid, tile.x, t * p.batch * gh, gh, k0, true);
        // W_hh[k0 + kk, tile units]: neighbouring invocations read along units
        for (var e = lid; e < tile_units * stage; e += invocations()) {
            let u = e % tile_units;
            let kk = e / tile_units;
            let j = tile.y + u;
            let k = k0 + kk;
            var w = 0.0;
            if (j < h && k < gh) {
                w = f32(weight_hh[k * h + j]);
            }
            stage_column[kk * GROUP_UNITS + u / UNITS_PER][u % UNITS_PER] = w;
        }
        workgroupBarrier();
        for (var kk = local.z * SLICE; kk < (local.z + 1u) * SLICE; kk++) {
            let rows = stage_rows[kk * GROUP_ROWS + local.y];
            acc = add_outer(acc, rows, stage_column[kk * GROUP_UNITS + local.x]);
        }
        workgroupBarrier();
    }
    if (K_SPLIT > 1u) {
        acc = layers_sum(local, acc);
    }
    if (local.z > 0u) {
        return;
    }
    let b = tile.x + local.y * ROWS_PER;
    let j = tile.y + local.x * UNITS_PER;
    finish_backward(b, j, acc[0]);
    finish_backward(b + 1u, j, acc[1]);
    finish_backward(b + 2u, j, acc[2]);
    finish_backward(b + 3u, j, acc[3]);
}

// Row b, units j..j+3 of step p.step: the product from step t+1 (none at the segment's last
// step) joins the carry, which cell_backward adds to dh[t]; then the cell. (Added onto dh[t]
// instead, the same sum in another order, llvmpipe ran the RNN's backward step 12x slower.)
fn finish_backward(b: u32, j: u32, from_next: vec4<f32>) {
    let h = p.hidden;
    let t = p.step;
    if (b >= p.batch) {
        return;
    }
    for (var u = 0u; u < UNITS_PER; u++) {
        if (j + u < h) {
            let idx = b * h + j + u;
            if (t < p.run_end) {
                h_carry[idx] += from_next[u];
            }
            cell_backward(t, idx);
        }
    }
}
