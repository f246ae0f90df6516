// Optimizer steps with PyTorch's semantics (torch.optim.SGD, Adam, AdamW, RMSprop) and
// torch.nn.utils.clip_grad_norm_, one parameter tensor per dispatch. The CPU twins of these
// kernels are the functions of the same names in src/optim.rs.
//
// The global gradient norm is reduced in a fixed order (no float atomics), and every update
// kernel computes the clip factor itself from the norm in `reduction`, so a whole training
// step runs without a read-back. The gradients are left as BPTT wrote them (pre-clip): the
// factor is applied as each element is read.
//
// Buffers (f32):
//   grad              [n]      dE/dparam of one tensor
//   param             [n]      that parameter tensor, updated in place
//   state_a, state_b  [n]      sgd: momentum_buffer, -; adam: exp_avg, exp_avg_sq;
//                              rmsprop: square_avg, momentum_buffer (unused slots: a dummy)
//   reduction         [1 + P]  [0]: the pre-clip global norm; [1..]: per-chunk sums of squares
//
//   grad_sum_squares: reduction[offset + w] = sum of grad^2 over chunk w (CHUNK elements)
//   grad_norm:        reduction[0] = sqrt(sum of reduction[offset .. offset + n])
//   sgd_step, adam_step, rmsprop_step: one invocation per element of the tensor

struct OptimParams {
    // elements of the tensor (grad_norm: partial sums)
    n: u32,
    // first partial-sum word in `reduction`
    offset: u32,
    // 1 when clipping to max_norm
    clip: u32,
    max_norm: f32,
    // the scheduled learning rate of this step
    lr: f32,
    // coupled L2 (SGD, Adam): added to the gradient
    weight_decay: f32,
    // AdamW's decoupled decay 1 - lr * weight_decay, applied to the parameter first
    decay: f32,
    momentum: f32,
    alpha: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // Adam: lr / (1 - beta1^t)
    step_size: f32,
    // Adam: sqrt(1 - beta2^t)
    bias_correction2_sqrt: f32,
    // 1 / the loss scale: the gradients (and their norm in reduction[0]) arrive scaled by
    // dynamic loss scaling (f16 storage); 1 under f32
    inv_scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> state_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> state_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> reduction: array<f32>;
@group(0) @binding(5) var<uniform> p: OptimParams;

const WORKGROUP: u32 = 256u;
// Elements one grad_sum_squares workgroup sums; the host sizes its grid with the same value.
const CHUNK: u32 = 4096u;
var<workgroup> partial: array<f32, 256>;
var<workgroup> partial_worst: array<u32, 256>;

// Combines the workgroup's 256 values in a fixed tree, so the sum is reproducible; `worst` is
// each invocation's non_finite_bits of its terms, so a NaN or infinity among them makes the
// sum a NaN or +inf explicitly (see finite.wgsl).
fn workgroup_sum(lid: u32, value: f32, worst: u32) -> f32 {
    partial[lid] = value;
    partial_worst[lid] = worst;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
            partial_worst[lid] = max(partial_worst[lid], partial_worst[lid + stride]);
        }
        workgroupBarrier();
    }
    return with_non_finite(partial[0], partial_worst[0]);
}

@compute @workgroup_size(256, 1, 1)
fn grad_sum_squares(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let w = wg.x + wg.y * groups.x;
    let start = w * CHUNK;
    // uniform across the workgroup, so the barriers in workgroup_sum stay in uniform control flow
    if (start >= p.n) {
        return;
    }
    let end = min(start + CHUNK, p.n);
    var acc = 0.0;
    var worst = 0u;
    for (var i = start + lid; i < end; i += WORKGROUP) {
        let g = grad[i];
        acc += g * g;
        worst = max(worst, non_finite_bits(g));
    }
    let total = workgroup_sum(lid, acc, worst);
    if (lid == 0u) {
        reduction[p.offset + w] = total;
    }
}

// One workgroup: the partial sums of every tensor, in their fixed order.
@compute @workgroup_size(256, 1, 1)
fn grad_norm(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    var worst = 0u;
    for (var i = lid; i < p.n; i += WORKGROUP) {
        let sum = reduction[p.offset + i];
        acc += sum;
        worst = max(worst, non_finite_bits(sum));
    }
    let total = workgroup_sum(lid, acc, worst);
    if (lid == 0u) {
        reduction[0] = sqrt(total);
    }
}

// A step whose global gradient norm is a NaN or an infinity changes nothing (as PyTorch's
// GradScaler skips such steps): the parameters stay the last finite ones, which training's
// divergence report then examines. The host counts the step all the same.
fn skipped() -> bool {
    return non_finite_bits(reduction[0]) != 0u;
}

// What a gradient element is multiplied by as it is read (the CPU engine divides the loss
// scale out in its backward pass and then applies optim.rs's clip_scale): 1 / the loss scale, times
// clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)) of the unscaled norm (1 without
// clipping).
fn grad_factor() -> f32 {
    if (p.clip == 0u) {
        return p.inv_scale;
    }
    return p.inv_scale * min(1.0, p.max_norm / (reduction[0] * p.inv_scale + 1e-6));
}

// torch.lerp: the branch keeps the rounding small at either end of w.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if (abs(w) < 0.5) {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

fn element(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}

@compute @workgroup_size(64, 1, 1)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if (i >= p.n || skipped()) {
        return;
    }
    var g = grad[i] * grad_factor();
    if (p.weight_decay != 0.0) {
        g += p.weight_decay * param[i];
    }
    if (p.momentum != 0.0) {
        // PyTorch starts the buffer as a copy of g: momentum * 0 + g is exactly that.
        let buffer = p.momentum * state_a[i] + g;
        state_a[i] = buffer;
        g = buffer;
    }
    param[i] = param[i] - p.lr * g;
}

@compute @workgroup_size(64, 1, 1)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if (i >= p.n || skipped()) {
        return;
    }
    let theta = param[i] * p.decay;
    var g = grad[i] * grad_factor();
    if (p.weight_decay != 0.0) {
        g += p.weight_decay * theta;
    }
    let m = lerp(state_a[i], g, 1.0 - p.beta1);
    let v = p.beta2 * state_b[i] + (1.0 - p.beta2) * g * g;
    state_a[i] = m;
    state_b[i] = v;
    let denom = sqrt(v) / p.bias_correction2_sqrt + p.eps;
    param[i] = theta - p.step_size * (m / denom);
}

@compute @workgroup_size(64, 1, 1)
fn rmsprop_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if (i >= p.n || skipped()) {
        return;
    }
    let g = grad[i] * grad_factor();
    let square = p.alpha * state_a[i] + (1.0 - p.alpha) * g * g;
    state_a[i] = square;
    let avg = sqrt(square) + p.eps;
    if (p.momentum > 0.0) {
        let buffer = p.momentum * state_b[i] + g / avg;
        state_b[i] = buffer;
        param[i] = param[i] - p.lr * buffer;
    } else {
        param[i] = param[i] - p.lr * (g / avg);
    }
}
