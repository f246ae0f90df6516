//! Host side of `shaders/gemm.wgsl`: C[M, N] (+)= op(A)[M, K] op(B)[K, N] (+ bias[N]) on
//! matrices addressed inside larger buffers, with the entry point picked per adapter and shape.

use super::context::Gpu;
use super::kernels::Kernel;
use super::recorder::{Bound, Read, Recorder};
use super::texels;
use crate::Error;
use bytemuck::{Pod, Zeroable};
use ndarray::{Array2, ArrayView2};
use std::sync::OnceLock;

/// Output tile edge of `gemm_tiled`, in both M and N.
const TILE: u64 = 64;

/// Output tile edge of `gemm_wide`.
const WIDE_TILE: u64 = 128;

/// The K `gemm_split_*` needs to give each of its slices a step.
const SPLIT_MIN_K: usize = 64;

/// On GPUs `Auto` takes `Split32x32` for products with fewer 64x64 tiles than this, about one
/// per multiprocessor of a large GPU (an H200 has 132): below it `gemm_tiled` leaves most of
/// them idle (on an H200 split K ran 1.9-2.3x as fast at 1-64 tiles; at 128 and 256 tiles it
/// was slower: BENCHMARKS.md).
const SPLIT_BELOW_TILES: u64 = 128;

/// `split_parts`: K is split over parts of workgroups until about this many workgroups run
/// (8 per multiprocessor of an H200), each part at least `PART_MIN_K` long, and the partial
/// products within `SPLIT_PARTIALS_BYTES`.
const SPLIT_TARGET_GROUPS: u64 = 1024;
const PART_MIN_K: usize = 4096;
const SPLIT_PARTIALS_BYTES: usize = 64 << 20;

/// An f32 sum's rounding error grows with its chain: a head gradient over 160,000 rows, whose
/// terms cancel, was off by 6e-4 in one chain, while its bias, summed in blocks, was off by
/// 3e-7. So a K past `CHAIN_FROM_K` (the weight gradients' T * B rows) is summed in parts of
/// about `CHAIN_K` terms (whole K-chunks), each into its own slice of `Gpu::scratch_partials`,
/// which `gemm_split_sum` then adds in order with bias and C (within `SPLIT_PARTIALS_BYTES`;
/// longer parts where that would not do). The split kernels have parts of their own
/// (`split_parts`). Shorter sums stay one chain, so a per-step product (K = G * H) keeps its
/// one dispatch up to H = 4096.
const CHAIN_K: usize = 4096;
const CHAIN_FROM_K: usize = 4 * CHAIN_K;

/// `auto_k_chunk`: operands larger than this (both, over all of K) are taken to miss a CPU's
/// caches; a chunk's slices of them span about `CHUNK_BYTES`, and at least `MIN_CHUNK` rows of K.
const OUT_OF_CACHE_BYTES: usize = 16 << 20;
const CHUNK_BYTES: usize = 4 << 20;
const MIN_CHUNK: usize = 256;

/// Invocations per workgroup of the `gemm_block_*` kernels: one 8-wide SIMD loop of llvmpipe.
const BLOCK_GROUP: u64 = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_offset: u32,
    b_offset: u32,
    c_offset: u32,
    bias_offset: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32,
    has_bias: u32,
    row_blocks: u32,
    trans_c: u32,
    k_parts: u32,
    _pad: [u32; 3],
}

/// A row-major matrix inside a buffer: element (r, c) of the *stored* matrix is at
/// `offset + r * row_stride + c` (words). `transposed` uses it as its transpose.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub row_stride: usize,
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: usize, row_stride: usize) -> Self {
        Operand {
            buffer,
            offset,
            row_stride,
            transposed: false,
        }
    }

    pub fn t(self) -> Self {
        Operand {
            transposed: !self.transposed,
            ..self
        }
    }
}

/// Where the product goes and what is added to it.
pub struct Output<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub row_stride: usize,
    /// `C += ...` instead of `C = ...`.
    pub accumulate: bool,
    /// A bias vector of length N (buffer, offset), added to every row.
    pub bias: Option<(&'a wgpu::Buffer, usize)>,
}

/// The entry point that computes a product. `Auto`, what `record_gemm` and `matmul` use, picks
/// on GPUs `Tiled`, or `Split*` where C has few tiles; on CPU adapters the cheapest kernel:
/// the `Lanes*` kernels where subgroups are 8 lanes wide (llvmpipe), else the `Block*` ones.
/// The others force one (tests, benchmarks). Every choice gives a correct result for every
/// shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    Auto,
    /// `gemm_tiled`: 64x64 tiles through workgroup memory.
    Tiled,
    /// `gemm_tiled_prefetch`: `gemm_tiled` issuing the next K-slice's loads before this
    /// slice's FMAs (the same sums). Never Auto's rule: a candidate for tuning on GPUs.
    TiledPrefetch,
    /// `gemm_wide`: 128x128 tiles, an 8x8 block per invocation from vec4s in workgroup
    /// memory. Never Auto's rule: a candidate for tuning on GPUs.
    Wide128x128,
    /// `gemm_split_32x32`: 32x32 tiles, K split four ways inside the workgroup.
    Split32x32,
    /// `gemm_split_64x64`: 64x64 tiles, K split two ways inside a workgroup of 512
    /// invocations (where the adapter allows that many).
    Split64x64,
    /// `gemm_block_16x16`: each invocation a 16x16 block of C.
    Block16x16,
    /// `gemm_block_32x4`: for products with few columns.
    Block32x4,
    /// `gemm_block_4x32`: for products with few rows.
    Block4x32,
    /// `gemm_lanes_32x8`: 8 lanes share 32 rows through subgroup broadcasts. `swapped`
    /// computes C^T = op(B)^T op(A)^T instead, for products with few columns.
    Lanes32x8 {
        swapped: bool,
    },
    /// `gemm_lanes_64x8`: twice the rows, for large products.
    Lanes64x8 {
        swapped: bool,
    },
    /// `gemm_lanes_8x16`: for products with few rows (or, swapped, few columns).
    Lanes8x16 {
        swapped: bool,
    },
    /// `gemm_texels_*`: `gemm_lanes_64x8` with its operands copied (or packed) into textures
    /// first (see `texels.rs`; where a texture would exceed the adapter's limit it runs
    /// `Lanes64x8`). `Auto` takes it wherever it would take `Lanes64x8`.
    Texels64x8 {
        swapped: bool,
    },
}

impl GemmKernel {
    const BLOCKS: [GemmKernel; 3] = [
        GemmKernel::Block16x16,
        GemmKernel::Block32x4,
        GemmKernel::Block4x32,
    ];

    const LANES: [GemmKernel; 6] = [
        GemmKernel::Lanes32x8 { swapped: false },
        GemmKernel::Lanes32x8 { swapped: true },
        GemmKernel::Lanes64x8 { swapped: false },
        GemmKernel::Lanes64x8 { swapped: true },
        GemmKernel::Lanes8x16 { swapped: false },
        GemmKernel::Lanes8x16 { swapped: true },
    ];

    const TEXELS: [GemmKernel; 2] = [
        GemmKernel::Texels64x8 { swapped: false },
        GemmKernel::Texels64x8 { swapped: true },
    ];

    const TILES: [GemmKernel; 5] = [
        GemmKernel::Tiled,
        GemmKernel::TiledPrefetch,
        GemmKernel::Wide128x128,
        GemmKernel::Split32x32,
        GemmKernel::Split64x64,
    ];

    /// The workgroup-memory tiles this adapter can run (`Split64x64` needs groups of 512).
    fn tiles(gpu: &Gpu) -> Vec<GemmKernel> {
        let allowed = |k: &GemmKernel| *k != GemmKernel::Split64x64 || gpu.allows_groups_of_512();
        Self::TILES.into_iter().filter(allowed).collect()
    }

    /// The kernels `Auto` chooses among on this adapter (`tuning` times them against each
    /// other): the tiles on GPUs, the lanes kernels (the 64x64 one from textures where it
    /// can) on CPU adapters with 8-lane subgroups, else the block kernels.
    pub fn candidates(gpu: &Gpu) -> Vec<GemmKernel> {
        if gpu.info.device_type != wgpu::DeviceType::Cpu {
            Self::tiles(gpu)
        } else if gpu.has_lanes_of_8() {
            Self::LANES.to_vec()
        } else {
            Self::BLOCKS.to_vec()
        }
    }

    /// The kernel's name in the tuning cache: stable across versions of this crate.
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Auto => "auto",
            GemmKernel::Tiled => "tiled",
            GemmKernel::TiledPrefetch => "tiled-prefetch",
            GemmKernel::Wide128x128 => "wide128x128",
            GemmKernel::Split32x32 => "split32x32",
            GemmKernel::Split64x64 => "split64x64",
            GemmKernel::Block16x16 => "block16x16",
            GemmKernel::Block32x4 => "block32x4",
            GemmKernel::Block4x32 => "block4x32",
            GemmKernel::Lanes32x8 { swapped: false } => "lanes32x8",
            GemmKernel::Lanes32x8 { swapped: true } => "lanes32x8-swapped",
            GemmKernel::Lanes64x8 { swapped: false } => "lanes64x8",
            GemmKernel::Lanes64x8 { swapped: true } => "lanes64x8-swapped",
            GemmKernel::Lanes8x16 { swapped: false } => "lanes8x16",
            GemmKernel::Lanes8x16 { swapped: true } => "lanes8x16-swapped",
            GemmKernel::Texels64x8 { swapped: false } => "texels64x8",
            GemmKernel::Texels64x8 { swapped: true } => "texels64x8-swapped",
        }
    }

    /// The kernel called `name` (`name`'s inverse).
    pub fn from_name(name: &str) -> Option<GemmKernel> {
        let all = [GemmKernel::Auto]
            .into_iter()
            .chain(Self::TILES)
            .chain(Self::BLOCKS)
            .chain(Self::LANES)
            .chain(Self::TEXELS);
        all.into_iter().find(|kernel| kernel.name() == name)
    }

    /// Every entry point this adapter can run, for tests and benchmarks.
    pub fn forced(gpu: &Gpu) -> Vec<GemmKernel> {
        let mut kernels = Self::tiles(gpu);
        kernels.extend(Self::BLOCKS);
        if gpu.has_lanes_of_8() {
            kernels.extend(Self::LANES);
            kernels.extend(Self::TEXELS);
        }
        kernels
    }

    /// The tile edge of a `Split*` kernel.
    fn split_tile(self) -> Option<u64> {
        match self {
            GemmKernel::Split32x32 => Some(32),
            GemmKernel::Split64x64 => Some(64),
            _ => None,
        }
    }

    /// (rows, columns) of C per invocation of a block kernel.
    fn block(self) -> Option<(u64, u64)> {
        match self {
            GemmKernel::Block16x16 => Some((16, 16)),
            GemmKernel::Block32x4 => Some((32, 4)),
            GemmKernel::Block4x32 => Some((4, 32)),
            _ => None,
        }
    }

    /// (rows, columns) of C per workgroup of a lanes kernel, and whether it is swapped.
    fn lanes(self) -> Option<((u64, u64), bool)> {
        match self {
            GemmKernel::Lanes32x8 { swapped } => Some(((32, 64), swapped)),
            GemmKernel::Lanes64x8 { swapped } | GemmKernel::Texels64x8 { swapped } => {
                Some(((64, 64), swapped))
            }
            GemmKernel::Lanes8x16 { swapped } => Some(((8, 128), swapped)),
            _ => None,
        }
    }

    /// The concrete entry point for this adapter and product.
    pub fn resolve(self, gpu: &Gpu, (m, n, k): (usize, usize, usize), accumulate: bool) -> Self {
        if self != GemmKernel::Auto {
            return self;
        }
        if gpu.info.device_type != wgpu::DeviceType::Cpu {
            return match Self::gpu_choice((m, n, k)) {
                GemmKernel::Split64x64 if !gpu.allows_groups_of_512() => GemmKernel::Split32x32,
                choice => choice,
            };
        }
        let candidates: &[GemmKernel] = if gpu.has_lanes_of_8() {
            &Self::LANES
        } else {
            &Self::BLOCKS
        };
        Self::cheapest(candidates, (m, n, k), accumulate)
    }

    /// The kernel `resolve` picks on a GPU (any adapter that is not a CPU) that allows
    /// workgroups of 512: where C has fewer than `SPLIT_BELOW_TILES` 64x64 tiles and K is long
    /// enough to split, `Split64x64` if K is also split over parts of workgroups (the weight
    /// gradients: 1.2-1.4x as fast as `Split32x32` there on an H200), else `Split32x32` (the
    /// per-step products: 1.4-1.9x as fast as `Split64x64`); `Tiled` elsewhere. Other GPUs
    /// take `Split32x32` for `Split64x64`.
    pub fn gpu_choice((m, n, k): (usize, usize, usize)) -> Self {
        let tiles = (m as u64).div_ceil(TILE) * (n as u64).div_ceil(TILE);
        if tiles >= SPLIT_BELOW_TILES || k < SPLIT_MIN_K {
            GemmKernel::Tiled
        } else if split_parts((m, n, k), 64) > 1 {
            GemmKernel::Split64x64
        } else {
            GemmKernel::Split32x32
        }
    }

    /// The kernel `resolve` picks on a CPU adapter with 8-lane subgroups (for the memory plan,
    /// which has no adapter at hand: where it is `Lanes64x8`, the product may run from textures).
    pub(crate) fn lanes_choice(shape: (usize, usize, usize), accumulate: bool) -> Self {
        Self::cheapest(&Self::LANES, shape, accumulate)
    }

    fn cheapest(candidates: &[Self], (m, n, k): (usize, usize, usize), accumulate: bool) -> Self {
        let shape = (m as u64, n as u64, k as u64);
        let cost = |kernel: &GemmKernel| kernel.cpu_cost(shape, accumulate);
        *candidates
            .iter()
            .min_by(|x, y| cost(x).total_cmp(&cost(y)))
            .expect("a kernel to choose from")
    }

    /// Relative time of a product on llvmpipe, for the block and lanes kernels.
    fn cpu_cost(self, (m, n, k): (u64, u64, u64), accumulate: bool) -> f64 {
        let threads = cpu_threads();
        if let Some(((r, c), swapped)) = self.lanes() {
            let (m, n) = if swapped { (n, m) } else { (m, n) };
            return lanes_cost((m, n, k), (r, c), accumulate, threads);
        }
        let (r, c) = self.block().expect("a CPU adapter's kernel");
        block_cost((m, n, k), (r, c), accumulate, threads)
    }
}

/// Threads llvmpipe runs workgroups on (it starts one per CPU).
fn cpu_threads() -> u64 {
    static THREADS: OnceLock<u64> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
}

/// Relative time of a product on llvmpipe with (r x c)-blocks, in units of one lane's load of
/// one element (about 15 ns of thread time, measured). A workgroup of 8 invocations is one SIMD
/// loop on one thread: per k each busy invocation loads r + c elements, each a scalar loop over
/// the lanes, and the group issues r * c vector FMAs, about 0.3 loads each. Around the k loop an
/// invocation reads bias (c) and C (r * c, when accumulating) and writes r * c elements.
/// Workgroups spread over the threads in rounds.
fn block_cost(
    (m, n, k): (u64, u64, u64),
    (r, c): (u64, u64),
    accumulate: bool,
    threads: u64,
) -> f64 {
    let invocations = m.div_ceil(r) * n.div_ceil(c);
    let rounds = invocations.div_ceil(BLOCK_GROUP).div_ceil(threads);
    let busy = invocations.min(BLOCK_GROUP);
    let per_invocation = k * (r + c) + c + r * c * (1 + accumulate as u64);
    rounds as f64 * (busy as f64 * per_invocation as f64 + 0.3 * (k * r * c) as f64)
}

/// `block_cost` for the lanes kernels, whose workgroup computes an (r x c) tile of C: per k the
/// group loads r + c elements (an eighth of the rows and all its columns per lane) and issues
/// r * c FMAs, about 0.018 loads each on 8 lanes (measured: the 32 x 64 tile's 2048 FMAs per k
/// cost as much as 37 lane-loads); around the loop it reads bias and C and writes its tile.
fn lanes_cost(
    (m, n, k): (u64, u64, u64),
    (r, c): (u64, u64),
    accumulate: bool,
    threads: u64,
) -> f64 {
    let groups = m.div_ceil(r) * n.div_ceil(c);
    let rounds = groups.div_ceil(threads);
    let per_group = k as f64 * ((r + c) as f64 + 0.018 * (r * c) as f64)
        + (r * c * (1 + accumulate as u64) + c) as f64;
    rounds as f64 * per_group
}

/// Records `C = op(A) op(B)` with shapes `[m, k] x [k, n]`.
/// `dummy` is bound in the bias slot when there is no bias.
#[allow(clippy::too_many_arguments)]
pub fn record_gemm(
    gpu: &Gpu,
    recorder: &mut Recorder,
    shape: (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: Output,
    dummy: &wgpu::Buffer,
) -> Result<(), Error> {
    record_gemm_using(
        gpu,
        recorder,
        (GemmKernel::Auto, None),
        shape,
        a,
        b,
        c,
        dummy,
    )
}

/// `record_gemm` with the entry point and the K-chunk length (`None`: `auto_k_chunk`'s choice)
/// chosen by the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_gemm_using(
    gpu: &Gpu,
    recorder: &mut Recorder,
    (kernel, k_chunk): (GemmKernel, Option<usize>),
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: Output,
    dummy: &wgpu::Buffer,
) -> Result<(), Error> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let auto = kernel == GemmKernel::Auto;
    // Auto takes the tuned kernel for this product where `rnn-wgpu tune` measured one.
    let tuned = auto
        .then(|| gpu.tuned_choice(((m, n, k), (a.transposed, b.transposed))))
        .flatten();
    let kernel = tuned.unwrap_or_else(|| kernel.resolve(gpu, (m, n, k), c.accumulate));
    // A swapped lanes kernel computes C^T = op(B)^T op(A)^T: the operands trade places and C
    // is written transposed.
    let swapped = kernel.lanes().is_some_and(|(_, swapped)| swapped);
    let (m, n, a, b) = if swapped {
        (n, m, b.t(), a.t())
    } else {
        (m, n, a, b)
    };
    let tile = match (kernel.lanes(), kernel.block()) {
        (Some((tile, _)), _) => tile,
        (None, Some((r, c))) => (r, c),
        (None, None) => match (kernel, kernel.split_tile()) {
            (GemmKernel::Wide128x128, _) => (WIDE_TILE, WIDE_TILE),
            (_, Some(edge)) => (edge, edge),
            (_, None) => (TILE, TILE),
        },
    };
    let mut chunk = k_chunk.map_or_else(|| auto_k_chunk(gpu, (m, n, k), tile), |c| c.max(1));
    if let Some(limit) = gpu.loop_limit() {
        // Every kernel runs at most 1.25 loop iterations per k (the texel tile: 5 per 4 k;
        // 1.26 measured for gemm_wide), so a fifth of the limit leaves a margin of 4.
        chunk = chunk.min(limit as usize / 5 / 64 * 64);
    }
    // Every kernel but the split ones sums a long K in parts of whole chunks (`CHAIN_K`).
    let chained = kernel.split_tile().is_none();
    if chained && k > CHAIN_FROM_K {
        chunk = chunk.min(CHAIN_K);
    }
    // The 64 x 64 lanes tile from textures where they fit and, unless forced, where op(A) (in
    // the recurrence a different matrix every step) is a plain copy: packing it would add a
    // dispatch per step.
    let forced = matches!(kernel, GemmKernel::Texels64x8 { .. });
    let plans = (forced || (auto && matches!(kernel, GemmKernel::Lanes64x8 { .. })))
        .then(|| texels::plans(gpu, (&a, &b), (m, n, k), chunk, !forced))
        .flatten();
    if let Some((texel_chunk, _)) = &plans {
        chunk = *texel_chunk;
    }
    let (chain, parts) = if chained {
        chain_parts((m, n, k), chunk)
    } else {
        (k, 1)
    };
    let mut params = GemmParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        lda: a.row_stride as u32,
        ldb: b.row_stride as u32,
        ldc: c.row_stride as u32,
        a_offset: a.offset as u32,
        b_offset: b.offset as u32,
        c_offset: c.offset as u32,
        bias_offset: c.bias.map_or(0, |(_, offset)| offset as u32),
        trans_a: a.transposed as u32,
        trans_b: b.transposed as u32,
        accumulate: c.accumulate as u32,
        has_bias: c.bias.is_some() as u32,
        row_blocks: 0,
        trans_c: swapped as u32,
        k_parts: 1,
        _pad: [0; 3],
    };
    let (entry, groups) = match (kernel.lanes(), kernel.block()) {
        (Some(((rows, cols), _)), _) => {
            let row_blocks = (m as u64).div_ceil(rows);
            params.row_blocks = row_blocks as u32;
            let groups = row_blocks * (n as u64).div_ceil(cols);
            let entry = match rows {
                64 => Kernel::GemmLanes64x8,
                32 => Kernel::GemmLanes32x8,
                _ => Kernel::GemmLanes8x16,
            };
            (entry, gpu.grid("matrix product tiles", groups)?)
        }
        (None, Some((r, cols))) => {
            let row_blocks = (m as u64).div_ceil(r);
            params.row_blocks = row_blocks as u32;
            let invocations = row_blocks * (n as u64).div_ceil(cols);
            let groups = invocations.div_ceil(BLOCK_GROUP);
            let entry = match kernel {
                GemmKernel::Block16x16 => Kernel::GemmBlock16x16,
                GemmKernel::Block32x4 => Kernel::GemmBlock32x4,
                _ => Kernel::GemmBlock4x32,
            };
            (entry, gpu.grid("matrix product blocks", groups)?)
        }
        (None, None) => {
            let col_tiles = (n as u64).div_ceil(tile.1);
            let row_tiles = gpu.grid("matrix product rows", (m as u64).div_ceil(tile.0))?;
            check_dimension(gpu, col_tiles, || {
                format!("a matrix product with {n} columns")
            })?;
            // x: column tiles; the kernel reads row tiles from (y, z)
            let groups = [col_tiles as u32, row_tiles[0], row_tiles[1]];
            let entry = match kernel {
                GemmKernel::Split32x32 => Kernel::GemmSplit32x32,
                GemmKernel::Split64x64 => Kernel::GemmSplit64x64,
                GemmKernel::Wide128x128 => Kernel::GemmWide,
                GemmKernel::TiledPrefetch => Kernel::GemmTiledPrefetch,
                _ => Kernel::GemmTiled,
            };
            (entry, groups)
        }
    };
    let bias = c.bias.map_or(dummy, |(buffer, _)| buffer);
    // Element strides of op(A) and op(B) along K, to step a chunk's operands.
    let a_k = if a.transposed { a.row_stride } else { 1 };
    let b_k = if b.transposed { 1 } else { b.row_stride };
    // In parts, each part's chunks go to its own slice of partial sums, laid out as C is
    // ([M, N] before any swap: a swapped kernel writes C^T through trans_c, so its slice's row
    // stride is its own M), and are added into C after the last.
    let partials = (parts > 1)
        .then(|| gpu.scratch_partials(parts * m * n))
        .transpose()?;
    let mut first = 0;
    loop {
        let len = chunk.min(k - first);
        let mut chunk_params = GemmParams {
            k: len as u32,
            a_offset: (a.offset + first * a_k) as u32,
            b_offset: (b.offset + first * b_k) as u32,
            // Later chunks continue from what the earlier ones stored.
            accumulate: (first > 0 || c.accumulate) as u32,
            has_bias: (first == 0 && c.bias.is_some()) as u32,
            ..params
        };
        if partials.is_some() {
            // into this part's slice, continuing only the part's own earlier chunks
            chunk_params.c_offset = ((first / chain) * m * n) as u32;
            chunk_params.ldc = if swapped { m } else { n } as u32;
            chunk_params.accumulate = (first % chain > 0) as u32;
            chunk_params.has_bias = 0;
        }
        let c_buffer = partials.as_ref().unwrap_or(c.buffer);
        let parts = kernel
            .split_tile()
            .map_or(1, |edge| split_parts((m, n, len), edge));
        if parts > 1 {
            record_split_parts(
                gpu,
                recorder,
                (entry, parts),
                groups,
                chunk_params,
                (&a, &b),
                &c,
                bias,
            )?;
        } else {
            let (entry, a_bound, b_bound) = match &plans {
                Some((_, plans)) => {
                    let plan = &plans[first / chunk];
                    let a_bound = texels::fill(gpu, recorder, 0, plan.a.clone())?;
                    let b_bound = texels::fill(gpu, recorder, 1, plan.b.clone())?;
                    (plan.entry, a_bound, b_bound)
                }
                None => (
                    entry,
                    Bound::Buffer(a.buffer.clone()),
                    Bound::Buffer(b.buffer.clone()),
                ),
            };
            recorder.dispatch_bound(
                entry,
                &chunk_params,
                vec![
                    a_bound,
                    b_bound,
                    Bound::Buffer(bias.clone()),
                    Bound::Buffer(c_buffer.clone()),
                ],
                groups,
            );
        }
        first += len;
        if first >= k {
            break;
        }
    }
    if let Some(partials) = &partials {
        // C's own shape again (not the swapped kernel's); params has C's strides and epilogue.
        let (m, n) = if swapped { (n, m) } else { (m, n) };
        let sum = GemmParams {
            m: m as u32,
            n: n as u32,
            ..params
        };
        record_sum_of_parts(gpu, recorder, sum, parts, partials, bias, c.buffer)?;
    }
    Ok(())
}

/// `gemm_split_sum`: C (+)= the `parts` partial products at the start of `partials` (each
/// [M, N], dense) added in part order, + bias. `sum` is the product's parameters for C
/// itself: its M, N, row stride, offset, accumulate and bias.
fn record_sum_of_parts(
    gpu: &Gpu,
    recorder: &mut Recorder,
    sum: GemmParams,
    parts: usize,
    partials: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Result<(), Error> {
    let sum = GemmParams {
        a_offset: 0,
        k_parts: parts as u32,
        trans_c: 0,
        ..sum
    };
    let groups = gpu.grid(
        "the sum of K's parts",
        (sum.m as u64 * sum.n as u64).div_ceil(64),
    )?;
    // The sum reads the partials as A (op(B) is unused: bias stands in for its binding).
    recorder.dispatch(
        Kernel::GemmSplitSum,
        &sum,
        &[partials, bias, bias, c],
        groups,
    );
    Ok(())
}

/// The most words of partial sums any kernel leaves in `Gpu::scratch_partials` for a product,
/// for the memory plan (which has no adapter or kernel at hand): `chain_parts` at any chunk
/// length (a part is at least half of `CHAIN_K`), which is more than the split kernels'
/// parts (`split_parts`: at least `PART_MIN_K` = `CHAIN_K` long, within the same bytes): an
/// upper bound from K = `CHAIN_K` on, where the split kernels may start.
pub(crate) fn chain_words((m, n, k): (usize, usize, usize)) -> usize {
    if k <= CHAIN_K {
        return 0;
    }
    (k.div_ceil(CHAIN_K / 2) * m * n).min(SPLIT_PARTIALS_BYTES / 4)
}

/// `CHAIN_K`'s parts of a product whose K runs in chunks of `chunk`: (the length
/// of a part, a whole number of chunks; the number of parts), `(k, 1)` where K is short.
pub(crate) fn chain_parts((m, n, k): (usize, usize, usize), chunk: usize) -> (usize, usize) {
    if k <= CHAIN_FROM_K || chunk >= k {
        return (k, 1);
    }
    let most = (SPLIT_PARTIALS_BYTES / (4 * m * n).max(1)).max(1);
    let chain = (CHAIN_K / chunk).max(1) * chunk;
    let chain = chain.max(k.div_ceil(most).div_ceil(chunk) * chunk);
    (chain, k.div_ceil(chain))
}

/// Into how many parts of workgroups a `gemm_split_*` kernel with `tile`-wide tiles splits K
/// for a product (1: none): until
/// about `SPLIT_TARGET_GROUPS` workgroups run, each part at least `PART_MIN_K` long, all the
/// parts' partial products within `SPLIT_PARTIALS_BYTES`. Only products with a K of several
/// thousand split: the weight gradients (K = T * batch), and the per-step backward product of
/// hidden sizes of 2048 and more (K = 4H), where the sum is that step's third dispatch.
pub fn split_parts((m, n, k): (usize, usize, usize), tile: u64) -> usize {
    let groups = (m as u64).div_ceil(tile) * (n as u64).div_ceil(tile);
    let to_fill = SPLIT_TARGET_GROUPS.div_ceil(groups) as usize;
    let by_bytes = SPLIT_PARTIALS_BYTES / (4 * m * n).max(1);
    to_fill.min(k / PART_MIN_K).min(by_bytes).max(1)
}

/// `C (+)= op(A) op(B) (+ bias)` as `parts` parts of K, each written to its slice of the
/// context's buffer of partial sums by the split kernel `entry`, then added in order by
/// `gemm_split_sum` (which also adds bias and C).
#[allow(clippy::too_many_arguments)]
fn record_split_parts(
    gpu: &Gpu,
    recorder: &mut Recorder,
    (entry, parts): (Kernel, usize),
    [col_tiles, rows0, rows1]: [u32; 3],
    params: GemmParams,
    (a, b): (&Operand, &Operand),
    c: &Output,
    bias: &wgpu::Buffer,
) -> Result<(), Error> {
    let (m, n) = (params.m as usize, params.n as usize);
    let partials = gpu.scratch_partials(parts * m * n)?;
    let x = col_tiles as u64 * parts as u64;
    check_dimension(gpu, x, || {
        format!("a matrix product with {n} columns in {parts} parts of K")
    })?;
    let split = GemmParams {
        c_offset: 0,
        ldc: n as u32,
        accumulate: 0,
        has_bias: 0,
        k_parts: parts as u32,
        ..params
    };
    recorder.dispatch(
        entry,
        &split,
        &[a.buffer, b.buffer, bias, &partials],
        [x as u32, rows0, rows1],
    );
    // The sum writes C as the product would have.
    record_sum_of_parts(gpu, recorder, params, parts, &partials, bias, c.buffer)
}

/// Refuses `needed` workgroups along one dimension beyond the adapter's limit; `what` names
/// the product in the error.
fn check_dimension(gpu: &Gpu, needed: u64, what: impl FnOnce() -> String) -> Result<(), Error> {
    let limit = gpu.limits.max_compute_workgroups_per_dimension as u64;
    if needed > limit {
        return Err(Error::Limit {
            what: what(),
            needed,
            limit,
            limit_name: "max_compute_workgroups_per_dimension",
            adapter: gpu.info.name.clone(),
        });
    }
    Ok(())
}

/// How much of K one dispatch covers. On a CPU adapter, a product with a long K (the weight
/// gradients: K = T * B rows) whose operands outgrow the caches streams each operand from memory
/// once per tile that reads it: A once per column of tiles, B once per row. Run in K-chunks whose
/// slices of both operands fit in `CHUNK_BYTES`, one dispatch after another, all the tiles of a
/// chunk find them in cache. The CPU adapters' kernels start a tile's sums from bias + C, so each
/// chunk continues from what the previous one stored with the same k in the same order: the result
/// is bit-identical to one dispatch (`gemm_tiled` adds C at the end: chunking it, possible only
/// when forced, rounds differently). Where only one tile spans M or N nothing is read twice, and
/// GPUs get one dispatch (each costs microseconds; their caches are not what limits these
/// products).
fn auto_k_chunk(gpu: &Gpu, (m, n, k): (usize, usize, usize), (rows, cols): (u64, u64)) -> usize {
    let reread = m as u64 > rows && n as u64 > cols;
    let bytes = 4 * k * (m + n);
    if gpu.info.device_type != wgpu::DeviceType::Cpu || !reread || bytes <= OUT_OF_CACHE_BYTES {
        return k.max(1);
    }
    (CHUNK_BYTES / (4 * (m + n))).max(MIN_CHUNK)
}

/// `op(A) op(B) (+ bias) (+ C)` for arrays on the host: uploads, runs one GEMM, reads back.
/// For tests and benchmarks of the kernel itself.
pub fn matmul(
    gpu: &Gpu,
    a: ArrayView2<f32>,
    trans_a: bool,
    b: ArrayView2<f32>,
    trans_b: bool,
    bias: Option<&[f32]>,
    add_to: Option<ArrayView2<f32>>,
) -> Result<Array2<f32>, Error> {
    let run = matmul_using(
        gpu,
        (GemmKernel::Auto, None),
        Placement { pad: 0, align: 1 },
        (a, trans_a),
        (b, trans_b),
        bias,
        add_to,
    )?;
    Ok(run.product)
}

/// Where `matmul_using` places each matrix in its buffer: `pad` NaN words before it and after
/// each of its rows, and more after each row where needed to make the row stride a multiple of
/// `align` words.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub pad: usize,
    pub align: usize,
}

/// What `matmul_using` computed and how.
pub struct MatmulRun {
    pub product: Array2<f32>,
    /// Whether every word of C's buffer outside the product is still NaN.
    pub padding_kept: bool,
    /// The entry points dispatched, in order.
    pub kernels: Vec<Kernel>,
}

/// `matmul` on a chosen entry point and K-chunk length (see `record_gemm_using`), with every
/// matrix placed inside a larger buffer as the engine's time-step slices are (`placement`).
pub fn matmul_using(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    Placement { pad, align }: Placement,
    (a, trans_a): (ArrayView2<f32>, bool),
    (b, trans_b): (ArrayView2<f32>, bool),
    bias: Option<&[f32]>,
    add_to: Option<ArrayView2<f32>>,
) -> Result<MatmulRun, Error> {
    let (m, k) = if trans_a { a.t().dim() } else { a.dim() };
    let (kb, n) = if trans_b { b.t().dim() } else { b.dim() };
    if k != kb {
        return Err(Error::Shape {
            what: "matmul operand B".into(),
            got: b.shape().to_vec(),
            expected: if trans_b { vec![n, k] } else { vec![k, n] },
        });
    }
    let c0 = add_to.map(|c| c.to_owned());
    if let Some(c0) = &c0 {
        crate::params::check_shape("matmul C", c0.shape(), &[m, n])?;
    }
    // A matrix's row stride, and the matrix as `pad` NaNs, then each row followed by NaNs.
    let stride = |cols: usize| (cols + pad).next_multiple_of(align.max(1));
    let placed = |x: ArrayView2<f32>| -> Vec<f32> {
        let mut words = vec![f32::NAN; pad];
        for row in x.rows() {
            words.extend(row.iter());
            words.extend(std::iter::repeat_n(f32::NAN, stride(x.ncols()) - x.ncols()));
        }
        words
    };
    let upload = |what: &str, words: &[f32]| -> Result<wgpu::Buffer, Error> {
        let buffer = gpu.storage_buffer(what, words.len())?;
        gpu.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(words));
        Ok(buffer)
    };
    let a_buf = upload("matmul A", &placed(a))?;
    let b_buf = upload("matmul B", &placed(b))?;
    let c_init = placed(
        c0.as_ref()
            .map_or(Array2::zeros((m, n)).view(), |c| c.view()),
    );
    let c_buf = upload("matmul C", &c_init)?;
    let bias_words: Option<Vec<f32>> = bias.map(|v| [&vec![f32::NAN; pad][..], v].concat());
    let bias_buf = bias_words.map(|v| upload("matmul bias", &v)).transpose()?;
    let dummy = gpu.storage_buffer("unused binding", 0)?;
    let mut recorder = Recorder::new(gpu);
    record_gemm_using(
        gpu,
        &mut recorder,
        kernel,
        (m, n, k),
        Operand {
            transposed: trans_a,
            ..Operand::new(&a_buf, pad, stride(a.ncols()))
        },
        Operand {
            transposed: trans_b,
            ..Operand::new(&b_buf, pad, stride(b.ncols()))
        },
        Output {
            buffer: &c_buf,
            offset: pad,
            row_stride: stride(n),
            accumulate: c0.is_some(),
            bias: bias_buf.as_ref().map(|b| (b, pad)),
        },
        &dummy,
    )?;
    let kernels = recorder.kernels();
    let words = recorder
        .submit_and_read(&[Read {
            buffer: &c_buf,
            offset: 0,
            len: c_init.len(),
        }])?
        .remove(0);
    let at = |i: usize, j: usize| pad + i * stride(n) + j;
    let product = Array2::from_shape_fn((m, n), |(i, j)| words[at(i, j)]);
    let padding_kept = (0..words.len())
        .filter(|&w| w < pad || (w - pad) % stride(n) >= n)
        .all(|w| words[w].is_nan());
    Ok(MatmulRun {
        product,
        padding_kept,
        kernels,
    })
}

/// Seconds per product when `reps` products `C += op(A) op(B) + bias` of the given shape are
/// recorded into one submission (the GEMM alone: no upload or read-back inside the timing),
/// and the entry points one product dispatches (texture fills included).
pub fn time_products(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    shape: (usize, usize, usize),
    trans: (bool, bool),
    reps: usize,
) -> Result<(f64, Vec<Kernel>), Error> {
    time_reps(gpu, kernel, shape, trans, reps, 1)
}

/// `time_products` as the recurrence runs a product: op(A) a different matrix each time (it
/// alternates between two copies, so a texture fill of it is never left out), B the same
/// weights. For `tuning`.
pub fn time_steps(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    shape: (usize, usize, usize),
    trans: (bool, bool),
    reps: usize,
) -> Result<(f64, Vec<Kernel>), Error> {
    time_reps(
        gpu,
        kernel,
        shape,
        trans,
        reps,
        if reps > 1 { 2 } else { 1 },
    )
}

fn time_reps(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    reps: usize,
    a_copies: usize,
) -> Result<(f64, Vec<Kernel>), Error> {
    let filled = |what: &str, words: usize| -> Result<wgpu::Buffer, Error> {
        let buffer = gpu.storage_buffer(what, words)?;
        let data: Vec<f32> = (0..words).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
        gpu.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(&data));
        Ok(buffer)
    };
    let (a_buf, b_buf) = (
        filled("bench A", a_copies * m * k)?,
        filled("bench B", k * n)?,
    );
    let (bias_buf, c_buf) = (filled("bench bias", n)?, filled("bench C", m * n)?);
    let a = |copy: usize| Operand {
        transposed: trans_a,
        ..Operand::new(&a_buf, copy * m * k, if trans_a { m } else { k })
    };
    let b = Operand {
        transposed: trans_b,
        ..Operand::new(&b_buf, 0, if trans_b { k } else { n })
    };
    let mut recorder = Recorder::new(gpu);
    let mut kernels = Vec::new();
    for rep in 0..reps.max(1) {
        let c = Output {
            buffer: &c_buf,
            offset: 0,
            row_stride: n,
            accumulate: true,
            bias: Some((&bias_buf, 0)),
        };
        let a = a(rep % a_copies);
        record_gemm_using(gpu, &mut recorder, kernel, (m, n, k), a, b, c, &bias_buf)?;
        if rep == 0 {
            kernels = recorder.kernels();
        }
    }
    let start = std::time::Instant::now();
    recorder.submit_and_read(&[Read {
        buffer: &c_buf,
        offset: 0,
        len: 1,
    }])?;
    Ok((start.elapsed().as_secs_f64() / reps.max(1) as f64, kernels))
}
