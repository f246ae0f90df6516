//! What the cells' time loops share: the input projection before the loop and the products
//! over all `T * B` rows after it, the split of the batch over threads, the padding steps of
//! shorter sequences, dE/dh_t per step and its norms, and the rounding of each stored step.
//! Apart from `cpu`'s mod.rs, which calls the cells, so that the cells do not call back into it.

use super::math;
use super::matmul::{column_sums, product};
use super::packed::PackedWeight;
use super::parallel;
use crate::float::Float;
use crate::params::CellParams;
use crate::precision::Precision;
use ndarray::{
    s, Array1, Array2, Array3, ArrayRef2, ArrayRef3, ArrayView2, ArrayView3, ArrayViewMut2,
    ArrayViewMut3, Axis, CowArray, Ix2,
};

/// Rounds step `t` of `steps` `[T, b, W]` to the storage precision once a step has written it,
/// before any later step reads it (as the GPU stores each step).
pub(super) fn round_step<F: Float>(precision: Precision, steps: &mut ArrayRef3<F>, t: usize) {
    precision.round_array(&mut steps.index_axis_mut(Axis(0), t));
}

/// The input projection of all T steps as one matrix product, before the time loop.
///
/// weight_ih `[G*H, I]`, x `[T, B, I]`. Returns `x W_ih^T` as `[T, B, G*H]`; the cells add their
/// recurrent term in place, step by step, and the biases with the nonlinearity.
/// The input projection of every step as the cell's steps add to it, and what of b_ih the
/// steps still add. Under f32 that is `x W_ih^T`, with all of b_ih left to the step; under
/// f16 storage it is `x W_ih^T + b_ih` rounded to f16, as the GPU's product stores it, with
/// nothing left (zeros), so both engines round the same sums.
pub(super) fn stored_projection<F: Float>(
    params: &CellParams<F>,
    x: &ArrayRef3<F>,
    precision: Precision,
) -> (Array3<F>, Array1<F>) {
    let mut projected = input_projection(&params.weight_ih, x);
    if precision == Precision::F32 {
        return (projected, params.bias_ih.clone());
    }
    for mut row in projected.rows_mut() {
        row.zip_mut_with(&params.bias_ih, |p, &b| *p = precision.round(*p + b));
    }
    (projected, Array1::zeros(params.bias_ih.len()))
}

pub(super) fn input_projection<F: Float>(weight_ih: &ArrayRef2<F>, x: &ArrayRef3<F>) -> Array3<F> {
    let (seq_len, batch, _) = x.dim();
    product(&flatten_steps(x.view()), &weight_ih.t())
        .into_shape_with_order((seq_len, batch, weight_ih.nrows()))
        .expect("the projection unflattens to [T, B, G*H]")
}

/// What follows from all steps' dgates at once, after the time loop: the weight gradients
/// (shapes of the weights), dbias `[G*H]` (the gradient of bias_ih) and dx `[T, B, I]`.
pub(super) struct RowProducts<F> {
    pub(super) dweight_ih: Array2<F>,
    pub(super) dweight_hh: Array2<F>,
    pub(super) dbias: Array1<F>,
    pub(super) dx: Array3<F>,
}

/// `RowProducts` as one matrix product each over all `T * B` rows.
///
/// weight_ih `[G*H, I]`, x `[T, B, I]`, hs `[T+1, B, H]`, dgates `[T, B, G*H]` (dE/d pre-activation
/// of the input product), dgates_hh likewise of the recurrent product (the same array where
/// both enter the pre-activation unscaled; the GRU's differ): dW_ih = dgates^T x,
/// dW_hh = dgates_hh^T h_{t-1}, dbias = column sums of dgates, dx = dgates W_ih.
pub(super) fn products_over_rows<F: Float>(
    weight_ih: &ArrayRef2<F>,
    x: &ArrayRef3<F>,
    hs: &ArrayRef3<F>,
    dgates: &ArrayRef3<F>,
    dgates_hh: &ArrayRef3<F>,
) -> RowProducts<F> {
    let (seq_len, batch, input) = x.dim();
    let dgate_rows = flatten_steps(dgates.view());
    let x_rows = flatten_steps(x.view());
    let h_prev_rows = flatten_steps(hs.slice(s![..seq_len, .., ..]));
    RowProducts {
        dweight_ih: product(&dgate_rows.t(), &x_rows),
        dweight_hh: product(&flatten_steps(dgates_hh.view()).t(), &h_prev_rows),
        dbias: column_sums(&dgate_rows),
        dx: product(&dgate_rows, weight_ih)
            .into_shape_with_order((seq_len, batch, input))
            .expect("dx unflattens to [T, B, I]"),
    }
}

/// Each part's slice of the sequence lengths, for parts of `rows_per_part` rows of the batch
/// as `axis_chunks_iter` cuts them (None everywhere when every step is valid).
pub(super) fn length_parts(
    lengths: Option<&[usize]>,
    batch: usize,
    rows_per_part: usize,
) -> Vec<Option<&[usize]>> {
    (0..batch.div_ceil(rows_per_part))
        .map(|k| lengths.map(|l| &l[k * rows_per_part..((k + 1) * rows_per_part).min(batch)]))
        .collect()
}

/// Whether step `t` (0-based) of row `row` is padding, past the sequence's length.
pub(super) fn is_padding(lengths: Option<&[usize]>, row: usize, t: usize) -> bool {
    lengths.is_some_and(|l| t >= l[row])
}

/// Padding steps keep the state: `state[t+1] = state[t]` on the rows whose step t is padding.
/// state `[T+1, b, H]` for some rows b of the batch, lengths `[b]`.
pub(super) fn hold_padded_states<F: Float>(
    lengths: Option<&[usize]>,
    t: usize,
    state: &mut ArrayViewMut3<F>,
) {
    let Some(lengths) = lengths else { return };
    for (row, _) in lengths.iter().enumerate().filter(|(_, &len)| t >= len) {
        let (from, mut to) = state.multi_slice_mut((s![t, row, ..], s![t + 1, row, ..]));
        to.assign(&from);
    }
}

/// A padding step t+1 passes dE/dh_{t+1} straight to h_t (its state is a copy): adds the rows
/// of `dh_next` `[b, H]` whose step t+1 is padding into `dh` `[b, H]`.
pub(super) fn pass_padded_gradients<F: Float>(
    lengths: Option<&[usize]>,
    t_next: usize,
    dh_next: &ArrayRef2<F>,
    dh: &mut Array2<F>,
) {
    let Some(lengths) = lengths else { return };
    for (row, _) in lengths.iter().enumerate().filter(|(_, &len)| t_next >= len) {
        dh.row_mut(row)
            .zip_mut_with(&dh_next.row(row), |d, &n| *d = *d + n);
    }
}

/// Rows of the batch per thread for a time loop of `seq_len` steps over `batch` sequences that
/// costs `work_per_row` multiply-adds per sequence and step.
pub(super) fn batch_parts(seq_len: usize, batch: usize, work_per_row: usize) -> usize {
    let parts = parallel::parts(seq_len * batch * work_per_row, batch);
    parallel::chunk_len(batch, parts, 1)
}

/// dE/dh_t for some rows of the batch, into dh `[b, H]`: the head's share, where it reads h_t,
/// plus the share from step t+1, `dgates_{t+1} W_hh` (none at t = T-1).
///
/// dh_from_head `[S, b, H]` for the last S of the seq_len steps, dgate_next `[b, G*H]`,
/// weight_hh `[G*H, H]`.
pub(super) fn step_gradient<F: Float>(
    dh_from_head: &ArrayView3<'_, F>,
    seq_len: usize,
    t: usize,
    dgate_next: Option<&ArrayViewMut2<'_, F>>,
    weight_hh: &PackedWeight<'_, F>,
    dh: &mut Array2<F>,
) {
    let head_steps = dh_from_head.len_of(Axis(0));
    let from_head = (t + head_steps)
        .checked_sub(seq_len)
        .map(|s| dh_from_head.index_axis(Axis(0), s));
    let beta = match from_head {
        Some(from_head) => {
            dh.assign(&from_head);
            F::one()
        }
        None => F::zero(),
    };
    match dgate_next {
        Some(dgate_next) => weight_hh.product_into(dgate_next, beta, dh),
        None if beta == F::zero() => dh.fill(F::zero()),
        None => {}
    }
}

/// `||dE/dh_t||` (or c) for t = 1..T from the sums of squares of every sequence in f64
/// (`math::sum_of_squares`), `[T, b]` for each part of the batch, the parts in batch order.
/// They are added one sequence at a time in batch order, so the norms do not depend on how
/// many threads took the batch. The GPU's twin is `row_norms` (reduce.wgsl).
pub(super) fn norms<'a, F: Float>(
    parts: impl Iterator<Item = &'a Array2<f64>> + Clone,
    seq_len: usize,
) -> Vec<F> {
    (0..seq_len)
        .map(|t| {
            let squares: f64 = parts.clone().flat_map(|part| part.row(t)).sum();
            F::from_f64(squares.sqrt()).expect("f64 converts to a float")
        })
        .collect()
}

/// Row t of `squares` `[T, b]`: the sum of squares of each row of `values` `[b, W]` as stored
/// in `precision` (`stored_sum_of_squares`).
pub(super) fn store_row_squares<F: Float>(
    precision: Precision,
    values: &ArrayRef2<F>,
    squares: &mut Array2<f64>,
    t: usize,
) {
    for (row, squares) in rows(values.view()).zip(squares.row_mut(t)) {
        *squares = stored_sum_of_squares(precision, row);
    }
}

/// The sum of squares of `values` as they are stored in `precision`, in f64, for the norms of
/// dE/dh_t and dE/dc_t: the GPU takes them from the f16 copy it stores, while the cell computes
/// on in f32 with the unrounded `values`.
pub(super) fn stored_sum_of_squares<F: Float>(precision: Precision, values: &[F]) -> f64 {
    match precision {
        Precision::F32 => math::sum_of_squares(values),
        Precision::F16 => values.iter().fold(0.0, |sum, &v| {
            let stored = precision
                .round(v)
                .to_f64()
                .expect("a float converts to f64");
            sum + stored * stored
        }),
    }
}

/// The rows of a row-major matrix as slices.
pub(super) fn rows<'a, F>(matrix: ArrayView2<'a, F>) -> impl Iterator<Item = &'a [F]> {
    matrix.into_outer_iter().map(|row| {
        row.to_slice()
            .expect("rows of a row-major matrix are contiguous")
    })
}

/// The rows of a row-major matrix as mutable slices.
pub(super) fn rows_mut<F>(matrix: ArrayViewMut2<'_, F>) -> impl Iterator<Item = &'_ mut [F]> {
    matrix.into_outer_iter_mut().map(|row| {
        row.into_slice()
            .expect("rows of a row-major matrix are contiguous")
    })
}

/// Steps stacked as rows: `[T, B, W]` to `[T*B, W]`, row `t * B + b` (time-major, as the GPU
/// buffers). Borrows when the layout allows, as it does for every array the engine makes.
pub(super) fn flatten_steps<F: Float>(steps: ArrayView3<'_, F>) -> CowArray<'_, F, Ix2> {
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
