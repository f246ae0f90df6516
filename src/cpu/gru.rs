//! The GRU over a whole sequence, PyTorch's `nn.GRU` with gates stacked r, z, n and the reset
//! gate applied after the recurrent product:
//!
//! ```text
//! r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//! z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//! h' = (1 - z) * n + z * h
//! ```
//!
//! Because `r` multiplies the recurrent term of `n` only, the pre-activations of the input and
//! recurrent products get different gradients (`dgates_ih` and `dgates_hh` differ in the n
//! block), and so do `b_ih` and `b_hh`. Written for clarity: one thread, one product per step.

use super::math::{sigmoid, tanh};
use super::matmul::{product, product_into};
use super::{flatten_steps, input_projection, is_padding, CellGrads, Inputs};
use crate::Float;
use ndarray::{s, Array1, Array2, Array3, ArrayRef1, ArrayRef2, ArrayRef3, Axis};

/// The forward recurrence over all T steps.
///
/// weight_ih [3H, I], weight_hh [3H, H], bias_ih [3H], bias_hh [3H], x [T, B, I], h0 [B, H],
/// lengths [B] (steps past a sequence's length keep its state). Returns hs [T+1, B, H] (hs[0] = h0) and gates [T, B, 4H]: the activated r, z, n and the
/// recurrent term `W_hn h + b_hn` (what backward needs), each H wide.
pub fn gru_forward<F: Float>(
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    bias_ih: &ArrayRef1<F>,
    bias_hh: &ArrayRef1<F>,
    inputs: Inputs<'_, F>,
    h0: &ArrayRef2<F>,
) -> (Array3<F>, Array3<F>) {
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    let projected = input_projection(weight_ih, x);
    let mut hs = Array3::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    let mut gates = Array3::zeros((seq_len, batch, 4 * hidden));
    let mut recurrent = Array2::zeros((batch, 3 * hidden));
    for t in 0..seq_len {
        product_into(
            &hs.index_axis(Axis(0), t),
            &weight_hh.t(),
            F::zero(),
            &mut recurrent,
        );
        for b in 0..batch {
            for j in 0..hidden {
                let input = |k: usize| projected[[t, b, k * hidden + j]] + bias_ih[k * hidden + j];
                let rec = |k: usize| recurrent[[b, k * hidden + j]] + bias_hh[k * hidden + j];
                let r = sigmoid(input(0) + rec(0));
                let z = sigmoid(input(1) + rec(1));
                let hn = rec(2);
                let n = tanh(input(2) + r * hn);
                let h_prev = hs[[t, b, j]];
                hs[[t + 1, b, j]] = if is_padding(lengths, b, t) {
                    h_prev
                } else {
                    (F::one() - z) * n + z * h_prev
                };
                for (k, value) in [r, z, n, hn].into_iter().enumerate() {
                    gates[[t, b, k * hidden + j]] = value;
                }
            }
        }
    }
    (hs, gates)
}

/// BPTT through `gru_forward`: weight_ih [3H, I], weight_hh [3H, H], x [T, B, I],
/// hs [T+1, B, H], gates [T, B, 4H] as `gru_forward` returns them, dh_from_head [S, B, H] for
/// the last S steps, lengths [B].
pub fn gru_backward<F: Float>(
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    inputs: Inputs<'_, F>,
    hs: &ArrayRef3<F>,
    gates: &ArrayRef3<F>,
    dh_from_head: &ArrayRef3<F>,
) -> CellGrads<F> {
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, input) = x.dim();
    let hidden = weight_hh.ncols();
    let head_steps = dh_from_head.len_of(Axis(0));
    // dE/d pre-activation of the input and of the recurrent product, [T, B, 3H] each.
    let mut dgates_ih = Array3::zeros((seq_len, batch, 3 * hidden));
    let mut dgates_hh = Array3::zeros((seq_len, batch, 3 * hidden));
    let mut grad_norm_h = vec![F::zero(); seq_len];
    // dE/dh_{t} from step t+1: z * dh (direct) + dgates_hh W_hh.
    let mut dh_next = Array2::<F>::zeros((batch, hidden));
    for t in (0..seq_len).rev() {
        let mut dh = dh_next.clone();
        if let Some(s) = (t + head_steps).checked_sub(seq_len) {
            dh.zip_mut_with(&dh_from_head.index_axis(Axis(0), s), |d, &h| *d = *d + h);
        }
        grad_norm_h[t] = dh.iter().fold(F::zero(), |sum, &v| sum + v * v).sqrt();
        let mut direct = Array2::<F>::zeros((batch, hidden));
        for b in 0..batch {
            if is_padding(lengths, b, t) {
                // h_t is a copy of h_{t-1}: the gradient passes on whole, no gate gradient.
                for j in 0..hidden {
                    direct[[b, j]] = dh[[b, j]];
                }
                continue;
            }
            for j in 0..hidden {
                let gate = |k: usize| gates[[t, b, k * hidden + j]];
                let (r, z, n, hn) = (gate(0), gate(1), gate(2), gate(3));
                let d = dh[[b, j]];
                let dn = d * (F::one() - z) * (F::one() - n * n);
                let dz = d * (hs[[t, b, j]] - n) * z * (F::one() - z);
                let dr = dn * hn * r * (F::one() - r);
                for (k, (di, dr_h)) in [(dr, dr), (dz, dz), (dn, dn * r)].into_iter().enumerate() {
                    dgates_ih[[t, b, k * hidden + j]] = di;
                    dgates_hh[[t, b, k * hidden + j]] = dr_h;
                }
                direct[[b, j]] = d * z;
            }
        }
        dh_next = direct;
        product_into(
            &dgates_hh.index_axis(Axis(0), t),
            weight_hh,
            F::one(),
            &mut dh_next,
        );
    }
    let ih_rows = flatten_steps(dgates_ih.view());
    let hh_rows = flatten_steps(dgates_hh.view());
    let column_sums = |rows: &ArrayRef2<F>| -> Array1<F> { rows.sum_axis(Axis(0)) };
    CellGrads {
        dweight_ih: product(&ih_rows.t(), &flatten_steps(x.view())),
        dweight_hh: product(
            &hh_rows.t(),
            &flatten_steps(hs.slice(s![..seq_len, .., ..])),
        ),
        dbias: column_sums(&ih_rows),
        dbias_hh: Some(column_sums(&hh_rows)),
        dx: product(&ih_rows, weight_ih)
            .into_shape_with_order((seq_len, batch, input))
            .expect("dx unflattens to [T, B, I]"),
        dh0: dh_next,
        dc0: None,
        grad_norm_h,
        grad_norm_c: None,
    }
}
