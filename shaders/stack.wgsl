// What stacked and bidirectional models add around the cells (the CPU twins are in
// src/cpu/stack.rs: reverse_steps under its name, join_forward as layer_output times
// dropout_factors, join_backward as split_output_grad):
//   reverse_steps  dst[s, b, :] (+)= src0[rev_b(s), b, :] with rev_b(s) = L_b - 1 - s inside the
//                  sequence and s on padding: the reverse direction reads each sequence from its
//                  own end. An involution, so the same kernel maps gradients back.
//   join_forward   dst [T, B, D*H] = a layer's outputs in natural time, forward then reverse
//                  (src0 = the forward cell's hs [T+1, B, H], src1 = the reverse cell's, in its
//                  own order), times dropout's factor 0 or 1/(1-p) when threshold > 0.
//   join_backward  the gradient src0 = dE/d(join) [T, B, D*H] back onto one cell's dE/dh
//                  [T, B, H] (dst), in that cell's order; a reverse cell's padding steps get 0.
//   copy_elements  dst[dst_offset + i] = src0[src_offset + i]: states and weights between element
//                  types (recorded by src/gpu/stack.rs's record_copy; no CPU twin)
// One invocation per destination element: every element is written once, no atomics.

struct StackParams {
    // the segment's steps, and the steps before it (dropout hashes the sequence's step)
    seq_len: u32,
    first_step: u32,
    batch: u32,
    // reverse_steps: the row width; join: H
    width: u32,
    directions: u32,
    // join_backward: which cell's gradient (0 forward, 1 reverse)
    direction: u32,
    // reverse_steps: add onto dst instead of overwriting it
    accumulate: u32,
    // dropout: drop where the hash's top 24 bits are below threshold (0: no dropout)
    threshold: u32,
    seed: u32,
    // the layer whose input this is (the mask's stream)
    layer: u32,
    // 1/(1-p)
    scale: f32,
    // copy_elements: how many, from where, to where (elements)
    count: u32,
    src_offset: u32,
    dst_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src0: array<a_elem>;
@group(0) @binding(1) var<storage, read> src1: array<a_elem>;
@group(0) @binding(2) var<storage, read_write> dst: array<c_elem>;
@group(0) @binding(3) var<uniform> p: StackParams;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;

// O'Neill's PCG hash, as cpu::stack::pcg_hash computes it (u32 arithmetic wraps in WGSL).
fn pcg_hash(value: u32) -> u32 {
    let state = value * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// cpu::stack::dropout_keep's factor for element `local` of the segment's [len, B, D*H],
// element index + first_step * B * D*H of the whole [T, B, D*H].
fn dropout_factor(local: u32) -> f32 {
    if (p.threshold == 0u) {
        return 1.0;
    }
    let index = local + p.first_step * p.batch * p.directions * p.width;
    let hash = pcg_hash(index ^ pcg_hash(p.seed ^ pcg_hash(p.layer)));
    return select(0.0, p.scale, (hash >> 8u) >= p.threshold);
}

@compute @workgroup_size(64)
fn reverse_steps(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = p.seq_len * p.batch * p.width;
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= total) {
        return;
    }
    let j = i % p.width;
    let b = (i / p.width) % p.batch;
    let s = i / (p.width * p.batch);
    let len = lengths[b];
    let t = select(s, len - 1u - s, s < len);
    let v = f32(src0[(t * p.batch + b) * p.width + j]);
    if (p.accumulate == 1u) {
        dst[i] = c_elem(f32(dst[i]) + v);
    } else {
        dst[i] = c_elem(v);
    }
}

@compute @workgroup_size(64)
fn join_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let h = p.width;
    let wide = p.directions * h;
    let total = p.seq_len * p.batch * wide;
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= total) {
        return;
    }
    let j = i % wide;
    let b = (i / wide) % p.batch;
    let t = i / (wide * p.batch);
    let k = j % h;
    var v: f32;
    if (j < h) {
        v = f32(src0[((t + 1u) * p.batch + b) * h + k]);
    } else {
        let len = lengths[b];
        let row = select(0u, len - t, t < len);
        v = f32(src1[(row * p.batch + b) * h + k]);
    }
    dst[i] = c_elem(v * dropout_factor(i));
}

@compute @workgroup_size(64)
fn join_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let h = p.width;
    let wide = p.directions * h;
    let total = p.seq_len * p.batch * h;
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= total) {
        return;
    }
    let k = i % h;
    let b = (i / h) % p.batch;
    let s = i / (h * p.batch);
    if (p.direction == 0u) {
        let at = (s * p.batch + b) * wide + k;
        dst[i] = c_elem(f32(src0[at]) * dropout_factor(at));
        return;
    }
    let len = lengths[b];
    if (s >= len) {
        dst[i] = 0.0;
        return;
    }
    let at = ((len - 1u - s) * p.batch + b) * wide + h + k;
    dst[i] = c_elem(f32(src0[at]) * dropout_factor(at));
}

// copy_elements: dst[dst_offset + i] = src0[src_offset + i] for i < count, in dst's element
// type: the f32 master weights into their f16 working copy, and copies of states between f16
// buffers, which buffer-to-buffer copies cannot make (they move whole 4-byte words).
@compute @workgroup_size(64)
fn copy_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= p.count) {
        return;
    }
    dst[p.dst_offset + i] = c_elem(f32(src0[p.src_offset + i]));
}
