//! The CPU reference: forward pass and backpropagation through time on ndarray, generic over
//! f32 (to compare with the GPU) and f64 (gradient checks). It runs the same algorithm as the
//! WGSL kernels: the input projection of all steps as one matrix product, the recurrent product
//! per step, and the weight gradients as one product each over all `T * B` rows.
//!
//! `forward` and `backward` orchestrate; the cells live in `rnn` and `lstm`, the head and the
//! losses in `readout`.

pub mod lstm;
pub mod readout;
pub mod rnn;

use crate::config::{Cell, Loss, ModelConfig, Readout};
use crate::data::{Batch, Targets};
use crate::params::Params;
use crate::{Error, Float};
use ndarray::linalg::general_mat_mul;
use ndarray::{
    s, Array1, Array2, Array3, ArrayRef1, ArrayRef2, ArrayRef3, ArrayView3, Axis, CowArray, Ix2,
};

/// Everything the forward pass keeps for backward.
///
/// hs [T+1, B, H] with hs[0] = h0; cs likewise for the LSTM (None for the RNN);
/// gates [T, B, G*H]: the LSTM's activated gates (i, f, g, o after their nonlinearities), the
/// RNN's h_t; outputs [rows, O]: the head's y (logits for cross-entropy); loss: scalar.
#[derive(Clone, Debug)]
pub struct Forward<F> {
    pub hs: Array3<F>,
    pub cs: Option<Array3<F>>,
    pub gates: Array3<F>,
    pub outputs: Array2<F>,
    pub loss: F,
}

/// grads: dLoss/dParam for every parameter (same shapes as the parameters); dh0, dc0 [B, H]
/// (dc0 None for the RNN); dx [T, B, I]; grad_norm_h[t-1] = ||dE/dh_t|| for t = 1..T, the
/// 2-norm over the whole [B, H] matrix of the total gradient arriving at h_t (from the head at
/// step t, if scored, plus from step t+1); grad_norm_c likewise for the LSTM's c_t.
#[derive(Clone, Debug)]
pub struct Backward<F> {
    pub grads: Params<F>,
    pub dh0: Array2<F>,
    pub dc0: Option<Array2<F>>,
    pub dx: Array3<F>,
    pub grad_norm_h: Vec<F>,
    pub grad_norm_c: Option<Vec<F>>,
}

/// What `rnn_backward` and `lstm_backward` return: the cell's share of `Backward`.
/// dweight_ih [G*H, I], dweight_hh [G*H, H], dbias [G*H] (the gradient of bias_ih and of
/// bias_hh alike: both enter the pre-activation unscaled), dx [T, B, I], dh0 and dc0 [B, H],
/// grad norms [T] (c only for the LSTM).
#[derive(Clone, Debug)]
pub struct CellGrads<F> {
    pub dweight_ih: Array2<F>,
    pub dweight_hh: Array2<F>,
    pub dbias: Array1<F>,
    pub dx: Array3<F>,
    pub dh0: Array2<F>,
    pub dc0: Option<Array2<F>>,
    pub grad_norm_h: Vec<F>,
    pub grad_norm_c: Option<Vec<F>>,
}

/// Runs the model on `batch`: the recurrence over all T steps, the head on the scored hidden
/// states, and the loss. Shapes: params as `Params` documents them for `config`, batch.x
/// [T, B, I], h0/c0 [B, H] (zeros when absent), targets [rows, O] values or [rows] classes.
/// Keeps every hidden (and cell) state and the gates for `backward`.
pub fn forward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
) -> Result<Forward<F>, Error> {
    config.validate()?;
    params.check(config)?;
    batch.check(config)?;
    let initial_state = |state: &Option<Array2<F>>| {
        state
            .clone()
            .unwrap_or_else(|| Array2::zeros((batch.batch_size(), config.hidden_size)))
    };
    let h0 = initial_state(&batch.h0);
    let (hs, cs, gates) = match config.cell {
        Cell::Rnn => {
            let (hs, gates) = rnn::rnn_forward(
                config.activation,
                &params.weight_ih,
                &params.weight_hh,
                &params.bias_ih,
                &params.bias_hh,
                &batch.x,
                &h0,
            );
            (hs, None, gates)
        }
        Cell::Lstm => {
            let c0 = initial_state(&batch.c0);
            let (hs, cs, gates) = lstm::lstm_forward(
                &params.weight_ih,
                &params.weight_hh,
                &params.bias_ih,
                &params.bias_hh,
                &batch.x,
                &h0,
                &c0,
            );
            (hs, Some(cs), gates)
        }
    };
    let outputs = readout::readout_forward(
        &params.head_weight,
        &params.head_bias,
        &scored_hidden(config.readout, &hs),
    );
    let (loss, _) = score(config.loss, &outputs, &batch.targets);
    Ok(Forward {
        hs,
        cs,
        gates,
        outputs,
        loss,
    })
}

/// Backpropagation through time for the `forward` pass `fwd` of the same config, params and
/// batch (shapes as in `forward`; panics if `fwd` does not match them). Returns the gradient of
/// the loss w.r.t. every parameter, h0, c0 and x, and the per-step gradient norms.
pub fn backward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    fwd: &Forward<F>,
) -> Backward<F> {
    let (seq_len, batch_size) = (batch.seq_len(), batch.batch_size());
    let hidden = config.hidden_size;
    // The losses are cheap next to the recurrence, so doutputs is recomputed rather than kept.
    let (_, doutputs) = score(config.loss, &fwd.outputs, &batch.targets);
    let (dhead_weight, dhead_bias, dscored) = readout::readout_backward(
        &params.head_weight,
        &scored_hidden(config.readout, &fwd.hs),
        &doutputs,
    );
    // The head's share of dE/dh_t for every step, zero where the head does not read h_t.
    let dh_from_head = match config.readout {
        Readout::Last => {
            let mut dh = Array3::zeros((seq_len, batch_size, hidden));
            dh.index_axis_mut(Axis(0), seq_len - 1).assign(&dscored);
            dh
        }
        Readout::All => dscored
            .into_shape_with_order((seq_len, batch_size, hidden))
            .expect("dscored is [T*B, H], time-major"),
    };
    let cell_grads = match config.cell {
        Cell::Rnn => rnn::rnn_backward(
            config.activation,
            &params.weight_ih,
            &params.weight_hh,
            &batch.x,
            &fwd.hs,
            &fwd.gates,
            &dh_from_head,
        ),
        Cell::Lstm => lstm::lstm_backward(
            &params.weight_ih,
            &params.weight_hh,
            &batch.x,
            &fwd.hs,
            fwd.cs
                .as_ref()
                .expect("an LSTM forward keeps its cell states"),
            &fwd.gates,
            &dh_from_head,
        ),
    };
    Backward {
        grads: Params {
            weight_ih: cell_grads.dweight_ih,
            weight_hh: cell_grads.dweight_hh,
            bias_ih: cell_grads.dbias.clone(),
            bias_hh: cell_grads.dbias,
            head_weight: dhead_weight,
            head_bias: dhead_bias,
        },
        dh0: cell_grads.dh0,
        dc0: cell_grads.dc0,
        dx: cell_grads.dx,
        grad_norm_h: cell_grads.grad_norm_h,
        grad_norm_c: cell_grads.grad_norm_c,
    }
}

/// The hidden states the head reads, [rows, H] from hs [T+1, B, H]: h_T ([B, H]) for
/// `Readout::Last`, h_1..h_T stacked time-major ([T*B, H]) for `Readout::All`.
fn scored_hidden<F: Float>(readout: Readout, hs: &ArrayRef3<F>) -> CowArray<'_, F, Ix2> {
    match readout {
        Readout::Last => CowArray::from(hs.index_axis(Axis(0), hs.len_of(Axis(0)) - 1)),
        Readout::All => flatten_steps(hs.slice(s![1.., .., ..])),
    }
}

/// The loss of outputs [rows, O] against targets, and its gradient w.r.t. the outputs.
/// `batch.check` has matched the target kind to the loss before this runs.
fn score<F: Float>(loss: Loss, outputs: &ArrayRef2<F>, targets: &Targets<F>) -> (F, Array2<F>) {
    match (loss, targets) {
        (Loss::Mse, Targets::Values(values)) => readout::mse_loss(outputs, values),
        (Loss::CrossEntropy, Targets::Classes(classes)) => {
            readout::cross_entropy_loss(outputs, classes)
        }
        _ => panic!("targets do not match the loss {loss}: run batch.check first"),
    }
}

/// The 2-norm of a whole matrix.
fn frobenius_norm<F: Float>(matrix: &ArrayRef2<F>) -> F {
    matrix.iter().fold(F::zero(), |sum, &v| sum + v * v).sqrt()
}

/// The input projection of all T steps as one matrix product, before the time loop.
///
/// weight_ih [G*H, I], bias_ih [G*H], x [T, B, I]. Returns `x W_ih^T + b_ih` as [T, B, G*H];
/// the cells add their recurrent term in place, step by step.
fn input_projection<F: Float>(
    weight_ih: &ArrayRef2<F>,
    bias_ih: &ArrayRef1<F>,
    x: &ArrayRef3<F>,
) -> Array3<F> {
    let (seq_len, batch, _) = x.dim();
    let x_rows = flatten_steps(x.view());
    let projection = row_major_dot(&x_rows, &weight_ih.t()) + bias_ih;
    projection
        .into_shape_with_order((seq_len, batch, weight_ih.nrows()))
        .expect("the projection unflattens to [T, B, G*H]")
}

/// The gradients that follow from all steps' dgates at once, after the time loop: one matrix
/// product each over all `T * B` rows.
///
/// weight_ih [G*H, I], weight_hh [G*H, H], x [T, B, I], hs [T+1, B, H], dgates [T, B, G*H]
/// (dE/d pre-activation). Returns the cell's `CellGrads` with dc0 and the norms left empty for
/// the cell to fill: dW_ih = dgates^T x, dW_hh = dgates^T h_{t-1}, dbias = column sums of
/// dgates, dx = dgates W_ih, dh0 = dgates_1 W_hh.
fn products_over_rows<F: Float>(
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    x: &ArrayRef3<F>,
    hs: &ArrayRef3<F>,
    dgates: &ArrayRef3<F>,
) -> CellGrads<F> {
    let (seq_len, batch, input) = x.dim();
    let dgate_rows = flatten_steps(dgates.view());
    let x_rows = flatten_steps(x.view());
    let h_prev_rows = flatten_steps(hs.slice(s![..seq_len, .., ..]));
    CellGrads {
        dweight_ih: row_major_dot(&dgate_rows.t(), &x_rows),
        dweight_hh: row_major_dot(&dgate_rows.t(), &h_prev_rows),
        dbias: dgate_rows.sum_axis(Axis(0)),
        dx: row_major_dot(&dgate_rows, weight_ih)
            .into_shape_with_order((seq_len, batch, input))
            .expect("dx unflattens to [T, B, I]"),
        dh0: row_major_dot(&dgates.index_axis(Axis(0), 0), weight_hh),
        dc0: None,
        grad_norm_h: Vec::new(),
        grad_norm_c: None,
    }
}

/// Steps stacked as rows: [T, B, W] to [T*B, W], row `t * B + b` (time-major, as the GPU
/// buffers). Borrows when the layout allows, as it does for every array this module makes.
fn flatten_steps<F: Float>(steps: ArrayView3<'_, F>) -> CowArray<'_, F, Ix2> {
    let (seq_len, batch, width) = steps.dim();
    let shape = (seq_len * batch, width);
    if steps.is_standard_layout() {
        CowArray::from(
            steps
                .into_shape_with_order(shape)
                .expect("a standard-layout array reshapes in place"),
        )
    } else {
        CowArray::from(
            Array2::from_shape_vec(shape, steps.iter().copied().collect())
                .expect("T*B*W elements fill [T*B, W]"),
        )
    }
}

/// `a b` [M, N] for a [M, K], b [K, N], always row-major. (`dot` returns a column-major result
/// when both operands have unit row stride, e.g. x with one input feature against W_ih^T; the
/// reshapes here, `Params::tensors` and the GPU comparisons need row-major.)
fn row_major_dot<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>) -> Array2<F> {
    let mut product = Array2::zeros((a.nrows(), b.ncols()));
    general_mat_mul(F::one(), a, b, F::zero(), &mut product);
    product
}
