//! The activation and gradient buffers of one (seq_len, batch) shape, laid out as the memory
//! plan says (`crate::internals::plan`) and reused across runs of the same shape.
//!
//! The time axis is cut into segments of at most S steps. Each segment has its own inputs,
//! input gradients and (for `Readout::All`) head buffers; the activations (hs, cs, gates and
//! their gradients) live in one set per segment, or, under recomputation, in one shared set
//! that each segment refills from its saved start state.

use super::context::Gpu;
use super::param_buffers::ParamBuffers;
use crate::config::{ModelConfig, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::internals::plan::{MemoryPlan, Term};
use crate::precision::Precision;

/// The activations of one segment of `len <= S` steps, time-major, local step 1..=len.
pub(crate) struct Activations {
    /// [S+1, B, H], the segment's start state at row 0
    pub hs: wgpu::Buffer,
    /// [S+1, B, H] (LSTM only)
    pub cs: wgpu::Buffer,
    /// [S, B, G*H] pre-activations, then activated gates
    pub gates: wgpu::Buffer,
    /// [S, B, G*H]
    pub dgates: wgpu::Buffer,
    /// [S, B, H] total dE/dh_t
    pub dh: wgpu::Buffer,
    /// [S, B, H] total dE/dc_t (LSTM only)
    pub dc: wgpu::Buffer,
    /// [S, B, 3H] the recurrent product h_{t-1} W_hh^T, kept apart from the input's (GRU only)
    pub hh: wgpu::Buffer,
    /// [S, B, 3H] its gradient (GRU only)
    pub dhh: wgpu::Buffer,
}

/// The head's buffers for the rows one segment scores.
pub(crate) struct Scored {
    /// Rows scored: len*B for `Readout::All`, B for the last segment under `Readout::Last`.
    pub rows: usize,
    /// [rows, O]
    pub outputs: wgpu::Buffer,
    /// [rows, O] f32 values or [rows] u32 classes
    pub targets: wgpu::Buffer,
    /// [rows] each row's share of the mean loss
    pub row_loss: wgpu::Buffer,
    /// [rows, O]
    pub doutputs: wgpu::Buffer,
}

pub(crate) struct Segment {
    /// First step (0-based) and number of steps.
    pub t0: usize,
    pub len: usize,
    /// [len, B, I]
    pub x: wgpu::Buffer,
    /// [len, B, I]
    pub dx: wgpu::Buffer,
    pub scored: Option<Scored>,
    /// Under recomputation: the state (h, c) at the segment's start, [B, H] each.
    pub start: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// A cell beyond the first, in a stacked or bidirectional model, with buffers per segment as
/// the first cell has them (a bidirectional model runs as one segment).
pub(crate) struct CellSpace {
    /// One set per segment, or one shared set under recomputation
    pub sets: Vec<Activations>,
    /// [len, B, W] per segment: the cell's input in its own order: layer 0's x reversed, or
    /// the layer below's joined outputs (reversed for a reverse cell)
    pub x: Vec<wgpu::Buffer>,
    /// [len, B, W] per segment: dE/d(x) in the same order
    pub dx: Vec<wgpu::Buffer>,
    /// Under recomputation: the state (h, c) at each segment's start, [B, H] each
    pub starts: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// [B, H] each, as `Workspace`'s own for the first cell
    pub final_h: wgpu::Buffer,
    pub final_c: wgpu::Buffer,
    pub h_carry: wgpu::Buffer,
    pub dc_carry: wgpu::Buffer,
}

/// The buffers one cell's recurrence uses in one segment.
pub(crate) struct CellView<'a> {
    pub act: &'a Activations,
    pub x: &'a wgpu::Buffer,
    pub dx: &'a wgpu::Buffer,
    /// Under recomputation: the segment's saved start state (h, c)
    pub start: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    pub final_h: &'a wgpu::Buffer,
    pub final_c: &'a wgpu::Buffer,
    pub h_carry: &'a wgpu::Buffer,
    pub dc_carry: &'a wgpu::Buffer,
}

pub(crate) struct Workspace {
    pub plan: MemoryPlan,
    pub seq_len: usize,
    pub batch: usize,
    pub segments: Vec<Segment>,
    sets: Vec<Activations>,
    /// [parts] each scored segment's share of the loss, summed in order into `loss`
    pub loss_parts: wgpu::Buffer,
    /// [1]
    pub loss: wgpu::Buffer,
    /// [B, H] dE/dc along the cell path; dE/dc_0 after the backward loop (LSTM only)
    pub dc_carry: wgpu::Buffer,
    /// `[L*D*B, H]`: dE/dh0 of every cell, each cell's `[B, H]` block in turn
    pub dh0: wgpu::Buffer,
    /// [B, H] h_T and c_T
    pub final_h: wgpu::Buffer,
    pub final_c: wgpu::Buffer,
    pub grads: ParamBuffers,
    /// [2, L*D, T] ||dE/dh_t|| of every cell, then ||dE/dc_t|| for the LSTM
    pub norms: wgpu::Buffer,
    /// [B] u32: each sequence's length (T for all when the batch has none)
    pub lengths: wgpu::Buffer,
    /// [B, H] dE/dh passed back through padding steps (the GRU's direct path z * dE/dh too)
    pub h_carry: wgpu::Buffer,
    /// The uploaded batch's scored rows that count (`Batch::valid_rows`), and whether some
    /// do not (then the loss masks padding rows).
    pub valid_rows: usize,
    pub ragged: bool,
    /// Cells 1..L*D of a stacked or bidirectional model.
    pub upper: Vec<CellSpace>,
    /// [T*B, D*H] the head's input and its gradient, for a bidirectional `Readout::All`.
    pub head_in: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Under f16, per cell: the working copies of W_ih and W_hh (refilled from the f32
    /// parameters by every forward pass); empty under f32, where the pass reads the
    /// parameters themselves.
    pub weight_copies: Vec<(wgpu::Buffer, wgpu::Buffer)>,
}

impl Workspace {
    /// Allocates every buffer of the plan's list (`MemoryPlan::workspace`), each its term's
    /// size, named in errors as the plan names it.
    pub fn new(gpu: &Gpu, config: &ModelConfig, plan: MemoryPlan) -> Result<Self, Error> {
        let (t, b) = (plan.seq_len, plan.batch);
        let w = &plan.workspace;
        let buffer = |term: &Term| {
            gpu.storage_buffer_of(
                &format!("the {} {}", term.name, term.shape),
                term.words_each,
                term.precision,
            )
        };
        let new_sets = || -> Result<Vec<Activations>, Error> {
            (0..if plan.recompute { 1 } else { plan.segments })
                .map(|_| {
                    Ok(Activations {
                        hs: buffer(&w.hs)?,
                        cs: buffer(&w.cs)?,
                        gates: buffer(&w.gates)?,
                        dgates: buffer(&w.dgates)?,
                        dh: buffer(&w.dh)?,
                        dc: buffer(&w.dc)?,
                        hh: buffer(&w.hh)?,
                        dhh: buffer(&w.dhh)?,
                    })
                })
                .collect()
        };
        let start = || -> Result<_, Error> { Ok((buffer(&w.start_h)?, buffer(&w.start_c)?)) };
        let scored = |rows: usize| -> Result<Scored, Error> {
            Ok(Scored {
                rows,
                outputs: buffer(&w.outputs)?,
                targets: buffer(&w.targets)?,
                row_loss: buffer(&w.row_loss)?,
                doutputs: buffer(&w.doutputs)?,
            })
        };
        let ranges = plan.segment_ranges();
        let last = ranges.len() - 1;
        let segments = ranges
            .into_iter()
            .enumerate()
            .map(|(k, (t0, len))| {
                Ok(Segment {
                    t0,
                    len,
                    x: buffer(&w.x)?,
                    dx: buffer(&w.dx)?,
                    scored: match config.readout {
                        Readout::All => Some(scored(len * b)?),
                        Readout::Last if k == last => Some(scored(b)?),
                        Readout::Last => None,
                    },
                    start: plan.recompute.then(start).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let d = config.directions();
        let upper = (1..config.cells())
            .map(|c| {
                // layer 0's reverse cell reads the reversed inputs (one segment: bidirectional
                // models run whole); the layers above read the joined outputs below
                let (x, dx) = match c < d {
                    true => (&w.reversed_x, &w.reversed_dx),
                    false => (&w.upper_x, &w.upper_dx),
                };
                let per_segment = |term: &Term| -> Result<Vec<wgpu::Buffer>, Error> {
                    segments.iter().map(|_| buffer(term)).collect()
                };
                let starts = match plan.recompute {
                    true => segments.iter().map(|_| start()).collect::<Result<_, _>>()?,
                    false => Vec::new(),
                };
                Ok(CellSpace {
                    sets: new_sets()?,
                    x: per_segment(x)?,
                    dx: per_segment(dx)?,
                    starts,
                    final_h: buffer(&w.final_h)?,
                    final_c: buffer(&w.final_c)?,
                    h_carry: buffer(&w.h_carry)?,
                    dc_carry: buffer(&w.dc_carry)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let head_in = match w.head_in.count {
            0 => None,
            _ => Some((buffer(&w.head_in)?, buffer(&w.head_in)?)),
        };
        let weight_copies = match plan.precision {
            Precision::F32 => Vec::new(),
            _ => (0..config.cells())
                .map(|c| {
                    let ih = if c < d {
                        &w.weight_ih_copy
                    } else {
                        &w.upper_weight_ih_copy
                    };
                    Ok((buffer(ih)?, buffer(&w.weight_hh_copy)?))
                })
                .collect::<Result<_, Error>>()?,
        };
        Ok(Workspace {
            seq_len: t,
            batch: b,
            sets: new_sets()?,
            segments,
            loss_parts: buffer(&w.loss_parts)?,
            loss: buffer(&w.loss)?,
            dc_carry: buffer(&w.dc_carry)?,
            dh0: buffer(&w.dh0)?,
            final_h: buffer(&w.final_h)?,
            final_c: buffer(&w.final_c)?,
            grads: ParamBuffers::new(gpu, config, "gradient of")?,
            norms: buffer(&w.norms)?,
            lengths: buffer(&w.lengths)?,
            h_carry: buffer(&w.h_carry)?,
            valid_rows: config.scored_rows(t, b),
            ragged: false,
            upper,
            head_in,
            weight_copies,
            plan,
        })
    }

    /// Cell `c`'s buffers in segment `k`.
    pub fn cell(&self, c: usize, k: usize) -> CellView<'_> {
        let set = if self.plan.recompute { 0 } else { k };
        match c {
            0 => CellView {
                act: self.set(k),
                x: &self.segments[k].x,
                dx: &self.segments[k].dx,
                start: self.segments[k].start.as_ref().map(|(h, c)| (h, c)),
                final_h: &self.final_h,
                final_c: &self.final_c,
                h_carry: &self.h_carry,
                dc_carry: &self.dc_carry,
            },
            _ => {
                let u = &self.upper[c - 1];
                CellView {
                    act: &u.sets[set],
                    x: &u.x[k],
                    dx: &u.dx[k],
                    start: u.starts.get(k).map(|(h, c)| (h, c)),
                    final_h: &u.final_h,
                    final_c: &u.final_c,
                    h_carry: &u.h_carry,
                    dc_carry: &u.dc_carry,
                }
            }
        }
    }

    /// The activation buffers segment `k` computes into.
    pub fn set(&self, k: usize) -> &Activations {
        &self.sets[if self.plan.recompute { 0 } else { k }]
    }

    pub fn fits(&self, plan: &MemoryPlan) -> bool {
        (
            self.seq_len,
            self.batch,
            self.plan.segment_len,
            self.plan.recompute,
            self.plan.precision,
        ) == (
            plan.seq_len,
            plan.batch,
            plan.segment_len,
            plan.recompute,
            plan.precision,
        )
    }

    /// The element type of the activations and their gradients.
    pub fn precision(&self) -> Precision {
        self.plan.precision
    }

    /// Writes a batch's tensors (the writes land before the next submission). A missing
    /// initial state is written as zeros, since the buffers are reused.
    pub fn upload(&mut self, gpu: &Gpu, config: &ModelConfig, batch: &Batch<f32>) {
        let queue = &gpu.queue;
        let write = |buffer: &wgpu::Buffer, words: &[f32]| {
            queue.write_buffer(buffer, 0, bytemuck::cast_slice(words))
        };
        // Inputs and initial states in the activations' element type.
        let precision = self.precision();
        let write_stored = |buffer: &wgpu::Buffer, values: &[f32]| {
            queue.write_buffer(buffer, 0, &precision.encode(values))
        };
        let (b, h, i, o) = (
            self.batch,
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let lengths: Vec<u32> = match &batch.lengths {
            Some(lengths) => lengths.iter().map(|&l| l as u32).collect(),
            None => vec![self.seq_len as u32; b],
        };
        queue.write_buffer(&self.lengths, 0, bytemuck::cast_slice(&lengths));
        self.valid_rows = batch.valid_rows(config.readout);
        self.ragged = batch.lengths.is_some();
        let x = batch.x.as_standard_layout();
        let x = x.as_slice().unwrap();
        for seg in &self.segments {
            write_stored(&seg.x, &x[seg.t0 * b * i..(seg.t0 + seg.len) * b * i]);
        }
        // Every cell's initial state [B, H] from h0/c0 [L*D*B, H], zeros when absent (the
        // buffers are reused).
        let cells = config.cells();
        let zeros = vec![0.0f32; cells * b * h];
        let state = |s: &Option<ndarray::Array2<f32>>| {
            s.as_ref().map_or(zeros.clone(), |a| {
                a.as_standard_layout().iter().copied().collect()
            })
        };
        let (h0, c0) = (state(&batch.h0), state(&batch.c0));
        for c in 0..cells {
            let view = self.cell(c, 0);
            let (h_start, c_start) = view.start.unwrap_or((&view.act.hs, &view.act.cs));
            write_stored(h_start, &h0[c * b * h..(c + 1) * b * h]);
            if config.cell.has_cell_state() {
                write_stored(c_start, &c0[c * b * h..(c + 1) * b * h]);
            }
        }
        // Scored rows are time-major: segment k's rows follow segment k-1's.
        let mut first_row = 0;
        for scored in self.segments.iter().filter_map(|s| s.scored.as_ref()) {
            let rows = first_row..first_row + scored.rows;
            match &batch.targets {
                Targets::Values(y) => {
                    let y = y.as_standard_layout();
                    let y = y.as_slice().unwrap();
                    write(&scored.targets, &y[rows.start * o..rows.end * o])
                }
                Targets::Classes(c) => {
                    queue.write_buffer(&scored.targets, 0, bytemuck::cast_slice(&c[rows.clone()]))
                }
            }
            first_row = rows.end;
        }
    }
}
