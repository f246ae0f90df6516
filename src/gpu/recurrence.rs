//! How a cell's time steps are dispatched: one fused kernel per step (shaders/fused.wgsl, over
//! tiles of `tiles::StepTile`, or shaders/step_coop.wgsl on the matrix units: `StepKernel`),
//! or all of a segment's steps in one workgroup (shaders/persistent.wgsl).

use super::context::Gpu;
use super::policy::{KernelPolicy, Recurrence, StepKernel};
use super::tiles::{KSplit, StepShape, StepSite, StepTile};
use crate::config::{Cell, ModelConfig};
use crate::error::Error;
use crate::precision::Precision;

/// Floats of W_hh the persistent kernels keep in workgroup memory (`W_CACHE` in
/// persistent.wgsl): 16 KiB, what every WebGPU adapter offers.
pub const PERSISTENT_WEIGHTS: usize = 4096;

impl Recurrence {
    /// Whether W_hh [G*H, H] fits the persistent kernels' workgroup memory.
    pub fn fits(config: &ModelConfig) -> bool {
        Self::fits_cell(config.cell, config.hidden_size)
    }

    /// `fits` for a cell and hidden size H (a tuning cache's entry has no whole config).
    pub fn fits_cell(cell: Cell, hidden: usize) -> bool {
        cell.gates() * hidden * hidden <= PERSISTENT_WEIGHTS
    }

    /// Refuses `Persistent` for a model whose W_hh does not fit.
    pub fn check(self, config: &ModelConfig) -> Result<(), Error> {
        if self == Recurrence::Persistent && !Self::fits(config) {
            return Err(Error::Config(format!(
                "--recurrence persistent keeps W_hh in {PERSISTENT_WEIGHTS} floats of \
                 workgroup memory; this {} cell's W_hh has {} x {} = {} (use steps or auto)",
                config.cell,
                config.gate_rows(),
                config.hidden_size,
                config.gate_rows() * config.hidden_size
            )));
        }
        Ok(())
    }

    /// The concrete choice for `config` at `batch` rows on this adapter: the tuned one where
    /// `rnn-wgpu tune` cached one, else by the number of recurrent FMAs per step. Persistent
    /// is refused (and never chosen) where not even one step fits the adapter's loop limit.
    pub fn resolve(self, gpu: &Gpu, config: &ModelConfig, batch: usize) -> Result<Self, Error> {
        self.check(config)?;
        let runs = persistent_steps_per_dispatch(gpu, config, batch) > 0;
        match self {
            Recurrence::Steps => Ok(self),
            Recurrence::Persistent if runs => Ok(self),
            Recurrence::Persistent => Err(Error::Config(format!(
                "--recurrence persistent: one step of this {} model at batch {batch} is more \
                 loop iterations than '{}' runs in one invocation (it ends loops after {}); use \
                 steps or auto",
                config.cell,
                gpu.info.name,
                gpu.loop_limit().unwrap_or(0)
            ))),
            Recurrence::Auto => {
                // `rnn-wgpu tune` timed both ways for this model on this adapter
                let tuned = gpu
                    .policy()
                    .recurrence((config.cell, config.hidden_size, batch));
                if let Some(choice) = tuned.filter(|_| Self::fits(config) && runs) {
                    return Ok(choice);
                }
                let fmas = batch * config.gate_rows() * config.hidden_size;
                let limit = if gpu.info.device_type == wgpu::DeviceType::Cpu {
                    PERSISTENT_CPU_FMAS
                } else {
                    PERSISTENT_GPU_FMAS
                };
                Ok(if Self::fits(config) && runs && fmas <= limit {
                    Recurrence::Persistent
                } else {
                    Recurrence::Steps
                })
            }
        }
    }
}

impl StepKernel {
    /// The kernel that runs the time steps of `config` at `batch` rows stored in `precision`
    /// under `policy` on this adapter, where they run one dispatch per step: the matrix units
    /// for f16 where they are on, unless the policy forces a step tile or `rnn-wgpu tune` kept
    /// the tiles for this shape; else the tiles.
    pub fn resolve(
        gpu: &Gpu,
        policy: &KernelPolicy,
        config: &ModelConfig,
        batch: usize,
        precision: Precision,
    ) -> StepKernel {
        let tuned = policy.step_kernel((config.cell, config.hidden_size, batch));
        let wanted = policy.step_tile().is_none() && tuned != Some(StepKernel::Tiled);
        if wanted && precision == Precision::F16 && gpu.matrix_units().is_ok() {
            StepKernel::MatrixUnits
        } else {
            StepKernel::Tiled
        }
    }
}

/// The shapes of the kernels that run a model's time steps one dispatch each, forward and
/// backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepShapes {
    /// The forward step's: fused.wgsl stages all gates' rows of W_hh per k.
    pub forward: StepShape,
    /// The backward step's: one row of W_hh per k.
    pub backward: StepShape,
}

impl StepShapes {
    /// The step kernels of `config` at `batch` rows stored in `precision` under `policy` on
    /// this adapter: on the matrix units (step_coop.wgsl) where `StepKernel::resolve` says so,
    /// else fused.wgsl in the policy's forced tile or `StepTile::for_shape`'s. Refused where
    /// the adapter's workgroups are too small for the tile.
    pub fn resolve(
        gpu: &Gpu,
        policy: &KernelPolicy,
        config: &ModelConfig,
        (batch, precision): (usize, Precision),
    ) -> Result<StepShapes, Error> {
        let kernel = StepKernel::resolve(gpu, policy, config, batch, precision);
        // Forward stages all gates' rows of W_hh per k, backward one.
        let shape = |staged| match (kernel, gpu.matrix_units()) {
            (StepKernel::MatrixUnits, Ok(subgroup)) => Ok(StepShape::Coop { subgroup }),
            _ => step_tile(gpu, policy, config, batch, staged).map(StepShape::Tile),
        };
        Ok(StepShapes {
            forward: shape(config.cell.gates())?,
            backward: shape(1)?,
        })
    }

    /// The kernel these shapes belong to (both directions run on the same one).
    pub fn kernel(&self) -> StepKernel {
        match self.forward {
            StepShape::Tile(_) => StepKernel::Tiled,
            StepShape::Coop { .. } => StepKernel::MatrixUnits,
        }
    }
}

/// fused.wgsl's workgroup shape for `config`'s steps at `batch` rows staging `staged` rows of
/// W_hh per k: the policy's forced tile, else the rule's with K split as tuned for the shape,
/// or by the rule (on GPUs only, not on CPU adapters); refused where the adapter's workgroups
/// are too small for it.
fn step_tile(
    gpu: &Gpu,
    policy: &KernelPolicy,
    config: &ModelConfig,
    batch: usize,
    staged: usize,
) -> Result<StepTile, Error> {
    let storage = gpu.limits.max_compute_workgroup_storage_size;
    let split = match policy.step_split((config.cell, config.hidden_size, batch)) {
        Some(layers) => KSplit::Layers(layers),
        None if gpu.info.device_type == wgpu::DeviceType::Cpu => KSplit::Whole,
        None => KSplit::Fill,
    };
    let site = StepSite {
        batch,
        hidden: config.hidden_size,
        staged,
        storage_bytes: storage,
        split,
    };
    let tile = policy
        .step_tile()
        .unwrap_or_else(|| StepTile::for_shape(site));
    match refusal(tile, staged, &gpu.limits) {
        Some(why) => Err(Error::Config(format!(
            "a time step of a {} cell of hidden size {}: {why} ('{}')",
            config.cell, config.hidden_size, gpu.info.name
        ))),
        None => Ok(tile),
    }
}

/// Why an adapter with `limits` cannot run `tile` staging `staged` rows of W_hh per k, if it
/// cannot: its workgroup memory, its invocations, or one of its workgroup's sides too large.
fn refusal(tile: StepTile, staged: usize, limits: &wgpu::Limits) -> Option<String> {
    let (bytes, invocations) = (tile.storage_bytes(staged), tile.invocations());
    let storage = limits.max_compute_workgroup_storage_size;
    let most = limits.max_compute_invocations_per_workgroup;
    let sides = [tile.group_units, tile.group_rows, tile.k_split];
    let longest = [
        limits.max_compute_workgroup_size_x,
        limits.max_compute_workgroup_size_y,
        limits.max_compute_workgroup_size_z,
    ];
    let too_long = sides.iter().zip(longest).any(|(side, most)| *side > most);
    (bytes > storage as u64 || invocations > most || too_long).then(|| {
        format!(
            "the step tile {tile} stages {bytes} bytes of workgroup memory in {invocations} \
             invocations, {} x {} x {}; the adapter allows {storage} bytes and {most} \
             invocations, at most {} x {} x {}",
            sides[0], sides[1], sides[2], longest[0], longest[1], longest[2]
        )
    })
}

/// How many steps one dispatch of the persistent kernels may run for `config` at `batch` rows:
/// all of a segment's (`usize::MAX`) where the adapter does not end long loops; on llvmpipe
/// (`Gpu::loop_limit`) as many as keep an invocation's loop iterations under half the limit,
/// and 0 where not even one step does.
pub(crate) fn persistent_steps_per_dispatch(
    gpu: &Gpu,
    config: &ModelConfig,
    batch: usize,
) -> usize {
    let Some(limit) = gpu.loop_limit() else {
        return usize::MAX;
    };
    let (g, h, b) = (
        config.cell.gates() as u64,
        config.hidden_size as u64,
        batch as u64,
    );
    // An invocation's share of n items strided over the workgroup's 256, plus the last test.
    let share = |n: u64| n.div_ceil(256) + 1;
    // Per step, forward: the recurrent product's B*G*H rows of H terms, then the cells' B*H
    // units; backward: B*H units of G*H terms, then the cells. 4 iterations a unit cover the
    // cells' own loops (the GRU's is 3). An upper bound: measured, the forward LSTM kernel at
    // B = 64, H = 32 went wrong from 60 steps, where this counts 1,126 a step.
    let forward = 1 + share(b * g * h) * (h + 1) + share(b * h) * 4;
    let backward = 1 + share(b * h) * (g * h + 1) + share(b * h) * 4;
    (limit / 2 / forward.max(backward)) as usize
}

/// Recurrent FMAs per step (B*G*H*H) up to which one workgroup beat two dispatches per step on
/// llvmpipe, measured on two host CPUs (docs/benchmarks/2026-11-27.md, "The persistent
/// recurrence on lavapipe" and "What the CPU-engine and K-chunk changes did"): there the
/// persistent workgroup runs on one of the threads while a dispatch costs a fixed 0.05-0.09 ms.
/// On the slower host every case up to 4096 won (0.34-0.70 of the per-step time) and at 8192
/// two of three did (0.49, 0.80; LSTM B = 8, H = 16 lost, 1.2); on the AMD EPYC Zen 5 every
/// case up to 12,288 won (0.21-0.82) and at 16,384 two of three did. 8192 is where both mostly
/// win.
const PERSISTENT_CPU_FMAS: usize = 1 << 13;

/// The same for GPUs, measured on an NVIDIA H200 through Vulkan at 69aa2f9 (BENCHMARKS.md, "NVIDIA
/// H200 through Vulkan"): the persistent workgroup won at 4096 and 32,768 FMAs per step (0.44
/// and 0.52 of the per-step time), tied at 65,536 (LSTM B = 64, H = 16, T = 1000: 1.00) and
/// lost from 196,608 on (2.07-9.5x slower), where one multiprocessor does what the per-step
/// GEMM spreads over many.
const PERSISTENT_GPU_FMAS: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// WebGPU's downlevel limits (16,352 bytes of workgroup memory, 256 invocations, at most
    /// 64 along z) refuse a tile past any of them and name what it needs and what they allow.
    #[test]
    fn a_step_tile_past_the_adapters_limits_is_refused_with_both_sides() {
        let limits = wgpu::Limits::downlevel_defaults();
        let tile = |text: &str| text.parse::<StepTile>().unwrap();
        assert_eq!(refusal(tile("8x8x8"), 4, &limits), None);
        let deep = refusal(tile("1x1x1x128"), 4, &limits).expect("z past 64");
        assert!(
            deep.contains("1 x 1 x 128") && deep.contains("at most 256 x 256 x 64"),
            "{deep}"
        );
        let large = refusal(tile("8x8x16x4"), 4, &limits).expect("45,056 bytes");
        assert!(
            large.contains("45056 bytes") && large.contains("16352 bytes"),
            "{large}"
        );
        // NVIDIA's 48 KiB
        let nvidia = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..wgpu::Limits::default()
        };
        assert_eq!(refusal(tile("8x8x16x4"), 4, &nvidia), None);
    }
}
