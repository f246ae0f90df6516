//! The workgroup shapes of the kernels whose shape is set per pipeline by WGSL `override`
//! constants: the fused step (`StepTile`, shaders/fused.wgsl) and the matrix products
//! (`GemmTile`, shaders/gemm.wgsl). One source per kernel, any number of shapes: the host picks
//! one per problem and adapter, and the pipeline cache compiles each shape once.

use super::kernels::{CoopEdge, Kernel};
use crate::error::Error;
use std::fmt;
use std::str::FromStr;

/// The workgroup shape of fused.wgsl's step kernels, set per pipeline through its `override`
/// constants: `k_split` layers of `group_units` x `group_rows` invocations, each invocation
/// owning `ROWS_PER` batch rows by `UNITS_PER` hidden units (all of their gates) and each layer
/// summing its own `slice` values of every stage of `k_split * slice` values of K.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepTile {
    /// Invocations along hidden units (`GROUP_UNITS`, workgroup x).
    pub group_units: u32,
    /// Invocations along batch rows (`GROUP_ROWS`, workgroup y).
    pub group_rows: u32,
    /// Values of K per layer and stage staged in workgroup memory (`SLICE`).
    pub slice: u32,
    /// Layers of invocations over the same outputs, each summing a slice of every stage of K
    /// (`K_SPLIT`, workgroup z); 1 sums K in one accumulator per output.
    pub k_split: u32,
}

/// Where a step runs, for `StepTile::for_shape`: its size, and what the adapter offers.
#[derive(Clone, Copy, Debug)]
pub struct StepSite {
    /// Batch rows.
    pub batch: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Rows of W_hh staged per unit and k: the cell's gates forward, 1 backward.
    pub staged: usize,
    /// The adapter's workgroup memory in bytes.
    pub storage_bytes: u32,
    /// How K is split over layers of invocations (`StepTile::k_split`).
    pub split: KSplit,
}

/// How `StepTile::for_shape` splits K over layers of invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KSplit {
    /// K whole: the rule on a CPU adapter such as llvmpipe, whose few cores the tiles fill.
    Whole,
    /// The rule on a GPU: 2 or 4 layers while the step's invocations stay few.
    Fill,
    /// Exactly this many layers: `rnn-wgpu tune`'s choice for the model's shape.
    Layers(u32),
}

impl StepTile {
    /// Batch rows per invocation (`ROWS_PER` in fused.wgsl).
    pub const ROWS_PER: usize = 4;
    /// Hidden units per invocation, each with all of its gates (`UNITS_PER` in fused.wgsl).
    pub const UNITS_PER: usize = 4;
    /// Invocations per workgroup: two warps of 32 or one wave of 64.
    const INVOCATIONS: u32 = 64;
    /// The most K staged at a time.
    const STAGE: u32 = 64;
    /// Invocations a step should have at work before splitting K stops paying: a large GPU
    /// keeps ~2,000 invocations resident on each of its ~100 cores (an H100: 132 SMs of up to
    /// 2,048 threads) and hides its latencies from 8 warps or so a core, ~32,000 in all. The
    /// rule's tiles give a step only B*H/16 (8,192 at B = 256, H = 512).
    const FILL: u64 = 32_768;
    /// The most layers: 4 x 64 invocations, WebGPU's default limit of 256 per workgroup.
    pub const MAX_K_SPLIT: u32 = 4;
    /// The least K a layer sums per stage of the forward step (K = H) when K is split.
    pub const MIN_LAYER_K: usize = 16;

    /// The shape for a step at `site`: 32 x 32 tiles (8 x 8 invocations), or for a batch of at
    /// most 8 rows, 8 rows by up to 128 units; narrower along units where `hidden` would leave
    /// more than half of them idle; K split as `site.split` says (`KSplit::Fill`: over 2 or
    /// 4 layers while the step's invocations stay within `FILL` and each layer keeps
    /// `MIN_LAYER_K` of H); stages of 64 values of K, or fewer where they would not fit the
    /// workgroup memory (the LSTM forward's 32 x 32 tile at 64 takes 41 KiB).
    pub fn for_shape(site: StepSite) -> StepTile {
        let group_rows = if site.batch <= 2 * Self::ROWS_PER {
            2
        } else {
            8
        };
        let mut group_units = Self::INVOCATIONS / group_rows;
        while group_units > 8 && (group_units as usize / 2) * Self::UNITS_PER >= site.hidden {
            group_units /= 2;
        }
        let whole = StepTile {
            group_units,
            group_rows,
            slice: Self::STAGE,
            k_split: 1,
        };
        let layers = whole.layers_for(site);
        let mut tile = StepTile {
            slice: (Self::STAGE / layers).max(1),
            k_split: layers,
            ..whole
        };
        while tile.slice > 1 && tile.storage_bytes(site.staged) > site.storage_bytes as u64 {
            tile.slice /= 2;
        }
        tile
    }

    /// The layers this tile (K whole) splits K over at `site`: `KSplit::Fill` doubles them
    /// while the step's invocations stay within `FILL`, up to `MAX_K_SPLIT`, each layer
    /// keeping `MIN_LAYER_K` of H.
    fn layers_for(self, site: StepSite) -> u32 {
        match site.split {
            KSplit::Whole => 1,
            KSplit::Layers(layers) => layers.max(1),
            KSplit::Fill => {
                let invocations =
                    self.workgroups(site.batch, site.hidden) * self.invocations() as u64;
                let mut layers = 1;
                while layers < Self::MAX_K_SPLIT
                    && invocations * 2 * layers as u64 <= Self::FILL
                    && site.hidden >= 2 * layers as usize * Self::MIN_LAYER_K
                {
                    layers *= 2;
                }
                layers
            }
        }
    }

    /// Workgroup memory a step kernel uses, staging `gates` rows of W_hh per unit: per value of
    /// a stage of K, a vec4 per 4 rows (`stage_rows` in fused.wgsl) and per 4 units and staged
    /// gate (forward `stage_units`, all the cell's gates; backward `stage_column`, 1); and a
    /// vec4 per invocation (`layer_parts`, which the kernel names whatever `k_split`). An entry
    /// point's footprint is the workgroup variables it uses.
    pub fn storage_bytes(self, gates: usize) -> u64 {
        let vec4s = self.group_rows as u64 + gates as u64 * self.group_units as u64;
        16 * self.stage() as u64 * vec4s + 16 * self.invocations() as u64
    }

    /// Values of K staged at a time: `k_split` layers' slices.
    pub fn stage(self) -> u32 {
        self.k_split * self.slice
    }

    /// Invocations per workgroup.
    pub fn invocations(self) -> u32 {
        self.group_units * self.group_rows * self.k_split
    }

    /// Batch rows one workgroup owns.
    pub fn rows(self) -> usize {
        self.group_rows as usize * Self::ROWS_PER
    }

    /// Hidden units one workgroup owns.
    pub fn units(self) -> usize {
        self.group_units as usize * Self::UNITS_PER
    }

    /// Workgroups of one step over `batch` rows of `hidden` units.
    pub fn workgroups(self, batch: usize, hidden: usize) -> u64 {
        (batch.div_ceil(self.rows()) * hidden.div_ceil(self.units())) as u64
    }

    /// The values of fused.wgsl's `override` constants.
    pub fn constants(self) -> [(&'static str, f64); 4] {
        [
            ("GROUP_UNITS", self.group_units as f64),
            ("GROUP_ROWS", self.group_rows as f64),
            ("SLICE", self.slice as f64),
            ("K_SPLIT", self.k_split as f64),
        ]
    }

    /// Loop iterations of one invocation of a step kernel (forward or backward, the larger)
    /// for a cell of `gates` gates and `hidden` units, for `Gpu::check_loops`, an upper bound:
    /// per stage of K, its share of the staging loops and its layer's `slice` k, each counted
    /// as if its `gates` products (backward: 1) were loop turns; then, K split, the layers'
    /// sum (per gate, 4 columns of `k_split` parts); then the epilogue's 4 x 4 outputs, their
    /// gates counted the same way, and the cell's own loops (at most 4).
    pub fn iterations(self, gates: usize, hidden: usize) -> u64 {
        let (g, h, slice) = (gates as u64, hidden as u64, self.slice as u64);
        let stage = self.stage() as u64;
        let share = |n: u64| n.div_ceil(self.invocations() as u64) + 1;
        let rows = share(self.rows() as u64 * stage);
        let units = self.units() as u64 * stage;
        let forward = h.div_ceil(stage) * (rows + share(g * units) + slice * (g + 2));
        let backward = (g * h).div_ceil(stage) * (rows + share(units) + slice + 1);
        let layers_sum = g * 4 * (self.k_split as u64 + 1);
        let epilogue = 4 * (1 + 4 * (g + 1 + 4));
        forward.max(backward) + layers_sum + epilogue + 2
    }
}

impl FromStr for StepTile {
    type Err = Error;

    /// `UNITSxROWSxSLICE[xSPLIT]`, e.g. `8x8x64` or `8x8x16x4`: invocations along hidden units
    /// and along batch rows, K per layer and stage, and layers splitting K (1 if left out).
    fn from_str(text: &str) -> Result<Self, Error> {
        let parts: Vec<u32> = text
            .split('x')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let tile = match parts[..] {
            [group_units, group_rows, slice] => Some((group_units, group_rows, slice, 1)),
            [group_units, group_rows, slice, k_split] => {
                Some((group_units, group_rows, slice, k_split))
            }
            _ => None,
        };
        match tile.map(|(group_units, group_rows, slice, k_split)| StepTile {
            group_units,
            group_rows,
            slice,
            k_split,
        }) {
            Some(tile) if parts.iter().all(|&p| p > 0) && tile.invocations() <= 256 => Ok(tile),
            _ => Err(Error::Config(format!(
                "step tile '{text}': expected UNITSxROWSxSLICE[xSPLIT], three or four positive \
                 integers with UNITS * ROWS * SPLIT at most 256 (e.g. 8x8x64 or 8x8x16x4)"
            ))),
        }
    }
}

impl fmt::Display for StepTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.group_units, self.group_rows, self.slice)?;
        match self.k_split {
            1 => Ok(()),
            k => write!(f, "x{k}"),
        }
    }
}

/// How the kernels on matrix units run (gemm_coop.wgsl, step_coop.wgsl): on square tiles of
/// `edge`, in subgroups of `subgroup` invocations (a workgroup of gemm_coop.wgsl is one,
/// `WG_SIZE`; step_coop.wgsl's are `CoopStep::parts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopShape {
    /// The tiles' edge, from the shapes the adapter lists.
    pub edge: CoopEdge,
    /// The adapter's subgroup size, or the emulation's (a lane per element of a tile).
    pub subgroup: u32,
    /// Whether the operations run emulated in plain WGSL (coop_emulation.wgsl), whose tiles
    /// take workgroup memory of their own.
    pub emulated: bool,
}

impl fmt::Display for CoopShape {
    /// `16x16x16 tiles, subgroups of 32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tiles, subgroups of {}", self.edge, self.subgroup)
    }
}

/// Values of K that step_coop.wgsl stages between two barriers (`STAGE`), whatever the edge.
const COOP_STAGE: u64 = 64;

/// The shape of step_coop.wgsl's time steps: an edge x edge tile of batch rows x hidden units
/// per workgroup, on the matrix units' tiles (`coop`), in `parts` subgroups that share every
/// stage of K's tiles between them and add their sums at the end (`K_PARTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopStep {
    /// The matrix units' tiles and subgroups.
    pub coop: CoopShape,
    /// Subgroups per workgroup, each summing its share of K: 1, 2 or 4, dividing a stage's
    /// tiles.
    pub parts: u32,
}

impl CoopStep {
    /// Invocations per workgroup the kernel may take: WebGPU's default limit.
    const MAX_INVOCATIONS: u32 = 256;
    /// The most gates of a cell: step_coop.wgsl keeps a tile of each (`MOST_GATES`).
    const MOST_GATES: u64 = 4;
    /// Bytes of the staged tiles' f16 and of the accumulators' f32.
    const F16_BYTES: u64 = 2;
    const F32_BYTES: u64 = 4;

    /// The shape for a step at `site` on `coop`: K whole where `site.split` says so, the
    /// tuned parts where it names them; `KSplit::Fill` doubles the parts (as
    /// `StepTile::for_shape` doubles its layers) while the step's invocations stay within
    /// `StepTile::FILL`, each part keeps `StepTile::MIN_LAYER_K` of H and the workgroup fits
    /// `MAX_INVOCATIONS` and the adapter's workgroup memory.
    pub fn for_shape(coop: CoopShape, site: StepSite) -> CoopStep {
        let whole = CoopStep { coop, parts: 1 };
        let parts = match site.split {
            KSplit::Whole => 1,
            KSplit::Layers(parts) => parts.max(1),
            KSplit::Fill => {
                let invocations = whole.workgroups(site.batch, site.hidden) * coop.subgroup as u64;
                let mut step = whole;
                let doubled = |step: CoopStep| CoopStep {
                    parts: step.parts * 2,
                    ..step
                };
                while doubled(step).fits(site.storage_bytes)
                    && invocations * 2 * step.parts as u64 <= StepTile::FILL
                    && site.hidden >= 2 * step.parts as usize * StepTile::MIN_LAYER_K
                {
                    step = doubled(step);
                }
                step.parts
            }
        };
        CoopStep { coop, parts }
    }

    /// Why the kernel cannot run in this shape on an adapter of `storage_bytes` of workgroup
    /// memory and `most` invocations per workgroup, if it cannot: parts that do not divide a
    /// stage's tiles, or a workgroup too large.
    pub fn refusal(self, storage_bytes: u32, most: u32) -> Option<String> {
        let tiles = COOP_STAGE / self.coop.edge.size() as u64;
        if !tiles.is_multiple_of(self.parts as u64) {
            return Some(format!(
                "the matrix units' step splits each stage's {tiles} tiles of K over {} parts, \
                 which must divide them",
                self.parts
            ));
        }
        let (bytes, invocations) = (self.storage_bytes(), self.invocations());
        let most = most.min(Self::MAX_INVOCATIONS);
        (bytes > storage_bytes as u64 || invocations > most).then(|| {
            format!(
                "the matrix units' step in {} parts takes {bytes} bytes of workgroup memory in \
                 {invocations} invocations; it may take {storage_bytes} bytes and {most} \
                 invocations",
                self.parts
            )
        })
    }

    /// Whether the rule may take this shape on an adapter of `storage_bytes`.
    fn fits(self, storage_bytes: u32) -> bool {
        self.refusal(storage_bytes, Self::MAX_INVOCATIONS).is_none()
            && self.parts <= StepTile::MAX_K_SPLIT
    }

    /// Invocations per workgroup (`WG_SIZE`).
    pub fn invocations(self) -> u32 {
        self.coop.subgroup * self.parts
    }

    /// Workgroups of one step over `batch` rows of `hidden` units.
    pub fn workgroups(self, batch: usize, hidden: usize) -> u64 {
        let tiles = |n: usize| n.div_ceil(self.coop.edge.size() as usize) as u64;
        tiles(batch) * tiles(hidden)
    }

    /// Workgroup memory of step_coop.wgsl in this shape (both entry points use all of its
    /// arrays): a stage of A (sa) and of 4 gates' B (sb) in f16, each part's 4 accumulator
    /// tiles (sc) in f32, and, emulated, each part's `coop_emulation::STEP_SLOTS` tiles in f32.
    pub fn storage_bytes(self) -> u64 {
        let (edge, parts) = (self.coop.edge.size() as u64, self.parts as u64);
        let tile = edge * edge;
        let staged = Self::F16_BYTES * COOP_STAGE * edge * (1 + Self::MOST_GATES);
        let accumulators = Self::F32_BYTES * parts * Self::MOST_GATES * tile;
        let emulated = match self.coop.emulated {
            true => Self::F32_BYTES * parts * super::coop_emulation::STEP_SLOTS as u64 * tile,
            false => 0,
        };
        staged + accumulators + emulated
    }

    /// Loop iterations of one invocation of a step kernel, the larger of forward and backward,
    /// an upper bound for `Gpu::check_loops`: its emulation's count (coop_emulation.wgsl),
    /// which bounds the kernel's own loops on real matrix units too (llvmpipe's). Per stage of
    /// `COOP_STAGE` along K, the stagings of A and of each staged gate's W_hh over the
    /// workgroup, and per tile of the part's share the loads and the multiply-adds of `edge`
    /// terms, 4 at a time, over the subgroup; then the zeros, the loads and stores of 4
    /// accumulators and the epilogue, each output counted with its gates' sums of the parts and
    /// the cell's own loops (at most 4).
    pub fn iterations(self, gates: usize, hidden: usize) -> u64 {
        let (g, h, parts) = (gates as u64, hidden as u64, self.parts as u64);
        let edge = self.coop.edge.size() as u64;
        let part_tiles = COOP_STAGE / edge / parts;
        let (tile, stage) = (edge * edge, COOP_STAGE * edge);
        let share = |n: u64| n.div_ceil(self.invocations() as u64) + 1;
        let lane_share = |n: u64| n.div_ceil(self.coop.subgroup as u64) + 1;
        // `staged` gates' W_hh and as many multiply-adds per tile of K, over `k` of K
        let stages = |staged: u64, k: u64| {
            let per_tile =
                (1 + staged) * lane_share(tile) + staged * lane_share(tile) * (edge / 4 + 1) + 1;
            let per_stage = share(stage) + share(staged * stage) + part_tiles * per_tile + 1;
            k.div_ceil(COOP_STAGE) * per_stage
        };
        let fixed = share(parts * Self::MOST_GATES * tile)
            + 2 * Self::MOST_GATES * lane_share(tile)
            + share(tile) * (g * (parts + 1) + 1 + 4);
        stages(g, h).max(stages(1, g * h)) + fixed + 2
    }
}

impl fmt::Display for CoopStep {
    /// `matrix-units`, or with K split: `matrix-units/4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts {
            1 => write!(f, "matrix-units"),
            parts => write!(f, "matrix-units/{parts}"),
        }
    }
}

/// How a time step's fused kernel computes its recurrent product: fused.wgsl over tiles of
/// invocations, or step_coop.wgsl on the matrix units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepShape {
    /// fused.wgsl in this workgroup shape.
    Tile(StepTile),
    /// step_coop.wgsl in this shape.
    Coop(CoopStep),
}

impl StepShape {
    /// Workgroups of one step over `batch` rows of `hidden` units.
    pub fn workgroups(self, batch: usize, hidden: usize) -> u64 {
        match self {
            StepShape::Tile(tile) => tile.workgroups(batch, hidden),
            StepShape::Coop(step) => step.workgroups(batch, hidden),
        }
    }

    /// Loop iterations of one invocation of a step kernel, the larger of forward and backward,
    /// an upper bound for `Gpu::check_loops`.
    pub fn iterations(self, gates: usize, hidden: usize) -> u64 {
        match self {
            StepShape::Tile(tile) => tile.iterations(gates, hidden),
            StepShape::Coop(step) => step.iterations(gates, hidden),
        }
    }
}

impl fmt::Display for StepShape {
    /// The tile (`8x8x16x4`), or `matrix-units` (`matrix-units/2` with K in 2 parts).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepShape::Tile(tile) => write!(f, "{tile}"),
            StepShape::Coop(step) => write!(f, "{step}"),
        }
    }
}

impl From<StepShape> for PipelineShape {
    fn from(shape: StepShape) -> Self {
        match shape {
            StepShape::Tile(tile) => PipelineShape::Step(tile),
            StepShape::Coop(step) => PipelineShape::CoopStep(step),
        }
    }
}

/// A shape of gemm.wgsl's kernels, set per pipeline through its `override` constants: each
/// invocation a `block` x `block` piece of C (the entry point: `gemm_4x4` or `gemm_8x8`),
/// `group_n` x `group_m` invocations per slice, K staged `slice_k` at a time, and `slices`
/// slices of K in a workgroup, each walking its own range of K (added in order at the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    /// The register block, 4 or 8: each invocation computes a `block` x `block` piece of C.
    pub block: u32,
    /// Invocations along N per slice (`GROUP_N`, workgroup x).
    pub group_n: u32,
    /// Invocations along M per slice (`GROUP_M`, workgroup y).
    pub group_m: u32,
    /// Values of K staged in workgroup memory at a time (`SLICE_K`).
    pub slice_k: u32,
    /// Slices of K per workgroup (`SLICES`, workgroup z), each summing its own range of K.
    pub slices: u32,
}

impl GemmTile {
    /// 64 x 64 tiles, 256 invocations: Auto's shape for products with many tiles.
    pub const TILED: GemmTile = GemmTile::new(4, (16, 16), 16, 1);
    /// 32 x 32 tiles, K in 4 slices of 64 invocations: 4x the workgroups of `TILED`, each a
    /// quarter of the chain, for products with few tiles and a long K.
    pub const SPLIT32: GemmTile = GemmTile::new(4, (8, 8), 16, 4);
    /// 64 x 64 tiles, K in 2 slices of 256 invocations (512 per workgroup): the loads per FMA
    /// of `TILED`, half its chain.
    pub const SPLIT64: GemmTile = GemmTile::new(4, (16, 16), 16, 2);
    /// 128 x 128 tiles, 8 x 8 per invocation: twice the FMAs per workgroup-memory load of
    /// `TILED`, for large products (a candidate for tuning: never measured on a GPU).
    pub const WIDE128: GemmTile = GemmTile::new(8, (16, 16), 8, 1);
    /// 64 x 64 tiles, 8 x 8 per invocation, 64 invocations (a candidate for tuning).
    pub const WIDE64: GemmTile = GemmTile::new(8, (8, 8), 16, 1);

    /// The tile of register block `block` with `group_n` x `group_m` invocations per slice,
    /// `slice_k` values of K per stage and `slices` slices; whether an adapter can run it is
    /// `allowed_by`'s question.
    pub const fn new(
        block: u32,
        (group_n, group_m): (u32, u32),
        slice_k: u32,
        slices: u32,
    ) -> Self {
        GemmTile {
            block,
            group_n,
            group_m,
            slice_k,
            slices,
        }
    }

    /// The entry point of its register block.
    pub fn kernel(self) -> Kernel {
        if self.block == 8 {
            Kernel::Gemm8x8
        } else {
            Kernel::Gemm4x4
        }
    }

    /// Rows of C per workgroup.
    pub fn rows(self) -> u64 {
        (self.block * self.group_m) as u64
    }

    /// Columns of C per workgroup.
    pub fn cols(self) -> u64 {
        (self.block * self.group_n) as u64
    }

    /// Invocations per workgroup, over all of its slices.
    pub fn invocations(self) -> u64 {
        (self.group_n * self.group_m * self.slices) as u64
    }

    /// Workgroups of one part of K over an M x N product's C.
    pub fn workgroups(self, (m, n): (usize, usize)) -> u64 {
        (m as u64).div_ceil(self.rows()) * (n as u64).div_ceil(self.cols())
    }

    /// gemm.wgsl's `MEMORY`: vec4s of the slices' stages, or of the blocks slices 1.. leave
    /// for slice 0 at the end, whichever is larger.
    pub fn memory_vec4s(self) -> u64 {
        let (rows, cols, k) = (self.rows(), self.cols(), self.slice_k as u64);
        let stages = self.slices as u64 * k * (rows + cols) / 4;
        let parked = (self.slices as u64 - 1) * rows * cols / 4;
        stages.max(parked)
    }

    /// Bytes of workgroup memory the tile uses (`memory_vec4s` vec4s of f32).
    pub fn storage_bytes(self) -> u64 {
        16 * self.memory_vec4s()
    }

    /// The values of gemm.wgsl's `override` constants.
    pub fn constants(self) -> [(&'static str, f64); 5] {
        [
            ("GROUP_N", self.group_n as f64),
            ("GROUP_M", self.group_m as f64),
            ("SLICE_K", self.slice_k as f64),
            ("SLICES", self.slices as f64),
            ("MEMORY", self.memory_vec4s() as f64),
        ]
    }

    /// Loop iterations of one invocation of a dispatch over `k` of K (one part), for the
    /// host's split of K on llvmpipe (`longest_k`), an upper bound: per stage the outer loop's
    /// turn, its share of both staging loops and `slice_k` FMA turns (each loop one more for its
    /// last test); then the epilogue's stores and gathers.
    pub fn iterations(self, k: u64) -> u64 {
        let threads = (self.group_n * self.group_m) as u64;
        let share = |n: u64| n.div_ceil(threads) + 1;
        let slice_k = self.slice_k as u64;
        let per_stage =
            1 + share(slice_k * self.rows()) + share(slice_k * self.cols()) + slice_k + 1;
        let stages = k.div_ceil(slice_k).div_ceil(self.slices as u64);
        let outputs = (self.block * self.block / 4) as u64;
        stages * per_stage + 1 + outputs * (self.slices as u64 + 5)
    }

    /// The longest K one dispatch of this tile may sum where loops end after `limit`
    /// iterations (`Gpu::loop_limit`), keeping half of it as a margin as `check_loops` does.
    pub fn longest_k(self, limit: u64) -> u64 {
        let per_stage =
            self.iterations(self.slice_k as u64 * self.slices as u64) - self.iterations(0);
        let stages = (limit / 2).saturating_sub(self.iterations(0)) / per_stage.max(1);
        (stages * self.slice_k as u64 * self.slices as u64).max(1)
    }

    /// Whether `limits` allow this shape: a register block of 4 or 8, and the workgroup's size
    /// and memory.
    pub fn allowed_by(self, limits: &wgpu::Limits) -> bool {
        let positive = [self.group_n, self.group_m, self.slice_k, self.slices]
            .iter()
            .all(|&v| v > 0);
        positive
            && matches!(self.block, 4 | 8)
            && self.invocations() <= limits.max_compute_invocations_per_workgroup as u64
            && self.group_n <= limits.max_compute_workgroup_size_x
            && self.group_m <= limits.max_compute_workgroup_size_y
            && self.slices <= limits.max_compute_workgroup_size_z
            && self.storage_bytes() <= limits.max_compute_workgroup_storage_size as u64
    }
}

impl FromStr for GemmTile {
    type Err = Error;

    /// `BLOCK:NxM:K:SLICES`, e.g. `4:16x16:16:1`: the register block (4 or 8), invocations
    /// along N and along M, K per stage, slices of K per workgroup.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Config(format!(
                "matrix-product tile '{text}': expected BLOCK:NxM:K:SLICES with BLOCK 4 or 8 \
                 and positive integers (e.g. 4:16x16:16:1)"
            ))
        };
        let number = |s: &str| s.trim().parse::<u32>().ok().filter(|&v| v > 0);
        let fields: Vec<&str> = text.split(':').collect();
        let [block, group, slice_k, slices] = fields[..] else {
            return Err(bad());
        };
        let (n, m) = group.split_once('x').ok_or_else(bad)?;
        let tile = GemmTile::new(
            number(block)
                .filter(|b| matches!(b, 4 | 8))
                .ok_or_else(bad)?,
            (number(n).ok_or_else(bad)?, number(m).ok_or_else(bad)?),
            number(slice_k).ok_or_else(bad)?,
            number(slices).ok_or_else(bad)?,
        );
        Ok(tile)
    }
}

impl fmt::Display for GemmTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}x{}:{}:{}",
            self.block, self.group_n, self.group_m, self.slice_k, self.slices
        )
    }
}

/// How a product is computed: `Auto` (what `record_gemm` and `matmul` use) takes the kernel
/// `rnn-wgpu tune` measured fastest where it measured one, else its rule: the matrix units for
/// two f16 operands where they are on, else the tile `gpu_choice` names. `Tile` and
/// `MatrixUnits` force one (tests, benchmarks, tuning). Every tile gives a correct result for
/// every shape; the matrix units take f16 operands only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// The tuned choice for the product where the context has one, else the rule
    /// (`GemmKernel::rule`).
    Auto,
    /// gemm.wgsl in this tile shape.
    Tile(GemmTile),
    /// `gemm_coop`: f16 cooperative matrices with f32 accumulation, of the edge
    /// `Gpu::matrix_units` says.
    MatrixUnits,
}

impl GemmKernel {
    /// `GemmTile::TILED` forced ("tiled" in the tuning cache).
    pub const TILED: GemmKernel = GemmKernel::Tile(GemmTile::TILED);
    /// `GemmTile::SPLIT32` forced ("split32x32").
    pub const SPLIT32: GemmKernel = GemmKernel::Tile(GemmTile::SPLIT32);
    /// `GemmTile::SPLIT64` forced ("split64x64").
    pub const SPLIT64: GemmKernel = GemmKernel::Tile(GemmTile::SPLIT64);
    /// `GemmTile::WIDE128` forced ("wide128x128").
    pub const WIDE128: GemmKernel = GemmKernel::Tile(GemmTile::WIDE128);
    /// `GemmTile::WIDE64` forced ("wide64x64").
    pub const WIDE64: GemmKernel = GemmKernel::Tile(GemmTile::WIDE64);

    /// The named tiles, by their names in the tuning cache (stable across versions of this
    /// crate; other tiles are named by `GemmTile`'s text).
    pub(crate) const NAMED: [(&'static str, GemmTile); 5] = [
        ("tiled", GemmTile::TILED),
        ("split32x32", GemmTile::SPLIT32),
        ("split64x64", GemmTile::SPLIT64),
        ("wide128x128", GemmTile::WIDE128),
        ("wide64x64", GemmTile::WIDE64),
    ];

    /// The kernel's name in the tuning cache.
    pub fn name(self) -> String {
        match self {
            GemmKernel::Auto => "auto".into(),
            GemmKernel::MatrixUnits => "matrix-units".into(),
            GemmKernel::Tile(tile) => (Self::NAMED.iter())
                .find(|(_, named)| *named == tile)
                .map_or_else(|| tile.to_string(), |(name, _)| name.to_string()),
        }
    }

    /// The kernel called `name` (`name`'s inverse).
    pub fn from_name(name: &str) -> Option<GemmKernel> {
        match name {
            "auto" => return Some(GemmKernel::Auto),
            "matrix-units" => return Some(GemmKernel::MatrixUnits),
            _ => {}
        }
        let named = Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t);
        named.or_else(|| name.parse().ok()).map(GemmKernel::Tile)
    }
}

/// The `override` constants a `Kernel::tiled` kernel's pipeline is made with; part of the
/// pipeline cache's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PipelineShape {
    /// A fused step kernel's shape (fused.wgsl).
    Step(StepTile),
    /// A tiled product's shape (gemm.wgsl).
    Gemm(GemmTile),
    /// gemm_coop.wgsl's: its tiles' edge, which is put in front of the source
    /// (`Shader::coop_source_for`), and its one subgroup's size.
    Coop(CoopShape),
    /// step_coop.wgsl's: the same, and its subgroups per workgroup.
    CoopStep(CoopStep),
}

impl PipelineShape {
    /// The constants' names and values, as `wgpu::PipelineCompilationOptions` takes them.
    pub fn constants(self) -> Vec<(&'static str, f64)> {
        match self {
            PipelineShape::Step(tile) => tile.constants().to_vec(),
            PipelineShape::Gemm(tile) => tile.constants().to_vec(),
            PipelineShape::Coop(coop) => vec![("WG_SIZE", coop.subgroup as f64)],
            PipelineShape::CoopStep(step) => vec![
                ("WG_SIZE", step.invocations() as f64),
                ("K_PARTS", step.parts as f64),
            ],
        }
    }

    /// The matrix units' tiles the shape runs on, for the kernels on them.
    pub fn coop_edge(self) -> Option<CoopEdge> {
        match self {
            PipelineShape::Coop(coop) => Some(coop.edge),
            PipelineShape::CoopStep(step) => Some(step.coop.edge),
            PipelineShape::Step(_) | PipelineShape::Gemm(_) => None,
        }
    }
}

impl From<StepTile> for PipelineShape {
    fn from(tile: StepTile) -> Self {
        PipelineShape::Step(tile)
    }
}

impl From<GemmTile> for PipelineShape {
    fn from(tile: GemmTile) -> Self {
        PipelineShape::Gemm(tile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(batch: usize, hidden: usize, storage_kib: u32, gpu: bool) -> StepSite {
        StepSite {
            batch,
            hidden,
            staged: 4,
            storage_bytes: storage_kib << 10,
            split: if gpu { KSplit::Fill } else { KSplit::Whole },
        }
    }

    /// On a GPU the rule splits K 4 ways where the step's B*H/16 invocations are few (every
    /// suite shape: 256 to 8,192 of them), keeping 64 values of K a stage where they fit; not
    /// where a step fills the GPU already, nor where H would leave a layer under 16 of K, nor
    /// on a CPU adapter.
    #[test]
    fn the_rule_splits_k_on_a_gpu_while_a_step_has_few_invocations() {
        let tile = |batch, hidden, kib, split| {
            let t = StepTile::for_shape(site(batch, hidden, kib, split));
            (
                t.to_string(),
                t.invocations() as u64 * t.workgroups(batch, hidden),
            )
        };
        for (batch, hidden) in [(32, 128), (128, 256), (64, 128), (256, 512)] {
            assert_eq!(
                tile(batch, hidden, 48, true).0,
                "8x8x16x4",
                "{batch} {hidden}"
            );
            assert_eq!(
                tile(batch, hidden, 48, false).0,
                "8x8x64",
                "{batch} {hidden}"
            );
        }
        assert_eq!(tile(256, 512, 48, true).1, 32_768);
        // 32 KiB (llvmpipe, Apple): the stage halves to fit, the layers stay
        assert_eq!(tile(256, 512, 32, true).0, "8x8x8x4");
        // 65,536 invocations at K whole: no split
        assert_eq!(tile(1024, 1024, 48, true).0, "8x8x64");
        // 32,768 at K whole would reach 65,536 split in two: none either
        assert_eq!(tile(512, 1024, 48, true).0, "8x8x64");
        // 16,384: split in two only
        assert_eq!(tile(256, 1024, 48, true).0, "8x8x32x2");
        // H = 32 leaves 16 of K to each of 2 layers; H = 31 none
        assert_eq!(tile(32, 32, 48, true).0, "8x8x32x2");
        assert_eq!(tile(32, 31, 48, true).0, "8x8x64");
        // a batch of at most 8 rows keeps its 8-row tiles, whose 128 units' LSTM rows of W_hh
        // fit 16 of K a stage, as at K whole
        assert_eq!(tile(3, 300, 48, true).0, "32x2x4x4");
        assert_eq!(tile(3, 300, 48, false).0, "32x2x16");
        // a tuned number of layers is taken as it is, on any adapter
        for (layers, expected) in [(1, "8x8x64"), (2, "8x8x32x2"), (4, "8x8x16x4")] {
            let tuned = StepSite {
                split: KSplit::Layers(layers),
                ..site(1024, 1024, 48, false)
            };
            assert_eq!(StepTile::for_shape(tuned).to_string(), expected);
        }
    }

    /// The matrix units' step splits K over subgroups as the fused steps do over layers: at
    /// every suite shape on an NVIDIA GPU (16x16 tiles, subgroups of 32, 48 KiB) into 4 parts
    /// but at the largest, whose 512 tiles of 32 invocations take 2 to reach `FILL`; never on
    /// a CPU adapter; only as far as the workgroup memory and 256 invocations allow (the
    /// emulation at 16x16 has 256 lanes); a tuned count that does not divide a stage's tiles,
    /// or that does not fit, is refused.
    #[test]
    fn the_matrix_units_step_splits_k_over_subgroups_while_a_step_has_few_invocations() {
        let nvidia = CoopShape {
            edge: CoopEdge::Sixteen,
            subgroup: 32,
            emulated: false,
        };
        let parts = |coop, batch, hidden, kib, gpu| {
            CoopStep::for_shape(coop, site(batch, hidden, kib, gpu)).parts
        };
        for (batch, hidden, expected) in [(32, 128, 4), (128, 256, 4), (64, 128, 4), (256, 512, 2)]
        {
            assert_eq!(
                parts(nvidia, batch, hidden, 48, true),
                expected,
                "{batch} {hidden}"
            );
            assert_eq!(
                parts(nvidia, batch, hidden, 48, false),
                1,
                "{batch} {hidden}"
            );
        }
        let four = CoopStep {
            coop: nvidia,
            parts: 4,
        };
        assert_eq!((four.invocations(), four.storage_bytes()), (128, 26 << 10));
        assert_eq!(four.to_string(), "matrix-units/4");
        // 16 KiB: 14 KiB with K whole, 18 KiB in 2 parts
        assert_eq!(parts(nvidia, 32, 128, 16, true), 1);
        // H = 32 leaves 16 of K to each of 2 parts
        assert_eq!(parts(nvidia, 32, 32, 48, true), 2);
        let emulated = |edge| CoopShape {
            edge,
            subgroup: edge.size() * edge.size(),
            emulated: true,
        };
        assert_eq!(parts(emulated(CoopEdge::Sixteen), 32, 128, 32, true), 1);
        assert_eq!(parts(emulated(CoopEdge::Eight), 32, 128, 32, true), 4);
        let tuned = |coop, parts, kib: u32| {
            let site = StepSite {
                split: KSplit::Layers(parts),
                ..site(32, 128, kib, false)
            };
            CoopStep::for_shape(coop, site).refusal(kib << 10, 256)
        };
        assert_eq!(tuned(nvidia, 4, 48), None);
        for (coop, parts, kib) in [(nvidia, 3, 48), (nvidia, 8, 48), (nvidia, 2, 16)] {
            assert!(
                tuned(coop, parts, kib).is_some(),
                "{parts} parts, {kib} KiB"
            );
        }
        assert!(tuned(emulated(CoopEdge::Sixteen), 2, 48).is_some());
    }
}
