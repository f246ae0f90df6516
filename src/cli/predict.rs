//! `rnn-wgpu predict`: the model's outputs on inputs from a .npy file (the CPU engine's forward
//! pass), e.g. to compare with an exported ONNX model in another runtime.

use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2, Array3};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::{cpu, Batch, Loss, Readout, Targets};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// The model (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs x [T, B, I] (time-major), float32.
    #[arg(long)]
    pub input: PathBuf,
    /// Each sequence's length, int32 or int64 [B] in 1..=T (the steps after it are padding).
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
    rnn_wgpu::fsio::check_writable(&args.out).context("--out")?;
    let model = checkpoint::load(&args.model, &LoadOverrides::default())?;
    let mut config = model.config;
    config.readout = args.readout.unwrap_or(config.readout);
    let open = |path: &PathBuf| {
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let x = Array3::<f32>::read_npy(open(&args.input)?)
        .with_context(|| format!("{}: expected float32 [T, B, I]", args.input.display()))?;
    let (t, b, i) = x.dim();
    if i != config.input_size {
        bail!(
            "{}: {i} inputs per step; the model takes {}",
            args.input.display(),
            config.input_size
        );
    }
    let lengths = match &args.lengths {
        None => None,
        Some(path) => Some(read_lengths(path, b, t)?),
    };
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
    rnn_wgpu::fsio::write_atomic(&args.out, &bytes)?;
    println!(
        "wrote {} [{rows}, {}]",
        args.out.display(),
        config.output_size
    );
    Ok(())
}

fn read_lengths(path: &PathBuf, batch: usize, steps: usize) -> Result<Vec<usize>> {
    let read =
        || std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()));
    let values: Vec<i64> = match Array1::<i64>::read_npy(read()?) {
        Ok(a) => a.to_vec(),
        Err(_) => (Array1::<i32>::read_npy(read()?))
            .with_context(|| format!("{}: expected int32 or int64 [B]", path.display()))?
            .iter()
            .map(|&v| v as i64)
            .collect(),
    };
    if values.len() != batch {
        bail!(
            "{}: {} lengths for a batch of {batch}",
            path.display(),
            values.len()
        );
    }
    match values.iter().position(|&l| l < 1 || l as usize > steps) {
        Some(k) => bail!(
            "{}: length {} at [{k}] is outside 1..={steps}",
            path.display(),
            values[k]
        ),
        None => Ok(values.iter().map(|&l| l as usize).collect()),
    }
}
