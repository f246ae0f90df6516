//! A lost device (here destroyed on purpose) gives an error naming it, not a hang or a panic.

use super::seed;
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};

#[test]
fn a_lost_device_is_an_error_not_a_hang() {
    // A context of its own: the shared one must stay usable for the other tests.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let config = ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 2,
        hidden_size: 5,
        output_size: 1,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    let (params, batch) = random_problem(&config, 4, 3, seed(900));
    let model = GpuModel::new(&gpu, config, &params).unwrap();
    model.run(&gpu, &batch, Request::default()).unwrap();
    gpu.device.destroy();
    let error = model
        .run(&gpu, &batch, Request::everything())
        .expect_err("a destroyed device cannot run")
        .to_string();
    assert!(
        error.contains("was lost") && error.contains("--load"),
        "{error}"
    );
}
