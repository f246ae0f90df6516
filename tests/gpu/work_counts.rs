//! The engine's promise: one submission per forward + BPTT, no host wait inside it, and a
//! fixed number of dispatches per time step and cell (1 forward and 1 backward: the recurrent
//! product with the cell in its epilogue), or none per step with the persistent recurrence,
//! counted by the instrumented context.

use super::seed;
use rnn_wgpu::bench::{recurrent_dispatches_per_step, DispatchesPerStep};
use rnn_wgpu::gpu::{Gpu, GpuModel, Recurrence, Request};
use rnn_wgpu::parity::random_problem;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};

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

/// Where the large products read their operands from textures (CPU adapters with 8-lane
/// subgroups; `gemm_texels.wgsl`): the results still match the f64 reference, and an extra
/// time step fills no texture: the recurrent products run inside the fused step kernels, and
/// the products over all steps fill theirs once per pass.
#[test]
fn texel_products_fill_no_texture_per_step_and_match_cpu() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let config = one_layer(Cell::Lstm, (64, 128, 3), Readout::All);
    // At T = 4, T * B = 4H: dW_hh's h [T * B, H] has the shape of W_hh [4H, H], whose scratch
    // texture dE/dh_0's product must not take as holding W_hh.
    let mut fills = Vec::new();
    for seq_len in [3, 7, 4] {
        let (params, batch) = random_problem(&config, seq_len, 128, seed(78 + seq_len as u64));
        let before = gpu.work_counts().texel_fills;
        let report = rnn_wgpu::parity::run_parity(&gpu, &config, &params, &batch).unwrap();
        fills.push(gpu.work_counts().texel_fills - before);
        let failures = report.failures(rnn_wgpu::parity::TOLERANCE);
        assert!(failures.is_empty(), "T={seq_len}: {failures:?}");
    }
    if gpu.scratch_texels_bytes() > 0 {
        assert!(fills[0] > 0, "no texture filled");
        assert_eq!(
            fills[1], fills[0],
            "texture fills for T=3 and T=7: {fills:?}"
        );
    } else {
        assert_eq!(fills, [0, 0, 0]);
    }
}

/// The other cells, and a stacked bidirectional LSTM (whose upper layer reads both directions
/// below), with recurrent and weight-gradient products large enough to run from textures:
/// every tensor still matches the f64 reference.
#[test]
fn texel_products_match_cpu_for_every_cell_and_stack() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let base = one_layer(Cell::Gru, (64, 128, 2), Readout::Last);
    let configs = [
        base,
        ModelConfig {
            cell: Cell::Rnn,
            readout: Readout::All,
            ..base
        },
        ModelConfig {
            cell: Cell::Lstm,
            layers: 2,
            bidirectional: true,
            ..base
        },
    ];
    let mut failed = Vec::new();
    for (k, config) in configs.iter().enumerate() {
        let (params, batch) = random_problem(config, 5, 128, seed(90 + k as u64));
        let before = gpu.work_counts().texel_fills;
        let report = rnn_wgpu::parity::run_parity(&gpu, config, &params, &batch).unwrap();
        let fills = gpu.work_counts().texel_fills - before;
        if gpu.scratch_texels_bytes() > 0 && fills == 0 {
            failed.push(format!("{config:?}: no product ran from textures"));
        }
        for c in report.failures(rnn_wgpu::parity::TOLERANCE) {
            failed.push(format!("{config:?}: {c}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
