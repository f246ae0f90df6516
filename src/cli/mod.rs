pub mod bench;
pub mod devices;
pub mod distributed;
pub mod export;
pub mod grad;
pub mod parity;
pub mod predict;
pub mod sample;
pub mod train;
pub mod tune;
pub mod vanishing;

use anyhow::Context;
use rnn_wgpu::internals::gpu::{tuning, StepTile};
use rnn_wgpu::Gpu;

/// The engine `device` names: `auto` resolved (`rnn_wgpu::internals::auto_device::choose` on
/// the adapters wgpu finds and `WGPU_ADAPTER_NAME`), printed as the command's first line so a
/// user sees where the work runs and why.
pub fn resolve_device(device: train::Device) -> train::Device {
    resolve_device_saying(device, Say::Stdout)
}

/// Where a command says what it chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Say {
    Stdout,
    /// Where stdout is for machines (`bench --json`).
    Stderr,
    /// A data-parallel rank other than 0.
    Nothing,
}

/// `resolve_device`, saying it where `say` says.
pub fn resolve_device_saying(device: train::Device, say: Say) -> train::Device {
    if device != train::Device::Auto {
        return device;
    }
    let named = std::env::var("WGPU_ADAPTER_NAME").ok();
    let chosen = rnn_wgpu::internals::auto_device::choose(
        &rnn_wgpu::internals::gpu::adapter_kinds(),
        named.as_deref(),
    );
    match say {
        Say::Stdout => println!("{chosen}"),
        Say::Stderr => eprintln!("{chosen}"),
        Say::Nothing => {}
    }
    match chosen.engine {
        rnn_wgpu::internals::auto_device::Engine::Gpu => train::Device::Gpu,
        rnn_wgpu::internals::auto_device::Engine::Cpu => train::Device::Cpu,
    }
}

/// The GPU context of a command, with the kernels `rnn-wgpu tune` cached for this adapter. A
/// cache that cannot be read is reported and left out: the untuned rules are as correct.
pub fn open_gpu() -> anyhow::Result<Gpu> {
    open_gpu_for(None)
}

/// `open_gpu` for rank `local_rank` of the data-parallel ranks on this machine
/// (`Gpu::for_local_rank`).
pub fn open_gpu_for(local_rank: Option<usize>) -> anyhow::Result<Gpu> {
    let gpu = match local_rank {
        Some(k) => Gpu::for_local_rank(k)?,
        None => Gpu::new()?,
    };
    // Matrix units are the user's explicit choice (an experimental wgpu feature): say
    // whether the choice took effect.
    if std::env::var_os(rnn_wgpu::internals::gpu::MATRIX_UNITS_VAR).is_some() {
        match gpu.matrix_units() {
            Ok(subgroup) => eprintln!(
                "matrix units: on (f16 products on 16x16x16 cooperative matrices, subgroups of \
                 {subgroup}; wgpu's experimental feature)"
            ),
            Err(why) => eprintln!("matrix units: off: {why}"),
        }
    }
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
