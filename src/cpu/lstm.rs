//! The LSTM over a whole sequence, PyTorch's `nn.LSTM` with gates stacked i, f, g, o:
//! `c_t = f * c_{t-1} + i * g`, `h_t = o * tanh(c_t)`.

use super::rnn::sigmoid;
use super::{frobenius_norm, input_projection, products_over_rows, CellGrads};
use crate::Float;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, Array3, ArrayRef1, ArrayRef2, ArrayRef3, Axis};

/// The forward recurrence over all T steps.
///
/// weight_ih [4H, I], weight_hh [4H, H], bias_ih [4H], bias_hh [4H], x [T, B, I],
/// h0 and c0 [B, H]. Returns hs and cs [T+1, B, H] (hs[0] = h0, cs[0] = c0) and the activated
/// gates [T, B, 4H] (columns i, f, g, o, each H wide), which is all backward needs.
pub fn lstm_forward<F: Float>(
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    bias_ih: &ArrayRef1<F>,
    bias_hh: &ArrayRef1<F>,
    x: &ArrayRef3<F>,
    h0: &ArrayRef2<F>,
    c0: &ArrayRef2<F>,
) -> (Array3<F>, Array3<F>, Array3<F>) {
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // Starts as W_ih x_t + b_ih for every step; each step adds its recurrent term in place and
    // then overwrites the pre-activations with the activated gates.
    let mut gates = input_projection(weight_ih, bias_ih, x);
    let mut hs = Array3::zeros((seq_len + 1, batch, hidden));
    let mut cs = Array3::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    cs.index_axis_mut(Axis(0), 0).assign(c0);
    for t in 0..seq_len {
        let mut gate = gates.index_axis_mut(Axis(0), t);
        general_mat_mul(
            F::one(),
            &hs.index_axis(Axis(0), t),
            &weight_hh.t(),
            F::one(),
            &mut gate,
        );
        gate.zip_mut_with(bias_hh, |v, &bias| *v = *v + bias);
        let (c_prev, mut c_next) = cs.multi_slice_mut((s![t, .., ..], s![t + 1, .., ..]));
        let mut h_next = hs.index_axis_mut(Axis(0), t + 1);
        // One iteration per (b, j), as one WGSL invocation: unit j's four gates sit H apart.
        for b in 0..batch {
            for j in 0..hidden {
                let (ii, fi, gi, oi) = (j, hidden + j, 2 * hidden + j, 3 * hidden + j);
                let input_gate = sigmoid(gate[[b, ii]]);
                let forget_gate = sigmoid(gate[[b, fi]]);
                let cell_gate = gate[[b, gi]].tanh();
                let output_gate = sigmoid(gate[[b, oi]]);
                let c = forget_gate * c_prev[[b, j]] + input_gate * cell_gate;
                c_next[[b, j]] = c;
                h_next[[b, j]] = output_gate * c.tanh();
                gate[[b, ii]] = input_gate;
                gate[[b, fi]] = forget_gate;
                gate[[b, gi]] = cell_gate;
                gate[[b, oi]] = output_gate;
            }
        }
    }
    (hs, cs, gates)
}

/// Backpropagation through time over all T steps.
///
/// weight_ih [4H, I], weight_hh [4H, H], x [T, B, I], hs and cs [T+1, B, H] and the activated
/// gates [T, B, 4H] from `lstm_forward`; dh_from_head [T, B, H]: the head's gradient w.r.t.
/// each h_t (zero where the head does not read h_t). Per step, dE/dh_t = dh_from_head_t +
/// dgates_{t+1} W_hh and dE/dc_t = dh_t o_t (1 - tanh(c_t)^2) + dc_{t+1} f_{t+1}, whose norms
/// are recorded; the weight gradients follow from all dgates at once after the loop.
pub fn lstm_backward<F: Float>(
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    x: &ArrayRef3<F>,
    hs: &ArrayRef3<F>,
    cs: &ArrayRef3<F>,
    gates: &ArrayRef3<F>,
    dh_from_head: &ArrayRef3<F>,
) -> CellGrads<F> {
    let (seq_len, batch, hidden) = dh_from_head.dim();
    let one = F::one();
    // dE/d(pre-activation) of every gate of every step: [T, B, 4H].
    let mut dgates = Array3::zeros(gates.raw_dim());
    let mut grad_norm_h = vec![F::zero(); seq_len];
    let mut grad_norm_c = vec![F::zero(); seq_len];
    let mut dh = Array2::zeros((batch, hidden));
    // The gradient reaching c_t through c_{t+1}: dc_{t+1} * f_{t+1}; none beyond T. After the
    // loop it is dc_1 * f_1 = dE/dc0.
    let mut dc_from_next = Array2::zeros((batch, hidden));
    for t in (0..seq_len).rev() {
        dh.assign(&dh_from_head.index_axis(Axis(0), t));
        if t + 1 < seq_len {
            general_mat_mul(
                one,
                &dgates.index_axis(Axis(0), t + 1),
                weight_hh,
                one,
                &mut dh,
            );
        }
        grad_norm_h[t] = frobenius_norm(&dh);
        let gate = gates.index_axis(Axis(0), t);
        let c_prev = cs.index_axis(Axis(0), t);
        let c_now = cs.index_axis(Axis(0), t + 1);
        let mut dgate = dgates.index_axis_mut(Axis(0), t);
        let mut dc_squared_sum = F::zero();
        for b in 0..batch {
            for j in 0..hidden {
                let (ii, fi, gi, oi) = (j, hidden + j, 2 * hidden + j, 3 * hidden + j);
                let (input_gate, forget_gate) = (gate[[b, ii]], gate[[b, fi]]);
                let (cell_gate, output_gate) = (gate[[b, gi]], gate[[b, oi]]);
                let tanh_c = c_now[[b, j]].tanh();
                let dc = dh[[b, j]] * output_gate * (one - tanh_c * tanh_c) + dc_from_next[[b, j]];
                dc_squared_sum = dc_squared_sum + dc * dc;
                // Each gate's gradient times its nonlinearity's derivative, from its output.
                dgate[[b, ii]] = dc * cell_gate * input_gate * (one - input_gate);
                dgate[[b, fi]] = dc * c_prev[[b, j]] * forget_gate * (one - forget_gate);
                dgate[[b, gi]] = dc * input_gate * (one - cell_gate * cell_gate);
                dgate[[b, oi]] = dh[[b, j]] * tanh_c * output_gate * (one - output_gate);
                dc_from_next[[b, j]] = dc * forget_gate;
            }
        }
        grad_norm_c[t] = dc_squared_sum.sqrt();
    }
    CellGrads {
        dc0: Some(dc_from_next),
        grad_norm_h,
        grad_norm_c: Some(grad_norm_c),
        ..products_over_rows(weight_ih, weight_hh, x, hs, &dgates)
    }
}
