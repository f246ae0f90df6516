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
mod spec;
mod targets;
mod task;
pub mod text;

pub use adding::Adding;
pub use copy::CopyMemory;
pub use csv::{CsvFormat, CsvTargets};
pub use dataset::{Batches, Dataset};
pub use spec::DataSpec;
pub use targets::SampleTargets;
pub use task::Task;
pub use text::{bits_per_char, Text, Vocabulary};
