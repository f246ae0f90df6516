//! The GPU engine: one `Gpu` context, the kernels of `shaders/`, and `GpuModel::run`, which
//! records forward and BPTT over all time steps into one submission.

mod cell;
pub(crate) mod cells;
mod context;
pub mod coop_emulation;
pub(crate) mod device;
pub mod gemm;
pub mod kernels;
mod model;
pub mod optim;
mod param_buffers;
mod pass;
mod pipelines;
pub mod policy;
mod recorder;
mod recurrence;
mod stack;
pub mod tiles;
pub mod tuning;
mod workspace;

pub use context::Gpu;
pub use device::{
    adapter_kinds, enumerate_adapters, AdapterSummary, Device, MatrixUnits, WorkCounts,
    LLVMPIPE_LOOP_LIMIT, MATRIX_UNITS_VAR,
};
pub use kernels::{CoopEdge, Elements, Kernel, Shader};
pub use model::{GpuModel, GpuOutput, Request};
pub use policy::{KernelPolicy, Recurrence, StepKernel};
pub use recorder::{Phase, PhaseTimes};
pub use recurrence::{PersistentSlices, StepShapes};
pub use tiles::{CoopShape, CoopStep, GemmKernel, GemmTile, KSplit, StepShape, StepSite, StepTile};
