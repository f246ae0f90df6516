//! The vanilla RNN on the GPU (shaders/rnn.wgsl): no state beside h, no cell slot used.

use crate::internals::gpu::cell::{CellKernels, GpuCell};
use crate::internals::gpu::kernels::Kernel;
use crate::internals::gpu::workspace::CellView;

pub(crate) struct Rnn;

impl GpuCell for Rnn {
    fn kernels(&self) -> CellKernels {
        CellKernels {
            step_forward: Kernel::RnnForward,
            step_backward: Kernel::RnnBackward,
            step_forward_coop: Kernel::RnnForwardCoop,
            step_backward_coop: Kernel::RnnBackwardCoop,
            persistent_forward: Kernel::RnnForwardPersistent,
            persistent_backward: Kernel::RnnBackwardPersistent,
        }
    }

    fn cell_slots<'a>(
        &self,
        _view: &CellView<'a>,
        unused: &'a wgpu::Buffer,
    ) -> [&'a wgpu::Buffer; 3] {
        [unused; 3]
    }
}
