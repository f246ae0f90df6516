// pack_texels: a matrix block from a storage buffer into rgba32float texels, for the texel
// matrix products (gemm_texels.wgsl) where a plain buffer-to-texture copy cannot do it: the
// block is to be transposed, or its rows are not aligned as copies need. Texel (x, y) gets the
// words at offset + y * stride_y + (4x + j) * stride_x, j = 0..3; columns past the last repeat
// it (as the products clamp theirs). One invocation per texel.

struct PackParams {
    rows: u32,
    cols: u32,
    offset: u32,
    stride_y: u32,
    stride_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var dst: texture_storage_2d<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: PackParams;

@compute @workgroup_size(64, 1, 1)
fn pack_texels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let width = (p.cols + 3u) / 4u;
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= width * p.rows) {
        return;
    }
    let y = i / width;
    let x = i % width;
    let cols = min(vec4<u32>(4u * x) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.cols - 1u));
    let at = p.offset + y * p.stride_y + cols * p.stride_x;
    textureStore(dst, vec2<u32>(x, y), vec4<f32>(src[at.x], src[at.y], src[at.z], src[at.w]));
}
