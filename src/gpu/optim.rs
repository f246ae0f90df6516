//! Host side of `shaders/optim.wgsl`: optimizer state in GPU buffers, and
//! `GpuModel::train_step`, which records forward, BPTT, the global gradient norm, clipping and
//! the update into one submission with one wait. Semantics and names are those of
//! `crate::optim` (PyTorch's); `CpuOptimizer` there is the reference.

use super::context::Gpu;
use super::kernels::Kernel;
use super::model::{GpuModel, GpuOutput, Request};
use super::param_buffers::ParamBuffers;
use super::recorder::{Phase, Read, Recorder};
use crate::config::ModelConfig;
use crate::data::Batch;
use crate::error::Error;
use crate::optim::{match_state, state_tensor_names, OptimizerConfig, OptimizerKind};
use crate::params::Params;
use bytemuck::{Pod, Zeroable};

/// Elements one `grad_sum_squares` workgroup sums (`CHUNK` in optim.wgsl).
const CHUNK: usize = 4096;

/// Parameters of every optim.wgsl kernel (`OptimParams` there).
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct OptimParams {
    n: u32,
    offset: u32,
    clip: u32,
    max_norm: f32,
    lr: f32,
    weight_decay: f32,
    decay: f32,
    momentum: f32,
    alpha: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    inv_scale: f32,
    _pad: u32,
}

/// What `GpuModel::train_step` read back.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// Which update this was, counted from 1.
    pub step: u64,
    /// The learning rate the schedule gave this update.
    pub lr: f32,
    /// The loss of the forward pass, before the update.
    pub loss: f32,
    /// The global 2-norm over all parameter gradients before clipping, as BPTT left them:
    /// times `GpuModel::loss_scale` (1 under f32; `output`'s gradients are divided back).
    pub grad_norm: f32,
    /// What the `Request` asked for, all from before the update (gradients pre-clip).
    pub output: GpuOutput,
}

/// An optimizer's state on the GPU for one model's shapes: per parameter tensor, the buffers
/// `OptimizerKind::state_names` lists, plus the step counter.
pub struct GpuOptimizer {
    /// The kind, hyperparameters, schedule and clipping. Every update reads them afresh (the
    /// learning rate from the schedule at its step), so a change applies from the next one;
    /// the kind must stay the one the state buffers were made for.
    pub config: OptimizerConfig,
    model: ModelConfig,
    steps: u64,
    /// One set of buffers per `config.kind.state_names()` entry, zeros at first.
    state: Vec<ParamBuffers>,
    /// [1 + P]: the pre-clip global norm, then the per-chunk sums of squares of every tensor.
    reduction: wgpu::Buffer,
    /// Elements of each parameter tensor, in `PARAM_NAMES` order.
    lens: Vec<usize>,
    /// First word of each tensor's partial sums in `reduction`; the last entry is one past the
    /// end.
    partial_offsets: Vec<usize>,
}

impl GpuOptimizer {
    /// Zeroed state (wgpu zero-fills new buffers) for `model`'s parameter shapes.
    pub fn new(gpu: &Gpu, model: &GpuModel, config: OptimizerConfig) -> Result<Self, Error> {
        config.validate()?;
        let lens: Vec<usize> = Params::<f32>::zeros(&model.config)
            .tensors()
            .into_iter()
            .map(|(_, values)| values.len())
            .collect();
        let mut partial_offsets = vec![1; lens.len() + 1]; // word 0 holds the norm
        for (k, len) in lens.iter().enumerate() {
            partial_offsets[k + 1] = partial_offsets[k] + len.div_ceil(CHUNK);
        }
        let state = config
            .kind
            .state_names()
            .iter()
            .map(|name| ParamBuffers::new(gpu, &model.config, &format!("optimizer {name} of")))
            .collect::<Result<_, _>>()?;
        Ok(GpuOptimizer {
            config,
            model: model.config,
            steps: 0,
            state,
            reduction: gpu.storage_buffer(
                "the gradient norm and its partial sums of squares",
                partial_offsets[lens.len()],
            )?,
            lens,
            partial_offsets,
        })
    }

    /// Words of GPU memory the optimizer holds (state tensors and the norm's partial sums).
    pub fn state_words(&self) -> usize {
        self.state.len() * self.lens.iter().sum::<usize>() + self.partial_offsets[self.lens.len()]
    }

    /// Updates taken so far (the next one is `steps() + 1`).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Every state tensor under `optim::state_tensor_names` (`exp_avg.weight_ih_l0`, ...),
    /// flattened row-major, read back in one submission; for a checkpoint together with
    /// `steps()`.
    pub fn state_tensors(&self, gpu: &Gpu) -> Result<Vec<(String, Vec<f32>)>, Error> {
        if self.state.is_empty() {
            return Ok(Vec::new());
        }
        let reads: Vec<Read> = self
            .state
            .iter()
            .flat_map(|state| {
                state
                    .all()
                    .into_iter()
                    .zip(self.lens.iter().copied())
                    .map(|(buffer, len)| Read::words(buffer, 0, len))
            })
            .collect();
        let data = Recorder::new(gpu).submit_and_read(&reads)?;
        Ok(state_tensor_names(&self.config.kind, &self.model)
            .into_iter()
            .zip(data)
            .collect())
    }

    /// Restores what `state_tensors` saved (any order; every tensor must be there with its
    /// length) and the step counter. The writes land before the next submission.
    pub fn load_state(
        &mut self,
        gpu: &Gpu,
        steps: u64,
        tensors: &[(String, Vec<f32>)],
    ) -> Result<(), Error> {
        let found = match_state(&self.config.kind, &self.model, tensors)?;
        let buffers = self.state.iter().flat_map(|state| state.all());
        for (buffer, values) in buffers.zip(found) {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        self.steps = steps;
        Ok(())
    }

    fn check_model(&self, model: &ModelConfig) -> Result<(), Error> {
        if *model == self.model {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "the optimizer was made for a model {:?}, not {model:?}",
                self.model
            )))
        }
    }

    /// Records update `step` of `model`'s parameters from `grads` (shapes of the parameters):
    /// per-tensor sums of squares, the global norm, then one update dispatch per tensor that
    /// clips as it reads. Returns the step's learning rate.
    fn record(
        &self,
        gpu: &Gpu,
        rec: &mut Recorder,
        model: &GpuModel,
        grads: &ParamBuffers,
        step: u64,
    ) -> Result<f32, Error> {
        rec.set_phase(Phase::Optimizer);
        let s = self.config.scalars::<f32>(step);
        let base = OptimParams {
            clip: self.config.clip.is_some() as u32,
            max_norm: self.config.clip.unwrap_or(0.0),
            lr: s.lr,
            weight_decay: s.weight_decay,
            decay: s.decay,
            momentum: s.momentum,
            alpha: s.alpha,
            beta1: s.beta1,
            beta2: s.beta2,
            eps: s.eps,
            step_size: s.step_size,
            bias_correction2_sqrt: s.bias_correction2_sqrt,
            inv_scale: 1.0 / model.loss_scale,
            ..Default::default()
        };
        let (params, grads, dummy) = (model.params.all(), grads.all(), &model.dummy);
        for (k, &grad) in grads.iter().enumerate() {
            rec.dispatch(
                Kernel::GradSumSquares,
                &OptimParams {
                    n: self.lens[k] as u32,
                    offset: self.partial_offsets[k] as u32,
                    ..base
                },
                &[grad, dummy, dummy, dummy, &self.reduction],
                gpu.grid(
                    "gradient sums of squares",
                    self.lens[k].div_ceil(CHUNK) as u64,
                )?,
            );
        }
        // The grad slot is read-only: it takes a real gradient, since the dummy is bound
        // read-write beside it and a buffer cannot be both in one dispatch.
        rec.dispatch(
            Kernel::GradNorm,
            &OptimParams {
                n: (self.partial_offsets[self.lens.len()] - self.partial_offsets[0]) as u32,
                offset: self.partial_offsets[0] as u32,
                ..base
            },
            &[grads[0], dummy, dummy, dummy, &self.reduction],
            [1, 1, 1],
        );
        let kernel = match self.config.kind {
            OptimizerKind::Sgd { .. } => Kernel::SgdStep,
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => Kernel::AdamStep,
            OptimizerKind::RmsProp { .. } => Kernel::RmspropStep,
        };
        for k in 0..self.lens.len() {
            let state = |j: usize| self.state.get(j).map_or(dummy, |s| s.all()[k]);
            rec.dispatch(
                kernel,
                &OptimParams {
                    n: self.lens[k] as u32,
                    ..base
                },
                &[grads[k], params[k], state(0), state(1), &self.reduction],
                gpu.grid("an optimizer step", self.lens[k].div_ceil(64) as u64)?,
            );
        }
        Ok(s.lr)
    }
}

impl GpuModel {
    /// One training step on `batch` (x `[T, B, I]`, targets `[rows, O]` or `[rows]`): forward,
    /// BPTT for the parameter gradients, the global gradient norm, clipping and `optimizer`'s
    /// update of the parameters, recorded as one submission with one wait. Reads back the
    /// loss, the pre-clip gradient norm and what `request` names (`backward` is implied).
    pub fn train_step(
        &self,
        gpu: &Gpu,
        batch: &Batch<f32>,
        optimizer: &mut GpuOptimizer,
        request: Request,
    ) -> Result<TrainOutput, Error> {
        let config = &self.config;
        optimizer.check_model(config)?;
        let slot = self.workspace_with(gpu, batch)?;
        let ws = slot.as_ref().expect("workspace_with fills the slot");

        let mut recorder = Recorder::new(gpu);
        let step = optimizer.steps + 1;
        let dropout = Some(crate::cpu::stack::step_seed(self.dropout_seed, step));
        self.record_forward(gpu, &mut recorder, ws, dropout)?;
        let request = Request {
            backward: true,
            ..request
        };
        let with_grads = Request {
            param_grads: true,
            ..request
        };
        self.record_backward(gpu, &mut recorder, ws, with_grads, dropout)?;
        let lr = optimizer.record(gpu, &mut recorder, self, &ws.grads, step)?;
        let norm = Read::words(&optimizer.reduction, 0, 1);
        let (output, extra) = self.read(recorder, ws, request, vec![norm])?;
        optimizer.steps = step;
        Ok(TrainOutput {
            step,
            lr,
            loss: output.loss,
            grad_norm: extra[0][0],
            output,
        })
    }
}

/// `train_step` in two halves for data-parallel training, the gradients reduced over the
/// ranks in between (`crate::internals::distributed`).
impl GpuModel {
    /// Forward and BPTT on `batch` with the dropout of `optimizer`'s next step, the parameter
    /// gradients read back with what `request` names.
    pub fn gradient_step(
        &self,
        gpu: &Gpu,
        batch: &Batch<f32>,
        optimizer: &GpuOptimizer,
        request: Request,
    ) -> Result<GpuOutput, Error> {
        optimizer.check_model(&self.config)?;
        let slot = self.workspace_with(gpu, batch)?;
        let ws = slot.as_ref().expect("workspace_with fills the slot");
        let mut recorder = Recorder::new(gpu);
        let dropout = Some(crate::cpu::stack::step_seed(
            self.dropout_seed,
            optimizer.steps + 1,
        ));
        self.record_forward(gpu, &mut recorder, ws, dropout)?;
        let request = Request {
            backward: true,
            param_grads: true,
            ..request
        };
        self.record_backward(gpu, &mut recorder, ws, request, dropout)?;
        Ok(self.read(recorder, ws, request, Vec::new())?.0)
    }

    /// `grads` uploaded over the gradients of `batch`'s workspace, then the global norm,
    /// clipping and `optimizer`'s update as in `train_step`. Returns the learning rate and
    /// the pre-clip norm.
    pub fn apply_gradients(
        &self,
        gpu: &Gpu,
        batch: &Batch<f32>,
        optimizer: &mut GpuOptimizer,
        grads: &Params<f32>,
    ) -> Result<AppliedStep, Error> {
        optimizer.check_model(&self.config)?;
        let slot = self.workspace_with(gpu, batch)?;
        let ws = slot.as_ref().expect("workspace_with fills the slot");
        for (buffer, (_, values)) in ws.grads.all().into_iter().zip(grads.tensors()) {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
        let mut recorder = Recorder::new(gpu);
        let step = optimizer.steps + 1;
        let lr = optimizer.record(gpu, &mut recorder, self, &ws.grads, step)?;
        let norm = Read::words(&optimizer.reduction, 0, 1);
        let (_, extra) = self.read(recorder, ws, Request::default(), vec![norm])?;
        optimizer.steps = step;
        Ok(AppliedStep {
            lr,
            grad_norm: extra[0][0],
        })
    }
}

/// What `apply_gradients` did: the scheduled learning rate and the pre-clip gradient norm.
#[derive(Clone, Copy, Debug)]
pub struct AppliedStep {
    /// The learning rate the schedule gave this update.
    pub lr: f32,
    /// The global 2-norm of the uploaded gradients, before clipping, at the scale they were
    /// uploaded at.
    pub grad_norm: f32,
}
