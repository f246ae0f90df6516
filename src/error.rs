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
        origin: Option<crate::non_finite::NonFinite>,
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
