//! Recording of one pass: the forward recurrence with the head and loss, and BPTT, segment by
//! segment as the workspace's plan lays them out (see `crate::internals::plan`).
//!
//! Per segment of `len` steps (local step t = 1..len, buffers of the segment's activation
//! set; x [len, B, I], hs/cs [len+1, B, H], gates/dgates [len, B, G*H], dh/dc [len, B, H]):
//!   forward   start state -> hs[0]; gates = x W_ih^T + b_ih (one GEMM);
//!             per step, one dispatch: gates[t] += h_{t-1} W_hh^T with the cell in its
//!             epilogue (fused.wgsl); or, for small models, all steps in one persistent
//!             dispatch (`Recurrence`)
//!   backward  (recompute the segment's forward if its activations were not kept);
//!             dh = head share; dh[len] += dgates_next[1] W_hh (the border from the segment
//!             after); per step, one dispatch: dgates[t+1] W_hh (into the h carry, which
//!             the cell adds to dh[t]) with the cell in its epilogue (or one persistent
//!             dispatch);
//!             dW_ih += dgates^T x, dW_hh += dgates^T hs[0..len], db += column sums
//! Segments are processed last to first in the backward pass, and the weight gradients
//! accumulate in that order whether or not activations are recomputed, so recomputation
//! changes no bit of the result for the same segment length.
//!
//! A stacked model runs this layer by layer (cell c = layer): forward, each layer over all
//! segments, its outputs joined into the next layer's inputs segment by segment, the head on
//! the last layer's; backward from the top layer down, the head's share or the layer above's
//! input gradient first in each segment's dh. Bidirectional models (one segment) are in
//! `stack.rs`.

use super::context::Gpu;
use super::gemm::{record_gemm, Operand, Output};
use super::kernels::{column_blocks, Elements, Kernel};
use super::model::{GpuModel, LossParams, ReduceParams, Request, StepParams};
use super::policy::Recurrence;
use super::recorder::{Phase, Recorder};
use super::recurrence::{persistent_steps_per_dispatch, PersistentSlices, StepShapes};
use super::stack::record_copy;
use super::tiles::StepShape;
use super::workspace::Workspace;
use crate::config::{Activation, Loss, Readout};
use crate::error::Error;
use crate::precision::Precision;

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Forward,
    Backward,
}

/// How a cell kernel runs: one step `t` in workgroups of `shape` (fused.wgsl, or
/// step_coop.wgsl on the matrix units), or a run of the segment's steps `from + 1 ..= to` in a
/// workgroup per slice of the batch (persistent.wgsl).
#[derive(Clone, Copy)]
enum CellLaunch {
    Step {
        t: usize,
        shape: StepShape,
        groups: [u32; 3],
    },
    Persistent {
        from: usize,
        to: usize,
        slices: PersistentSlices,
        groups: [u32; 3],
    },
}

/// A cell's weight matrices as the products and the step kernels read them: the f16 working
/// copies under f16, the f32 parameters themselves under f32.
struct Weights<'a> {
    ih: &'a wgpu::Buffer,
    hh: &'a wgpu::Buffer,
    precision: Precision,
}

/// One block of the head's input: rows of `width` columns in `buffer` from `offset` (row
/// stride `width`), multiplying the head weight's columns `column..column + width`.
struct HeadPart<'a> {
    buffer: &'a wgpu::Buffer,
    offset: usize,
    width: usize,
    column: usize,
}

impl GpuModel {
    /// The forward pass: every cell's recurrence, the head and the loss. `dropout` is the
    /// training step's mask seed (None: evaluation). Layers run one after the other, each over
    /// all segments; the last layer's segments are scored as they finish.
    pub(crate) fn record_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        dropout: Option<u32>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let parts = ws.segments.iter().filter(|s| s.scored.is_some()).count();
        let mut part = 0;
        self.record_weight_copies(gpu, rec, ws)?;
        if config.bidirectional {
            self.record_stack_forward(gpu, rec, ws, dropout)?;
            self.record_head_forward(gpu, rec, ws, 0, &mut part)?;
        } else {
            for layer in 0..config.layers {
                for k in 0..ws.segments.len() {
                    self.record_cell_forward(gpu, rec, ws, layer, k)?;
                    self.record_hand_off(gpu, rec, ws, layer, k)?;
                    if layer + 1 < config.layers {
                        let into = ws.cell(layer + 1, k).x;
                        let mask = dropout.map(|seed| (seed, layer + 1));
                        self.record_join_forward(gpu, rec, ws, layer, k, into, mask)?;
                    } else {
                        self.record_head_forward(gpu, rec, ws, k, &mut part)?;
                    }
                }
            }
        }
        if parts > 1 {
            self.record_row_sum(gpu, rec, &ws.loss_parts, parts, &ws.loss, 0)?;
        }
        Ok(())
    }

    /// Under f16, every cell's weights into their working copies, from the parameters as they
    /// are now (the optimizer updates the f32 parameters).
    fn record_weight_copies(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
    ) -> Result<(), Error> {
        let (p, config) = (ws.precision(), &self.config);
        let (gh, h) = (config.gate_rows(), config.hidden_size);
        let cells = self.params.cells.iter().zip(&ws.weight_copies).enumerate();
        for (c, (cell, (ih, hh))) in cells {
            let i = config.layer_input_size(c / config.directions());
            for (from, to, count) in [(&cell.weight_ih, ih, gh * i), (&cell.weight_hh, hh, gh * h)]
            {
                record_copy(gpu, rec, (from, Precision::F32, 0), (to, p, 0), count)?;
            }
        }
        Ok(())
    }

    /// Cell `c`'s weights as the pass reads them.
    fn weights<'a>(&'a self, ws: &'a Workspace, c: usize) -> Weights<'a> {
        match ws.weight_copies.get(c) {
            Some((ih, hh)) => Weights {
                ih,
                hh,
                precision: ws.precision(),
            },
            None => Weights {
                ih: &self.params.cells[c].weight_ih,
                hh: &self.params.cells[c].weight_hh,
                precision: Precision::F32,
            },
        }
    }

    /// Hands cell `c`'s state at the end of segment `k` to the next segment's start, or to
    /// the cell's h_T (c_T).
    pub(super) fn record_hand_off(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
    ) -> Result<(), Error> {
        let (b, h) = (ws.batch, self.config.hidden_size);
        let view = ws.cell(c, k);
        let (h_next, c_next) = match ws.segments.get(k + 1) {
            Some(_) => {
                let next = ws.cell(c, k + 1);
                next.start.unwrap_or((&next.act.hs, &next.act.cs))
            }
            None => (view.final_h, view.final_c),
        };
        let (len, p) = (ws.segments[k].len, ws.precision());
        record_copy(
            gpu,
            rec,
            (&view.act.hs, p, len * b * h),
            (h_next, p, 0),
            b * h,
        )?;
        if self.config.cell.has_cell_state() {
            record_copy(
                gpu,
                rec,
                (&view.act.cs, p, len * b * h),
                (c_next, p, 0),
                b * h,
            )?;
        }
        Ok(())
    }

    /// The head and the loss on scored segment `k` (nothing on an unscored one): outputs
    /// [rows, O] = h_rows W_out^T + b_out (every step's outputs for Readout::All, the final
    /// states for Readout::Last), then the loss's share of these rows.
    fn record_head_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        k: usize,
        part: &mut usize,
    ) -> Result<(), Error> {
        let config = &self.config;
        let (b, o) = (ws.batch, config.output_size);
        let seg = &ws.segments[k];
        let Some(scored) = &seg.scored else {
            return Ok(());
        };
        let head_parts = self.head_parts(gpu, rec, ws, k, Direction::Forward)?;
        for (n, hp) in head_parts.iter().enumerate() {
            record_gemm(
                gpu,
                rec,
                (scored.rows, o, hp.width),
                Operand::new(hp.buffer, hp.offset, hp.width).of(ws.precision()),
                Operand::new(
                    &self.params.head_weight,
                    hp.column,
                    config.head_input_size(),
                )
                .t(),
                Output {
                    buffer: &scored.outputs,
                    precision: Precision::F32,
                    offset: 0,
                    row_stride: o,
                    accumulate: n > 0,
                    bias: (n == 0).then_some((&self.params.head_bias, 0)),
                },
                &self.dummy,
            )?;
        }
        let kernel = match config.loss {
            Loss::Mse => Kernel::MseLoss,
            Loss::CrossEntropy => Kernel::CrossEntropyLoss,
        };
        rec.dispatch(
            kernel,
            &LossParams {
                rows: scored.rows as u32,
                outputs: o as u32,
                mean_rows: ws.valid_rows as u32,
                // h_T already is h_len under Readout::Last: only every-step rows are masked
                mask_rows: (ws.ragged && config.readout == Readout::All) as u32,
                first_step: seg.t0 as u32,
                batch: b as u32,
                loss_scale: self.loss_scale,
                _pad: 0,
            },
            &[
                &scored.outputs,
                &scored.targets,
                &scored.row_loss,
                &scored.doutputs,
                &ws.lengths,
            ],
            gpu.grid("the loss", (scored.rows as u64).div_ceil(64))?,
        );
        // One scored segment sums straight into the loss; several sum into parts first.
        let parts = ws.segments.iter().filter(|s| s.scored.is_some()).count();
        let (sum, at) = if parts == 1 {
            (&ws.loss, 0)
        } else {
            (&ws.loss_parts, *part)
        };
        self.record_row_sum(gpu, rec, &scored.row_loss, scored.rows, sum, at)?;
        *part += 1;
        Ok(())
    }

    /// What the head reads in scored segment `k`, as blocks of its weight's columns. For
    /// a bidirectional `Readout::All` this joins the last layer's outputs first (forward), or
    /// names the joined gradient buffer (backward).
    fn head_parts<'a>(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &'a Workspace,
        k: usize,
        direction: Direction,
    ) -> Result<Vec<HeadPart<'a>>, Error> {
        let config = &self.config;
        let (b, h, d) = (ws.batch, config.hidden_size, config.directions());
        let len = ws.segments[k].len;
        let last = (config.layers - 1) * d;
        Ok(match (config.readout, &ws.head_in) {
            (Readout::All, Some((head_in, dhead_in))) => {
                let buffer = match direction {
                    Direction::Forward => {
                        self.record_join_forward(
                            gpu,
                            rec,
                            ws,
                            config.layers - 1,
                            k,
                            head_in,
                            None,
                        )?;
                        head_in
                    }
                    Direction::Backward => dhead_in,
                };
                vec![HeadPart {
                    buffer,
                    offset: 0,
                    width: 2 * h,
                    column: 0,
                }]
            }
            (Readout::All, None) => vec![HeadPart {
                buffer: &ws.cell(last, k).act.hs,
                offset: b * h,
                width: h,
                column: 0,
            }],
            (Readout::Last, _) => (0..d)
                .map(|dir| HeadPart {
                    buffer: &ws.cell(last + dir, k).act.hs,
                    offset: len * b * h,
                    width: h,
                    column: dir * h,
                })
                .collect(),
        })
    }

    /// The recurrence of cell `c` in segment `k` into its activation set: the start state, the
    /// input projection of all its steps, then two dispatches per step.
    pub(super) fn record_cell_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
    ) -> Result<(), Error> {
        let config = &self.config;
        let bias_ih = &self.params.cells[c].bias_ih;
        let seg = &ws.segments[k];
        let view = ws.cell(c, k);
        let a = view.act;
        let (b, h, i, gh) = (
            ws.batch,
            config.hidden_size,
            config.layer_input_size(c / config.directions()),
            config.gate_rows(),
        );
        let (w, p) = (self.weights(ws, c), ws.precision());
        if let Some((h_start, c_start)) = view.start {
            record_copy(gpu, rec, (h_start, p, 0), (&a.hs, p, 0), b * h)?;
            if self.config.cell.has_cell_state() {
                record_copy(gpu, rec, (c_start, p, 0), (&a.cs, p, 0), b * h)?;
            }
        }
        // Input projection of the segment's steps at once: gates = x W_ih^T + b_ih.
        rec.set_phase(Phase::InputGemm);
        record_gemm(
            gpu,
            rec,
            (seg.len * b, gh, i),
            Operand::new(view.x, 0, i).of(p),
            Operand::new(w.ih, 0, i).of(w.precision).t(),
            Output {
                buffer: &a.gates,
                precision: p,
                offset: 0,
                row_stride: gh,
                accumulate: false,
                bias: Some((bias_ih, 0)),
            },
            &self.dummy,
        )?;
        rec.set_phase(Phase::ForwardRecurrence);
        if self.recurrence.resolve(gpu, config, (b, p))? == Recurrence::Persistent {
            return self.record_persistent(gpu, rec, ws, (c, k), Direction::Forward);
        }
        // gates[t] += h_{t-1} W_hh^T (GRU: hh[t] = h_{t-1} W_hh^T), then the cell
        let (shape, groups) = self.step_shape(gpu, rec, (b, p), Direction::Forward)?;
        for t in 1..=seg.len {
            let launch = CellLaunch::Step { t, shape, groups };
            self.record_cell_kernel(rec, ws, (c, k), Direction::Forward, launch);
        }
        Ok(())
    }

    /// The fused step kernel at `batch` rows of `precision` in `direction`, and its grid
    /// (`StepShapes::resolve`). Refused where one invocation would loop past the adapter's
    /// limit (llvmpipe, with H in the thousands).
    fn step_shape(
        &self,
        gpu: &Gpu,
        rec: &Recorder,
        (batch, precision): (usize, Precision),
        direction: Direction,
    ) -> Result<(StepShape, [u32; 3]), Error> {
        let (cell, hidden) = (self.config.cell, self.config.hidden_size);
        let what = format!("a time step of a {cell} cell of hidden size {hidden}");
        let shapes = StepShapes::resolve(gpu, rec.policy(), &self.config, (batch, precision))?;
        let shape = match direction {
            Direction::Forward => shapes.forward,
            Direction::Backward => shapes.backward,
        };
        gpu.check_loops(&what, shape.iterations(cell.gates(), hidden))?;
        Ok((shape, gpu.grid(&what, shape.workgroups(batch, hidden))?))
    }

    /// BPTT: the head's share of dE/dh, then every cell's backward recurrence (last segment
    /// and last layer first), the weight gradients and the input gradients. `dropout` must be
    /// the forward pass's.
    pub(crate) fn record_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        request: Request,
        dropout: Option<u32>,
    ) -> Result<(), Error> {
        let config = &self.config;
        let g = &ws.grads;
        let (b, h) = (ws.batch, config.hidden_size);
        let gh = config.gate_rows();
        let has_c = self.config.cell.has_cell_state();
        let n = ws.segments.len();
        for c in 0..config.cells() {
            let view = ws.cell(c, 0);
            rec.clear(view.h_carry);
            if has_c {
                rec.clear(view.dc_carry);
            }
        }
        // Unidirectional: layer by layer from the top, each over its segments last to first.
        for layer in (0..config.layers).rev().filter(|_| !config.bidirectional) {
            for k in (0..n).rev() {
                // The last segment's activations are still in place after the forward pass.
                if ws.plan.recompute && k + 1 < n {
                    self.record_cell_forward(gpu, rec, ws, layer, k)?;
                }
                // Gradients into later segments accumulate onto the ones recorded first.
                let accumulate = k + 1 < n;
                rec.set_phase(Phase::BackwardRecurrence);
                if layer + 1 == config.layers {
                    self.record_head_backward(gpu, rec, ws, k, request, accumulate)?;
                } else {
                    let from = ws.cell(layer + 1, k).dx;
                    let mask = dropout.map(|seed| (seed, layer + 1));
                    self.record_join_backward(gpu, rec, ws, from, layer, k, mask)?;
                }
                self.record_cell_backward(gpu, rec, ws, layer, k, request, accumulate)?;
            }
        }
        if config.bidirectional {
            self.record_stack_backward(gpu, rec, ws, request, dropout)?;
        }
        rec.set_phase(Phase::BackwardRecurrence);
        if request.input_grads {
            // Each cell's dh0 = h_carry + dgates_hh[1] W_hh into its [B, H] block (dc0 is left
            // in its dc_carry): the carry holds the GRU's direct path z_1 * dE/dh_1 (and is
            // zero for the others).
            for c in 0..config.cells() {
                let view = ws.cell(c, 0);
                rec.copy(view.h_carry, 0, &ws.dh0, c * b * h, b * h);
                let w = self.weights(ws, c);
                record_gemm(
                    gpu,
                    rec,
                    (b, h, gh),
                    Operand::new(self.cell().recurrent_grad(view.act), 0, gh).of(ws.precision()),
                    Operand::new(w.hh, 0, h).of(w.precision),
                    Output {
                        buffer: &ws.dh0,
                        precision: Precision::F32,
                        offset: c * b * h,
                        row_stride: h,
                        accumulate: true,
                        bias: None,
                    },
                    &self.dummy,
                )?;
            }
        }
        rec.set_phase(Phase::WeightGradients);
        if request.param_grads && !self.config.cell.keeps_recurrent_apart() {
            // b_ih and b_hh enter the pre-activation identically: equal gradients.
            for cell in &g.cells {
                rec.copy(&cell.bias_ih, 0, &cell.bias_hh, 0, gh);
            }
        }
        Ok(())
    }

    /// The head's share of dE/dh in scored segment `k` (none in an unscored one), and its own
    /// gradients.
    pub(super) fn record_head_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        k: usize,
        request: Request,
        accumulate: bool,
    ) -> Result<(), Error> {
        let config = &self.config;
        let (b, h, o, d) = (
            ws.batch,
            config.hidden_size,
            config.output_size,
            config.directions(),
        );
        let seg = &ws.segments[k];
        let last = (config.layers - 1) * d;
        if config.readout == Readout::Last {
            for c in last..last + d {
                rec.clear(&ws.cell(c, k).act.dh);
            }
        }
        let Some(scored) = &seg.scored else {
            return Ok(());
        };
        let parts = self.head_parts(gpu, rec, ws, k, Direction::Backward)?;
        let wide = config.head_input_size();
        for (dir, part) in parts.iter().enumerate() {
            // Where the head's gradient lands: the states' dh rows it read (the last row for
            // Readout::Last), or the joined buffer for a bidirectional Readout::All.
            let (buffer, offset, stride) = match (config.readout, &ws.head_in) {
                (Readout::All, Some(_)) => (part.buffer, 0, 2 * h),
                (Readout::All, None) => (&ws.cell(last, k).act.dh, 0, h),
                (Readout::Last, _) => (&ws.cell(last + dir, k).act.dh, (seg.len - 1) * b * h, h),
            };
            record_gemm(
                gpu,
                rec,
                (scored.rows, part.width, o),
                Operand::new(&scored.doutputs, 0, o),
                Operand::new(&self.params.head_weight, part.column, wide),
                Output {
                    buffer,
                    precision: ws.precision(),
                    offset,
                    row_stride: stride,
                    accumulate: false,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        if let (Readout::All, Some((_, dhead_in))) = (config.readout, &ws.head_in) {
            self.record_join_backward(gpu, rec, ws, dhead_in, config.layers - 1, k, None)?;
        }
        if request.param_grads {
            rec.set_phase(Phase::WeightGradients);
            self.record_head_gradients(gpu, rec, ws, k, parts, accumulate)?;
            rec.set_phase(Phase::BackwardRecurrence);
        }
        Ok(())
    }

    /// d head.weight [O, D*H] += doutputs^T h_rows and d head.bias += column sums in scored
    /// segment `k`, from the head's inputs in `parts` (the forward pass's).
    fn record_head_gradients(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        k: usize,
        parts: Vec<HeadPart>,
        accumulate: bool,
    ) -> Result<(), Error> {
        let (config, g) = (&self.config, &ws.grads);
        let (h, o, wide) = (
            config.hidden_size,
            config.output_size,
            config.head_input_size(),
        );
        let scored = ws.segments[k].scored.as_ref().expect("a scored segment");
        let forward_parts = match (config.readout, &ws.head_in) {
            // The joined outputs are still in head_in from the forward pass.
            (Readout::All, Some((head_in, _))) => vec![HeadPart {
                buffer: head_in,
                offset: 0,
                width: 2 * h,
                column: 0,
            }],
            _ => parts,
        };
        for part in &forward_parts {
            record_gemm(
                gpu,
                rec,
                (o, part.width, scored.rows),
                Operand::new(&scored.doutputs, 0, o).t(),
                Operand::new(part.buffer, part.offset, part.width).of(ws.precision()),
                Output {
                    buffer: &g.head_weight,
                    precision: Precision::F32,
                    offset: part.column,
                    row_stride: wide,
                    accumulate,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        self.record_column_sums(
            gpu,
            rec,
            (&scored.doutputs, Precision::F32, scored.rows, o),
            &g.head_bias,
            accumulate,
        )
    }

    /// Cell `c`'s backward recurrence in segment `k`, given the gradient from outside it in
    /// its dh rows (the head's, or the layer above's): the border from the next segment, the
    /// steps last to first, the per-step norms, the weight gradients and dx.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_cell_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
        request: Request,
        accumulate: bool,
    ) -> Result<(), Error> {
        let config = &self.config;
        rec.set_phase(Phase::BackwardRecurrence);
        if k + 1 < ws.segments.len() {
            self.record_segment_border_backward(gpu, rec, ws, c, k)?;
        }
        let rows = (ws.batch, ws.precision());
        if self.recurrence.resolve(gpu, config, rows)? == Recurrence::Persistent {
            self.record_persistent(gpu, rec, ws, (c, k), Direction::Backward)?;
        } else {
            self.record_backward_steps(gpu, rec, ws, c, k)?;
        }
        if request.grad_norms {
            self.record_step_norms(gpu, rec, ws, c, k)?;
        }
        rec.set_phase(Phase::WeightGradients);
        if request.param_grads {
            self.record_weight_gradients(gpu, rec, ws, (c, k), accumulate)?;
        }
        if request.input_grads || c / config.directions() > 0 {
            // dx = dgates W_ih (a layer above the first passes it to the layer below)
            let (seg, a) = (&ws.segments[k], ws.cell(c, k).act);
            let (b, gh) = (ws.batch, config.gate_rows());
            let i = config.layer_input_size(c / config.directions());
            let w = self.weights(ws, c);
            record_gemm(
                gpu,
                rec,
                (seg.len * b, i, gh),
                Operand::new(&a.dgates, 0, gh).of(ws.precision()),
                Operand::new(w.ih, 0, i).of(w.precision),
                Output {
                    buffer: ws.cell(c, k).dx,
                    precision: ws.precision(),
                    offset: 0,
                    row_stride: i,
                    accumulate: false,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        Ok(())
    }

    /// dh[len] += dgates_next[1] W_hh: the gradient from segment `k + 1` into cell `c`'s last
    /// step of segment `k`. Under recomputation the shared dgates still hold that segment's
    /// values.
    fn record_segment_border_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
    ) -> Result<(), Error> {
        let (w, p) = (self.weights(ws, c), ws.precision());
        let (b, h, gh) = (ws.batch, self.config.hidden_size, self.config.gate_rows());
        let next = self.cell().recurrent_grad(ws.cell(c, k + 1).act);
        record_gemm(
            gpu,
            rec,
            (b, h, gh),
            Operand::new(next, 0, gh).of(p),
            Operand::new(w.hh, 0, h).of(w.precision),
            Output {
                buffer: &ws.cell(c, k).act.dh,
                precision: p,
                offset: (ws.segments[k].len - 1) * b * h,
                row_stride: h,
                accumulate: true,
                bias: None,
            },
            &self.dummy,
        )
    }

    /// `||dE/dh_t||` (and `||dE/dc_t||`) of cell `c`'s steps in segment `k`, into their
    /// places in `ws.norms`.
    fn record_step_norms(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
    ) -> Result<(), Error> {
        let (seg, a) = (&ws.segments[k], ws.cell(c, k).act);
        let (b, h) = (ws.batch, self.config.hidden_size);
        let norm_groups = gpu.grid("per-step gradient norms", seg.len as u64)?;
        let what = format!("the gradient norm of a step over {} values", b * h);
        gpu.check_loops(&what, reduce_iterations(b * h))?;
        let mut sources = vec![&a.dh];
        if self.config.cell.has_cell_state() {
            sources.push(&a.dc);
        }
        let cells = self.config.cells();
        for (part, source) in sources.into_iter().enumerate() {
            rec.dispatch_as(
                (
                    Kernel::RowNorms,
                    Elements {
                        a: ws.precision(),
                        ..Elements::F32
                    },
                ),
                &ReduceParams {
                    rows: seg.len as u32,
                    n: (b * h) as u32,
                    in_offset: 0,
                    out_offset: ((part * cells + c) * ws.seq_len + seg.t0) as u32,
                    accumulate: 0,
                    _pad: [0; 3],
                },
                &[source, &ws.norms],
                norm_groups,
            );
        }
        Ok(())
    }

    /// Cell `c`'s weight and bias gradients over segment `k`'s len*B rows at once:
    /// dW_ih += dgates^T x,  dW_hh += dgates_hh^T hs[0..len],  db += column sums.
    fn record_weight_gradients(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        (c, k): (usize, usize),
        accumulate: bool,
    ) -> Result<(), Error> {
        let config = &self.config;
        let (g, p) = (&ws.grads.cells[c], ws.precision());
        let view = ws.cell(c, k);
        let a = view.act;
        let rows = ws.segments[k].len * ws.batch;
        let (h, gh) = (config.hidden_size, config.gate_rows());
        let i = config.layer_input_size(c / config.directions());
        let dgates_hh = self.cell().recurrent_grad(a);
        for (weight, dpre, source, width) in [
            (&g.weight_ih, &a.dgates, view.x, i),
            (&g.weight_hh, dgates_hh, &a.hs, h),
        ] {
            record_gemm(
                gpu,
                rec,
                (gh, width, rows),
                Operand::new(dpre, 0, gh).of(p).t(),
                Operand::new(source, 0, width).of(p),
                Output {
                    buffer: weight,
                    precision: Precision::F32,
                    offset: 0,
                    row_stride: width,
                    accumulate,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        self.record_column_sums(gpu, rec, (&a.dgates, p, rows, gh), &g.bias_ih, accumulate)?;
        if config.cell.keeps_recurrent_apart() {
            self.record_column_sums(gpu, rec, (dgates_hh, p, rows, gh), &g.bias_hh, accumulate)?;
        }
        Ok(())
    }

    /// The per-step part of cell `c`'s backward recurrence in segment `k`: for t = len..1,
    /// one dispatch of dh[t] += dgates[t+1] W_hh (t < len) with the cell in its epilogue.
    fn record_backward_steps(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        c: usize,
        k: usize,
    ) -> Result<(), Error> {
        let rows = (ws.batch, ws.precision());
        let (shape, groups) = self.step_shape(gpu, rec, rows, Direction::Backward)?;
        for t in (1..=ws.segments[k].len).rev() {
            let launch = CellLaunch::Step { t, shape, groups };
            self.record_cell_kernel(rec, ws, (c, k), Direction::Backward, launch);
        }
        Ok(())
    }

    /// The cell's fused step kernel, or its persistent twin.
    fn cell_kernel(&self, direction: Direction, launch: CellLaunch) -> Kernel {
        let kernels = self.cell().kernels();
        match (direction, launch) {
            (Direction::Forward, CellLaunch::Step { shape, .. }) => match shape {
                StepShape::Tile(_) => kernels.step_forward,
                StepShape::Coop(_) => kernels.step_forward_coop,
            },
            (Direction::Backward, CellLaunch::Step { shape, .. }) => match shape {
                StepShape::Tile(_) => kernels.step_backward,
                StepShape::Coop(_) => kernels.step_backward_coop,
            },
            (Direction::Forward, CellLaunch::Persistent { .. }) => kernels.persistent_forward,
            (Direction::Backward, CellLaunch::Persistent { .. }) => kernels.persistent_backward,
        }
    }

    /// The persistent kernel over all of segment `k`'s steps of cell `c`, a workgroup per slice
    /// of the batch: one dispatch, or where the adapter ends long loops (llvmpipe) runs of
    /// steps short enough, in the direction's order.
    fn record_persistent(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        (c, k): (usize, usize),
        direction: Direction,
    ) -> Result<(), Error> {
        let len = ws.segments[k].len;
        let per = persistent_steps_per_dispatch(gpu, &self.config, ws.batch).clamp(1, len.max(1));
        let slices = PersistentSlices::of(&self.config, ws.batch);
        let what = "the persistent recurrence's slices of the batch";
        let groups = gpu.grid(what, slices.count as u64)?;
        let mut runs: Vec<(usize, usize)> = (0..len)
            .step_by(per)
            .map(|from| (from, (from + per).min(len)))
            .collect();
        if direction == Direction::Backward {
            runs.reverse();
        }
        for (from, to) in runs {
            let launch = CellLaunch::Persistent {
                from,
                to,
                slices,
                groups,
            };
            self.record_cell_kernel(rec, ws, (c, k), direction, launch);
        }
        Ok(())
    }

    /// A cell kernel for cell `c` in segment `k`, launched as `launch` says.
    fn record_cell_kernel(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        (c, k): (usize, usize),
        direction: Direction,
        launch: CellLaunch,
    ) {
        let config = &self.config;
        let activation = match config.activation {
            Activation::Tanh => 0,
            Activation::Sigmoid => 1,
            Activation::Relu => 2,
        };
        let view = ws.cell(c, k);
        let a = view.act;
        let [slot_2, slot_6, slot_8] = self.cell().cell_slots(&view, &self.dummy);
        let len = ws.segments[k].len;
        // Step kernels: step t, and the segment's length (no product from past its end).
        let (step, from, to, slice_rows) = match launch {
            CellLaunch::Step { t, .. } => (t, 0, len, 0),
            CellLaunch::Persistent {
                from, to, slices, ..
            } => (len, from, to, slices.rows),
        };
        let params = StepParams {
            batch: ws.batch as u32,
            hidden: config.hidden_size as u32,
            step: step as u32,
            activation,
            first_step: ws.segments[k].t0 as u32,
            run_start: from as u32,
            run_end: to as u32,
            slice_rows: slice_rows as u32,
        };
        let buffers = [
            &a.gates,
            &a.hs,
            slot_2,
            &self.params.cells[c].bias_hh,
            &a.dh,
            slot_6,
            &a.dgates,
            slot_8,
            &ws.lengths,
            view.h_carry,
            self.weights(ws, c).hh,
        ];
        let kernel = self.cell_kernel(direction, launch);
        let elements = Elements::all(ws.precision());
        match launch {
            CellLaunch::Step { shape, groups, .. } => {
                rec.dispatch_tiled((kernel, elements, shape), &params, &buffers, groups)
            }
            CellLaunch::Persistent { groups, .. } => {
                rec.dispatch_as((kernel, elements), &params, &buffers, groups)
            }
        }
    }

    /// destination[j] (+)= sum_r source[r, j] over `rows` rows of `width` (source's elements of
    /// `precision`).
    fn record_column_sums(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        (source, precision, rows, width): (&wgpu::Buffer, Precision, usize, usize),
        destination: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<(), Error> {
        let params = |rows: usize, accumulate: bool| ReduceParams {
            rows: rows as u32,
            n: width as u32,
            in_offset: 0,
            out_offset: 0,
            accumulate: accumulate as u32,
            _pad: [0; 3],
        };
        let columns = gpu.grid("column sums", (width as u64).div_ceil(64))?;
        let blocks = column_blocks(rows);
        let reading = Elements {
            a: precision,
            ..Elements::F32
        };
        if blocks <= 1 {
            rec.dispatch_as(
                (Kernel::ColumnSums, reading),
                &params(rows, accumulate),
                &[source, destination],
                columns,
            );
            return Ok(());
        }
        // Over many rows: each block's sums, then the blocks' sums in order (reduce.wgsl).
        let what = format!("sums of {width} columns over {rows} rows");
        gpu.check_loops(&what, blocks as u64 + 1)?;
        let partials = gpu.scratch_partials(blocks * width)?;
        let groups = (width as u64).div_ceil(64) * blocks as u64;
        rec.dispatch_as(
            (Kernel::ColumnBlockSums, reading),
            &params(rows, false),
            &[source, &partials],
            gpu.grid("column sums over blocks of rows", groups)?,
        );
        rec.dispatch(
            Kernel::ColumnSums,
            &params(blocks, accumulate),
            &[&partials, destination],
            columns,
        );
        Ok(())
    }

    /// destination[at] = sum of source[0..n], in a fixed order.
    fn record_row_sum(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        source: &wgpu::Buffer,
        n: usize,
        destination: &wgpu::Buffer,
        at: usize,
    ) -> Result<(), Error> {
        gpu.check_loops(&format!("the loss over {n} rows"), reduce_iterations(n))?;
        rec.dispatch(
            Kernel::RowSums,
            &ReduceParams {
                rows: 1,
                n: n as u32,
                in_offset: 0,
                out_offset: at as u32,
                accumulate: 0,
                _pad: [0; 3],
            },
            &[source, destination],
            [1, 1, 1],
        );
        Ok(())
    }
}

/// Loop iterations of one invocation of reduce.wgsl's `reduce_row` over n values: its share of
/// them strided over 256 invocations, then the 8 levels of the tree.
fn reduce_iterations(n: usize) -> u64 {
    (n as u64).div_ceil(256) + 9
}
