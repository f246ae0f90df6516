use std::fmt;
use thiserror::Error;

/// Everything the library can refuse or fail at. Messages name the offending value and what
/// was expected, so the command line can print them as they are.
#[derive(Debug, Error)]
pub enum Error {
    /// A setting that cannot work: a model, optimizer, task or run configuration out of range
    /// or contradicting another (a zero size, a dropout of 1, an unknown name, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("shape mismatch: {what} has shape {got:?}, expected {expected:?}")]
    /// A tensor whose shape does not fit the model or the batch it goes with.
    Shape {
        /// The tensor, by name (`weight_hh_l0`, `h0`, ...).
        what: String,
        /// Its shape.
        got: Vec<usize>,
        /// The shape the model and batch call for.
        expected: Vec<usize>,
    },
    /// Data that cannot be used: a file that does not parse, a target outside its range, a
    /// tensor or optimizer state missing from a checkpoint, a non-finite input.
    #[error("invalid value: {0}")]
    Value(String),
    #[error(
        "no GPU adapter found{detail}. wgpu needs a Vulkan, Metal or DX12 driver; on a headless \
         Linux machine install Mesa's software Vulkan driver: `apt-get install mesa-vulkan-drivers`"
    )]
    /// wgpu found no GPU adapter (not even a software one) to run the GPU engine on.
    NoAdapter {
        /// wgpu's reason, in parentheses after a space (so the message reads on), or empty.
        detail: String,
    },
    #[error(
        "{what} needs {needed} but the adapter '{adapter}' allows at most {limit} ({limit_name})"
    )]
    /// The model or batch needs more of a resource than the adapter allows (a buffer's size,
    /// workgroups per dispatch, ...).
    Limit {
        /// What needs it (a buffer, a dispatch).
        what: String,
        /// How much it needs, in the limit's unit (bytes, workgroups).
        needed: u64,
        /// The most the adapter allows.
        limit: u64,
        /// The limit's name in `wgpu::Limits`.
        limit_name: &'static str,
        /// The adapter's name.
        adapter: String,
    },
    /// A file that cannot be read or written; the message names the path and the OS error.
    #[error("{0}")]
    Io(String),
    #[error(
        "training diverged at step {step}: loss {loss}, gradient norm {grad_norm}; {}{}{}. \
         Try --clip (e.g. 1), a lower --lr, or a smaller --hh-scale",
        origin.as_ref().map_or(String::new(), |s| format!("{s}; ")),
        last_finite.map_or("no step was finite".to_string(), |(s, n)| format!("last finite gradient norm {n} at step {s}")),
        checkpoint.as_ref().map_or(String::new(), |p| format!("; the last good checkpoint {p} is kept"))
    )]
    /// Training met a non-finite loss or gradient norm and stopped.
    Diverged {
        /// The step (1-based update count) whose loss or gradient was not finite.
        step: u64,
        /// That step's loss.
        loss: f32,
        /// That step's global gradient norm, before clipping.
        grad_norm: f32,
        /// Where the first non-finite value of the step's forward pass came from, from the
        /// parameters before the step (a non-finite gradient skips the update).
        origin: Option<NonFinite>,
        /// The last step with a finite gradient norm, and that norm; `None` when no step was
        /// finite.
        last_finite: Option<(u64, f32)>,
        /// The last checkpoint written before the divergence, which is kept.
        checkpoint: Option<String>,
    },
    /// wgpu reported an error: a failed device request, a validation or out-of-memory error,
    /// a lost device, a failed read-back.
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
        /// The tensor's name, e.g. `weight_hh_l0`.
        tensor: String,
        /// The element's index in the row-major flattened tensor.
        index: usize,
        /// The value: a NaN or an infinity.
        value: f32,
    },
    /// The batch's `tensor` (x, h0, c0 or targets) holds `value` at `index`.
    Input {
        /// `x`, `h0`, `c0` or `targets`.
        tensor: &'static str,
        /// The element's index along each axis of the tensor.
        index: Vec<usize>,
        /// The value: a NaN or an infinity.
        value: f32,
    },
    /// The state of one cell first turns non-finite at natural time step `step` (1-based, of
    /// `steps`) of sequence `sequence`; `cell_state`: the LSTM's c rather than h.
    State {
        /// The layer, from 0.
        layer: usize,
        /// Whether it is the reverse direction of a bidirectional layer.
        reverse: bool,
        /// Whether the LSTM's cell state c turned first, rather than h.
        cell_state: bool,
        /// The time step, from 1, in the data's time order (also for the reverse direction).
        step: usize,
        /// `T`: the batch's time steps.
        steps: usize,
        /// The sequence's index in the batch.
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
