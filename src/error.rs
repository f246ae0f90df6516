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
        origin: Option<crate::non_finite::NonFinite>,
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
