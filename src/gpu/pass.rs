//! Recording of one pass: the forward recurrence with the head and loss, and BPTT, segment by
//! segment as the workspace's plan lays them out (see `crate::plan`).
//!
//! Per segment of `len` steps (local step t = 1..len, buffers of the segment's activation
//! set; x [len, B, I], hs/cs [len+1, B, H], gates/dgates [len, B, G*H], dh/dc [len, B, H]):
//!   forward   start state -> hs[0]; gates = x W_ih^T + b_ih (one GEMM);
//!             per step: gates[t] += h_{t-1} W_hh^T, then the cell kernel (2 dispatches)
//!   backward  (recompute the segment's forward if its activations were not kept);
//!             dh = head share; dh[len] += dgates_next[1] W_hh (the border from the segment
//!             after); per step: dh[t] += dgates[t+1] W_hh, then the cell kernel;
//!             dW_ih += dgates^T x, dW_hh += dgates^T hs[0..len], db += column sums
//! Segments are processed last to first in the backward pass, and the weight gradients
//! accumulate in that order whether or not activations are recomputed, so recomputation
//! changes no bit of the result for the same segment length.

use super::context::Gpu;
use super::gemm::{record_gemm, Operand, Output};
use super::kernels::Kernel;
use super::model::{GpuModel, LossParams, ReduceParams, Request, StepParams};
use super::recorder::{Phase, Recorder};
use super::workspace::{Segment, Workspace};
use crate::config::{Activation, Cell, Loss, Readout};
use crate::Error;

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

impl GpuModel {
    pub(crate) fn record_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
    ) -> Result<(), Error> {
        let config = &self.config;
        let p = &self.params;
        let (b, h, o) = (ws.batch, config.hidden_size, config.output_size);
        let lstm = config.cell == Cell::Lstm;
        let mean_rows = ws.valid_rows;
        let parts = ws.segments.iter().filter(|s| s.scored.is_some()).count();
        let mut part = 0;
        for (k, seg) in ws.segments.iter().enumerate() {
            self.record_segment_forward(gpu, rec, ws, k)?;
            let a = ws.set(k);
            // Hand the end state to the next segment's start, or to h_T (c_T).
            let (h_next, c_next) = match ws.segments.get(k + 1) {
                Some(next) => match &next.start {
                    Some((h_start, c_start)) => (h_start, c_start),
                    None => (&ws.set(k + 1).hs, &ws.set(k + 1).cs),
                },
                None => (&ws.final_h, &ws.final_c),
            };
            rec.copy(&a.hs, seg.len * b * h, h_next, 0, b * h);
            if lstm {
                rec.copy(&a.cs, seg.len * b * h, c_next, 0, b * h);
            }
            let Some(scored) = &seg.scored else { continue };
            // Head: outputs[rows, O] = h_rows W_out^T + b_out (every step's state for
            // Readout::All, the last one for Readout::Last).
            let first_state = match config.readout {
                Readout::All => b * h,
                Readout::Last => seg.len * b * h,
            };
            record_gemm(
                gpu,
                rec,
                (scored.rows, o, h),
                Operand::new(&a.hs, first_state, h),
                Operand::new(&p.head_weight, 0, h).t(),
                Output {
                    buffer: &scored.outputs,
                    offset: 0,
                    row_stride: o,
                    accumulate: false,
                    bias: Some((&p.head_bias, 0)),
                },
                &self.dummy,
            )?;
            let kernel = match config.loss {
                Loss::Mse => Kernel::MseLoss,
                Loss::CrossEntropy => Kernel::CrossEntropyLoss,
            };
            rec.dispatch(
                kernel,
                &LossParams {
                    rows: scored.rows as u32,
                    outputs: o as u32,
                    mean_rows: mean_rows as u32,
                    // h_T already is h_len under Readout::Last: only every-step rows are masked
                    mask_rows: (ws.ragged && config.readout == Readout::All) as u32,
                    first_step: seg.t0 as u32,
                    batch: b as u32,
                    _pad: [0; 2],
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
            let (sum, at) = if parts == 1 {
                (&ws.loss, 0)
            } else {
                (&ws.loss_parts, part)
            };
            self.record_row_sum(rec, &scored.row_loss, scored.rows, sum, at);
            part += 1;
        }
        if parts > 1 {
            self.record_row_sum(rec, &ws.loss_parts, parts, &ws.loss, 0);
        }
        Ok(())
    }

    /// The recurrence of segment `k` into its activation set: the start state, the input
    /// projection of all its steps, then two dispatches per step.
    fn record_segment_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        k: usize,
    ) -> Result<(), Error> {
        let config = &self.config;
        let p = &self.params;
        let seg = &ws.segments[k];
        let a = ws.set(k);
        let (b, h, i, gh) = (
            ws.batch,
            config.hidden_size,
            config.input_size,
            config.gate_rows(),
        );
        if let Some((h_start, c_start)) = &seg.start {
            rec.copy(h_start, 0, &a.hs, 0, b * h);
            if config.cell == Cell::Lstm {
                rec.copy(c_start, 0, &a.cs, 0, b * h);
            }
        }
        // Input projection of the segment's steps at once: gates = x W_ih^T + b_ih.
        rec.set_phase(Phase::InputGemm);
        record_gemm(
            gpu,
            rec,
            (seg.len * b, gh, i),
            Operand::new(&seg.x, 0, i),
            Operand::new(&p.weight_ih, 0, i).t(),
            Output {
                buffer: &a.gates,
                offset: 0,
                row_stride: gh,
                accumulate: false,
                bias: Some((&p.bias_ih, 0)),
            },
            &self.dummy,
        )?;
        let groups = gpu.grid("a time step", ((b * h) as u64).div_ceil(64))?;
        rec.set_phase(Phase::ForwardRecurrence);
        // The GRU keeps the recurrent product apart (its reset gate scales one block of it).
        let (recurrent, onto_gates) = match config.cell {
            Cell::Gru => (&a.hh, false),
            Cell::Rnn | Cell::Lstm => (&a.gates, true),
        };
        for t in 1..=seg.len {
            // gates[t] += h_{t-1} W_hh^T  (GRU: hh[t] = h_{t-1} W_hh^T)
            record_gemm(
                gpu,
                rec,
                (b, gh, h),
                Operand::new(&a.hs, (t - 1) * b * h, h),
                Operand::new(&p.weight_hh, 0, h).t(),
                Output {
                    buffer: recurrent,
                    offset: (t - 1) * b * gh,
                    row_stride: gh,
                    accumulate: onto_gates,
                    bias: None,
                },
                &self.dummy,
            )?;
            self.record_step(rec, ws, k, Direction::Forward, t, groups);
        }
        Ok(())
    }

    pub(crate) fn record_backward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
        request: Request,
    ) -> Result<(), Error> {
        let config = &self.config;
        let p = &self.params;
        let g = &ws.grads;
        let (t_len, b, h, i, o) = (
            ws.seq_len,
            ws.batch,
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let gh = config.gate_rows();
        let lstm = config.cell == Cell::Lstm;
        let n = ws.segments.len();
        rec.clear(&ws.h_carry);
        if lstm {
            rec.clear(&ws.dc_carry);
        }
        let groups = gpu.grid("a time step", ((b * h) as u64).div_ceil(64))?;
        for k in (0..n).rev() {
            let seg: &Segment = &ws.segments[k];
            let a = ws.set(k);
            // The last segment's activations are still in place after the forward pass.
            if ws.plan.recompute && k + 1 < n {
                self.record_segment_forward(gpu, rec, ws, k)?;
            }
            // Gradients into later segments accumulate onto the ones recorded first.
            let accumulate = k + 1 < n;
            rec.set_phase(Phase::BackwardRecurrence);

            // The head's share of dE/dh_t.
            if config.readout == Readout::Last {
                rec.clear(&a.dh);
            }
            if let Some(scored) = &seg.scored {
                let (dh_offset, first_state) = match config.readout {
                    Readout::All => (0, b * h),
                    Readout::Last => ((seg.len - 1) * b * h, seg.len * b * h),
                };
                record_gemm(
                    gpu,
                    rec,
                    (scored.rows, h, o),
                    Operand::new(&scored.doutputs, 0, o),
                    Operand::new(&p.head_weight, 0, h),
                    Output {
                        buffer: &a.dh,
                        offset: dh_offset,
                        row_stride: h,
                        accumulate: false,
                        bias: None,
                    },
                    &self.dummy,
                )?;
                if request.param_grads {
                    // d head.weight [O, H] += doutputs^T h_rows;  d head.bias += column sums
                    rec.set_phase(Phase::WeightGradients);
                    record_gemm(
                        gpu,
                        rec,
                        (o, h, scored.rows),
                        Operand::new(&scored.doutputs, 0, o).t(),
                        Operand::new(&a.hs, first_state, h),
                        Output {
                            buffer: &g.head_weight,
                            offset: 0,
                            row_stride: h,
                            accumulate,
                            bias: None,
                        },
                        &self.dummy,
                    )?;
                    self.record_column_sums(
                        gpu,
                        rec,
                        (&scored.doutputs, scored.rows, o),
                        &g.head_bias,
                        accumulate,
                    )?;
                    rec.set_phase(Phase::BackwardRecurrence);
                }
            }
            if k + 1 < n {
                // dh[len] += dgates_next[1] W_hh: the gradient from the segment after. Under
                // recomputation the shared dgates still hold that segment's values.
                record_gemm(
                    gpu,
                    rec,
                    (b, h, gh),
                    Operand::new(ws.set(k + 1).dgates_hh(config.cell), 0, gh),
                    Operand::new(&p.weight_hh, 0, h),
                    Output {
                        buffer: &a.dh,
                        offset: (seg.len - 1) * b * h,
                        row_stride: h,
                        accumulate: true,
                        bias: None,
                    },
                    &self.dummy,
                )?;
            }
            for t in (1..=seg.len).rev() {
                if t < seg.len {
                    // dh[t] += dgates[t+1] W_hh
                    record_gemm(
                        gpu,
                        rec,
                        (b, h, gh),
                        Operand::new(a.dgates_hh(config.cell), t * b * gh, gh),
                        Operand::new(&p.weight_hh, 0, h),
                        Output {
                            buffer: &a.dh,
                            offset: (t - 1) * b * h,
                            row_stride: h,
                            accumulate: true,
                            bias: None,
                        },
                        &self.dummy,
                    )?;
                }
                self.record_step(rec, ws, k, Direction::Backward, t, groups);
            }
            if request.grad_norms {
                let norm_groups = gpu.grid("per-step gradient norms", seg.len as u64)?;
                let mut sources = vec![&a.dh];
                if lstm {
                    sources.push(&a.dc);
                }
                for (part, source) in sources.into_iter().enumerate() {
                    rec.dispatch(
                        Kernel::RowNorms,
                        &ReduceParams {
                            rows: seg.len as u32,
                            n: (b * h) as u32,
                            in_offset: 0,
                            out_offset: (part * t_len + seg.t0) as u32,
                            accumulate: 0,
                            _pad: [0; 3],
                        },
                        &[source, &ws.norms],
                        norm_groups,
                    );
                }
            }
            rec.set_phase(Phase::WeightGradients);
            if request.param_grads {
                // Weight gradients over the segment's len*B rows at once:
                // dW_ih += dgates^T x,  dW_hh += dgates_hh^T hs[0..len],  db += column sums.
                let dgates_hh = a.dgates_hh(config.cell);
                for (weight, dpre, source, width) in [
                    (&g.weight_ih, &a.dgates, &seg.x, i),
                    (&g.weight_hh, dgates_hh, &a.hs, h),
                ] {
                    record_gemm(
                        gpu,
                        rec,
                        (gh, width, seg.len * b),
                        Operand::new(dpre, 0, gh).t(),
                        Operand::new(source, 0, width),
                        Output {
                            buffer: weight,
                            offset: 0,
                            row_stride: width,
                            accumulate,
                            bias: None,
                        },
                        &self.dummy,
                    )?;
                }
                self.record_column_sums(
                    gpu,
                    rec,
                    (&a.dgates, seg.len * b, gh),
                    &g.bias_ih,
                    accumulate,
                )?;
                if config.cell == Cell::Gru {
                    self.record_column_sums(
                        gpu,
                        rec,
                        (dgates_hh, seg.len * b, gh),
                        &g.bias_hh,
                        accumulate,
                    )?;
                }
            }
            if request.input_grads {
                // dx = dgates W_ih
                record_gemm(
                    gpu,
                    rec,
                    (seg.len * b, i, gh),
                    Operand::new(&a.dgates, 0, gh),
                    Operand::new(&p.weight_ih, 0, i),
                    Output {
                        buffer: &seg.dx,
                        offset: 0,
                        row_stride: i,
                        accumulate: false,
                        bias: None,
                    },
                    &self.dummy,
                )?;
            }
        }
        rec.set_phase(Phase::BackwardRecurrence);
        if request.input_grads {
            // dh0 = h_carry + dgates_hh[1] W_hh (dc0 is left in dc_carry): the carry holds
            // the GRU's direct path z_1 * dE/dh_1 (and is zero for the others).
            rec.copy(&ws.h_carry, 0, &ws.dh0, 0, b * h);
            record_gemm(
                gpu,
                rec,
                (b, h, gh),
                Operand::new(ws.set(0).dgates_hh(config.cell), 0, gh),
                Operand::new(&p.weight_hh, 0, h),
                Output {
                    buffer: &ws.dh0,
                    offset: 0,
                    row_stride: h,
                    accumulate: true,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        rec.set_phase(Phase::WeightGradients);
        if request.param_grads && config.cell != Cell::Gru {
            // b_ih and b_hh enter the pre-activation identically: equal gradients.
            rec.copy(&g.bias_ih, 0, &g.bias_hh, 0, gh);
        }
        Ok(())
    }

    /// The cell kernel of local step `step` of segment `k`.
    fn record_step(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        k: usize,
        direction: Direction,
        step: usize,
        groups: [u32; 3],
    ) {
        let config = &self.config;
        let kernel = match (config.cell, direction) {
            (Cell::Rnn, Direction::Forward) => Kernel::RnnForward,
            (Cell::Rnn, Direction::Backward) => Kernel::RnnBackward,
            (Cell::Lstm, Direction::Forward) => Kernel::LstmForward,
            (Cell::Lstm, Direction::Backward) => Kernel::LstmBackward,
            (Cell::Gru, Direction::Forward) => Kernel::GruForward,
            (Cell::Gru, Direction::Backward) => Kernel::GruBackward,
        };
        let activation = match config.activation {
            Activation::Tanh => 0,
            Activation::Sigmoid => 1,
            Activation::Relu => 2,
        };
        // The RNN has no cell state: its slots get the dummy buffer. The GRU binds its
        // recurrent product and gradient and its h carry there instead.
        let a = ws.set(k);
        let (c_slot, dc_slot, carry_slot) = match config.cell {
            Cell::Lstm => (&a.cs, &a.dc, &ws.dc_carry),
            Cell::Gru => (&a.hh, &a.dhh, &self.dummy),
            Cell::Rnn => (&self.dummy, &self.dummy, &self.dummy),
        };
        rec.dispatch(
            kernel,
            &StepParams {
                batch: ws.batch as u32,
                hidden: config.hidden_size as u32,
                step: step as u32,
                activation,
                first_step: ws.segments[k].t0 as u32,
                _pad: [0; 3],
            },
            &[
                &a.gates,
                &a.hs,
                c_slot,
                &self.params.bias_hh,
                &a.dh,
                dc_slot,
                &a.dgates,
                carry_slot,
                &ws.lengths,
                &ws.h_carry,
            ],
            groups,
        );
    }

    /// destination[j] (+)= sum_r source[r, j] over `rows` rows of `width`.
    fn record_column_sums(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        (source, rows, width): (&wgpu::Buffer, usize, usize),
        destination: &wgpu::Buffer,
        accumulate: bool,
    ) -> Result<(), Error> {
        rec.dispatch(
            Kernel::ColumnSums,
            &ReduceParams {
                rows: rows as u32,
                n: width as u32,
                in_offset: 0,
                out_offset: 0,
                accumulate: accumulate as u32,
                _pad: [0; 3],
            },
            &[source, destination],
            gpu.grid("column sums", (width as u64).div_ceil(64))?,
        );
        Ok(())
    }

    /// destination[at] = sum of source[0..n], in a fixed order.
    fn record_row_sum(
        &self,
        rec: &mut Recorder,
        source: &wgpu::Buffer,
        n: usize,
        destination: &wgpu::Buffer,
        at: usize,
    ) {
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
    }
}
