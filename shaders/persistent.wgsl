// A segment's time steps in one dispatch, for models whose steps are too small to fill a GPU:
// there each step's dispatch (fused.wgsl) costs more than its work. Batch rows never meet in a
// recurrence, so each workgroup runs all the steps of its own slice of p.slice_rows rows,
// independent of the others: no barrier between workgroups is needed, and the slices spread
// over as many multiprocessors. (On llvmpipe, which ends an invocation's loops after 65,535
// iterations in all, the host splits a segment into runs p.run_start + 1 ..= p.run_end short
// enough.) Between the recurrent product and the cell, and between steps, a barrier stands
// where the per-step path ends a dispatch. Where W_hh [G*H, H] fits W_CACHE (16 KiB, WebGPU's
// guaranteed workgroup storage) each workgroup keeps it in its memory for the whole segment;
// a larger one is read from the weight buffer at every step (the GPU's caches hold it).
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
        // element e = b * G*H + r of recurrent[t] = sum_k h_{t-1}[b, k] W_hh[r, k], for the
        // slice's rows b
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
