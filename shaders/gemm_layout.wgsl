// The Gemm layout, which gemm.wgsl and gemm_coop.wgsl share (src/gpu/kernels.rs puts this
// file in front of each; GemmParams in src/gpu/gemm.rs is its host twin): C[M, N] (+)=
// op(A)[M, K] op(B)[K, N] + bias, elements of A, B and C of the pipeline's `Elements`.

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
    // K is split over this many parts of workgroups; 1: none
    k_parts: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<a_elem>;
@group(0) @binding(1) var<storage, read> b: array<b_elem>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<c_elem>;
@group(0) @binding(4) var<uniform> p: GemmParams;
