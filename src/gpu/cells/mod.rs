//! What the GPU engine does differently per cell, one module per cell as `crate::cpu` has
//! them: each names its shader's kernels, what its kernels bind in the Step layout's three
//! cell slots, which buffer carries the gradient of the recurrent product, and which state it
//! keeps beside h. The pass records "the cell's step" through `GpuCell`; `of` is the one place
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

    /// Whether the cell keeps a state c beside h (the LSTM): handed across segments, its
    /// gradient carried and normed, c_n and dE/dc_0 read back.
    fn has_cell_state(&self) -> bool {
        false
    }

    /// Whether the recurrent product h_{t-1} W_hh^T has buffers of its own, `hh` and `dhh`
    /// (the GRU, whose reset gate scales one block of it): then b_hh's gradient is their
    /// column sums, where the other cells share b_ih's.
    fn keeps_recurrent_apart(&self) -> bool {
        false
    }

    /// dE/d(h_{t-1} W_hh^T) [S, B, G*H]: what multiplies W_hh going back.
    fn recurrent_grad<'a>(&self, act: &'a Activations) -> &'a wgpu::Buffer {
        if self.keeps_recurrent_apart() {
            &act.dhh
        } else {
            &act.dgates
        }
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
