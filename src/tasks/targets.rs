//! The targets of a dataset's samples, as both of its readers build them: `dataset` from
//! `.npy` files and `csv`. Below both, so that `dataset`, which calls the CSV reader, and the
//! reader do not import each other.

use ndarray::{Array1, Array2, Array3};

/// Targets for every sample, in the layouts of the table in `dataset`'s module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum SampleTargets {
    /// `[N]`: one class per sequence, scored on the last step.
    Classes(Array1<u32>),
    /// `[N, T]`: one class per step.
    StepClasses(Array2<u32>),
    /// `[N, O]`: values for the last step.
    Values(Array2<f32>),
    /// `[N, T, O]`: values for every step.
    StepValues(Array3<f32>),
}
