//! The texel matrix products' operands (shaders/gemm_texels.wgsl): for each K-chunk, op(B)
//! goes into a scratch texture with texels along N, and op(A) into one with texels along M or,
//! where that is a plain copy, along K. A block whose layout wgpu can copy (rows of whole texels,
//! 16-byte offset, 256-byte row stride) is copied; any other is packed by `pack_texels`
//! (shaders/pack.wgsl), which also transposes. `Recorder::holds` leaves out a fill the texture
//! already holds, so the recurrent weights are filled once per pass, not once per step.

use super::context::Gpu;
use super::gemm::{GemmKernel, Operand};
use super::kernels::Kernel;
use super::recorder::{Bound, Recorder, TexelSource};
use crate::Error;
use bytemuck::{Pod, Zeroable};

/// Words per texel.
const TEXEL: usize = 4;

/// The scratch textures of one product hold at most about this much (a weight gradient's
/// operands over all T x B rows would take hundreds of MiB): longer products run in K-chunks.
const TEXTURE_BYTES: usize = 8 << 20;

/// The shortest K-chunk the byte limit may ask for (each chunk costs a dispatch and a store
/// and reload of C).
const MIN_CHUNK: usize = 256;

/// wgpu's `COPY_BYTES_PER_ROW_ALIGNMENT` in f32 words.
const ROW_ALIGN: usize = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize / 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PackParams {
    rows: u32,
    cols: u32,
    offset: u32,
    stride_y: u32,
    stride_x: u32,
}

/// One operand's texture for one K-chunk: what fills it, and whether a copy can.
#[derive(Clone)]
pub(crate) struct Fill {
    source: TexelSource,
    copy: bool,
}

/// A chunk's two textures and the entry point that reads them.
pub(crate) struct Plan {
    pub entry: Kernel,
    pub a: Fill,
    pub b: Fill,
}

/// Element (k, o) of op(X) for k in first..first+len and o < outer, where op(X)[k, o] is at
/// `stride_k * k + stride_o * o` from the operand's offset: texels along o (`along_k` false,
/// texel (x, y) = o in 4x..4x+3 at k = first + y) or along k (texel (x, y) = k in
/// first + 4x.. at o = y).
fn source(
    x: &Operand,
    (stride_k, stride_o): (usize, usize),
    outer: usize,
    (first, len): (usize, usize),
    along_k: bool,
) -> TexelSource {
    let (stride_y, stride_x, rows, cols) = if along_k {
        (stride_o, stride_k, outer, len)
    } else {
        (stride_k, stride_o, len, outer)
    };
    TexelSource {
        buffer: x.buffer.clone(),
        offset: x.offset + first * stride_k,
        stride_y,
        stride_x,
        rows,
        cols,
    }
}

/// Whether a buffer-to-texture copy can fill a texture with `s`.
fn copyable(s: &TexelSource) -> bool {
    s.stride_x == 1
        && s.cols.is_multiple_of(TEXEL)
        && s.offset.is_multiple_of(TEXEL)
        && (s.rows == 1 || s.stride_y.is_multiple_of(ROW_ALIGN))
}

/// The texels for the product's K-chunk `chunk` (from a multiple of 4), or None where a
/// texture would exceed the adapter's limit.
fn plan(
    gpu: &Gpu,
    (a, b): (&Operand, &Operand),
    (m, n): (usize, usize),
    chunk: (usize, usize),
) -> Option<Plan> {
    let max = gpu.limits.max_texture_dimension_2d as usize;
    let fits = |s: &TexelSource| s.rows <= max && s.cols.div_ceil(TEXEL) <= max;
    let a_strides = if a.transposed {
        (a.row_stride, 1)
    } else {
        (1, a.row_stride)
    };
    let b_strides = if b.transposed {
        (1, b.row_stride)
    } else {
        (b.row_stride, 1)
    };
    let b_source = source(b, b_strides, n, chunk, false);
    let along_m = source(a, a_strides, m, chunk, false);
    let along_k = source(a, a_strides, m, chunk, true);
    // A copy along M, else a copy along K, else packed along M.
    let (entry, a_source) = if !copyable(&along_m) && copyable(&along_k) && fits(&along_k) {
        (Kernel::GemmTexelsNn, along_k)
    } else {
        (Kernel::GemmTexelsTn, along_m)
    };
    if !fits(&a_source) || !fits(&b_source) {
        return None;
    }
    let fill = |source: TexelSource| Fill {
        copy: copyable(&source),
        source,
    };
    Some(Plan {
        entry,
        a: fill(a_source),
        b: fill(b_source),
    })
}

/// The K-chunk length and each chunk's plan for an [m, k] x [k, n] product whose lanes kernel
/// would take chunks of `chunk` rows, or None where a texture would not fit (or, with
/// `copies_only`, op(A) would need packing). The chunks are a multiple of 4 rows within the
/// adapter's limit, and no longer than `MIN_CHUNK` or what keeps both textures within
/// `TEXTURE_BYTES`, whichever is longer; K within those limits is one chunk.
pub(crate) fn plans(
    gpu: &Gpu,
    (a, b): (&Operand, &Operand),
    (m, n, k): (usize, usize, usize),
    chunk: usize,
    copies_only: bool,
) -> Option<(usize, Vec<Plan>)> {
    let max = gpu.limits.max_texture_dimension_2d as usize;
    let limit = chunk.min(chunk_limit((m, n))).min(max);
    let chunk = if k <= limit {
        k
    } else {
        limit.max(TEXEL) / TEXEL * TEXEL
    };
    let plans = (0..k)
        .step_by(chunk.max(1))
        .map(|first| plan(gpu, (a, b), (m, n), (first, chunk.min(k - first))))
        .collect::<Option<Vec<_>>>()?;
    let usable = !plans.is_empty() && (!copies_only || plans.iter().all(|plan| plan.a.copy));
    usable.then_some((chunk, plans))
}

/// The longest K-chunk of an [m, k] x [k, n] texel product: `MIN_CHUNK` rows or what keeps
/// both textures within `TEXTURE_BYTES`, whichever is longer.
fn chunk_limit((m, n): (usize, usize)) -> usize {
    (TEXTURE_BYTES / (4 * (m + n))).max(MIN_CHUNK)
}

/// About how many words of textures an [m, k] x [k, n] product fills, if it runs from textures
/// where `GemmKernel::Auto` takes it (`lanes_choice`), for the memory plan.
pub(crate) fn words_for((m, n, k): (usize, usize, usize), accumulate: bool) -> usize {
    let lanes = GemmKernel::lanes_choice((m, n, k), accumulate);
    if !matches!(lanes, GemmKernel::Lanes64x8 { .. }) {
        return 0;
    }
    (m + n) * k.min(chunk_limit((m, n)))
}

/// Records what fills operand `slot`'s scratch texture of this size (0: A, 1: B), unless it
/// holds that already, and returns the texture to bind.
pub(crate) fn fill(
    gpu: &Gpu,
    recorder: &mut Recorder,
    slot: usize,
    fill: Fill,
) -> Result<Bound, Error> {
    let s = fill.source;
    let width = s.cols.div_ceil(TEXEL);
    let view = gpu.scratch_texels(slot, (width as u32, s.rows as u32));
    if !recorder.holds(&view, &s) {
        if fill.copy {
            recorder.copy_texels(&view, s);
        } else {
            let params = PackParams {
                rows: s.rows as u32,
                cols: s.cols as u32,
                offset: s.offset as u32,
                stride_y: s.stride_y as u32,
                stride_x: s.stride_x as u32,
            };
            let groups = gpu.grid("texels to pack", (width * s.rows).div_ceil(64) as u64)?;
            let bound = vec![Bound::Buffer(s.buffer.clone()), Bound::Texels(view.clone())];
            recorder.dispatch_bound(Kernel::PackTexels, &params, bound, groups);
            recorder.hold(&view, s);
        }
    }
    Ok(Bound::Texels(view))
}
