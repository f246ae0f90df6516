//! Matrix products of an LSTM training step (B = 32, T = 25, I = 16, H = 128, 4 gates) and a
//! square one: `wgpu_gemm_*` is the product `record_gemm` picks on this adapter, `reps`
//! products recorded into one submission and timed to the end of its read-back (no upload or
//! allocation inside the timing; see `gemm::time_products`); `cpu_gemm_*` is ndarray's
//! `general_mat_mul` (matrixmultiply, one thread) on the same operands: what the CPU engine
//! uses for f64 and on CPUs without AVX2 (with AVX2 or AVX-512, f32 products go to its packed
//! kernel, `cpu/packed.rs`, timed by the `cpu_lstm_*` benches).
//!
//! Throughput is in FLOPs (`2 m n k`), so criterion's "elem/s" reads as FLOP/s. Napkin maths:
//! each product moves `4 (m k + k n + 2 m n)` bytes at least; at these sizes all of it fits in
//! the caches, so both sides are bound by arithmetic (docs/benchmarks/2026-11-26.md and
//! 2026-11-27.md have each machine's criterion figures).
//!
//! `cargo bench --bench gemm` (about a minute on lavapipe; `-- --quick` is faster, `-- wgpu_`
//! runs one side).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rnn_wgpu::internals::gpu::gemm::{time_products, GemmKernel};
use rnn_wgpu::internals::gpu::tuning;
use rnn_wgpu::Gpu;
use std::time::Duration;

/// What a product is in the engine, (m, n, k) and whether A and B are used transposed.
type Product = (&'static str, (usize, usize, usize), (bool, bool));

const PRODUCTS: [Product; 4] = [
    ("square", (256, 256, 256), (false, false)),
    ("input_projection", (800, 512, 16), (false, true)),
    ("recurrent", (32, 512, 128), (false, true)),
    ("dw_hh", (512, 128, 800), (true, false)),
];

/// A matrix of `rows x cols` with values in [-0.5, 0.5).
fn filled(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * cols + j) % 17) as f32 / 17.0 - 0.5
    })
}

fn gemm(c: &mut Criterion) {
    let gpu = Gpu::new().expect("the wgpu benchmarks need an adapter");
    eprintln!("adapter: {}", gpu.adapter_name());
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (what, (m, n, k), (trans_a, trans_b)) in PRODUCTS {
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let op = format!(
            "{}{}",
            if trans_a { 't' } else { 'n' },
            if trans_b { 't' } else { 'n' }
        );
        let shape = format!("{what}_{m}x{n}x{k}_{op}");

        // The first product compiles the pipeline.
        time_products(
            &gpu,
            (GemmKernel::Auto, None),
            tuning::Product::new((m, n, k), (trans_a, trans_b)),
            1,
        )
        .expect("a product the engine records");
        group.bench_function(format!("wgpu_gemm_{shape}"), |bencher| {
            bencher.iter_custom(|iters| {
                let seconds = time_products(
                    &gpu,
                    (GemmKernel::Auto, None),
                    tuning::Product::new((m, n, k), (trans_a, trans_b)),
                    iters as usize,
                )
                .expect("a product the engine records")
                .0;
                Duration::from_secs_f64(seconds * iters as f64)
            })
        });

        let a = if trans_a { filled(k, m) } else { filled(m, k) };
        let b = if trans_b { filled(n, k) } else { filled(k, n) };
        let (a, b) = (
            if trans_a { a.t() } else { a.view() },
            if trans_b { b.t() } else { b.view() },
        );
        let bias = filled(1, n);
        let mut product = Array2::<f32>::zeros((m, n));
        group.bench_function(format!("cpu_gemm_{shape}"), |bencher| {
            // C += op(A) op(B) + bias, as the GPU side computes.
            bencher.iter(|| {
                general_mat_mul(1.0, &a, &b, 1.0, &mut product);
                product += &bias;
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
