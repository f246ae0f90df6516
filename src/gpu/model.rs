//! A model on the GPU: parameters in buffers, and `run`, which records the forward pass over
//! all T steps, the loss and (optionally) BPTT into one submission and reads back only what the
//! caller asked for.
//!
//! Shapes (f32, time-major): x [T, B, I]; hs, cs [T+1, B, H] with the initial state at step 0;
//! gates, dgates [T, B, G*H]; dh, dc [T, B, H]; outputs, doutputs [rows, O].

use super::context::Gpu;
use super::gemm::{record_gemm, Operand, Output};
use super::kernels::Kernel;
use super::recorder::{Read, Recorder};
use super::workspace::Workspace;
use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::data::Batch;
use crate::params::Params;
use crate::Error;
use bytemuck::{Pod, Zeroable};
use ndarray::{Array2, Array3};
use std::sync::Mutex;

/// Parameters of one time-step kernel (`StepParams` in rnn.wgsl / lstm.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StepParams {
    batch: u32,
    hidden: u32,
    step: u32,
    activation: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    rows: u32,
    outputs: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    rows: u32,
    n: u32,
    in_offset: u32,
    out_offset: u32,
    accumulate: u32,
    _pad: [u32; 3],
}

/// What `run` computes and reads back. The loss is always read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Run BPTT (needed by every gradient field below).
    pub backward: bool,
    /// The head's outputs `[rows, O]`.
    pub outputs: bool,
    /// `h_T` (and `c_T`), `[B, H]`.
    pub final_state: bool,
    /// Every parameter gradient.
    pub param_grads: bool,
    /// dE/dx `[T, B, I]`, dE/dh_0 and dE/dc_0 `[B, H]`.
    pub input_grads: bool,
    /// `||dE/dh_t||` (and `||dE/dc_t||`) for t = 1..T.
    pub grad_norms: bool,
}

impl Request {
    pub fn everything() -> Self {
        Request {
            backward: true,
            outputs: true,
            final_state: true,
            param_grads: true,
            input_grads: true,
            grad_norms: true,
        }
    }
}

/// What `run` read back; fields not requested are `None`.
#[derive(Clone, Debug, Default)]
pub struct GpuOutput {
    pub loss: f32,
    pub outputs: Option<Array2<f32>>,
    pub h_n: Option<Array2<f32>>,
    pub c_n: Option<Array2<f32>>,
    pub grads: Option<Params<f32>>,
    pub dx: Option<Array3<f32>>,
    pub dh0: Option<Array2<f32>>,
    pub dc0: Option<Array2<f32>>,
    pub grad_norm_h: Option<Vec<f32>>,
    pub grad_norm_c: Option<Vec<f32>>,
}

/// Parameter buffers, in `PARAM_NAMES` order.
pub(crate) struct ParamBuffers {
    pub weight_ih: wgpu::Buffer,
    pub weight_hh: wgpu::Buffer,
    pub bias_ih: wgpu::Buffer,
    pub bias_hh: wgpu::Buffer,
    pub head_weight: wgpu::Buffer,
    pub head_bias: wgpu::Buffer,
}

impl ParamBuffers {
    pub fn new(gpu: &Gpu, config: &ModelConfig, what: &str) -> Result<Self, Error> {
        let (gh, h, i, o) = (
            config.gate_rows(),
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let buffer = |name: &str, words| gpu.storage_buffer(&format!("{what} {name}"), words);
        Ok(ParamBuffers {
            weight_ih: buffer("weight_ih_l0", gh * i)?,
            weight_hh: buffer("weight_hh_l0", gh * h)?,
            bias_ih: buffer("bias_ih_l0", gh)?,
            bias_hh: buffer("bias_hh_l0", gh)?,
            head_weight: buffer("head.weight", o * h)?,
            head_bias: buffer("head.bias", o)?,
        })
    }

    pub fn all(&self) -> [&wgpu::Buffer; 6] {
        [
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
            &self.head_weight,
            &self.head_bias,
        ]
    }
}

pub struct GpuModel {
    pub config: ModelConfig,
    pub(crate) params: ParamBuffers,
    /// Bound in slots a kernel does not use (the RNN's cell-state slots, a missing bias).
    pub(crate) dummy: wgpu::Buffer,
    workspace: Mutex<Option<Workspace>>,
}

impl GpuModel {
    /// Uploads `params` (checked against `config`).
    pub fn new(gpu: &Gpu, config: ModelConfig, params: &Params<f32>) -> Result<Self, Error> {
        config.validate()?;
        params.check(&config)?;
        let buffers = ParamBuffers::new(gpu, &config, "parameter")?;
        for (buffer, (_, values)) in buffers.all().into_iter().zip(params.tensors()) {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        Ok(GpuModel {
            config,
            params: buffers,
            dummy: gpu.storage_buffer("unused binding", 0)?,
            workspace: Mutex::new(None),
        })
    }

    /// Reads the parameters back.
    pub fn params(&self, gpu: &Gpu) -> Result<Params<f32>, Error> {
        let mut params = Params::zeros(&self.config);
        let reads: Vec<Read> = self
            .params
            .all()
            .into_iter()
            .zip(params.tensors())
            .map(|(buffer, (_, values))| Read {
                buffer,
                offset: 0,
                len: values.len(),
            })
            .collect();
        let data = Recorder::new(gpu).submit_and_read(&reads)?;
        let mut data = data.into_iter();
        params.for_each_mut(|_, values| values.copy_from_slice(&data.next().unwrap()));
        Ok(params)
    }

    /// Checks `batch`, makes sure the workspace fits its (T, B) (reallocating only when the
    /// shape changes) and uploads it. The guard keeps the workspace while a pass is recorded.
    pub(crate) fn workspace_with(
        &self,
        gpu: &Gpu,
        batch: &Batch<f32>,
    ) -> Result<std::sync::MutexGuard<'_, Option<Workspace>>, Error> {
        let config = &self.config;
        batch.check(config)?;
        let (seq_len, batch_size) = (batch.seq_len(), batch.batch_size());
        let mut slot = self.workspace.lock().unwrap();
        if !slot.as_ref().is_some_and(|ws| ws.fits(seq_len, batch_size)) {
            *slot = None; // free the old buffers before allocating new ones
            *slot = Some(Workspace::new(gpu, config, seq_len, batch_size)?);
        }
        slot.as_ref().unwrap().upload(gpu, config, batch);
        Ok(slot)
    }

    /// One forward pass over the whole batch, the loss, and with `request.backward` full BPTT,
    /// as a single submission with a single wait; reads back only what `request` names.
    pub fn run(&self, gpu: &Gpu, batch: &Batch<f32>, request: Request) -> Result<GpuOutput, Error> {
        let slot = self.workspace_with(gpu, batch)?;
        let ws = slot.as_ref().expect("workspace_with fills the slot");
        let mut recorder = Recorder::new(gpu);
        self.record_forward(gpu, &mut recorder, ws)?;
        if request.backward {
            self.record_backward(gpu, &mut recorder, ws, request)?;
        }
        self.read(recorder, ws, request, Vec::new())
            .map(|(out, _)| out)
    }

    pub(crate) fn record_forward(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        ws: &Workspace,
    ) -> Result<(), Error> {
        let config = &self.config;
        let p = &self.params;
        let (t_len, b, h, i, o) = (
            ws.seq_len,
            ws.batch,
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let gh = config.gate_rows();
        // Input projection of all T steps at once: gates[T*B, GH] = x W_ih^T + b_ih.
        record_gemm(
            gpu,
            rec,
            (t_len * b, gh, i),
            Operand::new(&ws.x, 0, i),
            Operand::new(&p.weight_ih, 0, i).t(),
            Output {
                buffer: &ws.gates,
                offset: 0,
                row_stride: gh,
                accumulate: false,
                bias: Some((&p.bias_ih, 0)),
            },
            &self.dummy,
        )?;
        let groups = gpu.grid("a time step", ((b * h) as u64).div_ceil(64))?;
        for t in 1..=t_len {
            // gates[t] += h_{t-1} W_hh^T
            record_gemm(
                gpu,
                rec,
                (b, gh, h),
                Operand::new(&ws.hs, (t - 1) * b * h, h),
                Operand::new(&p.weight_hh, 0, h).t(),
                Output {
                    buffer: &ws.gates,
                    offset: (t - 1) * b * gh,
                    row_stride: gh,
                    accumulate: true,
                    bias: None,
                },
                &self.dummy,
            )?;
            self.record_step(rec, ws, Direction::Forward, t, groups);
        }
        // Head: outputs[rows, O] = h_rows W_out^T + b_out
        let (rows, first_row) = self.scored(ws);
        record_gemm(
            gpu,
            rec,
            (rows, o, h),
            Operand::new(&ws.hs, first_row, h),
            Operand::new(&p.head_weight, 0, h).t(),
            Output {
                buffer: &ws.outputs,
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
                rows: rows as u32,
                outputs: o as u32,
                _pad: [0; 2],
            },
            &[&ws.outputs, &ws.targets, &ws.row_loss, &ws.doutputs],
            gpu.grid("the loss", (rows as u64).div_ceil(64))?,
        );
        rec.dispatch(
            Kernel::RowSums,
            &ReduceParams {
                rows: 1,
                n: rows as u32,
                in_offset: 0,
                out_offset: 0,
                accumulate: 0,
                _pad: [0; 3],
            },
            &[&ws.row_loss, &ws.loss],
            [1, 1, 1],
        );
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
        let (rows, first_row) = self.scored(ws);

        // The head's share of dE/dh_t: doutputs W_out, into the scored steps of dh.
        if config.readout == Readout::Last {
            rec.clear(&ws.dh);
        }
        record_gemm(
            gpu,
            rec,
            (rows, h, o),
            Operand::new(&ws.doutputs, 0, o),
            Operand::new(&p.head_weight, 0, h),
            Output {
                buffer: &ws.dh,
                offset: first_row - b * h, // dh has no step 0
                row_stride: h,
                accumulate: false,
                bias: None,
            },
            &self.dummy,
        )?;
        if request.param_grads {
            // d head.weight [O, H] = doutputs^T h_rows;  d head.bias = column sums
            record_gemm(
                gpu,
                rec,
                (o, h, rows),
                Operand::new(&ws.doutputs, 0, o).t(),
                Operand::new(&ws.hs, first_row, h),
                Output {
                    buffer: &g.head_weight,
                    offset: 0,
                    row_stride: h,
                    accumulate: false,
                    bias: None,
                },
                &self.dummy,
            )?;
            self.record_column_sums(gpu, rec, &ws.doutputs, rows, o, &g.head_bias)?;
        }

        if config.cell == Cell::Lstm {
            rec.clear(&ws.dc_carry);
        }
        let groups = gpu.grid("a time step", ((b * h) as u64).div_ceil(64))?;
        for t in (1..=t_len).rev() {
            if t < t_len {
                // dh[t] += dgates[t+1] W_hh
                record_gemm(
                    gpu,
                    rec,
                    (b, h, gh),
                    Operand::new(&ws.dgates, t * b * gh, gh),
                    Operand::new(&p.weight_hh, 0, h),
                    Output {
                        buffer: &ws.dh,
                        offset: (t - 1) * b * h,
                        row_stride: h,
                        accumulate: true,
                        bias: None,
                    },
                    &self.dummy,
                )?;
            }
            self.record_step(rec, ws, Direction::Backward, t, groups);
        }

        if request.input_grads {
            // dh0 = dgates[1] W_hh;  dx = dgates W_ih  (dc0 is left in dc_carry)
            record_gemm(
                gpu,
                rec,
                (b, h, gh),
                Operand::new(&ws.dgates, 0, gh),
                Operand::new(&p.weight_hh, 0, h),
                Output {
                    buffer: &ws.dh0,
                    offset: 0,
                    row_stride: h,
                    accumulate: false,
                    bias: None,
                },
                &self.dummy,
            )?;
            record_gemm(
                gpu,
                rec,
                (t_len * b, i, gh),
                Operand::new(&ws.dgates, 0, gh),
                Operand::new(&p.weight_ih, 0, i),
                Output {
                    buffer: &ws.dx,
                    offset: 0,
                    row_stride: i,
                    accumulate: false,
                    bias: None,
                },
                &self.dummy,
            )?;
        }
        if request.param_grads {
            // Weight gradients over all T*B rows at once:
            // dW_ih = dgates^T x,  dW_hh = dgates^T hs[0..T],  db = column sums of dgates.
            for (weight, source, width) in [(&g.weight_ih, &ws.x, i), (&g.weight_hh, &ws.hs, h)] {
                record_gemm(
                    gpu,
                    rec,
                    (gh, width, t_len * b),
                    Operand::new(&ws.dgates, 0, gh).t(),
                    Operand::new(source, 0, width),
                    Output {
                        buffer: weight,
                        offset: 0,
                        row_stride: width,
                        accumulate: false,
                        bias: None,
                    },
                    &self.dummy,
                )?;
            }
            self.record_column_sums(gpu, rec, &ws.dgates, t_len * b, gh, &g.bias_ih)?;
            // b_ih and b_hh enter the pre-activation identically: equal gradients.
            rec.copy(&g.bias_ih, 0, &g.bias_hh, 0, gh);
        }
        if request.grad_norms {
            let norm_groups = gpu.grid("per-step gradient norms", t_len as u64)?;
            let mut norms = vec![&ws.dh];
            if config.cell == Cell::Lstm {
                norms.push(&ws.dc);
            }
            for (k, source) in norms.into_iter().enumerate() {
                rec.dispatch(
                    Kernel::RowNorms,
                    &ReduceParams {
                        rows: t_len as u32,
                        n: (b * h) as u32,
                        in_offset: 0,
                        out_offset: (k * t_len) as u32,
                        accumulate: 0,
                        _pad: [0; 3],
                    },
                    &[source, &ws.norms],
                    norm_groups,
                );
            }
        }
        Ok(())
    }

    fn record_step(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
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
        };
        let activation = match config.activation {
            Activation::Tanh => 0,
            Activation::Sigmoid => 1,
            Activation::Relu => 2,
        };
        // The RNN has no cell state: its slots get the dummy buffer.
        let lstm = config.cell == Cell::Lstm;
        let cell_slot = |buffer| if lstm { buffer } else { &self.dummy };
        rec.dispatch(
            kernel,
            &StepParams {
                batch: ws.batch as u32,
                hidden: config.hidden_size as u32,
                step: step as u32,
                activation,
            },
            &[
                &ws.gates,
                &ws.hs,
                cell_slot(&ws.cs),
                &self.params.bias_hh,
                &ws.dh,
                cell_slot(&ws.dc),
                &ws.dgates,
                cell_slot(&ws.dc_carry),
            ],
            groups,
        );
    }

    fn record_column_sums(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        source: &wgpu::Buffer,
        rows: usize,
        width: usize,
        destination: &wgpu::Buffer,
    ) -> Result<(), Error> {
        rec.dispatch(
            Kernel::ColumnSums,
            &ReduceParams {
                rows: rows as u32,
                n: width as u32,
                in_offset: 0,
                out_offset: 0,
                accumulate: 0,
                _pad: [0; 3],
            },
            &[source, destination],
            gpu.grid("column sums", (width as u64).div_ceil(64))?,
        );
        Ok(())
    }

    /// (scored rows, word offset of the first scored hidden state in `hs`)
    fn scored(&self, ws: &Workspace) -> (usize, usize) {
        let (t, b, h) = (ws.seq_len, ws.batch, self.config.hidden_size);
        match self.config.readout {
            Readout::Last => (b, t * b * h),
            Readout::All => (t * b, b * h),
        }
    }

    /// Submits `recorder` and reads back what `request` names, plus the `extra` reads of the
    /// caller (returned in order after the output).
    pub(crate) fn read<'a>(
        &self,
        recorder: Recorder,
        ws: &'a Workspace,
        request: Request,
        extra: Vec<Read<'a>>,
    ) -> Result<(GpuOutput, Vec<Vec<f32>>), Error> {
        let config = &self.config;
        let (t, b, h, i, o) = (
            ws.seq_len,
            ws.batch,
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let lstm = config.cell == Cell::Lstm;
        let (rows, _) = self.scored(ws);
        let backward = request.backward;
        let whole = |buffer, len| Read {
            buffer,
            offset: 0,
            len,
        };
        // (wanted, read) in the order the results are unpacked below
        let mut reads = vec![whole(&ws.loss, 1)];
        fn want<'a>(reads: &mut Vec<Read<'a>>, yes: bool, read: Read<'a>) {
            if yes {
                reads.push(read)
            }
        }
        want(&mut reads, request.outputs, whole(&ws.outputs, rows * o));
        let last_state = |buffer| Read {
            buffer,
            offset: t * b * h,
            len: b * h,
        };
        want(&mut reads, request.final_state, last_state(&ws.hs));
        want(&mut reads, request.final_state && lstm, last_state(&ws.cs));
        let grads = backward && request.param_grads;
        let template = Params::<f32>::zeros(config);
        for (buffer, (_, values)) in ws.grads.all().into_iter().zip(template.tensors()) {
            want(&mut reads, grads, whole(buffer, values.len()));
        }
        let inputs = backward && request.input_grads;
        want(&mut reads, inputs, whole(&ws.dx, t * b * i));
        want(&mut reads, inputs, whole(&ws.dh0, b * h));
        want(&mut reads, inputs && lstm, whole(&ws.dc_carry, b * h));
        let norms = backward && request.grad_norms;
        want(
            &mut reads,
            norms,
            whole(&ws.norms, if lstm { 2 * t } else { t }),
        );
        reads.extend(extra);

        let mut data = recorder.submit_and_read(&reads)?.into_iter();
        let mut next = |yes: bool| if yes { data.next() } else { None };
        let mut out = GpuOutput {
            loss: next(true).unwrap()[0],
            ..Default::default()
        };
        let matrix = |v: Vec<f32>, r, c| Array2::from_shape_vec((r, c), v).unwrap();
        out.outputs = next(request.outputs).map(|v| matrix(v, rows, o));
        out.h_n = next(request.final_state).map(|v| matrix(v, b, h));
        out.c_n = next(request.final_state && lstm).map(|v| matrix(v, b, h));
        if grads {
            let mut params = template;
            params.for_each_mut(|_, values| values.copy_from_slice(&next(true).unwrap()));
            out.grads = Some(params);
        }
        out.dx = next(inputs).map(|v| Array3::from_shape_vec((t, b, i), v).unwrap());
        out.dh0 = next(inputs).map(|v| matrix(v, b, h));
        out.dc0 = next(inputs && lstm).map(|v| matrix(v, b, h));
        if let Some(v) = next(norms) {
            out.grad_norm_h = Some(v[..t].to_vec());
            out.grad_norm_c = lstm.then(|| v[t..].to_vec());
        }
        Ok((out, data.collect()))
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}
