//! Storage precision: where both engines keep the activations, gates, their gradients and the
//! weights' working copy in f16 (`Precision::F16`), with every product and reduction summed in
//! f32 and the master weights, their gradients and the optimizer's state in f32, as PyTorch's
//! automatic mixed precision does. The GPU stores those tensors as `array<f16>`; the CPU
//! engine rounds them to f16 (round to nearest even) where the GPU stores them, so the two
//! agree within a stated tolerance (see `tests/gpu/precision.rs`).

use crate::float::Float;

/// The element type of the stored tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Precision {
    /// Every tensor in f32: the default, and what PyTorch computes without autocast.
    #[default]
    F32,
    /// Activations, gates, their gradients and the weights' working copy stored in f16 (IEEE
    /// binary16), with sums in f32 and dynamic loss scaling ([`LossScaler`]).
    F16,
}

impl Precision {
    /// `values` as a buffer of these elements holds them, padded to whole 4-byte words (buffer
    /// writes move whole words): f16 rounded to nearest even.
    pub(crate) fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Precision::F32 => bytemuck::cast_slice(values).to_vec(),
            Precision::F16 => {
                let mut bytes: Vec<u8> = (values.iter())
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect();
                bytes.resize(bytes.len().next_multiple_of(4), 0);
                bytes
            }
        }
    }

    /// The spelling `--precision` takes and checkpoints and reports use: `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Bytes per stored element.
    pub(crate) fn element_bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// `x` as a stored element reads back: unchanged under F32 (the f64 reference keeps its
    /// precision), rounded to the nearest f16 under F16 (overflow gives an infinity, NaN stays
    /// NaN).
    pub fn round<F: Float>(self, x: F) -> F {
        match self {
            Precision::F32 => x,
            // f32 through the hardware's conversion where there is one (F16C); f64 directly,
            // as rounding through f32 first could round twice.
            Precision::F16 if std::mem::size_of::<F>() == 4 => {
                let narrow = x.to_f32().expect("an f32 converts to f32");
                F::from_f32(half::f16::from_f32(narrow).to_f32()).expect("f32 converts back")
            }
            Precision::F16 => {
                let wide = x.to_f64().expect("a float converts to f64");
                F::from_f64(half::f16::from_f64(wide).to_f64()).expect("f64 converts back")
            }
        }
    }

    /// `round` on every element.
    pub fn round_all<F: Float>(self, values: &mut [F]) {
        if self == Precision::F16 {
            values.iter_mut().for_each(|v| *v = self.round(*v));
        }
    }

    /// `round` on every element of an array of any shape and layout.
    pub(crate) fn round_array<F: Float, D: ndarray::Dimension>(
        self,
        values: &mut ndarray::ArrayRef<F, D>,
    ) {
        if self == Precision::F16 {
            values.map_inplace(|v| *v = self.round(*v));
        }
    }
}

/// Dynamic loss scaling for f16 storage, as PyTorch's `torch.amp.GradScaler` does it: the
/// loss's gradient is multiplied by `scale` before backpropagation so that small gradients
/// stay above f16's smallest numbers, and divided out before the update. A step whose scaled
/// gradient overflows (a non-finite norm) is skipped and the scale halved; after
/// `GROWTH_INTERVAL` finite steps in a row it doubles. Every factor is a power of two, so
/// scaling and unscaling round nothing. Saved in checkpoints, so a resumed run continues
/// bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaler {
    /// The factor the loss's gradient is multiplied by.
    pub scale: f32,
    /// Finite steps in a row since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped so far for a gradient that overflowed.
    pub skipped: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: LossScaler::INITIAL,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScaler {
    /// PyTorch's defaults: 2^16 to start, x2 after 2000 finite steps, x0.5 on overflow.
    pub const INITIAL: f32 = 65536.0;
    /// Finite steps in a row after which the scale doubles.
    pub const GROWTH_INTERVAL: u32 = 2000;
    /// The bounds the scale stays within: below 2^-24 even f32 gradients would lose bits,
    /// above 2^64 no f16 gradient is small enough to need it.
    const MIN: f32 = 5.9604645e-8;
    const MAX: f32 = 1.8446744e19;

    /// For a one-off backward pass (`grad`, `parity`): `backward` at loss scale 1 under f32;
    /// under f16 from the first scale down, halved while the gradient overflows (or until the
    /// scale bottoms out), as training's scaling would settle. `backward(scale)` returns its
    /// result and its gradients' norm, None where the forward pass was not finite (no scale
    /// helps there: the first is kept). Returns the result and the scale it ran at.
    pub fn largest_fitting<T, E>(
        precision: Precision,
        mut backward: impl FnMut(f32) -> Result<(T, Option<f32>), E>,
    ) -> Result<(T, f32), E> {
        if precision == Precision::F32 {
            return backward(1.0).map(|(out, _)| (out, 1.0));
        }
        let mut scaler = LossScaler::default();
        loop {
            let scale = scaler.scale;
            let (out, norm) = backward(scale)?;
            match norm {
                Some(norm) if scaler.update(norm) && scaler.scale != scale => continue,
                _ => return Ok((out, scale)),
            }
        }
    }

    /// After a step whose scaled gradient norm was `scaled_norm`: whether the step was
    /// skipped (the norm was a NaN or an infinity), with the scale moved for the next one.
    pub fn update(&mut self, scaled_norm: f32) -> bool {
        if !scaled_norm.is_finite() {
            self.scale = (self.scale * 0.5).max(Self::MIN);
            self.good_steps = 0;
            self.skipped += 1;
            return true;
        }
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(Self::MAX);
            self.good_steps = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{LossScaler, Precision};

    #[test]
    fn f16_rounds_to_nearest_even_and_overflows_to_infinity() {
        let p = Precision::F16;
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even significand, 1.
        assert_eq!(p.round(1.0f32 + 2f32.powi(-11)), 1.0);
        assert_eq!(p.round(1.0f64 + 3.0 * 2f64.powi(-11)), 1.0 + 2f64.powi(-9));
        assert_eq!(p.round(65520.0f32), f32::INFINITY);
        assert_eq!(p.round(65504.0f32), 65504.0);
        assert!(p.round(f32::NAN).is_nan());
        assert_eq!(Precision::F32.round(0.1f64), 0.1);
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_doubles_after_a_run_of_finite_steps() {
        let mut scaler = LossScaler::default();
        assert!(scaler.update(f32::INFINITY));
        assert!(scaler.update(f32::NAN));
        assert_eq!((scaler.scale, scaler.skipped), (16384.0, 2));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            assert!(!scaler.update(1.0));
        }
        assert_eq!(scaler.scale, 16384.0);
        assert!(!scaler.update(1.0));
        assert_eq!((scaler.scale, scaler.good_steps), (32768.0, 0));
    }

    #[test]
    fn a_one_off_pass_runs_at_the_largest_scale_that_does_not_overflow() {
        // gradients overflow above 2^10; a non-finite forward pass keeps the first scale
        let overflowing =
            |scale: f32| Ok::<_, ()>(((), Some(if scale > 1024.0 { f32::INFINITY } else { 1.0 })));
        let (_, scale) = LossScaler::largest_fitting(Precision::F16, overflowing).unwrap();
        assert_eq!(scale, 1024.0);
        let (_, scale) = LossScaler::largest_fitting(Precision::F32, overflowing).unwrap();
        assert_eq!(scale, 1.0);
        let diverged = |_| Ok::<_, ()>(((), None));
        let (_, scale) = LossScaler::largest_fitting(Precision::F16, diverged).unwrap();
        assert_eq!(scale, LossScaler::INITIAL);
    }
}
