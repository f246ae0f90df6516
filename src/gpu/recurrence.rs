//! How a cell's time steps are dispatched: one fused kernel per step (shaders/fused.wgsl, over
//! tiles of `tiles::StepTile`, or shaders/step_coop.wgsl on the matrix units: `StepKernel`),
//! or all of a segment's steps in one dispatch, a workgroup per slice of the batch
//! (shaders/persistent.wgsl).

use super::context::Gpu;
use super::policy::{KernelPolicy, Recurrence, RecurrenceShape, StepKernel};
use super::tiles::{CoopShape, CoopStep, KSplit, StepShape, StepSite, StepTile};
use crate::config::{Cell, ModelConfig};
use crate::error::Error;
use crate::precision::Precision;

/// Floats of W_hh the persistent kernels keep in workgroup memory (`W_CACHE` in
/// persistent.wgsl): 16 KiB, what every WebGPU adapter offers. A larger W_hh is read from the
/// weight buffer at every step.
pub const PERSISTENT_WEIGHTS: usize = 4096;

impl Recurrence {
    /// Whether the persistent kernels keep `config`'s W_hh [G*H, H] in workgroup memory.
    pub fn cached(config: &ModelConfig) -> bool {
        Self::cached_cell(config.cell, config.hidden_size)
    }

    /// `cached` for a cell and hidden size H (a tuning cache's entry has no whole config).
    pub fn cached_cell(cell: Cell, hidden: usize) -> bool {
        cell.gates() * hidden * hidden <= PERSISTENT_WEIGHTS
    }

    /// The concrete choice for `config` at `batch` rows on this adapter: the tuned one where
    /// `rnn-wgpu tune` cached one, else the rule: persistent only where W_hh is `cached`, on
    /// CPU adapters by the number of recurrent FMAs per step, on GPUs by the number of
    /// workgroups the persistent kernels' slices of the batch take. Persistent is refused (and
    /// never chosen) where not even one step fits the adapter's loop limit (on llvmpipe, only
    /// H in the hundreds at least, where W_hh is read from memory).
    pub fn resolve(
        self,
        gpu: &Gpu,
        config: &ModelConfig,
        (batch, precision): (usize, Precision),
    ) -> Result<Self, Error> {
        let runs = persistent_steps_per_dispatch(gpu, config, batch) > 0;
        match self {
            Recurrence::Steps => Ok(self),
            Recurrence::Persistent if runs => Ok(self),
            Recurrence::Persistent => Err(Error::Config(format!(
                "--recurrence persistent: one step of this {} model of hidden size {} at \
                 batch {batch} is more loop iterations than '{}' runs in one invocation (it \
                 ends loops after {}); use steps or auto",
                config.cell,
                config.hidden_size,
                gpu.info.name,
                gpu.loop_limit().unwrap_or(0)
            ))),
            Recurrence::Auto => {
                // `rnn-wgpu tune` timed both ways for this model on this adapter
                let shape = RecurrenceShape::of(config, (batch, precision));
                let tuned = gpu.policy().recurrence(shape);
                if let Some(choice) = tuned.filter(|_| runs) {
                    return Ok(choice);
                }
                let rule = persistent_rule(gpu.info.device_type, config, batch);
                Ok(if Self::cached(config) && runs && rule {
                    Recurrence::Persistent
                } else {
                    Recurrence::Steps
                })
            }
        }
    }
}

/// `Recurrence::Auto`'s rule for a model whose W_hh the persistent kernels cache, on an adapter of
/// `device_type`: on CPU adapters persistent up to `PERSISTENT_CPU_FMAS` recurrent FMAs per
/// step, on GPUs up to `PERSISTENT_GPU_SLICES` slices of the batch.
fn persistent_rule(device_type: wgpu::DeviceType, config: &ModelConfig, batch: usize) -> bool {
    if device_type == wgpu::DeviceType::Cpu {
        batch * config.gate_rows() * config.hidden_size <= PERSISTENT_CPU_FMAS
    } else {
        PersistentSlices::of(config, batch).count <= PERSISTENT_GPU_SLICES
    }
}

/// How the persistent kernels split a batch: `count` workgroups of `rows` rows (the last one
/// the rest), each running all of a segment's steps for its own rows. Rows never meet in a
/// recurrence, so the slices need no barrier between them and spread over the GPU's
/// multiprocessors, where one workgroup alone leaves all but one idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistentSlices {
    /// Batch rows per workgroup: as many as keep its recurrent FMAs per step (rows * G*H*H)
    /// within `PERSISTENT_SLICE_FMAS`, at least 1, at most the batch.
    pub rows: usize,
    /// Workgroups: the batch over `rows`.
    pub count: usize,
}

impl PersistentSlices {
    /// The slices of `config`'s steps at `batch` rows (the same on every adapter).
    pub fn of(config: &ModelConfig, batch: usize) -> Self {
        let per_row = config.gate_rows() * config.hidden_size;
        let rows = (PERSISTENT_SLICE_FMAS / per_row.max(1)).clamp(1, batch.max(1));
        PersistentSlices {
            rows,
            count: batch.div_ceil(rows).max(1),
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
        let tuned = policy.step_kernel(RecurrenceShape::of(config, (batch, precision)));
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
        let rows = (batch, precision);
        if let (StepKernel::MatrixUnits, Ok(coop)) = (kernel, gpu.matrix_units()) {
            // one shape both ways: step_coop.wgsl's workgroup memory is sized for 4 gates
            let step = StepShape::Coop(coop_step(gpu, policy, config, rows, coop)?);
            return Ok(StepShapes {
                forward: step,
                backward: step,
            });
        }
        // Forward stages all gates' rows of W_hh per k, backward one.
        let tile = |staged| step_tile(gpu, policy, config, rows, staged).map(StepShape::Tile);
        Ok(StepShapes {
            forward: tile(config.cell.gates())?,
            backward: tile(1)?,
        })
    }

    /// The kernel these shapes belong to (both directions run on the same one).
    pub fn kernel(&self) -> StepKernel {
        match self.forward {
            StepShape::Tile(_) => StepKernel::Tiled,
            StepShape::Coop(_) => StepKernel::MatrixUnits,
        }
    }
}

/// Where `config`'s steps at `batch` rows staging `staged` rows of W_hh per k run, K split as
/// tuned for the shape, or by the rule (on GPUs only, not on CPU adapters).
fn step_site(
    gpu: &Gpu,
    policy: &KernelPolicy,
    config: &ModelConfig,
    (batch, precision): (usize, Precision),
    staged: usize,
) -> StepSite {
    let split = match policy.step_split(RecurrenceShape::of(config, (batch, precision))) {
        Some(layers) => KSplit::Layers(layers),
        None if gpu.info.device_type == wgpu::DeviceType::Cpu => KSplit::Whole,
        None => KSplit::Fill,
    };
    StepSite {
        batch,
        hidden: config.hidden_size,
        staged,
        storage_bytes: gpu.limits.max_compute_workgroup_storage_size,
        split,
    }
}

/// step_coop.wgsl's shape for `config`'s steps at `rows` on the matrix units' `coop`: K in
/// parts as `step_site` says; refused where the adapter's workgroups are too small for it.
fn coop_step(
    gpu: &Gpu,
    policy: &KernelPolicy,
    config: &ModelConfig,
    rows: (usize, Precision),
    coop: CoopShape,
) -> Result<CoopStep, Error> {
    let step = CoopStep::for_shape(coop, step_site(gpu, policy, config, rows, 4));
    match coop_step_refusal(gpu, step) {
        Some(why) => Err(step_refused(gpu, config, why)),
        None => Ok(step),
    }
}

/// The error of a time step the adapter cannot run, naming the model and the adapter.
fn step_refused(gpu: &Gpu, config: &ModelConfig, why: String) -> Error {
    Error::Config(format!(
        "a time step of a {} cell of hidden size {}: {why} ('{}')",
        config.cell, config.hidden_size, gpu.info.name
    ))
}

/// Why this adapter cannot run step_coop.wgsl in `step`'s shape, if it cannot: its workgroups
/// too small for it, or parts that do not divide a stage's tiles (`CoopStep::refusal`).
pub(crate) fn coop_step_refusal(gpu: &Gpu, step: CoopStep) -> Option<String> {
    let limits = &gpu.limits;
    let most =
        (limits.max_compute_invocations_per_workgroup).min(limits.max_compute_workgroup_size_x);
    step.refusal(limits.max_compute_workgroup_storage_size, most)
}

/// fused.wgsl's workgroup shape for `config`'s steps at `rows` staging `staged` rows of W_hh
/// per k: the policy's forced tile, else the rule's at `step_site`; refused where the
/// adapter's workgroups are too small for it.
fn step_tile(
    gpu: &Gpu,
    policy: &KernelPolicy,
    config: &ModelConfig,
    rows: (usize, Precision),
    staged: usize,
) -> Result<StepTile, Error> {
    let site = step_site(gpu, policy, config, rows, staged);
    let tile = policy
        .step_tile()
        .unwrap_or_else(|| StepTile::for_shape(site));
    match refusal(tile, staged, &gpu.limits) {
        Some(why) => Err(step_refused(gpu, config, why)),
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
/// at least one for every model whose W_hh they cache, since an invocation loops over a
/// slice's rows only (unit-tested), and none for the largest H.
pub(crate) fn persistent_steps_per_dispatch(
    gpu: &Gpu,
    config: &ModelConfig,
    batch: usize,
) -> usize {
    steps_per_dispatch(gpu.loop_limit(), config, batch)
}

/// Loop iterations of one invocation in persistent.wgsl's forward product of one step over `b`
/// rows of G*H outputs of H terms (`share(n)`: an invocation's share of n items, loop test
/// included): one output at a time where W_hh is cached or too wide to stage, else
/// (forward_product_staged) per pass of 256 * OUTS outputs, per chunk of kc = W_CACHE / (G*H)
/// values of k, the staging and OUTS sums of kc terms.
fn product_iterations(g: u64, h: u64, b: u64, share: impl Fn(u64) -> u64) -> u64 {
    const OUTS: u64 = 4; // OUTS in persistent.wgsl: one vec4
    let (cache, gh) = (PERSISTENT_WEIGHTS as u64, g * h);
    if gh * h <= cache || gh > cache {
        return share(b * gh) * (h + 1);
    }
    let kc = cache / gh;
    let per_chunk = 1 + share(gh * kc) + OUTS * (kc + 1);
    let passes = (b * gh).div_ceil(256 * OUTS);
    passes * (1 + h.div_ceil(kc) * per_chunk + OUTS) + 1
}

/// `persistent_steps_per_dispatch` where loops end after `limit` iterations (None: never).
fn steps_per_dispatch(limit: Option<u64>, config: &ModelConfig, batch: usize) -> usize {
    let Some(limit) = limit else {
        return usize::MAX;
    };
    // An invocation loops over its workgroup's slice of the batch only.
    let (g, h, b) = (
        config.cell.gates() as u64,
        config.hidden_size as u64,
        PersistentSlices::of(config, batch).rows as u64,
    );
    // An invocation's share of n items strided over the workgroup's 256, plus the last test.
    let share = |n: u64| n.div_ceil(256) + 1;
    // Per step, forward: the recurrent product's B*G*H rows of H terms, then the cells' B*H
    // units; backward: B*H units of G*H terms, then the cells. 4 iterations a unit cover the
    // cells' own loops (the GRU's is 3). An upper bound: measured, the forward LSTM kernel at
    // B = 64, H = 32 went wrong from 60 steps, where this counts 1,126 a step.
    let cells = share(b * h) * 4;
    let forward = 1 + product_iterations(g, h, b, share) + cells;
    let backward = 1 + share(b * h) * (g * h + 1) + cells;
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

/// A persistent workgroup's recurrent FMAs per step (its rows * G*H*H) at most, on every
/// adapter: the largest at which one workgroup running a whole batch clearly beat a dispatch
/// per step on an NVIDIA H200 through Vulkan at 69aa2f9 (BENCHMARKS.md, "NVIDIA H200 through
/// Vulkan"): it won at 4096 and 32,768 FMAs per step (0.44 and 0.52 of the per-step time),
/// tied at 65,536 (LSTM B = 64, H = 16, T = 1000: 1.00) and lost from 196,608 on (2.07-9.5x
/// slower), where one multiprocessor did what the per-step kernels spread over many. Past it
/// the batch is sliced over more workgroups (`PersistentSlices`), each as fast as that.
const PERSISTENT_SLICE_FMAS: usize = 1 << 15;

/// Slices (workgroups) up to which `Recurrence::Auto` runs a model's steps persistently on
/// GPUs. Not measured: the H200 ran one workgroup only (`PERSISTENT_SLICE_FMAS`). A guess from
/// the shape of the hardware: slices run side by side on separate multiprocessors (compute
/// units, cores), of which discrete GPUs have 16 or more, or share one, where a persistent
/// workgroup of 256 invocations and 16 KiB, bound by latency rather than by arithmetic, leaves
/// room for another (an Apple M1's 8 cores would hold two each). `rnn-wgpu tune` times both
/// ways on an adapter and caches the faster.
const PERSISTENT_GPU_SLICES: usize = 16;

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

    fn model(cell: Cell, hidden: usize) -> ModelConfig {
        ModelConfig {
            cell,
            activation: crate::config::Activation::Tanh,
            input_size: 2,
            hidden_size: hidden,
            output_size: 1,
            readout: crate::config::Readout::Last,
            loss: crate::config::Loss::Mse,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        }
    }

    /// A slice's rows keep its FMAs per step within 32,768 (a single row past it alone), the
    /// slices cover the batch with only the last one short, and a batch within one slice is
    /// one workgroup.
    #[test]
    fn persistent_slices_cover_the_batch_within_the_fmas_of_one_workgroup() {
        // (cell, H, B, rows, count): G*H*H = 4096 (LSTM 32, RNN 64), 3888 (GRU 36), 1156
        // (LSTM 17), 1 (RNN 1)
        let cases = [
            (Cell::Lstm, 32, 1, 1, 1),
            (Cell::Lstm, 32, 8, 8, 1),
            (Cell::Lstm, 32, 9, 8, 2),
            (Cell::Rnn, 64, 257, 8, 33),
            (Cell::Gru, 36, 17, 8, 3),
            (Cell::Lstm, 17, 65, 28, 3),
            (Cell::Rnn, 1, 65, 65, 1),
            (Cell::Rnn, 1, 40_000, 32_768, 2),
        ];
        for (cell, h, b, rows, count) in cases {
            let config = model(cell, h);
            let slices = PersistentSlices::of(&config, b);
            assert_eq!(
                slices,
                PersistentSlices { rows, count },
                "{cell:?} H={h} B={b}"
            );
            let per_row = config.gate_rows() * h;
            assert!(slices.rows * per_row <= PERSISTENT_SLICE_FMAS);
            assert!((count - 1) * rows < b && b <= count * rows);
        }
    }

    /// On CPU adapters the rule stays at 8192 FMAs per step (one workgroup); on GPUs it takes
    /// every model of up to 16 slices, which includes all it took when the whole batch ran
    /// in one workgroup up to 65,536 FMAs.
    #[test]
    fn the_persistent_rule_counts_fmas_on_cpu_adapters_and_slices_on_gpus() {
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        let lstm = model(Cell::Lstm, 32);
        // 4096 FMAs a row: 2 rows on a CPU adapter; 8 rows a slice, 16 slices on a GPU
        assert!(persistent_rule(Cpu, &lstm, 2));
        assert!(!persistent_rule(Cpu, &lstm, 3));
        for gpu in [DiscreteGpu, IntegratedGpu] {
            assert!(persistent_rule(gpu, &lstm, 128));
            assert!(!persistent_rule(gpu, &lstm, 129));
        }
        for (cell, h) in [
            (Cell::Lstm, 16),
            (Cell::Gru, 36),
            (Cell::Rnn, 64),
            (Cell::Rnn, 3),
        ] {
            let config = model(cell, h);
            let batch = (1 << 16) / (config.gate_rows() * h);
            assert!(
                persistent_rule(DiscreteGpu, &config, batch),
                "{cell:?} H={h}"
            );
        }
    }

    /// A persistent step loops over one slice's rows, so at least one step fits llvmpipe's
    /// loop limit for every model whose W_hh the kernels cache, at any batch; past that, H in
    /// the thousands does not fit even at one row.
    #[test]
    fn a_step_of_every_model_that_fits_the_persistent_kernels_fits_the_loop_limit() {
        let limit = Some(crate::internals::gpu::LLVMPIPE_LOOP_LIMIT);
        for cell in [Cell::Rnn, Cell::Lstm, Cell::Gru] {
            let widest = (1..=64).filter(|&h| Recurrence::cached_cell(cell, h)).max();
            for h in 1..=widest.unwrap() {
                for batch in [1, 3, 17, 65, 257, 4096, 1 << 20] {
                    let steps = steps_per_dispatch(limit, &model(cell, h), batch);
                    assert!(steps >= 1, "{cell:?} H={h} B={batch}: {steps} steps");
                }
            }
        }
        // W_hh staged in chunks (H = 300: two passes), read straight (G*H past 4096)
        assert!(steps_per_dispatch(limit, &model(Cell::Lstm, 300), 5) >= 1);
        assert!(steps_per_dispatch(limit, &model(Cell::Lstm, 512), 256) >= 1);
        assert_eq!(steps_per_dispatch(limit, &model(Cell::Lstm, 2000), 1), 0);
        let unlimited = steps_per_dispatch(None, &model(Cell::Lstm, 2000), 9);
        assert_eq!(unlimited, usize::MAX);
    }
}
