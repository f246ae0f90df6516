//! What stacked and bidirectional models add around the cells: the reverse direction's view of
//! time, the layers' joined outputs, and dropout between layers.
//!
//! The reverse direction runs the ordinary cell on its input reversed per sequence: step s
//! (0-based) of sequence b reads natural step `L_b - 1 - s`, so each sequence starts at its own
//! end and the padding steps (s >= L_b) stay where they are, still padding. A reverse cell's
//! states and gates are therefore kept in its own processing order; `layer_output` puts them
//! back in natural time.

use crate::float::Float;
use ndarray::{s, Array2, Array3, ArrayRef3, ArrayView3, Axis};

/// The natural step that step `s` of sequence `b`'s reverse pass reads: `L_b - 1 - s` within
/// the sequence, `s` itself on padding. An involution, so it also maps back.
pub fn reversed_step(lengths: Option<&[usize]>, seq_len: usize, b: usize, s: usize) -> usize {
    let len = lengths.map_or(seq_len, |l| l[b]);
    if s < len {
        len - 1 - s
    } else {
        s
    }
}

/// x `[T, B, W]` with each sequence's valid steps in reverse order (`reversed_step`).
pub fn reverse_steps<F: Float>(x: &ArrayRef3<F>, lengths: Option<&[usize]>) -> Array3<F> {
    let (seq_len, batch, _) = x.dim();
    let mut out = Array3::zeros(x.raw_dim());
    for s in 0..seq_len {
        for b in 0..batch {
            let t = reversed_step(lengths, seq_len, b, s);
            out.slice_mut(s![s, b, ..]).assign(&x.slice(s![t, b, ..]));
        }
    }
    out
}

/// A layer's output sequence `[T, B, D*H]` in natural time from its cells' states hs
/// `[T+1, B, H]` (forward first). The forward direction's output at step t is h_{t+1}; the
/// reverse direction's is its state after reading step t, and on padding its initial state,
/// which it keeps until it reaches the sequence's own end.
pub fn layer_output<F: Float>(cells: &[&Array3<F>], lengths: Option<&[usize]>) -> Array3<F> {
    let (steps, batch, hidden) = cells[0].dim();
    let seq_len = steps - 1;
    let mut out = Array3::zeros((seq_len, batch, cells.len() * hidden));
    for (d, hs) in cells.iter().enumerate() {
        let columns = d * hidden..(d + 1) * hidden;
        if d == 0 {
            out.slice_mut(s![.., .., columns])
                .assign(&hs.slice(s![1.., .., ..]));
            continue;
        }
        for t in 0..seq_len {
            for b in 0..batch {
                let len = lengths.map_or(seq_len, |l| l[b]);
                // past the end (t >= len): row 0, the initial state
                let row = len.saturating_sub(t);
                out.slice_mut(s![t, b, columns.clone()])
                    .assign(&hs.slice(s![row, b, ..]));
            }
        }
    }
    out
}

/// The gradient w.r.t. a layer's output dy `[T, B, D*H]` as each cell's dE/dh per step of its
/// own processing order, `[T, B, H]` for the states h_1..h_T: the forward cell's columns as they
/// are, the reverse cell's reordered (`reversed_step`). A reverse cell's padding states are
/// read by nothing, so they get zeros.
pub fn split_output_grad<F: Float>(
    dy: &ArrayRef3<F>,
    directions: usize,
    lengths: Option<&[usize]>,
) -> Vec<Array3<F>> {
    let (seq_len, batch, width) = dy.dim();
    let hidden = width / directions;
    (0..directions)
        .map(|d| {
            let columns = s![.., .., d * hidden..(d + 1) * hidden];
            if d == 0 {
                return dy.slice(columns).to_owned();
            }
            let mut out = Array3::zeros((seq_len, batch, hidden));
            for s in 0..seq_len {
                for b in 0..batch {
                    let len = lengths.map_or(seq_len, |l| l[b]);
                    if s < len {
                        out.slice_mut(s![s, b, ..]).assign(&dy.slice(s![
                            len - 1 - s,
                            b,
                            d * hidden..(d + 1) * hidden
                        ]));
                    }
                }
            }
            out
        })
        .collect()
}

/// Each cell's final state, concatenated `[B, D*H]`: the forward direction's h_T (held from
/// h_len on padding) and the reverse direction's state after reading step 0.
pub fn final_states<F: Float>(cells: &[&Array3<F>]) -> Array2<F> {
    let views: Vec<ArrayView3<F>> = cells
        .iter()
        .map(|hs| {
            let last = hs.len_of(Axis(0)) - 1;
            hs.slice(s![last..last + 1, .., ..])
        })
        .collect();
    let joined = ndarray::concatenate(Axis(2), &views).expect("states share [1, B, H]");
    joined.index_axis_move(Axis(0), 0)
}

/// The PCG hash (O'Neill's RXS-M-XS output on one LCG step), in u32 wrapping arithmetic as
/// WGSL computes it.
pub fn pcg_hash(value: u32) -> u32 {
    let state = value.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The dropout seed of training step `step` (1-based) of a run whose base seed is `base`.
pub fn step_seed(base: u32, step: u64) -> u32 {
    pcg_hash(base ^ pcg_hash(step as u32 ^ pcg_hash((step >> 32) as u32)))
}

/// Whether dropout keeps element `index` (row-major in `[T, B, D*H]`, wrapped to u32) of layer
/// `layer`'s input under `seed`: a hash, so the CPU and the GPU draw the same masks without
/// sharing them. `threshold` = round(p * 2^24): the top 24 bits of the hash below it drop.
pub fn dropout_keep(seed: u32, layer: u32, index: u32, threshold: u32) -> bool {
    let hash = pcg_hash(index ^ pcg_hash(seed ^ pcg_hash(layer)));
    (hash >> 8) >= threshold
}

/// Dropout probability `p` as the 24-bit threshold `dropout_keep` compares with, and the
/// scale 1/(1-p) kept elements get (in f32, as the GPU has it).
pub fn dropout_threshold(p: f32) -> (u32, f32) {
    ((p as f64 * 16_777_216.0).round() as u32, 1.0 / (1.0 - p))
}

/// The factors dropout multiplies layer `layer`'s input `[T, B, W]` by: 0, or 1/(1-p).
pub fn dropout_factors<F: Float>(
    p: f32,
    seed: u32,
    layer: usize,
    shape: (usize, usize, usize),
) -> Array3<F> {
    let (threshold, scale) = dropout_threshold(p);
    let scale = F::from_f32(scale).expect("f32 converts");
    let mut index = 0u32;
    Array3::from_shape_simple_fn(shape, || {
        let keep = dropout_keep(seed, layer as u32, index, threshold);
        index = index.wrapping_add(1);
        if keep {
            scale
        } else {
            F::zero()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversing_twice_is_the_identity_and_padding_stays() {
        let x = Array3::from_shape_fn((5, 3, 2), |(t, b, j)| (t * 100 + b * 10 + j) as f64);
        let lengths = [5, 1, 3];
        let r = reverse_steps(&x, Some(&lengths));
        assert_eq!(r[[0, 0, 0]], x[[4, 0, 0]]);
        assert_eq!(r[[0, 1, 1]], x[[0, 1, 1]]);
        assert_eq!(r[[3, 1, 0]], x[[3, 1, 0]], "padding stays");
        assert_eq!(r[[0, 2, 0]], x[[2, 2, 0]]);
        assert_eq!(r[[4, 2, 0]], x[[4, 2, 0]], "padding stays");
        assert_eq!(reverse_steps(&r, Some(&lengths)), x);
    }

    #[test]
    fn dropout_drops_about_p_and_scales_the_rest() {
        for p in [0.1f32, 0.5, 0.9] {
            let f = dropout_factors::<f64>(p, 7, 1, (50, 20, 20));
            let dropped = f.iter().filter(|v| **v == 0.0).count() as f64 / f.len() as f64;
            assert!(
                (dropped - p as f64).abs() < 0.02,
                "p {p}: dropped {dropped}"
            );
            let kept = f.iter().find(|v| **v != 0.0).unwrap();
            assert_eq!(*kept, (1.0 / (1.0 - p)) as f64);
        }
        let a = dropout_factors::<f32>(0.5, 7, 1, (4, 3, 8));
        assert_eq!(a, dropout_factors::<f32>(0.5, 7, 1, (4, 3, 8)), "same seed");
        assert_ne!(
            a,
            dropout_factors::<f32>(0.5, 8, 1, (4, 3, 8)),
            "another seed"
        );
        assert_ne!(
            a,
            dropout_factors::<f32>(0.5, 7, 2, (4, 3, 8)),
            "another layer"
        );
    }
}
