//! Batches of sequences of different lengths on the GPU against the CPU reference: padding
//! steps keep the state, are not scored and get no gradient, for every cell, readout and loss,
//! with one layer and two, also when the sequence is split into segments or recomputed.

use super::{gpu, seed};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, TOLERANCE};
use rnn_wgpu::internals::plan::{PlanOptions, Recompute};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};

#[test]
fn ragged_batches_match_cpu() {
    let (seq_len, batch) = (9, 6);
    // A full-length sequence, a length-1 one, and lengths ending on either side of the
    // segment borders below (S = 4: borders after steps 4 and 8).
    let lengths = vec![9, 1, 4, 5, 8, 3];
    let plans = [
        ("one segment", PlanOptions::default()),
        (
            "recomputed segments of 4",
            PlanOptions {
                recompute: Recompute::Every(4),
                ..PlanOptions::default()
            },
        ),
    ];
    let mut failed = Vec::new();
    for (k, cell) in [Cell::Rnn, Cell::Lstm, Cell::Gru].into_iter().enumerate() {
        for (layers, readout, loss) in [
            (1, Readout::Last, Loss::Mse),
            (1, Readout::All, Loss::CrossEntropy),
            (2, Readout::Last, Loss::CrossEntropy),
            (2, Readout::All, Loss::Mse),
        ] {
            let config = ModelConfig {
                cell,
                activation: Activation::Tanh,
                input_size: 3,
                hidden_size: 17,
                output_size: 4,
                readout,
                loss,
                layers,
                bidirectional: false,
                dropout: 0.0,
            };
            let seed = seed(800 + k as u64);
            let (params, mut data) = random_problem(&config, seq_len, batch, seed);
            data.lengths = Some(lengths.clone());
            for (label, options) in plans {
                let report = run_parity_with(gpu(), &config, &params, &data, options).unwrap();
                for c in report.failures(TOLERANCE) {
                    failed.push(format!(
                        "{cell} x {layers} {readout} {loss} {label} seed={seed}: {c}"
                    ));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "ragged batches, ||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}
