//! The `rnn-wgpu` command line: parses arguments and prints; all work is in the library.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "rnn-wgpu",
    version,
    about = "Train and study recurrent networks (RNN, LSTM, GRU) on any GPU through wgpu"
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
    Parity(cli::parity::ParityArgs),
    /// The vanishing-gradient study: ||dE/dh_t|| against steps back from the loss for a sigmoid
    /// RNN, a tanh RNN, an LSTM, a GRU and an LSTM with a large forget-gate bias on the same
    /// adding-problem batch; writes an SVG and a CSV.
    Vanishing(cli::vanishing::VanishingArgs),
    /// Train on the GPU (or the CPU reference): adding, copy, text, or your .npy/CSV data.
    Train(cli::train::TrainArgs),
    /// Loss, parameter gradients and per-step norms of one batch (.npy in, safetensors out).
    Grad(cli::grad::GradArgs),
    /// Generate text from a model trained with --task text.
    Sample(cli::sample::SampleArgs),
    /// Write a model as ONNX (RNN, LSTM, GRU operators and a Gemm head) for inference runtimes.
    Export(cli::export::ExportArgs),
    /// The model's outputs on inputs from a .npy file (the CPU engine's forward pass).
    Predict(cli::predict::PredictArgs),
    /// Time training steps over the benchmark suite (or one --shape) on GPU and/or CPU.
    Bench(cli::bench::BenchArgs),
    /// Time every matrix-product kernel on the suite's (or each --shape's) products, and the
    /// persistent recurrence where a model fits it, on this adapter; cache the fastest for
    /// later commands (RNN_WGPU_TUNING=off ignores the cache).
    Tune(cli::tune::TuneArgs),
}

fn main() -> ExitCode {
    // A value such as `--hidden -3` or `--lr -1` reaches its parser and is refused by name,
    // instead of being taken for an unknown flag.
    let command = Cli::command().mut_subcommands(|c| c.allow_negative_numbers(true));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    quiet_window_system_probes();
    rnn_wgpu::cpu::keep_freed_memory();
    // The library ignores a value it does not know; say so before anything runs.
    if let Ok(value) = std::env::var(rnn_wgpu::cpu::ISA_VAR) {
        if let Err(e) = rnn_wgpu::cpu::Isa::parse(&value) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Devices => cli::devices::run(),
        Command::Parity(args) => cli::parity::run(args),
        Command::Vanishing(args) => cli::vanishing::run(args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => cli::train::run(args).map(|()| ExitCode::SUCCESS),
        Command::Grad(args) => cli::grad::run(args).map(|()| ExitCode::SUCCESS),
        Command::Sample(args) => cli::sample::run(args).map(|()| ExitCode::SUCCESS),
        Command::Export(args) => cli::export::run(args).map(|()| ExitCode::SUCCESS),
        Command::Predict(args) => cli::predict::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => cli::bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Tune(args) => cli::tune::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// On a headless Linux machine Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid
/// or not set in the environment." for every adapter they open, where XDG_RUNTIME_DIR is unset:
/// the first lines a user would see would be errors that are not theirs, nor ours. Where it is
/// unset, point it at a private directory of this user's before wgpu starts (one thread runs
/// yet, so setting the environment is safe). Nothing runs a window system here.
fn quiet_window_system_probes() {
    #[cfg(unix)]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty()) {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("rnn-wgpu-runtime-{uid}"));
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if made.is_ok() || dir.is_dir() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}
