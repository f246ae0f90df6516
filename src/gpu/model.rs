//! A model on the GPU: parameters in buffers, and `run`, which records the forward pass over
//! all T steps, the loss and (optionally) BPTT into one submission and reads back only what the
//! caller asked for.
//!
//! Shapes (f32, time-major): x [T, B, I]; hs, cs [T+1, B, H] with the initial state at step 0;
//! gates, dgates [T, B, G*H]; dh, dc [T, B, H]; outputs, doutputs [rows, O].

use super::cell::GpuCell;
use super::cells;
use super::context::Gpu;
use super::param_buffers::ParamBuffers;
use super::policy::Recurrence;
use super::recorder::{PhaseTimes, Read, Recorder};
use super::workspace::Workspace;
use crate::config::ModelConfig;
use crate::data::Batch;
use crate::error::Error;
use crate::internals::plan::{self, MemoryLimits, MemoryPlan, PlanOptions};
use crate::params::Params;
use bytemuck::{Pod, Zeroable};
use ndarray::{Array2, Array3};
use std::sync::Mutex;

/// Parameters of a cell kernel (`StepParams` in step.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct StepParams {
    pub batch: u32,
    pub hidden: u32,
    /// 1-based step within the segment's buffers
    pub step: u32,
    pub activation: u32,
    /// Steps before the segment (the sequence's step is first_step + step).
    pub first_step: u32,
    /// The persistent kernels run the segment's steps `run_start + 1 ..= run_end`; the fused
    /// step kernels take 0 and the segment's length.
    pub run_start: u32,
    pub run_end: u32,
    /// The persistent kernels' batch rows per workgroup (`PersistentSlices::rows`); the fused
    /// step kernels ignore it.
    pub slice_rows: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct LossParams {
    pub rows: u32,
    pub outputs: u32,
    /// Rows of the whole mean: the valid ones (a segment scores only some of them).
    pub mean_rows: u32,
    /// 1: rows are time-major steps from `first_step`, and those past their sequence's
    /// length are padding.
    pub mask_rows: u32,
    pub first_step: u32,
    pub batch: u32,
    pub loss_scale: f32,
    pub _pad: u32,
}

/// Parameters of the stack.wgsl kernels (`StackParams` there).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct StackParams {
    /// Steps of the segment, and steps before it.
    pub seq_len: u32,
    pub first_step: u32,
    pub batch: u32,
    pub width: u32,
    pub directions: u32,
    pub direction: u32,
    pub accumulate: u32,
    pub threshold: u32,
    pub seed: u32,
    pub layer: u32,
    pub scale: f32,
    /// copy_elements: elements to copy, and where from and to (in elements).
    pub count: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ReduceParams {
    pub rows: u32,
    pub n: u32,
    pub in_offset: u32,
    pub out_offset: u32,
    pub accumulate: u32,
    pub _pad: [u32; 3],
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
    /// GPU time per phase from timestamp queries, where the adapter has them (the passes are
    /// then split at phase changes and timed; see `Recorder::time_phases`).
    pub phase_times: bool,
}

impl Request {
    /// Every tensor read back (not the phase timing, which is no tensor).
    pub fn everything() -> Self {
        Request {
            backward: true,
            outputs: true,
            final_state: true,
            param_grads: true,
            input_grads: true,
            grad_norms: true,
            phase_times: false,
        }
    }
}

/// What `run` read back; fields not requested are `None`. Gradients and norms come back with
/// dynamic loss scaling's factor divided out. States are indexed as `Batch::h0` is: every
/// cell's `[B, H]` in turn, `[L*D*B, H]` in `ModelConfig::cells` order.
#[derive(Clone, Debug, Default)]
pub struct GpuOutput {
    /// The loss as `Loss` defines it: the mean over the scored rows of the sequences (rows past
    /// a shorter sequence's length left out), never scaled.
    pub loss: f32,
    /// The head's outputs `[rows, O]`, rows as `ModelConfig::scored_rows` counts them (`B`, or
    /// `T * B` time-major); `Request::outputs`.
    pub outputs: Option<Array2<f32>>,
    /// Every cell's hidden state after its last step, `[L*D*B, H]` (a sequence shorter than
    /// `T` keeps the state of its own last step); `Request::final_state`.
    pub h_n: Option<Array2<f32>>,
    /// The LSTM cells' cell states likewise; `None` for the RNN and GRU.
    pub c_n: Option<Array2<f32>>,
    /// dE/dparam for every parameter, shaped and named as the parameters;
    /// `Request::param_grads`.
    pub grads: Option<Params<f32>>,
    /// dE/dx `[T, B, I]`, the gradient with respect to the first layer's input;
    /// `Request::input_grads`.
    pub dx: Option<Array3<f32>>,
    /// dE/dh_0 `[L*D*B, H]`, the gradient with respect to every cell's initial hidden state;
    /// `Request::input_grads`.
    pub dh0: Option<Array2<f32>>,
    /// dE/dc_0 likewise, for the LSTM only.
    pub dc0: Option<Array2<f32>>,
    /// `||dE/dh_t||` for t = 1..T of each cell's processing order, cell by cell (`[L*D * T]`):
    /// the 2-norm over the whole `[B, H]` of the total gradient reaching `h_t`, whose decay
    /// shows gradients vanishing; `Request::grad_norms`.
    pub grad_norm_h: Option<Vec<f32>>,
    /// `||dE/dc_t||` likewise, for the LSTM only.
    pub grad_norm_c: Option<Vec<f32>>,
    /// GPU time per phase, when requested and the adapter has timestamp queries.
    pub phase_times: Option<PhaseTimes>,
}

/// A model on the GPU: its parameters in f32 buffers, uploaded once, and the workspace of
/// the batch shape it last ran (reallocated when the shape or the memory plan changes).
/// `run` computes a forward pass and BPTT in one submission; `train_step` (with a
/// `GpuOptimizer`) a whole training step.
pub struct GpuModel {
    /// What the model is. The parameter buffers are shaped for it, so it must not change.
    pub config: ModelConfig,
    pub(crate) params: ParamBuffers,
    /// Bound in slots a kernel does not use (the RNN's cell-state slots, a missing bias).
    pub(crate) dummy: wgpu::Buffer,
    workspace: Mutex<Option<Workspace>>,
    plan_options: PlanOptions,
    /// Words of optimizer state beside the model, for the memory plan.
    optimizer_words: usize,
    /// Training steps draw dropout masks from `stack::step_seed(dropout_seed, step)`.
    pub dropout_seed: u32,
    /// Per-step or persistent recurrence (`Auto` picks by size and adapter).
    pub recurrence: Recurrence,
    /// Dynamic loss scaling's current factor (a power of two; 1 under f32): the loss kernels
    /// scale the gradient by it, the optimizer divides it out, and the norms read back are
    /// the scaled ones (`precision::LossScaler` keeps it).
    pub loss_scale: f32,
}

impl GpuOutput {
    /// Divides dynamic loss scaling's factor out of every gradient (a power of two: exact).
    fn unscale(&mut self, scale: f32) {
        if scale == 1.0 {
            return;
        }
        let unscale = |v: &mut f32| *v /= scale;
        if let Some(grads) = &mut self.grads {
            grads.for_each_mut(|_, values| values.iter_mut().for_each(unscale));
        }
        (self.dx.iter_mut()).for_each(|a| a.iter_mut().for_each(unscale));
        for state in [&mut self.dh0, &mut self.dc0].into_iter().flatten() {
            state.iter_mut().for_each(unscale);
        }
        for norms in [&mut self.grad_norm_h, &mut self.grad_norm_c]
            .into_iter()
            .flatten()
        {
            norms.iter_mut().for_each(unscale);
        }
    }
}

impl GpuModel {
    /// What this model's cell does on the GPU (its kernels, bindings and buffers).
    pub(crate) fn cell(&self) -> &'static dyn GpuCell {
        cells::of(self.config.cell)
    }

    /// Uploads `params` (checked against `config`).
    pub fn new(gpu: &Gpu, config: ModelConfig, params: &Params<f32>) -> Result<Self, Error> {
        config.validate()?;
        params.check(&config)?;
        if let Some(limit) = gpu.loop_limit() {
            // The loss kernels loop over a row's O outputs up to 4 times in one invocation.
            let most = (limit / 2 / 4) as usize;
            if config.output_size > most {
                return Err(Error::Config(format!(
                    "output size {}: the loss kernels loop over a row's outputs 4 times in one \
                     invocation, and '{}' ends an invocation's loops after {limit} iterations \
                     in all, so it takes at most {most} outputs (GPUs have no such limit)",
                    config.output_size, gpu.info.name
                )));
            }
        }
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
            plan_options: PlanOptions::default(),
            optimizer_words: 0,
            dropout_seed: 0,
            recurrence: Recurrence::Auto,
            loss_scale: 1.0,
        })
    }

    /// Sets how workspaces are planned (`--recompute`, `--max-memory`) and the optimizer
    /// state to count in the plan; takes effect at the next workspace allocation.
    pub fn set_plan_options(&mut self, options: PlanOptions, optimizer_words: usize) {
        self.plan_options = options;
        self.optimizer_words = optimizer_words;
        *self.workspace.lock().unwrap() = None;
    }

    /// How workspaces are planned (`set_plan_options`; the default plan otherwise).
    pub fn plan_options(&self) -> PlanOptions {
        self.plan_options
    }

    /// The memory plan a batch of `batch` sequences of `seq_len` steps gets.
    pub fn memory_plan(
        &self,
        gpu: &Gpu,
        seq_len: usize,
        batch: usize,
    ) -> Result<MemoryPlan, Error> {
        let options = self.plan_options;
        let default_budget = default_memory_budget(gpu);
        let limits = MemoryLimits {
            max_binding: options
                .max_binding
                .map_or(gpu.limits.max_storage_buffer_binding_size, |m| {
                    m.min(gpu.limits.max_storage_buffer_binding_size)
                }),
            max_buffer: gpu.limits.max_buffer_size,
            uniform_align: gpu.limits.min_uniform_buffer_offset_alignment as u64,
            budget: options
                .max_memory
                .or(default_budget.map(|(bytes, _)| bytes)),
            budget_name: match (options.max_memory, default_budget) {
                (None, Some((_, name))) => name,
                _ => "--max-memory",
            },
        };
        plan::plan(
            &self.config,
            seq_len,
            batch,
            self.optimizer_words,
            options.recompute,
            options.precision,
            limits,
        )
    }

    /// Reads the parameters back.
    pub fn params(&self, gpu: &Gpu) -> Result<Params<f32>, Error> {
        let mut params = Params::zeros(&self.config);
        let reads: Vec<Read> = self
            .params
            .all()
            .into_iter()
            .zip(params.tensors())
            .map(|(buffer, (_, values))| Read::words(buffer, 0, values.len()))
            .collect();
        let data = Recorder::new(gpu).submit_and_read(&reads)?;
        let mut data = data.into_iter();
        params.for_each_mut(|_, values| values.copy_from_slice(&data.next().unwrap()));
        Ok(params)
    }

    /// Checks `batch`, makes sure the workspace fits its (T, B) and the memory plan
    /// (reallocating only when either changes) and uploads it. The guard keeps the workspace
    /// while a pass is recorded.
    pub(crate) fn workspace_with(
        &self,
        gpu: &Gpu,
        batch: &Batch<f32>,
    ) -> Result<std::sync::MutexGuard<'_, Option<Workspace>>, Error> {
        let config = &self.config;
        batch.check(config)?;
        gpu.check_precision(self.plan_options.precision)?;
        let plan = self.memory_plan(gpu, batch.seq_len(), batch.batch_size())?;
        let mut slot = self.workspace.lock().unwrap();
        if !slot.as_ref().is_some_and(|ws| ws.fits(&plan)) {
            *slot = None; // free the old buffers before allocating new ones
            *slot = Some(Workspace::new(gpu, config, plan)?);
        }
        slot.as_mut().unwrap().upload(gpu, config, batch);
        Ok(slot)
    }

    /// One forward pass over the whole batch, the loss, and with `request.backward` full BPTT,
    /// as a single submission with a single wait; reads back only what `request` names.
    pub fn run(&self, gpu: &Gpu, batch: &Batch<f32>, request: Request) -> Result<GpuOutput, Error> {
        let slot = self.workspace_with(gpu, batch)?;
        let ws = slot.as_ref().expect("workspace_with fills the slot");
        let mut recorder = Recorder::new(gpu);
        self.record_forward(gpu, &mut recorder, ws, None)?;
        if request.backward {
            self.record_backward(gpu, &mut recorder, ws, request, None)?;
        }
        self.read(recorder, ws, request, Vec::new())
            .map(|(out, _)| out)
    }

    /// Submits `recorder` and reads back what `request` names, plus the `extra` reads of the
    /// caller (returned in order after the output).
    pub(crate) fn read<'a>(
        &self,
        mut recorder: Recorder,
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
        let cell_state = self.config.cell.has_cell_state();
        let rows = config.scored_rows(t, b);
        let backward = request.backward;
        let whole = |buffer, len| Read::words(buffer, 0, len);
        // The states and input gradients in the activations' element type.
        let stored = |buffer, len| Read {
            precision: ws.precision(),
            ..Read::words(buffer, 0, len)
        };
        // Each wanted field is a group of reads, concatenated when unpacked (per-segment
        // tensors come back in time order).
        let mut reads = Vec::new();
        let mut groups = Vec::new();
        let mut want = |yes: bool, group: Vec<Read<'a>>| {
            if yes {
                groups.push(group.len());
                reads.extend(group);
            }
        };
        want(true, vec![whole(&ws.loss, 1)]);
        let scored = || ws.segments.iter().filter_map(|s| s.scored.as_ref());
        want(
            request.outputs,
            scored().map(|s| whole(&s.outputs, s.rows * o)).collect(),
        );
        // Every cell's [B, H] in turn: [L*D*B, H].
        let cells = config.cells();
        let per_cell = |state: fn(&super::workspace::CellView<'a>) -> &'a wgpu::Buffer,
                        read: &dyn Fn(&'a wgpu::Buffer, usize) -> Read<'a>| {
            (0..cells)
                .map(|c| read(state(&ws.cell(c, 0)), b * h))
                .collect::<Vec<_>>()
        };
        want(request.final_state, per_cell(|v| v.final_h, &stored));
        want(
            request.final_state && cell_state,
            per_cell(|v| v.final_c, &stored),
        );
        let grads = backward && request.param_grads;
        let template = Params::<f32>::zeros(config);
        for (buffer, (_, values)) in ws.grads.all().into_iter().zip(template.tensors()) {
            want(grads, vec![whole(buffer, values.len())]);
        }
        let inputs = backward && request.input_grads;
        want(
            inputs,
            ws.segments
                .iter()
                .map(|s| stored(&s.dx, s.len * b * i))
                .collect(),
        );
        want(inputs, vec![whole(&ws.dh0, cells * b * h)]);
        want(inputs && cell_state, per_cell(|v| v.dc_carry, &whole));
        let norms = backward && request.grad_norms;
        let norm_words = config.cells() * t;
        want(
            norms,
            vec![whole(
                &ws.norms,
                if cell_state {
                    2 * norm_words
                } else {
                    norm_words
                },
            )],
        );
        let extra_count = extra.len();
        reads.extend(extra);

        if request.phase_times {
            recorder.time_phases();
        }
        let (data, phase_times) = recorder.submit_and_read_timed(&reads)?;
        let mut data = data.into_iter();
        let mut groups = groups.into_iter();
        let mut next = |yes: bool| {
            yes.then(|| {
                (0..groups.next().unwrap())
                    .flat_map(|_| data.next().unwrap())
                    .collect::<Vec<f32>>()
            })
        };
        let mut out = GpuOutput {
            loss: next(true).unwrap()[0],
            phase_times,
            ..Default::default()
        };
        let matrix = |v: Vec<f32>, r, c| Array2::from_shape_vec((r, c), v).unwrap();
        out.outputs = next(request.outputs).map(|v| matrix(v, rows, o));
        out.h_n = next(request.final_state).map(|v| matrix(v, cells * b, h));
        out.c_n = next(request.final_state && cell_state).map(|v| matrix(v, cells * b, h));
        if grads {
            let mut params = template;
            params.for_each_mut(|_, values| values.copy_from_slice(&next(true).unwrap()));
            out.grads = Some(params);
        }
        out.dx = next(inputs).map(|v| Array3::from_shape_vec((t, b, i), v).unwrap());
        out.dh0 = next(inputs).map(|v| matrix(v, cells * b, h));
        out.dc0 = next(inputs && cell_state).map(|v| matrix(v, cells * b, h));
        if let Some(v) = next(norms) {
            out.grad_norm_h = Some(v[..norm_words].to_vec());
            out.grad_norm_c = cell_state.then(|| v[norm_words..].to_vec());
        }
        out.unscale(self.loss_scale);
        let extra: Vec<Vec<f32>> = data.collect();
        debug_assert_eq!(extra.len(), extra_count);
        Ok((out, extra))
    }
}

/// The memory budget when `--max-memory` is not given, where one can be known: a CPU adapter
/// (lavapipe) keeps its buffers in system memory, so 3/4 of it (Linux's /proc/meminfo). wgpu
/// reports no memory size for GPUs, which get none.
fn default_memory_budget(gpu: &Gpu) -> Option<(u64, &'static str)> {
    if gpu.info.device_type != wgpu::DeviceType::Cpu {
        return None;
    }
    Some((
        crate::internals::plan::system_memory()? / 4 * 3,
        "the default budget (3/4 of system memory, where a CPU adapter keeps its buffers; \
         --max-memory sets another)",
    ))
}
