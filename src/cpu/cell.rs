//! What a cell (`rnn`, `lstm`, `gru`) reads and returns: the input sequences, its run over
//! them and its gradients. A module of its own, below both, so that the engine in `cpu`'s
//! mod.rs, which calls the cells, and the cells, which build these, do not import each other.

use crate::data::Batch;
use crate::float::Float;
use ndarray::{Array1, Array2, Array3, ArrayRef3};

/// The input sequences of a batch: x [T, B, I] and, when they differ, each one's length [B]
/// (the steps past it are padding).
#[derive(Clone, Copy)]
pub struct Inputs<'a, F> {
    pub x: &'a ArrayRef3<F>,
    pub lengths: Option<&'a [usize]>,
}

impl<'a, F: Float> Inputs<'a, F> {
    pub fn of(batch: &'a Batch<F>) -> Self {
        Inputs {
            x: &batch.x,
            lengths: batch.lengths.as_deref(),
        }
    }
}

/// One cell's run over the sequence, in its own processing order (a reverse cell's step s
/// reads the natural step `stack::reversed_step`): hs [T+1, B, H] with hs[0] = its initial
/// state; cs likewise for the LSTM (None otherwise); gates [T, B, G*H]: the LSTM's activated
/// gates (i, f, g, o after their nonlinearities), the RNN's h_t, the GRU's [T, B, 4H] r, z, n
/// and W_hn h + b_hn.
#[derive(Clone, Debug)]
pub struct CellRun<F> {
    pub hs: Array3<F>,
    pub cs: Option<Array3<F>>,
    pub gates: Array3<F>,
}

/// What the cells' backward passes return: the cell's share of `Backward`.
/// dweight_ih [G*H, I], dweight_hh [G*H, H], dbias [G*H] (the gradient of bias_ih, and of
/// bias_hh too where both enter the pre-activation unscaled; the GRU's differs and comes in
/// dbias_hh), dx [T, B, I], dh0 and dc0 [B, H], grad norms [T] (c only for the LSTM).
#[derive(Clone, Debug)]
pub struct CellGrads<F> {
    pub dweight_ih: Array2<F>,
    pub dweight_hh: Array2<F>,
    pub dbias: Array1<F>,
    pub dbias_hh: Option<Array1<F>>,
    pub dx: Array3<F>,
    pub dh0: Array2<F>,
    pub dc0: Option<Array2<F>>,
    pub grad_norm_h: Vec<F>,
    pub grad_norm_c: Option<Vec<F>>,
}
