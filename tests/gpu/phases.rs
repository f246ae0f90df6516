//! Per-phase GPU time of a training step from timestamp queries (`Request::phase_times`): every
//! phase is timed, no time is negative, the phases fit inside the step's wall time and are not
//! a sliver of it, and timing changes no bit of the result.
//!
//! On an idle machine the step is GPU-bound on lavapipe (about 97% of its wall time inside timed
//! passes at these sizes); the rest is recording, submission, copies between passes and the
//! read-back. The lower bound, 5%, is what a wrong tick period would break (a factor of
//! 1,000), not a speed: the tests beside this one share a 2-core CI machine's cores with
//! lavapipe, and with Mesa 26 the phases came to 28% of a step's wall time there once.

use super::seed;
use rnn_wgpu::internals::gpu::optim::GpuOptimizer;
use rnn_wgpu::internals::gpu::{Phase, PhaseTimes};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::internals::plan::{PlanOptions, Recompute};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};
use std::time::Instant;

fn config() -> ModelConfig {
    ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: 32,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// One warm-up step (pipelines compile on first use), then one timed step: its phase times and
/// wall time in ms, or None where the adapter has no timestamp queries.
fn timed_step(gpu: &Gpu, recompute: Recompute) -> Option<(PhaseTimes, f64)> {
    let config = config();
    let (params, batch) = random_problem(&config, 12, 8, seed(91));
    let mut model = GpuModel::new(gpu, config, &params).unwrap();
    model.set_plan_options(
        PlanOptions {
            recompute,
            ..PlanOptions::default()
        },
        0,
    );
    let mut optimizer =
        GpuOptimizer::new(gpu, &model, OptimizerConfig::new(OptimizerKind::sgd())).unwrap();
    let timed = Request {
        phase_times: true,
        ..Request::default()
    };
    model
        .train_step(gpu, &batch, &mut optimizer, Request::default())
        .unwrap();
    let start = Instant::now();
    let out = model
        .train_step(gpu, &batch, &mut optimizer, timed)
        .unwrap();
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(out.output.phase_times.is_some(), gpu.has_timestamps());
    out.output.phase_times.map(|times| (times, wall_ms))
}

fn check(times: &PhaseTimes, wall_ms: f64, what: &str) {
    for phase in Phase::ALL {
        let ms = times
            .get(phase)
            .unwrap_or_else(|| panic!("{what}: no pass timed for {phase:?}: {times:?}"));
        assert!(ms >= 0.0, "{what}: {phase:?} took {ms} ms: {times:?}");
    }
    let sum = times.total_ms();
    eprintln!("{what}: phases {sum:.2} ms of {wall_ms:.2} ms wall, {times:?}");
    assert!(
        sum <= wall_ms,
        "{what}: phases sum to {sum:.3} ms, more than the step's wall time {wall_ms:.3} ms: {times:?}"
    );
    assert!(
        sum >= 0.05 * wall_ms,
        "{what}: phases sum to {sum:.3} ms, under 5% of the step's wall time {wall_ms:.3} ms: {times:?}"
    );
}

#[test]
fn phase_times_cover_every_phase_and_fit_in_the_step() {
    // A context of its own: the shared one's queue also runs the tests beside this one, whose
    // work would sit inside this step's wall time.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let Some((whole, wall_ms)) = timed_step(&gpu, Recompute::Off) else {
        eprintln!(
            "{} has no timestamp queries: phase_times is None, as it must be",
            gpu.adapter_name()
        );
        return;
    };
    check(&whole, wall_ms, "one segment");

    // Segments of 4 steps, recomputed in the backward pass: the phases recur per segment
    // (and the input GEMM and forward recurrence once more per recomputed segment) and add up.
    let (segmented, wall_ms) = timed_step(&gpu, Recompute::Every(4)).unwrap();
    check(&segmented, wall_ms, "three recomputed segments");
    assert!(
        segmented.passes > whole.passes,
        "{} timed passes with segments, {} without",
        segmented.passes,
        whole.passes
    );
}

#[test]
fn timing_the_phases_changes_no_bit_of_the_step() {
    let gpu = super::gpu();
    let config = config();
    let (params, batch) = random_problem(&config, 7, 5, seed(92));
    let step = |request: Request| {
        let model = GpuModel::new(gpu, config, &params).unwrap();
        let mut optimizer =
            GpuOptimizer::new(gpu, &model, OptimizerConfig::new(OptimizerKind::adam())).unwrap();
        let out = model
            .train_step(gpu, &batch, &mut optimizer, request)
            .unwrap();
        (out.loss, out.grad_norm, model.params(gpu).unwrap())
    };
    let plain = step(Request::default());
    let timed = step(Request {
        phase_times: true,
        ..Request::default()
    });
    assert_eq!(plain.0.to_bits(), timed.0.to_bits(), "loss");
    assert_eq!(plain.1.to_bits(), timed.1.to_bits(), "gradient norm");
    for ((name, a), (_, b)) in plain.2.tensors().into_iter().zip(timed.2.tensors()) {
        let same = a
            .iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs after a timed step");
    }
}
