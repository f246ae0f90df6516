//! GEMM speed on the engine's shapes: the GPU kernel (`gemm_tiled`) against what `record_gemm`
//! picks on this adapter (`Auto`), timed in one run, interleaved and repeated (the median is
//! printed), on the GEMM alone: `reps` products recorded into one submission, no upload or
//! read-back inside the timing.
//!
//! `cargo run --release --example gemm_speed [ROUNDS] [--all]`; `--all` adds every block kernel.

use rnn_wgpu::gpu::gemm::{time_products, GemmKernel};
use rnn_wgpu::gpu::Gpu;

/// What a product is in the engine, (m, n, k) and (trans_a, trans_b).
type Product = (&'static str, (usize, usize, usize), (bool, bool));

/// Batch 32, 100 steps, input 16, hidden 128, LSTM (4 gates), 4 outputs scored at every step,
/// plus a square and the skinny case of the brief.
const SHAPES: [Product; 10] = [
    ("square", (512, 512, 512), (false, false)),
    ("input projection", (3200, 512, 16), (false, true)),
    ("recurrent forward", (32, 512, 128), (false, true)),
    ("recurrent backward", (32, 128, 512), (false, false)),
    ("dW_hh", (512, 128, 3200), (true, false)),
    ("dW_ih", (512, 16, 3200), (true, false)),
    ("dx", (3200, 16, 512), (false, false)),
    ("head", (3200, 4, 128), (false, true)),
    ("d head.weight", (4, 128, 3200), (true, false)),
    ("skinny", (5000, 2, 512), (false, false)),
];

fn main() -> Result<(), rnn_wgpu::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    let gpu = Gpu::new()?;
    let mut kernels = vec![GemmKernel::Tiled, GemmKernel::Auto];
    if args.iter().any(|a| a == "--all") {
        kernels.extend(&GemmKernel::forced(&gpu)[1..]);
    }
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{:<20} {:>16} {:>3}  {:<12} {:>10} {:>9} {:>8}",
        "product", "m x n x k", "op", "kernel", "ms", "GFLOP/s", "speedup"
    );
    for (what, shape, trans) in SHAPES {
        let (m, n, k) = shape;
        // The first product compiles the pipeline; it also sizes the batch to ~0.3 s.
        let reps: Vec<usize> = kernels
            .iter()
            .map(|&kernel| {
                let once = time_products(&gpu, kernel, shape, trans, 1)?;
                Ok((0.3 / once).clamp(1.0, 200.0) as usize)
            })
            .collect::<Result<_, rnn_wgpu::Error>>()?;
        let mut times = vec![Vec::new(); kernels.len()];
        for _ in 0..rounds {
            for (i, &kernel) in kernels.iter().enumerate() {
                times[i].push(time_products(&gpu, kernel, shape, trans, reps[i])?);
            }
        }
        let medians: Vec<f64> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        for (i, &kernel) in kernels.iter().enumerate() {
            let picked = kernel.resolve(&gpu, shape, true);
            let name = if kernel == GemmKernel::Auto {
                format!("{picked:?}*")
            } else {
                format!("{picked:?}")
            };
            let op = format!(
                "{}{}",
                if trans.0 { 't' } else { 'n' },
                if trans.1 { 't' } else { 'n' }
            );
            println!(
                "{:<20} {:>16} {:>3}  {:<12} {:>10.3} {:>9.2} {:>7.1}x",
                if i == 0 { what } else { "" },
                format!("{m}x{n}x{k}"),
                op,
                name,
                medians[i] * 1e3,
                2.0 * (m * n * k) as f64 / medians[i] / 1e9,
                medians[0] / medians[i],
            );
        }
    }
    println!("* = Auto's choice; speedup against the first row of each product");
    Ok(())
}
