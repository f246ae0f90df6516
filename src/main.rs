//! The `rnn-wgpu` command line: parses arguments and prints; all work is in the library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rnn_wgpu::gpu::{enumerate_adapters, Gpu};
use rnn_wgpu::parity::{random_problem, run_parity, TOLERANCE};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "rnn-wgpu",
    version,
    about = "Train and study recurrent networks (RNN, LSTM) on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu finds, the limits that matter here, and which one is used.
    Devices,
    /// One forward + backward on CPU (f64 reference) and GPU (f32) with the same random
    /// weights and data; prints the relative error of every tensor.
    Parity(ParityArgs),
    /// The vanishing-gradient study: ||dE/dh_t|| against steps back from the loss for a sigmoid
    /// RNN, a tanh RNN and an LSTM on the same adding-problem batch; writes an SVG and a CSV.
    Vanishing(VanishingArgs),
    /// Train on the GPU (or the CPU reference): adding, copy, text, or your .npy/CSV data.
    Train(cli::train::TrainArgs),
    /// Loss, parameter gradients and per-step norms of one batch (.npy in, safetensors out).
    Grad(cli::grad::GradArgs),
    /// Generate text from a model trained with --task text.
    Sample(cli::sample::SampleArgs),
}

#[derive(clap::Args)]
struct VanishingArgs {
    /// Time steps (T) of the adding problem.
    #[arg(long, default_value_t = 100)]
    seq_len: usize,
    /// Hidden units of every model.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Sequences in the batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Rescale W_hh of every model to this largest singular value (above 1/gamma the RNN's
    /// gradients may explode instead). Default: PyTorch's initialisation as it comes.
    #[arg(long)]
    scale: Option<f64>,
    /// Seed for weights and data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the plot.
    #[arg(long, default_value = "vanishing.svg")]
    svg: std::path::PathBuf,
    /// Where to write the numbers, one row per time step.
    #[arg(long, default_value = "vanishing.csv")]
    csv: std::path::PathBuf,
}

#[derive(clap::Args)]
struct ParityArgs {
    /// Recurrent cell: lstm or rnn.
    #[arg(long, default_value = "lstm")]
    cell: Cell,
    /// RNN nonlinearity: tanh, sigmoid or relu (ignored by the LSTM).
    #[arg(long, default_value = "tanh")]
    activation: Activation,
    /// Sequences per batch (B).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Time steps (T).
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Features per step (I).
    #[arg(long, default_value_t = 7)]
    input: usize,
    /// Hidden units (H).
    #[arg(long, default_value_t = 65)]
    hidden: usize,
    /// Head outputs (O); classes for cross-entropy.
    #[arg(long, default_value_t = 3)]
    output: usize,
    /// Head on the last step (many-to-one) or on every step (many-to-many): last or all.
    #[arg(long, default_value = "last")]
    readout: Readout,
    /// Loss: mse or ce (softmax cross-entropy).
    #[arg(long, default_value = "mse")]
    loss: Loss,
    /// Seed for weights and data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices => devices(),
        Command::Parity(args) => parity(args),
        Command::Vanishing(args) => vanishing(args),
        Command::Train(args) => cli::train::run(args).map(|()| ExitCode::SUCCESS),
        Command::Grad(args) => cli::grad::run(args).map(|()| ExitCode::SUCCESS),
        Command::Sample(args) => cli::sample::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn devices() -> Result<ExitCode> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        // Gpu::new gives the full explanation of how to get an adapter.
        Gpu::new()?;
        bail!("wgpu found no adapter");
    }
    let opened = Gpu::new();
    let chosen = opened.as_ref().ok().map(|gpu| gpu.info.clone());
    for (k, adapter) in adapters.iter().enumerate() {
        let (info, limits) = (&adapter.info, &adapter.limits);
        let used = chosen.as_ref().is_some_and(|c| {
            c.name == info.name && c.backend == info.backend && c.device == info.device
        });
        println!(
            "[{k}] {}{}\n    backend {:?}, type {:?}, driver {} {}\n    max storage binding {}, max buffer {}, workgroup storage {} KiB, max workgroups/dim {}",
            info.name,
            if used { "   <- used" } else { "" },
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            mib(limits.max_storage_buffer_binding_size),
            mib(limits.max_buffer_size),
            limits.max_compute_workgroup_storage_size / 1024,
            limits.max_compute_workgroups_per_dimension,
        );
    }
    match opened {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: no adapter could be opened: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parity(args: ParityArgs) -> Result<ExitCode> {
    let config = ModelConfig {
        cell: args.cell,
        activation: args.activation,
        input_size: args.input,
        hidden_size: args.hidden,
        output_size: args.output,
        readout: args.readout,
        loss: args.loss,
    };
    config.validate()?;
    if args.batch == 0 || args.seq_len == 0 {
        bail!("--batch and --seq-len must be at least 1");
    }
    let gpu = Gpu::new()?;
    let (params, batch) = random_problem(&config, args.seq_len, args.batch, args.seed);
    let report = run_parity(&gpu, &config, &params, &batch).context("parity run failed")?;
    let cell = match config.cell {
        Cell::Lstm => "lstm".to_string(),
        Cell::Rnn => format!("rnn ({})", config.activation),
    };
    println!("adapter: {}", report.adapter);
    println!(
        "{cell}: batch {} seq_len {} input {} hidden {} output {}, readout {}, loss {}, seed {}",
        args.batch,
        args.seq_len,
        args.input,
        args.hidden,
        args.output,
        args.readout,
        args.loss,
        args.seed
    );
    println!(
        "{:<16} {:>9} {:>10}   element with the largest |gpu - cpu|",
        "tensor", "elements", "rel err"
    );
    for c in &report.comparisons {
        let flag = if c.passes(TOLERANCE) { "" } else { "   FAIL" };
        println!("{c}{flag}");
    }
    let failures = report.failures(TOLERANCE);
    if failures.is_empty() {
        println!(
            "all {} tensors within ||gpu - cpu|| / ||cpu|| <= {TOLERANCE:e}",
            report.comparisons.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} of {} tensors exceed {TOLERANCE:e}",
            failures.len(),
            report.comparisons.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn vanishing(args: VanishingArgs) -> Result<ExitCode> {
    use rnn_wgpu::plot::{log_line_chart, Series};
    use rnn_wgpu::study::{format_csv, format_table, run_vanishing, VanishingOptions};
    let gpu = Gpu::new()?;
    let options = VanishingOptions {
        seq_len: args.seq_len,
        hidden: args.hidden,
        batch: args.batch,
        seed: args.seed,
        scale: args.scale,
    };
    let profiles = run_vanishing(&gpu, &options)?;
    println!("adapter: {}", gpu.adapter_name());
    println!(
        "adding problem, T = {}, batch {}, hidden {}, W_hh {}; ||dE/dh|| (and ||dE/dc||) by steps back from the loss:",
        args.seq_len,
        args.batch,
        args.hidden,
        args.scale
            .map_or("as initialised (PyTorch default)".to_string(), |s| format!("rescaled to sigma_max = {s}"))
    );
    print!("{}", format_table(&profiles));
    println!(
        "per-step factor: geometric mean of ||dE/dh_(t-1)|| / ||dE/dh_t||. A vanilla RNN whose \
         sigma_max(W_hh) is below the bound (1/max act') must vanish."
    );
    let colors = ["#d62728", "#1f77b4", "#2ca02c"];
    let mut series = Vec::new();
    for (p, color) in profiles.iter().zip(colors) {
        let back = |norms: &[f32]| norms.iter().rev().map(|&v| v as f64).collect::<Vec<f64>>();
        series.push(Series {
            label: format!("{} |dE/dh|", p.label),
            values: back(&p.grad_norm_h),
            color,
            dashed: false,
        });
        if let Some(c) = &p.grad_norm_c {
            series.push(Series {
                label: format!("{} |dE/dc|", p.label),
                values: back(c),
                color,
                dashed: true,
            });
        }
    }
    let title = format!(
        "Gradient norm vs steps back from the loss (adding, T={}, H={})",
        args.seq_len, args.hidden
    );
    let svg = log_line_chart(
        &title,
        "steps back from the loss",
        "gradient norm (log scale)",
        &series,
    );
    rnn_wgpu::fsio::write_atomic(&args.svg, svg.as_bytes())?;
    rnn_wgpu::fsio::write_atomic(&args.csv, format_csv(&profiles).as_bytes())?;
    println!("wrote {} and {}", args.svg.display(), args.csv.display());
    Ok(ExitCode::SUCCESS)
}
