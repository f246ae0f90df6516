//! `rnn-wgpu parity`: one forward + backward on the CPU reference (f64) and the GPU (f32, or
//! f16 storage with `--precision f16`).

use anyhow::{bail, Context, Result};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, tolerance};
use rnn_wgpu::internals::plan::{check_host_memory, check_host_pass, HostPass, PlanOptions};
use rnn_wgpu::Precision;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ParityArgs {
    /// Recurrent cell: lstm, gru or rnn.
    #[arg(long, default_value = "lstm")]
    pub cell: Cell,
    /// RNN nonlinearity: tanh, sigmoid or relu (ignored by the LSTM).
    #[arg(long, default_value = "tanh")]
    pub activation: Activation,
    /// Sequences per batch (B).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Time steps (T).
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Features per step (I).
    #[arg(long, default_value_t = 7)]
    pub input: usize,
    /// Hidden units (H).
    #[arg(long, default_value_t = 65)]
    pub hidden: usize,
    /// Head outputs (O); classes for cross-entropy.
    #[arg(long, default_value_t = 3)]
    pub output: usize,
    /// Head on the last step (many-to-one) or on every step (many-to-many): last or all.
    #[arg(long, default_value = "last")]
    pub readout: Readout,
    /// Loss: mse or ce (softmax cross-entropy).
    #[arg(long, default_value = "mse")]
    pub loss: Loss,
    /// Stacked layers.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// A reverse-time pass per layer.
    #[arg(long)]
    pub bidirectional: bool,
    /// Seed for weights and data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The GPU's storage precision: f32, or f16 (the reference then rounds to f16 wherever
    /// the GPU stores, and the bound is wider: see `parity::F16_TOLERANCE`).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

pub fn run(args: ParityArgs) -> Result<ExitCode> {
    let config = ModelConfig {
        cell: args.cell,
        activation: args.activation,
        input_size: args.input,
        hidden_size: args.hidden,
        output_size: args.output,
        readout: args.readout,
        loss: args.loss,
        layers: args.layers,
        bidirectional: args.bidirectional,
        dropout: 0.0,
    };
    config.validate()?;
    if args.batch == 0 || args.seq_len == 0 {
        bail!("--batch and --seq-len must be at least 1");
    }
    // The f64 reference's parameters and gradients (4 f32 copies' worth), the GPU side's f32
    // ones, and the f64 reference's activations: refused here rather than aborted in allocation.
    const FIX: &str = "use a smaller --batch, --seq-len or --hidden";
    check_host_memory(&config, 6)?;
    let rows = (args.seq_len, args.batch);
    check_host_pass(&config, rows, HostPass::ForwardBackward, 8, FIX)?;
    let gpu = super::engine::open_gpu()?;
    let (params, batch) = random_problem(&config, args.seq_len, args.batch, args.seed);
    let options = PlanOptions {
        precision: args.precision,
        ..PlanOptions::default()
    };
    let report =
        run_parity_with(&gpu, &config, &params, &batch, options).context("parity run failed")?;
    let cell = match config.cell {
        Cell::Lstm | Cell::Gru => config.cell.to_string(),
        Cell::Rnn => format!("rnn ({})", config.activation),
    };
    let bound = tolerance(args.precision);
    println!(
        "adapter: {} ({} storage)",
        report.adapter,
        args.precision.name()
    );
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
        "{:<28} {:>9} {:>10}   element with the largest |gpu - cpu|",
        "tensor", "elements", "rel err"
    );
    for c in &report.comparisons {
        let flag = if c.passes(bound) { "" } else { "   FAIL" };
        println!("{c}{flag}");
    }
    let failures = report.failures(bound);
    if failures.is_empty() {
        println!(
            "all {} tensors within ||gpu - cpu|| / ||cpu|| <= {bound:e}",
            report.comparisons.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} of {} tensors exceed {bound:e}",
            failures.len(),
            report.comparisons.len()
        );
        if report.kinks > 0 {
            println!(
                "{} ReLU pre-activations lie within f32 rounding of the kink at 0 in the f64 \
                 reference. An f32 run may put them on the other side, and then the gradients \
                 through those units differ while the loss, outputs and states agree: with \
                 only gradients failing, that is ReLU's derivative, not a wrong kernel (try \
                 another --seed).",
                report.kinks
            );
        }
        Ok(ExitCode::FAILURE)
    }
}
