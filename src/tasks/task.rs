//! The trait of the synthetic tasks (`Task`), which `adding`, `copy` and `text` implement. Apart
//! from `tasks`' mod.rs, which re-exports the tasks, so that the tasks do not import from it.

use super::spec::DataSpec;
use crate::data::Batch;
use rand::RngCore;

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
