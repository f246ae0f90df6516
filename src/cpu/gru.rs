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
//! block), and so do `b_ih` and `b_hh`. As the LSTM: each thread runs its own rows of the
//! batch through the whole time loop, with W_hh packed once for the per-step products.

use super::cell::{CellGrads, CellRun, Inputs};
use super::math::{sigmoid, tanh, vectorized_fn};
use super::matmul::column_sums;
use super::packed::PackedWeight;
use super::parallel;
use super::steps::{
    batch_parts, flatten_steps, hold_padded_states, is_padding, length_parts, norms,
    products_over_rows, round_step, rows, rows_mut, store_row_squares, stored_projection,
};
use crate::float::Float;
use crate::params::CellParams;
use crate::precision::Precision;
use ndarray::{s, Array2, ArrayRef2, ArrayRef3, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

/// The forward recurrence over all T steps.
///
/// params: weight_ih `[3H, I]`, weight_hh `[3H, H]`, bias_ih `[3H]`, bias_hh `[3H]`; x `[T, B, I]`,
/// h0 `[B, H]`, lengths `[B]` (steps past a sequence's length keep its state). Returns hs
/// `[T+1, B, H]` (`hs[0] = h0`) and gates `[T, B, 4H]`: the activated r, z, n and the recurrent
/// term `W_hn h + b_hn` (what backward needs), each H wide. Under `Precision::F16` both products
/// (the recurrent one kept apart) are rounded to f16, as are the gates and the states as each step
/// writes them (h0 too), where the GPU stores them.
pub fn gru_forward<F: Float>(
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    h0: &ArrayRef2<F>,
    precision: Precision,
) -> CellRun<F> {
    let weight_hh = &params.weight_hh;
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // (under f16, b_ih is in the stored projection already, and bias_ih is zeros)
    let (projected, bias_ih) = stored_projection(params, x, precision);
    let mut hs = parallel::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    round_step(precision, &mut hs, 0);
    let mut gates = parallel::zeros((seq_len, batch, 4 * hidden));
    let biases = (
        bias_ih.as_slice().expect("biases are contiguous"),
        params.bias_hh.as_slice().expect("biases are contiguous"),
    );
    let rows_per_part = batch_parts(seq_len, batch, 3 * hidden * hidden);
    let weight_hh_t = PackedWeight::new(weight_hh.t());
    let parts = hs
        .axis_chunks_iter_mut(Axis(1), rows_per_part)
        .zip(gates.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(projected.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part));
    parallel::run(parts, |(((hs, gates), projected), lengths)| {
        gru_forward_rows(
            &weight_hh_t,
            biases,
            projected,
            hs,
            gates,
            lengths,
            precision,
        )
    });
    CellRun {
        hs,
        cs: None,
        gates,
    }
}

/// `gru_forward`'s time loop for some rows `b` of the batch: weight_hh_t `[H, 3H]` (W_hh^T),
/// (bias_ih, bias_hh) `[3H]` each, projected `[T, b, 3H]` (W_ih x_t), hs `[T+1, b, H]` with step 0
/// filled, gates `[T, b, 4H]` out, lengths `[b]`.
fn gru_forward_rows<F: Float>(
    weight_hh_t: &PackedWeight<'_, F>,
    (bias_ih, bias_hh): (&[F], &[F]),
    projected: ArrayView3<F>,
    mut hs: ArrayViewMut3<F>,
    mut gates: ArrayViewMut3<F>,
    lengths: Option<&[usize]>,
    precision: Precision,
) {
    let (seq_len, batch_rows, hidden) = (gates.len_of(Axis(0)), hs.dim().1, hs.dim().2);
    // h_{t-1} W_hh^T: the loop's only buffer, allocated before it.
    let mut recurrent = Array2::zeros((batch_rows, 3 * hidden));
    for t in 0..seq_len {
        weight_hh_t.product_into(&hs.index_axis(Axis(0), t), F::zero(), &mut recurrent);
        precision.round_array(&mut recurrent);
        let (h_prev, h_next) = hs.multi_slice_mut((s![t, .., ..], s![t + 1, .., ..]));
        for ((((input, recurrent), h_prev), h_next), gate) in rows(projected.index_axis(Axis(0), t))
            .zip(rows(recurrent.view()))
            .zip(rows(h_prev.view()))
            .zip(rows_mut(h_next))
            .zip(rows_mut(gates.index_axis_mut(Axis(0), t)))
        {
            gru_cell_forward(input, recurrent, bias_ih, bias_hh, h_prev, h_next, gate);
        }
        round_step(precision, &mut gates, t);
        round_step(precision, &mut hs, t + 1);
        hold_padded_states(lengths, t, &mut hs);
    }
}

vectorized_fn! {
/// One sequence's step: input and recurrent `[3H]` (W_ih x_t and h_{t-1} W_hh^T, without
/// biases), the biases `[3H]`, h_prev `[H]`; writes h_next `[H]` and gate `[4H]` (r, z, n, W_hn h +
/// b_hn). Each element sees the same operations as in the WGSL twin's invocation j.
fn gru_cell_forward<F: Float>(
    input: &[F],
    recurrent: &[F],
    bias_ih: &[F],
    bias_hh: &[F],
    h_prev: &[F],
    h_next: &mut [F],
    gate: &mut [F],
) {
    let hidden = h_prev.len();
    let one = F::one();
    // r and z first, then n and h: one loop computing two sigmoids and a tanh per unit spilled
    // vector registers, as the LSTM's did (`lstm_cell_forward`).
    let (rz, rest) = gate.split_at_mut(2 * hidden);
    let (n_gate, hn_gate) = rest.split_at_mut(hidden);
    // Slices of one length, so the loops carry no bounds checks and vectorize.
    let width = rz.len();
    let (input_rz, recurrent_rz) = (&input[..width], &recurrent[..width]);
    let (bias_ih_rz, bias_hh_rz) = (&bias_ih[..width], &bias_hh[..width]);
    for j in 0..width {
        rz[j] = sigmoid(input_rz[j] + bias_ih_rz[j] + recurrent_rz[j] + bias_hh_rz[j]);
    }
    let (r, z) = rz.split_at(hidden);
    let (r, z) = (&r[..hidden], &z[..hidden]);
    let (h_prev, h_next) = (&h_prev[..hidden], &mut h_next[..hidden]);
    let (n_gate, hn_gate) = (&mut n_gate[..hidden], &mut hn_gate[..hidden]);
    let n_at = 2 * hidden..3 * hidden;
    let (input_n, recurrent_n) = (&input[n_at.clone()], &recurrent[n_at.clone()]);
    let (bias_ih_n, bias_hh_n) = (&bias_ih[n_at.clone()], &bias_hh[n_at]);
    for j in 0..hidden {
        let hn = recurrent_n[j] + bias_hh_n[j];
        let n = tanh(input_n[j] + bias_ih_n[j] + r[j] * hn);
        h_next[j] = (one - z[j]) * n + z[j] * h_prev[j];
        n_gate[j] = n;
        hn_gate[j] = hn;
    }
}
}

/// BPTT through `gru_forward`: params' weight_ih `[3H, I]` and weight_hh `[3H, H]` (the biases are
/// not read), x `[T, B, I]`, run's hs `[T+1, B, H]` and gates `[T, B, 4H]` as `gru_forward` returns
/// them, dh_from_head `[S, B, H]` for the last S steps, lengths `[B]`. Per step, dE/dh_t =
/// dh_from_head_t + z_{t+1} dE/dh_{t+1} + dgates_hh_{t+1} W_hh; the weight gradients follow
/// from all steps at once after the loop. Under `Precision::F16` the norms are of dE/dh_t
/// rounded to f16 (the step computes with it unrounded, and the direct path z dE/dh_t stays
/// so), and both dgates and dx are rounded, where the GPU stores them.
pub fn gru_backward<F: Float>(
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    run: &CellRun<F>,
    dh_from_head: &ArrayRef3<F>,
    precision: Precision,
) -> CellGrads<F> {
    let (weight_ih, weight_hh) = (&params.weight_ih, &params.weight_hh);
    let (hs, gates) = (&run.hs, &run.gates);
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // dE/d pre-activation of the input and of the recurrent product, [T, B, 3H] each.
    let mut dgates_ih = parallel::zeros((seq_len, batch, 3 * hidden));
    let mut dgates_hh = parallel::zeros((seq_len, batch, 3 * hidden));
    let mut dh0 = Array2::zeros((batch, hidden));
    let rows_per_part = batch_parts(seq_len, batch, 6 * hidden * hidden);
    let mut parts: Vec<_> = gates
        .axis_chunks_iter(Axis(1), rows_per_part)
        .zip(hs.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(dh_from_head.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(dgates_ih.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(dgates_hh.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(dh0.axis_chunks_iter_mut(Axis(0), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part))
        .map(
            |((((((gates, hs), dh_from_head), dgates_ih), dgates_hh), dh0), lengths)| {
                let batch_rows = dh0.nrows();
                GruBackwardRows {
                    gates,
                    hs,
                    dh_from_head,
                    dgates_ih,
                    dgates_hh,
                    dh0,
                    lengths,
                    precision,
                    squares: Array2::zeros((seq_len, batch_rows)),
                }
            },
        )
        .collect();
    let packed = PackedWeight::new(weight_hh.view());
    parallel::run(parts.iter_mut(), |part| part.run(&packed));
    let grad_norm_h = norms(parts.iter().map(|part| &part.squares), seq_len);
    drop(parts);
    let mut products = products_over_rows(weight_ih, x, hs, &dgates_ih, &dgates_hh);
    precision.round_array(&mut products.dx);
    CellGrads {
        dweight_ih: products.dweight_ih,
        dweight_hh: products.dweight_hh,
        dbias: products.dbias,
        dbias_hh: Some(column_sums(&flatten_steps(dgates_hh.view()))),
        dx: products.dx,
        dh0,
        dc0: None,
        grad_norm_h,
        grad_norm_c: None,
    }
}

/// `gru_backward`'s time loop for some rows `b` of the batch, with its inputs and outputs.
struct GruBackwardRows<'a, F> {
    /// `[T, b, 4H]`, `[T+1, b, H]`, `[S, b, H]` as `gru_backward` takes them.
    gates: ArrayView3<'a, F>,
    hs: ArrayView3<'a, F>,
    dh_from_head: ArrayView3<'a, F>,
    /// Out: `[T, b, 3H]` each, and dE/dh0 `[b, H]`.
    dgates_ih: ArrayViewMut3<'a, F>,
    dgates_hh: ArrayViewMut3<'a, F>,
    dh0: ArrayViewMut2<'a, F>,
    /// `[b]`: the steps past these are padding (None: none are).
    lengths: Option<&'a [usize]>,
    precision: Precision,
    /// Out: the sum of squares of each of these rows of dE/dh_t, `[T, b]`.
    squares: Array2<f64>,
}

impl<F: Float> GruBackwardRows<'_, F> {
    /// weight_hh `[3H, H]`.
    fn run(&mut self, weight_hh: &PackedWeight<'_, F>) {
        let seq_len = self.gates.len_of(Axis(0));
        let (head_steps, batch_rows, hidden) = self.dh_from_head.dim();
        // dE/dh_t, and what step t passes to h_{t-1}: the loop's only buffers.
        let mut dh = Array2::zeros((batch_rows, hidden));
        let mut dh_prev = Array2::<F>::zeros((batch_rows, hidden));
        for t in (0..seq_len).rev() {
            // dE/dh_t = what step t+1 passed back, plus the head's share where it reads h_t.
            std::mem::swap(&mut dh, &mut dh_prev);
            if let Some(s) = (t + head_steps).checked_sub(seq_len) {
                dh.zip_mut_with(&self.dh_from_head.index_axis(Axis(0), s), |d, &h| {
                    *d = *d + h
                });
            }
            store_row_squares(self.precision, &dh, &mut self.squares, t);
            let gate = self.gates.index_axis(Axis(0), t);
            let h_prev = self.hs.index_axis(Axis(0), t);
            let (dgate_ih, dgate_hh) = (
                self.dgates_ih.index_axis_mut(Axis(0), t),
                self.dgates_hh.index_axis_mut(Axis(0), t),
            );
            for (row, ((((gate, h_prev), dh_row), (dgate_ih, dgate_hh)), direct)) in rows(gate)
                .zip(rows(h_prev))
                .zip(rows(dh.view()))
                .zip(rows_mut(dgate_ih).zip(rows_mut(dgate_hh)))
                .zip(rows_mut(dh_prev.view_mut()))
                .enumerate()
            {
                if is_padding(self.lengths, row, t) {
                    // h_t is a copy of h_{t-1}: the gradient passes on whole, no gate gradient.
                    direct.copy_from_slice(dh_row);
                    dgate_ih.fill(F::zero());
                    dgate_hh.fill(F::zero());
                    continue;
                }
                gru_cell_backward(gate, h_prev, dh_row, dgate_ih, dgate_hh, direct);
            }
            // Stored before the product below and step t-1 read them.
            round_step(self.precision, &mut self.dgates_ih, t);
            round_step(self.precision, &mut self.dgates_hh, t);
            // dE/dh_{t-1} = z dE/dh_t (direct) + dgates_hh W_hh
            weight_hh.product_into(
                &self.dgates_hh.index_axis(Axis(0), t),
                F::one(),
                &mut dh_prev,
            );
        }
        self.dh0.assign(&dh_prev);
    }
}

vectorized_fn! {
/// One sequence's step backward: gate `[4H]` (r, z, n, W_hn h + b_hn), h_prev `[H]`, dh `[H]`
/// (dE/dh_t); writes dgate_ih and dgate_hh `[3H]` (dE/d pre-activation of the input and of the
/// recurrent product) and direct `[H]` (z dE/dh_t, the gradient h_{t-1} gets past the
/// products).
fn gru_cell_backward<F: Float>(
    gate: &[F],
    h_prev: &[F],
    dh: &[F],
    dgate_ih: &mut [F],
    dgate_hh: &mut [F],
    direct: &mut [F],
) {
    let hidden = h_prev.len();
    let one = F::one();
    let (dh, direct) = (&dh[..hidden], &mut direct[..hidden]);
    let (dgate_ih, dgate_hh) = (&mut dgate_ih[..3 * hidden], &mut dgate_hh[..3 * hidden]);
    for j in 0..hidden {
        let (r, z, n, hn) = (
            gate[j],
            gate[hidden + j],
            gate[2 * hidden + j],
            gate[3 * hidden + j],
        );
        let d = dh[j];
        let dn = d * (one - z) * (one - n * n);
        let dz = d * (h_prev[j] - n) * z * (one - z);
        let dr = dn * hn * r * (one - r);
        dgate_ih[j] = dr;
        dgate_hh[j] = dr;
        dgate_ih[hidden + j] = dz;
        dgate_hh[hidden + j] = dz;
        dgate_ih[2 * hidden + j] = dn;
        dgate_hh[2 * hidden + j] = dn * r;
        direct[j] = d * z;
    }
}
}
