// What gemm.wgsl (gemm_tiled, the block kernels), gemm_wide.wgsl and gemm_split.wgsl share:
// op(A) and op(B) as storage buffers (gemm_params.wgsl comes first), bounds-checked element
// loads, where each invocation's elements of a block staged in workgroup memory sit, and the
// store of four values of a row of C.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;

// op(A)[row, col], 0 past M or past k_end (K, or the end of a slice of it).
fn load_a(row: u32, col: u32, k_end: u32) -> f32 {
    if (row >= p.m || col >= k_end) {
        return 0.0;
    }
    if (p.trans_a == 0u) {
        return a[p.a_offset + row * p.lda + col];
    }
    return a[p.a_offset + col * p.lda + row];
}

// op(B)[row, col], 0 past k_end or past N.
fn load_b(row: u32, col: u32, k_end: u32) -> f32 {
    if (row >= k_end || col >= p.n) {
        return 0.0;
    }
    if (p.trans_b == 0u) {
        return b[p.b_offset + row * p.ldb + col];
    }
    return b[p.b_offset + col * p.ldb + row];
}

// Element e of a staged [rows, k_len] block of op(A): (m, k). The fastest-varying index
// follows the operand's storage order, so neighbouring invocations read neighbouring
// addresses whichever way A is stored.
fn stage_place_a(e: u32, rows: u32, k_len: u32) -> vec2<u32> {
    if (p.trans_a == 0u) {
        return vec2<u32>(e / k_len, e % k_len);
    }
    return vec2<u32>(e % rows, e / rows);
}

// Element e of a staged [k_len, cols] block of op(B): (k, n).
fn stage_place_b(e: u32, cols: u32, k_len: u32) -> vec2<u32> {
    if (p.trans_b == 0u) {
        return vec2<u32>(e / cols, e % cols);
    }
    return vec2<u32>(e % k_len, e / k_len);
}

// C[row, col..col+3] = value + bias (+ C), for the columns inside C (none past row M).
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
