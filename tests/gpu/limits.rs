//! Sizes beyond the adapter's limits are refused with an error naming the tensor and the
//! limit, before anything runs.

use super::gpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::{Activation, Batch, Cell, Error, Loss, ModelConfig, Params, Readout};
use rnn_wgpu::{GpuModel, Request};

/// A one-layer model with one input feature, MSE on the last step unless changed.
fn model(cell: Cell, hidden_size: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 1,
        hidden_size,
        output_size: 1,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// llvmpipe ends an invocation's loops after 65,535 iterations in all (`Gpu::loop_limit`), and
/// the loss kernels loop over a row's outputs: more outputs than they can take there are
/// refused, not silently mis-summed; elsewhere the model is made.
#[test]
fn more_outputs_than_the_loss_kernels_loop_over_are_refused_where_loops_are_limited() {
    let config = ModelConfig {
        output_size: 8192,
        loss: Loss::CrossEntropy,
        ..model(Cell::Rnn, 2)
    };
    let params = Params::<f32>::zeros(&config);
    let made = GpuModel::new(gpu(), config, &params);
    let fewer = ModelConfig {
        output_size: 8191,
        ..config
    };
    assert!(GpuModel::new(gpu(), fewer, &Params::<f32>::zeros(&fewer)).is_ok());
    match (gpu().loop_limit(), made) {
        (Some(_), Ok(_)) => panic!("8192 outputs were taken on {}", gpu().adapter_name()),
        (Some(_), Err(e)) => {
            let message = e.to_string();
            assert!(message.contains("output size 8192"), "{message}");
            assert!(message.contains("at most 8191 outputs"), "{message}");
        }
        (None, made) => assert!(made.is_ok()),
    }
}

/// The same for a reduction: a loss over every step of 130 x 65,536 sequences sums 8.5 M rows
/// in one workgroup, 33,289 loop iterations an invocation, past half of llvmpipe's limit. It
/// is refused while the pass is recorded, before anything runs (so this test is quick).
#[test]
fn a_loss_over_more_rows_than_one_reduction_loops_over_is_refused_where_loops_are_limited() {
    let config = ModelConfig {
        readout: Readout::All,
        ..model(Cell::Rnn, 1)
    };
    let (t, b) = (130, 65_536);
    let mut rng = StdRng::seed_from_u64(super::seed(1500));
    let batch = Batch::<f32>::random(&config, t, b, &mut rng);
    let params = Params::<f32>::init_uniform(&config, &mut rng);
    let model = GpuModel::new(gpu(), config, &params).unwrap();
    let run = model.run(gpu(), &batch, Request::default());
    match (gpu().loop_limit(), run) {
        (Some(_), Ok(_)) => panic!("{} rows were summed on {}", t * b, gpu().adapter_name()),
        (Some(_), Err(e)) => {
            let message = e.to_string();
            assert!(message.contains("the loss over 8519680 rows"), "{message}");
            assert!(message.contains("loop iterations"), "{message}");
        }
        (None, run) => assert!(run.is_ok()),
    }
}

#[test]
fn a_weight_larger_than_one_binding_is_refused_with_the_limit_named() {
    let limit = gpu().limits.max_storage_buffer_binding_size;
    // weight_hh_l0 of an LSTM holds 4 H^2 f32 words: pick H just past the binding limit.
    let hidden = ((limit as f64 / 16.0).sqrt() as usize) + 1;
    let config = model(Cell::Lstm, hidden);
    let params = Params::<f32>::zeros(&config);
    let err = match GpuModel::new(gpu(), config, &params) {
        Ok(_) => panic!("H = {hidden} should exceed a {limit}-byte binding"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Limit { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("weight_hh_l0"), "{message}");
    assert!(
        message.contains("max_storage_buffer_binding_size"),
        "{message}"
    );
}
