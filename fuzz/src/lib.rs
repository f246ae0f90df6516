//! What each fuzz target does with its bytes, shared with the stable test
//! `tests/fuzz_corpus.rs`, which replays the committed seeds through these same functions.
//!
//! Each function hands the bytes to one loader and, when they load, uses the result as training
//! would: batches drawn, a small model run forward and backward on them on the CPU reference,
//! a checkpoint resumed into an engine. Whatever the bytes, nothing may panic: a loader either
//! refuses them with an `Error` or returns data that the rest of the crate accepts.

use ndarray::{Array1, Array3};
use ndarray_npy::WriteNpyExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::npy::batch_from_npy_bytes;
use rnn_wgpu::tasks::{CsvFormat, CsvTargets, Dataset, Task, Text};
use rnn_wgpu::train::{self, Engine};
use rnn_wgpu::{cpu, Activation, Batch, Cell, Loss, ModelConfig, Params, Readout};

/// Fuzz input as one `.npy` file after a byte that chooses its role (parsing a header
/// dominates the time per input, so each input plays one): 0, dataset inputs `[N, T, I]`
/// beside valid class targets; 1, dataset targets beside valid inputs (with 3 classes given
/// when `role / 5` is odd); 2, both at once; 3, the
/// `grad` command's targets beside a valid time-major x `[T, B, I]` (for a last-step MSE or a
/// per-step cross-entropy model); 4, both x and per-step values `[T, B, O = I]` for `grad`.
pub fn npy(data: &[u8]) {
    let [role, file @ ..] = data else {
        return;
    };
    let x = npy_bytes(&Array3::from_shape_fn((4, 3, 2), |(n, t, i)| {
        (n + t + i) as f32
    }));
    let classes = npy_bytes(&Array1::<i64>::from(vec![0, 1, 2, 1]));
    let dataset = match role % 5 {
        0 => Some((file, &classes[..], None)),
        1 => Some((&x[..], file, (role / 5 % 2 == 1).then_some(3))),
        2 => Some((file, file, None)),
        _ => None,
    };
    if let Some((inputs, targets, num_classes)) = dataset {
        if let Ok(dataset) = Dataset::from_npy_bytes("x.npy", inputs, "y.npy", targets, num_classes)
        {
            use_dataset(&dataset);
        }
        return;
    }
    let (output_size, readout, loss, inputs) = match (role % 5, role / 5 % 2) {
        (3, 0) => (1, Readout::Last, Loss::Mse, &x[..]),
        (3, _) => (3, Readout::All, Loss::CrossEntropy, &x[..]),
        _ => (2, Readout::All, Loss::Mse, file),
    };
    let config = ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 2,
        hidden_size: 2,
        output_size,
        readout,
        loss,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    if let Ok(batch) = batch_from_npy_bytes(&config, "x.npy", inputs, "y.npy", file) {
        run_model(&config, &batch);
    }
}

/// Fuzz input as a CSV file after two bytes that choose the format: `seq_len` from the first
/// (0 to 3), the kind of targets and `O` from the second.
pub fn csv(data: &[u8]) {
    let [first, second, contents @ ..] = data else {
        return;
    };
    let outputs = 1 + (*second as usize / 4) % 3;
    let targets = match second % 4 {
        0 => CsvTargets::Class,
        1 => CsvTargets::Values(outputs),
        2 => CsvTargets::StepClasses,
        _ => CsvTargets::StepValues(outputs),
    };
    let format = CsvFormat {
        seq_len: *first as usize % 4,
        targets,
    };
    if let Ok(dataset) = Dataset::from_csv_bytes("data.csv", contents, format, None) {
        use_dataset(&dataset);
    }
}

/// Fuzz input as a safetensors checkpoint: loaded as `train --load` and `grad --model` load
/// it, run on a small batch, and resumed into a CPU engine (its optimizer state restored from
/// whatever `optim.` tensors the file holds).
pub fn checkpoint(data: &[u8]) {
    let Ok(loaded) = checkpoint::from_bytes("fuzz.safetensors", data, &LoadOverrides::default())
    else {
        return;
    };
    let config = loaded.config;
    let batch = Batch::<f32>::random(&config, 2, 1, &mut StdRng::seed_from_u64(0));
    let fwd = cpu::forward(&config, &loaded.params, &batch).expect("a loaded model runs");
    cpu::backward(&config, &loaded.params, &batch, &fwd);
    let optimizer = match loaded.metadata.get("optimizer").map(String::as_str) {
        Some("sgd") => OptimizerKind::sgd(),
        Some("rmsprop") => OptimizerKind::rmsprop(),
        Some("adamw") => OptimizerKind::adamw(),
        _ => OptimizerKind::adam(),
    };
    let mut engine = Engine::new(
        None,
        config,
        &loaded.params,
        OptimizerConfig::new(optimizer),
    )
    .expect("an engine for a loaded model");
    let _ = train::resume(&mut engine, &loaded);
}

/// Fuzz input as the text task's file after one byte that chooses `seq_len` (0 to 7): batches
/// of random windows and of contiguous streams, a model run on them, and the vocabulary's
/// round trip.
pub fn text(data: &[u8]) {
    let [first, contents @ ..] = data else {
        return;
    };
    let Ok(task) = Text::from_bytes("fuzz.txt", contents, *first as usize % 8) else {
        return;
    };
    let vocabulary = task.vocabulary();
    let classes = vocabulary
        .encode(contents)
        .expect("a file's own bytes encode");
    assert_eq!(vocabulary.decode(&classes).unwrap(), contents);
    let config = task.spec().model_config(Cell::Rnn, Activation::Tanh, 2);
    let mut rng = StdRng::seed_from_u64(0);
    run_model(&config, &task.batch(3, &mut rng));
    for (batch_size, steps, index) in [(1, 1, 0), (2, task.seq_len(), 1), (3, 2, 7)] {
        if let Some((batch, _)) = task.stream_chunk(batch_size, steps, index) {
            run_model(&config, &batch);
        }
    }
}

/// A dataset as training uses it: split, shuffled into batches, a model run on one.
fn use_dataset(dataset: &Dataset) {
    let config = dataset.spec().model_config(Cell::Lstm, Activation::Tanh, 2);
    let _ = dataset.split(0.5, 0);
    let mut rng = StdRng::seed_from_u64(0);
    let mut batches = dataset.batches(2, &mut rng).expect("batch size 2");
    run_model(
        &config,
        &batches.next().expect("a loaded dataset is not empty"),
    );
}

/// Forward and backward on the CPU reference with fresh parameters: the batch must fit the
/// model its data asked for.
fn run_model(config: &ModelConfig, batch: &Batch<f32>) {
    let params = Params::<f32>::init_uniform(config, &mut StdRng::seed_from_u64(1));
    let fwd = cpu::forward(config, &params, batch).expect("a loaded batch fits its model");
    cpu::backward(config, &params, batch, &fwd);
}

fn npy_bytes<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    array: &ndarray::Array<A, D>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).expect("writing to memory");
    bytes
}
