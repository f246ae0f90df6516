// What the tile kernels of gemm_lanes.wgsl and gemm_texels.wgsl share (it comes first in both
// modules, after gemm_params.wgsl): strides, clamped quads, and a tile's start and store.

// Element strides of op(A) along M and K, op(B) along K and N, C along M and N.
struct Strides {
    a_m: u32,
    a_k: u32,
    b_k: u32,
    b_n: u32,
    c_m: u32,
    c_n: u32,
}

fn strides() -> Strides {
    let ta = p.trans_a != 0u;
    let tb = p.trans_b != 0u;
    let tc = p.trans_c != 0u;
    return Strides(
        select(p.lda, 1u, ta),
        select(1u, p.lda, ta),
        select(p.ldb, 1u, tb),
        select(1u, p.ldb, tb),
        select(p.ldc, 1u, tc),
        select(1u, p.ldc, tc),
    );
}

// Four consecutive indices from `first`, clamped to `last`.
fn quad(first: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

fn c_index(s: Strides, rows: vec4<u32>, col: u32) -> vec4<u32> {
    return p.c_offset + rows * s.c_m + col * s.c_n;
}

fn c_column(s: Strides, rows: vec4<u32>, col: u32) -> vec4<f32> {
    let o = c_index(s, rows, col);
    return vec4<f32>(c[o.x], c[o.y], c[o.z], c[o.w]);
}

// The tile's starting value: bias, plus C when accumulating.
fn start(s: Strides, rows: vec4<u32>, cols: vec4<u32>) -> mat4x4<f32> {
    var t = mat4x4<f32>();
    if (p.has_bias != 0u) {
        // Clamped into the binding: a product without bias binds a 4-word dummy.
        let last = vec4<u32>(arrayLength(&bias) - 1u);
        if (p.trans_c != 0u) {
            let i = min(p.bias_offset + rows, last);
            let v = vec4<f32>(bias[i.x], bias[i.y], bias[i.z], bias[i.w]);
            t = mat4x4<f32>(v, v, v, v);
        } else {
            let j = min(p.bias_offset + cols, last);
            t = mat4x4<f32>(vec4<f32>(bias[j.x]), vec4<f32>(bias[j.y]), vec4<f32>(bias[j.z]),
                vec4<f32>(bias[j.w]));
        }
    }
    if (p.accumulate != 0u) {
        t += mat4x4<f32>(c_column(s, rows, cols.x), c_column(s, rows, cols.y),
            c_column(s, rows, cols.z), c_column(s, rows, cols.w));
    }
    return t;
}

fn store_column(s: Strides, rows: vec4<u32>, col: u32, v: vec4<f32>) {
    let o = c_index(s, rows, col);
    c[o.x] = v.x;
    c[o.y] = v.y;
    c[o.z] = v.z;
    c[o.w] = v.w;
}

fn store(s: Strides, rows: vec4<u32>, cols: vec4<u32>, t: mat4x4<f32>) {
    store_column(s, rows, cols.x, t[0]);
    store_column(s, rows, cols.y, t[1]);
    store_column(s, rows, cols.z, t[2]);
    store_column(s, rows, cols.w, t[3]);
}

// Where a group's tile starts: row blocks vary fastest, so neighbouring groups share columns.
fn tile_origin(wg: vec3<u32>, groups: vec3<u32>, rows: u32, cols: u32) -> vec2<u32> {
    let g = wg.x + wg.y * groups.x;
    return vec2<u32>((g % p.row_blocks) * rows, (g / p.row_blocks) * cols);
}

// 4 rows x 8 columns of C.
struct Quad8 {
    t0: mat4x4<f32>,
    t1: mat4x4<f32>,
}

fn start8(s: Strides, rows: vec4<u32>, c0: vec4<u32>, c1: vec4<u32>) -> Quad8 {
    return Quad8(start(s, rows, c0), start(s, rows, c1));
}

fn update8(acc: ptr<function, Quad8>, x: vec4<f32>, y0: vec4<f32>, y1: vec4<f32>) {
    (*acc).t0 += outer(x, y0);
    (*acc).t1 += outer(x, y1);
}

fn store8(s: Strides, rows: vec4<u32>, c0: vec4<u32>, c1: vec4<u32>, acc: Quad8) {
    store(s, rows, c0, acc.t0);
    store(s, rows, c1, acc.t1);
}
