//! Optimizers and gradient-norm clipping with PyTorch's semantics (`torch.optim.SGD`, `Adam`,
//! `AdamW`, `RMSprop`, `torch.nn.utils.clip_grad_norm_`), so hyperparameters and results carry
//! over. This is the CPU reference; `gpu::optim` runs the same arithmetic in `shaders/optim.wgsl`,
//! and the per-tensor functions here share their names with its kernels.
//!
//! One step: the global 2-norm over all gradient tensors, clipping (every gradient scaled by
//! `min(1, max_norm / (norm + 1e-6))`), then the update with the scheduled learning rate.

use crate::config::ModelConfig;
use crate::error::Error;
use crate::float::Float;
use crate::params::{param_names, Params};
use std::fmt;
use std::str::FromStr;

/// The update rule and its hyperparameters; `OptimizerKind::sgd()` etc. give PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD` with dampening 0 and nesterov off; `weight_decay` is L2 added to the
    /// gradient.
    Sgd {
        /// Momentum factor; 0 keeps no buffer.
        momentum: f32,
        /// L2 penalty, added to the gradient as `weight_decay * p`.
        weight_decay: f32,
    },
    /// `torch.optim.Adam` (amsgrad off); `weight_decay` is L2 added to the gradient.
    Adam {
        /// Decay of the running mean of the gradient (PyTorch's `betas[0]`).
        beta1: f32,
        /// Decay of the running mean of its square (PyTorch's `betas[1]`).
        beta2: f32,
        /// Added to the denominator's square root, for numerical stability.
        eps: f32,
        /// L2 penalty, added to the gradient as `weight_decay * p`.
        weight_decay: f32,
    },
    /// `torch.optim.AdamW`: decoupled decay, `p *= 1 - lr * weight_decay` before the Adam step.
    AdamW {
        /// Decay of the running mean of the gradient (PyTorch's `betas[0]`).
        beta1: f32,
        /// Decay of the running mean of its square (PyTorch's `betas[1]`).
        beta2: f32,
        /// Added to the denominator's square root, for numerical stability.
        eps: f32,
        /// Decoupled weight decay: each step multiplies `p` by `1 - lr * weight_decay`.
        weight_decay: f32,
    },
    /// `torch.optim.RMSprop` (centered off, no weight decay).
    RmsProp {
        /// Decay of the running mean of the squared gradient.
        alpha: f32,
        /// Added to the denominator's square root, for numerical stability.
        eps: f32,
        /// Momentum factor applied to the scaled step; 0 keeps no buffer.
        momentum: f32,
    },
}

impl OptimizerKind {
    /// Every accepted spelling, for error messages and `--help`.
    pub const NAMES: &'static [&'static str] = &["sgd", "adam", "adamw", "rmsprop"];

    /// SGD with PyTorch's defaults: no momentum, no weight decay.
    pub fn sgd() -> Self {
        OptimizerKind::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }

    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 1e-2.
    pub fn adamw() -> Self {
        OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }

    /// RMSprop with PyTorch's defaults: alpha 0.99, eps 1e-8, no momentum.
    pub fn rmsprop() -> Self {
        OptimizerKind::RmsProp {
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
        }
    }

    /// The rule's name as `--optimizer` takes it and checkpoints store it.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
            OptimizerKind::RmsProp { .. } => "rmsprop",
        }
    }

    /// PyTorch's default learning rate for this optimizer.
    pub fn default_lr(&self) -> f32 {
        match self {
            OptimizerKind::RmsProp { .. } => 1e-2,
            _ => 1e-3,
        }
    }

    /// The state tensors kept per parameter, under PyTorch's state keys, in the order the GPU
    /// kernels bind them (`state_a`, `state_b`). Plain SGD and RMSprop without momentum keep no
    /// momentum buffer, as in PyTorch.
    pub fn state_names(&self) -> &'static [&'static str] {
        match *self {
            OptimizerKind::Sgd { momentum, .. } if momentum != 0.0 => &["momentum_buffer"],
            OptimizerKind::Sgd { .. } => &[],
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::RmsProp { momentum, .. } if momentum > 0.0 => {
                &["square_avg", "momentum_buffer"]
            }
            OptimizerKind::RmsProp { .. } => &["square_avg"],
        }
    }
}

impl Default for OptimizerKind {
    fn default() -> Self {
        OptimizerKind::adam()
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name gives the optimizer with PyTorch's default hyperparameters.
impl FromStr for OptimizerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::sgd()),
            "adam" => Ok(OptimizerKind::adam()),
            "adamw" => Ok(OptimizerKind::adamw()),
            "rmsprop" => Ok(OptimizerKind::rmsprop()),
            _ => Err(Error::Config(format!(
                "unknown optimizer '{s}': expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// The learning rate as a function of the step, counted from 1 (the first update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The base learning rate at every step.
    #[default]
    Constant,
    /// Linear warmup: `lr * step / warmup_steps` up to step `warmup_steps`, then `lr`.
    Warmup {
        /// Steps the rate takes to rise linearly from `lr / warmup_steps` to `lr`.
        warmup_steps: u64,
    },
    /// Linear warmup as above, then half a cosine from `lr` (at step `warmup_steps`) down to
    /// `min_lr` (at step `total_steps`), and `min_lr` after it.
    Cosine {
        /// Steps of linear warmup before the decay starts.
        warmup_steps: u64,
        /// The step at which the rate reaches `min_lr`; more than `warmup_steps`.
        total_steps: u64,
        /// The rate at and after `total_steps`.
        min_lr: f32,
    },
}

impl Schedule {
    /// The learning rate of update `step` (1-based) for the base rate `base_lr`. Computed in
    /// f64 and rounded once, so CPU and GPU use the same f32 value.
    pub fn lr_at(&self, base_lr: f32, step: u64) -> f32 {
        let (lr, step) = (base_lr as f64, step.max(1) as f64);
        let warmup = |warmup_steps: u64| {
            if warmup_steps > 0 {
                (step / warmup_steps as f64).min(1.0)
            } else {
                1.0
            }
        };
        let rate = match *self {
            Schedule::Constant => lr,
            Schedule::Warmup { warmup_steps } => lr * warmup(warmup_steps),
            Schedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if step <= warmup_steps as f64 {
                    lr * warmup(warmup_steps)
                } else {
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    let progress = ((step - warmup_steps as f64) / span).min(1.0);
                    let min_lr = min_lr as f64;
                    min_lr + (lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        };
        rate as f32
    }

    /// Refuses a cosine schedule whose `total_steps` does not exceed `warmup_steps` or whose
    /// `min_lr` is negative or not finite.
    pub fn validate(&self) -> Result<(), Error> {
        if let Schedule::Cosine {
            warmup_steps,
            total_steps,
            min_lr,
        } = *self
        {
            if total_steps <= warmup_steps {
                return Err(Error::Config(format!(
                    "cosine schedule: total_steps ({total_steps}) must exceed warmup_steps \
                     ({warmup_steps})"
                )));
            }
            if !(min_lr >= 0.0 && min_lr.is_finite()) {
                return Err(Error::Config(format!(
                    "cosine schedule: min_lr must be finite and >= 0, got {min_lr}"
                )));
            }
        }
        Ok(())
    }
}

/// Spellings for the command line: `constant`, `warmup:W`, `cosine:W:TOTAL:MIN_LR`.
impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = |why: String| {
            Error::Config(format!(
                "invalid schedule '{s}': {why}; expected constant, warmup:W or \
                 cosine:W:TOTAL:MIN_LR (W, TOTAL steps, MIN_LR a learning rate)"
            ))
        };
        let steps = |text: &str| {
            text.parse::<u64>()
                .map_err(|e| bad(format!("'{text}' is not a step count ({e})")))
        };
        let schedule = match parts.as_slice() {
            [name] if name.eq_ignore_ascii_case("constant") => Schedule::Constant,
            [name, w] if name.eq_ignore_ascii_case("warmup") => Schedule::Warmup {
                warmup_steps: steps(w)?,
            },
            [name, w, total, min_lr] if name.eq_ignore_ascii_case("cosine") => Schedule::Cosine {
                warmup_steps: steps(w)?,
                total_steps: steps(total)?,
                min_lr: min_lr
                    .parse()
                    .map_err(|e| bad(format!("'{min_lr}' is not a number ({e})")))?,
            },
            _ => return Err(bad("unknown form".into())),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// Everything that defines a training step's update: rule, base learning rate, schedule and
/// optional clipping of the global gradient norm to `clip`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The update rule with its hyperparameters.
    pub kind: OptimizerKind,
    /// The base learning rate, which `schedule` scales per step.
    pub lr: f32,
    /// The learning rate against the step.
    pub schedule: Schedule,
    /// `max_norm` of `clip_grad_norm_`; `None` leaves gradients as they are.
    pub clip: Option<f32>,
}

impl OptimizerConfig {
    /// `kind` with PyTorch's default learning rate, a constant schedule and no clipping.
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            lr: kind.default_lr(),
            schedule: Schedule::Constant,
            clip: None,
        }
    }

    /// The learning rate of update `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f32 {
        self.schedule.lr_at(self.lr, step)
    }

    /// PyTorch's checks (lr, eps, weight decay, momentum >= 0; betas in [0, 1)), plus a
    /// positive finite `clip` and a valid schedule.
    pub fn validate(&self) -> Result<(), Error> {
        let mut checks = vec![("lr", self.lr)];
        match self.kind {
            OptimizerKind::Sgd {
                momentum,
                weight_decay,
            } => checks.extend([("momentum", momentum), ("weight_decay", weight_decay)]),
            OptimizerKind::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerKind::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                for (name, beta) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&beta) {
                        return Err(Error::Config(format!(
                            "{}: {name} must be in [0, 1), got {beta}",
                            self.kind
                        )));
                    }
                }
                checks.extend([("eps", eps), ("weight_decay", weight_decay)]);
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum,
            } => checks.extend([("alpha", alpha), ("eps", eps), ("momentum", momentum)]),
        }
        for (name, value) in checks {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::Config(format!(
                    "{}: {name} must be finite and >= 0, got {value}",
                    self.kind
                )));
            }
        }
        if let Some(max_norm) = self.clip {
            if !(max_norm > 0.0 && max_norm.is_finite()) {
                return Err(Error::Config(format!(
                    "clip (max gradient norm) must be finite and > 0, got {max_norm}"
                )));
            }
        }
        self.schedule.validate()
    }

    /// The scalars of update `step` (1-based) shared by every tensor: what the GPU kernels
    /// get in their uniform parameters. Computed in f64 (as PyTorch computes them in Python
    /// floats) and rounded once to `F`.
    pub(crate) fn scalars<F: Float>(&self, step: u64) -> StepScalars<F> {
        let lr = self.lr_at(step) as f64;
        let t = step.max(1) as f64;
        let mut s = StepScalars {
            lr,
            weight_decay: 0.0,
            decay: 1.0,
            momentum: 0.0,
            alpha: 0.0,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            step_size: lr,
            bias_correction2_sqrt: 1.0,
        };
        match self.kind {
            OptimizerKind::Sgd {
                momentum,
                weight_decay,
            } => {
                s.momentum = momentum as f64;
                s.weight_decay = weight_decay as f64;
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerKind::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let (beta1, beta2) = (beta1 as f64, beta2 as f64);
                if matches!(self.kind, OptimizerKind::AdamW { .. }) {
                    s.decay = 1.0 - lr * weight_decay as f64;
                } else {
                    s.weight_decay = weight_decay as f64;
                }
                s.beta1 = beta1;
                s.beta2 = beta2;
                s.eps = eps as f64;
                s.step_size = lr / (1.0 - beta1.powf(t));
                s.bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum,
            } => {
                s.alpha = alpha as f64;
                s.eps = eps as f64;
                s.momentum = momentum as f64;
            }
        }
        s.cast()
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::new(OptimizerKind::default())
    }
}

/// The per-step scalars of `OptimizerConfig::scalars`; fields a rule does not use are 0
/// (`decay` and `bias_correction2_sqrt` are 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StepScalars<F> {
    /// The scheduled learning rate.
    pub lr: F,
    /// Coupled L2 (SGD, Adam): added to the gradient as `weight_decay * p`.
    pub weight_decay: F,
    /// AdamW's decoupled decay factor `1 - lr * weight_decay`, applied to `p` first.
    pub decay: F,
    /// SGD's and RMSprop's momentum.
    pub momentum: F,
    /// RMSprop's smoothing constant.
    pub alpha: F,
    /// Adam's decay of the gradient's running mean.
    pub beta1: F,
    /// Adam's decay of the squared gradient's running mean.
    pub beta2: F,
    /// Adam's and RMSprop's denominator term.
    pub eps: F,
    /// Adam: `lr / (1 - beta1^t)`.
    pub step_size: F,
    /// Adam: `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: F,
}

impl StepScalars<f64> {
    fn cast<F: Float>(&self) -> StepScalars<F> {
        let c = |v: f64| F::from_f64(v).unwrap();
        StepScalars {
            lr: c(self.lr),
            weight_decay: c(self.weight_decay),
            decay: c(self.decay),
            momentum: c(self.momentum),
            alpha: c(self.alpha),
            beta1: c(self.beta1),
            beta2: c(self.beta2),
            eps: c(self.eps),
            step_size: c(self.step_size),
            bias_correction2_sqrt: c(self.bias_correction2_sqrt),
        }
    }
}

/// `grad [n]` -> `sum grad^2`, one tensor's share of the squared global norm.
pub(crate) fn grad_sum_squares<F: Float>(grad: &[F]) -> F {
    grad.iter().fold(F::zero(), |acc, &g| acc + g * g)
}

/// All six gradient tensors -> the global 2-norm `clip_grad_norm_` measures.
pub fn grad_norm<F: Float>(grads: &Params<F>) -> F {
    grads
        .tensors()
        .iter()
        .fold(F::zero(), |acc, (_, g)| acc + grad_sum_squares(g))
        .sqrt()
}

/// `clip_grad_norm_`'s factor for a pre-clip norm: `min(1, max_norm / (norm + 1e-6))`.
pub(crate) fn clip_scale<F: Float>(norm: F, max_norm: Option<f32>) -> F {
    match max_norm {
        Some(max_norm) => {
            let ratio = F::from_f32(max_norm).unwrap() / (norm + F::from_f64(1e-6).unwrap());
            ratio.min(F::one())
        }
        None => F::one(),
    }
}

/// Scalars a, b, weight w -> `torch.lerp(a, b, w)`, which PyTorch's Adam uses for `exp_avg`:
/// the branch keeps the rounding small for either end of w.
pub(crate) fn lerp<F: Float>(a: F, b: F, w: F) -> F {
    if w.abs() < F::from_f64(0.5).unwrap() {
        a + w * (b - a)
    } else {
        b - (b - a) * (F::one() - w)
    }
}

/// param, grad (already clipped), momentum_buffer `[n]` (empty when momentum is 0): one
/// `torch.optim.SGD` step in place.
pub(crate) fn sgd_step<F: Float>(
    param: &mut [F],
    grad: &[F],
    momentum_buffer: &mut [F],
    s: &StepScalars<F>,
) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if s.weight_decay != F::zero() {
            g = g + s.weight_decay * param[i];
        }
        if s.momentum != F::zero() {
            // PyTorch starts the buffer as a copy of g: momentum * 0 + g is exactly that.
            momentum_buffer[i] = s.momentum * momentum_buffer[i] + g;
            g = momentum_buffer[i];
        }
        param[i] = param[i] - s.lr * g;
    }
}

/// param, grad (already clipped), exp_avg, exp_avg_sq `[n]`: one `torch.optim.Adam` /
/// `AdamW` step in place (`s.decay` is AdamW's decoupled decay, `s.weight_decay` Adam's L2).
pub(crate) fn adam_step<F: Float>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_avg_sq: &mut [F],
    s: &StepScalars<F>,
) {
    let one = F::one();
    for i in 0..param.len() {
        let theta = param[i] * s.decay;
        let mut g = grad[i];
        if s.weight_decay != F::zero() {
            g = g + s.weight_decay * theta;
        }
        let m = lerp(exp_avg[i], g, one - s.beta1);
        let v = s.beta2 * exp_avg_sq[i] + (one - s.beta2) * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
        param[i] = theta - s.step_size * (m / denom);
    }
}

/// param, grad (already clipped), square_avg, momentum_buffer `[n]` (empty when momentum is
/// 0): one `torch.optim.RMSprop` step in place.
pub(crate) fn rmsprop_step<F: Float>(
    param: &mut [F],
    grad: &[F],
    square_avg: &mut [F],
    momentum_buffer: &mut [F],
    s: &StepScalars<F>,
) {
    for i in 0..param.len() {
        let g = grad[i];
        let sq = s.alpha * square_avg[i] + (F::one() - s.alpha) * g * g;
        square_avg[i] = sq;
        let avg = sq.sqrt() + s.eps;
        if s.momentum > F::zero() {
            momentum_buffer[i] = s.momentum * momentum_buffer[i] + g / avg;
            param[i] = param[i] - s.lr * momentum_buffer[i];
        } else {
            param[i] = param[i] - s.lr * (g / avg);
        }
    }
}

/// `"{state}.{parameter}"`, e.g. `exp_avg.weight_ih_l0`: the names optimizer state is saved
/// under, for every state tensor in `OptimizerKind::state_names` order, each over
/// `params::param_names(model)`.
pub(crate) fn state_tensor_names(kind: &OptimizerKind, model: &ModelConfig) -> Vec<String> {
    let params = param_names(model);
    kind.state_names()
        .iter()
        .flat_map(|state| params.iter().map(move |param| format!("{state}.{param}")))
        .collect()
}

/// Finds every tensor `state_tensor_names` expects in `tensors` (any order), checking lengths
/// against `template`; refuses missing, unknown and duplicate names.
pub(crate) fn match_state<'a, T>(
    kind: &OptimizerKind,
    model: &ModelConfig,
    tensors: &'a [(String, Vec<T>)],
) -> Result<Vec<&'a [T]>, Error> {
    let names = state_tensor_names(kind, model);
    if let Some((name, _)) = tensors.iter().find(|(name, _)| !names.contains(name)) {
        return Err(Error::Value(format!(
            "optimizer state '{name}' does not belong to {kind}, which keeps: {}",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let lens: Vec<usize> = Params::<f32>::zeros(model)
        .tensors()
        .into_iter()
        .map(|(_, values)| values.len())
        .collect();
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut found = tensors.iter().filter(|(n, _)| n == name);
            let (_, values) = found
                .next()
                .ok_or_else(|| Error::Value(format!("optimizer state '{name}' is missing")))?;
            if found.next().is_some() {
                return Err(Error::Value(format!(
                    "optimizer state '{name}' is given twice"
                )));
            }
            let expected = lens[k % lens.len()];
            if values.len() != expected {
                return Err(Error::Shape {
                    what: format!("optimizer state '{name}'"),
                    got: vec![values.len()],
                    expected: vec![expected],
                });
            }
            Ok(values.as_slice())
        })
        .collect()
}

/// Every tensor of `params` as a mutable flat slice, in `param_names` order.
fn slices_mut<F: Float>(params: &mut Params<F>) -> Vec<&mut [F]> {
    params.tensors_mut().into_iter().map(|(_, v)| v).collect()
}

/// The CPU reference optimizer: state per parameter tensor, in f32 or f64.
#[derive(Clone, Debug)]
pub struct CpuOptimizer<F> {
    /// The rule, learning rate, schedule and clipping it applies.
    pub config: OptimizerConfig,
    model: ModelConfig,
    steps: u64,
    /// One `Params` per `config.kind.state_names()` entry, zeros before the first step.
    state: Vec<Params<F>>,
}

impl<F: Float> CpuOptimizer<F> {
    /// Fresh (zero) state for a model of `model`'s shapes.
    pub fn new(model: &ModelConfig, config: OptimizerConfig) -> Result<Self, Error> {
        model.validate()?;
        config.validate()?;
        Ok(CpuOptimizer {
            config,
            model: *model,
            steps: 0,
            state: config
                .kind
                .state_names()
                .iter()
                .map(|_| Params::zeros(model))
                .collect(),
        })
    }

    /// Updates taken so far (the next one is `steps() + 1`).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One training step on `params` [shapes of the model] with `grads` [the same shapes]:
    /// clips by the global norm when configured, applies the update, and returns the pre-clip
    /// global gradient norm. A non-finite norm skips the update (as PyTorch's `GradScaler`
    /// does): the parameters and the state stay as they were, the step is counted all the
    /// same, as in the GPU engine's `skipped()` (which has no read-back to decide otherwise).
    pub fn step(&mut self, params: &mut Params<F>, grads: &Params<F>) -> F {
        let norm = grad_norm(grads);
        self.steps += 1;
        if !norm.is_finite() {
            return norm;
        }
        let scale = clip_scale(norm, self.config.clip);
        let mut clipped = grads.clone();
        // clip_grad_norm_ multiplies even when the factor is 1, which changes nothing.
        clipped.for_each_mut(|_, values| values.iter_mut().for_each(|g| *g = *g * scale));
        let s = self.config.scalars::<F>(self.steps);
        let params = slices_mut(params);
        let grads = clipped.tensors();
        let mut states: Vec<Vec<&mut [F]>> = self.state.iter_mut().map(slices_mut).collect();
        for (k, param) in params.into_iter().enumerate() {
            let grad = grads[k].1;
            // state_a, state_b of this tensor; empty where the rule keeps none
            let mut state = states.iter_mut().map(|s| std::mem::take(&mut s[k]));
            let (a, b) = (
                state.next().unwrap_or_default(),
                state.next().unwrap_or_default(),
            );
            match self.config.kind {
                OptimizerKind::Sgd { .. } => sgd_step(param, grad, a, &s),
                OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => {
                    adam_step(param, grad, a, b, &s)
                }
                OptimizerKind::RmsProp { .. } => rmsprop_step(param, grad, a, b, &s),
            }
        }
        norm
    }

    /// Every state tensor under `state_tensor_names`, flattened row-major.
    pub fn state_tensors(&self) -> Vec<(String, Vec<F>)> {
        let names = state_tensor_names(&self.config.kind, &self.model);
        let values = self
            .state
            .iter()
            .flat_map(|state| state.tensors().into_iter().map(|(_, v)| v.to_vec()));
        names.into_iter().zip(values).collect()
    }

    /// Restores what `state_tensors` saved (in any order) and the step counter.
    pub fn load_state(&mut self, steps: u64, tensors: &[(String, Vec<F>)]) -> Result<(), Error> {
        let found = match_state(&self.config.kind, &self.model, tensors)?;
        let mut found = found.into_iter();
        for state in &mut self.state {
            state.for_each_mut(|_, values| values.copy_from_slice(found.next().unwrap()));
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Activation, Cell, Loss, Readout};

    fn close(got: f32, expected: f64) {
        assert!(
            (got as f64 - expected).abs() <= 1e-7 * expected.abs().max(1e-3),
            "got {got}, expected {expected}"
        );
    }

    #[test]
    fn constant_and_warmup_schedules() {
        // Constant: 0.1 at every step.
        // Warmup { 4 }, lr 0.1: 0.1 * step / 4 = 0.025, 0.05, 0.075, 0.1 for steps 1..4, then 0.1.
        for step in [1, 2, 1000] {
            close(Schedule::Constant.lr_at(0.1, step), 0.1);
        }
        let warmup = Schedule::Warmup { warmup_steps: 4 };
        for (step, lr) in [
            (1, 0.025),
            (2, 0.05),
            (3, 0.075),
            (4, 0.1),
            (5, 0.1),
            (99, 0.1),
        ] {
            close(warmup.lr_at(0.1, step), lr);
        }
        // No warmup steps means none.
        close(Schedule::Warmup { warmup_steps: 0 }.lr_at(0.1, 1), 0.1);
    }

    #[test]
    fn cosine_schedule() {
        // Cosine { warmup 2, total 6, min_lr 0.1 }, lr 1.0:
        //   step 1: warmup 1/2                                   = 0.5
        //   step 2: warmup 2/2                                   = 1.0
        //   step 3: progress (3-2)/(6-2) = 0.25: 0.1 + 0.9 * (1 + cos(pi/4))/2
        //           = 0.1 + 0.9 * 0.853553391                    = 0.868198052
        //   step 4: progress 0.5:  0.1 + 0.9 * 0.5               = 0.55
        //   step 5: progress 0.75: 0.1 + 0.9 * (1 + cos(3pi/4))/2
        //           = 0.1 + 0.9 * 0.146446609                    = 0.231801948
        //   step 6: progress 1: min_lr                           = 0.1
        //   step 9: past the end, min_lr                         = 0.1
        let cosine = Schedule::Cosine {
            warmup_steps: 2,
            total_steps: 6,
            min_lr: 0.1,
        };
        for (step, lr) in [
            (1, 0.5),
            (2, 1.0),
            (3, 0.868198052),
            (4, 0.55),
            (5, 0.231801948),
            (6, 0.1),
            (9, 0.1),
        ] {
            close(cosine.lr_at(1.0, step), lr);
        }
    }

    #[test]
    fn one_parameter_adam_steps_by_hand() {
        // p = 1, lr 0.1, betas (0.9, 0.999), eps 1e-8.
        // Step 1, g = 0.5: m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025,
        //   m_hat = 0.05 / (1 - 0.9) = 0.5, sqrt(v_hat) = sqrt(0.00025 / 0.001) = 0.5,
        //   p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.900000002.
        // Step 2, g = -0.25: m = 0.9 * 0.05 - 0.1 * 0.25 = 0.02,
        //   v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225,
        //   m_hat = 0.02 / (1 - 0.81) = 0.105263158,
        //   sqrt(v_hat) = sqrt(0.00031225 / (1 - 0.998001)) = sqrt(0.156203102) = 0.395225381,
        //   p = 0.900000002 - 0.1 * 0.105263158 / 0.395225391 = 0.873366299.
        let config = OptimizerConfig {
            lr: 0.1,
            ..OptimizerConfig::new(OptimizerKind::adam())
        };
        let (mut p, mut m, mut v) = ([1.0f64], [0.0], [0.0]);
        adam_step(&mut p, &[0.5], &mut m, &mut v, &config.scalars(1));
        // The f32 hyperparameters move the hand values a little: 0.9f32 = 0.899999976 and
        // 1 - 0.999f32 = 0.00099998713, so v comes out 1.3e-5 lower in relative terms (the bias
        // correction cancels that in p).
        assert!((p[0] - 0.900000002).abs() < 1e-7, "{}", p[0]);
        adam_step(&mut p, &[-0.25], &mut m, &mut v, &config.scalars(2));
        assert!((m[0] - 0.02).abs() < 1e-7, "{}", m[0]);
        assert!((v[0] / 0.00031225 - 1.0).abs() < 2e-5, "{}", v[0]);
        assert!((p[0] - 0.873366299).abs() < 1e-7, "{}", p[0]);
    }

    #[test]
    fn clipping_scales_by_the_global_norm_and_reports_it_before_clipping() {
        // H = I = O = 1: six one-element tensors. Gradients 3, 4, 0, ... have norm 5;
        // max_norm 1 scales them by 1 / (5 + 1e-6), so plain SGD with lr 1 moves the first two
        // parameters by -0.6 and -0.8.
        let model = ModelConfig {
            cell: Cell::Rnn,
            activation: Activation::Tanh,
            input_size: 1,
            hidden_size: 1,
            output_size: 1,
            readout: Readout::Last,
            loss: Loss::Mse,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        };
        let config = OptimizerConfig {
            lr: 1.0,
            clip: Some(1.0),
            ..OptimizerConfig::new(OptimizerKind::sgd())
        };
        let mut optimizer = CpuOptimizer::<f64>::new(&model, config).unwrap();
        let mut params = Params::<f64>::zeros(&model);
        let mut grads = Params::<f64>::zeros(&model);
        grads.cells[0].weight_ih[[0, 0]] = 3.0;
        grads.cells[0].weight_hh[[0, 0]] = 4.0;
        let norm = optimizer.step(&mut params, &grads);
        assert_eq!(norm, 5.0);
        assert!((params.cells[0].weight_ih[[0, 0]] + 0.6).abs() < 1e-6);
        assert!((params.cells[0].weight_hh[[0, 0]] + 0.8).abs() < 1e-6);
        assert_eq!(optimizer.steps(), 1);
        assert!(
            optimizer.state_tensors().is_empty(),
            "plain SGD keeps no state"
        );
    }

    #[test]
    fn names_parse_and_bad_values_are_refused() {
        assert_eq!(
            "AdamW".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::adamw()
        );
        let e = "adagrad".parse::<OptimizerKind>().unwrap_err().to_string();
        assert!(
            e.contains("adagrad") && e.contains("sgd, adam, adamw, rmsprop"),
            "{e}"
        );
        assert_eq!(
            "cosine:10:100:0.001".parse::<Schedule>().unwrap(),
            Schedule::Cosine {
                warmup_steps: 10,
                total_steps: 100,
                min_lr: 0.001
            }
        );
        assert!("cosine:10:5:0".parse::<Schedule>().is_err());
        assert!("warmup:x".parse::<Schedule>().is_err());
        let bad_beta = OptimizerConfig::new(OptimizerKind::Adam {
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        });
        assert!(bad_beta.validate().is_err());
        let bad_clip = OptimizerConfig {
            clip: Some(0.0),
            ..OptimizerConfig::default()
        };
        assert!(bad_clip.validate().is_err());
    }

    #[test]
    fn state_round_trips_under_pytorch_names() {
        let model = ModelConfig {
            cell: Cell::Lstm,
            activation: Activation::Tanh,
            input_size: 2,
            hidden_size: 3,
            output_size: 1,
            readout: Readout::Last,
            loss: Loss::Mse,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        };
        let config = OptimizerConfig::new(OptimizerKind::adam());
        let mut a = CpuOptimizer::<f64>::new(&model, config).unwrap();
        let mut params = Params::<f64>::zeros(&model);
        let mut grads = Params::<f64>::zeros(&model);
        grads.for_each_mut(|_, v| v.iter_mut().for_each(|g| *g = 0.5));
        a.step(&mut params, &grads);
        let saved = a.state_tensors();
        assert_eq!(saved.len(), 12);
        assert_eq!(saved[0].0, "exp_avg.weight_ih_l0");
        assert_eq!(saved[11].0, "exp_avg_sq.head.bias");
        let mut b = CpuOptimizer::<f64>::new(&model, config).unwrap();
        b.load_state(a.steps(), &saved).unwrap();
        let mut params_b = params.clone();
        a.step(&mut params, &grads);
        b.step(&mut params_b, &grads);
        assert_eq!(params, params_b);
        assert!(b.load_state(1, &saved[1..]).is_err(), "a missing tensor");
    }
}
