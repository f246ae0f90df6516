//! The linear head `y = W_out h + b_out` and the losses on its outputs.

use super::matmul::{column_sums, product};
use crate::float::Float;
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2};

/// The head on the scored hidden states.
///
/// head_weight `[O, H]`, head_bias `[O]`, hidden `[rows, H]` (h_T, or every h_t time-major;
/// `H` is the head's input width here, `D*H` for a bidirectional model). Returns outputs
/// `[rows, O]`; backward needs only `hidden`, which the caller keeps.
pub fn readout_forward<F: Float>(
    head_weight: &ArrayRef2<F>,
    head_bias: &ArrayRef1<F>,
    hidden: &ArrayRef2<F>,
) -> Array2<F> {
    product(hidden, &head_weight.t()) + head_bias
}

/// The head's backward pass.
///
/// head_weight `[O, H]`, hidden `[rows, H]` as given to `readout_forward`, doutputs `[rows, O]`.
/// Returns (dhead_weight `[O, H]`, dhead_bias `[O]`, dhidden `[rows, H]`).
pub fn readout_backward<F: Float>(
    head_weight: &ArrayRef2<F>,
    hidden: &ArrayRef2<F>,
    doutputs: &ArrayRef2<F>,
) -> (Array2<F>, Array1<F>, Array2<F>) {
    let dhead_weight = product(&doutputs.t(), hidden);
    let dhead_bias = column_sums(doutputs);
    let dhidden = product(doutputs, head_weight);
    (dhead_weight, dhead_bias, dhidden)
}

/// Mean squared error over all `rows * O` entries (`nn.MSELoss()`), or over the rows `valid`
/// marks (padding steps of shorter sequences are not scored).
///
/// outputs and targets `[rows, O]`, valid `[rows]`. Returns (loss, doutputs `[rows, O]`), zero on
/// the rows that do not count.
pub fn mse_loss<F: Float>(
    outputs: &ArrayRef2<F>,
    targets: &ArrayRef2<F>,
    valid: Option<&[bool]>,
) -> (F, Array2<F>) {
    let mut diff = outputs - targets;
    let mut counted = outputs.nrows();
    if let Some(valid) = valid {
        for (mut row, _) in diff.rows_mut().into_iter().zip(valid).filter(|(_, v)| !**v) {
            row.fill(F::zero());
        }
        counted = valid.iter().filter(|v| **v).count();
    }
    let count =
        F::from_usize(counted * outputs.ncols()).expect("element count fits the float type");
    let loss = diff.iter().fold(F::zero(), |sum, &d| sum + d * d) / count;
    let two = F::from_f64(2.0).unwrap();
    let doutputs = diff.mapv(|d| two * d / count);
    (loss, doutputs)
}

/// Softmax cross-entropy against class indices, mean over rows (`nn.CrossEntropyLoss()`).
///
/// logits `[rows, O]`, classes `[rows]` in 0..O. Returns (loss, dlogits `[rows, O]`) with
/// dlogits = (softmax - one_hot) / rows. Each row subtracts its maximum before exponentiating,
/// so large logits cannot overflow.
///
/// With `valid` `[rows]`, only the marked rows count (and the mean is over them).
pub fn cross_entropy_loss<F: Float>(
    logits: &ArrayRef2<F>,
    classes: &[u32],
    valid: Option<&[bool]>,
) -> (F, Array2<F>) {
    let counted = valid.map_or(logits.nrows(), |v| v.iter().filter(|v| **v).count());
    let rows = F::from_usize(counted).expect("row count fits the float type");
    let mut dlogits = Array2::zeros(logits.raw_dim());
    let mut loss = F::zero();
    for (((row, mut drow), &class), _) in logits
        .rows()
        .into_iter()
        .zip(dlogits.rows_mut())
        .zip(classes)
        .zip(0..)
        .filter(|(_, r)| valid.is_none_or(|v| v[*r]))
    {
        // A NaN logit is dropped by max but makes exp_sum, and so the loss, a NaN; a +inf one
        // makes z - max a NaN (the GPU engine's cross_entropy_loss checks both explicitly).
        let max = row.iter().fold(F::neg_infinity(), |m, &v| m.max(v));
        let exp_sum = row.iter().fold(F::zero(), |sum, &v| sum + (v - max).exp());
        let log_exp_sum = exp_sum.ln();
        // -log softmax(z)_class = log sum exp(z - max) - (z_class - max)
        loss = loss + log_exp_sum - (row[class as usize] - max);
        for (d, &v) in drow.iter_mut().zip(row) {
            *d = (v - max).exp() / exp_sum / rows;
        }
        drow[class as usize] = drow[class as usize] - F::one() / rows;
    }
    (loss / rows, dlogits)
}
