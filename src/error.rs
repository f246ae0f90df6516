use std::fmt;
use thiserror::Error;

/// Everything the library can refuse or fail at. Messages name the offending value and what
/// was expected, so the command line can print them as they are.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("shape mismatch: {what} has shape {got:?}, expected {expected:?}")]
    Shape {
        what: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("invalid value: {0}")]
    Value(String),
    #[error(
        "no GPU adapter found{detail}. wgpu needs a Vulkan, Metal or DX12 driver; on a headless \
         Linux machine install Mesa's software Vulkan driver: `apt-get install mesa-vulkan-drivers`"
    )]
    NoAdapter { detail: String },
    #[error(
        "{what} needs {needed} but the adapter '{adapter}' allows at most {limit} ({limit_name})"
    )]
    Limit {
        what: String,
        needed: u64,
        limit: u64,
        limit_name: &'static str,
        adapter: String,
    },
    #[error("{0}")]
    Io(String),
    #[error(
        "training diverged at step {step}: loss {loss}, gradient norm {grad_norm}; {}{}{}. \
         Try --clip (e.g. 1), a lower --lr, or a smaller --hh-scale",
        origin.as_ref().map_or(String::new(), |s| format!("{s}; ")),
        last_finite.map_or("no step was finite".to_string(), |(s, n)| format!("last finite gradient norm {n} at step {s}")),
        checkpoint.as_ref().map_or(String::new(), |p| format!("; the last good checkpoint {p} is kept"))
    )]
    Diverged {
        step: u64,
        loss: f32,
        grad_norm: f32,
        /// Where the first non-finite value of the step's forward pass came from, from the
        /// parameters before the step (a non-finite gradient skips the update).
        origin: Option<NonFinite>,
        last_finite: Option<(u64, f32)>,
        checkpoint: Option<String>,
    },
    #[error("GPU error: {0}")]
    Gpu(String),
    /// What every rank of a distributed run finds alike (different settings, replicas that
    /// drifted apart), so that rank 0 alone reports it.
    #[error("{0}")]
    Ranks(String),
}

/// The first non-finite value `non_finite::locate` found, in the order the forward pass meets
/// them.
///
/// Defined beside the error that carries it (`Error::Diverged`) rather than in `non_finite`,
/// which re-exports it: `locate` runs the CPU engine, which returns this module's `Error`.
#[derive(Clone, Debug, PartialEq)]
pub enum NonFinite {
    /// A parameter tensor (PyTorch's name) holds `value` at flat index `index`.
    Parameter {
        tensor: String,
        index: usize,
        value: f32,
    },
    /// The batch's `tensor` (x, h0, c0 or targets) holds `value` at `index`.
    Input {
        tensor: &'static str,
        index: Vec<usize>,
        value: f32,
    },
    /// The state of one cell first turns non-finite at natural time step `step` (1-based, of
    /// `steps`) of sequence `sequence`; `cell_state`: the LSTM's c rather than h.
    State {
        layer: usize,
        reverse: bool,
        cell_state: bool,
        step: usize,
        steps: usize,
        sequence: usize,
    },
    /// Every parameter, input and state is finite; the head's outputs or the loss are not.
    Outputs,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NonFinite::Parameter {
                tensor,
                index,
                value,
            } => write!(f, "parameter {tensor} holds {value} at flat index {index}"),
            NonFinite::Input {
                tensor,
                index,
                value,
            } => write!(f, "the batch's {tensor} holds {value} at {index:?}"),
            NonFinite::State {
                layer,
                reverse,
                cell_state,
                step,
                steps,
                sequence,
            } => write!(
                f,
                "the {} of layer {layer}{} first turns non-finite at time step {step} of {steps} \
                 (sequence {sequence} of the batch)",
                if *cell_state { "cell state c" } else { "hidden state h" },
                if *reverse { " (reverse direction)" } else { "" },
            ),
            NonFinite::Outputs => write!(
                f,
                "every parameter, input and state is finite: the head's outputs or the loss overflow"
            ),
        }
    }
}
