// One vanilla RNN time step, elementwise: h_t = act(pre_t + b_hh), where
// pre_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T comes from gemm.wgsl. Backward turns the total
// dE/dh_t (head gradient + dgates[t+1] W_hh, also from gemm.wgsl) into dE/dpre_t.
//
// Buffers (time-major, f32):
//   gates  [T, B, H]   pre-activations (without b_hh)
//   hs     [T+1, B, H] h_0 at index 0
//   dh     [T, B, H]   total dE/dh_t
//   dgates [T, B, H]   dE/dpre_t

struct StepParams {
    batch: u32,
    hidden: u32,
    // 1-based time step t within the segment's buffers
    step: u32,
    // vanilla RNN only: 0 tanh, 1 sigmoid, 2 relu
    activation: u32,
    // steps before the segment: the sequence's step is first_step + step
    first_step: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> gates: array<f32>;
@group(0) @binding(1) var<storage, read_write> hs: array<f32>;
@group(0) @binding(3) var<storage, read> bias_hh: array<f32>;
@group(0) @binding(4) var<uniform> p: StepParams;

@group(0) @binding(5) var<storage, read_write> dh: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgates: array<f32>;

// lengths [B]: steps past a sequence's length are padding. They keep its state, and backward
// passes dE/dh (and dE/dc) through them unchanged, via h_carry [B, H].
@group(0) @binding(9) var<storage, read> lengths: array<u32>;
@group(0) @binding(10) var<storage, read_write> h_carry: array<f32>;

fn is_padding(b: u32) -> bool {
    return p.first_step + p.step > lengths[b];
}

const TANH: u32 = 0u;
const SIGMOID: u32 = 1u;

fn activate(x: f32) -> f32 {
    if (p.activation == TANH) {
        // clamped: tanh is +-1 in f32 beyond |x| = 9, and exp-based drivers overflow
        return tanh(clamp(x, -15.0, 15.0));
    }
    if (p.activation == SIGMOID) {
        return 1.0 / (1.0 + exp(-x));
    }
    return max(x, 0.0);
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

@compute @workgroup_size(64, 1, 1)
fn rnn_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.x + gid.y * groups.x * 64u;
    let h = p.hidden;
    if (idx >= p.batch * h) {
        return;
    }
    let j = idx % h;
    if (is_padding(idx / h)) {
        hs[p.step * p.batch * h + idx] = hs[(p.step - 1u) * p.batch * h + idx];
        return;
    }
    let pre = (p.step - 1u) * p.batch * h + idx;
    hs[p.step * p.batch * h + idx] = activate(gates[pre] + bias_hh[j]);
}

@compute @workgroup_size(64, 1, 1)
fn rnn_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.x + gid.y * groups.x * 64u;
    let h = p.hidden;
    if (idx >= p.batch * h) {
        return;
    }
    let grad = (p.step - 1u) * p.batch * h + idx;
    // the total dE/dh_t, with what a padding step t+1 passed back
    let dh_t = dh[grad] + h_carry[idx];
    dh[grad] = dh_t;
    if (is_padding(idx / h)) {
        h_carry[idx] = dh_t;
        dgates[grad] = 0.0;
        return;
    }
    h_carry[idx] = 0.0;
    dgates[grad] = dh_t * activation_derivative(hs[p.step * p.batch * h + idx]);
}
