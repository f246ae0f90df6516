//! The engine's promise: one submission per forward + BPTT, no host wait inside it, and a
//! fixed number of dispatches per time step and cell (1 forward and 1 backward: the recurrent
//! product with the cell in its epilogue), or none per step with the persistent recurrence,
//! counted by the instrumented context.

use super::seed;
use rnn_wgpu::internals::bench::{recurrent_dispatches_per_step, DispatchesPerStep};
use rnn_wgpu::internals::gpu::Recurrence;
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};

#[test]
fn forward_and_bptt_take_one_submission_and_two_dispatches_per_step() {
    check_dispatches_per_step(Recurrence::Steps, 2);
}

#[test]
fn the_persistent_recurrence_takes_no_dispatch_per_step() {
    check_dispatches_per_step(Recurrence::Persistent, 0);
}

/// What `bench --json` reports as `recurrent_dispatches_per_step`: one dispatch per step
/// forward and one backward for every cell, stacked and bidirectional too, at awkward sizes
/// (a batch of 1 and of 17 takes other workgroup shapes than one of 65), and none per step
/// with the persistent recurrence.
#[test]
fn every_cell_takes_one_dispatch_per_step_forward_and_one_backward() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let mut failed = Vec::new();
    for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
        let one = one_layer(cell, (3, 17, 2), Readout::All);
        let stacked = ModelConfig {
            layers: 2,
            bidirectional: true,
            ..one
        };
        for (config, batch) in [(one, 1), (one, 65), (stacked, 17)] {
            for (recurrence, expected) in [(Recurrence::Steps, 1), (Recurrence::Persistent, 0)] {
                let counted = recurrent_dispatches_per_step(&gpu, &config, batch, recurrence)
                    .expect("counting runs");
                let expected = DispatchesPerStep {
                    forward: expected,
                    backward: expected,
                };
                if counted != expected {
                    failed.push(format!(
                        "{cell}, {} layer(s), bidirectional {}, batch {batch},                          {recurrence:?}: {counted:?}, expected {expected:?}",
                        config.layers, config.bidirectional
                    ));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A one-layer model of (input, hidden, output) sizes with an MSE loss.
fn one_layer(
    cell: Cell,
    (input, hidden, output): (usize, usize, usize),
    readout: Readout,
) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: input,
        hidden_size: hidden,
        output_size: output,
        readout,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// Runs T = 5 and T = 15 and checks that the 10 extra steps cost `per_step` dispatches per
/// cell, in one submission each.
fn check_dispatches_per_step(recurrence: Recurrence, per_step: u64) {
    let one = one_layer(Cell::Lstm, (3, 17, 2), Readout::Last);
    // A context of its own: the shared one counts the work of tests running beside this one.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let gpu = &gpu;
    // Stacked and bidirectional models take the same per step and cell: the joins and
    // reversals between layers are a few dispatches per pass, not per step.
    for config in [
        one,
        ModelConfig { layers: 3, ..one },
        ModelConfig {
            layers: 2,
            bidirectional: true,
            ..one
        },
    ] {
        let mut per_run = Vec::new();
        for seq_len in [5, 15] {
            let (params, batch) = random_problem(&config, seq_len, 3, seed(77));
            let mut model = GpuModel::new(gpu, config, &params).unwrap();
            model.recurrence = recurrence;
            let before = gpu.work_counts();
            model.run(gpu, &batch, Request::everything()).unwrap();
            let after = gpu.work_counts();
            assert_eq!(after.submissions - before.submissions, 1, "T={seq_len}");
            per_run.push(after.dispatches - before.dispatches);
        }
        assert_eq!(
            per_run[1] - per_run[0],
            per_step * 10 * config.cells() as u64,
            "{recurrence:?}, {} layer(s), bidirectional {}: dispatches for T=5 and T=15: \
             {per_run:?}; expected {per_step} more per extra step and cell",
            config.layers,
            config.bidirectional
        );
    }
}
