//! The layout of a packed weight, panels of `PANEL` columns, and `Product`, one call of the
//! kernels over them. Read by `packed`, which packs the panels and runs the AVX2 kernel, and by
//! `wide`, the AVX-512 kernel that `packed` calls: a module of its own so that `wide` does not
//! import back from the module that calls it.

/// Columns of a panel.
pub(crate) const PANEL: usize = 16;

/// One call of the kernels: `c = a w + beta c` for m rows, where a `[m, k]` has element (i, p) at
/// `a + i * lda.0 + p * lda.1`, c `[m, n]` has unit column stride and row stride `ldc`, and `w`
/// holds the weight's panels from the first column of c on (beta = 0 ignores c's old values).
#[derive(Clone, Copy)]
pub(super) struct Product<'w> {
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) a: *const f32,
    pub(super) lda: (usize, usize),
    pub(super) w: &'w [f32],
    pub(super) beta: f32,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
}

impl Product<'_> {
    /// The part of the product on `rows` rows from `row` and the `cols` columns from panel
    /// `panel` on.
    ///
    /// # Safety
    /// row + rows <= m, and panel * PANEL + cols <= n.
    pub(super) unsafe fn part(self, row: usize, rows: usize, panel: usize, cols: usize) -> Self {
        // SAFETY: as the caller promises, the offsets stay inside a and c.
        unsafe {
            Product {
                m: rows,
                n: cols,
                a: self.a.add(row * self.lda.0),
                w: &self.w[panel * self.k * PANEL..],
                c: self.c.add(row * self.ldc + panel * PANEL),
                ..self
            }
        }
    }
}
