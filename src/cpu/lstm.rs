//! The LSTM over a whole sequence, PyTorch's `nn.LSTM` with gates stacked i, f, g, o:
//! `c_t = f * c_{t-1} + i * g`, `h_t = o * tanh(c_t)`.

use super::cell::{CellGrads, CellRun, Inputs};
use super::math::{sigmoid, tanh, vectorized_fn};
use super::packed::PackedWeight;
use super::parallel;
use super::steps::{
    batch_parts, hold_padded_states, is_padding, length_parts, norms, pass_padded_gradients,
    products_over_rows, round_step, rows, rows_mut, step_gradient, store_row_squares,
    stored_projection, stored_sum_of_squares,
};
use crate::float::Float;
use crate::params::CellParams;
use crate::precision::Precision;
use ndarray::{
    s, Array1, Array2, ArrayRef2, ArrayRef3, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
};

/// The forward recurrence over all T steps.
///
/// params: weight_ih `[4H, I]`, weight_hh `[4H, H]`, bias_ih `[4H]`, bias_hh `[4H]`; x `[T, B, I]`,
/// h0 and c0 `[B, H]`, lengths `[B]` (steps past a sequence's length keep its state). Returns hs
/// and cs `[T+1, B, H]` (`hs[0] = h0`, `cs[0] = c0`) and the activated gates `[T, B, 4H]` (columns
/// i, f, g, o, each H wide), which is all backward needs. Under `Precision::F16` the gates are
/// rounded to f16 after each product and after activation, and the states as each step writes them
/// (h0 and c0 too), where the GPU stores them.
pub fn lstm_forward<F: Float>(
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    h0: &ArrayRef2<F>,
    c0: &ArrayRef2<F>,
    precision: Precision,
) -> CellRun<F> {
    let weight_hh = &params.weight_hh;
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // W_ih x_t for every step; each step adds its recurrent term in place and then overwrites
    // the pre-activations with the activated gates. Both biases enter unscaled, so the cell
    // adds their sum (under f16, b_ih is in the stored projection already).
    let (mut gates, bias_ih) = stored_projection(params, x, precision);
    let bias: Array1<F> = bias_ih + &params.bias_hh;
    let bias = bias.as_slice().expect("an owned 1-D array is contiguous");
    let mut hs = parallel::zeros((seq_len + 1, batch, hidden));
    let mut cs = parallel::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    cs.index_axis_mut(Axis(0), 0).assign(c0);
    round_step(precision, &mut hs, 0);
    round_step(precision, &mut cs, 0);
    // Sequences do not interact: each thread runs its own rows of the batch through all T
    // steps, with nothing to wait for inside the time loop.
    let rows_per_part = batch_parts(seq_len, batch, 4 * hidden * hidden);
    let weight_hh_t = PackedWeight::new(weight_hh.t());
    let parts = hs
        .axis_chunks_iter_mut(Axis(1), rows_per_part)
        .zip(cs.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(gates.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part));
    parallel::run(parts, |(((hs, cs), gates), lengths)| {
        lstm_forward_rows(&weight_hh_t, bias, hs, cs, gates, lengths, precision)
    });
    CellRun {
        hs,
        cs: Some(cs),
        gates,
    }
}

/// `lstm_forward`'s time loop for some rows `b` of the batch: weight_hh_t `[H, 4H]` (W_hh^T),
/// hs and cs `[T+1, b, H]` with step 0 filled, gates `[T, b, 4H]` holding W_ih x_t, bias `[4H]`
/// (b_ih + b_hh), lengths `[b]`.
fn lstm_forward_rows<F: Float>(
    weight_hh_t: &PackedWeight<'_, F>,
    bias: &[F],
    mut hs: ArrayViewMut3<F>,
    mut cs: ArrayViewMut3<F>,
    mut gates: ArrayViewMut3<F>,
    lengths: Option<&[usize]>,
    precision: Precision,
) {
    for t in 0..gates.len_of(Axis(0)) {
        let mut gate = gates.index_axis_mut(Axis(0), t);
        weight_hh_t.product_into(&hs.index_axis(Axis(0), t), F::one(), &mut gate);
        precision.round_array(&mut gate);
        let (c_prev, c_next) = cs.multi_slice_mut((s![t, .., ..], s![t + 1, .., ..]));
        let h_next = hs.index_axis_mut(Axis(0), t + 1);
        for (((gate, c_prev), c_next), h_next) in rows_mut(gate)
            .zip(rows_mut(c_prev))
            .zip(rows_mut(c_next))
            .zip(rows_mut(h_next))
        {
            lstm_cell_forward(gate, bias, c_prev, c_next, h_next);
        }
        round_step(precision, &mut gates, t);
        round_step(precision, &mut cs, t + 1);
        round_step(precision, &mut hs, t + 1);
        hold_padded_states(lengths, t, &mut hs);
        hold_padded_states(lengths, t, &mut cs);
    }
}

vectorized_fn! {
/// One sequence's step: gate `[4H]` holds the pre-activations without bias and becomes the
/// activated gates i, f, g, o; c_next and h_next `[H]` follow from c_prev `[H]`. Unit j's four
/// gates sit H apart; each element sees the same operations as in the WGSL twin's invocation j.
fn lstm_cell_forward<F: Float>(
    gate: &mut [F],
    bias: &[F],
    c_prev: &[F],
    c_next: &mut [F],
    h_next: &mut [F],
) {
    let hidden = c_prev.len();
    // One loop per nonlinearity, each over contiguous gates: a single loop computing five
    // sigmoids and tanhs per unit ran out of vector registers (spills, constants reloaded)
    // and took 1.4 times as long (perf, AVX2, (32, 100, 2, 128)). The gate row stays in L1
    // between the loops, and each element sees the same operations as before.
    let (sigmoid_if, rest) = gate.split_at_mut(2 * hidden);
    let (cell, output) = rest.split_at_mut(hidden);
    let (b_if, rest) = bias.split_at(2 * hidden);
    let (b_cell, b_output) = rest.split_at(hidden);
    // Slices of one length, so the loops carry no bounds checks and vectorize.
    let b_if = &b_if[..sigmoid_if.len()];
    for (g, &b) in sigmoid_if.iter_mut().zip(b_if) {
        *g = sigmoid(*g + b);
    }
    let (cell, output) = (&mut cell[..hidden], &mut output[..hidden]);
    let (b_cell, b_output) = (&b_cell[..hidden], &b_output[..hidden]);
    for (g, &b) in cell.iter_mut().zip(b_cell) {
        *g = tanh(*g + b);
    }
    for (g, &b) in output.iter_mut().zip(b_output) {
        *g = sigmoid(*g + b);
    }
    let (input, forget) = sigmoid_if.split_at(hidden);
    let (input, forget) = (&input[..hidden], &forget[..hidden]);
    let c_prev = &c_prev[..hidden];
    let (c_next, h_next) = (&mut c_next[..hidden], &mut h_next[..hidden]);
    for j in 0..hidden {
        let c = forget[j] * c_prev[j] + input[j] * cell[j];
        c_next[j] = c;
        h_next[j] = output[j] * tanh(c);
    }
}
}

/// Backpropagation through time over all T steps.
///
/// params: weight_ih `[4H, I]`, weight_hh `[4H, H]` (the biases are not read); x `[T, B, I]`; run:
/// hs and cs `[T+1, B, H]` and the activated gates `[T, B, 4H]` from `lstm_forward`;
/// dh_from_head `[S, B, H]`: the head's gradient w.r.t. the last S hidden states h_{T-S+1}..h_T
/// (S = T when the head reads every step, 1 when only h_T). Per step, dE/dh_t =
/// dh_from_head_t + dgates_{t+1} W_hh and dE/dc_t = dh_t o_t (1 - tanh(c_t)^2) +
/// dc_{t+1} f_{t+1}, whose norms are recorded; the weight gradients follow from all dgates at
/// once after the loop. Under `Precision::F16` the norms are of dE/dh_t and dE/dc_t rounded
/// to f16 (the step computes with them unrounded, and the carry dc_{t+1} f_{t+1} stays so),
/// and dgates and dx are rounded, where the GPU stores them.
pub fn lstm_backward<F: Float>(
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    run: &CellRun<F>,
    dh_from_head: &ArrayRef3<F>,
    precision: Precision,
) -> CellGrads<F> {
    let (weight_ih, weight_hh) = (&params.weight_ih, &params.weight_hh);
    let cs = run.cs.as_ref().expect("an LSTM run keeps its cell states");
    let (hs, gates) = (&run.hs, &run.gates);
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, hidden) = cs.dim();
    let seq_len = seq_len - 1;
    // dE/d(pre-activation) of every gate of every step: [T, B, 4H].
    let mut dgates = parallel::zeros(gates.raw_dim());
    let mut dh0 = Array2::zeros((batch, hidden));
    // The gradient reaching c_t through c_{t+1}: dc_{t+1} * f_{t+1}; none beyond T. After the
    // loop it is dc_1 * f_1 = dE/dc0.
    let mut dc0 = Array2::zeros((batch, hidden));
    // Each thread takes its own rows of the batch, as forward does, and keeps the sum of squares
    // of each row of dh_t and dc_t; the norms add them up after the loop.
    let rows_per_part = batch_parts(seq_len, batch, 8 * hidden * hidden);
    let mut parts: Vec<_> = gates
        .axis_chunks_iter(Axis(1), rows_per_part)
        .zip(cs.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(dh_from_head.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(dgates.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(dh0.axis_chunks_iter_mut(Axis(0), rows_per_part))
        .zip(dc0.axis_chunks_iter_mut(Axis(0), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part))
        .map(
            |((((((gates, cs), dh_from_head), dgates), dh0), dc), lengths)| {
                let batch_rows = dh0.nrows();
                LstmBackwardRows {
                    gates,
                    cs,
                    dh_from_head,
                    dgates,
                    dh0,
                    dc,
                    lengths,
                    precision,
                    squares_h: Array2::zeros((seq_len, batch_rows)),
                    squares_c: Array2::zeros((seq_len, batch_rows)),
                }
            },
        )
        .collect();
    let weight_hh = PackedWeight::new(weight_hh.view());
    parallel::run(parts.iter_mut(), |part| part.run(&weight_hh));
    let grad_norm_h = norms(parts.iter().map(|part| &part.squares_h), seq_len);
    let grad_norm_c = norms(parts.iter().map(|part| &part.squares_c), seq_len);
    drop(parts);
    let mut products = products_over_rows(weight_ih, x, hs, &dgates, &dgates);
    precision.round_array(&mut products.dx);
    CellGrads {
        dweight_ih: products.dweight_ih,
        dweight_hh: products.dweight_hh,
        dbias: products.dbias,
        dbias_hh: None,
        dx: products.dx,
        dh0,
        dc0: Some(dc0),
        grad_norm_h,
        grad_norm_c: Some(grad_norm_c),
    }
}

/// `lstm_backward`'s time loop for some rows `b` of the batch, with its inputs and outputs.
struct LstmBackwardRows<'a, F> {
    /// `[T, b, 4H]`, `[T+1, b, H]`, `[S, b, H]` as `lstm_backward` takes them.
    gates: ArrayView3<'a, F>,
    cs: ArrayView3<'a, F>,
    dh_from_head: ArrayView3<'a, F>,
    /// Out: `[T, b, 4H]`, and dh0 = dgates_1 W_hh `[b, H]`.
    dgates: ArrayViewMut3<'a, F>,
    dh0: ArrayViewMut2<'a, F>,
    /// dc_{t+1} f_{t+1} `[b, H]` while the loop runs, dE/dc0 when it is done.
    dc: ArrayViewMut2<'a, F>,
    /// `[b]`: the steps past these are padding (None: none are).
    lengths: Option<&'a [usize]>,
    precision: Precision,
    /// Out: the sum of squares of each of these rows of dE/dh_t and dE/dc_t, `[T, b]` each.
    squares_h: Array2<f64>,
    squares_c: Array2<f64>,
}

impl<F: Float> LstmBackwardRows<'_, F> {
    /// weight_hh `[4H, H]`.
    fn run(&mut self, weight_hh: &PackedWeight<'_, F>) {
        let (seq_len, batch_rows, hidden) = self.cs.dim();
        let seq_len = seq_len - 1;
        // The only buffers of the loop, allocated before it.
        let mut dh = Array2::zeros((batch_rows, hidden));
        let mut dh_next = Array2::zeros((batch_rows, hidden));
        let mut dc_row = vec![F::zero(); hidden];
        for t in (0..seq_len).rev() {
            // dh_next keeps dE/dh_{t+1} for the padding rule; step_gradient overwrites dh.
            std::mem::swap(&mut dh, &mut dh_next);
            let (done, next) = self.dgates.view_mut().split_at(Axis(0), t + 1);
            let dgate = done.index_axis_move(Axis(0), t);
            let dgate_next = (t + 1 < seq_len).then(|| next.index_axis_move(Axis(0), 0));
            step_gradient(
                &self.dh_from_head,
                seq_len,
                t,
                dgate_next.as_ref(),
                weight_hh,
                &mut dh,
            );
            pass_padded_gradients(self.lengths, t + 1, &dh_next, &mut dh);
            store_row_squares(self.precision, &dh, &mut self.squares_h, t);
            let gate = self.gates.index_axis(Axis(0), t);
            let c_prev = self.cs.index_axis(Axis(0), t);
            let c_now = self.cs.index_axis(Axis(0), t + 1);
            for (row, ((((gate, c_prev), c_now), dh_row), (dgate, dc_from_next))) in rows(gate)
                .zip(rows(c_prev))
                .zip(rows(c_now))
                .zip(rows(dh.view()))
                .zip(rows_mut(dgate).zip(rows_mut(self.dc.view_mut())))
                .enumerate()
            {
                if is_padding(self.lengths, row, t) {
                    // c_t is a copy of c_{t-1}: dE/dc passes on unchanged, no gate gradient.
                    dgate.fill(F::zero());
                    self.squares_c[[t, row]] = stored_sum_of_squares(self.precision, dc_from_next);
                    continue;
                }
                lstm_cell_backward(
                    gate,
                    c_prev,
                    c_now,
                    dh_row,
                    dgate,
                    dc_from_next,
                    &mut dc_row,
                );
                self.squares_c[[t, row]] = stored_sum_of_squares(self.precision, &dc_row);
            }
            // Stored before step t-1's product reads it.
            round_step(self.precision, &mut self.dgates, t);
        }
        weight_hh.product_into(
            &self.dgates.index_axis(Axis(0), 0),
            F::zero(),
            &mut self.dh0,
        );
    }
}

vectorized_fn! {
/// One sequence's step backward: gate `[4H]` (activated i, f, g, o), c_prev and c_now `[H]`
/// (c_{t-1}, c_t), dh `[H]` (dE/dh_t); dc_from_next `[H]` holds dc_{t+1} f_{t+1} and becomes
/// dc_t f_t; writes dgate `[4H]` (dE/d pre-activation) and dc `[H]` (dE/dc_t).
fn lstm_cell_backward<F: Float>(
    gate: &[F],
    c_prev: &[F],
    c_now: &[F],
    dh: &[F],
    dgate: &mut [F],
    dc_from_next: &mut [F],
    dc: &mut [F],
) {
    let one = F::one();
    let hidden = c_now.len();
    let (input, rest) = gate.split_at(hidden);
    let (forget, rest) = rest.split_at(hidden);
    let (cell, output) = rest.split_at(hidden);
    let (d_input, rest) = dgate.split_at_mut(hidden);
    let (d_forget, rest) = rest.split_at_mut(hidden);
    let (d_cell, d_output) = rest.split_at_mut(hidden);
    // Slices of one length, so the loop carries no bounds checks and vectorizes.
    let (output, d_output) = (&output[..hidden], &mut d_output[..hidden]);
    let (c_prev, dh) = (&c_prev[..hidden], &dh[..hidden]);
    let (dc_from_next, dc) = (&mut dc_from_next[..hidden], &mut dc[..hidden]);
    for j in 0..hidden {
        let (input_gate, forget_gate) = (input[j], forget[j]);
        let (cell_gate, output_gate) = (cell[j], output[j]);
        let tanh_c = tanh(c_now[j]);
        let dc_j = dh[j] * output_gate * (one - tanh_c * tanh_c) + dc_from_next[j];
        dc[j] = dc_j;
        // Each gate's gradient times its nonlinearity's derivative, from its output.
        d_input[j] = dc_j * cell_gate * input_gate * (one - input_gate);
        d_forget[j] = dc_j * c_prev[j] * forget_gate * (one - forget_gate);
        d_cell[j] = dc_j * input_gate * (one - cell_gate * cell_gate);
        d_output[j] = dh[j] * tanh_c * output_gate * (one - output_gate);
        dc_from_next[j] = dc_j * forget_gate;
    }
}
}
