//! The per-step product's AVX-512 kernel: the AVX2 kernel's panels of 16 columns, each one
//! 16-wide register, two side by side, against 8 rows of `a` at a time: 16 accumulators, two
//! loads and eight broadcasts per sixteen 16-wide fused multiply-adds.

use super::panels::{Product, PANEL};
use std::arch::x86_64::*;

/// Rows of the register tile.
const TILE_ROWS: usize = 8;

/// `super::rows_times_panels`, two panels at a time (one where the panel count is odd).
///
/// # Safety
/// As `super::rows_times_panels`; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_times_panels(p: Product) {
    let count = p.n.div_ceil(PANEL);
    let mut panel = 0;
    while panel < count {
        let pair = count - panel >= 2;
        // Columns of c this tile writes: one or two panels' worth, fewer at the right edge.
        let cols = (p.n - panel * PANEL).min(if pair { 2 * PANEL } else { PANEL });
        let mut row = 0;
        while row < p.m {
            let rows = TILE_ROWS.min(p.m - row);
            // SAFETY: rows row..row+rows of a and c, and the tile's panels, exist.
            unsafe {
                let part = p.part(row, rows, panel, cols);
                match (rows, pair) {
                    (8, true) => tile::<8, 2>(part),
                    (8, false) => tile::<8, 1>(part),
                    (_, true) => rest::<2>(part),
                    (_, false) => rest::<1>(part),
                }
            }
            row += rows;
        }
        panel += if pair { 2 } else { 1 };
    }
}

/// The last 1-7 rows.
///
/// # Safety
/// As `tile`, for `p.m` rows.
#[target_feature(enable = "avx512f")]
unsafe fn rest<const P: usize>(p: Product) {
    // SAFETY: as the caller's, for exactly `p.m` rows.
    unsafe {
        match p.m {
            1 => tile::<1, P>(p),
            2 => tile::<2, P>(p),
            3 => tile::<3, P>(p),
            4 => tile::<4, P>(p),
            5 => tile::<5, P>(p),
            6 => tile::<6, P>(p),
            _ => tile::<7, P>(p),
        }
    }
}

/// R rows of c over P panels (the first `p.n` <= 16 * P columns): `c = a w + beta c`.
///
/// # Safety
/// As `super::rows_times_panels`, for `p` with R rows and P panels.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const P: usize>(p: Product) {
    let (k, cols, a, lda, w) = (p.k, p.n, p.a, p.lda, p.w);
    let (beta, c, ldc) = (p.beta, p.c, p.ldc);
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
            // Lanes past the tile's last column of c are neither read nor written.
            let width = cols.saturating_sub(q * PANEL).min(PANEL);
            let mask: __mmask16 = if width == PANEL { !0 } else { (1 << width) - 1 };
            // SAFETY: row i < R of c, the first `width` columns of panel q.
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
