//! The LSTM on the GPU (shaders/lstm.wgsl): the cell state c beside h, bound with its
//! gradient and the carry of dE/dc along the cell path (cs, dc, dc_carry).

use crate::internals::gpu::cell::{CellKernels, GpuCell};
use crate::internals::gpu::kernels::Kernel;
use crate::internals::gpu::workspace::CellView;

pub(crate) struct Lstm;

impl GpuCell for Lstm {
    fn kernels(&self) -> CellKernels {
        CellKernels {
            step_forward: Kernel::LstmForward,
            step_backward: Kernel::LstmBackward,
            step_forward_coop: Kernel::LstmForwardCoop,
            step_backward_coop: Kernel::LstmBackwardCoop,
            persistent_forward: Kernel::LstmForwardPersistent,
            persistent_backward: Kernel::LstmBackwardPersistent,
        }
    }

    fn cell_slots<'a>(
        &self,
        view: &CellView<'a>,
        _unused: &'a wgpu::Buffer,
    ) -> [&'a wgpu::Buffer; 3] {
        [&view.act.cs, &view.act.dc, view.dc_carry]
    }
}
