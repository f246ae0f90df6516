//! What the pass asks of a cell on the GPU (`GpuCell`): its kernels, what they bind in the
//! Step layout's cell slots, and which buffer carries the gradient of the recurrent product.
//! The cells of `cells` implement it; a module of its own, below them and the pass, so that
//! `cells`, which picks one of its cells, and the cells do not import each other.

use super::kernels::Kernel;
use super::workspace::{Activations, CellView};

/// A cell's kernels: the fused step (shaders/fused.wgsl), the same on matrix units
/// (shaders/step_coop.wgsl) and the persistent run of steps (shaders/persistent.wgsl), forward
/// and backward.
pub(crate) struct CellKernels {
    pub step_forward: Kernel,
    pub step_backward: Kernel,
    pub step_forward_coop: Kernel,
    pub step_backward_coop: Kernel,
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
