//! What a cell (`rnn`, `lstm`, `gru`) reads and returns: the input sequences, its run over
//! them and its gradients. A module of its own, below both, so that the engine in `cpu`'s
//! mod.rs, which calls the cells, and the cells, which build these, do not import each other.

use crate::data::Batch;
use crate::float::Float;
use ndarray::{Array1, Array2, Array3, ArrayRef3};

/// The input sequences of a batch: x `[T, B, I]` and, when they differ, each one's length
/// `[B]` (the steps past it are padding).
#[derive(Clone, Copy)]
pub struct Inputs<'a, F> {
    /// The inputs `[T, B, I]`, time-major, in the cell's own processing order (a reverse
    /// cell's are reversed within each sequence's length, `stack::reverse_steps`).
    pub x: &'a ArrayRef3<F>,
    /// Each sequence's length in `1..=T`, `[B]`; `None` when every sequence runs all `T`
    /// steps. A cell holds a sequence's state over the steps past its length.
    pub lengths: Option<&'a [usize]>,
}

impl<'a, F: Float> Inputs<'a, F> {
    /// The inputs of the first layer's forward cell: `batch.x` and `batch.lengths`, borrowed.
    pub fn of(batch: &'a Batch<F>) -> Self {
        Inputs {
            x: &batch.x,
            lengths: batch.lengths.as_deref(),
        }
    }
}

/// One cell's run over the sequence, in its own processing order (a reverse cell's step s
/// reads the natural step `stack::reversed_step`), as its backward pass reads it again.
#[derive(Clone, Debug)]
pub struct CellRun<F> {
    /// The hidden states `[T+1, B, H]`: row 0 is the initial state h0, row t the state after
    /// step t.
    pub hs: Array3<F>,
    /// The LSTM's cell states `[T+1, B, H]`, row 0 being c0; `None` for the RNN and the GRU.
    pub cs: Option<Array3<F>>,
    /// What each step keeps for backward, `[T, B, G*H]`: the LSTM's gates i, f, g, o after
    /// their nonlinearities (`G` = 4); the RNN's h_t itself (`G` = 1), from which backward takes
    /// the activation's derivative; the GRU's r, z, n and the recurrent term `W_hn h + b_hn`,
    /// `[T, B, 4H]` although its `G` is 3.
    pub gates: Array3<F>,
}

/// What a cell's backward pass returns: the cell's share of `Backward`, each gradient the
/// shape of what it differentiates (`G*H` rows: `G` = 1, 4 or 3 for the RNN, LSTM and GRU).
#[derive(Clone, Debug)]
pub struct CellGrads<F> {
    /// dLoss/dW_ih, `[G*H, I]` (`I` being the cell's input width: the model's input size in
    /// layer 0, `D*H` above).
    pub dweight_ih: Array2<F>,
    /// dLoss/dW_hh, `[G*H, H]`.
    pub dweight_hh: Array2<F>,
    /// dLoss/db_ih, `[G*H]`; also dLoss/db_hh where both biases enter the pre-activation
    /// unscaled, as for the RNN and the LSTM.
    pub dbias: Array1<F>,
    /// dLoss/db_hh, `[G*H]`, where it differs from `dbias`: the GRU's, whose n block is
    /// multiplied by r. `None` for the RNN and the LSTM.
    pub dbias_hh: Option<Array1<F>>,
    /// dLoss/dx, `[T, B, I]`, in the cell's processing order.
    pub dx: Array3<F>,
    /// dLoss/dh0, `[B, H]`.
    pub dh0: Array2<F>,
    /// dLoss/dc0, `[B, H]`, for the LSTM; `None` otherwise.
    pub dc0: Option<Array2<F>>,
    /// `||dE/dh_t||` for t = 1..T in processing order, `[T]`: the 2-norm over the `[B, H]`
    /// matrix of the total gradient arriving at h_t.
    pub grad_norm_h: Vec<F>,
    /// `||dE/dc_t||` likewise, `[T]`, for the LSTM; `None` otherwise.
    pub grad_norm_c: Option<Vec<F>>,
}
