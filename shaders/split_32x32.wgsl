// gemm_split_32x32 (see gemm_split.wgsl, which follows): a 32x32 tile of C per workgroup, K in
// 4 slices of 64 invocations. For products with very few tiles.
const SPLIT_TILE: u32 = 32u;
const SLICES: u32 = 4u;

@compute @workgroup_size(64, 4, 1)
fn gemm_split_32x32(
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    split_tile(local.x, local.y, wg, groups);
}
