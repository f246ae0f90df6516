// One GRU time step for one (batch row, unit) (PyTorch's nn.GRU, gates stacked r, z, n):
//   r = sigmoid(gi_r + gh_r + b_hr),  z = sigmoid(gi_z + gh_z + b_hz)
//   n = tanh(gi_n + r * (gh_n + b_hn)),  h_t = (1 - z) * n + z * h_{t-1}
// where gi = x_t W_ih^T + b_ih (gemm.wgsl, all steps at once) and gh = h_{t-1} W_hh^T (fused.wgsl
// or persistent.wgsl, in the dispatch that calls these functions) sit in two buffers: the reset
// gate scales the recurrent term of n only, so the two products stay apart.
// Backward: dE/dh_t arrives as dh[t] (head + dgates_hh[t+1] W_hh) plus the direct path
// z_{t+1} * dE/dh_{t+1} (or all of it past a padding step), carried in h_carry.
//
// Buffers (time-major, `stored` elements: f32, or f16 under --precision f16; h_carry f32), in
// the Step layout's slots:
//   gates     [T, B, 3H]  gi in; activated r, z, n out (kept for backward)
//   hs        [T+1, B, H] h_0 at index 0
//   hh        [T, B, 3H]  gh (without b_hh)                       (the LSTM's cs slot)
//   dh        [T, B, H]   dE/dh_t: partial in, total out (its norm is the profile)
//   dhh       [T, B, 3H]  dE/d gh                                  (the LSTM's dc slot)
//   dgates    [T, B, 3H]  dE/d gi
//   h_carry   [B, H]      z_{t+1} * dE/dh_{t+1}, zero at t = T

// (step.wgsl comes first: the shared bindings, parameters, padding, sigmoid, tanh_clamped)
@group(0) @binding(2) var<storage, read_write> hh: array<stored>;
@group(0) @binding(6) var<storage, read_write> dhh: array<stored>;

// What fused.wgsl and persistent.wgsl need: gate blocks per unit, where the recurrent product lands (its own
// buffer: the reset gate scales one block of it) and what multiplies W_hh going back.
const GATES: u32 = 3u;

fn add_recurrent(i: u32, value: f32) {
    hh[i] = stored(value);
}

fn recurrent_grad(i: u32) -> f32 {
    return f32(dhh[i]);
}

fn cell_forward(step: u32, idx: u32) {
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = (step - 1u) * p.batch * 3u * h + b * 3u * h + j;
    let h_prev = f32(hs[(step - 1u) * p.batch * h + idx]);
    if (is_padding(b, step)) {
        hs[step * p.batch * h + idx] = stored(h_prev);
        return;
    }

    let reset = sigmoid(f32(gates[g]) + f32(hh[g]) + bias_hh[j]);
    let update = sigmoid(f32(gates[g + h]) + f32(hh[g + h]) + bias_hh[j + h]);
    let candidate = tanh_clamped(f32(gates[g + 2u * h]) + reset * (f32(hh[g + 2u * h]) + bias_hh[j + 2u * h]));

    gates[g] = stored(reset);
    gates[g + h] = stored(update);
    gates[g + 2u * h] = stored(candidate);
    hs[step * p.batch * h + idx] = stored((1.0 - update) * candidate + update * h_prev);
}

fn cell_backward(step: u32, idx: u32) {
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = (step - 1u) * p.batch * 3u * h + b * 3u * h + j;
    let h_prev = f32(hs[(step - 1u) * p.batch * h + idx]);
    // dh holds steps 1..T at indices 0..T-1
    let grad = (step - 1u) * p.batch * h + idx;

    let reset = f32(gates[g]);
    let update = f32(gates[g + h]);
    let candidate = f32(gates[g + 2u * h]);
    let recurrent_n = f32(hh[g + 2u * h]) + bias_hh[j + 2u * h];

    let dh_t = f32(dh[grad]) + h_carry[idx];
    dh[grad] = stored(dh_t);
    if (is_padding(b, step)) {
        h_carry[idx] = dh_t;
        for (var k = 0u; k < 3u; k++) {
            dgates[g + k * h] = 0.0;
            dhh[g + k * h] = 0.0;
        }
        return;
    }
    h_carry[idx] = dh_t * update;

    let dn = dh_t * (1.0 - update) * (1.0 - candidate * candidate);
    let dz = dh_t * (h_prev - candidate) * update * (1.0 - update);
    let dr = dn * recurrent_n * reset * (1.0 - reset);
    dgates[g] = stored(dr);
    dgates[g + h] = stored(dz);
    dgates[g + 2u * h] = stored(dn);
    dhh[g] = stored(dr);
    dhh[g + h] = stored(dz);
    dhh[g + 2u * h] = stored(dn * reset);
}
