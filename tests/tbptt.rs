//! Truncated BPTT: chunks of a text stream are contiguous, carried state equals the state of
//! the uncut sequence, one chunk per batch is plain BPTT, and the loop takes one update per
//! scored chunk on both engines.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::init::{initialize, InitConfig};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, Task, Text};
use rnn_wgpu::train::{self, Chunker, DataSource, Engine, Event, TrainOptions};
use rnn_wgpu::Gpu;
use rnn_wgpu::{Activation, Cell, ModelConfig, Targets};

fn options(steps: u64, tbptt: Option<usize>) -> TrainOptions {
    TrainOptions {
        eval_every: 1000,
        tbptt,
        ..TrainOptions::new(steps, 3)
    }
}

fn engine<'g>(gpu: Option<&'g Gpu>, config: &ModelConfig) -> Engine<'g> {
    let mut rng = StdRng::seed_from_u64(3);
    let params = initialize(config, &InitConfig::default(), &mut rng).unwrap();
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 0.05;
    Engine::new(gpu, *config, &params, optimizer).unwrap()
}

/// Every step's (loss, ||dE/dh_t|| length).
fn run(
    engine: &mut Engine,
    data: &mut DataSource,
    config: &ModelConfig,
    opts: &TrainOptions,
) -> Vec<f32> {
    let mut losses = Vec::new();
    train::train(engine, data, config, opts, &mut |e| {
        if let Event::Step { loss, .. } = e {
            losses.push(loss)
        }
    })
    .unwrap();
    losses
}

fn text() -> Text {
    let data: Vec<u8> = (0..997u32)
        .map(|i| b"abcdefghij"[(i * 7 % 10) as usize])
        .collect();
    Text::from_bytes("stream", &data, 20).unwrap()
}

#[test]
fn text_stream_chunks_continue_where_the_last_one_stopped() {
    let text = text();
    let (batch, steps) = (3, 11);
    let classes = |k| {
        let (chunk, reset) = text.stream_chunk(batch, steps, k).unwrap();
        match chunk.targets {
            Targets::Classes(c) => (c, chunk.x, reset),
            _ => unreachable!(),
        }
    };
    let (first_targets, _, reset) = classes(0);
    assert!(reset, "the first chunk starts a pass");
    let (_, second_x, reset) = classes(1);
    assert!(!reset);
    for b in 0..batch {
        // The next chunk's first input is the previous chunk's last target.
        let last_target = first_targets[(steps - 1) * batch + b] as usize;
        assert_eq!(second_x[[0, b, last_target]], 1.0, "stream {b}");
    }
    // (997 - 1) / 3 = 332 bytes per stream, 30 whole chunks: chunk 30 starts the next pass.
    assert!(classes(30).2 && !classes(29).2);
    assert_eq!(classes(30).0, first_targets);
}

#[test]
fn carried_state_equals_the_uncut_sequence() {
    // One layer, and three: every layer's state [L*B, H] is carried.
    for layers in [1, 3] {
        carried_state_equals_the_uncut_sequence_with(layers);
    }
}

fn carried_state_equals_the_uncut_sequence_with(layers: usize) {
    let task = Adding::new(20).unwrap();
    let config = ModelConfig {
        layers,
        ..task.spec().model_config(Cell::Lstm, Activation::Tanh, 6)
    };
    let engine = engine(None, &config);
    // The same seed serves the same batch whole and cut into chunks of 7, 7 and 6 steps.
    let full = DataSource::from_task(Box::new(task.clone()), 1).next_batch(3);
    let mut data = DataSource::from_task(Box::new(task), 1);
    let mut chunker = Chunker::new(7, config.readout).unwrap();
    let mut carried: Option<rnn_wgpu::train::State> = None;
    let mut lengths = Vec::new();
    loop {
        let mut chunk = chunker.next(&mut data, 3);
        assert_eq!(chunk.reset, carried.is_none());
        if let Some((h, c)) = carried.take() {
            (chunk.batch.h0, chunk.batch.c0) = (Some(h), c);
        }
        lengths.push(chunk.batch.seq_len());
        carried = Some(engine.advance(&chunk.batch).unwrap());
        if chunk.scored {
            break;
        }
    }
    assert_eq!(lengths, [7, 7, 6]);
    let (h, c) = carried.unwrap();
    let (h_full, c_full) = engine.advance(&full).unwrap();
    assert_eq!(h.dim(), (layers * 3, 6));
    assert_eq!(h, h_full, "h_T through three chunks");
    assert_eq!(c, c_full, "c_T through three chunks");
}

#[test]
fn one_chunk_per_sequence_is_plain_bptt() {
    let task = Adding::new(9).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 5);
    let plain = run(
        &mut engine(None, &config),
        &mut DataSource::from_task(Box::new(task.clone()), 4),
        &config,
        &options(4, None),
    );
    let chunked = run(
        &mut engine(None, &config),
        &mut DataSource::from_task(Box::new(task), 4),
        &config,
        &options(4, Some(9)),
    );
    assert_eq!(plain, chunked);
}

#[test]
fn a_many_to_one_task_takes_one_update_per_sequence() {
    // Adding is scored at its last step: the chunks before only advance the state.
    let task = Adding::new(10).unwrap();
    let config = task.spec().model_config(Cell::Rnn, Activation::Tanh, 5);
    let mut chunker = Chunker::new(4, config.readout).unwrap();
    let mut data = DataSource::from_task(Box::new(task.clone()), 2);
    let served: Vec<(usize, bool, bool)> = (0..6)
        .map(|_| {
            let c = chunker.next(&mut data, 3);
            (c.batch.seq_len(), c.reset, c.scored)
        })
        .collect();
    assert_eq!(
        served,
        [
            (4, true, false),
            (4, false, false),
            (2, false, true),
            (4, true, false),
            (4, false, false),
            (2, false, true)
        ]
    );
    let losses = run(
        &mut engine(None, &config),
        &mut DataSource::from_task(Box::new(task), 2),
        &config,
        &options(3, Some(4)),
    );
    assert_eq!(losses.len(), 3);
}

#[test]
fn gpu_and_cpu_agree_on_a_text_stream() {
    let gpu = Gpu::new().expect("GPU tests need an adapter and must not be skipped");
    let task = text();
    // A one-layer LSTM, and a two-layer GRU carrying both layers' states.
    for (cell, layers) in [(Cell::Lstm, 1), (Cell::Gru, 2)] {
        let config = ModelConfig {
            layers,
            ..task.spec().model_config(cell, Activation::Tanh, 7)
        };
        let mut losses = Vec::new();
        for device in [None, Some(&gpu)] {
            let mut engine = engine(device, &config);
            let mut data = DataSource::from_task(Box::new(text()), 8);
            losses.push(run(&mut engine, &mut data, &config, &options(6, Some(5))));
        }
        assert_eq!(losses[0].len(), 6);
        for (step, (c, g)) in losses[0].iter().zip(&losses[1]).enumerate() {
            assert!(
                ((c - g) / c).abs() < 1e-4,
                "{cell} x {layers}, step {}: cpu {c} gpu {g}",
                step + 1
            );
        }
    }
}
