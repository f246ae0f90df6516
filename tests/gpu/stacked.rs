//! Stacked and bidirectional models on the GPU against the CPU reference: every cell, one and
//! three layers, one and two directions, equal and ragged lengths (with a length-1 sequence),
//! both readouts; and dropout between layers drawing the same masks on both engines.

use super::{gpu, seed};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, TOLERANCE};
use rnn_wgpu::internals::plan::{PlanOptions, Recompute};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::train::Engine;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};

fn config(cell: Cell, layers: usize, bidirectional: bool, readout: Readout) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: 17,
        output_size: 4,
        readout,
        loss: match readout {
            Readout::Last => Loss::Mse,
            Readout::All => Loss::CrossEntropy,
        },
        layers,
        bidirectional,
        dropout: 0.0,
    }
}

#[test]
fn stacked_and_bidirectional_models_match_cpu() {
    let (seq_len, batch) = (7, 5);
    let mut failed = Vec::new();
    let mut case = 0;
    for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
        for (layers, bidirectional) in [(1, true), (3, false), (3, true)] {
            for readout in [Readout::Last, Readout::All] {
                for lengths in [None, Some(vec![7, 1, 4, 6, 2])] {
                    case += 1;
                    let config = config(cell, layers, bidirectional, readout);
                    let seed = seed(900 + case);
                    let (params, mut data) = random_problem(&config, seq_len, batch, seed);
                    data.lengths = lengths.clone();
                    let report =
                        run_parity_with(gpu(), &config, &params, &data, PlanOptions::default())
                            .unwrap();
                    assert!(report.comparisons.len() > 4 * config.cells());
                    for c in report.failures(TOLERANCE) {
                        failed.push(format!(
                            "{cell} layers={layers} bidirectional={bidirectional} {readout} \
                             lengths={lengths:?} seed={seed}: {c}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "stacked models, ||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// Training steps with dropout: the GPU and the CPU engine draw the same masks from the same
/// seed (a hash of seed, step, layer and element), so their losses and parameters agree to
/// f32 rounding, also when the sequence is cut into recomputed segments; and dropout does
/// change the step.
#[test]
fn dropout_trains_alike_on_both_engines() {
    let (seq_len, batch) = (6, 5);
    for (cell, layers, bidirectional, recompute) in [
        (Cell::Lstm, 2, true, Recompute::Off),
        (Cell::Gru, 2, true, Recompute::Off),
        (Cell::Rnn, 3, false, Recompute::Every(4)),
    ] {
        let dropped = ModelConfig {
            dropout: 0.5,
            ..config(cell, layers, bidirectional, Readout::All)
        };
        let (params, mut data) = random_problem(&dropped, seq_len, batch, seed(990));
        data.lengths = Some(vec![6, 3, 1, 5, 6]);
        let optimizer = OptimizerConfig::new(OptimizerKind::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        });
        let run = |config: ModelConfig, on_gpu: bool| {
            let mut engine = Engine::new(on_gpu.then(gpu), config, &params, optimizer).unwrap();
            engine.set_dropout_seed(7);
            engine.set_plan_options(PlanOptions {
                recompute,
                ..PlanOptions::default()
            });
            let losses: Vec<f32> = (0..3)
                .map(|_| engine.step(&data, false).unwrap().loss)
                .collect();
            (losses, engine.params().unwrap())
        };
        let (gpu_losses, gpu_params) = run(dropped, true);
        let (cpu_losses, cpu_params) = run(dropped, false);
        for (step, (g, c)) in gpu_losses.iter().zip(&cpu_losses).enumerate() {
            assert!(
                ((g - c) / c).abs() < 1e-4,
                "{cell} step {}: loss gpu {g} cpu {c}",
                step + 1
            );
        }
        for ((name, g), (_, c)) in gpu_params.tensors().into_iter().zip(cpu_params.tensors()) {
            let diff: f64 = g.iter().zip(c).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            let norm: f64 = c.iter().map(|b| (*b as f64).powi(2)).sum();
            assert!(
                (diff / norm).sqrt() < 1e-4,
                "{cell} {name}: ||gpu - cpu|| / ||cpu|| = {:e}",
                (diff / norm).sqrt()
            );
        }
        let (plain_losses, _) = run(
            ModelConfig {
                dropout: 0.0,
                ..dropped
            },
            true,
        );
        assert_ne!(
            plain_losses[0], gpu_losses[0],
            "{cell}: dropout changed nothing"
        );
        // Evaluation never drops: the same loss as the model without dropout.
        let eval = |config| {
            Engine::new(Some(gpu()), config, &params, optimizer)
                .unwrap()
                .evaluate(&data)
                .unwrap()
        };
        assert_eq!(
            eval(dropped),
            eval(ModelConfig {
                dropout: 0.0,
                ..dropped
            })
        );
    }
}

#[test]
fn a_stacked_model_too_long_for_one_segment_is_refused() {
    let config = config(Cell::Lstm, 2, true, Readout::Last);
    let (params, data) = random_problem(&config, 40, 3, seed(995));
    let options = PlanOptions {
        max_binding: Some(4096),
        ..PlanOptions::default()
    };
    let message = run_parity_with(gpu(), &config, &params, &data, options)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("one segment") && message.contains("T=40 B=3"),
        "{message}"
    );
}
