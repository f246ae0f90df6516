//! The vanishing-gradient study: the same adding-problem batch through a sigmoid RNN, a tanh
//! RNN, an LSTM, a GRU and (with a forget-gate bias) an LSTM whose forget gates start near 1,
//! and how `||dE/dh_t||` falls (or grows) with the number of steps back from
//! the loss. For a vanilla RNN, `dh_{t-1} = W_hh^T (act'(pre_t) * dh_t)`, so each step back
//! multiplies the norm by at most `sigma_max(W_hh) * gamma` with `gamma = max act'` (1/4 for
//! sigmoid, 1 for tanh): below `sigma_max = 1/gamma` the gradient must vanish geometrically
//! (Pascanu et al., 2013). The LSTM's cell path `dc_{t-1} = f_t * dc_t` has no such product.
//!
//! With `layers > 1` every layer gets its own profile: the gradient reaching layer k at step t
//! has come down through the layers above at that step, and back in time within layer k.

use crate::config::{Activation, Cell, ModelConfig};
use crate::error::Error;
use crate::init::{largest_singular_value, rescale_to_singular_value, set_forget_bias};
use crate::internals::gpu::Gpu;
use crate::optim::OptimizerConfig;
use crate::params::Params;
use crate::tasks::{Adding, Task};
use crate::train::Engine;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// What to study.
#[derive(Clone, Debug)]
pub struct VanishingOptions {
    /// T: steps of the adding problem.
    pub seq_len: usize,
    /// H: hidden units of every model.
    pub hidden: usize,
    /// B: sequences in the batch every model is measured on.
    pub batch: usize,
    /// Draws the batch, every model's weights and the training batches.
    pub seed: u64,
    /// Rescale every model's W_hh to this largest singular value (default: PyTorch's
    /// initialisation as it comes).
    pub scale: Option<f64>,
    /// Also train each model this many steps on fresh adding batches and measure again.
    pub train_steps: u64,
    /// The optimizer for `train_steps`.
    pub optimizer: OptimizerConfig,
    /// Stacked layers per model; each layer is profiled.
    pub layers: usize,
    /// Also study an LSTM whose forget-gate bias is this (`study_models`).
    pub forget_bias: Option<f64>,
}

/// One model's (or one layer's) gradient profile. `grad_norm_h[t-1] = ||dE/dh_t||`, t = 1..T.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The model's name (`rnn-sigmoid`, `rnn-tanh`, `lstm`, `gru`, `lstm-forget1`), with
    /// `-l{layer}` for a layer of a stacked model.
    pub label: String,
    /// The model measured.
    pub config: ModelConfig,
    /// Its loss on the study's batch.
    pub loss: f32,
    /// Largest singular value of the layer's W_hh (all gates stacked for the LSTM).
    pub sigma_max: f64,
    /// `1/gamma` for a vanilla RNN: `sigma_max` below it guarantees vanishing.
    pub vanishing_bound: Option<f64>,
    /// `||dE/dh_t||` for t = 1..T of this layer.
    pub grad_norm_h: Vec<f32>,
    /// `||dE/dc_t||` likewise, for the LSTM.
    pub grad_norm_c: Option<Vec<f32>>,
}

impl Profile {
    /// `||dE/dh||` at `steps_back` steps before the last one (0 = h_T).
    pub fn norm_h_at(&self, steps_back: usize) -> f32 {
        self.grad_norm_h[self.grad_norm_h.len() - 1 - steps_back]
    }

    /// The geometric mean of the step-to-step ratio `||dE/dh_{t-1}|| / ||dE/dh_t||`, taken
    /// from the last step back to the first norm below `FIT_FLOOR`.
    pub fn per_step_factor(&self) -> Option<f64> {
        per_step_factor(&self.grad_norm_h)
    }
}

/// The smallest norm `per_step_factor` fits over. A gradient of up to 2^24 elements whose norm
/// is below about 1e-35 may hold nothing but subnormal f32 values (under 1.2e-38), which some
/// GPUs flush to zero and CPUs keep: below this floor, with room to spare, the factor could
/// depend on the device; above it every engine fits the same steps.
pub const FIT_FLOOR: f64 = 1e-30;

/// Geometric mean of consecutive ratios going back in time over the finite tail at or above
/// `FIT_FLOOR`.
pub fn per_step_factor(norms: &[f32]) -> Option<f64> {
    let usable: Vec<f64> = norms
        .iter()
        .rev()
        .map(|&n| n as f64)
        .take_while(|n| n.is_finite() && *n >= FIT_FLOOR)
        .collect();
    if usable.len() < 2 {
        return None;
    }
    let steps = (usable.len() - 1) as f64;
    Some(((usable[usable.len() - 1].ln() - usable[0].ln()) / steps).exp())
}

/// One model of the study.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StudyModel {
    /// Its name in the reports.
    pub label: String,
    /// Its cell.
    pub cell: Cell,
    /// The RNN's nonlinearity.
    pub activation: Activation,
    /// The LSTM's forget-gate bias, where it is set (`init::set_forget_bias`).
    pub forget_bias: Option<f64>,
    /// Which seed draws its weights (the study's seed plus this): the cure draws the plain
    /// LSTM's, so only the forget bias differs between them.
    pub weights: u64,
}

/// The models of the study, in the order they are reported: the sigmoid and the tanh RNN, the
/// LSTM and the GRU as PyTorch initialises them, then, with `forget_bias`, the LSTM with its
/// forget-gate bias set to it: the cure. With a forget gate near 1 (sigmoid(3) = 0.95) the cell
/// path `dc_{t-1} = f_t * dc_t` loses little per step, where PyTorch's initialisation puts f
/// near 0.5 and the LSTM vanishes too.
pub(crate) fn study_models(forget_bias: Option<f64>) -> Vec<StudyModel> {
    let model = |label: &str, cell, activation, weights| StudyModel {
        label: label.to_string(),
        cell,
        activation,
        forget_bias: None,
        weights,
    };
    let lstm = model("lstm", Cell::Lstm, Activation::Tanh, 3);
    let mut models = vec![
        model("rnn-sigmoid", Cell::Rnn, Activation::Sigmoid, 1),
        model("rnn-tanh", Cell::Rnn, Activation::Tanh, 2),
        lstm.clone(),
        model("gru", Cell::Gru, Activation::Tanh, 4),
    ];
    if let Some(bias) = forget_bias {
        models.push(StudyModel {
            label: format!("lstm-forget{bias}"),
            forget_bias: Some(bias),
            ..lstm
        });
    }
    models
}

/// Profiles at initialisation and, when `train_steps > 0`, after training.
pub struct Study {
    /// Every model's (and layer's) profile at initialisation, in `study_models` order.
    pub initial: Vec<Profile>,
    /// The same after `train_steps` steps of training; `None` without training.
    pub trained: Option<Vec<Profile>>,
}

/// Runs BPTT for each model on the same adding-problem batch and collects the profiles; with
/// `train_steps`, trains each model on fresh batches (seeded) and measures the same batch again.
/// `gpu: None` runs everything on the CPU reference.
pub fn run_vanishing(gpu: Option<&Gpu>, options: &VanishingOptions) -> Result<Study, Error> {
    let task = Adding::new(options.seq_len)?;
    if options.batch == 0 || options.hidden == 0 || options.layers == 0 {
        return Err(Error::Config(
            "--batch, --hidden and --layers must be at least 1".into(),
        ));
    }
    let mut data_rng = StdRng::seed_from_u64(options.seed);
    let batch = task.batch(options.batch, &mut data_rng);
    let mut study = Study {
        initial: Vec::new(),
        trained: (options.train_steps > 0).then(Vec::new),
    };
    for model in study_models(options.forget_bias) {
        let (label, cell, activation) = (&model.label, model.cell, model.activation);
        let config = ModelConfig {
            layers: options.layers,
            ..task.spec().model_config(cell, activation, options.hidden)
        };
        let mut rng = StdRng::seed_from_u64(options.seed.wrapping_add(model.weights));
        let mut params = Params::<f32>::init_uniform(&config, &mut rng);
        if let Some(bias) = model.forget_bias {
            set_forget_bias(&config, &mut params, bias)?;
        }
        if let Some(scale) = options.scale {
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(Error::Value(format!(
                    "--scale must be finite and >= 0, got {scale}"
                )));
            }
            for cell in &mut params.cells {
                rescale_to_singular_value(&mut cell.weight_hh, scale);
            }
        }
        let mut engine = Engine::new(gpu, config, &params, options.optimizer)?;
        // One profile per layer: the norms come cell by cell, T each.
        let profiles = |engine: &Engine| -> Result<Vec<Profile>, Error> {
            let norms = engine.gradient_norms(&batch)?;
            let params = engine.params()?;
            let t = options.seq_len;
            Ok((0..options.layers)
                .map(|layer| Profile {
                    label: match options.layers {
                        1 => label.to_string(),
                        _ => format!("{label}-l{layer}"),
                    },
                    config,
                    loss: norms.loss,
                    sigma_max: largest_singular_value(
                        params.cells[layer].weight_hh.mapv(|v| v as f64).view(),
                    ),
                    vanishing_bound: match (cell, activation) {
                        (Cell::Lstm | Cell::Gru, _) => None,
                        (Cell::Rnn, Activation::Sigmoid) => Some(4.0),
                        (Cell::Rnn, _) => Some(1.0),
                    },
                    grad_norm_h: norms.grad_norm_h[layer * t..(layer + 1) * t].to_vec(),
                    grad_norm_c: norms
                        .grad_norm_c
                        .as_ref()
                        .map(|c| c[layer * t..(layer + 1) * t].to_vec()),
                })
                .collect())
        };
        study.initial.extend(profiles(&engine)?);
        if let Some(trained) = study.trained.as_mut() {
            // the training stream is the same for every model, and apart from the measured batch
            let mut train_rng = StdRng::seed_from_u64(options.seed ^ 0x7a11);
            for step in 1..=options.train_steps {
                let result = engine.step(&task.batch(options.batch, &mut train_rng), false)?;
                if !(result.loss.is_finite() && result.grad_norm.is_finite()) {
                    return Err(Error::Value(format!(
                        "{label} diverged at training step {step} (loss {}, gradient norm {}); \
                         try --clip or a smaller --scale",
                        result.loss, result.grad_norm
                    )));
                }
            }
            trained.extend(profiles(&engine)?);
        }
    }
    Ok(study)
}

/// Distances from the loss shown in the terminal table: 0, 1, 2, 5, 10, 20, 50, ... up to T-1.
pub fn table_distances(seq_len: usize) -> Vec<usize> {
    let mut distances = vec![0];
    let mut decade = 1;
    'outer: loop {
        for m in [1, 2, 5] {
            let d = m * decade;
            if d >= seq_len {
                break 'outer;
            }
            distances.push(d);
        }
        decade *= 10;
    }
    if *distances.last().unwrap() != seq_len - 1 {
        distances.push(seq_len - 1);
    }
    distances
}

/// The terminal report: norms at a handful of distances, the fitted factor, sigma_max.
pub fn format_table(profiles: &[Profile]) -> String {
    let seq_len = profiles[0].grad_norm_h.len();
    let distances = table_distances(seq_len);
    let mut out = String::new();
    out.push_str(&format!("{:<18}", "steps back"));
    for d in &distances {
        out.push_str(&format!("{d:>10}"));
    }
    out.push_str("   per-step factor   sigma_max(W_hh)  bound\n");
    let mut row = |label: &str, norms: &[f32], profile: &Profile, main: bool| {
        out.push_str(&format!("{label:<18}"));
        for &d in &distances {
            out.push_str(&format!("{:>10.2e}", norms[norms.len() - 1 - d]));
        }
        let factor = per_step_factor(norms).map_or("-".into(), |f| format!("{f:.4}"));
        out.push_str(&format!("   {factor:>15}"));
        if main {
            let bound = profile
                .vanishing_bound
                .map_or("-".to_string(), |b| format!("{b}"));
            out.push_str(&format!("   {:>15.4}  {bound:>5}", profile.sigma_max));
        }
        out.push('\n');
    };
    for p in profiles {
        row(&format!("{} |dh|", p.label), &p.grad_norm_h, p, true);
        if let Some(c) = &p.grad_norm_c {
            row(&format!("{} |dc|", p.label), c, p, false);
        }
    }
    out
}

/// One row per time step: `steps_back,t,<label>_h,...,lstm_c`.
pub fn format_csv(profiles: &[Profile]) -> String {
    let seq_len = profiles[0].grad_norm_h.len();
    let mut header = vec!["steps_back".to_string(), "t".to_string()];
    for p in profiles {
        header.push(format!("{}_dh", p.label));
        if p.grad_norm_c.is_some() {
            header.push(format!("{}_dc", p.label));
        }
    }
    let mut out = header.join(",") + "\n";
    for k in 0..seq_len {
        let t = seq_len - k;
        let mut fields = vec![k.to_string(), t.to_string()];
        for p in profiles {
            fields.push(format!("{:e}", p.grad_norm_h[t - 1]));
            if let Some(c) = &p.grad_norm_c {
                fields.push(format!("{:e}", c[t - 1]));
            }
        }
        out.push_str(&(fields.join(",") + "\n"));
    }
    out
}
