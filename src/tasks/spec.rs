//! What the data decides about a model (`DataSpec`), which every task and dataset states. Apart
//! from `tasks`' mod.rs, which re-exports the tasks, so that the tasks do not import from it.

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};

/// The parts of a `ModelConfig` that the data decides: `I`, `O`, readout and loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSpec {
    /// `I`: features per time step (for one-hot tasks, the number of input classes).
    pub input_size: usize,
    /// `O`: values per scored row under MSE, or the number of classes under cross-entropy.
    pub output_size: usize,
    /// Which steps are scored: the last one (`Readout::Last`) or every one (`Readout::All`).
    pub readout: Readout,
    /// The loss the targets call for: MSE for values, cross-entropy for class indices.
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
