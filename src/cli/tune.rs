//! `rnn-wgpu tune`: times every matrix-product kernel `Auto` chooses among on the products of
//! the benchmark suite (or one --shape), keeps the fastest per product, and caches the choices
//! for this adapter (`rnn_wgpu::gpu::tuning`); later commands load them.

use anyhow::{bail, Context, Result};
use rnn_wgpu::bench::{bench_shape, Shape, SUITE};
use rnn_wgpu::gpu::gemm::GemmKernel;
use rnn_wgpu::gpu::tuning::{self, Product};
use rnn_wgpu::gpu::Gpu;

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Tune the products of this shape B,T,I,H (repeatable) instead of the suite's.
    #[arg(long)]
    pub shape: Vec<Shape>,
    #[command(flatten)]
    pub model: super::bench::ModelArgs,
    /// Timing rounds per candidate (the median decides).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub engine: super::bench::GpuArgs,
}

pub fn run(args: TuneArgs) -> Result<()> {
    let arch = args.model.arch()?;
    if args.rounds == 0 {
        bail!("--rounds must be at least 1, got 0");
    }
    let Some(path) = tuning::cache_path() else {
        bail!("RNN_WGPU_TUNING=off (or no HOME): there is no tuning cache to write; set RNN_WGPU_TUNING to a file");
    };
    let gpu = Gpu::new()?;
    // A cache that cannot be read or written is refused before the timing starts.
    tuning::read_choices(&gpu, &path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    rnn_wgpu::fsio::check_writable(&path)?;
    let shapes: Vec<Shape> = if args.shape.is_empty() {
        SUITE.to_vec()
    } else {
        args.shape.clone()
    };
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{:<24} {:<18} {:>9} {:<18} {:>9} {:>8}",
        "product (m x n x k op)", "rule", "ms", "tuned", "ms", "speedup"
    );
    let mut tuned: Vec<(Product, GemmKernel)> = Vec::new();
    for shape in shapes {
        // One training step, untimed, to find the products this model runs.
        gpu.watch_products();
        bench_shape(
            Some(&gpu),
            arch,
            shape,
            0,
            1,
            args.engine.options(),
            args.engine.recurrence,
        )
        .with_context(|| format!("running {shape} to find its products"))?;
        println!("{shape}:");
        for product in gpu.watched_products() {
            if tuned.iter().any(|(p, _)| *p == product) {
                continue;
            }
            let t = tuning::tune_product(&gpu, product, args.rounds)?;
            let ((m, n, k), (ta, tb)) = product;
            let op = |t: bool| if t { 't' } else { 'n' };
            let (rule_ms, tuned_ms) = (t.seconds_of(t.rule) * 1e3, t.seconds_of(t.choice) * 1e3);
            println!(
                "{:<24} {:<18} {:>9.3} {:<18} {:>9.3} {:>7.2}x",
                format!("{m}x{n}x{k} {}{}", op(ta), op(tb)),
                t.rule.name(),
                rule_ms,
                if t.choice == t.rule {
                    "(the rule's)"
                } else {
                    t.choice.name()
                },
                tuned_ms,
                rule_ms / tuned_ms
            );
            tuned.push((product, t.choice));
        }
    }
    tuning::write_choices(&gpu, &path, &tuned)?;
    let changed = tuned
        .iter()
        .filter(|&&(((m, n, k), _), kernel)| {
            kernel != GemmKernel::Auto.resolve(&gpu, (m, n, k), true)
        })
        .count();
    println!(
        "wrote {} products ({changed} off the rule) for this adapter to {}",
        tuned.len(),
        path.display()
    );
    Ok(())
}
