//! The GRU on the GPU (shaders/gru.wgsl): the recurrent product and its gradient in buffers
//! of their own (hh, dhh), since the reset gate scales one block of it.

use crate::internals::gpu::cell::{CellKernels, GpuCell};
use crate::internals::gpu::kernels::Kernel;
use crate::internals::gpu::workspace::{Activations, CellView};

pub(crate) struct Gru;

impl GpuCell for Gru {
    fn kernels(&self) -> CellKernels {
        CellKernels {
            step_forward: Kernel::GruForward,
            step_backward: Kernel::GruBackward,
            step_forward_coop: Kernel::GruForwardCoop,
            step_backward_coop: Kernel::GruBackwardCoop,
            persistent_forward: Kernel::GruForwardPersistent,
            persistent_backward: Kernel::GruBackwardPersistent,
        }
    }

    fn cell_slots<'a>(
        &self,
        view: &CellView<'a>,
        unused: &'a wgpu::Buffer,
    ) -> [&'a wgpu::Buffer; 3] {
        [&view.act.hh, &view.act.dhh, unused]
    }

    fn recurrent_grad<'a>(&self, act: &'a Activations) -> &'a wgpu::Buffer {
        &act.dhh
    }
}
