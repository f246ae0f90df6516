//! Your own sequences, from `.npy` or CSV files: inputs `[N, T, I]` sample-major as numpy
//! keeps them, served as the crate's time-major batches x `[T, B, I]`.
//!
//! Targets decide readout and loss:
//!
//! | targets                        | readout | loss | `O`                              |
//! |--------------------------------|---------|------|----------------------------------|
//! | `[N]` integer class indices    | last    | CE   | `num_classes`, else max class + 1 |
//! | `[N, T]` integer class indices | all     | CE   | `num_classes`, else max class + 1 |
//! | `[N, O]` float values          | last    | MSE  | `O`                              |
//! | `[N, T, O]` float values       | all     | MSE  | `O`                              |
//!
//! `.npy` inputs may be float32 or float64 (converted to f32); class targets int64, int32 or
//! uint8; value targets float32 or float64. Either byte order and C or Fortran order are read.
//!
//! CSV: one sequence per line, fields separated by commas, no quoting. A line holds the `T * I`
//! inputs step by step (`x[t=0][0..I]`, then `x[t=1][0..I]`, ...) followed by the targets:
//! one class, `O` values, `T` classes (one per step) or `T * O` values (step by step), as
//! [`CsvTargets`] says; `T` comes from [`CsvFormat`] and `I` from the field count. A first line
//! with any non-numeric field is a header and is skipped (its field count must match the data
//! lines); blank lines are skipped.
//!
//! Every error names the file, what was found and what was expected.

// Defined in `csv` and `targets`, below this module; named here too, where the module docs and
// `Dataset`'s loaders name them.
pub use super::csv::{CsvFormat, CsvTargets};
pub use super::targets::SampleTargets;

use super::csv;
use super::npy::{check_finite, class_count, parse_npy, to_classes, Npy};
use super::spec::DataSpec;
use crate::config::{Loss, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use ndarray::{s, Array2, Array3, Axis, Ix1, Ix2, Ix3};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use std::path::Path;

/// Sequences with their targets: inputs `[N, T, I]` and [`SampleTargets`].
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    inputs: Array3<f32>,
    targets: SampleTargets,
    spec: DataSpec,
    /// `[N]`: each sample's length in `1..=T`, the rest of its T steps padding (None: all T).
    lengths: Option<Vec<usize>>,
}

impl Dataset {
    /// Loads inputs `[N, T, I]` and targets (see the module table) from two `.npy` files.
    /// `num_classes` fixes `O` for class targets (checking every index against it).
    pub fn from_npy(
        inputs_path: impl AsRef<Path>,
        targets_path: impl AsRef<Path>,
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        let (inputs_path, targets_path) = (inputs_path.as_ref(), targets_path.as_ref());
        let read = |path: &Path, role: &str| {
            std::fs::read(path).map_err(|err| {
                Error::Value(format!("cannot read {role} '{}': {err}", path.display()))
            })
        };
        Self::from_npy_bytes(
            &inputs_path.display().to_string(),
            &read(inputs_path, "inputs")?,
            &targets_path.display().to_string(),
            &read(targets_path, "targets")?,
            num_classes,
        )
    }

    /// [`Dataset::from_npy`] for files already in memory; the file names appear in messages.
    pub fn from_npy_bytes(
        inputs_file: &str,
        inputs: &[u8],
        targets_file: &str,
        targets: &[u8],
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        let inputs_name = format!("inputs '{inputs_file}'");
        let targets_name = format!("targets '{targets_file}'");
        let inputs = match parse_npy(inputs, &inputs_name)? {
            Npy::Float(a) => {
                let shape = a.shape().to_vec();
                a.into_dimensionality::<Ix3>().map_err(|_| {
                    Error::Value(format!(
                        "{inputs_name} have shape {shape:?} (rank {}); expected rank 3 [N, T, I]",
                        shape.len()
                    ))
                })?
            }
            Npy::Int(_, dtype) => {
                return Err(Error::Value(format!(
                    "{inputs_name} have dtype {dtype}; expected float32 or float64 [N, T, I]"
                )))
            }
        };
        let targets = match parse_npy(targets, &targets_name)? {
            Npy::Int(a, _) => match a.ndim() {
                1 => SampleTargets::Classes(
                    to_classes(a, &targets_name)?
                        .into_dimensionality::<Ix1>()
                        .unwrap(),
                ),
                2 => SampleTargets::StepClasses(
                    to_classes(a, &targets_name)?
                        .into_dimensionality::<Ix2>()
                        .unwrap(),
                ),
                _ => {
                    return Err(Error::Value(format!(
                        "{targets_name} are integer class indices of shape {:?}; expected \
                         [N] or [N, T]",
                        a.shape()
                    )))
                }
            },
            Npy::Float(a) => match a.ndim() {
                2 => SampleTargets::Values(a.into_dimensionality::<Ix2>().unwrap()),
                3 => SampleTargets::StepValues(a.into_dimensionality::<Ix3>().unwrap()),
                1 => {
                    return Err(Error::Value(format!(
                        "{targets_name} are floats of shape {:?}; [N] targets must be integer \
                         class indices (int64, int32 or uint8), and regression targets need \
                         shape [N, O] (in numpy: y[:, None])",
                        a.shape()
                    )))
                }
                _ => {
                    return Err(Error::Value(format!(
                        "{targets_name} are floats of shape {:?}; expected [N, O] or [N, T, O]",
                        a.shape()
                    )))
                }
            },
        };
        Self::build(&inputs_name, &targets_name, inputs, targets, num_classes)
    }

    /// Loads one CSV file laid out as the module docs say.
    pub fn from_csv(
        path: impl AsRef<Path>,
        format: CsvFormat,
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|err| Error::Value(format!("cannot read CSV '{}': {err}", path.display())))?;
        Self::from_csv_bytes(&path.display().to_string(), &bytes, format, num_classes)
    }

    /// [`Dataset::from_csv`] for a file already in memory; `file` appears in messages.
    pub fn from_csv_bytes(
        file: &str,
        bytes: &[u8],
        format: CsvFormat,
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        let name = format!("CSV '{file}'");
        let (inputs, targets) = csv::parse(bytes, &name, format)?;
        Self::build(&name, &name, inputs, targets, num_classes)
    }

    /// Wraps arrays already in memory, with the same checks as the loaders; `name` appears in
    /// error messages.
    pub fn from_arrays(
        name: &str,
        inputs: Array3<f32>,
        targets: SampleTargets,
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        Self::build(name, name, inputs, targets, num_classes)
    }

    fn build(
        inputs_name: &str,
        targets_name: &str,
        inputs: Array3<f32>,
        targets: SampleTargets,
        num_classes: Option<usize>,
    ) -> Result<Self, Error> {
        let [n, t_len, i] = [0, 1, 2].map(|d| inputs.shape()[d]);
        if n == 0 || t_len == 0 || i == 0 {
            return Err(Error::Value(format!(
                "{inputs_name} are empty: shape {:?}, expected [N, T, I] with every size >= 1",
                inputs.shape()
            )));
        }
        check_finite(inputs_name, inputs.shape(), inputs.iter())?;
        let (targets_shape, expected_rest) = match &targets {
            SampleTargets::Classes(a) => (a.shape(), vec![]),
            SampleTargets::StepClasses(a) => (a.shape(), vec![t_len]),
            SampleTargets::Values(a) => (a.shape(), vec![a.shape()[1]]),
            SampleTargets::StepValues(a) => (a.shape(), vec![t_len, a.shape()[2]]),
        };
        if targets_shape[0] != n || targets_shape[1..] != expected_rest[..] {
            let expected: Vec<String> = std::iter::once(n.to_string())
                .chain(expected_rest.iter().map(|d| d.to_string()))
                .collect();
            return Err(Error::Value(format!(
                "{targets_name} have shape {targets_shape:?} but {inputs_name} have shape \
                 {:?} [N, T, I]; expected targets [{}] (N and T must match)",
                inputs.shape(),
                expected.join(", ")
            )));
        }
        let (readout, loss, output_size) = match &targets {
            SampleTargets::Classes(a) => (
                Readout::Last,
                Loss::CrossEntropy,
                class_count(targets_name, a.shape(), a.iter(), num_classes)?,
            ),
            SampleTargets::StepClasses(a) => (
                Readout::All,
                Loss::CrossEntropy,
                class_count(targets_name, a.shape(), a.iter(), num_classes)?,
            ),
            SampleTargets::Values(a) => (Readout::Last, Loss::Mse, a.shape()[1]),
            SampleTargets::StepValues(a) => (Readout::All, Loss::Mse, a.shape()[2]),
        };
        if loss == Loss::Mse {
            if let Some(classes) = num_classes {
                return Err(Error::Value(format!(
                    "{targets_name} are real values (MSE), but {classes} classes were given; \
                     class targets must be integers"
                )));
            }
            match &targets {
                SampleTargets::Values(a) => check_finite(targets_name, a.shape(), a.iter())?,
                SampleTargets::StepValues(a) => check_finite(targets_name, a.shape(), a.iter())?,
                _ => {}
            }
            if output_size == 0 {
                return Err(Error::Value(format!(
                    "{targets_name} have shape {targets_shape:?}: O must be at least 1"
                )));
            }
        }
        Ok(Dataset {
            name: if inputs_name == targets_name {
                inputs_name.to_string()
            } else {
                format!("{inputs_name} with {targets_name}")
            },
            inputs,
            targets,
            spec: DataSpec {
                input_size: i,
                output_size,
                readout,
                loss,
            },
            lengths: None,
        })
    }

    /// `N`: sequences.
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// Never true for a loaded dataset (empty files are refused); here for completeness.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `T`.
    pub fn seq_len(&self) -> usize {
        self.inputs.shape()[1]
    }

    /// `I`, `O`, readout and loss implied by the data.
    pub fn spec(&self) -> DataSpec {
        self.spec
    }

    /// Where the data came from, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `[N, T, I]`, sample-major as loaded.
    pub fn inputs(&self) -> &Array3<f32> {
        &self.inputs
    }

    /// Every sample's targets, in the layout of the module table that decided the readout and
    /// the loss (`[N]`, `[N, T]`, `[N, O]` or `[N, T, O]`), sample-major as loaded.
    pub fn targets(&self) -> &SampleTargets {
        &self.targets
    }

    /// Splits into (train, validation) at random: `round(validation_fraction * N)` samples,
    /// at least one, go to validation; each part keeps the file's order. `O` stays the same in
    /// both even if one part lacks the highest class.
    pub fn split(&self, validation_fraction: f64, seed: u64) -> Result<(Dataset, Dataset), Error> {
        let n = self.len();
        if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
            return Err(Error::Config(format!(
                "validation fraction must be in (0, 1), got {validation_fraction}"
            )));
        }
        if n < 2 {
            return Err(Error::Value(format!(
                "{} has {n} sample(s); a train/validation split needs at least 2",
                self.name
            )));
        }
        let validation_len = ((validation_fraction * n as f64).round() as usize).clamp(1, n - 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (validation, train) = order.split_at_mut(validation_len);
        validation.sort_unstable();
        train.sort_unstable();
        Ok((
            self.select(train, "train"),
            self.select(validation, "validation"),
        ))
    }

    fn select(&self, indices: &[usize], part: &str) -> Dataset {
        let rows = Axis(0);
        Dataset {
            name: format!("{} ({part})", self.name),
            inputs: self.inputs.select(rows, indices),
            targets: match &self.targets {
                SampleTargets::Classes(a) => SampleTargets::Classes(a.select(rows, indices)),
                SampleTargets::StepClasses(a) => {
                    SampleTargets::StepClasses(a.select(rows, indices))
                }
                SampleTargets::Values(a) => SampleTargets::Values(a.select(rows, indices)),
                SampleTargets::StepValues(a) => SampleTargets::StepValues(a.select(rows, indices)),
            },
            spec: self.spec,
            lengths: self
                .lengths
                .as_ref()
                .map(|l| indices.iter().map(|&n| l[n]).collect()),
        }
    }

    /// Each sample's length from an integer `.npy` of shape `[N]` (values `1..=T`): the steps
    /// after it are padding (see `Batch::lengths`). `file` names it in messages.
    pub fn with_lengths_npy(mut self, file: &str, bytes: &[u8]) -> Result<Self, Error> {
        let name = format!("lengths '{file}'");
        let (n, t) = (self.len(), self.seq_len());
        let lengths = super::npy::lengths_from_npy_bytes(&name, &self.name, bytes, n, t)?;
        self.lengths = Some(lengths);
        Ok(self)
    }

    /// The samples at `indices` as one time-major batch: x `[T, B, I]` with `B =
    /// indices.len()`, targets with row `b` (last) or `t * B + b` (all). Panics on an index
    /// `>= N`.
    pub fn batch(&self, indices: &[usize]) -> Batch<f32> {
        let (t_len, b_len) = (self.seq_len(), indices.len());
        let mut x = Array3::<f32>::zeros((t_len, b_len, self.spec.input_size));
        for (b, &n) in indices.iter().enumerate() {
            x.slice_mut(s![.., b, ..])
                .assign(&self.inputs.index_axis(Axis(0), n));
        }
        let targets = match &self.targets {
            SampleTargets::Classes(a) => Targets::Classes(indices.iter().map(|&n| a[n]).collect()),
            SampleTargets::StepClasses(a) => Targets::Classes(
                (0..t_len)
                    .flat_map(|t| indices.iter().map(move |&n| a[[n, t]]))
                    .collect(),
            ),
            SampleTargets::Values(a) => Targets::Values(a.select(Axis(0), indices)),
            SampleTargets::StepValues(a) => {
                let mut y = Array2::<f32>::zeros((t_len * b_len, self.spec.output_size));
                for (b, &n) in indices.iter().enumerate() {
                    for t in 0..t_len {
                        y.row_mut(t * b_len + b).assign(&a.slice(s![n, t, ..]));
                    }
                }
                Targets::Values(y)
            }
        };
        Batch {
            x,
            h0: None,
            c0: None,
            targets,
            lengths: self
                .lengths
                .as_ref()
                .map(|l| indices.iter().map(|&n| l[n]).collect()),
        }
    }

    /// One epoch in an order shuffled by `rng`: every sample exactly once, in batches of
    /// `batch_size` (the last one smaller when `batch_size` does not divide `N`).
    pub fn batches(&self, batch_size: usize, rng: &mut dyn RngCore) -> Result<Batches<'_>, Error> {
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        Ok(Batches {
            dataset: self,
            order,
            batch_size,
            next: 0,
        })
    }
}

/// An epoch's batches; see [`Dataset::batches`].
pub struct Batches<'a> {
    dataset: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl Iterator for Batches<'_> {
    type Item = Batch<f32>;

    fn next(&mut self) -> Option<Batch<f32>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let batch = self.dataset.batch(&self.order[self.next..end]);
        self.next = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
