// What every matrix-product module shares (it comes first in each: gemm.wgsl, gemm_split.wgsl,
// gemm_lanes.wgsl, gemm_texels.wgsl): the parameters (src/gpu/gemm.rs: GemmParams), bias and
// C, and the rank-1 update of a 4x4 tile. Bindings 0 and 1 (op(A) and op(B)) come from
// gemm_loads.wgsl (storage buffers) or are the lanes and texel files' own.

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
    // ceil(M / rows of a group's tile, or of an invocation's block)
    row_blocks: u32,
    // 1: C is stored transposed (C[i, j] at c_offset + j * ldc + i), bias runs along its rows
    trans_c: u32,
    // gemm_split_32x32: K is split over this many parts of workgroups, each writing its partial
    // C to its own slice (gemm_split_sum adds them); 1: no parts
    k_parts: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: GemmParams;

// A 4x4 tile of C by columns: t[j][i] = C[rows[i], cols[j]].
fn outer(x: vec4<f32>, y: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(x * y.x, x * y.y, x * y.z, x * y.w);
}
