//! What stacked and bidirectional models add to the pass (`cpu::stack` is the CPU twin): the
//! bidirectional layers' forward and backward (one segment), and the `stack.wgsl` kernels that
//! reverse sequences within their lengths and join a layer's outputs into the next layer's
//! input through dropout, or split the gradient back.

use super::context::Gpu;
use super::kernels::{Elements, Kernel};
use super::model::{GpuModel, Request, StackParams};
use super::recorder::{Phase, Recorder};
use super::workspace::Workspace;
use crate::cpu::stack::dropout_threshold;
use crate::error::Error;
use crate::precision::Precision;
use bytemuck::Zeroable;

impl GpuModel {
    /// A bidirectional model's cells, layer by layer (one segment): a layer's
    /// input is the batch's x or the joined outputs of the layer below (through dropout in
    /// training), reversed per sequence for the reverse cell.
    pub(super) fn record_stack_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        dropout: Option<u32>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let d = config.directions();
        for layer in 0..config.layers {
            let first = layer * d;
            if layer > 0 {
                // The forward cell's input is the join itself.
                let into = ws.cell(first, 0).x;
                let mask = dropout.map(|seed| (seed, layer));
                self.record_join_forward(gpu, rec, ws, layer - 1, 0, into, mask)?;
            }
            for c in first..first + d {
                if c % d == 1 {
                    let source = ws.cell(first, 0).x;
                    let width = config.layer_input_size(layer);
                    self.record_reverse_steps(
                        gpu,
                        rec,
                        ws,
                        (source, ws.cell(c, 0).x),
                        width,
                        false,
                    )?;
                }
                self.record_cell_forward(gpu, rec, ws, c, 0)?;
                self.record_hand_off(gpu, rec, ws, c, 0)?;
            }
        }
        Ok(())
    }

    /// A bidirectional model's backward pass (one segment): the head, then layer by layer from
    /// the top, each layer's input gradient (the reverse cell's put back in natural order)
    /// split onto the layer below through the dropout masks.
    pub(super) fn record_stack_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        request: Request,
        dropout: Option<u32>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let d = config.directions();
        rec.set_phase(Phase::BackwardRecurrence);
        self.record_head_backward(gpu, rec, ws, 0, request, false)?;
        for layer in (0..config.layers).rev() {
            let first = layer * d;
            for c in first..first + d {
                self.record_cell_backward(gpu, rec, ws, c, 0, request, false)?;
            }
            if layer == 0 && !request.input_grads {
                break;
            }
            rec.set_phase(Phase::BackwardRecurrence);
            let (forward, reverse) = (ws.cell(first, 0), ws.cell(first + d - 1, 0));
            if d == 2 {
                // dE/d(input) = the forward cell's dx + the reverse cell's, put back in
                // natural order.
                let width = config.layer_input_size(layer);
                self.record_reverse_steps(gpu, rec, ws, (reverse.dx, forward.dx), width, true)?;
            }
            if layer > 0 {
                let mask = dropout.map(|seed| (seed, layer));
                self.record_join_backward(gpu, rec, ws, forward.dx, layer - 1, 0, mask)?;
            }
        }
        Ok(())
    }

    /// `into` [len, B, D*H] = layer `layer`'s outputs in segment `k` in natural time, times
    /// dropout's factors when `mask` = (seed, the layer whose input this is) is given and
    /// dropout is on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_join_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        layer: usize,
        k: usize,
        into: &wgpu::Buffer,
        mask: Option<(u32, usize)>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let d = config.directions();
        let (forward, reverse) = (ws.cell(layer * d, k), ws.cell(layer * d + d - 1, k));
        let reverse = if d == 2 { &reverse.act.hs } else { &self.dummy };
        let words = ws.segments[k].len * ws.batch * d * config.hidden_size;
        rec.dispatch_as(
            (Kernel::JoinForward, Elements::all(ws.precision())),
            &self.stack_params(ws, k, config.hidden_size, 0, false, mask),
            &[&forward.act.hs, reverse, into, &ws.lengths],
            gpu.grid("joining a layer's outputs", (words as u64).div_ceil(64))?,
        );
        Ok(())
    }

    /// The gradient `from` [len, B, D*H] w.r.t. layer `layer`'s joined outputs in segment `k`
    /// onto its cells' dh rows (overwriting them), through the forward pass's dropout factors.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_join_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        from: &wgpu::Buffer,
        layer: usize,
        k: usize,
        mask: Option<(u32, usize)>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let d = config.directions();
        let words = ws.segments[k].len * ws.batch * config.hidden_size;
        for dir in 0..d {
            rec.dispatch_as(
                (Kernel::JoinBackward, Elements::all(ws.precision())),
                &self.stack_params(ws, k, config.hidden_size, dir, false, mask),
                &[
                    from,
                    &self.dummy,
                    &ws.cell(layer * d + dir, k).act.dh,
                    &ws.lengths,
                ],
                gpu.grid("splitting a layer's gradient", (words as u64).div_ceil(64))?,
            );
        }
        Ok(())
    }

    /// `to` (+)= `from` [T, B, width] with each sequence's valid steps reversed.
    pub(super) fn record_reverse_steps(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        (from, to): (&wgpu::Buffer, &wgpu::Buffer),
        width: usize,
        accumulate: bool,
    ) -> Result<(), Error> {
        let words = ws.seq_len * ws.batch * width;
        rec.dispatch_as(
            (Kernel::ReverseSteps, Elements::all(ws.precision())),
            &self.stack_params(ws, 0, width, 0, accumulate, None),
            &[from, &self.dummy, to, &ws.lengths],
            gpu.grid("reversing sequences", (words as u64).div_ceil(64))?,
        );
        Ok(())
    }

    /// The stack kernels' parameters for segment `k`.
    fn stack_params(
        &self,
        ws: &Workspace,
        k: usize,
        width: usize,
        direction: usize,
        accumulate: bool,
        mask: Option<(u32, usize)>,
    ) -> StackParams {
        let (threshold, scale) = match mask {
            Some(_) if self.config.dropout > 0.0 => dropout_threshold(self.config.dropout),
            _ => (0, 1.0),
        };
        let (seed, layer) = mask.unwrap_or((0, 0));
        StackParams {
            seq_len: ws.segments[k].len as u32,
            first_step: ws.segments[k].t0 as u32,
            batch: ws.batch as u32,
            width: width as u32,
            directions: self.config.directions() as u32,
            direction: direction as u32,
            accumulate: accumulate as u32,
            threshold,
            seed,
            layer: layer as u32,
            scale,
            ..Zeroable::zeroed()
        }
    }
}

/// Copies `count` elements from a buffer of `from` elements to one of `to` elements (offsets
/// in elements): a buffer copy between f32 buffers, else `copy_elements`, which also converts
/// (buffer copies move whole 4-byte words: two f16 at a time).
pub(super) fn record_copy(
    gpu: &Gpu,
    rec: &mut Recorder,
    (source, from, source_offset): (&wgpu::Buffer, Precision, usize),
    (destination, to, destination_offset): (&wgpu::Buffer, Precision, usize),
    count: usize,
) -> Result<(), Error> {
    if from == Precision::F32 && to == Precision::F32 {
        rec.copy(
            source,
            source_offset,
            destination,
            destination_offset,
            count,
        );
        return Ok(());
    }
    let params = StackParams {
        count: count as u32,
        src_offset: source_offset as u32,
        dst_offset: destination_offset as u32,
        ..Zeroable::zeroed()
    };
    let elements = Elements {
        a: from,
        b: from,
        c: to,
    };
    // Slots src1 and lengths go unread: the source fills them (read-only bindings may share
    // a buffer).
    let buffers = [source, source, destination, source];
    let groups = gpu.grid("a copy", (count as u64).div_ceil(64))?;
    rec.dispatch_as((Kernel::CopyElements, elements), &params, &buffers, groups);
    Ok(())
}
