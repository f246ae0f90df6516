pub mod bench;
pub mod devices;
pub mod grad;
pub mod parity;
pub mod sample;
pub mod train;
pub mod tune;
pub mod vanishing;

use anyhow::Context;
use rnn_wgpu::gpu::{tuning, Gpu, StepTile};

/// The GPU context of a command, with the kernels `rnn-wgpu tune` cached for this adapter. A
/// cache that cannot be read is reported and left out: the untuned rules are as correct.
pub fn open_gpu() -> anyhow::Result<Gpu> {
    let gpu = Gpu::new()?;
    // A measuring knob (scripts/device_check.sh): one workgroup shape for the step kernels.
    if let Ok(text) = std::env::var("RNN_WGPU_STEP_TILE") {
        let tile: StepTile = text.parse().context("RNN_WGPU_STEP_TILE")?;
        eprintln!("step tile: {tile} for every model (RNN_WGPU_STEP_TILE)");
        gpu.force_step_tile(Some(tile));
    }
    match tuning::load_cache(&gpu) {
        Ok(Some((path, count))) => eprintln!(
            "tuned: {count} choices from {} (RNN_WGPU_TUNING=off runs the rules)",
            path.display()
        ),
        Ok(None) => {}
        Err(e) => eprintln!("warning: {e}; running untuned"),
    }
    Ok(gpu)
}
