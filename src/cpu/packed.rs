//! The per-step products of the time loops, `a W` with a weight that stays fixed for a whole
//! pass (W_hh^T forward, W_hh backward). A general GEMM packs its whole right operand and
//! allocates its buffers at every call, which here means every step: a sixth of a training
//! step went there. So in f32 on x86-64 with AVX2 and FMA the weight is packed once, into
//! panels of 16 columns, and each step streams the rows of `a` (read in place at its strides)
//! against the panels with a 6 x 16 register tile: twelve 8-wide accumulators, two loads and six
//! broadcasts per twelve fused multiply-adds. Where the CPU has AVX-512 the same panels feed an
//! 8 x 32 tile of 16-wide accumulators (two panels side by side): twice the work per instruction
//! and half the loads per multiply-add. Each element is the same chain of fused multiply-adds
//! over k in order in both, so they give the same bits. Elsewhere (f64, other CPUs) it is
//! matrixmultiply.

pub(super) mod panels;
#[cfg(target_arch = "x86_64")]
mod wide;

#[cfg(target_arch = "x86_64")]
use super::math::{has_avx2, has_avx512};
use crate::float::Float;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayRef2, ArrayView2};
use panels::{Product, PANEL};
use std::any::TypeId;

/// Rows of the AVX2 kernel's register tile (`panels::PANEL` is its columns).
const TILE_ROWS: usize = 6;

/// A weight w `[K, N]` prepared as the right operand of many products.
pub struct PackedWeight<'a, F> {
    weight: ArrayView2<'a, F>,
    /// For each panel of 16 columns, its K rows one after another (zero beyond column N); only
    /// where the f32 kernel runs.
    panels: Option<Vec<f32>>,
}

impl<'a, F: Float> PackedWeight<'a, F> {
    pub fn new(weight: ArrayView2<'a, F>) -> Self {
        let panels = packs::<F>().then(|| pack(weight.view()));
        PackedWeight { weight, panels }
    }

    /// `c = a w + beta c` for a `[M, K]` (any non-negative strides: a transposed view too) and c
    /// `[M, N]` (rows contiguous; beta = 0 ignores c's old values), on the calling thread,
    /// allocating nothing.
    pub fn product_into(&self, a: &ArrayRef2<F>, beta: F, c: &mut ArrayRef2<F>) {
        let (k, n) = self.weight.dim();
        let m = a.nrows();
        assert_eq!((a.ncols(), c.dim()), (k, (m, n)), "product shapes disagree");
        let rows_contiguous = |strides: &[isize]| strides[1] == 1 && strides[0] >= 0;
        let forward = |strides: &[isize]| strides[0] >= 0 && strides[1] >= 0;
        match &self.panels {
            Some(panels) if forward(a.strides()) && rows_contiguous(c.strides()) => {
                let beta = beta.to_f32().expect("F is f32");
                // SAFETY: F is f32 (the panels exist only then), so the casts keep the type;
                // a holds m x k elements at its strides, c m rows of n at its row stride; c,
                // being borrowed mutably, overlaps neither a nor the panels; the CPU has AVX2
                // and FMA (checked when packing).
                unsafe {
                    rows_times_panels(Product {
                        m,
                        k,
                        n,
                        a: a.as_ptr().cast::<f32>(),
                        lda: (a.strides()[0] as usize, a.strides()[1] as usize),
                        w: panels,
                        beta,
                        c: c.as_mut_ptr().cast::<f32>(),
                        ldc: c.strides()[0] as usize,
                    });
                }
            }
            _ => general_mat_mul(F::one(), a, &self.weight, beta, c),
        }
    }
}

/// The panels of `weight` `[K, N]`: for each panel of 16 columns, its K rows one after another
/// (zero beyond column N). A transposed weight (W_hh^T, whose columns are W_hh's rows) is read
/// a column at a time: read element by element across its columns, packing took as long as a
/// few time steps.
fn pack<F: Float>(weight: ArrayView2<'_, F>) -> Vec<f32> {
    let (k, n) = weight.dim();
    let mut panels = vec![0.0f32; k * n.div_ceil(PANEL) * PANEL];
    let f32_of = |w: &F| w.to_f32().expect("F is f32");
    if weight.t().is_standard_layout() {
        for (j, column) in weight.columns().into_iter().enumerate() {
            let start = j / PANEL * k * PANEL + j % PANEL;
            let column = column.to_slice().expect("a column of a transposed weight");
            for (packed, w) in panels[start..].iter_mut().step_by(PANEL).zip(column) {
                *packed = f32_of(w);
            }
        }
        return panels;
    }
    for (panel, chunk) in panels.chunks_exact_mut(k * PANEL).enumerate() {
        let columns = weight.slice(s![.., panel * PANEL..n.min((panel + 1) * PANEL)]);
        for (row, packed) in columns
            .rows()
            .into_iter()
            .zip(chunk.chunks_exact_mut(PANEL))
        {
            packed.iter_mut().zip(row).for_each(|(p, w)| *p = f32_of(w));
        }
    }
    panels
}

/// Whether `PackedWeight<F>` runs the packed kernel (f32 on a CPU that has it) rather than
/// matrixmultiply.
pub fn packs<F: Float>() -> bool {
    TypeId::of::<F>() == TypeId::of::<f32>() && kernel_available()
}

/// Whether this CPU runs the kernel (AVX2 and FMA, unless `math::isa` is capped below).
fn kernel_available() -> bool {
    cfg!(target_arch = "x86_64") && has_avx2()
}

/// `p`'s product on AVX-512 where the CPU has it, else on AVX2.
///
/// # Safety
/// As `PackedWeight::product_into` states: a and c hold what `Product` says, c overlaps
/// neither a nor the panels; x86-64 with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
unsafe fn rows_times_panels(p: Product) {
    assert!(p.w.len() >= p.k * p.n.div_ceil(PANEL) * PANEL);
    // SAFETY: as this function's; the AVX-512 one also needs AVX-512F, just checked.
    unsafe {
        if has_avx512() {
            wide::rows_times_panels(p);
        } else {
            rows_times_panels_avx2(p);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn rows_times_panels(_: Product) {
    unreachable!("the kernel exists only on x86-64")
}

/// `rows_times_panels` with 6 x 16 tiles of 8-wide accumulators.
///
/// # Safety
/// As `rows_times_panels`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_times_panels_avx2(p: Product) {
    for panel in 0..p.n.div_ceil(PANEL) {
        let cols = PANEL.min(p.n - panel * PANEL);
        let mut row = 0;
        // SAFETY (each call): rows row..row+R of a and c, columns of this panel, exist.
        unsafe {
            while row + TILE_ROWS <= p.m {
                tile::<TILE_ROWS>(p.part(row, TILE_ROWS, panel, cols));
                row += TILE_ROWS;
            }
            if row < p.m {
                let rest = p.part(row, p.m - row, panel, cols);
                match rest.m {
                    1 => tile::<1>(rest),
                    2 => tile::<2>(rest),
                    3 => tile::<3>(rest),
                    4 => tile::<4>(rest),
                    _ => tile::<5>(rest),
                }
            }
        }
    }
}

/// R rows of c over one panel (its first `p.n` <= 16 columns): `c = a w_panel + beta c`.
///
/// # Safety
/// As `rows_times_panels`, for `p` with R rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(p: Product) {
    use std::arch::x86_64::*;
    let (k, cols, a, lda, w) = (p.k, p.n, p.a, p.lda, p.w);
    let (beta, c, ldc) = (p.beta, p.c, p.ldc);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (p, w) in w.chunks_exact(PANEL).take(k).enumerate() {
        let w0 = _mm256_loadu_ps(w.as_ptr());
        let w1 = _mm256_loadu_ps(w[8..].as_ptr());
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row i < R, column p < k.
            let a_ip = _mm256_broadcast_ss(unsafe { &*a.add(i * lda.0 + p * lda.1) });
            acc[0] = _mm256_fmadd_ps(a_ip, w0, acc[0]);
            acc[1] = _mm256_fmadd_ps(a_ip, w1, acc[1]);
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        // SAFETY: row i < R of c, first `cols` columns.
        let c = unsafe { c.add(i * ldc) };
        if cols == PANEL {
            for (half, &acc) in acc.iter().enumerate() {
                unsafe {
                    let c = c.add(8 * half);
                    let sum = if beta == 0.0 {
                        acc
                    } else {
                        _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), acc)
                    };
                    _mm256_storeu_ps(c, sum);
                }
            }
        } else {
            let mut row = [0.0f32; PANEL];
            _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(row[8..].as_mut_ptr(), acc[1]);
            for (j, &sum) in row.iter().enumerate().take(cols) {
                let c = unsafe { &mut *c.add(j) };
                *c = if beta == 0.0 {
                    sum
                } else {
                    beta.mul_add(*c, sum)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    /// The AVX2 and AVX-512 kernels directly, on random f32 data with row strides wider than the
    /// rows: the same bits (the same chain of fused multiply-adds per element), and within
    /// rounding of f64. Heights 1-17 cover every leftover tile of both (6 and 8 rows), widths
    /// odd and even panel counts and partial panels. The AVX-512 kernel runs only on a CPU that
    /// has it (the test says which ran); on one without AVX2 and FMA the test checks that f32
    /// products fall back to matrixmultiply instead.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_and_avx512_kernels_agree_bit_for_bit() {
        if !kernel_available() {
            // Neither kernel can run here; what must hold is that nothing routes f32 to them.
            eprintln!("no AVX2 and FMA: neither kernel runs on this CPU (matrixmultiply does)");
            assert!(!packs::<f32>());
            assert!(PackedWeight::new(Array2::<f32>::zeros((3, 17)).view())
                .panels
                .is_none());
            return;
        }
        let mut seed = 0x2545_f491_u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f32 / 1000.0 - 1.0
        };
        let wide_too = has_avx512();
        eprintln!("AVX-512 kernel checked: {wide_too}");
        for (m, k, n) in [
            (1, 1, 1),
            (17, 33, 40),
            (9, 65, 48),
            (7, 3, 17),
            (16, 129, 64),
        ] {
            let a: Vec<f32> = (0..m * (k + 3)).map(|_| random()).collect();
            let w = Array2::from_shape_fn((k, n), |_| random());
            let panels = PackedWeight::new(w.view()).panels.expect("f32 panels");
            let start: Vec<f32> = (0..m * (n + 5)).map(|_| random()).collect();
            for beta in [0.0, 0.5] {
                let run = |wide: bool| {
                    let mut c = start.clone();
                    // SAFETY: a holds m rows of k at stride k + 3, c m rows of n at stride
                    // n + 5; the CPU has AVX2 and FMA, and AVX-512 where `wide`.
                    unsafe {
                        let product = Product {
                            m,
                            k,
                            n,
                            a: a.as_ptr(),
                            lda: (k + 3, 1),
                            w: &panels,
                            beta,
                            c: c.as_mut_ptr(),
                            ldc: n + 5,
                        };
                        if wide {
                            wide::rows_times_panels(product);
                        } else {
                            rows_times_panels_avx2(product);
                        }
                    }
                    c
                };
                let narrow = run(false);
                for i in 0..m {
                    for j in 0..n + 5 {
                        let got = narrow[i * (n + 5) + j];
                        let old = start[i * (n + 5) + j];
                        if j >= n {
                            assert_eq!(got, old, "wrote past column {n} at ({i}, {j})");
                            continue;
                        }
                        let want: f64 = (0..k)
                            .map(|p| a[i * (k + 3) + p] as f64 * w[[p, j]] as f64)
                            .sum::<f64>()
                            + beta as f64 * old as f64;
                        let scale = (0..k)
                            .map(|p| (a[i * (k + 3) + p] * w[[p, j]]).abs())
                            .sum::<f32>();
                        // f32 sums of k + 1 terms: at most k + 1 roundings of 2^-24 each.
                        let bound = (k + 1) as f64 * 6e-8 * (scale as f64 + old.abs() as f64);
                        assert!(
                            (got as f64 - want).abs() <= bound,
                            "({m}, {k}, {n}) beta {beta} at ({i}, {j}): {got} against {want}"
                        );
                    }
                }
                if wide_too {
                    let wide = run(true);
                    let differ = narrow
                        .iter()
                        .zip(&wide)
                        .filter(|(x, y)| x.to_bits() != y.to_bits());
                    assert_eq!(
                        differ.count(),
                        0,
                        "({m}, {k}, {n}) beta {beta}: AVX-512 against AVX2"
                    );
                }
            }
        }
    }

    /// Every tile height (1 to 6 rows left over), full and partial panels, beta 0 and 2, f32
    /// (the kernel, where the CPU has it) and f64 (matrixmultiply), against the triple loop.
    #[test]
    fn packed_products_match_the_triple_loop() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 5, 16),
            (13, 33, 40),
            (64, 128, 512),
            (17, 512, 3),
        ] {
            let a = Array2::from_shape_fn((m, k), |(i, p)| ((i * 7 + p * 3) % 11) as f64 - 5.0);
            let w = Array2::from_shape_fn((n, k), |(j, p)| ((j * 5 + p) % 13) as f64 * 0.5);
            // W^T, a column-major view, as the forward pass uses it.
            let w = w.t();
            for beta in [0.0, 2.0] {
                let start = Array2::from_shape_fn((m, n), |(i, j)| (i + 2 * j) as f64);
                let expected = Array2::from_shape_fn((m, n), |(i, j)| {
                    (0..k).map(|p| a[[i, p]] * w[[p, j]]).sum::<f64>() + beta * start[[i, j]]
                });
                let mut c = start.clone();
                PackedWeight::new(w.view()).product_into(&a, beta, &mut c);
                assert_eq!(c, expected, "f64 {m} {k} {n}");
                let (a32, w32) = (a.mapv(|v| v as f32), w.mapv(|v| v as f32));
                // Into a view with a row stride wider than its rows.
                let mut wide = Array2::zeros((m, n + 3));
                wide.slice_mut(s![.., ..n])
                    .assign(&start.mapv(|v| v as f32));
                let mut c32 = wide.slice_mut(s![.., ..n]);
                PackedWeight::new(w32.view()).product_into(&a32, beta as f32, &mut c32);
                // Small integers and halves: exact in f32 whatever the order of the sums.
                assert_eq!(c32.mapv(f64::from), expected, "f32 {m} {k} {n}");
                // a as a transposed view (strides 1 and m), as the weight gradients pass it.
                let a32_columns = a32.t().as_standard_layout().into_owned();
                let mut c32 = start.mapv(|v| v as f32);
                PackedWeight::new(w32.view()).product_into(&a32_columns.t(), beta as f32, &mut c32);
                assert_eq!(
                    c32.mapv(f64::from),
                    expected,
                    "f32 {m} {k} {n}, a transposed"
                );
                assert!(wide.slice(s![.., n..]).iter().all(|&v| v == 0.0));
            }
        }
    }
}
