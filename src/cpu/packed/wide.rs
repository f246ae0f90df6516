//! The per-step product's AVX-512 kernel: the AVX2 kernel's panels of 16 columns, each one
//! 16-wide register, two side by side, against 8 rows of `a` at a time: 16 accumulators, two
//! loads and eight broadcasts per sixteen 16-wide fused multiply-adds.

use super::PANEL;
use std::arch::x86_64::*;

/// Rows of the register tile.
const TILE_ROWS: usize = 8;

/// `c = a w + beta c` as `super::rows_times_panels` states, two panels at a time (one where the
/// panel count is odd).
///
/// # Safety
/// As `super::rows_times_panels`; the CPU has AVX-512F.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_times_panels(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    lda: (usize, usize),
    panels: &[f32],
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    let count = n.div_ceil(PANEL);
    let mut panel = 0;
    while panel < count {
        let pair = count - panel >= 2;
        let w = &panels[panel * k * PANEL..];
        // Columns of c this tile writes in each of its panels.
        let cols = [
            PANEL.min(n - panel * PANEL),
            if pair {
                PANEL.min(n - (panel + 1) * PANEL)
            } else {
                0
            },
        ];
        // SAFETY (each call): rows row..row+R of a and c, and the tile's panels, exist.
        unsafe {
            let c = c.add(panel * PANEL);
            let mut row = 0;
            while row < m {
                let (a, c) = (a.add(row * lda.0), c.add(row * ldc));
                let rows = TILE_ROWS.min(m - row);
                match (rows, pair) {
                    (8, true) => tile::<8, 2>(k, a, lda, w, beta, c, ldc, cols),
                    (8, false) => tile::<8, 1>(k, a, lda, w, beta, c, ldc, cols),
                    (r, true) => rest::<2>(r, k, a, lda, w, beta, c, ldc, cols),
                    (r, false) => rest::<1>(r, k, a, lda, w, beta, c, ldc, cols),
                }
                row += rows;
            }
        }
        panel += if pair { 2 } else { 1 };
    }
}

/// The last 1-7 rows.
///
/// # Safety
/// As `tile`, for `rows` rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rest<const P: usize>(
    rows: usize,
    k: usize,
    a: *const f32,
    lda: (usize, usize),
    w: &[f32],
    beta: f32,
    c: *mut f32,
    ldc: usize,
    cols: [usize; 2],
) {
    // SAFETY: as the caller's, for exactly `rows` rows.
    unsafe {
        match rows {
            1 => tile::<1, P>(k, a, lda, w, beta, c, ldc, cols),
            2 => tile::<2, P>(k, a, lda, w, beta, c, ldc, cols),
            3 => tile::<3, P>(k, a, lda, w, beta, c, ldc, cols),
            4 => tile::<4, P>(k, a, lda, w, beta, c, ldc, cols),
            5 => tile::<5, P>(k, a, lda, w, beta, c, ldc, cols),
            6 => tile::<6, P>(k, a, lda, w, beta, c, ldc, cols),
            _ => tile::<7, P>(k, a, lda, w, beta, c, ldc, cols),
        }
    }
}

/// R rows of c over P panels (the first `cols[q]` columns of panel q): `c = a w + beta c`.
///
/// # Safety
/// R rows of k elements at a (strides lda) and of the panels' columns at c (stride ldc); w
/// holds P panels of k x 16, one after another.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const P: usize>(
    k: usize,
    a: *const f32,
    lda: (usize, usize),
    w: &[f32],
    beta: f32,
    c: *mut f32,
    ldc: usize,
    cols: [usize; 2],
) {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let panel_len = k * PANEL;
    assert!(w.len() >= P * panel_len);
    for p in 0..k {
        let mut wp = [_mm512_setzero_ps(); P];
        for (q, wq) in wp.iter_mut().enumerate() {
            // SAFETY: panel q < P holds k rows of 16.
            *wq = unsafe { _mm512_loadu_ps(w.as_ptr().add(q * panel_len + p * PANEL)) };
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row i < R, column p < k.
            let a_ip = _mm512_set1_ps(unsafe { *a.add(i * lda.0 + p * lda.1) });
            for (acc, &wq) in acc.iter_mut().zip(&wp) {
                *acc = _mm512_fmadd_ps(a_ip, wq, *acc);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (q, &acc) in acc.iter().enumerate() {
            // Lanes past the panel's last column of c are neither read nor written.
            let mask: __mmask16 = if cols[q] == PANEL {
                !0
            } else {
                (1 << cols[q]) - 1
            };
            // SAFETY: row i < R of c, the first cols[q] columns of panel q.
            unsafe {
                let c = c.add(i * ldc + q * PANEL);
                let sum = if beta == 0.0 {
                    acc
                } else {
                    _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), acc)
                };
                _mm512_mask_storeu_ps(c, mask, sum);
            }
        }
    }
}
