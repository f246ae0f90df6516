//! `rnn-wgpu export`: a checkpoint as an ONNX model (`rnn_wgpu::onnx`).

use anyhow::{Context, Result};
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::onnx::{self, ExportOptions};
use rnn_wgpu::{Activation, Cell, Readout};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The model (safetensors; PyTorch names; configuration from its metadata or the shapes).
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the ONNX model (atomically).
    #[arg(long)]
    pub onnx: PathBuf,
    /// The ONNX opset, 14 to 21.
    #[arg(long, default_value_t = onnx::DEFAULT_OPSET)]
    pub opset: i64,
    /// The head on the last step or on every step (default: the model's own).
    #[arg(long)]
    pub readout: Option<Readout>,
    /// Add the graph input sequence_lens [B] (int32): each sequence's length, for batches of
    /// different lengths (the steps after it are padding).
    #[arg(long)]
    pub sequence_lens: bool,
    /// For a file without metadata: the cell (else inferred from the shapes).
    #[arg(long)]
    pub cell: Option<Cell>,
    /// For a file without metadata: the RNN nonlinearity (default tanh).
    #[arg(long)]
    pub activation: Option<Activation>,
}

pub fn run(args: ExportArgs) -> Result<()> {
    rnn_wgpu::internals::fsio::check_writable(&args.onnx).context("--onnx")?;
    let overrides = LoadOverrides {
        cell: args.cell,
        activation: args.activation,
        ..LoadOverrides::default()
    };
    let model = checkpoint::load(&args.model, &overrides)?;
    let config = model.config;
    let options = ExportOptions {
        opset: args.opset,
        sequence_lens: args.sequence_lens,
        readout: args.readout.unwrap_or(config.readout),
    };
    let bytes = onnx::export_bytes(&config, &model.params, options)?;
    rnn_wgpu::internals::fsio::write_atomic(&args.onnx, &bytes)?;
    let cell = match config.cell {
        Cell::Rnn => format!("RNN ({})", config.activation),
        cell => cell.to_string().to_uppercase(),
    };
    println!(
        "wrote {} ({} bytes, opset {}): {} x {} layer(s){}, hidden {}; input x [T, B, {}]{}; \
         output y [{}, {}]{}",
        args.onnx.display(),
        bytes.len(),
        options.opset,
        cell,
        config.layers,
        if config.bidirectional {
            ", bidirectional"
        } else {
            ""
        },
        config.hidden_size,
        config.input_size,
        if options.sequence_lens {
            " and sequence_lens [B]"
        } else {
            ""
        },
        match options.readout {
            Readout::Last => "B",
            Readout::All => "T*B",
        },
        config.output_size,
        if config.loss == rnn_wgpu::Loss::CrossEntropy {
            " and probabilities"
        } else {
            ""
        },
    );
    Ok(())
}
