//! The engine's promise: one submission per forward + BPTT, no host wait inside it, and a
//! fixed number of dispatches per time step (2 forward: recurrent GEMM + cell; 2 backward:
//! recurrent GEMM + cell), or none per step with the persistent recurrence, counted by the
//! instrumented context.

use super::seed;
use rnn_wgpu::gpu::{Gpu, GpuModel, Recurrence, Request};
use rnn_wgpu::parity::random_problem;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};

#[test]
fn forward_and_bptt_take_one_submission_and_four_dispatches_per_step() {
    check_dispatches_per_step(Recurrence::Steps, 4);
}

#[test]
fn the_persistent_recurrence_takes_no_dispatch_per_step() {
    check_dispatches_per_step(Recurrence::Persistent, 0);
}

/// Runs T = 5 and T = 15 and checks that the 10 extra steps cost `per_step` dispatches per
/// cell, in one submission each.
fn check_dispatches_per_step(recurrence: Recurrence, per_step: u64) {
    let one = ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: 17,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
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
