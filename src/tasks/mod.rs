//! Training data: synthetic benchmark tasks that make fresh batches on demand, and datasets
//! loaded from `.npy` or CSV files. Every batch is the crate's time-major `Batch<f32>`:
//! x `[T, B, I]`, targets `[rows, O]` values or `[rows]` classes, with `rows = B` for
//! `Readout::Last` and `rows = T * B` (row `t * B + b`) for `Readout::All`.
//!
//! - [`adding::Adding`]: the adding problem (long-range memory, MSE on the last step).
//! - [`copy::CopyMemory`]: the copy-memory task (recall 10 symbols after a delay, CE per step).
//! - [`text::Text`]: a character (byte) level language model on any file.
//! - [`dataset::Dataset`]: your own sequences from `.npy` or CSV files.

pub mod adding;
pub mod copy;
mod csv;
pub mod dataset;
pub mod npy;
pub mod text;

pub use adding::Adding;
pub use copy::CopyMemory;
pub use dataset::{Batches, CsvFormat, CsvTargets, Dataset, SampleTargets};
pub use text::{bits_per_char, Text, Vocabulary};

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::data::Batch;
use rand::RngCore;

/// The parts of a `ModelConfig` that the data decides: `I`, `O`, readout and loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSpec {
    pub input_size: usize,
    pub output_size: usize,
    pub readout: Readout,
    pub loss: Loss,
}

impl DataSpec {
    /// A full model for this data; the caller picks the cell and its size.
    pub fn model_config(
        self,
        cell: Cell,
        activation: Activation,
        hidden_size: usize,
    ) -> ModelConfig {
        ModelConfig {
            cell,
            activation,
            input_size: self.input_size,
            hidden_size,
            output_size: self.output_size,
            readout: self.readout,
            loss: self.loss,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        }
    }
}

/// A synthetic task: an endless supply of random batches of `seq_len()` steps.
///
/// `batch` draws everything from `rng`, so the same seed gives the same batches. The rng is a
/// `dyn RngCore` so that a command can hold any task as `Box<dyn Task>`.
pub trait Task {
    /// Short name for logs, e.g. `"adding"`.
    fn name(&self) -> &'static str;
    /// `I`, `O`, readout and loss that a model for this task needs.
    fn spec(&self) -> DataSpec;
    /// `T`: time steps in every sequence.
    fn seq_len(&self) -> usize;
    /// A fresh batch: x `[T, B, I]`, targets as `spec()` says; no initial state.
    fn batch(&self, batch_size: usize, rng: &mut dyn RngCore) -> Batch<f32>;
    /// The expected loss of a trivial predictor, in the task's own loss (nats for CE).
    /// A model that does not beat it has learned nothing.
    fn baseline(&self) -> f32;
    /// One line saying which trivial predictor `baseline()` scores.
    fn baseline_description(&self) -> String;
    /// For truncated BPTT over one long stream: chunk `index` (0, 1, ...) of `steps` steps of
    /// `batch_size` parallel streams, and whether it starts a new pass over the data (the
    /// carried state must then be reset). `None` for tasks of independent sequences, whose
    /// batches the trainer cuts into chunks instead.
    fn stream_chunk(
        &self,
        _batch_size: usize,
        _steps: usize,
        _index: u64,
    ) -> Option<(Batch<f32>, bool)> {
        None
    }
}
