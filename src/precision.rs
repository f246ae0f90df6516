//! Storage precision: where both engines keep the activations, gates, their gradients and the
//! weights' working copy in f16 (`Precision::F16`), with every product and reduction summed in
//! f32 and the master weights, their gradients and the optimizer's state in f32, as PyTorch's
//! automatic mixed precision does. The GPU stores those tensors as `array<f16>`; the CPU
//! engine rounds them to f16 (round to nearest even) where the GPU stores them, so the two
//! agree within a stated tolerance (see `tests/gpu/precision.rs`).

use crate::Float;

/// The element type of the stored tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Bytes per stored element.
    pub fn element_bytes(self) -> usize {
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
    pub fn round_array<F: Float, D: ndarray::Dimension>(
        self,
        values: &mut ndarray::ArrayRef<F, D>,
    ) {
        if self == Precision::F16 {
            values.map_inplace(|v| *v = self.round(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

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
}
