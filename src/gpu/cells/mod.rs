//! What the GPU engine does differently per cell, one module per cell as `crate::cpu` has
//! them: each names its shader's kernels, what its kernels bind in the Step layout's three
//! cell slots, and which buffer carries the gradient of the recurrent product (which buffers a
//! cell has at all is `Cell::has_cell_state` and `Cell::keeps_recurrent_apart`, which the
//! memory plan and the workspace read too). The pass records "the cell's step" through
//! `GpuCell` (`gpu::cell`); `of` is the one place that matches on the cell.

mod gru;
mod lstm;
mod rnn;

use super::cell::GpuCell;
use crate::config::Cell;

/// The GPU side of `cell`.
pub(crate) fn of(cell: Cell) -> &'static dyn GpuCell {
    match cell {
        Cell::Rnn => &rnn::Rnn,
        Cell::Lstm => &lstm::Lstm,
        Cell::Gru => &gru::Gru,
    }
}
