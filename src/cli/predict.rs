//! `rnn-wgpu predict`: the model's outputs on inputs from a .npy file (the CPU engine's forward
//! pass), e.g. to compare with an exported ONNX model in another runtime.

use anyhow::{Context, Result};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::internals::plan::{check_host_pass, HostPass};
use rnn_wgpu::tasks::npy;
use rnn_wgpu::{cpu, Batch, Loss, Readout, Targets};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// The model (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs x [T, B, I] (time-major), float32 or float64.
    #[arg(long)]
    pub input: PathBuf,
    /// Each sequence's length, integers [B] in 1..=T (the steps after it are padding).
    #[arg(long)]
    pub lengths: Option<PathBuf>,
    /// The head on the last step or on every step (default: the model's own).
    #[arg(long)]
    pub readout: Option<Readout>,
    /// Where to write the outputs y [rows, O] (float32 .npy; rows B, or T*B time-major).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: PredictArgs) -> Result<()> {
    rnn_wgpu::internals::fsio::check_writable(&args.out).context("--out")?;
    let model = checkpoint::load(&args.model, &LoadOverrides::default())?;
    let mut config = model.config;
    config.readout = args.readout.unwrap_or(config.readout);
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let input = args.input.display().to_string();
    let x = npy::inputs_from_npy_bytes(&config, &input, &read(&args.input)?)?;
    let (t, b, _) = x.dim();
    let lengths = match &args.lengths {
        None => None,
        Some(path) => {
            let name = format!("lengths '{}'", path.display());
            let samples = format!("the inputs '{input}'");
            Some(npy::lengths_from_npy_bytes(
                &name,
                &samples,
                &read(path)?,
                b,
                t,
            )?)
        }
    };
    const FIX: &str = "split --input into smaller batches";
    check_host_pass(&config, (t, b), HostPass::Forward, 4, FIX)?;
    let rows = config.scored_rows(t, b);
    let targets = match config.loss {
        Loss::Mse => Targets::Values(Array2::zeros((rows, config.output_size))),
        Loss::CrossEntropy => Targets::Classes(vec![0; rows]),
    };
    let batch = Batch {
        x,
        h0: None,
        c0: None,
        targets,
        lengths,
    };
    let outputs = cpu::forward(&config, &model.params, &batch)?.outputs;
    let mut bytes = Vec::new();
    outputs.write_npy(&mut bytes)?;
    rnn_wgpu::internals::fsio::write_atomic(&args.out, &bytes)?;
    println!(
        "wrote {} [{rows}, {}]",
        args.out.display(),
        config.output_size
    );
    Ok(())
}
