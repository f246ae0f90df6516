//! Data-parallel training on the GPU engine, ranks as threads sharing the adapter: 2 ranks x
//! batch 16 against one process x batch 32 (the one-submission `train_step`), 20 Adam steps
//! with clipping, and the two ranks' replicas bit-identical.

use super::common::assert_params_close;
use super::gpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::init::{initialize, InitConfig};
use rnn_wgpu::internals::distributed::{Collective, ThreadGroup};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, Task};
use rnn_wgpu::train::{self, DataSource, Engine, TrainOptions};
use rnn_wgpu::{Activation, Cell, Params};
use rnn_wgpu::{LossScaler, Precision};
use std::rc::Rc;

fn run(group: Option<ThreadGroup>, batch: usize) -> Params<f32> {
    run_at(group, batch, Precision::F32, None).0
}

/// `run` at `precision`, dynamic loss scaling (under f16) from `scale`; the parameters and
/// the scaler's final state.
fn run_at(
    group: Option<ThreadGroup>,
    batch: usize,
    precision: Precision,
    scale: Option<f32>,
) -> (Params<f32>, Option<LossScaler>) {
    let task = Adding::new(17).unwrap();
    let config = task.spec().model_config(Cell::Gru, Activation::Tanh, 17);
    let mut rng = StdRng::seed_from_u64(6);
    let params = initialize(&config, &InitConfig::default(), &mut rng).unwrap();
    let optimizer = OptimizerConfig {
        clip: Some(0.5),
        lr: 0.01,
        ..OptimizerConfig::new(OptimizerKind::adam())
    };
    let mut engine = Engine::new(Some(gpu()), config, &params, optimizer).unwrap();
    engine.set_precision(precision);
    if let Some(scale) = scale {
        engine.set_loss_scaler(LossScaler {
            scale,
            ..LossScaler::default()
        });
    }
    let mut data = DataSource::from_task(Box::new(task), 4);
    let options = TrainOptions {
        eval_every: 10,
        group: group.map(|g| Rc::new(g) as Rc<dyn Collective>),
        ..TrainOptions::new(20, batch)
    };
    train::train(&mut engine, &mut data, &config, &options, &mut |_| {}).unwrap();
    (engine.params().unwrap(), engine.loss_scaler())
}

#[test]
fn two_gpu_ranks_train_as_one_process_with_their_batches_together() {
    let one = run(None, 32);
    let ranks: Vec<Params<f32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (ThreadGroup::new(2).into_iter())
            .map(|member| scope.spawn(|| run(Some(member), 16)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bits = |p: &Params<f32>| {
        let tensors = p.tensors();
        tensors
            .iter()
            .flat_map(|(_, v)| v.iter().map(|x| x.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&ranks[0]), bits(&ranks[1]), "the replicas differ");
    assert_params_close(&ranks[0], &one, 1e-5, "2 ranks against one process");
}

/// Under f16 storage the ranks decide overflow on the reduced gradient: from a scale that
/// overflows at first they skip the same steps, keep the same scale and stay bit-identical.
/// Each rank's own backward pass scores its half of the batch, so its f16 gradients are
/// twice one process's and may overflow at one scale more (here: 16 skips against 15).
#[test]
fn f16_ranks_skip_together_from_an_overflowing_scale() {
    let start = Some(2f32.powi(36));
    let (one, one_scaler) = run_at(None, 32, Precision::F16, start);
    let ranks: Vec<(Params<f32>, Option<LossScaler>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (ThreadGroup::new(2).into_iter())
            .map(|member| scope.spawn(|| run_at(Some(member), 16, Precision::F16, start)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_params_close(&ranks[0].0, &ranks[1].0, 0.0, "the replicas");
    assert_eq!(ranks[0].1, ranks[1].1);
    let (skipped, alone) = (ranks[0].1.unwrap().skipped, one_scaler.unwrap().skipped);
    assert!(
        skipped > 0 && (alone..=alone + 1).contains(&skipped),
        "{skipped} vs {alone}"
    );
    let finite = |p: &Params<f32>| {
        p.tensors()
            .iter()
            .all(|(_, v)| v.iter().all(|x| x.is_finite()))
    };
    assert!(finite(&ranks[0].0) && finite(&one));
}
