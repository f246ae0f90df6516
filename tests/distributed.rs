//! Data-parallel training above the transport, with ranks as threads (`ThreadGroup`): the
//! fixed-order sum, slices of ragged batches weighted by their scored rows, N ranks x batch B
//! against one process x batch N*B (the mpi feature's own tests run the same through
//! `mpirun`), and the refusals of ranks that differ.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::init::{initialize, InitConfig};
use rnn_wgpu::internals::distributed::{self, batch_rows, Collective, Share, ThreadGroup};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, Task};
use rnn_wgpu::train::{self, DataSource, Engine, TrainOptions};
use rnn_wgpu::{cpu, Activation, Cell, Error, Loss, ModelConfig, Params, Readout};
use std::rc::Rc;

mod common;
use common::{assert_params_close, relative_error};

/// Runs `work(member)` on a thread per rank; the results in rank order.
fn on_ranks<T: Send>(ranks: usize, work: impl Fn(ThreadGroup) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (ThreadGroup::new(ranks).into_iter())
            .map(|member| scope.spawn(|| work(member)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// 1, 2 and 3 ranks, lengths 1, 17 and 65 (not multiples of the ranks): every rank gets the
/// bits of adding the ranks' vectors one after another in rank order.
#[test]
fn the_sum_over_ranks_is_taken_in_rank_order_on_every_rank() {
    for ranks in [1, 2, 3] {
        for len in [1, 17, 65] {
            let vectors: Vec<Vec<f32>> = (0..ranks)
                .map(|r| {
                    let mut rng = StdRng::seed_from_u64((ranks * 100 + len * 10 + r) as u64);
                    (0..len).map(|_| rng.random_range(-1e3f32..1e3)).collect()
                })
                .collect();
            let mut expected = vectors[0].clone();
            for v in &vectors[1..] {
                expected.iter_mut().zip(v).for_each(|(e, x)| *e += x);
            }
            let got = on_ranks(ranks, |member| {
                let mut mine = vectors[member.rank()].clone();
                distributed::sum_in_rank_order(&member, &mut mine).unwrap();
                mine
            });
            for (rank, sum) in got.iter().enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(sum),
                    bits(&expected),
                    "{ranks} ranks, len {len}, rank {rank}"
                );
            }
        }
    }
}

/// A ragged batch of 5 sequences scored at every step, cut into slices of 2 and 3 sequences:
/// the slices' gradients, weighted by their scored rows and reduced, are the whole batch's.
#[test]
fn slices_of_a_ragged_batch_reduce_to_the_whole_batch() {
    for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
        let config = ModelConfig {
            cell,
            activation: Activation::Tanh,
            input_size: 3,
            hidden_size: 17,
            output_size: 2,
            readout: Readout::All,
            loss: Loss::CrossEntropy,
            layers: 2,
            bidirectional: true,
            dropout: 0.0,
        };
        let (params, mut batch) = random_problem(&config, 9, 5, 11);
        batch.lengths = Some(vec![9, 1, 4, 9, 6]);
        let whole_fwd = cpu::forward(&config, &params, &batch).unwrap();
        let whole = cpu::backward(&config, &params, &batch, &whole_fwd).grads;
        let slices = [(0, 2), (2, 3)];
        let reduced = on_ranks(2, |member| {
            let (first, count) = slices[member.rank()];
            let mine = batch_rows(&batch, config.readout, first, count).unwrap();
            let fwd = cpu::forward(&config, &params, &mine).unwrap();
            let mut grads = cpu::backward(&config, &params, &mine, &fwd).grads;
            let share = Share {
                loss: fwd.loss,
                rows: mine.valid_rows(config.readout),
                interrupted: member.rank() == 1,
            };
            let step = distributed::reduce_step(&member, &mut grads, share).unwrap();
            (step, grads)
        });
        for (rank, (step, grads)) in reduced.iter().enumerate() {
            let what = format!("{cell:?} rank {rank}");
            assert!(step.interrupted, "{what}: rank 1's stop flag was lost");
            let (error, _) = relative_error(&[step.loss], &[whole_fwd.loss]);
            assert!(
                error < 1e-6,
                "{what}: loss {} against {}",
                step.loss,
                whole_fwd.loss
            );
            assert_params_close(grads, &whole, 1e-5, &what);
        }
    }
}

fn adding_run(ranks: usize, batch: usize, steps: u64) -> Vec<(Params<f32>, f32)> {
    let task = Adding::new(17).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 17);
    let mut rng = StdRng::seed_from_u64(5);
    let params = initialize(&config, &InitConfig::default(), &mut rng).unwrap();
    let optimizer = OptimizerConfig {
        clip: Some(0.5),
        lr: 0.01,
        ..OptimizerConfig::new(OptimizerKind::adam())
    };
    on_ranks(ranks, |member| {
        let mut engine = Engine::new(None, config, &params, optimizer).unwrap();
        let mut data = DataSource::from_task(Box::new(Adding::new(17).unwrap()), 9);
        let options = TrainOptions {
            eval_every: 10,
            group: Some(Rc::new(member)),
            ..TrainOptions::new(steps, batch)
        };
        let summary = train::train(&mut engine, &mut data, &config, &options, &mut |_| {}).unwrap();
        let last = summary.last.expect("a record at the last step");
        (engine.params().unwrap(), last.validation_loss.unwrap())
    })
}

/// 2 ranks x batch 16 against 1 rank x batch 32, 20 Adam steps with clipping on the CPU
/// engine: the validation loss and every parameter agree to f32 rounding on every rank.
#[test]
fn two_ranks_train_as_one_process_with_their_batches_together() {
    let one = adding_run(1, 32, 20).remove(0);
    for (rank, (params, validation)) in adding_run(2, 16, 20).into_iter().enumerate() {
        let what = format!("rank {rank} of 2 against one process");
        assert_params_close(&params, &one.0, 1e-5, &what);
        let (error, _) = relative_error(&[validation], &[one.1]);
        assert!(
            error < 1e-5,
            "{what}: validation {validation} against {}",
            one.1
        );
    }
}

/// Ranks started with different settings are refused with both values; replicas whose
/// parameters differ are refused by checksum.
#[test]
fn ranks_that_differ_are_refused() {
    let errors = on_ranks(2, |member| {
        let hidden = ["8", "16"][member.rank()];
        let settings = [("--hidden".to_string(), hidden.to_string())];
        distributed::check_same_settings(&member, &settings).unwrap_err()
    });
    for e in errors {
        let text = e.to_string();
        assert!(matches!(e, Error::Ranks(_)), "{text}");
        assert!(
            text.contains("--hidden is 8 on rank 0 and 16 on rank 1"),
            "{text}"
        );
    }
    let config = Adding::new(5)
        .unwrap()
        .spec()
        .model_config(Cell::Gru, Activation::Tanh, 3);
    let errors = on_ranks(2, |member| {
        let mut params = Params::<f32>::zeros(&config);
        if member.rank() == 1 {
            params.for_each_mut(|_, values| values[0] = 1e-30);
        }
        distributed::check_replicas(&member, &params, 7).unwrap_err()
    });
    for e in errors {
        let text = e.to_string();
        assert!(
            text.contains("rank 1's parameters differ from rank 0's after step 7"),
            "{text}"
        );
    }
}
