//! The kernel policy: what to run where the rules would choose otherwise. It holds the tuned
//! table (`rnn-wgpu tune`'s choices per matrix product and per recurrence, `tuning.rs`) and
//! forced shapes (the fused step's tile); the rules themselves are `GemmKernel::gpu_choice`,
//! `Recurrence::resolve` and `StepTile::for_shape`. A recording takes one snapshot of it
//! (`Recorder::policy`), so every choice in a pass comes from the same table.

use super::tiles::{GemmKernel, StepTile};
use crate::config::{text_enum, Cell, ModelConfig};
use crate::error::Error;
use crate::precision::Precision;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A product as tuned: what its speed depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Product {
    /// (m, n, k) of `C[m, n] = op(A)[m, k] op(B)[k, n]`.
    pub shape: (usize, usize, usize),
    /// Whether A and B are used transposed.
    pub transposed: (bool, bool),
    /// The element types A and B are stored in: products of two f16 operands may run on the
    /// matrix units (`GemmKernel::MatrixUnits`), and the tiles read half the bytes.
    pub operands: (Precision, Precision),
}

impl Product {
    /// A product of two f32 operands.
    pub fn new(shape: (usize, usize, usize), transposed: (bool, bool)) -> Product {
        Product {
            shape,
            transposed,
            operands: (Precision::F32, Precision::F32),
        }
    }

    /// The same product on operands stored as `operands`.
    pub fn of(self, operands: (Precision, Precision)) -> Product {
        Product { operands, ..self }
    }

    /// Whether both operands are f16, which the matrix units take.
    pub fn half_operands(&self) -> bool {
        self.operands == (Precision::F16, Precision::F16)
    }
}

/// A recurrence as tuned: the cell, its hidden size, the batch and the storage precision (what
/// a step's cost depends on; the input projection and the weight gradients run the same either
/// way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecurrenceShape {
    /// The cell type.
    pub cell: Cell,
    /// H.
    pub hidden: usize,
    /// B: the rows each step runs.
    pub batch: usize,
    /// The activations' element type.
    pub precision: Precision,
}

impl RecurrenceShape {
    /// The shape of a `cell` of `hidden` units over `batch` rows stored in `precision`.
    pub fn new(cell: Cell, hidden: usize, (batch, precision): (usize, Precision)) -> Self {
        RecurrenceShape {
            cell,
            hidden,
            batch,
            precision,
        }
    }

    /// `config`'s recurrence over `batch` rows stored in `precision`.
    pub fn of(config: &ModelConfig, rows: (usize, Precision)) -> Self {
        Self::new(config.cell, config.hidden_size, rows)
    }
}

/// How the recurrence is recorded (`GpuModel::recurrence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recurrence {
    /// Persistent where W_hh fits its workgroups' memory and it is expected to win (or where
    /// `rnn-wgpu tune` timed it faster), per-step otherwise.
    #[default]
    Auto,
    /// One dispatch per time step: the recurrent product with the cell in its epilogue.
    Steps,
    /// One dispatch per cell and segment (more where llvmpipe's loop limit splits a segment
    /// into runs), a workgroup per slice of the batch (`PersistentSlices`); W_hh in their
    /// memory where G*H*H <= `PERSISTENT_WEIGHTS`, else read from the weight buffer.
    Persistent,
}

text_enum!(Recurrence { Auto => "auto", Steps => "steps", Persistent => "persistent" });

/// Which kernel runs an f16 model's time steps where the matrix units are on (under f32, or
/// with them off, fused.wgsl's tiles are the only one). The rule is `MatrixUnits`;
/// `rnn-wgpu tune --precision f16` keeps `Tiled` for a (cell, hidden, batch) where it timed
/// the tiles faster, or where the matrix units' step disagrees with the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKernel {
    /// fused.wgsl, in the shape `StepTile::for_shape` picks.
    Tiled,
    /// step_coop.wgsl, on the adapter's cooperative matrices (`CoopShape`).
    MatrixUnits,
}

text_enum!(StepKernel { Tiled => "tiled", MatrixUnits => "matrix-units" });

/// The tuned table and the forced shapes. Immutable once made: `Gpu` replaces it whole
/// (`Gpu::set_policy` and the setters built on it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelPolicy {
    pub(crate) products: HashMap<Product, GemmKernel>,
    pub(crate) recurrences: HashMap<RecurrenceShape, Recurrence>,
    /// The step kernel of f16 models where the matrix units are on.
    pub(crate) step_kernels: HashMap<RecurrenceShape, StepKernel>,
    /// The layers (or subgroups) the steps split K over (`StepTile::k_split`,
    /// `CoopStep::parts`), in place of the rule.
    pub(crate) step_splits: HashMap<RecurrenceShape, u32>,
    /// The step kernels' workgroup shape in place of `StepTile::for_shape`'s rule.
    pub(crate) step_tile: Option<StepTile>,
}

impl KernelPolicy {
    /// The kernel `GemmKernel::Auto` takes for `product`, where one was tuned.
    pub fn gemm(&self, product: Product) -> Option<GemmKernel> {
        self.products.get(&product).copied()
    }

    /// The way `Recurrence::Auto` runs the steps of `shape`, where one was tuned.
    pub fn recurrence(&self, shape: RecurrenceShape) -> Option<Recurrence> {
        self.recurrences.get(&shape).copied()
    }

    /// The kernel that runs the time steps of `shape` at f16 with the matrix units on, where
    /// one was tuned.
    pub fn step_kernel(&self, shape: RecurrenceShape) -> Option<StepKernel> {
        self.step_kernels.get(&shape).copied()
    }

    /// The layers (or subgroups) the time steps of `shape` split K over, where tuned.
    pub fn step_split(&self, shape: RecurrenceShape) -> Option<u32> {
        self.step_splits.get(&shape).copied()
    }

    /// The fused step kernels' forced workgroup shape.
    pub fn step_tile(&self) -> Option<StepTile> {
        self.step_tile
    }

    /// How many products have a tuned kernel.
    pub fn tuned_products(&self) -> usize {
        self.products.len()
    }
}
