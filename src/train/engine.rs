//! One training step on either device, behind one interface: the GPU engine (one submission
//! per step) or the CPU reference (the same mathematics in f32 on ndarray).

use crate::config::ModelConfig;
use crate::cpu;
use crate::data::Batch;
use crate::error::Error;
use crate::internals::distributed::{self, Collective, Share};
use crate::internals::gpu::optim::GpuOptimizer;
use crate::internals::gpu::{Gpu, GpuModel, Recurrence, Request};
use crate::internals::plan::{MemoryPlan, PlanOptions};
use crate::optim::{CpuOptimizer, OptimizerConfig};
use crate::params::Params;
use crate::precision::{LossScaler, Precision};
use ndarray::Array2;
use std::time::{Duration, Instant};

/// Updates taken and the optimizer's state tensors by name.
pub type OptimizerState = (u64, Vec<(String, Vec<f32>)>);

/// A batch's loss and per-step gradient norms, t = 1..T.
#[derive(Clone, Debug)]
pub struct GradientNorms {
    /// The batch's loss.
    pub loss: f32,
    /// `||dE/dh_t||` for t = 1..T, the 2-norm of the `[B, H]` gradient arriving at `h_t`;
    /// cell after cell (`L*D*T` values) for a stacked or bidirectional model.
    pub grad_norm_h: Vec<f32>,
    /// `||dE/dc_t||` likewise for the LSTM; `None` for the other cells.
    pub grad_norm_c: Option<Vec<f32>>,
}

/// What one step measured, all from before the update.
#[derive(Clone, Debug)]
pub struct StepResult {
    /// The batch's loss (under data-parallel training, the global batch's).
    pub loss: f32,
    /// The learning rate the update used, after the schedule.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// `||dE/dh_t||` for t = 1..T, when asked for.
    pub grad_norm_h: Option<Vec<f32>>,
    /// `||dE/dc_t||` for t = 1..T, when asked for and the cell is the LSTM.
    pub grad_norm_c: Option<Vec<f32>>,
    /// `h_T` and `c_T` (LSTM) `[B, H]`, when asked for (truncated BPTT carries them on).
    pub final_state: Option<State>,
    /// Under f16 storage: the update was skipped because the scaled gradient overflowed
    /// (dynamic loss scaling then halved its scale); the parameters are unchanged.
    pub skipped: bool,
}

/// A recurrent state `h` (and `c` for the LSTM), `[B, H]` each.
pub type State = (Array2<f32>, Option<Array2<f32>>);

/// What a step reads back beyond the loss: the per-step norms, the final state.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepWants {
    /// The per-step gradient norms `||dE/dh_t||` (and `||dE/dc_t||`).
    pub norms: bool,
    /// The final state `h_T` (and `c_T`).
    pub state: bool,
}

impl StepWants {
    /// What the GPU engine reads back for them.
    fn request(self) -> Request {
        Request {
            grad_norms: self.norms,
            final_state: self.state,
            ..Request::default()
        }
    }
}

/// One data-parallel step: its result, whether any rank was asked to stop, and the time
/// spent in the gradient collective (waiting for the slowest rank included).
#[derive(Clone, Debug)]
pub struct GroupStep {
    /// The step as on one device, its loss and gradient norm the global batch's.
    pub result: StepResult,
    /// Whether any rank was asked to stop: then every rank stops after this step.
    pub interrupted: bool,
    /// Time spent reducing the gradients, waiting for the slowest rank included.
    pub communication: std::time::Duration,
}

/// One training step (forward, BPTT, optimizer update) on either device, behind one
/// interface: the training loop, the vanishing study and the benchmarks drive both alike.
/// Make one with [`Engine::new`].
// One engine per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Engine<'g> {
    /// The GPU engine: the parameters and the optimizer's state stay on the GPU, and a step is
    /// one submission.
    Gpu {
        /// The context the model lives in.
        gpu: &'g Gpu,
        /// The parameters and the pass's buffers on the GPU.
        model: GpuModel,
        /// The optimizer's state on the GPU, updated by its kernels.
        optimizer: GpuOptimizer,
        /// Dynamic loss scaling, under f16 storage only.
        scaler: Option<LossScaler>,
    },
    /// The CPU reference in f32, the parameters in host memory.
    Cpu {
        /// The model's architecture.
        config: ModelConfig,
        /// The parameters, updated in place by every step.
        params: Params<f32>,
        /// The optimizer and its state.
        optimizer: CpuOptimizer<f32>,
        /// Dropout's masks for step n come from `stack::step_seed(dropout_seed, n)`.
        dropout_seed: u32,
        /// Where the activations are rounded to f16 as the GPU stores them.
        precision: Precision,
        /// Dynamic loss scaling, under f16 storage only.
        scaler: Option<LossScaler>,
    },
}

impl<'g> Engine<'g> {
    /// An engine for `config` starting from `params` with fresh optimizer state: on `gpu`
    /// where one is given (uploading the parameters), else on the CPU reference. Storage is
    /// f32 until [`set_precision`](Engine::set_precision) says otherwise.
    pub fn new(
        gpu: Option<&'g Gpu>,
        config: ModelConfig,
        params: &Params<f32>,
        optimizer: OptimizerConfig,
    ) -> Result<Self, Error> {
        Ok(match gpu {
            Some(gpu) => {
                let model = GpuModel::new(gpu, config, params)?;
                let optimizer = GpuOptimizer::new(gpu, &model, optimizer)?;
                Engine::Gpu {
                    gpu,
                    model,
                    optimizer,
                    scaler: None,
                }
            }
            None => Engine::Cpu {
                config,
                params: params.clone(),
                optimizer: CpuOptimizer::new(&config, optimizer)?,
                dropout_seed: 0,
                precision: Precision::F32,
                scaler: None,
            },
        })
    }

    /// Stores the activations, gates, their gradients and the weights' working copy in
    /// `precision` (`--precision`); f16 brings dynamic loss scaling, from its initial scale.
    pub fn set_precision(&mut self, precision: Precision) {
        let scaling = (precision == Precision::F16).then(LossScaler::default);
        match self {
            Engine::Gpu {
                model,
                optimizer,
                scaler,
                ..
            } => {
                let options = PlanOptions {
                    precision,
                    ..model.plan_options()
                };
                model.set_plan_options(options, optimizer.state_words());
                *scaler = scaling;
            }
            Engine::Cpu {
                precision: p,
                scaler,
                ..
            } => {
                *p = precision;
                *scaler = scaling;
            }
        }
    }

    /// Dynamic loss scaling's state (None under f32).
    pub fn loss_scaler(&self) -> Option<LossScaler> {
        match self {
            Engine::Gpu { scaler, .. } | Engine::Cpu { scaler, .. } => *scaler,
        }
    }

    /// Restores dynamic loss scaling's state (a resumed f16 run); ignored under f32.
    pub fn set_loss_scaler(&mut self, state: LossScaler) {
        match self {
            Engine::Gpu { scaler, .. } | Engine::Cpu { scaler, .. } => {
                if let Some(scaler) = scaler {
                    *scaler = state;
                }
            }
        }
    }

    /// The seed dropout's masks derive from, step by step (the run's `--seed`): the same seed
    /// draws the same masks on either engine.
    pub fn set_dropout_seed(&mut self, seed: u64) {
        let seed = cpu::stack::pcg_hash(seed as u32 ^ cpu::stack::pcg_hash((seed >> 32) as u32));
        match self {
            Engine::Gpu { model, .. } => model.dropout_seed = seed,
            Engine::Cpu { dropout_seed, .. } => *dropout_seed = seed,
        }
    }

    /// How the GPU engine plans its memory (`--recompute`, `--max-memory`); the CPU engine
    /// keeps every activation in host memory and ignores it. The precision stays
    /// `set_precision`'s.
    pub fn set_plan_options(&mut self, options: PlanOptions) {
        if let Engine::Gpu {
            model, optimizer, ..
        } = self
        {
            let options = PlanOptions {
                precision: model.plan_options().precision,
                ..options
            };
            model.set_plan_options(options, optimizer.state_words());
        }
    }

    /// How the GPU engine dispatches its time steps (`--recurrence`); the CPU engine ignores
    /// it. A way the adapter cannot run for a batch is refused when a batch comes
    /// (`Recurrence::resolve`).
    pub fn set_recurrence(&mut self, recurrence: Recurrence) {
        if let Engine::Gpu { model, .. } = self {
            model.recurrence = recurrence;
        }
    }

    /// The GPU memory plan for batches of `batch` sequences of `seq_len` steps (None on the
    /// CPU).
    pub fn memory_plan(&self, seq_len: usize, batch: usize) -> Result<Option<MemoryPlan>, Error> {
        match self {
            Engine::Gpu { gpu, model, .. } => model.memory_plan(gpu, seq_len, batch).map(Some),
            Engine::Cpu { .. } => Ok(None),
        }
    }

    /// Forward, BPTT and one optimizer update on `batch`.
    pub fn step(&mut self, batch: &Batch<f32>, want_norms: bool) -> Result<StepResult, Error> {
        self.step_with(batch, want_norms, false)
    }

    /// `step`, also returning the final state when `want_state`.
    pub fn step_with(
        &mut self,
        batch: &Batch<f32>,
        want_norms: bool,
        want_state: bool,
    ) -> Result<StepResult, Error> {
        let want = StepWants {
            norms: want_norms,
            state: want_state,
        };
        match self {
            Engine::Gpu {
                gpu,
                model,
                optimizer,
                scaler,
            } => {
                model.loss_scale = scaler.map_or(1.0, |s| s.scale);
                let out = model.train_step(gpu, batch, optimizer, want.request())?;
                let result = StepResult {
                    loss: out.loss,
                    lr: out.lr,
                    grad_norm: out.grad_norm,
                    grad_norm_h: out.output.grad_norm_h,
                    grad_norm_c: out.output.grad_norm_c,
                    final_state: out.output.h_n.map(|h| (h, out.output.c_n)),
                    skipped: false,
                };
                Ok(unscaled(result, model.loss_scale, scaler.as_mut()))
            }
            cpu => cpu_step(cpu.cpu_parts(), batch, want, |_, loss| Ok(loss)),
        }
    }

    /// `step_with` as one rank of a data-parallel job: the gradient of `batch` (this rank's
    /// slice of the global batch), reduced over `group` in rank order with every rank's loss
    /// and stop flag (`distributed::reduce_step`), then the same update on every rank. The
    /// loss and the gradient norm are the global batch's; the per-step norms and the final
    /// state this rank's.
    pub fn step_in_group(
        &mut self,
        batch: &Batch<f32>,
        want: StepWants,
        group: &dyn Collective,
        interrupted: bool,
    ) -> Result<GroupStep, Error> {
        let rows = batch.valid_rows(self.config().readout);
        let share = |loss| Share {
            loss,
            rows,
            interrupted,
        };
        let mut reduced = None;
        let mut communication = Duration::ZERO;
        let mut reduce = |grads: &mut Params<f32>, loss: f32| {
            let started = Instant::now();
            let step = distributed::reduce_step(group, grads, share(loss))?;
            communication = started.elapsed();
            reduced = Some(step);
            Ok(step.loss)
        };
        let result = match self {
            Engine::Gpu {
                gpu,
                model,
                optimizer,
                scaler,
            } => {
                // The overflow decision is taken on the reduced gradient's norm: every rank
                // skips together and keeps the same scale.
                model.loss_scale = scaler.map_or(1.0, |s| s.scale);
                let out = model.gradient_step(gpu, batch, optimizer, want.request())?;
                let mut grads = out.grads.expect("gradient_step reads the gradients");
                let loss = reduce(&mut grads, out.loss)?;
                // What came back is unscaled already: the update divides by nothing more.
                model.loss_scale = 1.0;
                let applied = model.apply_gradients(gpu, batch, optimizer, &grads)?;
                let result = StepResult {
                    loss,
                    lr: applied.lr,
                    grad_norm: applied.grad_norm,
                    grad_norm_h: out.grad_norm_h,
                    grad_norm_c: out.grad_norm_c,
                    final_state: out.h_n.map(|h| (h, out.c_n)),
                    skipped: false,
                };
                unscaled(result, model.loss_scale, scaler.as_mut())
            }
            cpu => cpu_step(cpu.cpu_parts(), batch, want, reduce)?,
        };
        let reduced = reduced.expect("every step reduces");
        Ok(GroupStep {
            result,
            interrupted: reduced.interrupted,
            communication,
        })
    }

    /// Which rows the loss scores.
    pub fn readout(&self) -> crate::config::Readout {
        self.config().readout
    }

    fn config(&self) -> ModelConfig {
        match self {
            Engine::Gpu { model, .. } => model.config,
            Engine::Cpu { config, .. } => *config,
        }
    }

    /// The loss and the per-step norms `||dE/dh_t||` (and `||dE/dc_t||`) on `batch`, without
    /// touching the parameters.
    pub fn gradient_norms(&self, batch: &Batch<f32>) -> Result<GradientNorms, Error> {
        match self {
            Engine::Gpu { gpu, model, .. } => {
                let request = Request {
                    backward: true,
                    grad_norms: true,
                    ..Request::default()
                };
                let out = model.run(gpu, batch, request)?;
                Ok(GradientNorms {
                    loss: out.loss,
                    grad_norm_h: out.grad_norm_h.expect("norms were requested"),
                    grad_norm_c: out.grad_norm_c,
                })
            }
            Engine::Cpu {
                config,
                params,
                precision,
                scaler,
                ..
            } => {
                let fwd = cpu::forward_in(config, params, batch, None, *precision)?;
                let scale = scaler.map_or(1.0, |s| s.scale);
                let bwd = cpu::backward_scaled(config, params, batch, &fwd, scale);
                Ok(GradientNorms {
                    loss: fwd.loss,
                    grad_norm_h: bwd.grad_norm_h,
                    grad_norm_c: bwd.grad_norm_c,
                })
            }
        }
    }

    /// The forward pass only, for its final state (truncated BPTT's unscored chunks).
    pub fn advance(&self, batch: &Batch<f32>) -> Result<State, Error> {
        match self {
            Engine::Gpu { gpu, model, .. } => {
                let request = Request {
                    final_state: true,
                    ..Request::default()
                };
                let out = model.run(gpu, batch, request)?;
                Ok((out.h_n.expect("requested"), out.c_n))
            }
            Engine::Cpu {
                config,
                params,
                precision,
                ..
            } => Ok(cpu::forward_in(config, params, batch, None, *precision)?.final_states()),
        }
    }

    /// The loss on `batch` without touching the parameters.
    pub fn evaluate(&self, batch: &Batch<f32>) -> Result<f32, Error> {
        match self {
            Engine::Gpu { gpu, model, .. } => Ok(model.run(gpu, batch, Request::default())?.loss),
            Engine::Cpu {
                config,
                params,
                precision,
                ..
            } => Ok(cpu::forward_in(config, params, batch, None, *precision)?.loss),
        }
    }

    /// The current parameters (read back from the GPU on the GPU engine).
    pub fn params(&self) -> Result<Params<f32>, Error> {
        match self {
            Engine::Gpu { gpu, model, .. } => model.params(gpu),
            Engine::Cpu { params, .. } => Ok(params.clone()),
        }
    }

    /// Updates taken so far and the optimizer's state tensors (PyTorch's names).
    pub fn optimizer_state(&self) -> Result<OptimizerState, Error> {
        match self {
            Engine::Gpu { gpu, optimizer, .. } => {
                Ok((optimizer.steps(), optimizer.state_tensors(gpu)?))
            }
            Engine::Cpu { optimizer, .. } => Ok((optimizer.steps(), optimizer.state_tensors())),
        }
    }

    /// Restores what [`optimizer_state`](Engine::optimizer_state) returned (a resumed run):
    /// the update count and every state tensor, refusing missing, unknown or misshapen ones.
    pub fn load_optimizer_state(
        &mut self,
        steps: u64,
        tensors: &[(String, Vec<f32>)],
    ) -> Result<(), Error> {
        match self {
            Engine::Gpu { gpu, optimizer, .. } => optimizer.load_state(gpu, steps, tensors),
            Engine::Cpu { optimizer, .. } => optimizer.load_state(steps, tensors),
        }
    }

    /// Where the steps run, for reports: `gpu: ADAPTER`, or the CPU engine's name with its
    /// storage and vector path, e.g. `cpu (reference, f32, avx2)`.
    pub fn device_name(&self) -> String {
        match self {
            Engine::Gpu { gpu, .. } => format!("gpu: {}", gpu.adapter_name()),
            Engine::Cpu { precision, .. } => cpu::engine_name(*precision),
        }
    }
}

impl Engine<'_> {
    /// The CPU engine's fields; only for `Engine::Cpu`.
    fn cpu_parts(&mut self) -> CpuParts<'_> {
        match self {
            Engine::Cpu {
                config,
                params,
                optimizer,
                dropout_seed,
                precision,
                scaler,
            } => CpuParts {
                config,
                params,
                optimizer,
                dropout_seed: *dropout_seed,
                precision: *precision,
                scaler,
            },
            Engine::Gpu { .. } => unreachable!("cpu_parts of the GPU engine"),
        }
    }
}

/// What the CPU engine's training step works on.
struct CpuParts<'e> {
    config: &'e ModelConfig,
    params: &'e mut Params<f32>,
    optimizer: &'e mut CpuOptimizer<f32>,
    dropout_seed: u32,
    precision: Precision,
    scaler: &'e mut Option<LossScaler>,
}

/// The CPU engine's training step: forward and BPTT with the step's dropout masks, the
/// gradient through `reduce` (which returns the loss to report: the batch's own alone, the
/// global batch's in a data-parallel group), then the update.
fn cpu_step(
    cpu: CpuParts<'_>,
    batch: &Batch<f32>,
    want: StepWants,
    reduce: impl FnOnce(&mut Params<f32>, f32) -> Result<f32, Error>,
) -> Result<StepResult, Error> {
    let CpuParts {
        config,
        params,
        optimizer,
        dropout_seed,
        precision,
        scaler,
    } = cpu;
    let seed = cpu::stack::step_seed(dropout_seed, optimizer.steps() + 1);
    let fwd = cpu::forward_in(config, params, batch, Some(seed), precision)?;
    // The backward pass divides the scale out again, so the rest sees true gradients.
    let scale = scaler.map_or(1.0, |s| s.scale);
    let mut bwd = cpu::backward_scaled(config, params, batch, &fwd, scale);
    let loss = reduce(&mut bwd.grads, fwd.loss)?;
    let lr = optimizer.config.lr_at(optimizer.steps() + 1);
    let grad_norm = optimizer.step(params, &bwd.grads);
    Ok(StepResult {
        loss,
        lr,
        grad_norm,
        grad_norm_h: want.norms.then_some(bwd.grad_norm_h),
        grad_norm_c: if want.norms { bwd.grad_norm_c } else { None },
        final_state: want.state.then(|| fwd.final_states()),
        skipped: scaler.as_mut().is_some_and(|s| s.update(grad_norm)),
    })
}

/// A GPU step's result with the loss scale divided out of the global gradient norm (the
/// optimizer's own read-back; the per-step norms come back unscaled), and the scaler moved on.
fn unscaled(mut result: StepResult, scale: f32, scaler: Option<&mut LossScaler>) -> StepResult {
    result.skipped = scaler.is_some_and(|s| s.update(result.grad_norm));
    result.grad_norm /= scale;
    result
}
