// Deterministic reductions (no float atomics): every sum is taken in one fixed order, so the
// same inputs give bit-identical results on the same adapter.
//   row_norms:   out[r] = sqrt(sum_i x[r * n + i]^2)  one workgroup per row r: the per-step
//                gradient norms ||dE/dh_t|| over the whole [B, H] slice of step t
//   row_sums:    out[r] = sum_i x[r * n + i]          the loss from per-row shares
//   column_sums: out[j] = (accumulate ? out[j] : 0) + sum_r x[r * n + j]   bias gradients
//   column_block_sums: out[b * n + j] = sum of x[r * n + j] over the rows r of block b, the
//                first pass of column_sums over many rows

struct ReduceParams {
    rows: u32,
    // row length n
    n: u32,
    in_offset: u32,
    out_offset: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<a_elem>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: ReduceParams;

const WORKGROUP: u32 = 256u;
var<workgroup> partial: array<f32, 256>;
var<workgroup> partial_worst: array<u32, 256>;

// Sums f(x) over row r: each invocation strides over the row, then a fixed tree in
// workgroup memory combines the 256 partial sums. A NaN or infinity among the terms makes the
// sum a NaN or +inf explicitly (see finite.wgsl): the terms summed here (squares, the losses'
// row shares) are never negative, so that is what IEEE arithmetic gives on the CPU engine.
fn reduce_row(r: u32, lid: u32, squares: bool) -> f32 {
    var acc = 0.0;
    var worst = 0u;
    let base = p.in_offset + r * p.n;
    for (var i = lid; i < p.n; i += WORKGROUP) {
        let v = f32(x[base + i]);
        acc += select(v, v * v, squares);
        worst = max(worst, non_finite_bits(v));
    }
    partial[lid] = acc;
    partial_worst[lid] = worst;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
            partial_worst[lid] = max(partial_worst[lid], partial_worst[lid + stride]);
        }
        workgroupBarrier();
    }
    return with_non_finite(partial[0], partial_worst[0]);
}

@compute @workgroup_size(256, 1, 1)
fn row_norms(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = wg.x + wg.y * groups.x;
    // uniform across the workgroup, so the barriers inside reduce_row stay in uniform control flow
    if (r >= p.rows) {
        return;
    }
    let total = reduce_row(r, lid, true);
    if (lid == 0u) {
        out[p.out_offset + r] = sqrt(total);
    }
}

@compute @workgroup_size(256, 1, 1)
fn row_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = wg.x + wg.y * groups.x;
    if (r >= p.rows) {
        return;
    }
    let total = reduce_row(r, lid, false);
    if (lid == 0u) {
        out[p.out_offset + r] = total;
    }
}

@compute @workgroup_size(64, 1, 1)
fn column_sums(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = gid.x + gid.y * groups.x * 64u;
    if (j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        acc += f32(x[p.in_offset + r * p.n + j]);
    }
    if (p.accumulate != 0u) {
        acc += out[p.out_offset + j];
    }
    out[p.out_offset + j] = acc;
}

// Bias gradients sum dgates over all T * B rows. In one pass that is n invocations, each a
// chain of T * B dependent loads (an H200 has threads for thousands of columns, not hundreds).
// Over more than COLUMN_BLOCK rows the host runs two: column_block_sums sums each block of
// COLUMN_BLOCK rows of each column (n * blocks invocations), then column_sums adds the blocks'
// sums in block order. Still one fixed order per element.
const COLUMN_BLOCK: u32 = 256u;

@compute @workgroup_size(64, 1, 1)
fn column_block_sums(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Workgroup g covers 64 columns of one block: g = block * column groups + column group.
    let column_groups = (p.n + 63u) / 64u;
    let g = wg.x + wg.y * groups.x;
    let j = (g % column_groups) * 64u + lid;
    let block = g / column_groups;
    let first = block * COLUMN_BLOCK;
    if (j >= p.n || first >= p.rows) {
        return;
    }
    let last = min(p.rows, first + COLUMN_BLOCK);
    var acc = 0.0;
    for (var r = first; r < last; r++) {
        acc += f32(x[p.in_offset + r * p.n + j]);
    }
    out[p.out_offset + block * p.n + j] = acc;
}
