//! The engine a command runs on: `--device` with `auto` resolved, the GPU context opened, and
//! the GPU engine's options. Shared by the commands, apart from them and from cli/mod.rs, so
//! that `train` and `bench`, which both read it, do not import each other.

use anyhow::Context;
use rnn_wgpu::internals::gpu::{tuning, Gpu, Recurrence, StepTile};
use rnn_wgpu::internals::plan::{parse_bytes, PlanOptions, Recompute};
use rnn_wgpu::Precision;

/// `--device`: `auto` is the GPU engine where wgpu offers a real GPU, else the CPU engine
/// (`resolve_device`); `gpu` runs on whatever adapter wgpu offers, llvmpipe included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Auto,
    Gpu,
    Cpu,
}

/// The engine `device` names: `auto` resolved (`rnn_wgpu::internals::auto_device::choose` on the adapters
/// wgpu finds and `WGPU_ADAPTER_NAME`), printed as the command's first line so a user sees
/// where the work runs and why.
pub fn resolve_device(device: Device) -> Device {
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
pub fn resolve_device_saying(device: Device, say: Say) -> Device {
    if device != Device::Auto {
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
        rnn_wgpu::internals::auto_device::Engine::Gpu => Device::Gpu,
        rnn_wgpu::internals::auto_device::Engine::Cpu => Device::Cpu,
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
            Ok(coop) if gpu.matrix_units_emulated() => eprintln!(
                "matrix units: emulated (the cooperative-matrix kernels on {} tiles with their \
                 matrix operations in plain WGSL: for checking them, slow)",
                coop.edge
            ),
            Ok(coop) => eprintln!(
                "matrix units: on (f16 products and time steps on cooperative matrices, \
                 {coop}; wgpu's experimental feature)"
            ),
            Err(why) => eprintln!("matrix units: off: {why}"),
        }
    }
    // A measuring knob (scripts/device_check.sh): one workgroup shape for the step kernels.
    if let Ok(text) = std::env::var("RNN_WGPU_STEP_TILE") {
        let tile: StepTile = text.parse().context("RNN_WGPU_STEP_TILE")?;
        eprintln!(
            "step tile: {tile} for every model, the matrix units' step kernels not used \
             (RNN_WGPU_STEP_TILE)"
        );
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

/// GPU engine options, shared by `train` and `bench`: memory planning and how time steps are
/// dispatched.
#[derive(clap::Args, Clone, Debug)]
pub struct GpuArgs {
    /// Activation recomputation: off, auto (only when the --max-memory budget needs it) or K
    /// (keep the state every K steps and recompute each segment during the backward pass).
    #[arg(long, default_value = "auto")]
    pub recompute: Recompute,
    /// GPU memory budget, e.g. 4G or 512M (wgpu cannot tell how much an adapter has).
    #[arg(long, value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
    /// How the GPU dispatches time steps: auto, steps (one dispatch per step: the recurrent
    /// product with the cell in its epilogue) or persistent (a segment's steps in one
    /// workgroup; small models only).
    #[arg(long, default_value = "auto")]
    pub recurrence: Recurrence,
    /// The element type of the activations, gates, their gradients and the weights' working
    /// copy: f32, or f16 (every product and sum still in f32, the weights and optimizer state
    /// in f32, the loss scaled dynamically).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

impl GpuArgs {
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            recompute: self.recompute,
            max_memory: self.max_memory,
            max_binding: None,
            precision: self.precision,
        }
    }
}
