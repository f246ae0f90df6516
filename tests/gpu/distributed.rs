//! Data-parallel training on the GPU engine, ranks as threads sharing the adapter: 2 ranks x
//! batch 16 against one process x batch 32 (the one-submission `train_step`), 20 Adam steps
//! with clipping, and the two ranks' replicas bit-identical.

use super::common::assert_params_close;
use super::gpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::distributed::{Collective, ThreadGroup};
use rnn_wgpu::init::{initialize, InitConfig};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, Task};
use rnn_wgpu::train::{self, DataSource, Engine, TrainOptions};
use rnn_wgpu::{Activation, Cell, Params};
use std::rc::Rc;

fn run(group: Option<ThreadGroup>, batch: usize) -> Params<f32> {
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
    let mut data = DataSource::from_task(Box::new(task), 4);
    let options = TrainOptions {
        eval_every: 10,
        group: group.map(|g| Rc::new(g) as Rc<dyn Collective>),
        ..TrainOptions::new(20, batch)
    };
    train::train(&mut engine, &mut data, &config, &options, &mut |_| {}).unwrap();
    engine.params().unwrap()
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
