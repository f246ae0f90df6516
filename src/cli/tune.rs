//! `rnn-wgpu tune`: times every matrix-product kernel `Auto` chooses among on the products of
//! the benchmark suite (or of each --shape), both step kernels at --precision f16 where the
//! matrix units are on, the step kernels with K whole and split over layers of invocations
//! (fused.wgsl) or subgroups (step_coop.wgsl), and both ways of running the steps (a dispatch
//! each, or persistent); keeps the fastest, and caches the choices for this adapter
//! (`rnn_wgpu::internals::gpu::tuning`); later commands load them. A kernel is timed only once
//! its product is right (`tuning::Check`); those left out are listed under their product.

use anyhow::{bail, Context, Result};
use rnn_wgpu::internals::bench::{
    bench_shape, tune_recurrence, tune_step_split, tune_steps, Arch, Shape, SUITE,
};
use rnn_wgpu::internals::gpu::tuning::{self, Tuning};
use rnn_wgpu::internals::gpu::{Recurrence, StepKernel};
use rnn_wgpu::Gpu;

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Tune this shape B,T,I,H (repeatable) instead of the suite's shapes; with --recurrence
    /// persistent only its products are tuned, with steps its products and (f16, matrix units
    /// on) its step kernels.
    #[arg(long)]
    pub shape: Vec<Shape>,
    #[command(flatten)]
    pub model: super::bench::ModelArgs,
    /// Timing rounds per candidate (the median decides).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub engine: super::engine::GpuArgs,
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
    tuning::read_tuning(&gpu, &path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    rnn_wgpu::internals::fsio::check_writable(&path)?;
    let shapes: Vec<Shape> = if args.shape.is_empty() {
        SUITE.to_vec()
    } else {
        args.shape.clone()
    };
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "{:<26} {:<18} {:>9} {:<18} {:>9} {:>8}",
        "product (m x n x k op)", "rule", "ms", "tuned", "ms", "speedup"
    );
    let mut tuner = Tuner {
        gpu: &gpu,
        arch,
        args: &args,
        tuned: Tuning::default(),
        changed: 0,
    };
    for shape in shapes {
        println!("{shape}:");
        tuner.products(shape)?;
        // The step kernels where the steps run a dispatch each (or may).
        if args.engine.recurrence != Recurrence::Persistent {
            tuner.step_kernels(shape)?;
            tuner.step_split(shape)?;
        }
        if args.engine.recurrence == Recurrence::Auto {
            tuner.recurrence(shape)?;
        }
    }
    tuning::write_tuning(&gpu, &path, &tuner.tuned)?;
    println!(
        "wrote {} choices ({} off the rule) for this adapter to {}",
        tuner.tuned.len(),
        tuner.changed,
        path.display()
    );
    Ok(())
}

/// Times each choice for the shapes given, prints a row per choice and collects them.
struct Tuner<'a> {
    gpu: &'a Gpu,
    arch: Arch,
    args: &'a TuneArgs,
    tuned: Tuning,
    /// Choices that differ from the rule's.
    changed: usize,
}

impl Tuner<'_> {
    /// Every product of one training step of `shape` not tuned yet.
    fn products(&mut self, shape: Shape) -> Result<()> {
        let (gpu, args) = (self.gpu, self.args);
        // One training step, untimed, to find the products this model runs.
        gpu.watch_products();
        bench_shape(
            Some(gpu),
            self.arch,
            shape,
            0,
            1,
            args.engine.options(),
            args.engine.recurrence,
        )
        .with_context(|| format!("running {shape} to find its products"))?;
        for product in gpu.watched_products() {
            if self.tuned.products.iter().any(|(p, _)| *p == product) {
                continue;
            }
            let t = tuning::tune_product(gpu, product, args.rounds)?;
            let what = tuning::product_key(product);
            let ms = (t.seconds_of(t.rule) * 1e3, t.seconds_of(t.choice) * 1e3);
            row(
                &what,
                (&t.rule.name(), ms.0),
                (&t.choice.name(), ms.1),
                t.choice == t.rule,
            );
            for (kernel, why) in &t.rejected {
                println!("{:<26} {} left out: {why}", "", kernel.name());
            }
            if t.rejected.iter().any(|(kernel, _)| *kernel == t.rule) {
                eprintln!(
                    "warning: Auto's kernel for {what} ({}) is wrong on this adapter; the cache \
                     makes Auto run {} there. Please report it with `rnn-wgpu devices`' output",
                    t.rule.name(),
                    t.choice.name()
                );
            }
            self.changed += (t.choice != t.rule) as usize;
            self.tuned.products.push((product, t.choice));
        }
        Ok(())
    }

    /// At f16 with the matrix units on: its time steps on them and on the tiles.
    fn step_kernels(&mut self, shape: Shape) -> Result<()> {
        let options = self.args.engine.options();
        let Some(t) = tune_steps(self.gpu, self.arch, shape, options, self.args.rounds)? else {
            return Ok(());
        };
        let rule = StepKernel::MatrixUnits;
        let ms = |kernel| match kernel {
            StepKernel::MatrixUnits => t.units_ms,
            StepKernel::Tiled => t.tiled_ms,
        };
        let what = tuning::steps_key(t.shape);
        let (rule_ms, choice) = (ms(rule), (t.choice.name(), ms(t.choice)));
        row(&what, (rule.name(), rule_ms), choice, t.choice == rule);
        if let Some(why) = &t.units_left_out {
            println!("{:<26} matrix-units left out: {why}", "");
            eprintln!(
                "warning: the matrix units' time step is wrong on this adapter for {what}; \
                 the cache makes it run on the tiles. Please report it with `rnn-wgpu \
                 devices`' output"
            );
        }
        self.changed += (t.choice != rule) as usize;
        self.tuned.steps.push((t.shape, t.choice));
        Ok(())
    }

    /// The step kernel the steps run on: with K whole and split.
    fn step_split(&mut self, shape: Shape) -> Result<()> {
        let options = self.args.engine.options();
        let Some(t) = tune_step_split(self.gpu, self.arch, shape, options, self.args.rounds)?
        else {
            return Ok(());
        };
        let what = tuning::split_key(t.shape);
        let name = |layers: u32| match layers {
            1 => "K whole".to_string(),
            k => format!("K split {k} ways"),
        };
        let (rule, choice) = (
            (name(t.rule), t.ms(t.rule)),
            (name(t.choice), t.ms(t.choice)),
        );
        row(
            &what,
            (&rule.0, rule.1),
            (&choice.0, choice.1),
            t.choice == t.rule,
        );
        let times: Vec<String> = (t.times.iter())
            .filter(|(_, ms)| !ms.is_nan())
            .map(|(k, ms)| format!("{}: {ms:.3}", name(*k)))
            .collect();
        println!("{:<26} (a training step, ms: {})", "", times.join(", "));
        for (layers, why) in &t.left_out {
            println!("{:<26} {} left out: {why}", "", name(*layers));
        }
        self.changed += (t.choice != t.rule) as usize;
        self.tuned.splits.push((t.shape, t.choice));
        Ok(())
    }

    /// Both ways of running its steps: a dispatch each, or persistent.
    fn recurrence(&mut self, shape: Shape) -> Result<()> {
        let options = self.args.engine.options();
        let t = tune_recurrence(self.gpu, self.arch, shape, options, self.args.rounds)?;
        let ms = |way: Recurrence| match way {
            Recurrence::Persistent => t.persistent_ms,
            _ => t.steps_ms,
        };
        let what = tuning::recurrence_key(t.shape);
        let (rule, choice) = ((t.rule.name(), ms(t.rule)), (t.choice.name(), ms(t.choice)));
        row(&what, rule, choice, t.choice == t.rule);
        match &t.persistent_left_out {
            Some(why) => println!("{:<26} persistent left out: {why}", ""),
            None => println!(
                "{:<26} (a training step: {:.3} ms with a dispatch per step, {:.3} persistent)",
                "", t.steps_ms, t.persistent_ms
            ),
        }
        self.changed += (t.choice != t.rule) as usize;
        self.tuned.recurrences.push((t.shape, t.choice));
        Ok(())
    }
}

/// One line of the table: what was tuned, the rule's choice and its ms, the tuned one and its
/// ("-" for a way left out untimed).
fn row(what: &str, (rule, rule_ms): (&str, f64), (tuned, tuned_ms): (&str, f64), same: bool) {
    let ms = |x: f64| {
        if x.is_nan() {
            "-".to_string()
        } else {
            format!("{x:.3}")
        }
    };
    let speedup = rule_ms / tuned_ms;
    println!(
        "{:<26} {:<18} {:>9} {:<18} {:>9} {:>8}",
        what,
        rule,
        ms(rule_ms),
        if same { "(the rule's)" } else { tuned },
        ms(tuned_ms),
        if speedup.is_nan() {
            "-".to_string()
        } else {
            format!("{speedup:.2}x")
        }
    );
}
