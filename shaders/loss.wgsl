// The losses, forward and backward in one pass: one invocation per scored row writes that row's
// share of the mean loss (summed afterwards by row_sums in reduce.wgsl, in a fixed order) and
// the gradient w.r.t. the head's outputs. Non-finite outputs give the CPU engine's share, a
// NaN or +inf, checked through the bits (see finite.wgsl).
//   outputs [rows, O]; targets: MSE [rows, O] f32 values, cross-entropy [rows] class indices
//   (both bound as u32 words: f32 targets are bit-cast, so one layout serves both losses).
//   row_loss [rows]; doutputs [rows, O]

struct LossParams {
    // rows this dispatch scores (a segment's)
    rows: u32,
    outputs: u32,
    // rows of the whole mean (the valid ones)
    mean_rows: u32,
    // 1: rows are time-major steps (row = t * batch + b, t from first_step) and those past
    // their sequence's length are padding, scored 0 with no gradient
    mask_rows: u32,
    first_step: u32,
    batch: u32,
    // dynamic loss scaling (f16 storage): the gradient leaves the loss times this power of
    // two, so that small ones survive f16; the optimizer divides it out. 1 under f32.
    loss_scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> outputs: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> doutputs: array<f32>;
@group(0) @binding(4) var<uniform> p: LossParams;
@group(0) @binding(5) var<storage, read> lengths: array<u32>;

fn is_padding(row: u32) -> bool {
    return p.mask_rows != 0u && p.first_step + row / p.batch >= lengths[row % p.batch];
}

// nn.MSELoss(reduction='mean'): mean over rows * O elements.
@compute @workgroup_size(64, 1, 1)
fn mse_loss(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * 64u;
    if (row >= p.rows) {
        return;
    }
    let scale = 1.0 / (f32(p.mean_rows) * f32(p.outputs));
    if (is_padding(row)) {
        for (var o = 0u; o < p.outputs; o++) {
            doutputs[row * p.outputs + o] = 0.0;
        }
        row_loss[row] = 0.0;
        return;
    }
    var total = 0.0;
    var worst = 0u;
    for (var o = 0u; o < p.outputs; o++) {
        let i = row * p.outputs + o;
        let diff = outputs[i] - bitcast<f32>(targets[i]);
        total += diff * diff;
        worst = max(worst, non_finite_bits(diff));
        doutputs[i] = 2.0 * diff * scale * p.loss_scale;
    }
    row_loss[row] = with_non_finite(total * scale, worst);
}

// nn.CrossEntropyLoss(reduction='mean') on logits: mean over rows of
// logsumexp(logits) - logits[target]. The row maximum is subtracted before exp.
@compute @workgroup_size(64, 1, 1)
fn cross_entropy_loss(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * 64u;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.outputs;
    if (is_padding(row)) {
        for (var o = 0u; o < p.outputs; o++) {
            doutputs[base + o] = 0.0;
        }
        row_loss[row] = 0.0;
        return;
    }
    let target_class = targets[row];
    var largest = outputs[base];
    // A NaN or +inf logit makes the row's loss a NaN (the CPU engine's z - max is then a
    // NaN); max() could drop a NaN, so the bits are checked.
    var nan_row = 0u;
    for (var o = 0u; o < p.outputs; o++) {
        let logit = outputs[base + o];
        largest = max(largest, logit);
        let bits = bitcast<u32>(logit);
        nan_row = max(nan_row, select(0u, (bits & MAGNITUDE_BITS) | QUIET_BIT, is_nan(logit) || bits == EXPONENT_BITS));
    }
    var sum_exp = 0.0;
    for (var o = 0u; o < p.outputs; o++) {
        sum_exp += exp(outputs[base + o] - largest);
    }
    let scale = 1.0 / f32(p.mean_rows);
    for (var o = 0u; o < p.outputs; o++) {
        let probability = exp(outputs[base + o] - largest) / sum_exp;
        doutputs[base + o] = (probability - select(0.0, 1.0, o == target_class)) * scale * p.loss_scale;
    }
    let loss = (log(sum_exp) + largest - outputs[base + target_class]) * scale;
    row_loss[row] = select(loss, bitcast<f32>(nan_row), nan_row != 0u);
}
