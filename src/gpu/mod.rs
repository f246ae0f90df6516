//! The GPU engine: one `Gpu` context, the kernels of `shaders/`, and `GpuModel::run`, which
//! records forward and BPTT over all time steps into one submission.

pub(crate) mod cells;
mod context;
pub mod gemm;
pub mod kernels;
mod model;
pub mod optim;
mod pass;
mod recorder;
mod recurrence;
mod stack;
pub mod tiles;
pub mod tuning;
mod workspace;

pub use context::{enumerate_adapters, AdapterSummary, Gpu, WorkCounts};
pub use kernels::{Kernel, Shader};
pub use model::{GpuModel, GpuOutput, Request};
pub(crate) use pass::column_blocks;
pub(crate) use recorder::PARAMS_BINDING_SIZE;
pub use recorder::{Phase, PhaseTimes};
pub use recurrence::Recurrence;
pub use tiles::{GemmTile, StepTile};
