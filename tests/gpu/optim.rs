//! GPU training steps against the CPU reference: N = 5 steps of every optimizer on the RNN and
//! the LSTM, clipping on (with a max_norm small enough that every step clips) and off, constant
//! and scheduled learning rates, at awkward sizes (hidden 3, 17, 65; batch 1 and 5). The
//! parameters and optimizer state after N steps and the pre-clip gradient norm and loss of
//! every step are compared by `||gpu - cpu|| / ||cpu||`. Also: a step is one submission, and
//! saved optimizer state resumes bit-identically.

use super::{gpu, seed};
use rnn_wgpu::cpu;
use rnn_wgpu::internals::gpu::optim::GpuOptimizer;
use rnn_wgpu::internals::parity::{random_problem, Comparison, TOLERANCE};
use rnn_wgpu::optim::{CpuOptimizer, OptimizerConfig, OptimizerKind, Schedule};
use rnn_wgpu::{Activation, Batch, Cell, Loss, ModelConfig, Params, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};
use Activation::{Sigmoid, Tanh};
use Loss::{CrossEntropy as Ce, Mse};
use Readout::{All, Last};

const STEPS: u64 = 5;

/// For the optimizer state, looser than `TOLERANCE`, which the parameters, norms and losses
/// meet: RMSprop's and Adam's `g / sqrt(v)` turn the f32 rounding of an element with a tiny
/// gradient into a visible difference in a buffer, while the parameters move by only `lr`
/// times it (seen: 6.7e-5 in an RMSprop momentum buffer over nine seeds).
const STATE_TOLERANCE: f64 = 1e-3;

struct Case {
    model: ModelConfig,
    batch: usize,
    seq_len: usize,
    optimizer: OptimizerConfig,
}

/// (cell, activation, (B, T, I, H, O), readout, loss, optimizer)
fn case(
    cell: Cell,
    activation: Activation,
    (batch, seq_len, input, hidden, output): (usize, usize, usize, usize, usize),
    (readout, loss): (Readout, Loss),
    optimizer: OptimizerConfig,
) -> Case {
    Case {
        model: ModelConfig {
            cell,
            activation,
            input_size: input,
            hidden_size: hidden,
            output_size: output,
            readout,
            loss,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        },
        batch,
        seq_len,
        optimizer,
    }
}

fn config(kind: OptimizerKind, lr: f32, schedule: Schedule, clip: Option<f32>) -> OptimizerConfig {
    OptimizerConfig {
        kind,
        lr,
        schedule,
        clip,
    }
}

/// A different batch for every step, so the step also re-uploads data.
fn batches(model: &ModelConfig, c: &Case, seed: u64) -> Vec<Batch<f32>> {
    (0..STEPS)
        .map(|k| random_problem(model, c.seq_len, c.batch, seed ^ ((k + 1) << 40)).1)
        .collect()
}

fn check(cases: &[Case], first_seed: u64) {
    let gpu = gpu();
    let mut failed = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let seed = seed(first_seed + n as u64);
        let m = &c.model;
        let label = format!(
            "{:?}/{} B={} T={} I={} H={} O={} readout={} loss={} {:?} seed={seed}",
            m.cell,
            m.activation,
            c.batch,
            c.seq_len,
            m.input_size,
            m.hidden_size,
            m.output_size,
            m.readout,
            m.loss,
            c.optimizer
        );
        let (params, _) = random_problem(m, c.seq_len, c.batch, seed);
        let model = GpuModel::new(gpu, *m, &params).unwrap();
        let mut gpu_opt = GpuOptimizer::new(gpu, &model, c.optimizer).unwrap();
        let mut params64: Params<f64> = params.cast();
        let mut cpu_opt = CpuOptimizer::<f64>::new(m, c.optimizer).unwrap();

        // (comparison, tolerance)
        let mut comparisons = Vec::new();
        let mut norms = Vec::new();
        for (k, batch) in batches(m, c, seed).iter().enumerate() {
            let step = k as u64 + 1;
            let out = model
                .train_step(gpu, batch, &mut gpu_opt, Request::default())
                .unwrap_or_else(|e| panic!("{label}: step {step}: {e}"));
            let batch64: Batch<f64> = batch.cast();
            let fwd = cpu::forward(m, &params64, &batch64).unwrap();
            let bwd = cpu::backward(m, &params64, &batch64, &fwd);
            let norm = cpu_opt.step(&mut params64, &bwd.grads);
            norms.push(norm);
            assert_eq!(out.step, step, "{label}");
            assert_eq!(out.lr, c.optimizer.lr_at(step), "{label}: step {step}");
            if let Some(max_norm) = c.optimizer.clip {
                assert!(
                    norm > max_norm as f64,
                    "{label}: step {step} does not clip: norm {norm} <= max_norm {max_norm}"
                );
            }
            comparisons.push((
                Comparison::new(&format!("loss {step}"), &[out.loss], &[fwd.loss]),
                TOLERANCE,
            ));
            comparisons.push((
                Comparison::new(&format!("grad norm {step}"), &[out.grad_norm], &[norm]),
                TOLERANCE,
            ));
        }
        let gpu_params = model.params(gpu).unwrap();
        for ((name, g), (_, c)) in gpu_params.tensors().into_iter().zip(params64.tensors()) {
            comparisons.push((Comparison::new(&name, g, c), TOLERANCE));
        }
        let gpu_state = gpu_opt.state_tensors(gpu).unwrap();
        let cpu_state = cpu_opt.state_tensors();
        assert_eq!(gpu_state.len(), cpu_state.len(), "{label}");
        for ((name, g), (cpu_name, c)) in gpu_state.iter().zip(&cpu_state) {
            assert_eq!(name, cpu_name, "{label}");
            comparisons.push((Comparison::new(name, g, c), STATE_TOLERANCE));
        }
        let worst = comparisons
            .iter()
            .map(|(c, _)| c)
            .max_by(|a, b| a.rel_error.total_cmp(&b.rel_error))
            .unwrap();
        eprintln!(
            "{label}\n    cpu grad norms {norms:.4?}; worst: {}",
            worst.to_string().trim_end()
        );
        let failures: Vec<String> = comparisons
            .iter()
            .filter(|(c, tolerance)| !c.passes(*tolerance))
            .map(|(c, tolerance)| format!("    {c}   (bound {tolerance:e})"))
            .collect();
        if !failures.is_empty() {
            failed.push(format!("{label}\n{}", failures.join("\n")));
        }
    }
    assert!(
        failed.is_empty(),
        "after {STEPS} steps ||gpu - cpu|| / ||cpu|| over its bound (tensor, elements, rel err, \
         worst element):\n{}",
        failed.join("\n")
    );
}

fn cosine(warmup_steps: u64, min_lr: f32) -> Schedule {
    Schedule::Cosine {
        warmup_steps,
        total_steps: STEPS,
        min_lr,
    }
}

#[test]
fn sgd_steps_match_cpu() {
    let momentum = OptimizerKind::Sgd {
        momentum: 0.9,
        weight_decay: 1e-2,
    };
    let heavy_ball = OptimizerKind::Sgd {
        momentum: 0.5,
        weight_decay: 0.0,
    };
    check(
        &[
            case(
                Cell::Rnn,
                Tanh,
                (5, 7, 4, 17, 3),
                (All, Mse),
                config(momentum, 0.1, Schedule::Constant, None),
            ),
            case(
                Cell::Rnn,
                Tanh,
                (1, 4, 7, 3, 2),
                (Last, Ce),
                config(
                    OptimizerKind::sgd(),
                    0.5,
                    Schedule::Warmup { warmup_steps: 3 },
                    Some(0.05),
                ),
            ),
            case(
                Cell::Lstm,
                Tanh,
                (5, 5, 3, 65, 2),
                (All, Ce),
                config(heavy_ball, 0.2, cosine(1, 0.01), Some(0.005)),
            ),
        ],
        1000,
    );
}

#[test]
fn adam_steps_match_cpu() {
    let l2 = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-3,
    };
    check(
        &[
            case(
                Cell::Rnn,
                Tanh,
                (1, 6, 3, 65, 2),
                (Last, Mse),
                config(l2, 1e-2, cosine(1, 1e-3), Some(0.02)),
            ),
            case(
                Cell::Lstm,
                Tanh,
                (5, 9, 7, 17, 1),
                (Last, Mse),
                config(OptimizerKind::adam(), 3e-3, Schedule::Constant, None),
            ),
        ],
        1100,
    );
}

#[test]
fn adamw_steps_match_cpu() {
    let strong_decay = OptimizerKind::AdamW {
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    check(
        &[
            case(
                Cell::Rnn,
                Sigmoid,
                (5, 5, 4, 3, 3),
                (All, Ce),
                config(
                    OptimizerKind::adamw(),
                    1e-2,
                    Schedule::Warmup { warmup_steps: 2 },
                    None,
                ),
            ),
            case(
                Cell::Lstm,
                Tanh,
                (1, 3, 2, 3, 4),
                (Last, Ce),
                config(strong_decay, 1e-2, Schedule::Constant, Some(0.01)),
            ),
        ],
        1200,
    );
}

#[test]
fn rmsprop_steps_match_cpu() {
    let momentum = OptimizerKind::RmsProp {
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.9,
    };
    check(
        &[
            case(
                Cell::Rnn,
                Tanh,
                (5, 8, 2, 65, 1),
                (Last, Mse),
                config(momentum, 1e-3, Schedule::Constant, Some(0.05)),
            ),
            case(
                Cell::Lstm,
                Tanh,
                (1, 6, 5, 17, 2),
                (All, Mse),
                config(OptimizerKind::rmsprop(), 1e-3, cosine(2, 0.0), None),
            ),
        ],
        1300,
    );
}

fn small_lstm() -> ModelConfig {
    ModelConfig {
        cell: Cell::Lstm,
        activation: Tanh,
        input_size: 3,
        hidden_size: 17,
        output_size: 2,
        readout: Last,
        loss: Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

#[test]
fn a_training_step_is_one_submission() {
    // A context of its own: the shared one counts the work of tests running beside this one.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let gpu = &gpu;
    let config = small_lstm();
    let (params, batch) = random_problem(&config, 6, 3, seed(1400));
    let model = GpuModel::new(gpu, config, &params).unwrap();
    let optimizer = OptimizerConfig {
        clip: Some(0.01),
        ..OptimizerConfig::new(OptimizerKind::adam())
    };
    let mut opt = GpuOptimizer::new(gpu, &model, optimizer).unwrap();
    // The same forward + BPTT without the optimizer, for the dispatch count.
    let grads_only = Request {
        backward: true,
        param_grads: true,
        ..Request::default()
    };
    let before = gpu.work_counts();
    model.run(gpu, &batch, grads_only).unwrap();
    let bptt = gpu.work_counts().dispatches - before.dispatches;
    for step in 1..=2 {
        let before = gpu.work_counts();
        model
            .train_step(gpu, &batch, &mut opt, Request::default())
            .unwrap();
        let after = gpu.work_counts();
        assert_eq!(after.submissions - before.submissions, 1, "step {step}");
        // 6 per-tensor sums of squares, 1 global norm, 6 per-tensor updates
        assert_eq!(
            after.dispatches - before.dispatches,
            bptt + 13,
            "step {step}"
        );
    }
}

#[test]
fn saved_optimizer_state_resumes_bit_identically() {
    let gpu = gpu();
    let config = small_lstm();
    let kinds = [
        OptimizerKind::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        },
        OptimizerKind::adamw(),
        OptimizerKind::RmsProp {
            alpha: 0.9,
            eps: 1e-8,
            momentum: 0.5,
        },
    ];
    for (k, kind) in kinds.into_iter().enumerate() {
        let (params, batch) = random_problem(&config, 4, 5, seed(1500 + k as u64));
        let optimizer = config_with(kind);
        let model = GpuModel::new(gpu, config, &params).unwrap();
        let mut opt = GpuOptimizer::new(gpu, &model, optimizer).unwrap();
        for _ in 0..2 {
            model
                .train_step(gpu, &batch, &mut opt, Request::default())
                .unwrap();
        }
        let saved = opt.state_tensors(gpu).unwrap();
        let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"momentum_buffer.weight_hh_l0") || names.contains(&"exp_avg.head.bias"),
            "{kind}: {names:?}"
        );
        let resumed_model = GpuModel::new(gpu, config, &model.params(gpu).unwrap()).unwrap();
        let mut resumed = GpuOptimizer::new(gpu, &resumed_model, optimizer).unwrap();
        let missing = resumed.load_state(gpu, opt.steps(), &saved[1..]);
        assert!(missing.is_err(), "{kind}: a missing tensor was accepted");
        resumed.load_state(gpu, opt.steps(), &saved).unwrap();

        let a = model
            .train_step(gpu, &batch, &mut opt, Request::default())
            .unwrap();
        let b = resumed_model
            .train_step(gpu, &batch, &mut resumed, Request::default())
            .unwrap();
        assert_eq!((a.step, a.lr), (b.step, b.lr), "{kind}");
        assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits(), "{kind}");
        let bits = |p: Params<f32>, state: Vec<(String, Vec<f32>)>| {
            let mut words: Vec<u32> = Vec::new();
            for (_, values) in p.tensors() {
                words.extend(values.iter().map(|v| v.to_bits()));
            }
            for (_, values) in state {
                words.extend(values.iter().map(|v| v.to_bits()));
            }
            words
        };
        assert!(
            bits(model.params(gpu).unwrap(), opt.state_tensors(gpu).unwrap())
                == bits(
                    resumed_model.params(gpu).unwrap(),
                    resumed.state_tensors(gpu).unwrap()
                ),
            "{kind}: the resumed run differs"
        );
    }
}

fn config_with(kind: OptimizerKind) -> OptimizerConfig {
    OptimizerConfig {
        kind,
        lr: 1e-2,
        schedule: cosine(1, 1e-3),
        clip: Some(1.0),
    }
}
