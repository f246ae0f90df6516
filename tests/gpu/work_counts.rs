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

/// Where the recurrent products read their operands from textures (CPU adapters with 8-lane
/// subgroups; `gemm_texels.wgsl`): the results still match the f64 reference, and each extra
/// time step fills two textures (h_{t-1} forward, dgates_{t+1} backward) and no more: the
/// recurrent weights are filled once per pass, not once per step.
#[test]
fn texel_products_fill_two_textures_per_step_and_match_cpu() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let config = one_layer(Cell::Lstm, (64, 128, 3), Readout::All);
    // At T = 4, T * B = 4H: dW_hh's h [T * B, H] takes W_hh's [4H, H] scratch texture between
    // the backward steps and dE/dh_0, which must fill it with W_hh again (that fill makes the
    // count uneven, so T = 3 and 7 are counted).
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
            fills[1] - fills[0],
            2 * 4,
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
