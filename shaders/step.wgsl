// What the three cells (rnn.wgsl, lstm.wgsl, gru.wgsl) share: the Step layout's common
// bindings, the per-dispatch parameters, the padding rule and the activations. src/gpu/kernels.rs
// puts this file (after finite.wgsl) in front of each of them; each adds the bindings only it
// uses (slots 2, 6, 8).
//
// Each cell file writes its step as `cell_forward(step, idx)` and `cell_backward(step, idx)`
// for one (batch row, unit) idx = b * H + j, run after the recurrent product: fused.wgsl runs
// one step per dispatch over tiles of idx, persistent.wgsl all of a segment's steps in one
// dispatch, one workgroup per slice of batch rows.
//
// Buffers (time-major, one segment's worth; `stored` is f32, or f16 under --precision f16,
// carries and biases always f32):
//   gates   [T, B, G*H]  pre-activations in, activated gates out
//   hs      [T+1, B, H]  h_0 at index 0
//   dh      [T, B, H]    dE/dh_t: partial in, the total out (its norm is the profile)
//   dgates  [T, B, G*H]  dE/d pre-activation
//   lengths [B]          steps past a sequence's length are padding: they keep its state,
//                        and backward passes dE/dh (and dE/dc) through them unchanged
//   h_carry [B, H]       what reaches dE/dh_t from step t+1 beyond dh[t]: through a padding
//                        step, the GRU's direct path z * dE/dh, and in fused.wgsl the
//                        recurrent product

struct StepParams {
    batch: u32,
    hidden: u32,
    // 1-based time step t within the segment's buffers (persistent.wgsl: the segment's
    // length, all of whose steps one dispatch runs)
    step: u32,
    // vanilla RNN only: 0 tanh, 1 sigmoid, 2 relu
    activation: u32,
    // steps before the segment: the sequence's step is first_step + step
    first_step: u32,
    // persistent.wgsl: this dispatch runs the segment's steps run_start + 1 ..= run_end
    // (backward: from run_end down); llvmpipe's loop limit needs long segments split up.
    // fused.wgsl: run_end is the segment's length (no product from a step past it)
    run_start: u32,
    run_end: u32,
    // persistent.wgsl: batch rows per workgroup (each runs its own slice's steps)
    slice_rows: u32,
}

@group(0) @binding(0) var<storage, read_write> gates: array<stored>;
@group(0) @binding(1) var<storage, read_write> hs: array<stored>;
@group(0) @binding(3) var<storage, read> bias_hh: array<f32>;
@group(0) @binding(4) var<uniform> p: StepParams;
@group(0) @binding(5) var<storage, read_write> dh: array<stored>;
@group(0) @binding(7) var<storage, read_write> dgates: array<stored>;
@group(0) @binding(9) var<storage, read> lengths: array<u32>;
@group(0) @binding(10) var<storage, read_write> h_carry: array<f32>;
@group(0) @binding(11) var<storage, read> weight_hh: array<stored>;

fn is_padding(b: u32, step: u32) -> bool {
    return p.first_step + step > lengths[b];
}

// The activations pass a NaN pre-activation on explicitly (see finite.wgsl), as the CPU
// engine's do: a NaN weight or input then reaches the loss instead of being clamped into a
// number.
fn sigmoid(x: f32) -> f32 {
    return select(1.0 / (1.0 + exp(-x)), x, is_nan(x));
}

// tanh saturates to +-1 in f32 beyond |x| = 9; clamping keeps drivers that build tanh from
// exp from overflowing to NaN.
fn tanh_clamped(x: f32) -> f32 {
    return select(tanh(clamp(x, -15.0, 15.0)), x, is_nan(x));
}

// max(x, 0), with a NaN kept.
fn relu(x: f32) -> f32 {
    return select(max(x, 0.0), x, is_nan(x));
}

