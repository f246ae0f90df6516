// (gemm_params.wgsl, gemm_loads.wgsl and gemm_split.wgsl come first: this file ends the
// module of gemm_split_32x32, and is left out of gemm_split_64x64's so the entry point exists
// once.)

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
