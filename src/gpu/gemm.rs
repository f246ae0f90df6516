//! Host side of `shaders/gemm.wgsl`: `C[M, N] (+)= op(A)[M, K] op(B)[K, N] (+ bias[N])` on
//! matrices addressed inside larger buffers, in the tile shape (`GemmTile`) picked per adapter
//! and product.

use super::context::Gpu;
use super::kernels::{Elements, Kernel};
use super::policy::Product;
use super::recorder::{Read, Recorder};
pub use super::tiles::GemmKernel;
use super::tiles::{CoopShape, GemmTile, PipelineShape};
use crate::error::Error;
use crate::precision::Precision;
use bytemuck::{Pod, Zeroable};
use ndarray::{Array2, ArrayView2};

/// The K `GemmTile`s with slices need to give each of its slices a step.
const SPLIT_MIN_K: usize = 64;

/// Auto takes split K for products with fewer 64x64 tiles than this, about one per
/// multiprocessor of a large GPU (an H200 has 132): below it 64x64 tiles leave most of them
/// idle (on an H200 split K ran 1.6-2.3x as fast at 1-64 tiles; at 256 and 512 tiles it was
/// slower: docs/benchmarks/2026-11-27.md, "What the H200 changed: split K, and bias gradients
/// in blocks").
const SPLIT_BELOW_TILES: u64 = 128;

/// `k_parts`: K is split over parts of workgroups until about this many workgroups run (8 per
/// multiprocessor of an H200), each part at least `PART_MIN_K` long, and the partial products
/// within `SPLIT_PARTIALS_BYTES`.
const SPLIT_TARGET_GROUPS: u64 = 1024;
const PART_MIN_K: usize = 4096;
const SPLIT_PARTIALS_BYTES: usize = 64 << 20;

/// An f32 sum's rounding error grows with its chain: a head gradient over 160,000 rows, whose
/// terms cancel, was off by 6e-4 in one chain, while its bias, summed in blocks, was off by
/// 3e-7. So a K past `CHAIN_FROM_K` (the weight gradients' T * B rows) is split into parts of
/// about `CHAIN_K` terms whatever the tile (`k_parts`), within `SPLIT_PARTIALS_BYTES`. Shorter
/// sums stay one chain.
const CHAIN_K: usize = 4096;
const CHAIN_FROM_K: usize = 4 * CHAIN_K;

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
    k_parts: u32,
    _pad: u32,
}

/// The element types a product's pipeline is compiled for: its operands' and output's.
fn product_elements((a, b): (Operand, Operand), c: Output) -> Elements {
    Elements {
        a: a.precision,
        b: b.precision,
        c: c.precision,
    }
}

impl GemmParams {
    /// The parameters of `C (+)= op(A) op(B) (+ bias)` over all of K in one part.
    fn of((m, n, k): (usize, usize, usize), (a, b): (Operand, Operand), c: Output) -> Self {
        GemmParams {
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
            k_parts: 1,
            _pad: 0,
        }
    }
}

/// A row-major matrix inside a buffer of `precision` elements: element (r, c) of the
/// *stored* matrix is at `offset + r * row_stride + c` (elements). `transposed` uses it as its
/// transpose.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    /// The buffer holding the matrix (bound as gemm.wgsl's A or B).
    pub buffer: &'a wgpu::Buffer,
    /// Elements before the stored matrix's first element.
    pub offset: usize,
    /// Elements from one stored row to the next (`lda` or `ldb`), at least its row length.
    pub row_stride: usize,
    /// Whether the product uses the transpose of the stored matrix (`trans_a`, `trans_b`).
    pub transposed: bool,
    /// The buffer's element type (the pipeline's `a_elem` or `b_elem`).
    pub precision: Precision,
}

impl<'a> Operand<'a> {
    /// A matrix in an f32 buffer.
    pub fn new(buffer: &'a wgpu::Buffer, offset: usize, row_stride: usize) -> Self {
        Operand {
            buffer,
            offset,
            row_stride,
            transposed: false,
            precision: Precision::F32,
        }
    }

    /// The same matrix in a buffer of `precision` elements.
    pub fn of(self, precision: Precision) -> Self {
        Operand { precision, ..self }
    }

    /// The same stored matrix used as its transpose (twice: as it was).
    pub fn t(self) -> Self {
        Operand {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Where op(self) of a product continues `k` rows (op(A)) or columns (op(B)) along K on:
    /// `along_rows` for op(B), whose K runs down its rows.
    fn skip_k(self, k: usize, along_rows: bool) -> Self {
        let step = if self.transposed == along_rows {
            1
        } else {
            self.row_stride
        };
        Operand {
            offset: self.offset + k * step,
            ..self
        }
    }
}

/// Where the product goes (a buffer of `precision` elements, summed in f32 and rounded once)
/// and what is added to it.
#[derive(Clone, Copy)]
pub(crate) struct Output<'a> {
    /// The buffer C is in (gemm.wgsl's binding 3).
    pub buffer: &'a wgpu::Buffer,
    /// C's element type (the pipeline's `c_elem`).
    pub precision: Precision,
    /// Elements before C's first element.
    pub offset: usize,
    /// Elements from one row of C to the next (`ldc`), at least N.
    pub row_stride: usize,
    /// `C += ...` instead of `C = ...`.
    pub accumulate: bool,
    /// A bias vector of length N (buffer, offset), added to every row.
    pub bias: Option<(&'a wgpu::Buffer, usize)>,
}

impl GemmKernel {
    /// The named tiles this adapter's limits allow (`SPLIT64` needs workgroups of 512).
    pub fn named(gpu: &Gpu) -> Vec<GemmKernel> {
        (Self::NAMED.iter())
            .filter(|(_, tile)| tile.allowed_by(&gpu.limits))
            .map(|&(_, tile)| GemmKernel::Tile(tile))
            .collect()
    }

    /// The kernels `tuning` times against each other on `product` on this adapter: Auto's
    /// rule's first (the matrix units, where they take the product), then the named tiles.
    pub fn candidates(gpu: &Gpu, product: Product) -> Vec<GemmKernel> {
        let rule = GemmKernel::rule(gpu, product);
        let others = Self::named(gpu).into_iter().filter(|k| *k != rule);
        std::iter::once(rule).chain(others).collect()
    }

    /// What Auto runs untuned: the matrix units where they take the product, else the tile
    /// `resolve` gives.
    pub fn rule(gpu: &Gpu, product: Product) -> GemmKernel {
        if Self::matrix_units_take(gpu, product) {
            GemmKernel::MatrixUnits
        } else {
            GemmKernel::Tile(GemmKernel::Auto.resolve(gpu, product.shape))
        }
    }

    /// Whether the matrix units can run `product` here: they are on and both operands are f16.
    fn matrix_units_take(gpu: &Gpu, product: Product) -> bool {
        product.half_operands() && gpu.matrix_units().is_ok()
    }

    /// The tile that computes a product on this adapter when no matrix units do: `Auto`'s tile
    /// rule (untuned; also for `MatrixUnits`), or the one forced.
    pub fn resolve(self, gpu: &Gpu, shape: (usize, usize, usize)) -> GemmTile {
        let kernel = match self {
            GemmKernel::Auto | GemmKernel::MatrixUnits => Self::gpu_choice(shape),
            forced => forced,
        };
        match kernel {
            GemmKernel::Tile(tile) if tile.allowed_by(&gpu.limits) => tile,
            GemmKernel::Tile(tile) if tile == GemmTile::SPLIT64 => GemmTile::SPLIT32,
            GemmKernel::Tile(tile) => tile,
            _ => unreachable!("gpu_choice names a tile"),
        }
    }

    /// Auto's rule, on any adapter. A product whose C fills 64x64 tiles: where C has fewer
    /// than `SPLIT_BELOW_TILES` of them and K is long enough to split, `SPLIT64` if K is also
    /// split over parts of workgroups (the weight gradients: 1.2-1.4x as fast as `SPLIT32`
    /// there on an H200), else `SPLIT32` (1.4-1.9x as fast as `SPLIT64` on the products of a
    /// batch of 256); `TILED` elsewhere. Adapters without workgroups of 512 take `SPLIT32` for
    /// `SPLIT64` (`resolve`). A skinny product (M or N under 64: dx and the input weights'
    /// gradient of a narrow input, the head and its gradient) takes a tile fitted to it
    /// (`fitted_tile`), where a 64x64 tile would compute and stage mostly padding. A K under
    /// 16 (the input projection of a narrow input) is staged whole: more would be zeros.
    pub fn gpu_choice((m, n, k): (usize, usize, usize)) -> Self {
        let slice_k = k.max(1).next_power_of_two().min(16) as u32;
        if m < 64 || n < 64 {
            return GemmKernel::Tile(fitted_tile((m, n, k), slice_k));
        }
        let tiles = GemmTile::TILED.workgroups((m, n));
        if tiles >= SPLIT_BELOW_TILES || k < SPLIT_MIN_K {
            GemmKernel::Tile(GemmTile {
                slice_k,
                ..GemmTile::TILED
            })
        } else if k_parts(GemmTile::SPLIT64, (m, n, k)) > 1 {
            GemmKernel::SPLIT64
        } else {
            GemmKernel::SPLIT32
        }
    }
}

/// Invocations a fitted tile's workgroup has at most, and the vec4s of workgroup memory it
/// stages at most (16 KiB: what every WebGPU adapter offers).
const FITTED_INVOCATIONS: u32 = 256;
const FITTED_MEMORY_VEC4S: u64 = 1024;

/// A 4x4-block tile for a skinny product: as many invocations along each side as its 4x4
/// blocks need (a power of two, at most 16), the long side then taking what the short one
/// leaves of `FITTED_INVOCATIONS`, halved until the stage fits `FITTED_MEMORY_VEC4S`; and where
/// that leaves fewer than `SPLIT_BELOW_TILES` workgroups, K split into slices inside the
/// workgroup (each at least one stage) up to the same invocations and memory. The head's
/// gradient over 160,000 rows of an 8-wide hidden state (M = 10, N = 8) takes 2 x 4
/// invocations in 8 slices, where a 64x64 tile would leave 98% of its outputs empty.
fn fitted_tile((m, n, k): (usize, usize, usize), slice_k: u32) -> GemmTile {
    let fit = |extent: usize| extent.div_ceil(4).next_power_of_two().min(256) as u32;
    let (mut group_n, mut group_m) = (fit(n).min(16), fit(m).min(16));
    if group_n < 16 {
        group_m = fit(m).min(FITTED_INVOCATIONS / group_n);
    } else if group_m < 16 {
        group_n = fit(n).min(FITTED_INVOCATIONS / group_m);
    }
    let mut tile = GemmTile::new(4, (group_n, group_m), slice_k, 1);
    while tile.memory_vec4s() > FITTED_MEMORY_VEC4S {
        if tile.group_m >= tile.group_n {
            tile.group_m /= 2;
        } else {
            tile.group_n /= 2;
        }
    }
    if tile.workgroups((m, n)) < SPLIT_BELOW_TILES {
        let fits = |t: GemmTile| {
            t.invocations() <= FITTED_INVOCATIONS as u64
                && t.slices <= 64
                && (t.slices * t.slice_k) as usize <= k
                && t.memory_vec4s() <= FITTED_MEMORY_VEC4S
        };
        let mut next = GemmTile { slices: 2, ..tile };
        while fits(next) {
            tile = next;
            next.slices *= 2;
        }
    }
    tile
}

/// Records `C (+)= op(A) op(B) (+ bias)` with `shape` = (M, N, K), op(A) `[M, K]` and op(B)
/// `[K, N]` (`c.accumulate` and `c.bias` say what is added), through `GemmKernel::Auto`.
/// `dummy` is bound in the bias slot when there is no bias. An error means the adapter cannot
/// run the product as chosen: it exceeds a limit, or the choice is matrix units that are off.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_gemm(
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

/// `record_gemm` with the tile and the K-chunk length chosen by the caller: each chunk of K is
/// one product added to the last (`None`: all of K in one, where the adapter's loop limit
/// allows).
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
    let product =
        Product::new((m, n, k), (a.transposed, b.transposed)).of((a.precision, b.precision));
    // Auto takes the kernel `rnn-wgpu tune` measured fastest for this product, else its rule.
    let kernel = match kernel {
        GemmKernel::Auto => {
            gpu.note_product(product);
            (recorder.policy().gemm(product)).unwrap_or_else(|| GemmKernel::rule(gpu, product))
        }
        forced => forced,
    };
    let computer = if kernel == GemmKernel::MatrixUnits {
        Computer::Coop(matrix_units_for(gpu, product)?)
    } else {
        let tile = kernel.resolve(gpu, (m, n, k));
        if !tile.allowed_by(&gpu.limits) {
            return Err(Error::Config(format!(
                "matrix-product tile {tile}: {} invocations and {} bytes of workgroup memory \
                 are more than '{}' allows",
                tile.invocations(),
                tile.storage_bytes(),
                gpu.info.name
            )));
        }
        Computer::Tile(tile)
    };
    let mut chunk = k_chunk.unwrap_or(k).max(1);
    if let Some(limit) = gpu.loop_limit() {
        chunk = chunk.min(computer.longest_k(limit) as usize);
    }
    let mut first = 0;
    loop {
        let len = chunk.min(k - first);
        // Later chunks add to what the earlier ones stored.
        let part = Output {
            accumulate: first > 0 || c.accumulate,
            bias: c.bias.filter(|_| first == 0),
            ..c
        };
        let operands = (a.skip_k(first, false), b.skip_k(first, true));
        record_product(gpu, recorder, computer, (m, n, len), operands, part, dummy)?;
        first += len;
        if first >= k {
            break;
        }
    }
    Ok(())
}

/// One dispatch of `computer` over all of `k`, in `k_parts` parts of workgroups: with one part
/// straight into C; with more, each part into its slice of the context's partial sums, then
/// `gemm_split_sum` adds them in order with bias and C.
fn record_product(
    gpu: &Gpu,
    recorder: &mut Recorder,
    computer: Computer,
    (m, n, k): (usize, usize, usize),
    (a, b): (Operand, Operand),
    c: Output,
    dummy: &wgpu::Buffer,
) -> Result<(), Error> {
    let parts = parts_of_k(computer.workgroups((m, n)), (m, n, k));
    let (block_rows, block_cols) = computer.block();
    let col_tiles = (n as u64).div_ceil(block_cols) * parts as u64;
    check_dimension(gpu, col_tiles, || {
        format!("a matrix product with {n} columns in {parts} parts of K")
    })?;
    let rows = gpu.grid("matrix product rows", (m as u64).div_ceil(block_rows))?;
    // x: column tiles of each part; the kernel reads row tiles from (y, z)
    let groups = [col_tiles as u32, rows[0], rows[1]];
    let params = GemmParams::of((m, n, k), (a, b), c);
    let bias = c.bias.map_or(dummy, |(buffer, _)| buffer);
    let elements = product_elements((a, b), c);
    if parts == 1 {
        let buffers = [a.buffer, b.buffer, bias, c.buffer];
        let key = (computer.kernel(), elements, computer.shape());
        recorder.dispatch_tiled(key, &params, &buffers, groups);
        return Ok(());
    }
    let partials = gpu.scratch_partials(parts * m * n)?;
    let split = GemmParams {
        c_offset: 0,
        ldc: n as u32,
        accumulate: 0,
        has_bias: 0,
        k_parts: parts as u32,
        ..params
    };
    let buffers = [a.buffer, b.buffer, bias, &partials];
    let into_partials = Elements {
        c: Precision::F32,
        ..elements
    };
    recorder.dispatch_tiled(
        (computer.kernel(), into_partials, computer.shape()),
        &split,
        &buffers,
        groups,
    );
    record_sum_of_parts(gpu, recorder, params, parts, &partials, bias, c)
}

/// The tiles and subgroup size `gemm_coop` runs `product` with, or why it cannot: the matrix
/// units are off here, or an operand is not f16.
fn matrix_units_for(gpu: &Gpu, product: Product) -> Result<CoopShape, Error> {
    let coop = (gpu.matrix_units())
        .map_err(|why| Error::Config(format!("the matrix units are off: {why}")))?;
    if !product.half_operands() {
        let (a, b) = product.operands;
        return Err(Error::Config(format!(
            "the matrix units multiply f16 operands, not {} x {}",
            a.name(),
            b.name()
        )));
    }
    Ok(coop)
}

/// What computes a product: a tile of gemm.wgsl, or gemm_coop on the matrix units with the
/// tiles and subgroup size it runs with.
#[derive(Clone, Copy, Debug)]
enum Computer {
    Tile(GemmTile),
    Coop(CoopShape),
}

/// Tiles of C per workgroup of `gemm_coop` along rows and along columns (`TILES` in
/// gemm_coop.wgsl): its block of C is this many times the edge on a side.
const COOP_TILES: u64 = 2;

impl Computer {
    fn kernel(self) -> Kernel {
        match self {
            Computer::Tile(tile) => tile.kernel(),
            Computer::Coop(_) => Kernel::GemmCoop,
        }
    }

    fn shape(self) -> PipelineShape {
        match self {
            Computer::Tile(tile) => PipelineShape::Gemm(tile),
            Computer::Coop(coop) => PipelineShape::Coop(coop),
        }
    }

    /// Rows and columns of C per workgroup.
    fn block(self) -> (u64, u64) {
        match self {
            Computer::Tile(tile) => (tile.rows(), tile.cols()),
            Computer::Coop(coop) => {
                let block = COOP_TILES * coop.edge.size() as u64;
                (block, block)
            }
        }
    }

    fn workgroups(self, (m, n): (usize, usize)) -> u64 {
        let (rows, cols) = self.block();
        (m as u64).div_ceil(rows) * (n as u64).div_ceil(cols)
    }

    /// The longest K one dispatch may sum where loops end after `limit` iterations, half of
    /// it kept as a margin. For gemm_coop this is the emulation's count (coop_emulation.wgsl),
    /// which bounds the kernel's own loops on real matrix units too (llvmpipe's), per
    /// invocation: per step of an edge along K, the two stagings of block x edge and the 4
    /// loads of edge x edge elements, and the 4 multiply-adds of edge x edge elements of edge
    /// terms, 4 at a time; before and after the steps, 2 passes over the block and 8 tile
    /// loads or stores.
    fn longest_k(self, limit: u64) -> u64 {
        match self {
            Computer::Tile(tile) => tile.longest_k(limit),
            Computer::Coop(coop) => {
                let share = |n: u64| n.div_ceil(coop.subgroup as u64) + 1;
                let (edge, block) = (coop.edge.size() as u64, self.block().0);
                let tile = edge * edge;
                let per_step =
                    2 * share(block * edge) + 4 * share(tile) + 4 * share(tile) * (edge / 4 + 1);
                let fixed = 2 * share(block * block) + 8 * share(tile);
                let steps = (limit / 2).saturating_sub(fixed) / per_step;
                (steps * edge).max(1)
            }
        }
    }
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
    c: Output,
) -> Result<(), Error> {
    let sum = GemmParams {
        a_offset: 0,
        k_parts: parts as u32,
        ..sum
    };
    let groups = gpu.grid(
        "the sum of K's parts",
        (sum.m as u64 * sum.n as u64).div_ceil(64),
    )?;
    // The sum reads the partials as A (op(B) is unused: bias stands in for its binding).
    let elements = Elements {
        c: c.precision,
        ..Elements::F32
    };
    recorder.dispatch_as(
        (Kernel::GemmSplitSum, elements),
        &sum,
        &[partials, bias, bias, c.buffer],
        groups,
    );
    Ok(())
}

/// Into how many parts of workgroups a product's K is split (1: none), each part's partial C
/// written apart and added in order by `gemm_split_sum`: enough parts that about
/// `SPLIT_TARGET_GROUPS` workgroups run, each part at least `PART_MIN_K` long (the weight
/// gradients, K = T * batch, over a small C), or that a K past `CHAIN_FROM_K` is summed in
/// chains of about `CHAIN_K`; all the parts within `SPLIT_PARTIALS_BYTES`.
pub fn k_parts(tile: GemmTile, (m, n, k): (usize, usize, usize)) -> usize {
    parts_of_k(tile.workgroups((m, n)), (m, n, k))
}

/// `k_parts` for a kernel that covers C with `workgroups` workgroups.
fn parts_of_k(workgroups: u64, (m, n, k): (usize, usize, usize)) -> usize {
    let to_fill = (SPLIT_TARGET_GROUPS.div_ceil(workgroups) as usize).min(k / PART_MIN_K);
    let by_bytes = SPLIT_PARTIALS_BYTES / (4 * m * n).max(1);
    to_fill.max(chains(k)).min(by_bytes).max(1)
}

/// The parts a K of `k` terms is summed in for accuracy alone: chains of about `CHAIN_K` past
/// `CHAIN_FROM_K`, else one.
fn chains(k: usize) -> usize {
    if k > CHAIN_FROM_K {
        k.div_ceil(CHAIN_K)
    } else {
        1
    }
}

/// The most words of partial sums a product leaves in `Gpu::scratch_partials`, whatever its
/// tile, for the memory plan (which has no adapter or tile at hand): `k_parts`'s bound.
pub(crate) fn partial_words((m, n, k): (usize, usize, usize)) -> usize {
    let parts = (k / PART_MIN_K).max(chains(k));
    if parts <= 1 {
        return 0;
    }
    (parts * m * n).min(SPLIT_PARTIALS_BYTES / 4)
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
        Placement::padded(0),
        (a, trans_a),
        (b, trans_b),
        bias,
        add_to,
    )?;
    Ok(run.product)
}

/// Where `matmul_using` places each matrix in its buffer: `pad` NaN elements before it and
/// after each of its rows; and the element types A and B are stored in (rounded on upload).
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// NaN elements before each matrix and after each of its rows (0: dense).
    pub pad: usize,
    /// The element types A and B are uploaded in (C and the bias stay f32).
    pub operands: (Precision, Precision),
}

impl Placement {
    /// f32 operands with `pad` NaNs around each matrix.
    pub fn padded(pad: usize) -> Placement {
        Placement {
            pad,
            operands: (Precision::F32, Precision::F32),
        }
    }
}

/// What `matmul_using` computed and how.
pub struct MatmulRun {
    /// `op(A) op(B) (+ bias) (+ C)`, `[M, N]`, read back from C's buffer.
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
    Placement { pad, operands }: Placement,
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
    let stride = |cols: usize| cols + pad;
    let placed = |x: ArrayView2<f32>| -> Vec<f32> {
        let mut words = vec![f32::NAN; pad];
        for row in x.rows() {
            words.extend(row.iter());
            words.extend(std::iter::repeat_n(f32::NAN, stride(x.ncols()) - x.ncols()));
        }
        words
    };
    let upload_as = |what: &str, words: &[f32], precision| -> Result<wgpu::Buffer, Error> {
        let buffer = gpu.storage_buffer_of(what, words.len(), precision)?;
        gpu.queue.write_buffer(&buffer, 0, &precision.encode(words));
        Ok(buffer)
    };
    let upload = |what: &str, words: &[f32]| upload_as(what, words, Precision::F32);
    let a_buf = upload_as("matmul A", &placed(a), operands.0)?;
    let b_buf = upload_as("matmul B", &placed(b), operands.1)?;
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
            ..Operand::new(&a_buf, pad, stride(a.ncols())).of(operands.0)
        },
        Operand {
            transposed: trans_b,
            ..Operand::new(&b_buf, pad, stride(b.ncols())).of(operands.1)
        },
        Output {
            buffer: &c_buf,
            precision: Precision::F32,
            offset: pad,
            row_stride: stride(n),
            accumulate: c0.is_some(),
            bias: bias_buf.as_ref().map(|b| (b, pad)),
        },
        &dummy,
    )?;
    let kernels = recorder.kernels();
    let words = recorder
        .submit_and_read(&[Read::words(&c_buf, 0, c_init.len())])?
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
/// and the entry points one product dispatches.
pub fn time_products(
    gpu: &Gpu,
    kernel: (GemmKernel, Option<usize>),
    product: Product,
    reps: usize,
) -> Result<(f64, Vec<Kernel>), Error> {
    let Product {
        shape: (m, n, k),
        transposed: (trans_a, trans_b),
        operands,
    } = product;
    let filled = |what: &str, words: usize, precision| -> Result<wgpu::Buffer, Error> {
        let buffer = gpu.storage_buffer_of(what, words, precision)?;
        let data: Vec<f32> = (0..words).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
        gpu.queue.write_buffer(&buffer, 0, &precision.encode(&data));
        Ok(buffer)
    };
    let a_buf = filled("bench A", m * k, operands.0)?;
    let b_buf = filled("bench B", k * n, operands.1)?;
    let bias_buf = filled("bench bias", n, Precision::F32)?;
    let c_buf = filled("bench C", m * n, Precision::F32)?;
    let a = Operand {
        transposed: trans_a,
        ..Operand::new(&a_buf, 0, if trans_a { m } else { k }).of(operands.0)
    };
    let b = Operand {
        transposed: trans_b,
        ..Operand::new(&b_buf, 0, if trans_b { k } else { n }).of(operands.1)
    };
    let mut recorder = Recorder::new(gpu);
    let mut kernels = Vec::new();
    for rep in 0..reps.max(1) {
        let c = Output {
            buffer: &c_buf,
            precision: Precision::F32,
            offset: 0,
            row_stride: n,
            accumulate: true,
            bias: Some((&bias_buf, 0)),
        };
        record_gemm_using(gpu, &mut recorder, kernel, (m, n, k), a, b, c, &bias_buf)?;
        if rep == 0 {
            kernels = recorder.kernels();
        }
    }
    let start = std::time::Instant::now();
    recorder.submit_and_read(&[Read::words(&c_buf, 0, 1)])?;
    Ok((start.elapsed().as_secs_f64() / reps.max(1) as f64, kernels))
}
