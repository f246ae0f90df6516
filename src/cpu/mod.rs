//! The CPU reference: forward pass and backpropagation through time on ndarray, generic over
//! f32 (to compare with the GPU) and f64 (gradient checks). It runs the same algorithm as the
//! WGSL kernels: the input projection of all steps as one matrix product, the recurrent product
//! per step, and the weight gradients as one product each over all `T * B` rows.
//!
//! `forward` and `backward` orchestrate; the cells live in `rnn`, `lstm` and `gru`, what they
//! read and return in `cell`, what their time loops share in `steps`, the head and the losses in
//! `readout`, the reversal, joins and dropout of stacked and bidirectional layers in `stack`,
//! the matrix products in `matmul` and `packed`, the threads in `parallel`, the scalar functions
//! in `math` and the allocator's settings in `heap`.
//!
//! Speed: sequences do not interact, so each thread runs its own rows of the batch through the
//! whole time loop (no synchronisation per step), and the products over all `T * B` rows split
//! their output into blocks over the threads (`RNN_WGPU_CPU_THREADS` sets their number). The
//! time loops allocate nothing. In f32 the gates' sigmoid and tanh are vectorized polynomials
//! (`math`), within a few ulp of the standard library, which f64 uses.
//!
//! Half precision (`forward_in` and `backward_scaled` under `Precision::F16`): the arithmetic
//! stays in F, and every tensor the GPU engine stores as f16 is rounded to f16 where it is
//! written, before anything reads it, so the two engines agree in that mode as in f32.

mod cell;
pub mod gru;
mod heap;
pub mod lstm;
mod math;
pub use math::{isa, Isa, ISA_VAR};
pub(crate) mod matmul;
mod packed;
pub mod parallel;
mod pool;
pub mod readout;
pub mod rnn;
pub mod stack;
mod steps;

pub use cell::{CellGrads, CellRun, Inputs};
pub use heap::keep_freed_memory;

use crate::config::{Cell, Loss, ModelConfig, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::float::Float;
use crate::params::{CellParams, Params};
use crate::precision::Precision;
use ndarray::{s, Array, Array1, Array2, Array3, ArrayRef2, ArrayView2, Axis, CowArray, Dimension};
use std::borrow::Cow;

/// Everything the forward pass keeps for backward, and what it computed.
///
/// `L` is the number of layers, `D` of directions (2 when bidirectional), `rows` the number of
/// scored rows: `B` under `Readout::Last`, `T*B` (row `t*B + b`) under `Readout::All`.
#[derive(Clone, Debug)]
pub struct Forward<F> {
    /// Every cell's run, `L*D` of them in `Params::cells`' order (layer by layer, forward
    /// direction first).
    pub cells: Vec<CellRun<F>>,
    /// The inputs of layers 1..L, `L-1` of them, each `[T, B, D*H]`: the layer below's joined
    /// outputs after dropout (and, under F16, rounded as the GPU stores them).
    pub layer_inputs: Vec<Array3<F>>,
    /// For each of `layer_inputs`, the dropout factors it was multiplied by (0 or 1/(1-p),
    /// `[T, B, D*H]`); `None` where dropout did not run (evaluation, or p = 0).
    pub dropout: Vec<Option<Array3<F>>>,
    /// What the head read, `[rows, D*H]`: each sequence's final states under
    /// `Readout::Last`, the last layer's outputs at every step under `Readout::All`.
    pub head_input: Array2<F>,
    /// The head's outputs `[rows, O]`: the predictions under MSE, the logits under
    /// cross-entropy.
    pub outputs: Array2<F>,
    /// The loss, a mean over the scored entries that count (padding rows do not).
    pub loss: F,
    /// The storage precision the pass ran in; `backward` mirrors it.
    pub precision: Precision,
}

impl<F: Float> Forward<F> {
    /// Every cell's final state h_n (and c_n for the LSTM), `[L*D*B, H]` as `Batch::h0` lays
    /// initial states out: the states a next chunk of the sequences would start from. A
    /// reverse cell's is its state after reading step 0, as PyTorch's h_n.
    pub fn final_states(&self) -> (Array2<F>, Option<Array2<F>>) {
        fn last<F>(a: &Array3<F>) -> ArrayView2<'_, F> {
            a.index_axis(Axis(0), a.len_of(Axis(0)) - 1)
        }
        let stack = |blocks: Vec<ArrayView2<F>>| {
            ndarray::concatenate(Axis(0), &blocks).expect("every cell's state is [B, H]")
        };
        let h = stack(self.cells.iter().map(|c| last(&c.hs)).collect());
        let c = self.cells[0].cs.is_some().then(|| {
            stack(
                self.cells
                    .iter()
                    .map(|c| last(c.cs.as_ref().expect("every LSTM cell keeps c")))
                    .collect(),
            )
        });
        (h, c)
    }
}

/// The gradients `backward` returns, unscaled, for the loss `Forward::loss`.
#[derive(Clone, Debug)]
pub struct Backward<F> {
    /// dLoss/dParam for every parameter, as a `Params` of the same shapes and names.
    pub grads: Params<F>,
    /// dLoss/dh0, `[L*D*B, H]` as `Batch::h0` lays initial states out (each cell's `[B, H]`
    /// block in turn); returned also when the batch had no h0 (its zeros).
    pub dh0: Array2<F>,
    /// dLoss/dc0 likewise for the LSTM; `None` for the RNN and the GRU.
    pub dc0: Option<Array2<F>>,
    /// dLoss/dx, `[T, B, I]`.
    pub dx: Array3<F>,
    /// The per-step gradient norms, `[L*D * T]`, cell by cell in `Params::cells`' order:
    /// `||dE/dh_t||` for t = 1..T of each cell's processing order, the 2-norm over the whole
    /// `[B, H]` matrix of the total gradient arriving at h_t (from the head or the layer above,
    /// plus from step t+1).
    pub grad_norm_h: Vec<F>,
    /// `||dE/dc_t||` likewise for the LSTM's cell states; `None` for the RNN and the GRU.
    pub grad_norm_c: Option<Vec<F>>,
}

/// The CPU engine as reports name it: the reference, its arithmetic and storage, and the
/// vector path it runs (`math::isa`), e.g. "cpu (reference, f32, avx2)".
pub fn engine_name(precision: Precision) -> String {
    let storage = match precision {
        Precision::F32 => "f32".to_string(),
        _ => format!("f32 rounded to {} storage", precision.name()),
    };
    format!("cpu (reference, {storage}, {})", math::isa().name())
}

/// Runs the model on `batch` in evaluation mode (no dropout): `forward_with(.., None)`.
pub fn forward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
) -> Result<Forward<F>, Error> {
    forward_with(config, params, batch, None)
}

/// Runs the model on `batch`: every layer's cells over all T steps, the head on the scored outputs
/// of the last layer, and the loss. Shapes: params as `Params` documents them for `config`, batch.x
/// `[T, B, I]`, h0/c0 `[L*D*B, H]` (each cell's `[B, H]` in turn; zeros when absent), targets
/// `[rows, O]` values or `[rows]` classes. `dropout_seed` (training) draws the dropout masks
/// between layers (`stack::dropout_factors`); None is evaluation. Keeps every cell's states and
/// gates for `backward`. Stores every tensor at full precision: `forward_in(.., Precision::F32)`.
pub fn forward_with<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    dropout_seed: Option<u32>,
) -> Result<Forward<F>, Error> {
    forward_in(config, params, batch, dropout_seed, Precision::F32)
}

/// `forward_with`, storing tensors in `precision`: under F16 it rounds to f16 wherever the GPU
/// engine stores f16 (`precision`'s module), so that the two engines agree in that mode too.
/// Rounded here: x, every cell's W_ih and W_hh (a working copy; the biases and the head stay
/// unrounded), and the layers' joined outputs after dropout; in the cells, the gates after each
/// product and after activation, and every state.
pub fn forward_in<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    dropout_seed: Option<u32>,
    precision: Precision,
) -> Result<Forward<F>, Error> {
    config.validate()?;
    params.check(config)?;
    batch.check(config)?;
    let (seq_len, batch_size, h) = (batch.seq_len(), batch.batch_size(), config.hidden_size);
    let directions = config.directions();
    let lengths = batch.lengths.as_deref();
    let zeros = Array2::zeros((batch_size, h));
    let params = working_weights(params, precision);
    let layer0_input = stored(&batch.x, precision);
    // Cell k's [B, H] block of an initial state [L*D*B, H].
    let initial = |state: &Option<Array2<F>>, k: usize| match state {
        Some(s) => s
            .slice(s![k * batch_size..(k + 1) * batch_size, ..])
            .to_owned(),
        None => zeros.clone(),
    };
    let mut cells = Vec::with_capacity(config.cells());
    let mut layer_inputs: Vec<Array3<F>> = Vec::new();
    let mut dropout = Vec::new();
    for layer in 0..config.layers {
        let input = match layer {
            0 => layer0_input.view(),
            _ => layer_inputs[layer - 1].view(),
        };
        for direction in 0..directions {
            let k = layer * directions + direction;
            let (h0, c0) = (initial(&batch.h0, k), initial(&batch.c0, k));
            let reversed;
            let x = match direction {
                0 => &input,
                _ => {
                    reversed = stack::reverse_steps(&input, lengths);
                    &reversed.view()
                }
            };
            let cell = params.cell(layer, direction, directions);
            let inputs = Inputs { x, lengths };
            cells.push(run_cell(config, cell, inputs, &h0, &c0, precision));
        }
        if layer + 1 < config.layers {
            let mut next = stack::layer_output(&layer_states(&cells, layer, directions), lengths);
            let factors = dropout_seed
                .filter(|_| config.dropout > 0.0)
                .map(|seed| stack::dropout_factors(config.dropout, seed, layer + 1, next.dim()));
            if let Some(factors) = &factors {
                next.zip_mut_with(factors, |v, &f| *v = *v * f);
            }
            precision.round_array(&mut next);
            layer_inputs.push(next);
            dropout.push(factors);
        }
    }
    let last = layer_states(&cells, config.layers - 1, directions);
    let scored = head_input(config.readout, &last, lengths);
    let outputs = readout::readout_forward(&params.head_weight, &params.head_bias, &scored);
    let valid = valid_rows(config.readout, batch);
    let (loss, _) = score(config.loss, &outputs, &batch.targets, valid.as_deref());
    debug_assert_eq!(scored.nrows(), config.scored_rows(seq_len, batch_size));
    Ok(Forward {
        cells,
        layer_inputs,
        dropout,
        head_input: scored,
        outputs,
        loss,
        precision,
    })
}

/// One cell over the sequence: the cell type's forward pass. x `[T, B, W]`, h0 and c0 `[B, H]`.
fn run_cell<F: Float>(
    config: &ModelConfig,
    p: &CellParams<F>,
    inputs: Inputs<'_, F>,
    h0: &Array2<F>,
    c0: &Array2<F>,
    precision: Precision,
) -> CellRun<F> {
    match config.cell {
        Cell::Rnn => rnn::rnn_forward(config.activation, p, inputs, h0, precision),
        Cell::Lstm => lstm::lstm_forward(p, inputs, h0, c0, precision),
        Cell::Gru => gru::gru_forward(p, inputs, h0, precision),
    }
}

/// BPTT through one cell's `run`: dh_from_head `[S, B, H]` is the gradient arriving from outside
/// the recurrence at its last S states (the head's, or the layer above's with S = T).
fn cell_backward<F: Float>(
    config: &ModelConfig,
    p: &CellParams<F>,
    inputs: Inputs<'_, F>,
    run: &CellRun<F>,
    dh_from_head: &Array3<F>,
    precision: Precision,
) -> CellGrads<F> {
    match config.cell {
        Cell::Rnn => rnn::rnn_backward(config.activation, p, inputs, run, dh_from_head, precision),
        Cell::Lstm => lstm::lstm_backward(p, inputs, run, dh_from_head, precision),
        Cell::Gru => gru::gru_backward(p, inputs, run, dh_from_head, precision),
    }
}

/// Backpropagation through time for the `forward` pass `fwd` of the same config, params and
/// batch (shapes as in `forward`; panics if `fwd` does not match them). Returns the gradient of
/// the loss w.r.t. every parameter, h0, c0 and x, and the per-step gradient norms. Layers are
/// visited last to first; a layer's input gradient, through the dropout mask, is the gradient
/// arriving at the outputs of the layer below. `backward_scaled(.., 1)`.
pub fn backward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    fwd: &Forward<F>,
) -> Backward<F> {
    backward_scaled(config, params, batch, fwd, F::one())
}

/// `backward` with dE/doutputs multiplied by `loss_scale` S (a power of two, so that scaling
/// is exact) before it propagates, so that gradients too small for f16 survive its storage,
/// and what it returns divided by S again: the parameter gradients, dh0, dc0, dx and the norms.
/// In `fwd.precision` F16 it rounds where the GPU stores f16 (the weights' working copy, x,
/// the gradients arriving at each cell, dE/dh_t and dE/dc_t for their norms, dgates, dx); the
/// parameter gradients, being sums over rounded operands, stay unrounded.
pub fn backward_scaled<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    fwd: &Forward<F>,
    loss_scale: F,
) -> Backward<F> {
    let head = head_backward(config, params, batch, fwd, loss_scale);
    let working = working_weights(params, fwd.precision);
    let (cell_grads, dx) = layers_backward(config, &working, batch, fwd, head.dh_outside);
    let mut backward = gather_grads(config, cell_grads, head.dweight, head.dbias, dx);
    unscale(&mut backward, loss_scale);
    backward
}

/// The head's backward pass: the head's gradients and the share of dE/dh it passes to each
/// cell of the last layer.
struct HeadGrads<F> {
    /// `[O, D*H]` and `[O]`.
    dweight: Array2<F>,
    dbias: Array1<F>,
    /// `[S, B, H]` per direction: at each cell's last state (S = 1) or at every output (S = T),
    /// rounded to the storage precision.
    dh_outside: Vec<Array3<F>>,
}

/// `HeadGrads` from dE/doutputs times `loss_scale`, through the head's f32 weights.
fn head_backward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    fwd: &Forward<F>,
    loss_scale: F,
) -> HeadGrads<F> {
    let (seq_len, batch_size) = (batch.seq_len(), batch.batch_size());
    let (hidden, directions) = (config.hidden_size, config.directions());
    // The losses are cheap next to the recurrence, so doutputs is recomputed rather than kept.
    let valid = valid_rows(config.readout, batch);
    let (_, mut doutputs) = score(config.loss, &fwd.outputs, &batch.targets, valid.as_deref());
    if loss_scale != F::one() {
        doutputs.mapv_inplace(|d| d * loss_scale);
    }
    let (dweight, dbias, dscored) =
        readout::readout_backward(&params.head_weight, &fwd.head_input, &doutputs);
    // The head's share of dE/dh: at each cell's last state, or at every output.
    let mut dh_outside: Vec<Array3<F>> = match config.readout {
        Readout::Last => (0..directions)
            .map(|d| {
                dscored
                    .slice(s![.., d * hidden..(d + 1) * hidden])
                    .to_owned()
                    .insert_axis(Axis(0))
            })
            .collect(),
        Readout::All => {
            let dy = dscored
                .into_shape_with_order((seq_len, batch_size, directions * hidden))
                .expect("dscored is [T*B, D*H], time-major");
            stack::split_output_grad(&dy, directions, batch.lengths.as_deref())
        }
    };
    dh_outside
        .iter_mut()
        .for_each(|d| fwd.precision.round_array(d));
    HeadGrads {
        dweight,
        dbias,
        dh_outside,
    }
}

/// The layers' backward passes, last to first, from the head's share of dE/dh of the last
/// layer's cells (`HeadGrads::dh_outside`). `params` holds the weights the forward pass
/// computed with (`working_weights`). Returns every cell's gradients, in `Params::cells`'
/// order, and dx `[T, B, I]`.
fn layers_backward<F: Float>(
    config: &ModelConfig,
    params: &Params<F>,
    batch: &Batch<F>,
    fwd: &Forward<F>,
    mut dh_outside: Vec<Array3<F>>,
) -> (Vec<CellGrads<F>>, Array3<F>) {
    let (directions, precision) = (config.directions(), fwd.precision);
    let lengths = batch.lengths.as_deref();
    let layer0_input = stored(&batch.x, precision);
    let mut cell_grads: Vec<Option<CellGrads<F>>> = vec![None; config.cells()];
    let mut dx = None;
    for layer in (0..config.layers).rev() {
        let input = match layer {
            0 => layer0_input.view(),
            _ => fwd.layer_inputs[layer - 1].view(),
        };
        let mut dinput = Array3::<F>::zeros(input.raw_dim());
        for (direction, dh_from_outside) in dh_outside.iter().enumerate() {
            let k = layer * directions + direction;
            let reversed;
            let x = match direction {
                0 => &input,
                _ => {
                    reversed = stack::reverse_steps(&input, lengths);
                    &reversed.view()
                }
            };
            let cell = params.cell(layer, direction, directions);
            let inputs = Inputs { x, lengths };
            let run = &fwd.cells[k];
            let grads = cell_backward(config, cell, inputs, run, dh_from_outside, precision);
            match direction {
                0 => dinput.zip_mut_with(&grads.dx, |d, &g| *d = *d + g),
                _ => dinput.zip_mut_with(&stack::reverse_steps(&grads.dx, lengths), |d, &g| {
                    *d = *d + g
                }),
            }
            cell_grads[k] = Some(grads);
        }
        if layer == 0 {
            dx = Some(dinput);
        } else {
            if let Some(factors) = &fwd.dropout[layer - 1] {
                dinput.zip_mut_with(factors, |d, &f| *d = *d * f);
            }
            dh_outside = stack::split_output_grad(&dinput, directions, lengths);
            dh_outside.iter_mut().for_each(|d| precision.round_array(d));
        }
    }
    let cell_grads = cell_grads.into_iter().map(Option::unwrap).collect();
    (cell_grads, dx.expect("layer 0 ran"))
}

/// `Backward` from every cell's gradients (`Params::cells`' order), the head's and dx.
fn gather_grads<F: Float>(
    config: &ModelConfig,
    cell_grads: Vec<CellGrads<F>>,
    dhead_weight: Array2<F>,
    dhead_bias: Array1<F>,
    dx: Array3<F>,
) -> Backward<F> {
    let grad_norm_h = cell_grads
        .iter()
        .flat_map(|g| g.grad_norm_h.clone())
        .collect();
    let grad_norm_c = (config.cell == Cell::Lstm).then(|| {
        cell_grads
            .iter()
            .flat_map(|g| g.grad_norm_c.clone().expect("an LSTM has cell-state norms"))
            .collect()
    });
    // Every cell's [B, H] block in turn, as h0 and c0.
    let stack = |blocks: Vec<ArrayView2<F>>| {
        ndarray::concatenate(Axis(0), &blocks).expect("every cell's state is [B, H]")
    };
    let dh0 = stack(cell_grads.iter().map(|g| g.dh0.view()).collect());
    let dc0 = (config.cell == Cell::Lstm).then(|| {
        stack(
            cell_grads
                .iter()
                .map(|g| g.dc0.as_ref().expect("an LSTM has dc0").view())
                .collect(),
        )
    });
    Backward {
        grads: Params {
            cells: cell_grads
                .into_iter()
                .map(|g| CellParams {
                    weight_ih: g.dweight_ih,
                    weight_hh: g.dweight_hh,
                    bias_hh: g.dbias_hh.unwrap_or_else(|| g.dbias.clone()),
                    bias_ih: g.dbias,
                })
                .collect(),
            head_weight: dhead_weight,
            head_bias: dhead_bias,
        },
        dh0,
        dc0,
        dx,
        grad_norm_h,
        grad_norm_c,
    }
}

/// Divides what `backward_scaled` returns by the loss scale its gradients were multiplied by.
fn unscale<F: Float>(backward: &mut Backward<F>, loss_scale: F) {
    if loss_scale == F::one() {
        return;
    }
    let unscale = |v: &mut F| *v = *v / loss_scale;
    backward
        .grads
        .for_each_mut(|_, values| values.iter_mut().for_each(unscale));
    backward.dh0.map_inplace(unscale);
    backward.dx.map_inplace(unscale);
    if let Some(dc0) = &mut backward.dc0 {
        dc0.map_inplace(unscale);
    }
    backward.grad_norm_h.iter_mut().for_each(unscale);
    if let Some(norms) = &mut backward.grad_norm_c {
        norms.iter_mut().for_each(unscale);
    }
}

/// The states hs of `layer`'s cells, forward first.
fn layer_states<F>(cells: &[CellRun<F>], layer: usize, directions: usize) -> Vec<&Array3<F>> {
    cells[layer * directions..(layer + 1) * directions]
        .iter()
        .map(|c| &c.hs)
        .collect()
}

/// What the head reads, `[rows, D*H]`, from the last layer's states: each cell's final state
/// (`[B, D*H]`) for `Readout::Last`, the layer's outputs at every step, time-major (`[T*B, D*H]`),
/// for `Readout::All`.
fn head_input<F: Float>(
    readout: Readout,
    last_layer: &[&Array3<F>],
    lengths: Option<&[usize]>,
) -> Array2<F> {
    match readout {
        Readout::Last => stack::final_states(last_layer),
        Readout::All => {
            let out = stack::layer_output(last_layer, lengths);
            let (t, b, w) = out.dim();
            out.into_shape_with_order((t * b, w))
                .expect("a fresh array reshapes")
        }
    }
}

/// Which scored rows count, when some do not: under `Readout::All`, the rows (time-major,
/// row t*B + b) of steps past their sequence's length.
fn valid_rows<F: Float>(readout: Readout, batch: &Batch<F>) -> Option<Vec<bool>> {
    batch.lengths.as_ref()?;
    let batch_size = batch.batch_size();
    (readout == Readout::All).then(|| {
        (0..batch.seq_len())
            .flat_map(|t| (0..batch_size).map(move |b| batch.is_step_valid(t, b)))
            .collect()
    })
}

/// The loss of outputs `[rows, O]` against targets, and its gradient w.r.t. the outputs, over
/// the rows `valid` `[rows]` marks (all when None). `batch.check` has matched the target kind to
/// the loss before this runs.
fn score<F: Float>(
    loss: Loss,
    outputs: &ArrayRef2<F>,
    targets: &Targets<F>,
    valid: Option<&[bool]>,
) -> (F, Array2<F>) {
    match (loss, targets) {
        (Loss::Mse, Targets::Values(values)) => readout::mse_loss(outputs, values, valid),
        (Loss::CrossEntropy, Targets::Classes(classes)) => {
            readout::cross_entropy_loss(outputs, classes, valid)
        }
        _ => panic!("targets do not match the loss {loss}: run batch.check first"),
    }
}

/// The parameters as the cells compute with them: under F16 a copy whose cells' W_ih and W_hh
/// are rounded to f16, as the GPU's working copy of the f32 master weights (the gradients are
/// taken as if the rounding were the identity); the biases and the head stay f32 there.
/// Borrowed under F32.
fn working_weights<F: Float>(params: &Params<F>, precision: Precision) -> Cow<'_, Params<F>> {
    if precision == Precision::F32 {
        return Cow::Borrowed(params);
    }
    let mut working = params.clone();
    for cell in &mut working.cells {
        precision.round_array(&mut cell.weight_ih);
        precision.round_array(&mut cell.weight_hh);
    }
    Cow::Owned(working)
}

/// `values` as stored in `precision`: a rounded copy under F16, borrowed under F32.
fn stored<F: Float, D: Dimension>(
    values: &Array<F, D>,
    precision: Precision,
) -> CowArray<'_, F, D> {
    if precision == Precision::F32 {
        return CowArray::from(values.view());
    }
    let mut rounded = values.clone();
    precision.round_array(&mut rounded);
    CowArray::from(rounded)
}

#[cfg(test)]
mod tests {
    use super::steps::batch_parts;
    use super::*;
    use crate::config::Activation;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Sequences do not interact, so the batch run at once (split over the threads, at a size
    /// that pays for them) must give each sequence what it gets alone (on one thread), and
    /// gradients and squared norms that are the sums over the sequences. f64, to 1e-12.
    #[test]
    fn a_split_batch_matches_its_sequences_run_alone() {
        let close = |a: &[f64], b: &[f64], what: &str| {
            let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            let error = a
                .iter()
                .zip(b)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            assert_eq!(a.len(), b.len(), "{what}");
            assert!(error <= 1e-12 * scale, "{what}: {error} against {scale}");
        };
        for (cell, activation, readout) in [
            (Cell::Lstm, Activation::Tanh, Readout::Last),
            (Cell::Lstm, Activation::Tanh, Readout::All),
            (Cell::Rnn, Activation::Sigmoid, Readout::All),
            (Cell::Rnn, Activation::Relu, Readout::Last),
            (Cell::Gru, Activation::Tanh, Readout::All),
            (Cell::Gru, Activation::Tanh, Readout::Last),
        ] {
            let config = ModelConfig {
                cell,
                activation,
                input_size: 3,
                hidden_size: 72,
                output_size: 2,
                readout,
                loss: Loss::Mse,
                layers: 1,
                bidirectional: false,
                dropout: 0.0,
            };
            let (seq_len, batch_size) = (60, 7);
            let mut rng = StdRng::seed_from_u64(3);
            let params = Params::<f64>::init_uniform(&config, &mut rng);
            let batch = Batch::<f64>::random(&config, seq_len, batch_size, &mut rng);
            assert!(
                batch_parts(seq_len, batch_size, 8 * 72 * 72) < batch_size
                    || parallel::threads() == 1
            );
            let fwd = forward(&config, &params, &batch).unwrap();
            let bwd = backward(&config, &params, &batch, &fwd);
            let mut grads = Params::zeros(&config);
            let mut squares_h = vec![0.0; seq_len];
            for b in 0..batch_size {
                let one = |a: &Array3<f64>| a.slice(s![.., b..b + 1, ..]).to_owned();
                let row = |a: &Option<Array2<f64>>| {
                    a.as_ref().map(|a| a.slice(s![b..b + 1, ..]).to_owned())
                };
                let Targets::Values(targets) = &batch.targets else {
                    unreachable!()
                };
                let rows: Vec<usize> = match readout {
                    Readout::Last => vec![b],
                    Readout::All => (0..seq_len).map(|t| t * batch_size + b).collect(),
                };
                let alone = Batch {
                    x: one(&batch.x),
                    h0: row(&batch.h0),
                    c0: row(&batch.c0),
                    targets: Targets::Values(targets.select(Axis(0), &rows)),
                    lengths: None,
                };
                let fwd_b = forward(&config, &params, &alone).unwrap();
                let bwd_b = backward(&config, &params, &alone, &fwd_b);
                // The loss is a mean over the scored entries: alone, a sequence's gradients are
                // batch_size times larger.
                let share = 1.0 / batch_size as f64;
                let scaled = |v: &[f64]| v.iter().map(|g| share * g).collect::<Vec<_>>();
                let column = |a: &Array3<f64>, b: usize| {
                    a.slice(s![.., b, ..]).iter().copied().collect::<Vec<_>>()
                };
                close(
                    &column(&fwd_b.cells[0].hs, 0),
                    &column(&fwd.cells[0].hs, b),
                    "hs",
                );
                close(
                    &column(&fwd_b.cells[0].gates, 0),
                    &column(&fwd.cells[0].gates, b),
                    "gates",
                );
                close(&scaled(&column(&bwd_b.dx, 0)), &column(&bwd.dx, b), "dx");
                let dh0 = bwd_b.dh0.as_slice().unwrap();
                close(&scaled(dh0), bwd.dh0.row(b).as_slice().unwrap(), "dh0");
                if let (Some(mine), Some(all)) = (&bwd_b.dc0, &bwd.dc0) {
                    let mine = mine.as_slice().unwrap();
                    close(&scaled(mine), all.row(b).as_slice().unwrap(), "dc0");
                }
                grads.for_each_mut(|name, sum| {
                    let mine = bwd_b
                        .grads
                        .tensors()
                        .into_iter()
                        .find(|(n, _)| *n == name)
                        .unwrap()
                        .1;
                    sum.iter_mut().zip(mine).for_each(|(s, g)| *s += share * g);
                });
                for (total, norm) in squares_h.iter_mut().zip(&bwd_b.grad_norm_h) {
                    *total += (share * norm).powi(2);
                }
            }
            for ((name, sum), (_, all)) in grads.tensors().into_iter().zip(bwd.grads.tensors()) {
                close(sum, all, &name);
            }
            let squares: Vec<f64> = bwd.grad_norm_h.iter().map(|n| n * n).collect();
            close(&squares_h, &squares, "grad_norm_h");
        }
    }
}
