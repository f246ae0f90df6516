//! The README's library example: one forward + BPTT on the GPU, and the same on the CPU
//! reference. `cargo run --release --example quickstart`

use rand::{rngs::StdRng, SeedableRng};
use rnn_wgpu::{cpu, Activation, Batch, Cell, Loss, ModelConfig, Params, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};

fn main() -> Result<(), rnn_wgpu::Error> {
    let config = ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 2,
        hidden_size: 128,
        output_size: 1,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    let mut rng = StdRng::seed_from_u64(1);
    let params = Params::<f32>::init_uniform(&config, &mut rng);
    let batch = Batch::<f32>::random(&config, 100, 32, &mut rng); // T = 100, B = 32

    let gpu = Gpu::new()?; // one context, reused
    let model = GpuModel::new(&gpu, config, &params)?; // parameters stay on the GPU
    let out = model.run(&gpu, &batch, Request::everything())?; // one submission, one read-back
    let norms = out.grad_norm_h.unwrap();
    println!(
        "GPU loss {:.6}  |dE/dh_1| {:.3e}  |dE/dh_100| {:.3e}",
        out.loss, norms[0], norms[99]
    );

    let fwd = cpu::forward(&config, &params, &batch)?; // the reference, f32 or f64
    let bwd = cpu::backward(&config, &params, &batch, &fwd);
    println!(
        "CPU loss {:.6}  |dE/dh_1| {:.3e}  |dE/dh_100| {:.3e}",
        fwd.loss, bwd.grad_norm_h[0], bwd.grad_norm_h[99]
    );
    Ok(())
}
