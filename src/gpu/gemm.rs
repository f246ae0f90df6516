//! Host side of `shaders/gemm.wgsl`: C[M, N] (+)= op(A)[M, K] op(B)[K, N] (+ bias[N]) on
//! matrices addressed inside larger buffers.

use super::context::Gpu;
use super::kernels::Kernel;
use super::recorder::{Read, Recorder};
use crate::Error;
use bytemuck::{Pod, Zeroable};
use ndarray::{Array2, ArrayView2};

/// Output tile edge of the kernel, in both M and N.
const TILE: u64 = 64;

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
    _pad: [u32; 2],
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

/// Records `C = op(A) op(B)` with shapes `[m, k] x [k, n]`.
/// `dummy` is bound in the bias slot when there is no bias.
#[allow(clippy::too_many_arguments)]
pub fn record_gemm(
    gpu: &Gpu,
    recorder: &mut Recorder,
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: Output,
    dummy: &wgpu::Buffer,
) -> Result<(), Error> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let params = GemmParams {
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
        _pad: [0; 2],
    };
    let col_tiles = (n as u64).div_ceil(TILE);
    let row_tiles = gpu.grid("matrix product rows", (m as u64).div_ceil(TILE))?;
    let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
    if col_tiles > max {
        return Err(Error::Limit {
            what: format!("a matrix product with {n} columns"),
            needed: col_tiles,
            limit: max,
            limit_name: "max_compute_workgroups_per_dimension",
            adapter: gpu.info.name.clone(),
        });
    }
    let bias = c.bias.map_or(dummy, |(buffer, _)| buffer);
    recorder.dispatch(
        Kernel::Gemm,
        &params,
        &[a.buffer, b.buffer, bias, c.buffer],
        // x: column tiles; the kernel reads row tiles from (y, z)
        [col_tiles as u32, row_tiles[0], row_tiles[1]],
    );
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
    let (m, k) = if trans_a {
        (a.ncols(), a.nrows())
    } else {
        a.dim()
    };
    let (kb, n) = if trans_b {
        (b.ncols(), b.nrows())
    } else {
        b.dim()
    };
    if k != kb {
        return Err(Error::Shape {
            what: "matmul operand B".into(),
            got: b.shape().to_vec(),
            expected: if trans_b { vec![n, k] } else { vec![k, n] },
        });
    }
    let upload = |what: &str, data: &[f32]| -> Result<wgpu::Buffer, Error> {
        let buffer = gpu.storage_buffer(what, data.len())?;
        gpu.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        Ok(buffer)
    };
    let a_std = a.as_standard_layout();
    let b_std = b.as_standard_layout();
    let a_buf = upload("matmul A", a_std.as_slice().unwrap())?;
    let b_buf = upload("matmul B", b_std.as_slice().unwrap())?;
    let c_buf = gpu.storage_buffer("matmul C", m * n)?;
    if let Some(c0) = add_to {
        crate::params::check_shape("matmul C", c0.shape(), &[m, n])?;
        let c_std = c0.as_standard_layout();
        gpu.queue
            .write_buffer(&c_buf, 0, bytemuck::cast_slice(c_std.as_slice().unwrap()));
    }
    let bias_buf = bias.map(|v| upload("matmul bias", v)).transpose()?;
    let dummy = gpu.storage_buffer("unused binding", 0)?;
    let mut recorder = Recorder::new(gpu);
    record_gemm(
        gpu,
        &mut recorder,
        (m, n, k),
        Operand {
            transposed: trans_a,
            ..Operand::new(&a_buf, 0, a.ncols())
        },
        Operand {
            transposed: trans_b,
            ..Operand::new(&b_buf, 0, b.ncols())
        },
        Output {
            buffer: &c_buf,
            offset: 0,
            row_stride: n,
            accumulate: add_to.is_some(),
            bias: bias_buf.as_ref().map(|b| (b, 0)),
        },
        &dummy,
    )?;
    let mut data = recorder.submit_and_read(&[Read {
        buffer: &c_buf,
        offset: 0,
        len: m * n,
    }])?;
    Ok(Array2::from_shape_vec((m, n), data.remove(0)).unwrap())
}
