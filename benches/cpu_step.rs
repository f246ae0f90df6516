//! One CPU training step in f32: `cpu::forward` + `cpu::backward` + one `CpuOptimizer` SGD
//! update, for an LSTM with the head on the last step and MSE, at the four shapes of the
//! performance issue (B, T, I, H). Throughput is B*T sequence elements per step.
//!
//! `cargo bench --bench cpu_step` (about a minute on an idle two-core machine); a filter such as
//! `cargo bench --bench cpu_step -- b32_` runs one shape. The group is named after the vector
//! path the engine runs (`cpu_step_avx2`, ...): `RNN_WGPU_CPU_ISA=baseline` (or `avx2`) times a
//! narrower path than the CPU's widest, each path keeping its own criterion history.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rnn_wgpu::cpu;
use rnn_wgpu::internals::bench::Shape;
use rnn_wgpu::optim::{CpuOptimizer, OptimizerConfig, OptimizerKind};
use rnn_wgpu::Cell;
use std::time::Duration;

/// (B, T, I, H), and the samples to take: the largest step takes over a second.
const SHAPES: [(usize, usize, usize, usize, usize); 4] = [
    (32, 100, 2, 128, 10),
    (128, 256, 64, 256, 10),
    (64, 1000, 2, 128, 10),
    (256, 128, 128, 512, 10),
];

fn cpu_step(c: &mut Criterion) {
    // As the command line does: each step's activations reuse the last step's memory.
    cpu::keep_freed_memory();
    let mut group = c.benchmark_group(format!("cpu_step_{}", cpu::isa().name()));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (batch_size, seq_len, input, hidden, samples) in SHAPES {
        let shape = Shape {
            batch: batch_size,
            seq_len,
            input,
            hidden,
        };
        let (config, mut params, batch) = shape.problem(Cell::Lstm);
        let mut optimizer = CpuOptimizer::new(&config, OptimizerConfig::new(OptimizerKind::sgd()))
            .expect("a valid SGD configuration");
        group.sample_size(samples);
        group.throughput(Throughput::Elements((batch_size * seq_len) as u64));
        let name = format!("cpu_lstm_b{batch_size}_t{seq_len}_i{input}_h{hidden}");
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                let fwd = cpu::forward(&config, &params, &batch).expect("shapes match");
                let bwd = cpu::backward(&config, &params, &batch, &fwd);
                optimizer.step(&mut params, &bwd.grads)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cpu_step);
criterion_main!(benches);
