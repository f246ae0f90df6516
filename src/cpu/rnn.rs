//! The vanilla RNN over a whole sequence: `h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`.

use super::cell::{CellGrads, CellRun, Inputs};
use super::math::{tanh, vectorized_fn};
use super::packed::PackedWeight;
use super::parallel;
use super::steps::{
    batch_parts, hold_padded_states, is_padding, length_parts, norms, pass_padded_gradients,
    products_over_rows, round_step, rows, rows_mut, step_gradient, store_row_squares,
    stored_projection,
};
use crate::config::Activation;
use crate::float::Float;
use crate::params::CellParams;
use crate::precision::Precision;
use ndarray::{
    Array1, Array2, ArrayRef2, ArrayRef3, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
};

/// The forward recurrence over all T steps.
///
/// params: weight_ih `[H, I]`, weight_hh `[H, H]`, bias_ih `[H]`, bias_hh `[H]`; x `[T, B, I]`,
/// h0 `[B, H]`, lengths `[B]` (steps past a sequence's length keep its state). Returns hs
/// `[T+1, B, H]` (`hs[0] = h0`) and gates `[T, B, H]`, which for the RNN is h_t again: backward
/// takes the activation's derivative from its output. Under `Precision::F16` the gates are
/// rounded to f16 after each product and after activation, and the states as each step writes
/// them (h0 too), where the GPU stores them.
pub fn rnn_forward<F: Float>(
    activation: Activation,
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    h0: &ArrayRef2<F>,
    precision: Precision,
) -> CellRun<F> {
    let weight_hh = &params.weight_hh;
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // W_ih x_t for every step; each step adds its recurrent term in place, then both biases
    // (which enter unscaled) and the activation.
    // (under f16, b_ih is in the stored projection already)
    let (mut gates, bias_ih) = stored_projection(params, x, precision);
    let bias: Array1<F> = bias_ih + &params.bias_hh;
    let bias = bias.as_slice().expect("an owned 1-D array is contiguous");
    let mut hs = parallel::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    round_step(precision, &mut hs, 0);
    // Sequences do not interact: each thread runs its own rows of the batch through all T
    // steps, with nothing to wait for inside the time loop.
    let rows_per_part = batch_parts(seq_len, batch, hidden * hidden);
    let weight_hh_t = PackedWeight::new(weight_hh.t());
    let parts = hs
        .axis_chunks_iter_mut(Axis(1), rows_per_part)
        .zip(gates.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part));
    parallel::run(
        parts,
        |((mut hs, mut gates), lengths): ((ArrayViewMut3<F>, _), _)| {
            for t in 0..seq_len {
                let mut pre_activation = gates.index_axis_mut(Axis(0), t);
                weight_hh_t.product_into(&hs.index_axis(Axis(0), t), F::one(), &mut pre_activation);
                precision.round_array(&mut pre_activation);
                let h_next = hs.index_axis_mut(Axis(0), t + 1);
                for (pre_activation, h_next) in rows_mut(pre_activation).zip(rows_mut(h_next)) {
                    rnn_cell_forward(activation, bias, pre_activation, h_next);
                }
                round_step(precision, &mut gates, t);
                round_step(precision, &mut hs, t + 1);
                hold_padded_states(lengths, t, &mut hs);
            }
        },
    );
    CellRun {
        hs,
        cs: None,
        gates,
    }
}

vectorized_fn! {
/// One sequence's step: pre_activation `[H]` (without bias) becomes h_t = act(. + bias), which
/// h_next `[H]` receives as well. One loop per activation, so that each vectorizes.
fn rnn_cell_forward<F: Float>(
    activation: Activation,
    bias: &[F],
    pre_activation: &mut [F],
    h_next: &mut [F],
) {
    #[inline(always)]
    fn apply<F: Float>(bias: &[F], pre: &mut [F], h_next: &mut [F], act: impl Fn(F) -> F) {
        let hidden = pre.len();
        let (bias, h_next) = (&bias[..hidden], &mut h_next[..hidden]);
        for j in 0..hidden {
            let h = act(pre[j] + bias[j]);
            pre[j] = h;
            h_next[j] = h;
        }
    }
    match activation {
        Activation::Tanh => apply(bias, pre_activation, h_next, tanh),
        Activation::Sigmoid => apply(bias, pre_activation, h_next, super::math::sigmoid),
        Activation::Relu => apply(bias, pre_activation, h_next, relu),
    }
}
}

/// Backpropagation through time over all T steps.
///
/// params: weight_ih `[H, I]`, weight_hh `[H, H]` (the biases are not read); x `[T, B, I]`; run:
/// hs `[T+1, B, H]` and gates `[T, B, H]` from `rnn_forward`; dh_from_head `[S, B, H]`: the head's
/// gradient w.r.t. the last S hidden states h_{T-S+1}..h_T (S = T when the head reads every
/// step, 1 when only h_T). Per step, dE/dh_t = dh_from_head_t + dgates_{t+1} W_hh, whose norm
/// is recorded; the weight gradients follow from all dgates at once after the loop. Under
/// `Precision::F16` the norms are of dE/dh_t rounded to f16 (the step computes with it
/// unrounded), and dgates and dx are rounded, where the GPU stores them.
pub fn rnn_backward<F: Float>(
    activation: Activation,
    params: &CellParams<F>,
    inputs: Inputs<'_, F>,
    run: &CellRun<F>,
    dh_from_head: &ArrayRef3<F>,
    precision: Precision,
) -> CellGrads<F> {
    let (weight_ih, weight_hh) = (&params.weight_ih, &params.weight_hh);
    let (hs, gates) = (&run.hs, &run.gates);
    let Inputs { x, lengths } = inputs;
    let (seq_len, batch, hidden) = gates.dim();
    // dE/d(pre-activation) of every step: [T, B, H].
    let mut dgates = parallel::zeros(gates.raw_dim());
    let mut dh0 = Array2::zeros((batch, hidden));
    // Each thread takes its own rows of the batch, as forward does, and keeps the sum of squares
    // of each row of dh_t; the norms add them up after the loop.
    let rows_per_part = batch_parts(seq_len, batch, 2 * hidden * hidden);
    let mut parts: Vec<_> = gates
        .axis_chunks_iter(Axis(1), rows_per_part)
        .zip(dh_from_head.axis_chunks_iter(Axis(1), rows_per_part))
        .zip(dgates.axis_chunks_iter_mut(Axis(1), rows_per_part))
        .zip(dh0.axis_chunks_iter_mut(Axis(0), rows_per_part))
        .zip(length_parts(lengths, batch, rows_per_part))
        .map(|((((gates, dh_from_head), dgates), dh0), lengths)| {
            let batch_rows = dh0.nrows();
            RnnBackwardRows {
                gates,
                dh_from_head,
                dgates,
                dh0,
                lengths,
                precision,
                squares_h: Array2::zeros((seq_len, batch_rows)),
            }
        })
        .collect();
    let weight_hh = PackedWeight::new(weight_hh.view());
    parallel::run(parts.iter_mut(), |part| part.run(activation, &weight_hh));
    let grad_norm_h = norms(parts.iter().map(|part| &part.squares_h), seq_len);
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
        dc0: None,
        grad_norm_h,
        grad_norm_c: None,
    }
}

/// `rnn_backward`'s time loop for some rows `b` of the batch, with its inputs and outputs.
struct RnnBackwardRows<'a, F> {
    /// `[T, b, H]` and `[S, b, H]` as `rnn_backward` takes them.
    gates: ArrayView3<'a, F>,
    dh_from_head: ArrayView3<'a, F>,
    /// Out: `[T, b, H]`, and dh0 = dgates_1 W_hh `[b, H]`.
    dgates: ArrayViewMut3<'a, F>,
    dh0: ArrayViewMut2<'a, F>,
    /// `[b]`: the steps past these are padding (None: none are).
    lengths: Option<&'a [usize]>,
    precision: Precision,
    /// Out: the sum of squares of each of these rows of dE/dh_t, `[T, b]`.
    squares_h: Array2<f64>,
}

impl<F: Float> RnnBackwardRows<'_, F> {
    /// weight_hh `[H, H]`.
    fn run(&mut self, activation: Activation, weight_hh: &PackedWeight<'_, F>) {
        let (seq_len, batch_rows, hidden) = self.gates.dim();
        // The only buffers of the loop, allocated before it.
        let mut dh = Array2::zeros((batch_rows, hidden));
        let mut dh_next = Array2::zeros((batch_rows, hidden));
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
            let h = self.gates.index_axis(Axis(0), t);
            for (row, ((h, dh), dgate)) in rows(h)
                .zip(rows(dh.view()))
                .zip(rows_mut(dgate))
                .enumerate()
            {
                if is_padding(self.lengths, row, t) {
                    dgate.fill(F::zero());
                } else {
                    rnn_cell_backward(activation, h, dh, dgate);
                }
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
/// One sequence's step backward: dpre `[H]` = dh `[H]` * act'(.) at the output h `[H]`. One loop
/// per activation, so that each vectorizes.
fn rnn_cell_backward<F: Float>(activation: Activation, h: &[F], dh: &[F], dpre: &mut [F]) {
    let hidden = dpre.len();
    let (h, dh) = (&h[..hidden], &dh[..hidden]);
    match activation {
        Activation::Tanh => (0..hidden).for_each(|j| {
            dpre[j] = dh[j] * activation_derivative(Activation::Tanh, h[j]);
        }),
        Activation::Sigmoid => (0..hidden).for_each(|j| {
            dpre[j] = dh[j] * activation_derivative(Activation::Sigmoid, h[j]);
        }),
        Activation::Relu => (0..hidden).for_each(|j| {
            dpre[j] = dh[j] * activation_derivative(Activation::Relu, h[j]);
        }),
    }
}
}

/// The RNN's nonlinearity.
pub fn activate<F: Float>(activation: Activation, v: F) -> F {
    match activation {
        Activation::Tanh => tanh(v),
        Activation::Sigmoid => sigmoid(v),
        Activation::Relu => relu(v),
    }
}

/// `max(v, 0)` that keeps a NaN, as PyTorch's does (`f32::max` would return the 0).
#[inline(always)]
pub fn relu<F: Float>(v: F) -> F {
    if v < F::zero() {
        F::zero()
    } else {
        v
    }
}

/// The nonlinearity's derivative, from its output `h = act(v)` (all three allow it, so forward
/// need not keep the pre-activations). ReLU's derivative at 0 is 0, as in PyTorch.
#[inline(always)]
pub fn activation_derivative<F: Float>(activation: Activation, h: F) -> F {
    match activation {
        Activation::Tanh => F::one() - h * h,
        Activation::Sigmoid => h * (F::one() - h),
        Activation::Relu => {
            if h > F::zero() {
                F::one()
            } else {
                F::zero()
            }
        }
    }
}

/// `1 / (1 + e^-v)`; saturates to 0 or 1 without producing NaN.
pub fn sigmoid<F: Float>(v: F) -> F {
    super::math::sigmoid(v)
}
