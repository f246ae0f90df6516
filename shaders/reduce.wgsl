// Deterministic reductions (no float atomics): every sum is taken in one fixed order, so the
// same inputs give bit-identical results on the same adapter.
//   row_norms:   out[r] = sqrt(sum_i x[r * n + i]^2)  one workgroup per row r: the per-step
//                gradient norms ||dE/dh_t|| over the whole [B, H] slice of step t, with no square
//                under- or overflowing (see row_norms)
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

// Sums f(x * scale) over row r, f the square or the value: each invocation strides over the
// row, then a fixed tree in workgroup memory combines the 256 partial sums. A NaN or infinity
// among the terms makes the sum a NaN or +inf explicitly (see finite.wgsl): the terms summed
// here (squares, the losses' row shares) are never negative, so that is what IEEE arithmetic
// gives on the CPU engine.
fn reduce_row(r: u32, lid: u32, squares: bool, scale: f32) -> f32 {
    var acc = 0.0;
    var worst = 0u;
    let base = p.in_offset + r * p.n;
    for (var i = lid; i < p.n; i += WORKGROUP) {
        let v = f32(x[base + i]);
        let scaled = v * scale;
        acc += select(scaled, scaled * scaled, squares);
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

// The bits of the largest |x| of row r, for every invocation: for non-negative floats the
// order of the bit patterns is that of the values, so the max is an integer max (no float
// max that a driver may take liberties with); a NaN's or an infinity's bits are the largest.
fn row_magnitude_bits(r: u32, lid: u32) -> u32 {
    var largest = 0u;
    let base = p.in_offset + r * p.n;
    for (var i = lid; i < p.n; i += WORKGROUP) {
        largest = max(largest, bitcast<u32>(f32(x[base + i])) & MAGNITUDE_BITS);
    }
    partial_worst[lid] = largest;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial_worst[lid] = max(partial_worst[lid], partial_worst[lid + stride]);
        }
        workgroupBarrier();
    }
    largest = partial_worst[0];
    // Everyone has read it before reduce_row writes partial_worst again.
    workgroupBarrier();
    return largest;
}

// 2^k as an f32, for k in [-126, 127], from its bits: exact.
fn power_of_two(k: i32) -> f32 {
    return bitcast<f32>(u32(k + 127) << 23u);
}

// The norm of row r: 2^e sqrt(sum (x 2^-e)^2), e the binary exponent of the row's largest |x|
// (kept within [-126, 126], where 2^e and 2^-e are normal). Scaling by a power of two is exact,
// so where no square under- or overflows the sum is bit for bit the unscaled one times 2^-2e;
// where one would, as in the norms of a vanishing gradient (squares below 1e-38, which a
// GPU may flush to zero; below 1e-45 on any) or an exploding one (squares past 3e38), the
// scaled squares stay in range. The CPU engine's twin sums the squares in f64 (cpu/steps.rs).
@compute @workgroup_size(256, 1, 1)
fn row_norms(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = wg.x + wg.y * groups.x;
    // uniform across the workgroup, so the barriers inside reduce_row stay in uniform control flow
    if (r >= p.rows) {
        return;
    }
    let biased = i32(row_magnitude_bits(r, lid) >> 23u);
    let e = clamp(biased - 126, -126, 126);
    let total = reduce_row(r, lid, true, power_of_two(-e));
    if (lid == 0u) {
        out[p.out_offset + r] = sqrt(total) * power_of_two(e);
    }
}

@compute @workgroup_size(256, 1, 1)
fn row_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = wg.x + wg.y * groups.x;
    if (r >= p.rows) {
        return;
    }
    let total = reduce_row(r, lid, false, 1.0);
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
