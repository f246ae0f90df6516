//! `rnn-wgpu sample`: text from a model trained with `--task text`.

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::internals::sample::Sampler;
use rnn_wgpu::tasks::Vocabulary;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// A checkpoint saved by `train --task text` (its metadata holds the vocabulary).
    #[arg(long)]
    pub model: PathBuf,
    /// Bytes to draw.
    #[arg(long, default_value_t = 500)]
    pub length: usize,
    /// Text fed in first (every byte must be in the model's vocabulary).
    #[arg(long, default_value = "The ")]
    pub prime: String,
    /// Below 1 sharper and more repetitive, above 1 more random.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let model = checkpoint::load(&args.model, &LoadOverrides::default())?;
    let Some(symbols) = model.metadata.get("vocabulary") else {
        bail!(
            "{}: no vocabulary in the metadata; sample needs a model trained with --task text",
            args.model.display()
        );
    };
    let bytes = symbols
        .split(',')
        .map(|s| s.trim().parse::<u8>())
        .collect::<Result<Vec<u8>, _>>()
        .with_context(|| {
            format!(
                "{}: metadata vocabulary is not a list of bytes",
                args.model.display()
            )
        })?;
    let vocabulary = Vocabulary::from_symbols(&bytes)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sampler = Sampler::primed(
        &model.config,
        &model.params,
        &vocabulary,
        args.prime.as_bytes(),
        args.temperature,
        &mut rng,
    )?;
    // Each byte as it is drawn: a long sample shows as it grows and is never held whole. A
    // reader that has had enough (`| head`) ends the sample quietly, as it would `cat`.
    let mut out = std::io::stdout().lock();
    let mut emit = |bytes: &[u8]| match out.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    };
    if !emit(args.prime.as_bytes())? {
        return Ok(());
    }
    for byte in sampler.take(args.length) {
        if !emit(&[byte?])? {
            return Ok(());
        }
    }
    emit(b"\n")?;
    Ok(())
}
