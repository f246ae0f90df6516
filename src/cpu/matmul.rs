//! Matrix products for the CPU reference: `c = a b + beta c` for operands of any layout and a
//! row-major `c`. In f32, where the per-step products' packed kernel runs (`packed.rs`: AVX-512
//! or AVX2), tall products with a small right operand stream blocks of rows past it packed
//! once, and long ones (the weight gradients) run as packed K-blocks; the rest go to
//! matrixmultiply's GEMM (through ndarray). Each is split into blocks over the threads.
//! Products with one small dimension (an input or output width of a few features) would spend
//! most of their time packing, so they have loops of their own that stream the large operand
//! once.

use super::math::dot;
use super::packed::panels::PANEL;
use super::packed::{self, PackedWeight};
use super::parallel;
use crate::float::Float;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayRef2, ArrayView1, Axis};

/// Dimensions up to this take the streaming kernels instead of GEMM.
const SKINNY: usize = 8;

/// The largest right operand (elements) packed for `PackedWeight`: 1 MiB of f32, whose panels
/// stay in a core's L2 while the left operand streams past.
const PACKED_MAX: usize = 1 << 18;

/// Products with at least this K (and N > SKINNY) run as K-blocks of `K_BLOCK` rows through
/// the packed kernel where it runs (f32 on AVX2 or AVX-512).
const LONG_K: usize = 1024;
const K_BLOCK: usize = 512;

/// Rows (or columns) of a GEMM block are a multiple of this: whole microkernel tiles.
const TILE: usize = 8;

/// A K past `CHAIN_FROM_K` is summed in blocks of `CHAIN_K` terms, each block's product into a
/// buffer of its own, added into c in order: an f32 sum's rounding error grows with its chain,
/// and the weight and bias gradients sum all T * B rows (a head gradient over 160,000 rows,
/// whose terms cancel, was off by 6e-4 in one chain). The GPU's kernels do the same
/// (`gpu::gemm::CHAIN_K`).
const CHAIN_K: usize = 4096;
const CHAIN_FROM_K: usize = 4 * CHAIN_K;

/// The product `a b`, `[M, N]`, for a `[M, K]` and b `[K, N]`, row-major.
pub fn product<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>) -> Array2<F> {
    let mut c = parallel::zeros((a.nrows(), b.ncols()));
    product_into(a, b, F::zero(), &mut c);
    c
}

/// `c = a b + beta c` for a `[M, K]`, b `[K, N]`, c `[M, N]`, on as many threads as pay off. With
/// beta = 0 the old values of c are not read.
pub fn product_into<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
    let ((m, k), n) = (a.dim(), b.ncols());
    assert_eq!((b.nrows(), c.dim()), (k, (m, n)), "product shapes disagree");
    if m == 0 || n == 0 {
        return;
    }
    if k > CHAIN_FROM_K {
        return chained_product_into(a, b, beta, c);
    }
    if c.is_standard_layout() && k > 0 {
        if k <= SKINNY {
            return few_terms_into(a, b, beta, c);
        }
        if m <= SKINNY && b.is_standard_layout() {
            return few_rows_into(a, b, beta, c);
        }
        if n <= SKINNY && a.is_standard_layout() {
            return few_columns_into(a, b, beta, c);
        }
        if n <= SKINNY && a.t().is_standard_layout() {
            // A row-major transpose of a (dW_ih = dgates^T x): c^T = b^T a^T has few rows, the
            // case above but one.
            let c_transposed = product(&b.t(), &a.t());
            c.zip_mut_with(&c_transposed.t(), |c, &product| {
                *c = if beta == F::zero() {
                    product
                } else {
                    product + beta * *c
                }
            });
            return;
        }
        if m >= n && k * n <= PACKED_MAX && a.strides()[1] == 1 {
            return packed_right_into(a, b, beta, c);
        }
        if k >= LONG_K && packed::packs::<F>() {
            return packed_k_blocks_into(a, b, beta, c);
        }
    }
    // GEMM, in blocks of whole tiles along the longer side of c.
    let axis = if m >= n { Axis(0) } else { Axis(1) };
    let len = c.len_of(axis);
    let block = parallel::chunk_len(len, threads_for(a, b, len.div_ceil(TILE)), TILE);
    let c_blocks = c.axis_chunks_iter_mut(axis, block);
    if axis == Axis(0) {
        let blocks = a.axis_chunks_iter(Axis(0), block);
        parallel::run(blocks.zip(c_blocks), |(a, mut c)| {
            serial_product_into(&a, b, beta, &mut c)
        });
    } else {
        let blocks = b.axis_chunks_iter(Axis(1), block);
        parallel::run(blocks.zip(c_blocks), |(b, mut c)| {
            serial_product_into(a, &b, beta, &mut c)
        });
    }
}

/// Threads for a product of `a b` split into `units` blocks, by its multiply-adds.
fn threads_for<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, units: usize) -> usize {
    parallel::parts(a.nrows() * a.ncols() * b.ncols(), units)
}

/// `threads_for`, or more where the product streams more memory than it computes: the
/// products with a dimension of a few features do a few multiply-adds per element they
/// stream, so memory, not arithmetic, says when another thread pays.
fn streaming_threads_for<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, units: usize) -> usize {
    let ((m, k), n) = (a.dim(), b.ncols());
    threads_for(a, b, units).max(parallel::streaming_parts(m * n + m * k + k * n, units))
}

/// A K past `CHAIN_FROM_K`: the product of each block of `CHAIN_K` terms summed into c in
/// order (the first with beta, the rest through a buffer of their own).
fn chained_product_into<F: Float>(
    a: &ArrayRef2<F>,
    b: &ArrayRef2<F>,
    beta: F,
    c: &mut ArrayRef2<F>,
) {
    let k = a.ncols();
    let mut block = Array2::zeros(c.dim());
    for start in (0..k).step_by(CHAIN_K) {
        let end = (start + CHAIN_K).min(k);
        let (a, b) = (a.slice(s![.., start..end]), b.slice(s![start..end, ..]));
        if start == 0 {
            product_into(&a, &b, beta, c);
        } else {
            product_into(&a, &b, F::zero(), &mut block);
            c.zip_mut_with(&block, |c, &sum| *c = *c + sum);
        }
    }
}

/// K of a few features (the input projection of a few inputs): each row of c is a few scaled
/// rows of b. Splits the rows of c.
fn few_terms_into<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
    let b = b.as_standard_layout();
    let m = a.nrows();
    let rows = parallel::chunk_len(m, streaming_threads_for(a, &b, m), 1);
    let blocks = a.axis_chunks_iter(Axis(0), rows);
    let c_blocks = c.axis_chunks_iter_mut(Axis(0), rows);
    parallel::run(blocks.zip(c_blocks), |(a, mut c)| {
        for (a_row, c_row) in a.rows().into_iter().zip(c.rows_mut()) {
            let c_row = c_row.into_slice().expect("c is row-major");
            scale(c_row, beta);
            for (&a, b_row) in a_row.iter().zip(b.rows()) {
                axpy(a, row_slice(&b_row), c_row);
            }
        }
    });
}

/// c of a few rows that every row of b adds into (dW = x^T dgates): c stays in cache while b
/// streams through once. Splits the columns.
fn few_rows_into<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
    let n = b.ncols();
    let threads = streaming_threads_for(a, b, n.div_ceil(TILE));
    let columns = parallel::chunk_len(n, threads, TILE);
    let b_blocks = b.axis_chunks_iter(Axis(1), columns);
    let c_blocks = c.axis_chunks_iter_mut(Axis(1), columns);
    parallel::run(b_blocks.zip(c_blocks), |(b, mut c)| {
        let mut c_rows: Vec<&mut [F]> = c
            .rows_mut()
            .into_iter()
            .map(|row| row.into_slice().expect("c rows are contiguous"))
            .collect();
        c_rows.iter_mut().for_each(|row| scale(row, beta));
        for (a_column, b_row) in a.columns().into_iter().zip(b.rows()) {
            let b_row = row_slice(&b_row);
            for (&a, c_row) in a_column.iter().zip(c_rows.iter_mut()) {
                axpy(a, b_row, c_row);
            }
        }
    });
}

/// c of a few columns, each entry a dot product of a row-major row of a and a column of b
/// (dx = dgates W_ih): a streams through once. Splits the rows.
fn few_columns_into<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
    let m = a.nrows();
    let b_columns = b.t().as_standard_layout().into_owned();
    let rows = parallel::chunk_len(m, streaming_threads_for(a, b, m), 1);
    let blocks = a.axis_chunks_iter(Axis(0), rows);
    let c_blocks = c.axis_chunks_iter_mut(Axis(0), rows);
    parallel::run(blocks.zip(c_blocks), |(a, mut c)| {
        for (a_row, c_row) in a.rows().into_iter().zip(c.rows_mut()) {
            let a_row = row_slice(&a_row);
            for (c, b_column) in c_row.into_iter().zip(b_columns.rows()) {
                let sum = dot(a_row, row_slice(&b_column));
                *c = if beta == F::zero() {
                    sum
                } else {
                    sum + beta * *c
                };
            }
        }
    });
}

/// A tall product with a small right operand (the input projection x W_ih^T, dx = dgates
/// W_ih): b packed once into the per-step products' panels, which stay in cache, and blocks of
/// a's rows streamed past them.
fn packed_right_into<F: Float>(a: &ArrayRef2<F>, b: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
    let m = a.nrows();
    let packed = PackedWeight::new(b.view());
    let rows = parallel::chunk_len(m, threads_for(a, b, m.div_ceil(TILE)), TILE);
    let blocks = a.axis_chunks_iter(Axis(0), rows);
    let c_blocks = c.axis_chunks_iter_mut(Axis(0), rows);
    parallel::run(blocks.zip(c_blocks), |(a, mut c)| {
        packed.product_into(&a, beta, &mut c)
    });
}

/// A long product (the weight gradients dW = dgates^T h over all T * B rows): b in blocks of
/// K_BLOCK rows, each packed into panels that stay in L2 while all of a's rows stream past, the
/// columns of c split over the threads; c adds up the blocks.
fn packed_k_blocks_into<F: Float>(
    a: &ArrayRef2<F>,
    b: &ArrayRef2<F>,
    beta: F,
    c: &mut ArrayRef2<F>,
) {
    let (k, n) = b.dim();
    let cols = parallel::chunk_len(n, threads_for(a, b, n.div_ceil(2 * PANEL)), 2 * PANEL);
    let b_blocks = b.axis_chunks_iter(Axis(1), cols);
    let c_blocks = c.axis_chunks_iter_mut(Axis(1), cols);
    parallel::run(b_blocks.zip(c_blocks), |(b, mut c)| {
        for start in (0..k).step_by(K_BLOCK) {
            let end = (start + K_BLOCK).min(k);
            let packed = PackedWeight::new(b.slice(s![start..end, ..]));
            let beta = if start == 0 { beta } else { F::one() };
            packed.product_into(&a.slice(s![.., start..end]), beta, &mut c);
        }
    });
}

/// `c = a b + beta c` on the calling thread: one block of a product split over the threads.
fn serial_product_into<F: Float>(
    a: &ArrayRef2<F>,
    b: &ArrayRef2<F>,
    beta: F,
    c: &mut ArrayRef2<F>,
) {
    general_mat_mul(F::one(), a, b, beta, c);
}

/// `y = a x + y` over two slices of one length.
#[inline]
fn axpy<F: Float>(a: F, x: &[F], y: &mut [F]) {
    assert_eq!(x.len(), y.len(), "axpy of slices of different lengths");
    for (y, &x) in y.iter_mut().zip(x) {
        *y = *y + a * x;
    }
}

/// `y = beta y`, where beta = 0 writes zeros whatever y held.
fn scale<F: Float>(y: &mut [F], beta: F) {
    if beta == F::zero() {
        y.fill(F::zero());
    } else if beta != F::one() {
        y.iter_mut().for_each(|y| *y = *y * beta);
    }
}

/// A row of a row-major matrix as a slice.
fn row_slice<'a, F>(row: &'a ArrayView1<'_, F>) -> &'a [F] {
    row.as_slice()
        .expect("rows of a row-major matrix are contiguous")
}

/// The column sums of rows `[R, N]`, as a product with a row of ones: its kernel streams the
/// rows once, over all threads.
pub fn column_sums<F: Float>(rows: &ArrayRef2<F>) -> Array1<F> {
    let ones = Array2::ones((1, rows.nrows()));
    product(&ones, rows)
        .into_shape_with_order(rows.ncols())
        .expect("one row")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ShapeBuilder;

    /// The naive triple loop in f64.
    fn naive(a: &Array2<f64>, b: &Array2<f64>, beta: f64, c: &Array2<f64>) -> Array2<f64> {
        Array2::from_shape_fn(c.dim(), |(i, j)| {
            (0..a.ncols()).map(|p| a[[i, p]] * b[[p, j]]).sum::<f64>() + beta * c[[i, j]]
        })
    }

    fn filled(rows: usize, cols: usize, column_major: bool, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols).set_f(column_major), |(i, j)| {
            ((i * 31 + j * 17 + seed * 7) % 23) as f64 / 11.0 - 1.0
        })
    }

    /// Every kernel (streaming rows, streaming columns, dots, the transposed case, the packed
    /// small right operand, the packed K-blocks of a long product, GEMM, and blocks over
    /// threads for the large ones), both layouts of each operand, beta 0 and 1.5.
    #[test]
    fn every_path_matches_the_triple_loop() {
        let shapes = [
            (5, 3, 7),
            (300, 2, 1000),
            (1000, 2, 300),
            (3, 700, 600),
            (600, 700, 2),
            (700, 600, 5),
            (33, 17, 9),
            (257, 130, 513),
            (1000, 64, 96),
            (130, 513, 40),
            (70, 1100, 40),
            (33, 2050, 9),
            (1, 1, 1),
            (4, 0, 3),
        ];
        for (m, k, n) in shapes {
            for layout in 0..4 {
                let a = filled(m, k, layout & 1 == 1, 1);
                let b = filled(k, n, layout & 2 == 2, 2);
                for beta in [0.0, 1.5] {
                    let start = filled(m, n, false, 3);
                    let expected = naive(&a, &b, beta, &start);
                    let mut c = start.clone();
                    product_into(&a, &b, beta, &mut c);
                    let error = (&c - &expected)
                        .mapv(f64::abs)
                        .fold(0.0f64, |m, &e| m.max(e));
                    assert!(error < 1e-9, "m {m} k {k} n {n} layout {layout}: {error}");
                    // f32 through the same paths.
                    let mut c32 = start.mapv(|v| v as f32);
                    product_into(
                        &a.mapv(|v| v as f32),
                        &b.mapv(|v| v as f32),
                        beta as f32,
                        &mut c32,
                    );
                    let error = (&c32.mapv(f64::from) - &expected)
                        .mapv(f64::abs)
                        .fold(0.0f64, |m, &e| m.max(e));
                    assert!(error < 1e-6 * (k as f64 + 1.0) * 4.0, "f32 {m} {k} {n}");
                }
            }
        }
    }
}
