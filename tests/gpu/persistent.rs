//! The persistent recurrence (a segment's steps in one dispatch, a workgroup per slice of the
//! batch, W_hh in each workgroup's memory where it fits 4096 floats, else read from memory at
//! every step) at the edges of what it accepts. `run_parity` runs every model both ways where
//! the adapter can run it persistently, so the parity, ragged, segment and stacked tests cover
//! it too; here: W_hh filling the cache to the last float, and just past it, more units and
//! gate rows than the 256 invocations, batches over several slices with the last one short and
//! sequences ending in any of them, the refusal past llvmpipe's loop limit, and bit-identical
//! reruns.

use super::determinism::bits;
use super::{gpu, seed};
use rnn_wgpu::internals::gpu::{PersistentSlices, Recurrence};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, TOLERANCE};
use rnn_wgpu::internals::plan::{PlanOptions, Recompute};
use rnn_wgpu::{Activation, Cell, Error, Loss, ModelConfig, Readout};
use rnn_wgpu::{Batch, GpuModel, Params, Request};

fn config(cell: Cell, input: usize, hidden: usize, output: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: input,
        hidden_size: hidden,
        output_size: output,
        readout: Readout::All,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// Each case (cell, B, T, I, H) through `run_parity_with(options)`, which runs the persistent
/// recurrence besides the per-step one where the adapter runs it: every tensor of both within
/// `TOLERANCE`.
fn both_ways_match_cpu(
    cases: &[(Cell, usize, usize, usize, usize)],
    first_seed: u64,
    options: PlanOptions,
) {
    let mut failed = Vec::new();
    for (k, &(cell, b, t, i, h)) in cases.iter().enumerate() {
        let config = config(cell, i, h, 2);
        let (params, batch) = random_problem(&config, t, b, seed(first_seed + k as u64));
        let label = format!("{cell:?} B={b} T={t} H={h}");
        failed.extend(both_ways_failures(
            &config,
            (&params, &batch),
            options,
            &label,
        ));
    }
    assert!(
        failed.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// The tensors of `run_parity_with`'s runs, per step and persistent, past `TOLERANCE`, each
/// named after `label`; panics where the persistent run was not compared.
fn both_ways_failures(
    config: &ModelConfig,
    (params, batch): (&Params<f32>, &Batch<f32>),
    options: PlanOptions,
    label: &str,
) -> Vec<String> {
    let report = run_parity_with(gpu(), config, params, batch, options).unwrap();
    let persistent = (report.comparisons.iter())
        .filter(|c| c.name.starts_with("persistent: "))
        .count();
    assert!(
        persistent > 0 && 2 * persistent == report.comparisons.len(),
        "{label}: the persistent run was not compared"
    );
    (report.failures(TOLERANCE).into_iter())
        .map(|c| format!("{label}: {c}"))
        .collect()
}

#[test]
fn weights_filling_the_cache_and_more_units_than_invocations_match_cpu() {
    // (cell, B, T, I, H): G*H*H = 4096 (RNN 64, LSTM 32) or just under it (GRU 36: 3888);
    // B*H and B*G*H past 256, so each invocation takes several units and gate rows.
    let cases = [
        (Cell::Rnn, 9, 5, 3, 64),
        (Cell::Lstm, 9, 7, 3, 32),
        (Cell::Gru, 17, 4, 2, 36),
    ];
    both_ways_match_cpu(&cases, 1200, PlanOptions::default());
}

/// Batches over 2 to 9 slices, the last one short, with lengths from 1 to T in every slice
/// (the LSTM's and the GRU's also through recomputed segments), one layer and two directions
/// on two: every tensor of both runs within `TOLERANCE` of the CPU reference.
#[test]
fn batches_sliced_over_workgroups_with_ragged_lengths_match_cpu() {
    // (cell, B, T, H, layers, bidirectional): 8 rows a slice at these H (G*H*H about 4096),
    // 28 at the LSTM's H = 17
    let cases = [
        (Cell::Lstm, 19, 9, 32, 1, false),
        (Cell::Gru, 17, 7, 36, 1, false),
        (Cell::Rnn, 9, 6, 64, 2, true),
        (Cell::Lstm, 65, 5, 17, 1, false),
        (Cell::Rnn, 65, 4, 64, 1, false),
    ];
    let segments = PlanOptions {
        recompute: Recompute::Every(3),
        ..PlanOptions::default()
    };
    let mut failed = Vec::new();
    for (k, &(cell, b, t, h, layers, bidirectional)) in cases.iter().enumerate() {
        let config = ModelConfig {
            layers,
            bidirectional,
            ..config(cell, 3, h, 2)
        };
        let slices = PersistentSlices::of(&config, b);
        assert!(
            slices.count >= 2 && b % slices.rows != 0,
            "{cell:?} B={b} H={h}: {slices:?} should end in a short slice"
        );
        let seed = seed(1270 + k as u64);
        let (params, mut batch) = random_problem(&config, t, b, seed);
        // lengths 1..=T, varying within each slice
        batch.lengths = Some((0..b).map(|r| 1 + (r * 5 + k) % t).collect());
        let plans = match cell {
            Cell::Rnn => vec![PlanOptions::default()],
            _ => vec![PlanOptions::default(), segments],
        };
        let label = format!("{cell:?} B={b} H={h} seed={seed}");
        for options in plans {
            failed.extend(both_ways_failures(
                &config,
                (&params, &batch),
                options,
                &label,
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// llvmpipe ends an invocation's loops once it has run 65,535 iterations of them, silently
/// (`Gpu::loop_limit`), and a persistent dispatch loops over the steps of a segment: each of
/// these once ran several times past it in one dispatch (every persistent tensor wrong, h_n
/// zero) before the host split the steps into runs short enough there. Long sequences at a
/// small batch and at a batch of 8 slices (an invocation loops over its slice's rows: about 97
/// of these GRU steps fit a run), and with W_hh past the cache: at H = 100 the backward step
/// is the longer by the host's count (about 40 steps a run), at H = 300 the forward one,
/// staged in chunks over two passes (4 steps a run); then the first in recomputed segments of
/// 700 steps, each split into runs.
#[test]
fn sequences_past_llvmpipes_loop_limit_match_cpu() {
    let cases = [
        (Cell::Lstm, 1, 2100, 2, 32),
        (Cell::Rnn, 5, 1500, 3, 64),
        (Cell::Gru, 64, 300, 2, 36),
        (Cell::Lstm, 2, 100, 2, 100),
        (Cell::Lstm, 1, 12, 2, 300),
    ];
    both_ways_match_cpu(&cases, 1250, PlanOptions::default());
    let segments = PlanOptions {
        recompute: Recompute::Every(700),
        ..PlanOptions::default()
    };
    let lstm = config(Cell::Lstm, 2, 32, 2);
    let mut model = GpuModel::new(gpu(), lstm, &random_problem(&lstm, 1, 1, 0).0).unwrap();
    model.set_plan_options(segments, 0);
    assert_eq!(model.memory_plan(gpu(), 2100, 1).unwrap().segments, 3);
    both_ways_match_cpu(&cases[..1], 1260, segments);
}

#[test]
fn weights_past_the_cache_read_from_memory_match_cpu() {
    // (cell, B, T, I, H): G*H*H just past 4096 (LSTM 33: 4356, GRU 37: 4107, RNN 65: 4225) and
    // well past it; one slice and several (one row a slice from G*H*H = 32,769). The forward
    // product stages W_hh in chunks of 4096 / (G*H) values of k: the last one short (31 + 2,
    // 36 + 1, 63 + 2), whole (10 x 10, 13 x 10), and at H = 300 chunks of 3 in two passes of
    // the 1024 outputs an invocation sums at a time (1200 gate rows).
    let cases = [
        (Cell::Lstm, 3, 5, 2, 33),
        (Cell::Gru, 9, 4, 3, 37),
        (Cell::Rnn, 17, 6, 3, 65),
        (Cell::Lstm, 5, 4, 3, 100),
        (Cell::Gru, 2, 3, 2, 130),
        (Cell::Lstm, 2, 5, 2, 300),
    ];
    for &(cell, _, _, _, h) in &cases {
        assert!(
            !Recurrence::cached(&config(cell, 2, h, 2)),
            "{cell:?} H={h}"
        );
    }
    both_ways_match_cpu(&cases, 1290, PlanOptions::default());
}

/// On llvmpipe one persistent step of an LSTM of H = 2000 is past the loop limit even at one
/// row a workgroup: asking for it is an error that says so; Auto runs the steps a dispatch
/// each. Elsewhere it runs.
#[test]
fn a_persistent_step_past_the_loop_limit_is_refused_and_auto_runs_per_step() {
    let config = config(Cell::Lstm, 2, 2000, 1);
    let (params, batch) = random_problem(&config, 2, 1, seed(1300));
    let mut model = GpuModel::new(gpu(), config, &params).unwrap();
    model.recurrence = Recurrence::Persistent;
    let forced = model.run(gpu(), &batch, Request::everything());
    if gpu().loop_limit().is_none() {
        assert!(forced.unwrap().loss.is_finite());
        return;
    }
    let err = match forced {
        Ok(_) => panic!("a persistent step of H = 2000 should be past llvmpipe's loop limit"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Config(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("loop iterations") && text.contains("hidden size 2000"),
        "{text}"
    );
    model.recurrence = Recurrence::Auto;
    let out = model.run(gpu(), &batch, Request::everything()).unwrap();
    assert!(out.loss.is_finite(), "loss {}", out.loss);
}

#[test]
fn persistent_runs_are_bit_identical() {
    for (k, cell) in [Cell::Lstm, Cell::Gru, Cell::Rnn].into_iter().enumerate() {
        let config = config(cell, 5, 17, 3);
        let (params, batch) = random_problem(&config, 23, 7, seed(1400 + k as u64));
        let run = || {
            let mut model = GpuModel::new(gpu(), config, &params).unwrap();
            model.recurrence = Recurrence::Persistent;
            bits(&model.run(gpu(), &batch, Request::everything()).unwrap())
        };
        let (first, second) = (run(), run());
        let differing = first.iter().zip(&second).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{cell:?}: {differing} of {} words differ",
            first.len()
        );
    }
}
