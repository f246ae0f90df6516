// One time step in one dispatch: the recurrent product for a tile of (batch rows, hidden
// units), then the cell's pointwise maths on it in the epilogue, so a step costs one dispatch
// forward and one backward instead of a GEMM and a cell kernel each.
//
// forward,  step t:  recurrent[t][b, g*H + j] (+)= sum_k h_{t-1}[b, k] W_hh[g*H + j, k] for the
//           tile's rows b, units j and all G gates g, then cell_forward(t, b*H + j): the
//           workgroup that owns unit j owns all of its gate rows (LSTM i, f, g, o; GRU r, z, n),
//           so the cell needs nothing from another workgroup.
// backward, step t:  dh[t][b, j] += sum_k recurrent_grad[t+1][b, k] W_hh[k, j] over k < G*H
//           (only t < the segment's length, p.run_end; the border from the next segment is a
//           GEMM before the steps), then cell_backward(t, b*H + j), which needs only (b, j).
// Each sum runs over k in order from 0 in one f32 accumulator per output, with no atomics, so
// reruns are bit-identical.
//
// Tiles. An invocation owns ROWS_PER = 4 batch rows by UNITS_PER = 4 units (one vec4 per row and
// gate); a workgroup of GROUP_UNITS x GROUP_ROWS invocations (overridable per pipeline, chosen by
// the host) owns 4*GROUP_ROWS rows by 4*GROUP_UNITS units. K runs in slices of SLICE = 16
// staged in workgroup memory as vec4s: rows along batch (stage_rows), units along hidden
// (stage_units).
// Napkin maths per k, per invocation (workgroup-memory loads, vec4):
//   forward   1 (h) + G (W_hh) loads for 16*G FMAs: LSTM 64 FMAs / 5 loads, GRU 48 / 4, RNN 16 / 2
//   backward  1 (dgates) + 1 (W_hh) loads for 16 FMAs
// and per slice a 8x8 workgroup (32 rows, 32 units) loads from global memory
//   forward   32*16 + G*32*16 floats for 32*32*G*16 FMAs: 25.6 FMAs a load for the LSTM
//   backward  32*16 + 32*16 floats for 32*32*16 FMAs: 16 FMAs a load.
// The epilogue hands each output to the cell through the step's own gate buffers
// (add_recurrent, then cell_forward reads them back): the same invocation writes and reads the
// same words, so the round trip stays in its cache lines.
//
// step.wgsl and a cell file come first: the bindings, p, GATES, add_recurrent, recurrent_grad,
// cell_forward and cell_backward.

const ROWS_PER: u32 = 4u;
const UNITS_PER: u32 = 4u;
const SLICE: u32 = 16u;

// Invocations along hidden units (x) and batch rows (y) of a workgroup; the host sets both.
override GROUP_UNITS: u32 = 8u;
override GROUP_ROWS: u32 = 8u;

// stage_rows[kk * GROUP_ROWS + q][r] = A[tile row 4q + r, k0 + kk], A = h_{t-1} or dgates[t+1]
var<workgroup> stage_rows: array<vec4<f32>, SLICE * GROUP_ROWS>;
// stage_units[(kk * GATES + g) * GROUP_UNITS + q][u] = W_hh's weight of gate g, unit 4q + u at
// k0 + kk (backward: G = 1 there, the row k0 + kk of W_hh)
var<workgroup> stage_units: array<vec4<f32>, SLICE * GATES * GROUP_UNITS>;

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

// Rows [first_row, first_row + 4*GROUP_ROWS) of a row-major [B, width] matrix at `base`,
// columns k0 .. k0 + SLICE, into stage_rows (0 past B or past width).
fn stage_row_slice(lid: u32, first_row: u32, base: u32, width: u32, k0: u32, from_dgates: bool) {
    for (var e = lid; e < ROWS_PER * GROUP_ROWS * SLICE; e += GROUP_UNITS * GROUP_ROWS) {
        let row = e / SLICE;
        let kk = e % SLICE;
        let b = first_row + row;
        let k = k0 + kk;
        var value = 0.0;
        if (b < p.batch && k < width) {
            if (from_dgates) {
                value = recurrent_grad(base + b * width + k);
            } else {
                value = hs[base + b * width + k];
            }
        }
        stage_rows[kk * GROUP_ROWS + row / ROWS_PER][row % ROWS_PER] = value;
    }
}

@compute @workgroup_size(GROUP_UNITS, GROUP_ROWS, 1)
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
    // acc[g * ROWS_PER + r][u]: gate g of unit (first + u) for row (first + r)
    var acc: array<vec4<f32>, GATES * ROWS_PER>;
    for (var k0 = 0u; k0 < h; k0 += SLICE) {
        stage_row_slice(lid, tile.x, (t - 1u) * p.batch * h, h, k0, false);
        // W_hh rows of the tile's units, all gates: neighbouring invocations read along k
        for (var e = lid; e < GATES * tile_units * SLICE; e += GROUP_UNITS * GROUP_ROWS) {
            let kk = e % SLICE;
            let gate_unit = e / SLICE;
            let g = gate_unit / tile_units;
            let u = gate_unit % tile_units;
            let j = tile.y + u;
            let k = k0 + kk;
            var w = 0.0;
            if (j < h && k < h) {
                w = weight_hh[(g * h + j) * h + k];
            }
            stage_units[(kk * GATES + g) * GROUP_UNITS + u / UNITS_PER][u % UNITS_PER] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < SLICE; kk++) {
            let rows = stage_rows[kk * GROUP_ROWS + local.y];
            for (var g = 0u; g < GATES; g++) {
                let w = stage_units[(kk * GATES + g) * GROUP_UNITS + local.x];
                acc[g * ROWS_PER] += rows.x * w;
                acc[g * ROWS_PER + 1u] += rows.y * w;
                acc[g * ROWS_PER + 2u] += rows.z * w;
                acc[g * ROWS_PER + 3u] += rows.w * w;
            }
        }
        workgroupBarrier();
    }
    let gh = GATES * h;
    for (var r = 0u; r < ROWS_PER; r++) {
        let b = tile.x + local.y * ROWS_PER + r;
        for (var u = 0u; u < UNITS_PER; u++) {
            let j = tile.y + local.x * UNITS_PER + u;
            if (b < p.batch && j < h) {
                let at = (t - 1u) * p.batch * gh + b * gh + j;
                for (var g = 0u; g < GATES; g++) {
                    add_recurrent(at + g * h, acc[g * ROWS_PER + r][u]);
                }
                cell_forward(t, b * h + j);
            }
        }
    }
}

@compute @workgroup_size(GROUP_UNITS, GROUP_ROWS, 1)
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
    // acc[r][u]: unit (first + u) of row (first + r)
    var acc: array<vec4<f32>, ROWS_PER>;
    let from_next = t < p.run_end;
    if (from_next) {
        for (var k0 = 0u; k0 < gh; k0 += SLICE) {
            stage_row_slice(lid, tile.x, t * p.batch * gh, gh, k0, true);
            // W_hh[k0 + kk, tile units]: neighbouring invocations read along units
            for (var e = lid; e < tile_units * SLICE; e += GROUP_UNITS * GROUP_ROWS) {
                let u = e % tile_units;
                let kk = e / tile_units;
                let j = tile.y + u;
                let k = k0 + kk;
                var w = 0.0;
                if (j < h && k < gh) {
                    w = weight_hh[k * h + j];
                }
                stage_units[kk * GROUP_UNITS + u / UNITS_PER][u % UNITS_PER] = w;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < SLICE; kk++) {
                let rows = stage_rows[kk * GROUP_ROWS + local.y];
                let w = stage_units[kk * GROUP_UNITS + local.x];
                acc[0] += rows.x * w;
                acc[1] += rows.y * w;
                acc[2] += rows.z * w;
                acc[3] += rows.w * w;
            }
            workgroupBarrier();
        }
    }
    for (var r = 0u; r < ROWS_PER; r++) {
        let b = tile.x + local.y * ROWS_PER + r;
        for (var u = 0u; u < UNITS_PER; u++) {
            let j = tile.y + local.x * UNITS_PER + u;
            if (b < p.batch && j < h) {
                let idx = b * h + j;
                if (from_next) {
                    dh[(t - 1u) * p.batch * h + idx] += acc[r][u];
                }
                cell_backward(t, idx);
            }
        }
    }
}
