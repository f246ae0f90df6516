//! `--precision f16` on the GPU: f16 storage of the activations, gates, their gradients and the
//! weights' working copy, every sum in f32.

use super::{gpu, seed};
use crate::common::{relative_error, EVERY_CELL};
use rnn_wgpu::gpu::{GpuModel, Request};
use rnn_wgpu::parity::{random_problem, run_parity_with, F16_TOLERANCE};
use rnn_wgpu::plan::{PlanOptions, Recompute};
use rnn_wgpu::precision::Precision;
use rnn_wgpu::{Loss, ModelConfig, Readout};

/// f16 storage stays near the f32 run (f16 keeps 11 significant bits: relative errors of a
/// few 1e-3) yet differs from it, for every cell.
#[test]
fn f16_storage_stays_near_f32() {
    for (k, (cell, activation)) in EVERY_CELL.into_iter().enumerate() {
        let config = ModelConfig {
            cell,
            activation,
            input_size: 3,
            hidden_size: 17,
            output_size: 2,
            readout: Readout::All,
            loss: Loss::Mse,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        };
        let (params, batch) = random_problem(&config, 9, 5, seed(900 + k as u64));
        let run = |precision| {
            let mut model = GpuModel::new(gpu(), config, &params).unwrap();
            let options = PlanOptions {
                precision,
                ..Default::default()
            };
            model.set_plan_options(options, 0);
            model.run(gpu(), &batch, Request::everything()).unwrap()
        };
        let (full, half) = (run(Precision::F32), run(Precision::F16));
        let grads = |o: &rnn_wgpu::gpu::GpuOutput| {
            let g = o.grads.as_ref().unwrap();
            g.tensors()
                .into_iter()
                .flat_map(|(_, v)| v.to_vec())
                .collect::<Vec<f32>>()
        };
        let outputs = |o: &rnn_wgpu::gpu::GpuOutput| {
            o.outputs
                .as_ref()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        let (e_out, _) = relative_error(&outputs(&half), &outputs(&full));
        let (e_grad, _) = relative_error(&grads(&half), &grads(&full));
        let (e_dx, _) = relative_error(
            half.dx.as_ref().unwrap().as_slice().unwrap(),
            full.dx.as_ref().unwrap().as_slice().unwrap(),
        );
        eprintln!("{cell:?}/{activation:?}: outputs {e_out:.2e} grads {e_grad:.2e} dx {e_dx:.2e} loss {} vs {}", half.loss, full.loss);
        assert!(e_out < 1e-2 && e_grad < 3e-2 && e_dx < 3e-2, "{cell:?}");
        assert!(e_out > 0.0);
    }
}

/// One model shape of the f16 parity sweep.
struct Case {
    batch: usize,
    seq_len: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
    ragged: bool,
    readout: Readout,
}

/// GPU f16 storage against the f64 reference rounding to f16 where the GPU stores, within
/// `F16_TOLERANCE`, for every cell at awkward sizes: batch 1 and 3, T 1 to 65, hidden 1 to
/// 65, stacked, bidirectional, ragged, every-step readout, and in segments recomputed from
/// their saved states (f16 start states, odd element offsets).
#[test]
fn f16_parity_with_the_rounding_reference_at_awkward_sizes() {
    let case = |batch, seq_len, input, hidden| Case {
        batch,
        seq_len,
        input,
        hidden,
        layers: 1,
        bidirectional: false,
        ragged: false,
        readout: Readout::Last,
    };
    let cases = [
        case(1, 1, 1, 1),
        case(3, 17, 5, 17),
        Case {
            readout: Readout::All,
            ragged: true,
            ..case(3, 65, 2, 65)
        },
        Case {
            layers: 2,
            bidirectional: true,
            ragged: true,
            ..case(3, 9, 3, 5)
        },
    ];
    let recompute = PlanOptions {
        recompute: Recompute::Every(7),
        precision: Precision::F16,
        ..Default::default()
    };
    let plain = PlanOptions {
        precision: Precision::F16,
        ..Default::default()
    };
    let mut failed = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        for (cell, activation) in EVERY_CELL {
            let config = ModelConfig {
                cell,
                activation,
                input_size: c.input,
                hidden_size: c.hidden,
                output_size: 2,
                readout: c.readout,
                loss: Loss::Mse,
                layers: c.layers,
                bidirectional: c.bidirectional,
                dropout: 0.0,
            };
            let seed = seed(910 + k as u64);
            let (params, mut batch) = random_problem(&config, c.seq_len, c.batch, seed);
            if c.ragged {
                let lengths = (0..c.batch)
                    .map(|b| c.seq_len - b * c.seq_len / 3)
                    .collect();
                batch.lengths = Some(lengths);
            }
            let long = c.seq_len > 7 && !c.bidirectional;
            let options = if long { recompute } else { plain };
            let label = format!(
                "{cell:?}/{activation:?} B={} T={} I={} H={} layers={} bidirectional={} \
                 ragged={} readout={} recompute={long} seed={seed}",
                c.batch,
                c.seq_len,
                c.input,
                c.hidden,
                c.layers,
                c.bidirectional,
                c.ragged,
                c.readout
            );
            let report = run_parity_with(gpu(), &config, &params, &batch, options)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            // A ReLU unit whose pre-activation lies within f16 rounding of the kink may switch
            // off on one side only: then its gradients differ, no kernel fault, and only the
            // forward values must agree.
            let forward_only = report.kinks > 0;
            let failures: Vec<_> = (report.failures(F16_TOLERANCE).into_iter())
                .filter(|c| !forward_only || !c.name.contains("d "))
                .collect();
            if !failures.is_empty() {
                let lines: Vec<String> = failures.iter().map(|c| format!("    {c}")).collect();
                failed.push(format!("{label}\n{}", lines.join("\n")));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "beyond {F16_TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}
