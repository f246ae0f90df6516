//! GEMM speed on the engine's shapes: the 64x64 tile (`GemmTile::TILED`) against what
//! `record_gemm` picks on this adapter (`Auto`), timed in one run, interleaved and repeated (the
//! median is printed), on the GEMM alone: `reps` products recorded into one submission, no
//! upload or read-back inside the timing.
//!
//! `cargo run --release --example gemm_speed [ROUNDS] [--gpu] [--tile BLOCK:NxM:K:SLICES]...
//! [--product M,N,K,OP]... [--k-chunk N] [--auto-only]`; `--gpu` adds every named tile tuning
//! times (split K in 32x32 and 64x64 tiles, the 8x8-block tiles of 128 and 64), `--tile`
//! (repeatable) any other shape of gemm.wgsl, `--product` (repeatable; OP is nn, nt, tn or tt)
//! times those products instead of the built-in list, `--k-chunk` runs K in chunks of N,
//! `--auto-only` leaves out the 64x64 baseline.

use rnn_wgpu::internals::gpu::gemm::{time_products, GemmKernel};
use rnn_wgpu::internals::gpu::tuning;
use rnn_wgpu::Gpu;

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
    // `--product M,N,K,OP` (OP: nn, nt, tn or tt) times that product instead of SHAPES.
    let custom: Vec<Product> = args
        .windows(2)
        .filter(|w| w[0] == "--product")
        .map(|w| parse_product(&w[1]))
        .collect();
    let products: &[Product] = if custom.is_empty() { &SHAPES } else { &custom };
    // `--k-chunk N` runs K in chunks of N rows (one dispatch each) instead of the automatic rule.
    let k_chunk: Option<usize> = args
        .windows(2)
        .find(|w| w[0] == "--k-chunk")
        .and_then(|w| w[1].parse().ok());
    let gpu = Gpu::new()?;
    // `--auto-only`: just Auto's choice.
    let mut kernels = if args.iter().any(|a| a == "--auto-only") {
        vec![GemmKernel::Auto]
    } else {
        vec![GemmKernel::TILED, GemmKernel::Auto]
    };
    if args.iter().any(|a| a == "--gpu") {
        let named = GemmKernel::named(&gpu).into_iter();
        kernels.extend(named.filter(|k| *k != GemmKernel::TILED));
    }
    for w in args.windows(2).filter(|w| w[0] == "--tile") {
        kernels.push(GemmKernel::Tile(w[1].parse()?));
    }
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{:<20} {:>16} {:>3}  {:<12} {:>10} {:>9} {:>8}",
        "product", "m x n x k", "op", "kernel", "ms", "GFLOP/s", "speedup"
    );
    for &(what, shape, trans) in products {
        let (m, n, k) = shape;
        // The first product compiles the pipelines and says which entry points run; it also
        // sizes the batch to ~0.3 s.
        let (reps, entries): (Vec<usize>, Vec<String>) = kernels
            .iter()
            .map(|&kernel| {
                let (once, ran) = time_products(
                    &gpu,
                    (kernel, k_chunk),
                    tuning::Product::new(shape, trans),
                    1,
                )?;
                let mut names: Vec<&str> = ran.iter().map(|k| k.entry_point()).collect();
                names.dedup();
                Ok(((0.3 / once).clamp(1.0, 200.0) as usize, names.join("+")))
            })
            .collect::<Result<Vec<_>, rnn_wgpu::Error>>()?
            .into_iter()
            .unzip();
        let mut times = vec![Vec::new(); kernels.len()];
        for _ in 0..rounds {
            for (i, &kernel) in kernels.iter().enumerate() {
                times[i].push(
                    time_products(
                        &gpu,
                        (kernel, k_chunk),
                        tuning::Product::new(shape, trans),
                        reps[i],
                    )?
                    .0,
                );
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
            let picked = GemmKernel::Tile(kernel.resolve(&gpu, shape)).name();
            let star = if kernel == GemmKernel::Auto { "*" } else { "" };
            let name = format!("{picked}{star} ({})", entries[i]);
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

fn parse_product(text: &str) -> Product {
    let parts: Vec<&str> = text.split(',').collect();
    let dim = |i: usize| -> usize {
        parts
            .get(i)
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("--product {text}: expected M,N,K,OP such as 128,1024,256,nt");
                std::process::exit(2)
            })
    };
    let op = parts.get(3).copied().unwrap_or("nn").as_bytes();
    let transposed = |i: usize| op.get(i) == Some(&b't');
    (
        "product",
        (dim(0), dim(1), dim(2)),
        (transposed(0), transposed(1)),
    )
}
