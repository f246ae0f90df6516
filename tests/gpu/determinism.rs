//! The same seed on the same adapter gives bit-identical results: every reduction runs in a
//! fixed order and no kernel uses float atomics.

use super::{gpu, seed};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{GpuModel, GpuOutput, Request};

/// Every word a run returns that a reduction order could change.
pub(super) fn bits(out: &GpuOutput) -> Vec<u32> {
    let mut words = vec![out.loss.to_bits()];
    let grads = out.grads.as_ref().unwrap();
    for (_, values) in grads.tensors() {
        words.extend(values.iter().map(|v| v.to_bits()));
    }
    let dx = out.dx.as_ref().unwrap();
    words.extend(dx.iter().map(|v| v.to_bits()));
    words.extend(
        out.grad_norm_h
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.to_bits()),
    );
    if let Some(c) = &out.grad_norm_c {
        words.extend(c.iter().map(|v| v.to_bits()));
    }
    words
}

#[test]
fn two_runs_with_the_same_seed_are_bit_identical() {
    for (k, cell) in [Cell::Lstm, Cell::Rnn].into_iter().enumerate() {
        let config = ModelConfig {
            cell,
            activation: Activation::Tanh,
            input_size: 7,
            hidden_size: 65,
            output_size: 3,
            readout: Readout::All,
            loss: Loss::CrossEntropy,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        };
        let (params, batch) = random_problem(&config, 41, 5, seed(900 + k as u64));
        // Two separate models, so no buffer carries over between the runs.
        let first = GpuModel::new(gpu(), config, &params)
            .and_then(|m| m.run(gpu(), &batch, Request::everything()))
            .unwrap();
        let second = GpuModel::new(gpu(), config, &params)
            .and_then(|m| m.run(gpu(), &batch, Request::everything()))
            .unwrap();
        let (a, b) = (bits(&first), bits(&second));
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing,
            0,
            "{cell:?}: {differing} of {} words differ",
            a.len()
        );
        // and the reused workspace gives the same bits as a fresh one
        let model = GpuModel::new(gpu(), config, &params).unwrap();
        model.run(gpu(), &batch, Request::everything()).unwrap();
        let third = model.run(gpu(), &batch, Request::everything()).unwrap();
        assert!(
            bits(&third) == a,
            "{cell:?}: a second run on the same workspace differs"
        );
    }
}
