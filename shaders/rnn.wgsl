// One vanilla RNN time step for one (batch row, unit): h_t = act(pre_t + b_hh), where
// pre_t = x_t W_ih^T + b_ih (gemm.wgsl, all steps at once) + h_{t-1} W_hh^T (fused.wgsl or
// persistent.wgsl, which call these functions after the product). Backward turns the total
// dE/dh_t (head gradient + dgates[t+1] W_hh) into dE/dpre_t.
//
// step.wgsl comes first (bindings, parameters, padding). Here G = 1: gates [T, B, H] holds the
// pre-activations without b_hh, dgates [T, B, H] dE/dpre_t.

// What fused.wgsl and persistent.wgsl need: gate blocks per unit, where the recurrent product lands and
// what multiplies W_hh going back.
const GATES: u32 = 1u;

fn add_recurrent(i: u32, value: f32) {
    gates[i] = stored(f32(gates[i]) + value);
}

fn recurrent_grad(i: u32) -> f32 {
    return f32(dgates[i]);
}

const TANH: u32 = 0u;
const SIGMOID: u32 = 1u;

fn activate(x: f32) -> f32 {
    if (p.activation == TANH) {
        return tanh_clamped(x);
    }
    if (p.activation == SIGMOID) {
        return sigmoid(x);
    }
    return relu(x);
}

// act'(pre) written in terms of h = act(pre), so backward needs only the stored states.
fn activation_derivative(h: f32) -> f32 {
    if (p.activation == TANH) {
        return 1.0 - h * h;
    }
    if (p.activation == SIGMOID) {
        return h * (1.0 - h);
    }
    return select(0.0, 1.0, h > 0.0);
}

fn cell_forward(step: u32, idx: u32) {
    let h = p.hidden;
    let j = idx % h;
    if (is_padding(idx / h, step)) {
        hs[step * p.batch * h + idx] = hs[(step - 1u) * p.batch * h + idx];
        return;
    }
    let pre = (step - 1u) * p.batch * h + idx;
    hs[step * p.batch * h + idx] = stored(activate(f32(gates[pre]) + bias_hh[j]));
}

fn cell_backward(step: u32, idx: u32) {
    let h = p.hidden;
    let grad = (step - 1u) * p.batch * h + idx;
    // the total dE/dh_t, with what a padding step t+1 passed back
    let dh_t = f32(dh[grad]) + h_carry[idx];
    dh[grad] = stored(dh_t);
    if (is_padding(idx / h, step)) {
        h_carry[idx] = dh_t;
        dgates[grad] = 0.0;
        return;
    }
    h_carry[idx] = 0.0;
    dgates[grad] = stored(dh_t * activation_derivative(f32(hs[step * p.batch * h + idx])));
}
