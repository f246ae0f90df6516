//! Helpers shared by several test binaries (each includes this file as `mod common;`): a
//! temporary directory per test, safetensors files written or read tensor by tensor, so a
//! test can spoil a checkpoint in one particular way, and the model of the long-sum tests.

// Every binary uses a different part.
#![allow(dead_code)]

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory under the system temp dir, unique to this process, this name and
/// this call; removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rnn-wgpu-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Every entry's name, sorted (hidden temporary files included).
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tensor as a safetensors file stores it.
#[derive(Clone)]
pub struct Raw {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

pub fn raw_f32(name: &str, shape: &[usize], values: &[f32]) -> Raw {
    Raw {
        name: name.to_string(),
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Reads a file back through safetensors alone: its tensors sorted by name, and its
/// `__metadata__`.
pub fn read_raw(path: &Path) -> (Vec<Raw>, Option<BTreeMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let mut tensors: Vec<Raw> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(name, view)| Raw {
            name,
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    (tensors, metadata)
}

/// Writes a file with safetensors' own serializer, with `metadata` or (`None`) none at all as
/// `safetensors.torch.save_file(state_dict)` does.
pub fn write_raw(path: &Path, tensors: &[Raw], metadata: Option<&BTreeMap<String, String>>) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap();
            (t.name.as_str(), view)
        })
        .collect();
    let metadata = metadata.map(|m| m.clone().into_iter().collect());
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

/// `tensors` less those called one of `names`.
pub fn without(tensors: Vec<Raw>, names: &[&str]) -> Vec<Raw> {
    tensors
        .into_iter()
        .filter(|t| !names.contains(&t.name.as_str()))
        .collect()
}

/// A 3-layer sigmoid RNN (input 1, hidden 8) with cross-entropy over 10 classes on every step:
/// over 2,500 steps of 64 sequences its weight gradients sum 160,000 rows, and the head's
/// terms cancel. Summed in one f32 chain its head gradient was 6e-4 from f64 (the long-sum
/// accuracy tests of the CPU engine and of the GPU).
pub fn long_sum_model() -> rnn_wgpu::ModelConfig {
    rnn_wgpu::ModelConfig {
        cell: rnn_wgpu::Cell::Rnn,
        activation: rnn_wgpu::Activation::Sigmoid,
        input_size: 1,
        hidden_size: 8,
        output_size: 10,
        readout: rnn_wgpu::Readout::All,
        loss: rnn_wgpu::Loss::CrossEntropy,
        layers: 3,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// A small one-layer model of `cell` with `activation`: input 3, hidden 17 (past 16, no vector
/// width or tile divides it), output 2, MSE on every step's output.
pub fn small_model(
    cell: rnn_wgpu::Cell,
    activation: rnn_wgpu::Activation,
) -> rnn_wgpu::ModelConfig {
    rnn_wgpu::ModelConfig {
        cell,
        activation,
        input_size: 3,
        hidden_size: 17,
        output_size: 2,
        readout: rnn_wgpu::Readout::All,
        loss: rnn_wgpu::Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// ||got - want|| / ||want|| of one tensor, and the index of its largest difference.
pub fn relative_error(got: &[f32], want: &[f32]) -> (f64, usize) {
    let diff: f64 = (got.iter().zip(want))
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    let gap = |i: usize| (got[i] - want[i]).abs();
    let worst = (0..got.len())
        .max_by(|&i, &j| gap(i).total_cmp(&gap(j)))
        .unwrap_or(0);
    ((diff / norm.max(1e-30)).sqrt(), worst)
}

/// Every tensor of `got` within `tolerance` of `want` in relative 2-norm, else a failure
/// naming the tensor, the error and the worst element.
pub fn assert_params_close(
    got: &rnn_wgpu::Params<f32>,
    want: &rnn_wgpu::Params<f32>,
    tolerance: f64,
    what: &str,
) {
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        let (error, worst) = relative_error(g, w);
        assert!(
            error <= tolerance,
            "{what}: {name}: ||got - want|| / ||want|| = {error:.2e} > {tolerance:.0e}; worst \
             element {worst}: {} against {}",
            g[worst],
            w[worst]
        );
    }
}

/// Every cell, the RNN with each of its activations.
pub const EVERY_CELL: [(rnn_wgpu::Cell, rnn_wgpu::Activation); 5] = [
    (rnn_wgpu::Cell::Rnn, rnn_wgpu::Activation::Tanh),
    (rnn_wgpu::Cell::Rnn, rnn_wgpu::Activation::Relu),
    (rnn_wgpu::Cell::Rnn, rnn_wgpu::Activation::Sigmoid),
    (rnn_wgpu::Cell::Lstm, rnn_wgpu::Activation::Tanh),
    (rnn_wgpu::Cell::Gru, rnn_wgpu::Activation::Tanh),
];
