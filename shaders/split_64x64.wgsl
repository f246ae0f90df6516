// gemm_split_64x64 (see gemm_split.wgsl, which follows): a 64x64 tile of C per workgroup, K in
// 2 slices of 256 invocations (512 per workgroup: adapters that allow it).
const SPLIT_TILE: u32 = 64u;
const SLICES: u32 = 2u;

@compute @workgroup_size(256, 2, 1)
fn gemm_split_64x64(
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    split_tile(local.x, local.y, wg, groups);
}
