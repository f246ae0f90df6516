//! `--precision f16` on the GPU: f16 storage of the activations, gates, their gradients and the
//! weights' working copy, every sum in f32.

use super::{gpu, seed};
use crate::common::{relative_error, EVERY_CELL};
use rnn_wgpu::gpu::{GpuModel, Request};
use rnn_wgpu::parity::random_problem;
use rnn_wgpu::plan::PlanOptions;
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
