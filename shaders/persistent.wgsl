// A segment's time steps in one dispatch, for models whose steps are too small to fill a GPU:
// there each step's dispatch (fused.wgsl) costs more than its work. Batch rows never meet in a
// recurrence, so each workgroup runs all the steps of its own slice of p.slice_rows rows,
// independent of the others: no barrier between workgroups is needed, and the slices spread
// over as many multiprocessors. (On llvmpipe, which ends an invocation's loops after 65,535
// iterations in all, the host splits a segment into runs p.run_start + 1 ..= p.run_end short
// enough.) Between the recurrent product and the cell, and between steps, a barrier stands
// where the per-step path ends a dispatch. Where W_hh [G*H, H] fits W_CACHE (16 KiB, WebGPU's
// guaranteed workgroup storage) each workgroup keeps it in its memory for the whole segment;
// a larger one is read from the weight buffer at every step (the GPU's caches hold it), in the
// forward product through w in chunks of k (forward_product_staged), so that neighbouring
// invocations read neighbouring words.
//
// forward,  per step t = 1..len:  recurrent[t] (+)= h_{t-1} W_hh^T, then cell_forward(t)
// backward, per step t = len..1:  dh[t] += recurrent_grad[t+1] W_hh (t < len), then
//           cell_backward(t); the border from the next segment is a GEMM before this
// for the slice's rows b only. Each output is one sum over k in order, whatever the slices and
// wherever W_hh is read from, so the results depend on neither.
//
// step.wgsl and a cell file come first: the bindings, p (p.step = len here), GATES,
// add_recurrent, recurrent_grad, cell_forward and cell_backward. The host slices the batch
// (src/gpu/recurrence.rs, PersistentSlices).

const THREADS: u32 = 256u;
const W_CACHE: u32 = 4096u;
var<workgroup> w: array<f32, W_CACHE>;

// Whether W_hh fits the workgroup's cache (uniform: from p alone; H tested first so that
// G*H*H cannot overflow).
fn cached() -> bool {
    return p.hidden <= 64u && GATES * p.hidden * p.hidden <= W_CACHE;
}

// W_hh[r, k], from the cache (in load_weight_hh's layout) where it holds W_hh, else from memory.
fn w_hh(r: u32, k: u32, transposed: bool) -> f32 {
    let h = p.hidden;
    if (!cached()) {
        return f32(weight_hh[r * h + k]);
    }
    if (transposed) {
        return w[k * GATES * h + r];
    }
    return w[r * h + k];
}

// W_hh into w as [G*H, H] (transposed: false) or [H, G*H] (true), so that neighbouring
// invocations read neighbouring words of w (no bank conflicts on GPUs).
fn load_weight_hh(lid: u32, transposed: bool) {
    if (!cached()) {
        return;
    }
    let h = p.hidden;
    let gh = GATES * h;
    for (var i = lid; i < gh * h; i += THREADS) {
        if (transposed) {
            w[(i % h) * gh + i / h] = f32(weight_hh[i]);
        } else {
            w[i] = f32(weight_hh[i]);
        }
    }
    workgroupBarrier();
}

// This workgroup's rows of the batch: the first, and how many (none in a workgroup past the
// batch, which the host's grid may add).
struct Slice {
    first: u32,
    rows: u32,
}

fn slice_of(wg: vec3<u32>, groups: vec3<u32>) -> Slice {
    let first = (wg.x + wg.y * groups.x) * p.slice_rows;
    if (first >= p.batch) {
        return Slice(first, 0u);
    }
    return Slice(first, min(p.slice_rows, p.batch - first));
}

// Element e = b * G*H + r of recurrent[t] (+)= sum_k h_{t-1}[b, k] W_hh[r, k] for the slice's
// rows b, one output per invocation at a time, W_hh from the cache or from memory.
fn forward_product(lid: u32, t: u32, slice: Slice) {
    let h = p.hidden;
    let gh = GATES * h;
    let first = slice.first * gh;
    for (var e = first + lid; e < first + slice.rows * gh; e += THREADS) {
        let state = (t - 1u) * p.batch * h + (e / gh) * h;
        let r = e % gh;
        var sum = 0.0;
        for (var k = 0u; k < h; k++) {
            sum += f32(hs[state + k]) * w_hh(r, k, true);
        }
        add_recurrent((t - 1u) * p.batch * gh + e, sum);
    }
}

// Whether the forward product stages W_hh through w: where W_hh is not cached but a chunk of
// at least one k for all G*H rows fits w.
fn staged() -> bool {
    return !cached() && GATES * p.hidden <= W_CACHE;
}

// Outputs an invocation sums per pass of forward_product_staged: one vec4 of accumulators,
// indexed by constants only, so that compilers keep them in registers.
const OUTS: u32 = 4u;

// forward_product where W_hh is not cached: read straight, neighbouring invocations (rows r)
// would read words H apart. Instead W_hh passes through w in chunks of the next kc values of k
// for all G*H rows, read along k and kept as w[kk * G*H + r]; each invocation sums OUTS
// outputs, THREADS apart, per pass over the chunks. The same sums in the same order as
// forward_product.
fn forward_product_staged(lid: u32, t: u32, slice: Slice) {
    let h = p.hidden;
    let gh = GATES * h;
    let kc = W_CACHE / gh;
    let first = slice.first * gh;
    let end = first + slice.rows * gh;
    // uniform bounds: every invocation meets the barriers inside
    for (var start = first; start < end; start += THREADS * OUTS) {
        let base = start + lid;
        var acc = vec4<f32>();
        for (var k0 = 0u; k0 < h; k0 += kc) {
            let n = min(kc, h - k0);
            // the previous chunk's sums are done with w
            workgroupBarrier();
            for (var i = lid; i < gh * n; i += THREADS) {
                let r = i / n;
                let kk = i % n;
                w[kk * gh + r] = f32(weight_hh[r * h + k0 + kk]);
            }
            workgroupBarrier();
            let chunk = vec2<u32>(k0, n);
            acc = vec4<f32>(
                chunk_sum(t, base, end, chunk, acc.x),
                chunk_sum(t, base + THREADS, end, chunk, acc.y),
                chunk_sum(t, base + 2u * THREADS, end, chunk, acc.z),
                chunk_sum(t, base + 3u * THREADS, end, chunk, acc.w),
            );
        }
        let at = (t - 1u) * p.batch * gh;
        finish_staged(at, base, end, acc.x);
        finish_staged(at, base + THREADS, end, acc.y);
        finish_staged(at, base + 2u * THREADS, end, acc.z);
        finish_staged(at, base + 3u * THREADS, end, acc.w);
    }
}

// sum plus output e's terms k0 .. k0 + n (chunk = (k0, n)) from the chunk in w; sum itself
// for an e past the slice's end.
fn chunk_sum(t: u32, e: u32, end: u32, chunk: vec2<u32>, sum: f32) -> f32 {
    if (e >= end) {
        return sum;
    }
    let h = p.hidden;
    let gh = GATES * h;
    let state = (t - 1u) * p.batch * h + (e / gh) * h + chunk.x;
    let r = e % gh;
    var total = sum;
    for (var kk = 0u; kk < chunk.y; kk++) {
        total += f32(hs[state + kk]) * w[kk * gh + r];
    }
    return total;
}

// Output e's product into recurrent[t] (at: step t's offset), for an e within the slice.
fn finish_staged(at: u32, e: u32, end: u32, sum: f32) {
    if (e < end) {
        add_recurrent(at + e, sum);
    }
}

@compute @workgroup_size(256, 1, 1)
fn persistent_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let gh = GATES * h;
    let slice = slice_of(wg, groups);
    load_weight_hh(lid, true);
    for (var t = p.run_start + 1u; t <= p.run_end; t++) {
        if (staged()) {
            forward_product_staged(lid, t, slice);
        } else {
            forward_product(lid, t, slice);
        }
        storageBarrier();
        let units = slice.first * h;
        for (var idx = units + lid; idx < units + slice.rows * h; idx += THREADS) {
            cell_forward(t, idx);
        }
        storageBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn persistent_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let h = p.hidden;
    let gh = GATES * h;
    let units = p.batch * h;
    let slice = slice_of(wg, groups);
    // the slice's (row, unit) pairs: [first, end) of b * H + k
    let first = slice.first * h;
    let end = first + slice.rows * h;
    load_weight_hh(lid, false);
    for (var t = p.run_end; t > p.run_start; t--) {
        if (t < p.step) {
            // element e = b * H + k of dh[t] += sum_r recurrent_grad[t+1][b, r] W_hh[r, k]
            for (var e = first + lid; e < end; e += THREADS) {
                let grad = t * p.batch * gh + (e / h) * gh;
                let k = e % h;
                var sum = 0.0;
                for (var r = 0u; r < gh; r++) {
                    sum += recurrent_grad(grad + r) * w_hh(r, k, false);
                }
                dh[(t - 1u) * units + e] = stored(f32(dh[(t - 1u) * units + e]) + sum);
            }
            storageBarrier();
        }
        for (var idx = first + lid; idx < end; idx += THREADS) {
            cell_backward(t, idx);
        }
        storageBarrier();
    }
}
