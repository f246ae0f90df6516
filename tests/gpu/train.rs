//! Training on the GPU engine: resuming is bit-exact, divergence (detected from the loss and
//! the gradient norm the GPU computed) stops cleanly, and `grad` writes what the engine computes.

use super::common::TempDir;
use super::{gpu, seed};
use ndarray::Array3;
use ndarray_npy::WriteNpyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::checkpoint::{self, Checkpoint, LoadOverrides};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, CopyMemory, Task};
use rnn_wgpu::train::{self, DataSource, Engine, TrainOptions};
use rnn_wgpu::{Activation, Batch, Cell, Error, Params, Targets};
use rnn_wgpu::{GpuModel, Request};
use std::path::PathBuf;

fn options(steps: u64, save: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        eval_every: 2,
        save,
        ..TrainOptions::new(steps, 5)
    }
}

#[test]
fn a_resumed_gpu_run_matches_an_uninterrupted_one_bit_for_bit() {
    let dir = TempDir::new("gpu-resume");
    let task = CopyMemory::new(3).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 17);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(40)));
    let optimizer = OptimizerConfig::new(OptimizerKind::adamw());

    let mut straight = Engine::new(Some(gpu()), config, &params, optimizer).unwrap();
    let mut data = DataSource::from_task(Box::new(task.clone()), 9);
    train::train(
        &mut straight,
        &mut data,
        &config,
        &options(4, None),
        &mut |_| {},
    )
    .unwrap();

    let saved = dir.join("half.safetensors");
    let mut first = Engine::new(Some(gpu()), config, &params, optimizer).unwrap();
    let mut data = DataSource::from_task(Box::new(task.clone()), 9);
    train::train(
        &mut first,
        &mut data,
        &config,
        &options(2, Some(saved.clone())),
        &mut |_| {},
    )
    .unwrap();
    let loaded = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    let mut second = Engine::new(Some(gpu()), config, &loaded.params, optimizer).unwrap();
    assert_eq!(train::resume(&mut second, &loaded).unwrap(), 2);
    let mut data = DataSource::from_task(Box::new(task), 9);
    train::train(
        &mut second,
        &mut data,
        &config,
        &options(4, None),
        &mut |_| {},
    )
    .unwrap();

    let (a, b) = (straight.params().unwrap(), second.params().unwrap());
    for ((name, x), (_, y)) in a.tensors().into_iter().zip(b.tensors()) {
        let differing = x
            .iter()
            .zip(y)
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} values differ",
            x.len()
        );
    }
}

/// Exploding gradients without clipping, provoked on purpose (SGD at lr 1e6 on a ReLU RNN):
/// the loss and the gradient norm the GPU computed stop being finite, and training stops with
/// the step, the last finite norm and a hint, keeping the checkpoint of the step before.
#[test]
fn gpu_divergence_stops_with_the_step_and_keeps_the_checkpoint() {
    let dir = TempDir::new("gpu-diverge");
    let task = Adding::new(10).unwrap();
    let config = task.spec().model_config(Cell::Rnn, Activation::Relu, 16);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(41)));
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 1e6;
    assert_eq!(optimizer.clip, None);
    let mut engine = Engine::new(Some(gpu()), config, &params, optimizer).unwrap();
    let mut data = DataSource::from_task(Box::new(task), 2);
    let saved = dir.join("model.safetensors");
    let mut opts = options(200, Some(saved.clone()));
    opts.eval_every = 1;
    let err = train::train(&mut engine, &mut data, &config, &opts, &mut |_| {})
        .err()
        .expect("lr 1e6 must diverge");
    let Error::Diverged {
        step, last_finite, ..
    } = err
    else {
        panic!("expected Error::Diverged, got {err}");
    };
    let message = err.to_string();
    let (finite_step, finite_norm) = last_finite.expect("the first step is finite");
    for part in [
        format!("training diverged at step {step}"),
        format!("last finite gradient norm {finite_norm} at step {finite_step}"),
        format!("the last good checkpoint {} is kept", saved.display()),
        "--clip".to_string(),
        "--lr".to_string(),
        "--hh-scale".to_string(),
    ] {
        assert!(message.contains(&part), "'{message}' lacks '{part}'");
    }
    let kept = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    assert_eq!(kept.metadata["step"], (step - 1).to_string());
    assert_eq!(finite_step, step - 1);
    assert!(kept
        .params
        .tensors()
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
}

/// `rnn-wgpu grad` on the GPU writes exactly what `GpuModel::run` computes on the same adapter.
#[test]
fn the_grad_command_writes_the_engines_gradients() {
    let dir = TempDir::new("gpu-grad");
    let task = Adding::new(9).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 17);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(42)));
    let model_path = dir.join("model.safetensors");
    checkpoint::save(&model_path, &Checkpoint::new(config, params.clone())).unwrap();
    let mut rng = StdRng::seed_from_u64(seed(43));
    let x = Array3::<f32>::from_shape_fn((9, 3, 2), |_| rng.random_range(0.0..1.0));
    let y = ndarray::Array2::<f32>::from_shape_fn((3, 1), |_| rng.random_range(0.0..2.0));
    x.write_npy(std::fs::File::create(dir.join("x.npy")).unwrap())
        .unwrap();
    y.write_npy(std::fs::File::create(dir.join("y.npy")).unwrap())
        .unwrap();
    let out_path = dir.join("grads.safetensors");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args(["grad", "--device", "gpu", "--model"])
        .arg(&model_path)
        .arg("--input")
        .arg(dir.join("x.npy"))
        .arg("--target")
        .arg(dir.join("y.npy"))
        .arg("--out")
        .arg(&out_path)
        .status()
        .unwrap();
    assert!(status.success());

    let batch = Batch {
        x,
        h0: None,
        c0: None,
        targets: Targets::Values(y),
        lengths: None,
    };
    let want = GpuModel::new(gpu(), config, &params)
        .unwrap()
        .run(gpu(), &batch, Request::everything())
        .unwrap();
    let got = checkpoint::load(&out_path, &LoadOverrides::default()).unwrap();
    assert_eq!(got.metadata["content"], "gradients");
    let want_grads = want.grads.unwrap();
    for ((name, w), (_, g)) in want_grads.tensors().into_iter().zip(got.params.tensors()) {
        assert!(
            w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name} differs"
        );
    }
    let tensor = |name: &str| {
        got.tensor(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .2
            .clone()
    };
    assert_eq!(tensor("loss"), vec![want.loss]);
    assert_eq!(tensor("grad_norm.h"), want.grad_norm_h.unwrap());
    assert_eq!(tensor("grad_norm.c"), want.grad_norm_c.unwrap());
}
