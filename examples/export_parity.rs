//! Writes what `scripts/pytorch_parity.py` compares with PyTorch: for 2-layer bidirectional
//! RNNs, LSTMs and GRUs (I = 3, H = 5, O = 2, T = 6, B = 3), with Readout::Last (MSE) and
//! Readout::All (cross-entropy), on sequences of equal and of ragged lengths (6, 1, 4), the
//! CPU reference's forward and backward pass in f64 on f32 parameters and inputs:
//!
//! - `NAME.safetensors`: the model, as `checkpoint::save` writes it, with the loss under `loss`
//!   and every parameter's gradient under `grad.{parameter}` (rounded to f32);
//! - `NAME.x.npy` f32 `[T, B, I]`, `NAME.lengths.npy` i64 `[B]`, `NAME.targets.npy` (f64
//!   `[rows, O]` values or i64 `[rows]` classes) and `NAME.outputs.npy` f64 `[rows, O]`, the
//!   head's outputs (rows = B, or T*B time-major; padding rows are not scored).
//!
//! `cargo run --release --example export_parity -- DIR`

use ndarray::Array1;
use ndarray_npy::write_npy;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, Checkpoint};
use rnn_wgpu::{cpu, Activation, Batch, Cell, Loss, ModelConfig, Params, Readout, Targets};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: export_parity DIR")?);
    std::fs::create_dir_all(&dir)?;
    let (seq_len, batch_size) = (6, 3);
    let mut seed = 0;
    for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
        for (readout, loss) in [
            (Readout::Last, Loss::Mse),
            (Readout::All, Loss::CrossEntropy),
        ] {
            for lengths in [None, Some(vec![6, 1, 4])] {
                seed += 1;
                let config = ModelConfig {
                    cell,
                    activation: Activation::Tanh,
                    input_size: 3,
                    hidden_size: 5,
                    output_size: 2,
                    readout,
                    loss,
                    layers: 2,
                    bidirectional: true,
                    dropout: 0.0,
                };
                let mut rng = StdRng::seed_from_u64(seed);
                let params = Params::<f32>::init_uniform(&config, &mut rng);
                let mut batch = Batch::<f32>::random(&config, seq_len, batch_size, &mut rng);
                batch.lengths = lengths.clone();
                // f32 values are exact in f64: the reference runs on the very numbers saved.
                let params64 = params.cast::<f64>();
                let batch64 = batch.cast::<f64>();
                let fwd = cpu::forward(&config, &params64, &batch64)?;
                let bwd = cpu::backward(&config, &params64, &batch64, &fwd);

                let name = format!(
                    "{cell}-{readout}-{}",
                    if lengths.is_some() { "ragged" } else { "equal" }
                );
                let mut saved = Checkpoint::new(config, params);
                saved
                    .extra
                    .push(("loss".into(), vec![], vec![fwd.loss as f32]));
                for ((parameter, values), (_, shape)) in
                    bwd.grads.tensors().into_iter().zip(bwd.grads.shapes())
                {
                    let values = values.iter().map(|&v| v as f32).collect();
                    saved
                        .extra
                        .push((format!("grad.{parameter}"), shape, values));
                }
                checkpoint::save(&dir.join(format!("{name}.safetensors")), &saved)?;
                let path = |what: &str| dir.join(format!("{name}.{what}.npy"));
                write_npy(path("x"), &batch.x)?;
                let lengths = lengths.unwrap_or_else(|| vec![seq_len; batch_size]);
                let lengths: Array1<i64> = lengths.iter().map(|&l| l as i64).collect();
                write_npy(path("lengths"), &lengths)?;
                match &batch64.targets {
                    Targets::Values(values) => write_npy(path("targets"), values)?,
                    Targets::Classes(classes) => {
                        let classes: Array1<i64> = classes.iter().map(|&c| c as i64).collect();
                        write_npy(path("targets"), &classes)?
                    }
                }
                write_npy(path("outputs"), &fwd.outputs)?;
                println!("{name}: loss {:.12}", fwd.loss);
            }
        }
    }
    Ok(())
}
