//! LSTM forward pass (with the head and MSE loss) and LSTM training step (forward + BPTT + SGD
//! update) on the GPU engine (`wgpu_*`) and the CPU engine (`cpu_*`), at the same shapes. The
//! GPU side records one submission and waits for its read-back (the loss) inside every
//! iteration; the workspace and pipelines are made by an untimed first pass.
//!
//! Throughput is in FLOPs of the products, so criterion's "elem/s" reads as FLOP/s: a forward
//! pass costs `2 T B (I + H) G H`, a training step three times that (the formula; G = 4).
//! Napkin maths for (32, 100, 2, 128): 0.43 GFLOP per forward pass, 1.28 per step; at this
//! machine's ~176 GFLOP/s (PyTorch's matrix product on both cores) a step could take 7 ms; the
//! per-step products (32 x 512 x 128) are too small to reach that, and on lavapipe every one of
//! the 4 dispatches per time step costs a fixed overhead besides.
//!
//! `cargo bench --bench lstm` (a few minutes on lavapipe; `-- --quick` is faster, `-- wgpu_` or
//! `-- cpu_` runs one side, `-- forward` one group).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rnn_wgpu::cpu;
use rnn_wgpu::internals::bench::Shape;
use rnn_wgpu::internals::gpu::optim::GpuOptimizer;
use rnn_wgpu::optim::{CpuOptimizer, OptimizerConfig, OptimizerKind};
use rnn_wgpu::{Batch, Cell, ModelConfig, Params};
use rnn_wgpu::{Gpu, GpuModel, Request};
use std::sync::OnceLock;
use std::time::Duration;

/// (B, T, I, H): the suite's smallest shape and a smaller, wider-input one.
const SHAPES: [(usize, usize, usize, usize); 2] = [(32, 100, 2, 128), (16, 50, 16, 64)];

struct Problem {
    name: String,
    config: ModelConfig,
    params: Params<f32>,
    batch: Batch<f32>,
    /// FLOPs of the forward products: `2 T B (I + H) G H`.
    forward_flops: u64,
}

/// An LSTM with PyTorch's initialisation, a head on the last step and MSE, as `rnn-wgpu bench`
/// and the reference figures use.
fn problem((batch_size, seq_len, input, hidden): (usize, usize, usize, usize)) -> Problem {
    let shape = Shape {
        batch: batch_size,
        seq_len,
        input,
        hidden,
    };
    let (config, params, batch) = shape.problem(Cell::Lstm);
    Problem {
        name: format!("b{batch_size}_t{seq_len}_i{input}_h{hidden}"),
        config,
        params,
        batch,
        // a training step is three times the forward products (the formula)
        forward_flops: (shape.step_flops(Cell::Lstm) / 3.0) as u64,
    }
}

/// One context for both groups.
fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new().expect("the wgpu benchmarks need an adapter");
        eprintln!("adapter: {}", gpu.adapter_name());
        gpu
    })
}

fn sgd() -> OptimizerConfig {
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 1e-3;
    optimizer
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    // As the command line does: each step's activations reuse the last step's memory.
    cpu::keep_freed_memory();
    let mut group = c.benchmark_group(name);
    // A GPU step on lavapipe takes about a second: ten samples of one iteration each.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group
}

fn lstm_forward(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = group(c, "lstm_forward");
    for shape in SHAPES {
        let p = problem(shape);
        group.throughput(Throughput::Elements(p.forward_flops));

        let model = GpuModel::new(gpu, p.config, &p.params).expect("a valid model");
        model
            .run(gpu, &p.batch, Request::default())
            .expect("a forward pass");
        group.bench_function(format!("wgpu_lstm_forward_{}", p.name), |bencher| {
            bencher.iter(|| {
                model
                    .run(gpu, &p.batch, Request::default())
                    .expect("a forward pass")
                    .loss
            })
        });

        group.bench_function(format!("cpu_lstm_forward_{}", p.name), |bencher| {
            bencher.iter(|| {
                cpu::forward(&p.config, &p.params, &p.batch)
                    .expect("shapes match")
                    .loss
            })
        });
    }
    group.finish();
}

fn lstm_step(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = group(c, "lstm_step");
    for shape in SHAPES {
        let p = problem(shape);
        group.throughput(Throughput::Elements(3 * p.forward_flops));

        let model = GpuModel::new(gpu, p.config, &p.params).expect("a valid model");
        let mut optimizer = GpuOptimizer::new(gpu, &model, sgd()).expect("a valid SGD");
        model
            .train_step(gpu, &p.batch, &mut optimizer, Request::default())
            .expect("a training step");
        group.bench_function(format!("wgpu_lstm_step_{}", p.name), |bencher| {
            bencher.iter(|| {
                model
                    .train_step(gpu, &p.batch, &mut optimizer, Request::default())
                    .expect("a training step")
                    .loss
            })
        });

        let mut params = p.params.clone();
        let mut optimizer = CpuOptimizer::new(&p.config, sgd()).expect("a valid SGD");
        group.bench_function(format!("cpu_lstm_step_{}", p.name), |bencher| {
            bencher.iter(|| {
                let fwd = cpu::forward(&p.config, &params, &p.batch).expect("shapes match");
                let bwd = cpu::backward(&p.config, &params, &p.batch, &fwd);
                optimizer.step(&mut params, &bwd.grads)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lstm_forward, lstm_step);
criterion_main!(benches);
