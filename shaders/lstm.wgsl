// One LSTM time step for one (batch row b, unit j). The products come first: x_t W_ih^T + b_ih
// for all steps at once (gemm.wgsl), the recurrent ones per step in the same dispatch
// (fused.wgsl, or persistent.wgsl), which then call these functions:
// forward,  gates[t] = (x_t W_ih^T + b_ih) + h_{t-1} W_hh^T   (pre-activations, [B, 4H])
// backward, dh[t]    = (dE/dh_t from the head) + dgates[t+1] W_hh   (total gradient, [B, H])
// Gate rows are stacked i, f, g, o as in PyTorch.
//
// Buffers (time-major, `stored` elements: f32, or f16 under --precision f16; dc_carry f32):
//   gates  [T, B, 4H]  pre-activations in, activated gates out (kept for backward)
//   hs, cs [T+1, B, H] h_0 / c_0 at index 0
//   dh     [T, B, H]   total dE/dh_t (its norm is the vanishing-gradient profile)
//   dc     [T, B, H]   total dE/dc_t
//   dgates [T, B, 4H]  gradient w.r.t. the pre-activations
//   dc_carry [B, H]    dE/dc_{t} flowing along the cell path into step t (ends as dE/dc_0)

// (step.wgsl comes first: the shared bindings, parameters, padding, sigmoid, tanh_clamped)
@group(0) @binding(2) var<storage, read_write> cs: array<stored>;
@group(0) @binding(6) var<storage, read_write> dc: array<stored>;
@group(0) @binding(8) var<storage, read_write> dc_carry: array<f32>;

// What fused.wgsl and persistent.wgsl need: gate blocks per unit, where the recurrent product lands and
// what multiplies W_hh going back.
const GATES: u32 = 4u;

fn add_recurrent(i: u32, value: f32) {
    gates[i] = stored(f32(gates[i]) + value);
}

fn recurrent_grad(i: u32) -> f32 {
    return f32(dgates[i]);
}

fn cell_forward(step: u32, idx: u32) {
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = (step - 1u) * p.batch * 4u * h + b * 4u * h + j;
    let state_prev = (step - 1u) * p.batch * h + idx;
    let state = step * p.batch * h + idx;
    if (is_padding(b, step)) {
        hs[state] = hs[state_prev];
        cs[state] = cs[state_prev];
        return;
    }

    let input_gate = sigmoid(f32(gates[g]) + bias_hh[j]);
    let forget_gate = sigmoid(f32(gates[g + h]) + bias_hh[j + h]);
    let cell_gate = tanh_clamped(f32(gates[g + 2u * h]) + bias_hh[j + 2u * h]);
    let output_gate = sigmoid(f32(gates[g + 3u * h]) + bias_hh[j + 3u * h]);
    let next_c = forget_gate * f32(cs[state_prev]) + input_gate * cell_gate;
    let next_h = output_gate * tanh_clamped(next_c);

    gates[g] = stored(input_gate);
    gates[g + h] = stored(forget_gate);
    gates[g + 2u * h] = stored(cell_gate);
    gates[g + 3u * h] = stored(output_gate);
    cs[state] = stored(next_c);
    hs[state] = stored(next_h);
}

fn cell_backward(step: u32, idx: u32) {
    let h = p.hidden;
    let b = idx / h;
    let j = idx % h;
    let g = (step - 1u) * p.batch * 4u * h + b * 4u * h + j;
    let state_prev = (step - 1u) * p.batch * h + idx;
    let state = step * p.batch * h + idx;
    // dh and dc hold steps 1..T at indices 0..T-1
    let grad = (step - 1u) * p.batch * h + idx;
    // the total dE/dh_t, with what a padding step t+1 passed back
    let dh_t = f32(dh[grad]) + h_carry[idx];
    dh[grad] = stored(dh_t);
    if (is_padding(b, step)) {
        // c_t is a copy of c_{t-1}: dE/dc_t passes on along the carry unchanged
        h_carry[idx] = dh_t;
        dc[grad] = stored(dc_carry[idx]);
        dgates[g] = 0.0;
        dgates[g + h] = 0.0;
        dgates[g + 2u * h] = 0.0;
        dgates[g + 3u * h] = 0.0;
        return;
    }
    h_carry[idx] = 0.0;

    let input_gate = f32(gates[g]);
    let forget_gate = f32(gates[g + h]);
    let cell_gate = f32(gates[g + 2u * h]);
    let output_gate = f32(gates[g + 3u * h]);
    let tanh_c = tanh_clamped(f32(cs[state]));

    // dc_carry holds dE/dc_t through c_{t+1} (zero at t = T)
    let dc_t = dh_t * output_gate * (1.0 - tanh_c * tanh_c) + dc_carry[idx];
    dc[grad] = stored(dc_t);
    dc_carry[idx] = dc_t * forget_gate;

    dgates[g] = stored(dc_t * cell_gate * input_gate * (1.0 - input_gate));
    dgates[g + h] = stored(dc_t * f32(cs[state_prev]) * forget_gate * (1.0 - forget_gate));
    dgates[g + 2u * h] = stored(dc_t * input_gate * (1.0 - cell_gate * cell_gate));
    dgates[g + 3u * h] = stored(dh_t * tanh_c * output_gate * (1.0 - output_gate));
}
