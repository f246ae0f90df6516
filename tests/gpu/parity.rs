//! CPU (f64 reference) vs GPU (f32) for every tensor the engine produces, over configurations
//! chosen to be awkward: sizes that are not multiples of any tile (1, 3, 17, 65, 257), batch 1
//! and 5, input 1 and 7, seq_len 1, 2, 33 and over 500, every cell, activation, readout, loss.

use super::{gpu, seed};
use crate::common::{small_model, EVERY_CELL};
use rnn_wgpu::internals::parity::{random_problem, run_parity, TOLERANCE};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};

struct Case {
    cell: Cell,
    activation: Activation,
    batch: usize,
    seq_len: usize,
    input: usize,
    hidden: usize,
    output: usize,
    readout: Readout,
    loss: Loss,
}

#[allow(clippy::too_many_arguments)]
fn case(
    cell: Cell,
    activation: Activation,
    (batch, seq_len, input, hidden, output): (usize, usize, usize, usize, usize),
    readout: Readout,
    loss: Loss,
) -> Case {
    Case {
        cell,
        activation,
        batch,
        seq_len,
        input,
        hidden,
        output,
        readout,
        loss,
    }
}

fn check(cases: &[Case], first_seed: u64) {
    let mut failed = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        let config = ModelConfig {
            cell: c.cell,
            activation: c.activation,
            input_size: c.input,
            hidden_size: c.hidden,
            output_size: c.output,
            readout: c.readout,
            loss: c.loss,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        };
        let seed = seed(first_seed + k as u64);
        let (params, batch) = random_problem(&config, c.seq_len, c.batch, seed);
        let label = format!(
            "{:?}/{:?} B={} T={} I={} H={} O={} readout={} loss={} seed={seed}",
            c.cell,
            c.activation,
            c.batch,
            c.seq_len,
            c.input,
            c.hidden,
            c.output,
            c.readout,
            c.loss
        );
        let report =
            run_parity(gpu(), &config, &params, &batch).unwrap_or_else(|e| panic!("{label}: {e}"));
        let failures = report.failures(TOLERANCE);
        if !failures.is_empty() {
            let lines: Vec<String> = failures.iter().map(|c| format!("    {c}")).collect();
            failed.push(format!("{label}\n{}", lines.join("\n")));
        }
    }
    assert!(
        failed.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e} (tensor, elements, rel err, worst element):\n{}",
        failed.join("\n")
    );
}

#[test]
fn rnn_tanh_matches_cpu() {
    use Activation::Tanh;
    check(
        &[
            case(
                Cell::Rnn,
                Tanh,
                (5, 2, 7, 3, 2),
                Readout::All,
                Loss::CrossEntropy,
            ),
            case(Cell::Rnn, Tanh, (5, 513, 1, 3, 2), Readout::Last, Loss::Mse),
            case(Cell::Rnn, Tanh, (5, 33, 7, 65, 3), Readout::All, Loss::Mse),
            case(
                Cell::Rnn,
                Tanh,
                (1, 1, 1, 1, 1),
                Readout::Last,
                Loss::CrossEntropy,
            ),
        ],
        100,
    );
}

#[test]
fn rnn_sigmoid_matches_cpu() {
    use Activation::Sigmoid;
    check(
        &[
            case(
                Cell::Rnn,
                Sigmoid,
                (5, 33, 1, 17, 3),
                Readout::All,
                Loss::Mse,
            ),
            case(
                Cell::Rnn,
                Sigmoid,
                (1, 1, 7, 257, 1),
                Readout::Last,
                Loss::Mse,
            ),
            case(
                Cell::Rnn,
                Sigmoid,
                (1, 2, 1, 3, 4),
                Readout::Last,
                Loss::CrossEntropy,
            ),
        ],
        200,
    );
}

#[test]
fn rnn_relu_matches_cpu() {
    use Activation::Relu;
    check(
        &[
            case(
                Cell::Rnn,
                Relu,
                (1, 33, 7, 65, 4),
                Readout::Last,
                Loss::CrossEntropy,
            ),
            case(
                Cell::Rnn,
                Relu,
                (5, 2, 1, 1, 2),
                Readout::All,
                Loss::CrossEntropy,
            ),
            case(Cell::Rnn, Relu, (5, 33, 7, 17, 1), Readout::All, Loss::Mse),
        ],
        300,
    );
}

#[test]
fn lstm_matches_cpu() {
    let tanh = Activation::Tanh; // ignored by the LSTM
    check(
        &[
            case(Cell::Lstm, tanh, (1, 1, 1, 1, 1), Readout::Last, Loss::Mse),
            case(
                Cell::Lstm,
                tanh,
                (5, 33, 7, 257, 3),
                Readout::All,
                Loss::CrossEntropy,
            ),
            case(Cell::Lstm, tanh, (1, 2, 1, 65, 5), Readout::All, Loss::Mse),
            case(
                Cell::Lstm,
                tanh,
                (3, 17, 3, 3, 2),
                Readout::Last,
                Loss::CrossEntropy,
            ),
            case(Cell::Lstm, tanh, (5, 2, 7, 17, 1), Readout::Last, Loss::Mse),
        ],
        400,
    );
}

#[test]
fn gru_matches_cpu() {
    let tanh = Activation::Tanh; // ignored by the GRU
    check(
        &[
            case(Cell::Gru, tanh, (1, 1, 1, 1, 1), Readout::Last, Loss::Mse),
            case(
                Cell::Gru,
                tanh,
                (5, 33, 7, 257, 3),
                Readout::All,
                Loss::CrossEntropy,
            ),
            case(Cell::Gru, tanh, (1, 2, 1, 65, 5), Readout::All, Loss::Mse),
            case(
                Cell::Gru,
                tanh,
                (3, 17, 3, 3, 2),
                Readout::Last,
                Loss::CrossEntropy,
            ),
            case(
                Cell::Gru,
                tanh,
                (65, 40, 2, 17, 1),
                Readout::Last,
                Loss::Mse,
            ),
        ],
        450,
    );
}

#[test]
fn lstm_long_sequence_matches_cpu() {
    check(
        &[case(
            Cell::Lstm,
            Activation::Tanh,
            (5, 600, 7, 17, 2),
            Readout::All,
            Loss::CrossEntropy,
        )],
        500,
    );
}

#[test]
fn rnn_large_batch_tile_edges_match_cpu() {
    // B * H and T * B straddle the 64-wide GEMM tiles and the 64-invocation step workgroups.
    check(
        &[
            case(
                Cell::Rnn,
                Activation::Tanh,
                (65, 3, 7, 65, 3),
                Readout::All,
                Loss::Mse,
            ),
            case(
                Cell::Lstm,
                Activation::Tanh,
                (67, 3, 65, 17, 3),
                Readout::Last,
                Loss::Mse,
            ),
        ],
        600,
    );
}

/// Weight gradients sum T * B rows: here 160,000 (a 3-layer sigmoid RNN, cross-entropy on
/// every one of 2,500 steps of 64 sequences). In one f32 chain the head's weight gradient,
/// whose terms cancel, was off by 6.4e-4; every tile sums such a K in parts of workgroups of
/// about 4,096 rows each (`gemm::k_parts`), which brings it to about 3e-7.
#[test]
fn gradients_summed_over_160000_rows_match_cpu() {
    let config = super::common::long_sum_model();
    let (params, batch) = random_problem(&config, 2500, 64, seed(6455));
    let report = run_parity(gpu(), &config, &params, &batch).unwrap();
    let failures: Vec<String> = report
        .failures(TOLERANCE)
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e}:\n{}",
        failures.join("\n")
    );
}

/// The per-step norms ||dE/dh_t|| (and ||dE/dc_t||) of gradients whose squares leave f32's
/// range, every cell, against the f64 reference like every other tensor: the head's weights
/// scaled by 1e-24 (elements of dE/dh_t near 1e-25 and below, squares under f32's least
/// 1e-45, the norms of a vanishing gradient) and by 1e16 (elements near 1e32, squares past
/// 3e38, an exploding one). Summed as plain squares in f32, the first read 0 and the second inf.
#[test]
fn norms_of_vanishing_and_exploding_gradients_match_the_reference() {
    let mut failed = Vec::new();
    for (k, (cell, activation)) in EVERY_CELL.into_iter().enumerate() {
        for scale in [1e-24f32, 1e16] {
            let config = small_model(cell, activation);
            let seed = seed(960 + k as u64);
            let (mut params, batch) = random_problem(&config, 9, 3, seed);
            params.head_weight.mapv_inplace(|w| w * scale);
            let label = format!("{cell:?}/{activation:?} head weights x {scale:e} seed={seed}");
            let report = (run_parity(gpu(), &config, &params, &batch))
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            failed.extend((report.failures(TOLERANCE).iter()).map(|c| format!("{label}: {c}")));
        }
    }
    assert!(
        failed.is_empty(),
        "beyond {TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}
