//! The CPU reference's gradients against central finite differences of its own loss (f64), for
//! one-cell models and for stacked, bidirectional ones (with dropout too); its per-step gradient
//! norms against finite differences of an independent scalar recurrence; one case worked by
//! hand; and the stacked and bidirectional forward passes against one-cell models run on
//! reversed and chained inputs. No GPU involved.

mod common;

use ndarray::{s, Array1, Array2, Array3, Axis};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::cpu::stack::dropout_factors;
use rnn_wgpu::cpu::{backward, forward, forward_with, Backward, Forward};
use rnn_wgpu::{param_names, CellParams};
use rnn_wgpu::{Activation, Batch, Cell, Error, Loss, ModelConfig, Params, Readout, Targets};

/// Central-difference step. Truncation error grows as eps^2, rounding error as 1e-16 / eps;
/// 1e-5 keeps both far below the tolerance even for the sigmoid RNN's vanishing (~1e-4)
/// gradients, where 1e-6 came within a factor 2 of it.
const EPS: f64 = 1e-5;
/// Largest accepted ||numeric - analytic|| / ||analytic|| per tensor.
const TOLERANCE: f64 = 1e-6;

/// One model and data set to check.
#[derive(Clone, Copy, Debug)]
struct Case {
    cell: Cell,
    activation: Activation,
    readout: Readout,
    loss: Loss,
    seq_len: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    output: usize,
    seed: u64,
    /// Sequences of different lengths (one of length 1), the rest padding.
    ragged: bool,
}

impl Case {
    fn config(&self) -> ModelConfig {
        ModelConfig {
            cell: self.cell,
            activation: self.activation,
            input_size: self.input,
            hidden_size: self.hidden,
            output_size: self.output,
            readout: self.readout,
            loss: self.loss,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        }
    }

    fn setup(&self) -> (ModelConfig, Params<f64>, Batch<f64>) {
        random_problem(self.config(), self, self.seed)
    }
}

/// Fresh random parameters and data for `config`, of `case`'s sizes, from `seed`. The
/// parameters are doubled from PyTorch's init so the gradients, and the nonlinearities'
/// curvature, are not trivially small.
fn random_problem(
    config: ModelConfig,
    case: &Case,
    seed: u64,
) -> (ModelConfig, Params<f64>, Batch<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut params = Params::<f64>::init_uniform(&config, &mut rng);
    params.for_each_mut(|_, values| values.iter_mut().for_each(|v| *v *= 2.0));
    let mut batch = Batch::random(&config, case.seq_len, case.batch, &mut rng);
    if case.ragged {
        batch.lengths = Some(ragged_lengths(case.seq_len, case.batch));
    }
    (config, params, batch)
}

/// T, 1, then varied lengths: every sequence but the first ends early.
fn ragged_lengths(seq_len: usize, batch: usize) -> Vec<usize> {
    (0..batch)
        .map(|b| match b {
            0 => seq_len,
            1 => 1,
            _ => 1 + (3 * b) % seq_len,
        })
        .collect()
}

/// `case`'s cell, readout, loss and sizes as a model of `layers` layers, bidirectional or not,
/// with dropout `dropout` between the layers when `dropout_seed` is given (a training pass).
#[derive(Clone, Copy, Debug)]
struct Stacked {
    case: Case,
    layers: usize,
    bidirectional: bool,
    dropout: f32,
    dropout_seed: Option<u32>,
}

impl Stacked {
    fn config(&self) -> ModelConfig {
        ModelConfig {
            layers: self.layers,
            bidirectional: self.bidirectional,
            dropout: self.dropout,
            ..self.case.config()
        }
    }

    fn setup(&self) -> (ModelConfig, Params<f64>, Batch<f64>) {
        random_problem(self.config(), &self.case, self.case.seed)
    }
}

/// Every readout/loss combination for one cell, with awkward, varying sizes and its own seeds.
fn cases(cell: Cell, activation: Activation, seed: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for (index, (readout, loss)) in [
        (Readout::Last, Loss::Mse),
        (Readout::Last, Loss::CrossEntropy),
        (Readout::All, Loss::Mse),
        (Readout::All, Loss::CrossEntropy),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(Case {
            cell,
            activation,
            readout,
            loss,
            seq_len: 4,
            batch: 2 + index % 2,
            input: 2 + (index / 2) % 2,
            hidden: 3,
            output: 3 - index % 2,
            seed: seed + index as u64,
            ragged: false,
        });
    }
    cases
}

/// The tensors the loss is differentiated against: every parameter, h0 and c0 where the batch
/// has them (one-cell models), and x.
fn tensor_names(config: &ModelConfig, batch: &Batch<f64>) -> Vec<String> {
    let mut names = param_names(config);
    if batch.h0.is_some() {
        names.push("h0".into());
    }
    if batch.c0.is_some() {
        names.push("c0".into());
    }
    names.push("x".into());
    names
}

/// The cell (`layer * D + direction`) and tensor (0..4: weight_ih, weight_hh, bias_ih,
/// bias_hh) that PyTorch's name `name` stands for, spelled out here rather than taken from
/// `params`.
fn cell_tensor(config: &ModelConfig, name: &str) -> Option<(usize, usize)> {
    let directions = config.directions();
    (0..config.cells()).find_map(|k| {
        let suffix = if k % directions == 1 { "_reverse" } else { "" };
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .iter()
            .position(|t| name == format!("{t}_l{}{suffix}", k / directions))
            .map(|t| (k, t))
    })
}

/// The named tensor's values, flat, for perturbing.
fn tensor_mut<'a>(
    config: &ModelConfig,
    name: &str,
    params: &'a mut Params<f64>,
    batch: &'a mut Batch<f64>,
) -> &'a mut [f64] {
    if let Some((k, tensor)) = cell_tensor(config, name) {
        let cell = &mut params.cells[k];
        let array = match tensor {
            0 => cell.weight_ih.as_slice_mut(),
            1 => cell.weight_hh.as_slice_mut(),
            2 => cell.bias_ih.as_slice_mut(),
            _ => cell.bias_hh.as_slice_mut(),
        };
        return array.expect("test tensors are contiguous");
    }
    let array = match name {
        "head.weight" => params.head_weight.as_slice_mut(),
        "head.bias" => params.head_bias.as_slice_mut(),
        "h0" => batch
            .h0
            .as_mut()
            .expect("random batches have h0")
            .as_slice_mut(),
        "c0" => batch
            .c0
            .as_mut()
            .expect("random LSTM batches have c0")
            .as_slice_mut(),
        "x" => batch.x.as_slice_mut(),
        _ => panic!("unknown tensor {name}"),
    };
    array.expect("test tensors are contiguous")
}

/// backward()'s gradient for the named tensor, flat.
fn analytic<'a>(name: &str, grads: &'a Backward<f64>) -> &'a [f64] {
    let array = match name {
        "h0" => grads.dh0.as_slice(),
        "c0" => grads.dc0.as_ref().expect("an LSTM has dc0").as_slice(),
        "x" => grads.dx.as_slice(),
        _ => {
            return grads
                .grads
                .tensors()
                .into_iter()
                .find(|(param, _)| *param == name)
                .unwrap_or_else(|| panic!("unknown tensor {name}"))
                .1
        }
    };
    array.expect("gradients are contiguous")
}

/// dLoss/d(every entry of the named tensor) by central differences through `forward_with`
/// (with dropout drawn from `dropout_seed`, the same masks at every evaluation).
fn numeric(
    config: &ModelConfig,
    params: &Params<f64>,
    batch: &Batch<f64>,
    dropout_seed: Option<u32>,
    name: &str,
) -> Vec<f64> {
    let (mut params, mut batch) = (params.clone(), batch.clone());
    let len = tensor_mut(config, name, &mut params, &mut batch).len();
    (0..len)
        .map(|k| {
            let original = tensor_mut(config, name, &mut params, &mut batch)[k];
            let mut loss_at = |value: f64| {
                tensor_mut(config, name, &mut params, &mut batch)[k] = value;
                forward_with(config, &params, &batch, dropout_seed)
                    .unwrap()
                    .loss
            };
            let (plus, minus) = (loss_at(original + EPS), loss_at(original - EPS));
            tensor_mut(config, name, &mut params, &mut batch)[k] = original;
            (plus - minus) / (2.0 * EPS)
        })
        .collect()
}

fn norm(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// ||numeric - analytic|| / ||analytic||, or an error naming the tensor, the worst element and
/// both values there.
fn compare(what: &str, numeric: &[f64], analytic: &[f64]) -> Result<f64, String> {
    assert_eq!(numeric.len(), analytic.len(), "{what}: length");
    let diff = norm(numeric.iter().zip(analytic).map(|(n, a)| n - a));
    let scale = norm(analytic.iter().copied());
    // A gradient that is exactly zero must be matched absolutely.
    let rel = if scale > 0.0 { diff / scale } else { diff };
    if rel < TOLERANCE {
        return Ok(rel);
    }
    let (worst, _) = numeric
        .iter()
        .zip(analytic)
        .map(|(n, a)| (n - a).abs())
        .enumerate()
        .fold(
            (0, -1.0),
            |best, (k, d)| if d > best.1 { (k, d) } else { best },
        );
    Err(format!(
        "{what}: rel error {rel:.3e} (||analytic|| = {scale:.3e}); worst element {worst}: \
         numeric {:.12e}, analytic {:.12e}",
        numeric[worst], analytic[worst]
    ))
}

/// Every tensor of every case against finite differences; reports all failures at once.
fn check_gradients(cases: &[Case]) {
    let stacked: Vec<Stacked> = cases
        .iter()
        .map(|&case| Stacked {
            case,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
            dropout_seed: None,
        })
        .collect();
    check_stacked_gradients(&stacked);
}

/// `check_gradients` for any model: every parameter tensor, h0/c0 where present, and x, of
/// the training pass with the case's dropout seed.
fn check_stacked_gradients(cases: &[Stacked]) {
    let mut failures = Vec::new();
    for stacked in cases {
        let (config, params, batch) = stacked.setup();
        let case = &stacked.case;
        let seed = stacked.dropout_seed;
        let fwd = forward_with(&config, &params, &batch, seed).unwrap();
        let grads = backward(&config, &params, &batch, &fwd);
        let label = format!(
            "{} {} L={} D={} dropout={} readout={} loss={} T={} lengths={:?}",
            case.cell,
            case.activation,
            config.layers,
            config.directions(),
            config.dropout,
            case.readout,
            case.loss,
            case.seq_len,
            batch.lengths
        );
        // One norm per cell and step, each cell's T in a row.
        assert_eq!(
            grads.grad_norm_h.len(),
            config.cells() * case.seq_len,
            "{label}: grad_norm_h"
        );
        if let Some(norms) = &grads.grad_norm_c {
            assert_eq!(norms.len(), config.cells() * case.seq_len, "{label}");
        }
        for name in tensor_names(&config, &batch) {
            let what = format!("{label} {name}");
            let numeric = numeric(&config, &params, &batch, seed, &name);
            match compare(&what, &numeric, analytic(&name, &grads)) {
                Ok(rel) => eprintln!("{what}: rel error {rel:.2e}"),
                Err(message) => failures.push(message),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "gradient check failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn rnn_tanh_gradients() {
    check_gradients(&cases(Cell::Rnn, Activation::Tanh, 100));
}

#[test]
fn rnn_sigmoid_gradients() {
    check_gradients(&cases(Cell::Rnn, Activation::Sigmoid, 200));
}

#[test]
fn rnn_relu_gradients() {
    check_gradients(&cases(Cell::Rnn, Activation::Relu, 300));
}

#[test]
fn lstm_gradients() {
    // The activation is ignored by the LSTM.
    check_gradients(&cases(Cell::Lstm, Activation::Tanh, 400));
}

/// Padding steps of shorter sequences: no state change, no loss, no gradient, for every cell,
/// readout and loss.
#[test]
fn ragged_batch_gradients() {
    let mut all = Vec::new();
    for (cell, activation, seed) in [
        (Cell::Rnn, Activation::Tanh, 150),
        (Cell::Lstm, Activation::Tanh, 450),
        (Cell::Gru, Activation::Tanh, 550),
    ] {
        for case in cases(cell, activation, seed) {
            all.push(Case {
                ragged: true,
                batch: 4,
                seq_len: 5,
                ..case
            });
        }
    }
    check_gradients(&all);
}

#[test]
fn gru_gradients() {
    // b_ih and b_hh get different gradients here: the reset gate scales b_hn only.
    check_gradients(&cases(Cell::Gru, Activation::Tanh, 450));
}

/// An additive nudge of one state entry right after step `step` (1..=T) computes it.
#[derive(Clone, Copy)]
struct Nudge {
    /// Nudge c_t (before h_t = o tanh(c_t) reads it) instead of h_t.
    cell_state: bool,
    step: usize,
    row: usize,
    unit: usize,
    delta: f64,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The loss from a scalar re-implementation of the model, sharing no code with the library,
/// with an optional nudge of one h_t or c_t entry.
fn reference_loss(
    config: &ModelConfig,
    params: &Params<f64>,
    batch: &Batch<f64>,
    nudge: Option<Nudge>,
) -> f64 {
    assert!(config.is_single_cell(), "the scalar reference has one cell");
    let (seq_len, batch_size, input) = batch.x.dim();
    let hidden = config.hidden_size;
    let gate_rows = config.cell.gates() * hidden;
    let cell = &params.cells[0];
    let zeros = Array2::zeros((batch_size, hidden));
    let mut h = batch.h0.clone().unwrap_or_else(|| zeros.clone());
    let mut c = batch.c0.clone().unwrap_or_else(|| zeros.clone());
    let nudged = |cell_state: bool, step: usize, row: usize, unit: usize| match nudge {
        Some(n) if (n.cell_state, n.step, n.row, n.unit) == (cell_state, step, row, unit) => {
            n.delta
        }
        _ => 0.0,
    };
    // The hidden states the head reads, time-major.
    let mut scored: Vec<Vec<f64>> = Vec::new();
    for step in 1..=seq_len {
        let (mut h_next, mut c_next) = (zeros.clone(), zeros.clone());
        for row in 0..batch_size {
            // (input term, recurrent term) of every pre-activation, biases included.
            let parts: Vec<(f64, f64)> = (0..gate_rows)
                .map(|r| {
                    let mut from_input = cell.bias_ih[r];
                    for i in 0..input {
                        from_input += cell.weight_ih[[r, i]] * batch.x[[step - 1, row, i]];
                    }
                    let mut from_state = cell.bias_hh[r];
                    for k in 0..hidden {
                        from_state += cell.weight_hh[[r, k]] * h[[row, k]];
                    }
                    (from_input, from_state)
                })
                .collect();
            let pre: Vec<f64> = parts.iter().map(|(a, b)| a + b).collect();
            for unit in 0..hidden {
                let new_h = match config.cell {
                    Cell::Rnn => match config.activation {
                        Activation::Tanh => pre[unit].tanh(),
                        Activation::Sigmoid => sigmoid(pre[unit]),
                        Activation::Relu => pre[unit].max(0.0),
                    },
                    Cell::Lstm => {
                        let input_gate = sigmoid(pre[unit]);
                        let forget_gate = sigmoid(pre[hidden + unit]);
                        let cell_gate = pre[2 * hidden + unit].tanh();
                        let output_gate = sigmoid(pre[3 * hidden + unit]);
                        let new_c = forget_gate * c[[row, unit]]
                            + input_gate * cell_gate
                            + nudged(true, step, row, unit);
                        c_next[[row, unit]] = new_c;
                        output_gate * new_c.tanh()
                    }
                    Cell::Gru => {
                        let reset = sigmoid(pre[unit]);
                        let update = sigmoid(pre[hidden + unit]);
                        let (n_input, n_state) = parts[2 * hidden + unit];
                        let candidate = (n_input + reset * n_state).tanh();
                        (1.0 - update) * candidate + update * h[[row, unit]]
                    }
                };
                h_next[[row, unit]] = new_h + nudged(false, step, row, unit);
            }
        }
        h = h_next;
        c = c_next;
        if config.readout == Readout::All || step == seq_len {
            scored.extend(h.rows().into_iter().map(|r| r.to_vec()));
        }
    }
    let outputs: Vec<Vec<f64>> = scored
        .iter()
        .map(|state| {
            (0..config.output_size)
                .map(|o| {
                    params.head_bias[o]
                        + (0..hidden)
                            .map(|k| params.head_weight[[o, k]] * state[k])
                            .sum::<f64>()
                })
                .collect()
        })
        .collect();
    let rows = outputs.len() as f64;
    match &batch.targets {
        Targets::Values(targets) => {
            let squares: f64 = outputs
                .iter()
                .enumerate()
                .flat_map(|(r, y)| y.iter().enumerate().map(move |(o, v)| (r, o, v)))
                .map(|(r, o, v)| (v - targets[[r, o]]).powi(2))
                .sum();
            squares / (rows * config.output_size as f64)
        }
        Targets::Classes(classes) => {
            let total: f64 = outputs
                .iter()
                .zip(classes)
                .map(|(y, &class)| {
                    let max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let log_sum = y.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
                    log_sum - y[class as usize]
                })
                .sum();
            total / rows
        }
    }
}

/// ||dE/d(state at step)|| by central differences of `reference_loss`.
fn numeric_state_norm(
    config: &ModelConfig,
    params: &Params<f64>,
    batch: &Batch<f64>,
    cell_state: bool,
    step: usize,
) -> f64 {
    let mut squares = 0.0;
    for row in 0..batch.batch_size() {
        for unit in 0..config.hidden_size {
            let loss_at = |delta| {
                let nudge = Nudge {
                    cell_state,
                    step,
                    row,
                    unit,
                    delta,
                };
                reference_loss(config, params, batch, Some(nudge))
            };
            let derivative = (loss_at(EPS) - loss_at(-EPS)) / (2.0 * EPS);
            squares += derivative * derivative;
        }
    }
    squares.sqrt()
}

/// grad_norm_h[t-1] (and grad_norm_c[t-1]) against the norm of the loss's finite-difference
/// gradient w.r.t. an additive nudge of h_t (c_t) in an independent implementation, for every
/// t. Also checks forward's loss against that implementation.
#[test]
fn gradient_norm_profiles() {
    let base = Case {
        cell: Cell::Rnn,
        activation: Activation::Tanh,
        readout: Readout::All,
        loss: Loss::Mse,
        seq_len: 6,
        batch: 3,
        input: 2,
        hidden: 3,
        output: 2,
        seed: 500,
        ragged: false,
    };
    let cases = [
        base,
        Case {
            activation: Activation::Sigmoid,
            readout: Readout::Last,
            loss: Loss::CrossEntropy,
            seed: 501,
            ..base
        },
        Case {
            activation: Activation::Relu,
            loss: Loss::CrossEntropy,
            seed: 502,
            ..base
        },
        Case {
            cell: Cell::Lstm,
            readout: Readout::Last,
            seed: 503,
            ..base
        },
        Case {
            cell: Cell::Lstm,
            loss: Loss::CrossEntropy,
            output: 3,
            seed: 504,
            ..base
        },
        Case {
            cell: Cell::Gru,
            readout: Readout::Last,
            seed: 505,
            ..base
        },
        Case {
            cell: Cell::Gru,
            loss: Loss::CrossEntropy,
            seed: 506,
            ..base
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let (config, params, batch) = case.setup();
        let fwd = forward(&config, &params, &batch).unwrap();
        let grads = backward(&config, &params, &batch, &fwd);
        let label = format!(
            "{} {} readout={} loss={}",
            case.cell, case.activation, case.readout, case.loss
        );
        let reference = reference_loss(&config, &params, &batch, None);
        assert!(
            (reference - fwd.loss).abs() <= 1e-12 * reference.abs().max(1.0),
            "{label}: forward loss {} but the scalar reference gives {reference}",
            fwd.loss
        );
        let mut profiles = vec![("h", false, grads.grad_norm_h.clone())];
        if let Some(norms) = &grads.grad_norm_c {
            profiles.push(("c", true, norms.clone()));
        }
        assert_eq!(
            grads.grad_norm_c.is_some(),
            case.cell == Cell::Lstm,
            "{label}: grad_norm_c"
        );
        for (state, cell_state, norms) in profiles {
            assert_eq!(
                norms.len(),
                case.seq_len,
                "{label}: grad_norm_{state} length"
            );
            for step in 1..=case.seq_len {
                let numeric = numeric_state_norm(&config, &params, &batch, cell_state, step);
                let analytic = norms[step - 1];
                let what = format!("{label} ||dE/d{state}_{step}||");
                match compare(&what, &[numeric], &[analytic]) {
                    Ok(rel) => eprintln!("{what} = {analytic:.6e}: rel error {rel:.2e}"),
                    Err(message) => failures.push(message),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "norm profile check failed:\n{}",
        failures.join("\n")
    );
}

/// A 1x1 RNN (I = H = O = 1), tanh, MSE, Readout::Last, T = 2, worked by hand:
///
/// w_ih = 0.5, w_hh = -1, b_ih = 0.1, b_hh = -0.1, w_out = 2, b_out = 0.5,
/// h0 = 0.2, x = (1, -0.4), target 0.3.
///
/// Forward:
///   a1 = 0.5 * 1 + 0.1 - 1 * 0.2 - 0.1 = 0.3,            h1 = tanh(0.3) = 0.29131261245159085
///   a2 = 0.5 * -0.4 + 0.1 - 1 * h1 - 0.1 = -0.49131261245159086, h2 = tanh(a2) = -0.45525761532691805
///   y = 2 * h2 + 0.5 = -0.4105152306538361
///   L = (y - 0.3)^2 = 0.5048318929910738
/// Backward:
///   dy = 2 (y - 0.3) = -1.421030461307672          -> d b_out = dy, d w_out = dy * h2 = 0.6469349391218411
///   dh2 = dy * w_out = -2.842060922615344
///   da2 = dh2 (1 - h2^2) = -2.2530168073027954
///   dh1 = da2 * w_hh = 2.2530168073027954
///   da1 = dh1 (1 - h1^2) = 2.0618189559794122
///   d w_ih = da2 * x2 + da1 * x1 = 2.9630256789005305
///   d w_hh = da2 * h1 + da1 * h0 = -0.24396842083683729
///   d b_ih = d b_hh = da1 + da2 = -0.19119785132338318
///   dh0 = da1 * w_hh = -2.0618189559794122
///   dx = (da1 * w_ih, da2 * w_ih) = (1.0309094779897061, -1.1265084036513977)
///   grad norms: ||dE/dh1|| = |dh1| = 2.2530168073027954, ||dE/dh2|| = |dh2| = 2.842060922615344
#[test]
fn one_unit_rnn_by_hand() {
    let config = ModelConfig {
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
    let params = Params {
        cells: vec![CellParams {
            weight_ih: Array2::from_elem((1, 1), 0.5),
            weight_hh: Array2::from_elem((1, 1), -1.0),
            bias_ih: Array1::from_elem(1, 0.1),
            bias_hh: Array1::from_elem(1, -0.1),
        }],
        head_weight: Array2::from_elem((1, 1), 2.0),
        head_bias: Array1::from_elem(1, 0.5),
    };
    let batch = Batch {
        x: Array3::from_shape_vec((2, 1, 1), vec![1.0, -0.4]).unwrap(),
        h0: Some(Array2::from_elem((1, 1), 0.2)),
        c0: None,
        targets: Targets::Values(Array2::from_elem((1, 1), 0.3)),
        lengths: None,
    };
    let fwd = forward(&config, &params, &batch).unwrap();
    let grads = backward(&config, &params, &batch, &fwd);
    let close = |what: &str, got: f64, expected: f64| {
        assert!(
            (got - expected).abs() < 1e-12,
            "{what}: got {got}, expected {expected}"
        );
    };
    close("h1", fwd.cells[0].hs[[1, 0, 0]], 0.29131261245159085);
    close("h2", fwd.cells[0].hs[[2, 0, 0]], -0.45525761532691805);
    close(
        "gates (RNN: h2)",
        fwd.cells[0].gates[[1, 0, 0]],
        -0.45525761532691805,
    );
    close("y", fwd.outputs[[0, 0]], -0.4105152306538361);
    close("loss", fwd.loss, 0.5048318929910738);
    close("d head.bias", grads.grads.head_bias[0], -1.421030461307672);
    close(
        "d head.weight",
        grads.grads.head_weight[[0, 0]],
        0.6469349391218411,
    );
    close(
        "d weight_ih",
        grads.grads.cells[0].weight_ih[[0, 0]],
        2.9630256789005305,
    );
    close(
        "d weight_hh",
        grads.grads.cells[0].weight_hh[[0, 0]],
        -0.24396842083683729,
    );
    close(
        "d bias_ih",
        grads.grads.cells[0].bias_ih[0],
        -0.19119785132338318,
    );
    close(
        "d bias_hh",
        grads.grads.cells[0].bias_hh[0],
        -0.19119785132338318,
    );
    close("dh0", grads.dh0[[0, 0]], -2.0618189559794122);
    close("dx1", grads.dx[[0, 0, 0]], 1.0309094779897061);
    close("dx2", grads.dx[[1, 0, 0]], -1.1265084036513977);
    assert_eq!(grads.grad_norm_h.len(), 2);
    close("||dE/dh1||", grads.grad_norm_h[0], 2.2530168073027954);
    close("||dE/dh2||", grads.grad_norm_h[1], 2.842060922615344);
    assert!(fwd.cells[0].cs.is_none() && grads.dc0.is_none() && grads.grad_norm_c.is_none());
}

/// An absent h0/c0 means zeros, in the loss and in the gradients.
#[test]
fn absent_initial_state_is_zero() {
    for (cell, seed) in [(Cell::Rnn, 600), (Cell::Lstm, 601), (Cell::Gru, 602)] {
        let case = Case {
            cell,
            activation: Activation::Tanh,
            readout: Readout::All,
            loss: Loss::Mse,
            seq_len: 3,
            batch: 2,
            input: 2,
            hidden: 3,
            output: 2,
            seed,
            ragged: false,
        };
        let (config, params, mut zeros) = case.setup();
        zeros.h0 = Some(Array2::zeros((2, 3)));
        zeros.c0 = (cell == Cell::Lstm).then(|| Array2::zeros((2, 3)));
        let absent = Batch {
            h0: None,
            c0: None,
            ..zeros.clone()
        };
        let run = |batch: &Batch<f64>| {
            let fwd = forward(&config, &params, batch).unwrap();
            let grads = backward(&config, &params, batch, &fwd);
            (fwd.loss, grads.grads, grads.dh0, grads.dc0)
        };
        assert_eq!(run(&absent), run(&zeros), "{cell}");
    }
}

/// f32 runs the same code; it agrees with f64 to f32 precision.
#[test]
fn f32_matches_f64() {
    for (cell, seed) in [(Cell::Rnn, 700), (Cell::Lstm, 701), (Cell::Gru, 702)] {
        let case = Case {
            cell,
            activation: Activation::Tanh,
            readout: Readout::All,
            loss: Loss::CrossEntropy,
            seq_len: 5,
            batch: 3,
            input: 2,
            hidden: 4,
            output: 3,
            seed,
            ragged: false,
        };
        let (config, params, batch) = case.setup();
        let fwd = forward(&config, &params, &batch).unwrap();
        let grads = backward(&config, &params, &batch, &fwd);
        let params32 = params.cast::<f32>();
        let batch32 = Batch {
            x: batch.x.mapv(|v| v as f32),
            h0: batch.h0.as_ref().map(|a| a.mapv(|v| v as f32)),
            c0: batch.c0.as_ref().map(|a| a.mapv(|v| v as f32)),
            targets: match &batch.targets {
                Targets::Classes(classes) => Targets::Classes(classes.clone()),
                Targets::Values(values) => Targets::Values(values.mapv(|v| v as f32)),
            },
            lengths: None,
        };
        let fwd32 = forward(&config, &params32, &batch32).unwrap();
        let grads32 = backward(&config, &params32, &batch32, &fwd32);
        assert!((fwd32.loss as f64 - fwd.loss).abs() < 1e-5 * fwd.loss.abs().max(1.0));
        let widened = grads32.grads.cast::<f64>();
        for ((name, g64), (_, g32)) in grads.grads.tensors().into_iter().zip(widened.tensors()) {
            compare_loosely(&format!("{cell} {name}"), g32, g64);
        }
        for (t, (&n32, &n64)) in grads32
            .grad_norm_h
            .iter()
            .zip(&grads.grad_norm_h)
            .enumerate()
        {
            assert!(
                (n32 as f64 - n64).abs() <= 1e-4 * n64.max(1e-3),
                "{cell} grad_norm_h[{t}]: f32 {n32}, f64 {n64}"
            );
        }
    }
}

fn compare_loosely(what: &str, got: &[f64], expected: &[f64]) {
    let diff = norm(got.iter().zip(expected).map(|(g, e)| g - e));
    let scale = norm(expected.iter().copied());
    assert!(
        diff <= 1e-4 * scale.max(1e-6),
        "{what}: rel error {:.3e}",
        diff / scale
    );
}

/// forward() refuses mis-shaped tensors with an Error::Shape naming the tensor.
#[test]
fn forward_rejects_wrong_shapes() {
    let case = Case {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        readout: Readout::Last,
        loss: Loss::Mse,
        seq_len: 3,
        batch: 2,
        input: 2,
        hidden: 3,
        output: 2,
        seed: 800,
        ragged: false,
    };
    let (config, params, batch) = case.setup();
    let expect_shape_error =
        |result: Result<Forward<f64>, Error>, name: &str, got: &[usize]| match result {
            Err(Error::Shape {
                what, got: actual, ..
            }) => assert_eq!((what.as_str(), actual.as_slice()), (name, got)),
            Err(other) => panic!("{name}: expected Error::Shape, got {other}"),
            Ok(_) => panic!("{name}: a wrong shape was accepted"),
        };

    let mut wrong = params.clone();
    wrong.cells[0].weight_hh = Array2::zeros((12, 4));
    expect_shape_error(forward(&config, &wrong, &batch), "weight_hh_l0", &[12, 4]);

    let mut wrong = params.clone();
    wrong.head_bias = Array1::zeros(3);
    expect_shape_error(forward(&config, &wrong, &batch), "head.bias", &[3]);

    let wrong = Batch {
        x: Array3::zeros((3, 2, 5)),
        ..batch.clone()
    };
    expect_shape_error(forward(&config, &params, &wrong), "x", &[3, 2, 5]);

    let wrong = Batch {
        c0: Some(Array2::zeros((2, 4))),
        ..batch.clone()
    };
    expect_shape_error(forward(&config, &params, &wrong), "c0", &[2, 4]);
}

/// Size-1 dimensions (one input feature, one hidden unit, one output) are where `dot` may
/// return column-major results; every result must stay row-major and every gradient right.
#[test]
fn size_one_dimensions() {
    let mut cases = Vec::new();
    for (index, (cell, input, hidden, output)) in [
        (Cell::Rnn, 1, 3, 1),
        (Cell::Rnn, 2, 1, 3),
        (Cell::Lstm, 1, 3, 2),
        (Cell::Lstm, 3, 1, 1),
        (Cell::Lstm, 1, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        for (offset, readout, loss) in [
            (0, Readout::All, Loss::Mse),
            (10, Readout::Last, Loss::CrossEntropy),
        ] {
            cases.push(Case {
                cell,
                activation: Activation::Tanh,
                readout,
                loss,
                seq_len: 3,
                batch: 2,
                input,
                hidden,
                output,
                seed: 900 + offset + index as u64,
                ragged: false,
            });
        }
    }
    for case in &cases {
        let (config, params, batch) = case.setup();
        let fwd = forward(&config, &params, &batch).unwrap();
        let grads = backward(&config, &params, &batch, &fwd);
        let what = format!("{case:?}");
        assert!(fwd.cells[0].hs.is_standard_layout(), "{what}: hs");
        assert!(fwd.cells[0].gates.is_standard_layout(), "{what}: gates");
        assert!(fwd.outputs.is_standard_layout(), "{what}: outputs");
        assert!(grads.dx.is_standard_layout(), "{what}: dx");
        assert!(grads.dh0.is_standard_layout(), "{what}: dh0");
        // Params::tensors panics unless every gradient is contiguous row-major.
        let _ = grads.grads.tensors();
    }
    check_gradients(&cases);
}

/// Every state forward() keeps, against the definitions step by step: hs[0] = h0, cs[0] = c0,
/// gates = the activated i, f, g, o (RNN: h_t), c_t = f c_{t-1} + i g, h_t = o tanh(c_t)
/// (RNN: act(pre)), outputs = W_out h + b_out on the scored rows, time-major.
#[test]
fn forward_states_match_definitions() {
    for (index, (cell, activation, readout)) in [
        (Cell::Rnn, Activation::Tanh, Readout::All),
        (Cell::Rnn, Activation::Sigmoid, Readout::Last),
        (Cell::Rnn, Activation::Relu, Readout::All),
        (Cell::Lstm, Activation::Tanh, Readout::All),
        (Cell::Lstm, Activation::Tanh, Readout::Last),
        (Cell::Gru, Activation::Tanh, Readout::All),
        (Cell::Gru, Activation::Tanh, Readout::Last),
    ]
    .into_iter()
    .enumerate()
    {
        let case = Case {
            cell,
            activation,
            readout,
            loss: Loss::Mse,
            seq_len: 4,
            batch: 3,
            input: 2,
            hidden: 3,
            output: 2,
            seed: 1000 + index as u64,
            ragged: false,
        };
        let (config, p, batch) = case.setup();
        let fwd = forward(&config, &p, &batch).unwrap();
        let (seq_len, batch_size, hidden) = (4, 3, 3);
        let close = |what: String, got: f64, expected: f64| {
            assert!(
                (got - expected).abs() <= 1e-13,
                "{cell} {activation} {readout}: {what}: got {got}, expected {expected}"
            );
        };
        let h0 = batch.h0.as_ref().unwrap();
        for (k, v) in h0.iter().enumerate() {
            close(
                format!("hs[0] entry {k}"),
                fwd.cells[0].hs[[0, k / hidden, k % hidden]],
                *v,
            );
        }
        if let (Some(c0), Some(cs)) = (&batch.c0, &fwd.cells[0].cs) {
            for (k, v) in c0.iter().enumerate() {
                close(
                    format!("cs[0] entry {k}"),
                    cs[[0, k / hidden, k % hidden]],
                    *v,
                );
            }
        }
        for t in 1..=seq_len {
            for b in 0..batch_size {
                let pre = |r: usize| {
                    let mut sum = p.cells[0].bias_ih[r] + p.cells[0].bias_hh[r];
                    for i in 0..config.input_size {
                        sum += p.cells[0].weight_ih[[r, i]] * batch.x[[t - 1, b, i]];
                    }
                    for k in 0..hidden {
                        sum += p.cells[0].weight_hh[[r, k]] * fwd.cells[0].hs[[t - 1, b, k]];
                    }
                    sum
                };
                for j in 0..hidden {
                    let at = |name: &str| format!("{name} t={t} b={b} j={j}");
                    match cell {
                        Cell::Rnn => {
                            let h = match activation {
                                Activation::Tanh => pre(j).tanh(),
                                Activation::Sigmoid => sigmoid(pre(j)),
                                Activation::Relu => pre(j).max(0.0),
                            };
                            close(at("h"), fwd.cells[0].hs[[t, b, j]], h);
                            close(at("gates (RNN: h)"), fwd.cells[0].gates[[t - 1, b, j]], h);
                        }
                        Cell::Lstm => {
                            let cs = fwd.cells[0].cs.as_ref().unwrap();
                            let i = sigmoid(pre(j));
                            let f = sigmoid(pre(hidden + j));
                            let g = pre(2 * hidden + j).tanh();
                            let o = sigmoid(pre(3 * hidden + j));
                            for (name, offset, value) in
                                [("i", 0, i), ("f", 1, f), ("g", 2, g), ("o", 3, o)]
                            {
                                close(
                                    at(name),
                                    fwd.cells[0].gates[[t - 1, b, offset * hidden + j]],
                                    value,
                                );
                            }
                            let c = f * cs[[t - 1, b, j]] + i * g;
                            close(at("c"), cs[[t, b, j]], c);
                            close(at("h"), fwd.cells[0].hs[[t, b, j]], o * c.tanh());
                        }
                        Cell::Gru => {
                            // n's recurrent term W_hn h + b_hn, apart from its input term.
                            let n_state = p.cells[0].bias_hh[2 * hidden + j]
                                + (0..hidden)
                                    .map(|k| {
                                        p.cells[0].weight_hh[[2 * hidden + j, k]]
                                            * fwd.cells[0].hs[[t - 1, b, k]]
                                    })
                                    .sum::<f64>();
                            let n_input = pre(2 * hidden + j) - n_state;
                            let r = sigmoid(pre(j));
                            let z = sigmoid(pre(hidden + j));
                            let n = (n_input + r * n_state).tanh();
                            for (name, offset, value) in [
                                ("r", 0, r),
                                ("z", 1, z),
                                ("n", 2, n),
                                ("W_hn h + b_hn", 3, n_state),
                            ] {
                                close(
                                    at(name),
                                    fwd.cells[0].gates[[t - 1, b, offset * hidden + j]],
                                    value,
                                );
                            }
                            let h = (1.0 - z) * n + z * fwd.cells[0].hs[[t - 1, b, j]];
                            close(at("h"), fwd.cells[0].hs[[t, b, j]], h);
                        }
                    }
                }
                let row = match readout {
                    Readout::Last if t < seq_len => continue,
                    Readout::Last => b,
                    Readout::All => (t - 1) * batch_size + b,
                };
                for o in 0..config.output_size {
                    let y = p.head_bias[o]
                        + (0..hidden)
                            .map(|k| p.head_weight[[o, k]] * fwd.cells[0].hs[[t, b, k]])
                            .sum::<f64>();
                    close(
                        format!("output row {row} col {o}"),
                        fwd.outputs[[row, o]],
                        y,
                    );
                }
            }
        }
    }
}

/// A ragged batch is its sequences run alone, each cut to its length: the same outputs, states
/// and input gradients, and parameter gradients that are the alone ones weighted by each
/// sequence's share of the scored entries. Every cell, readout and loss, f64, to 1e-12.
#[test]
fn a_ragged_batch_matches_its_sequences_run_alone() {
    let close = |what: &str, got: &[f64], expected: &[f64]| {
        assert_eq!(got.len(), expected.len(), "{what}");
        let scale = expected.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        let error = got
            .iter()
            .zip(expected)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            error <= 1e-12 * scale,
            "{what}: {error:e} against {scale:e}"
        );
    };
    for (k, (cell, readout, loss)) in [
        (Cell::Rnn, Readout::All, Loss::Mse),
        (Cell::Lstm, Readout::Last, Loss::CrossEntropy),
        (Cell::Lstm, Readout::All, Loss::CrossEntropy),
        (Cell::Gru, Readout::Last, Loss::Mse),
        (Cell::Gru, Readout::All, Loss::Mse),
    ]
    .into_iter()
    .enumerate()
    {
        let case = Case {
            cell,
            activation: Activation::Tanh,
            readout,
            loss,
            seq_len: 6,
            batch: 4,
            input: 2,
            hidden: 3,
            output: 2,
            seed: 1100 + k as u64,
            ragged: true,
        };
        let (config, params, batch) = case.setup();
        let lengths = batch.lengths.clone().unwrap();
        let fwd = forward(&config, &params, &batch).unwrap();
        let bwd = backward(&config, &params, &batch, &fwd);
        let scored: usize = match readout {
            Readout::All => lengths.iter().sum(),
            Readout::Last => case.batch,
        };
        let mut grads = Params::<f64>::zeros(&config);
        let mut loss_total = 0.0;
        for (b, &len) in lengths.iter().enumerate() {
            let targets_rows: Vec<usize> = match readout {
                Readout::All => (0..len).map(|t| t * case.batch + b).collect(),
                Readout::Last => vec![b],
            };
            let alone = Batch {
                x: batch.x.slice(ndarray::s![..len, b..b + 1, ..]).to_owned(),
                h0: batch
                    .h0
                    .as_ref()
                    .map(|h| h.slice(ndarray::s![b..b + 1, ..]).to_owned()),
                c0: batch
                    .c0
                    .as_ref()
                    .map(|c| c.slice(ndarray::s![b..b + 1, ..]).to_owned()),
                targets: match &batch.targets {
                    Targets::Values(y) => {
                        Targets::Values(y.select(ndarray::Axis(0), &targets_rows))
                    }
                    Targets::Classes(c) => {
                        Targets::Classes(targets_rows.iter().map(|&r| c[r]).collect())
                    }
                },
                lengths: None,
            };
            let fwd_b = forward(&config, &params, &alone).unwrap();
            let bwd_b = backward(&config, &params, &alone, &fwd_b);
            let what = format!("{cell} {readout} {loss} sequence {b} (length {len})");
            // Its share of the mean: the entries it scores over all scored entries.
            let share = match readout {
                Readout::All => len as f64 / scored as f64,
                Readout::Last => 1.0 / scored as f64,
            };
            loss_total += share * fwd_b.loss;
            let column = |a: &Array3<f64>, b: usize, steps: usize| {
                a.slice(ndarray::s![..steps, b, ..])
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            };
            // The state at every step up to its length, and held there afterwards.
            close(
                &format!("{what}: hs"),
                &column(&fwd.cells[0].hs, b, len + 1),
                &column(&fwd_b.cells[0].hs, 0, len + 1),
            );
            for t in len..=6 {
                close(
                    &format!("{what}: h held at step {t}"),
                    &column(
                        &fwd.cells[0]
                            .hs
                            .slice(ndarray::s![t..t + 1, .., ..])
                            .to_owned(),
                        b,
                        1,
                    ),
                    &column(
                        &fwd_b.cells[0]
                            .hs
                            .slice(ndarray::s![len..len + 1, .., ..])
                            .to_owned(),
                        0,
                        1,
                    ),
                );
            }
            for (r_alone, &r) in targets_rows.iter().enumerate() {
                close(
                    &format!("{what}: output row {r}"),
                    fwd.outputs.row(r).as_slice().unwrap(),
                    fwd_b.outputs.row(r_alone).as_slice().unwrap(),
                );
            }
            let scaled = |v: Vec<f64>| v.into_iter().map(|g| share * g).collect::<Vec<_>>();
            close(
                &format!("{what}: dx"),
                &column(&bwd.dx, b, len),
                &scaled(column(&bwd_b.dx, 0, len)),
            );
            let padding_dx = column(
                &bwd.dx.slice(ndarray::s![len.., .., ..]).to_owned(),
                b,
                6 - len,
            );
            assert!(
                padding_dx.iter().all(|&g| g == 0.0),
                "{what}: dx on padding"
            );
            close(
                &format!("{what}: dh0"),
                bwd.dh0.row(b).as_slice().unwrap(),
                &scaled(bwd_b.dh0.iter().copied().collect()),
            );
            grads.for_each_mut(|name, sum| {
                let mine = bwd_b
                    .grads
                    .tensors()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .unwrap()
                    .1;
                sum.iter_mut().zip(mine).for_each(|(s, g)| *s += share * g);
            });
        }
        close(
            &format!("{cell} {readout} {loss}: loss"),
            &[fwd.loss],
            &[loss_total],
        );
        for ((name, sum), (_, all)) in grads.tensors().into_iter().zip(bwd.grads.tensors()) {
            close(&format!("{cell} {readout} {loss}: d {name}"), all, sum);
        }
    }
}

/// Every combination of depth (1, 3), direction, equal or ragged lengths (one of length 1) and
/// readout for one cell, at awkward sizes: I = 3, H = 5, T = 4..6, B = 3. The loss alternates
/// so that every readout meets both losses, with equal and with ragged lengths.
fn stacked_cases(cell: Cell, seed: u64) -> Vec<Stacked> {
    let mut cases = Vec::new();
    for layers in [1, 3] {
        for bidirectional in [false, true] {
            for ragged in [false, true] {
                for readout in [Readout::Last, Readout::All] {
                    let index = cases.len();
                    let loss = [Loss::Mse, Loss::CrossEntropy][(index / 2 + index) % 2];
                    let case = Case {
                        cell,
                        activation: Activation::Tanh,
                        readout,
                        loss,
                        seq_len: 4 + index % 3,
                        batch: 3,
                        input: 3,
                        hidden: 5,
                        output: 2 + index % 2,
                        seed: seed + index as u64,
                        ragged,
                    };
                    cases.push(Stacked {
                        case,
                        layers,
                        bidirectional,
                        dropout: 0.0,
                        dropout_seed: None,
                    });
                }
            }
        }
    }
    cases
}

#[test]
fn stacked_and_bidirectional_rnn_gradients() {
    check_stacked_gradients(&stacked_cases(Cell::Rnn, 1200));
}

#[test]
fn stacked_and_bidirectional_lstm_gradients() {
    check_stacked_gradients(&stacked_cases(Cell::Lstm, 1300));
}

#[test]
fn stacked_and_bidirectional_gru_gradients() {
    check_stacked_gradients(&stacked_cases(Cell::Gru, 1400));
}

/// Dropout between layers with a fixed seed is a fixed mask, so the training loss is a smooth
/// function of the parameters and x, and `backward` of that pass (through the masks in
/// `Forward::dropout`) must be its gradient. The masks are `stack::dropout_factors`' (0 or
/// 1/(1-p) in f32), they change the loss against evaluation, another seed draws others, and
/// `forward` (evaluation) is the model without dropout, bit for bit.
#[test]
fn dropout_gradients_with_a_fixed_seed() {
    let cases: Vec<Stacked> = [
        (Cell::Lstm, 2, true, Readout::All, true),
        (Cell::Gru, 3, false, Readout::Last, false),
        (Cell::Rnn, 2, true, Readout::Last, true),
        (Cell::Gru, 2, true, Readout::All, false),
        (Cell::Lstm, 3, false, Readout::Last, true),
    ]
    .into_iter()
    .enumerate()
    .map(
        |(index, (cell, layers, bidirectional, readout, ragged))| Stacked {
            case: Case {
                cell,
                activation: Activation::Tanh,
                readout,
                loss: [Loss::Mse, Loss::CrossEntropy][index % 2],
                seq_len: 4 + index % 3,
                batch: 3,
                input: 3,
                hidden: 4,
                output: 2,
                seed: 1500 + index as u64,
                ragged,
            },
            layers,
            bidirectional,
            dropout: 0.4,
            dropout_seed: Some(31 + index as u32),
        },
    )
    .collect();
    for stacked in &cases {
        let (config, params, batch) = stacked.setup();
        let seed = stacked.dropout_seed.unwrap();
        let label = format!("{stacked:?}");
        let train = forward_with(&config, &params, &batch, Some(seed)).unwrap();
        let shape = (
            batch.seq_len(),
            batch.batch_size(),
            config.head_input_size(),
        );
        let kept = f64::from(1.0f32 / (1.0f32 - config.dropout));
        assert_eq!(train.dropout.len(), config.layers - 1, "{label}");
        for (k, mask) in train.dropout.iter().enumerate() {
            let mask = mask
                .as_ref()
                .expect("training with dropout > 0 draws masks");
            assert_eq!(mask.dim(), shape, "{label}: mask {k}");
            assert!(mask.iter().all(|&f| f == 0.0 || f == kept), "{label}");
            let dropped = mask.iter().filter(|&&f| f == 0.0).count();
            assert!(dropped > 0 && dropped < mask.len(), "{label}: {dropped}");
            // Layer k + 1's input, as the GPU will draw it.
            assert_eq!(
                *mask,
                dropout_factors::<f64>(config.dropout, seed, k + 1, shape),
                "{label}: mask {k}"
            );
        }
        let eval = forward(&config, &params, &batch).unwrap();
        assert!(eval.dropout.iter().all(Option::is_none), "{label}");
        assert!(
            (train.loss - eval.loss).abs() > 1e-6 * eval.loss.abs(),
            "{label}: dropout left the loss at {}",
            eval.loss
        );
        let other = forward_with(&config, &params, &batch, Some(seed + 1)).unwrap();
        assert_ne!(other.loss, train.loss, "{label}: another seed");
        let plain = ModelConfig {
            dropout: 0.0,
            ..config
        };
        for run in [
            forward(&plain, &params, &batch).unwrap(),
            forward_with(&plain, &params, &batch, Some(seed)).unwrap(),
        ] {
            assert_eq!(run.outputs, eval.outputs, "{label}");
            assert_eq!(run.loss.to_bits(), eval.loss.to_bits(), "{label}");
            assert!(run.dropout.iter().all(Option::is_none), "{label}");
        }
    }
    check_stacked_gradients(&cases);
}

/// `grad_norm_h` (and the LSTM's `grad_norm_c`) hold T norms per cell, cell after cell: T for
/// one layer and one direction, 6 T for three bidirectional layers; every cell's states get
/// gradient, so none is zero.
#[test]
fn grad_norms_have_one_profile_per_cell() {
    for (cell, seed) in [(Cell::Rnn, 1600), (Cell::Lstm, 1601), (Cell::Gru, 1602)] {
        for (layers, bidirectional, profiles) in [(1, false, 1), (3, true, 6)] {
            let stacked = Stacked {
                case: Case {
                    cell,
                    activation: Activation::Tanh,
                    readout: Readout::Last,
                    loss: Loss::Mse,
                    seq_len: 5,
                    batch: 3,
                    input: 3,
                    hidden: 4,
                    output: 2,
                    seed,
                    ragged: false,
                },
                layers,
                bidirectional,
                dropout: 0.0,
                dropout_seed: None,
            };
            let (config, params, batch) = stacked.setup();
            let fwd = forward(&config, &params, &batch).unwrap();
            let grads = backward(&config, &params, &batch, &fwd);
            let label = format!("{cell} L={layers} bidirectional={bidirectional}");
            assert_eq!(grads.grad_norm_h.len(), profiles * 5, "{label}");
            assert!(grads.grad_norm_h.iter().all(|&n| n > 0.0), "{label}");
            assert_eq!(
                grads.grad_norm_c.as_ref().map(Vec::len),
                (cell == Cell::Lstm).then_some(profiles * 5),
                "{label}"
            );
        }
    }
}

/// Asserts `got` is `expected` to 1e-12 of the largest expected magnitude (at least 1).
fn assert_close(what: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let (worst, error) = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0.0),
            |best, (k, d)| if d > best.1 { (k, d) } else { best },
        );
    assert!(
        error <= 1e-12 * scale,
        "{what}: error {error:e} at element {worst}: got {}, expected {}",
        got[worst],
        expected[worst]
    );
}

/// The states h_1..h_T [T*B, H] (time-major) of one cell run alone, as a one-layer,
/// one-direction model from zero state on x [T, B, W]: its Readout::All outputs under an
/// identity head.
fn cell_states(config: &ModelConfig, cell: &CellParams<f64>, x: Array3<f64>) -> Array2<f64> {
    let hidden = config.hidden_size;
    let alone = ModelConfig {
        input_size: x.dim().2,
        output_size: hidden,
        readout: Readout::All,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
        ..*config
    };
    let params = Params {
        cells: vec![cell.clone()],
        head_weight: Array2::eye(hidden),
        head_bias: Array1::zeros(hidden),
    };
    let (seq_len, batch_size, _) = x.dim();
    let batch = Batch {
        x,
        h0: None,
        c0: None,
        targets: Targets::Values(Array2::zeros((seq_len * batch_size, hidden))),
        lengths: None,
    };
    forward(&alone, &params, &batch).unwrap().outputs
}

/// A bidirectional layer is two independent runs, checked sequence by sequence, each cut to
/// its own length: the forward half is the forward cell on the sequence (its state held from
/// h_len on padding steps), the reverse half at step t is the reverse cell's state after
/// reading the sequence backwards from its own end down to step t (zeros on padding steps),
/// and Readout::Last reads [h_len of the forward run, the reverse run's last state], as
/// PyTorch's `torch.cat((h_n[-2], h_n[-1]), 1)`. Identity heads expose the states; f64, to
/// 1e-12.
#[test]
fn bidirectional_halves_are_unidirectional_runs() {
    let (seq_len, batch_size, hidden) = (5, 3, 4);
    for (index, cell) in [Cell::Rnn, Cell::Lstm, Cell::Gru].into_iter().enumerate() {
        for lengths in [None, Some(vec![5, 1, 3])] {
            for readout in [Readout::All, Readout::Last] {
                let config = ModelConfig {
                    cell,
                    activation: Activation::Tanh,
                    input_size: 3,
                    hidden_size: hidden,
                    output_size: 2 * hidden,
                    readout,
                    loss: Loss::Mse,
                    layers: 1,
                    bidirectional: true,
                    dropout: 0.0,
                };
                let mut rng = StdRng::seed_from_u64(1700 + index as u64);
                let mut params = Params::<f64>::init_uniform(&config, &mut rng);
                params.for_each_mut(|_, values| values.iter_mut().for_each(|v| *v *= 2.0));
                params.head_weight = Array2::eye(2 * hidden);
                params.head_bias = Array1::zeros(2 * hidden);
                let mut batch = Batch::random(&config, seq_len, batch_size, &mut rng);
                batch.lengths = lengths.clone();
                // Both halves start from zeros, as the one-direction runs below do.
                (batch.h0, batch.c0) = (None, None);
                let outputs = forward(&config, &params, &batch).unwrap().outputs;

                let mut expected = Array2::<f64>::zeros(outputs.dim());
                for b in 0..batch_size {
                    let len = lengths.as_ref().map_or(seq_len, |l| l[b]);
                    let own = batch.x.slice(s![..len, b..b + 1, ..]).to_owned();
                    let backwards: Vec<usize> = (0..len).rev().collect();
                    let reversed = own.select(Axis(0), &backwards);
                    let forward_run = cell_states(&config, &params.cells[0], own);
                    let reverse_run = cell_states(&config, &params.cells[1], reversed);
                    let mut put =
                        |row: usize, forward_state: usize, reverse_state: Option<usize>| {
                            let mut target = expected.row_mut(row);
                            target
                                .slice_mut(s![..hidden])
                                .assign(&forward_run.row(forward_state));
                            if let Some(state) = reverse_state {
                                target
                                    .slice_mut(s![hidden..])
                                    .assign(&reverse_run.row(state));
                            }
                        };
                    match readout {
                        Readout::Last => put(b, len - 1, Some(len - 1)),
                        Readout::All => {
                            for t in 0..seq_len {
                                let reverse_state = (t < len).then(|| len - 1 - t);
                                put(t * batch_size + b, t.min(len - 1), reverse_state);
                            }
                        }
                    }
                }
                assert_close(
                    &format!("{cell} readout={readout} lengths={lengths:?}"),
                    outputs.as_slice().unwrap(),
                    expected.as_slice().unwrap(),
                );
            }
        }
    }
}

/// A 2-layer model is layer 0 run as its own one-layer model (identity head, Readout::All),
/// then layer 1 as its own model (the stacked model's head) on layer 0's output sequence,
/// multiplied in training by `stack::dropout_factors` of layer 1: the same outputs and loss,
/// and, since the layer above sees the same gradient, the same gradients of layer 1 and the
/// head and the same per-step norms of layer 1's cells. Every cell, one and two directions,
/// ragged and equal lengths; f64, to 1e-12.
#[test]
fn stacked_layers_are_one_layer_models_chained() {
    let (seq_len, batch_size, hidden) = (5, 3, 4);
    for (index, (cell, bidirectional, readout, loss, ragged)) in [
        (Cell::Rnn, false, Readout::All, Loss::Mse, true),
        (Cell::Rnn, true, Readout::Last, Loss::CrossEntropy, false),
        (Cell::Lstm, false, Readout::Last, Loss::Mse, false),
        (Cell::Lstm, true, Readout::All, Loss::CrossEntropy, true),
        (Cell::Gru, false, Readout::All, Loss::CrossEntropy, false),
        (Cell::Gru, true, Readout::Last, Loss::Mse, true),
        (Cell::Gru, true, Readout::All, Loss::Mse, true),
    ]
    .into_iter()
    .enumerate()
    {
        let config = ModelConfig {
            cell,
            activation: Activation::Tanh,
            input_size: 3,
            hidden_size: hidden,
            output_size: 3,
            readout,
            loss,
            layers: 2,
            bidirectional,
            dropout: 0.5,
        };
        let mut rng = StdRng::seed_from_u64(1800 + index as u64);
        let mut params = Params::<f64>::init_uniform(&config, &mut rng);
        params.for_each_mut(|_, values| values.iter_mut().for_each(|v| *v *= 2.0));
        let mut batch = Batch::random(&config, seq_len, batch_size, &mut rng);
        if ragged {
            batch.lengths = Some(ragged_lengths(seq_len, batch_size));
        }
        // Every layer starts from zeros, as the one-layer runs below do.
        (batch.h0, batch.c0) = (None, None);
        let directions = config.directions();
        let width = directions * hidden;

        let first_config = ModelConfig {
            layers: 1,
            output_size: width,
            readout: Readout::All,
            loss: Loss::Mse,
            dropout: 0.0,
            ..config
        };
        let first_params = Params {
            cells: params.cells[..directions].to_vec(),
            head_weight: Array2::eye(width),
            head_bias: Array1::zeros(width),
        };
        let first_batch = Batch {
            targets: Targets::Values(Array2::zeros((seq_len * batch_size, width))),
            ..batch.clone()
        };
        let layer_output = forward(&first_config, &first_params, &first_batch)
            .unwrap()
            .outputs
            .into_shape_with_order((seq_len, batch_size, width))
            .unwrap();

        let second_config = ModelConfig {
            layers: 1,
            input_size: width,
            dropout: 0.0,
            ..config
        };
        let second_params = Params {
            cells: params.cells[directions..].to_vec(),
            head_weight: params.head_weight.clone(),
            head_bias: params.head_bias.clone(),
        };
        for dropout_seed in [None, Some(77)] {
            let what = format!(
                "{cell} bidirectional={bidirectional} readout={readout} loss={loss} \
                 ragged={ragged} dropout seed {dropout_seed:?}"
            );
            let mut x = layer_output.clone();
            if let Some(seed) = dropout_seed {
                x *= &dropout_factors::<f64>(config.dropout, seed, 1, x.dim());
            }
            let second_batch = Batch { x, ..batch.clone() };
            let second = forward(&second_config, &second_params, &second_batch).unwrap();
            let stacked = forward_with(&config, &params, &batch, dropout_seed).unwrap();
            assert_close(
                &format!("{what}: outputs"),
                stacked.outputs.as_slice().unwrap(),
                second.outputs.as_slice().unwrap(),
            );
            assert_close(&format!("{what}: loss"), &[stacked.loss], &[second.loss]);

            let stacked_grads = backward(&config, &params, &batch, &stacked);
            let second_grads = backward(&second_config, &second_params, &second_batch, &second);
            let upper = stacked_grads.grads.tensors().split_off(4 * directions);
            for ((name, got), (_, expected)) in upper.into_iter().zip(second_grads.grads.tensors())
            {
                assert_close(&format!("{what}: d {name}"), got, expected);
            }
            let layer_norms = directions * seq_len;
            assert_close(
                &format!("{what}: grad_norm_h of layer 1"),
                &stacked_grads.grad_norm_h[layer_norms..],
                &second_grads.grad_norm_h,
            );
        }
    }
}

/// The weight and bias gradients sum all T * B rows: here 160,000 (a 3-layer sigmoid RNN,
/// cross-entropy on every one of 2,500 steps of 64 sequences). Summed in one f32 chain, the
/// head's gradients, whose terms cancel, were off by 6e-4 and 8e-4; in blocks of 4,096 rows
/// (`cpu::matmul`) they stay within f32 precision of f64.
#[test]
fn f32_gradients_summed_over_160000_rows_match_f64() {
    let config = common::long_sum_model();
    let (params32, batch32) = rnn_wgpu::internals::parity::random_problem(&config, 2500, 64, 6455);
    let (params, batch) = (params32.cast::<f64>(), batch32.cast::<f64>());
    let grads = backward(
        &config,
        &params,
        &batch,
        &forward(&config, &params, &batch).unwrap(),
    );
    let fwd32 = forward(&config, &params32, &batch32).unwrap();
    let grads32 = backward(&config, &params32, &batch32, &fwd32);
    let widened = grads32.grads.cast::<f64>();
    for ((name, g64), (_, g32)) in grads.grads.tensors().into_iter().zip(widened.tensors()) {
        compare_loosely(&name, g32, g64);
    }
}
