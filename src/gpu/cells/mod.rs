//! What the GPU engine does differently per cell, one module per cell as `crate::cpu` has
//! them: each names its shader's kernels, what its kernels bind in the Step layout's three
//! cell slots, and which buffer carries the gradient of the recurrent product (which buffers a
//! cell has at all is `Cell::has_cell_state` and `Cell::keeps_recurrent_apart`, which the
//! memory plan and the workspace read too). The pass records "the cell's step" through `GpuCell`; `of` is the one place
//! that matches on the cell.

mod gru;
mod lstm;
mod rnn;

use super::kernels::Kernel;
use super::workspace::{Activations, CellView};
use crate::config::Cell;

/// A cell's kernels: the fused step (shaders/fused.wgsl) and the persistent run of steps
/// (shaders/persistent.wgsl), forward and backward.
pub(crate) struct CellKernels {
    pub step_forward: Kernel,
    pub step_backward: Kernel,
    pub persistent_forward: Kernel,
    pub persistent_backward: Kernel,
}

pub(crate) trait GpuCell: Sync {
    fn kernels(&self) -> CellKernels;

    /// The buffers of slots 2, 6 and 8 of the Step layout (step.wgsl), which each cell's file
    /// declares for itself; `unused` fills a slot the cell does not use.
    fn cell_slots<'a>(
        &self,
        view: &CellView<'a>,
        unused: &'a wgpu::Buffer,
    ) -> [&'a wgpu::Buffer; 3];

    /// dE/d(h_{t-1} W_hh^T) [S, B, G*H]: what multiplies W_hh going back (the gate
    /// gradients, where the product is not kept apart: `Cell::keeps_recurrent_apart`).
    fn recurrent_grad<'a>(&self, act: &'a Activations) -> &'a wgpu::Buffer {
        &act.dgates
    }
}

/// The GPU side of `cell`.
pub(crate) fn of(cell: Cell) -> &'static dyn GpuCell {
    match cell {
        Cell::Rnn => &rnn::Rnn,
        Cell::Lstm => &lstm::Lstm,
        Cell::Gru => &gru::Gru,
    }
}
