//! Reading `.npy` files of any of the dtypes the crate accepts, and the checks every loader
//! shares (finite values, class ranges), each error naming the file and the element.

use crate::Error;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use std::path::Path;

/// `[a, b, c]` position of element `flat` (row-major) in an array of `shape`.
pub(crate) fn position(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    index
}

pub(crate) fn check_finite<'a>(
    name: &str,
    shape: &[usize],
    values: impl Iterator<Item = &'a f32>,
) -> Result<(), Error> {
    for (flat, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(Error::Value(format!(
                "{name} hold {v} at index {:?} (shape {shape:?}); every value must be finite",
                position(flat, shape)
            )));
        }
    }
    Ok(())
}

/// `O` for class targets: `num_classes` if given (checking every index), else max + 1.
pub(crate) fn class_count<'a>(
    name: &str,
    shape: &[usize],
    classes: impl Iterator<Item = &'a u32>,
    num_classes: Option<usize>,
) -> Result<usize, Error> {
    let mut max = 0;
    for (flat, &class) in classes.enumerate() {
        if num_classes.is_some_and(|o| class as usize >= o) {
            return Err(Error::Value(format!(
                "{name} hold class {class} at index {:?}, out of range 0..{} for {} classes",
                position(flat, shape),
                num_classes.unwrap(),
                num_classes.unwrap()
            )));
        }
        max = max.max(class);
    }
    match num_classes {
        Some(0) => Err(Error::Config(
            "the number of classes must be at least 1".into(),
        )),
        Some(o) => Ok(o),
        None => Ok(max as usize + 1),
    }
}

/// A `.npy` array as read: floats as f32, any integer dtype as i64 with its numpy name.
pub(crate) enum Npy {
    Float(ArrayD<f32>),
    Int(ArrayD<i64>, &'static str),
}

/// Reads `path` as float32/float64/int64/int32/uint8, trying each element type in turn:
/// ndarray-npy refuses a mismatched dtype before it reads any data.
pub(crate) fn read_npy(path: &Path, name: &str) -> Result<Npy, Error> {
    let bytes =
        std::fs::read(path).map_err(|err| Error::Value(format!("cannot read {name}: {err}")))?;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut &bytes[..])
        .map_err(|err| Error::Value(format!("{name} is not a valid .npy file: {err}")))?;
    let fail = |err: ReadNpyError| {
        Error::Value(format!(
            "{name} (dtype {}, shape {:?}) could not be read: {err}",
            header.type_descriptor, header.shape
        ))
    };
    macro_rules! attempt {
        ($ty:ty, $wrap:expr) => {
            match ArrayD::<$ty>::read_npy(&bytes[..]) {
                Ok(a) => return Ok($wrap(a)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(err) => return Err(fail(err)),
            }
        };
    }
    attempt!(f32, Npy::Float);
    attempt!(f64, |a: ArrayD<f64>| Npy::Float(a.mapv(|v| v as f32)));
    attempt!(i64, |a| Npy::Int(a, "int64"));
    attempt!(i32, |a: ArrayD<i32>| Npy::Int(a.mapv(i64::from), "int32"));
    attempt!(u8, |a: ArrayD<u8>| Npy::Int(a.mapv(i64::from), "uint8"));
    Err(Error::Value(format!(
        "{name} have dtype {} (shape {:?}); expected float32 or float64 values, or int64, \
         int32 or uint8 class indices",
        header.type_descriptor, header.shape
    )))
}

/// Integer class indices to u32, refusing negative or huge ones with their position.
pub(crate) fn to_classes(a: ArrayD<i64>, name: &str) -> Result<ArrayD<u32>, Error> {
    if let Some((flat, &v)) = a
        .iter()
        .enumerate()
        .find(|(_, &v)| u32::try_from(v).is_err())
    {
        return Err(Error::Value(format!(
            "{name} hold class {v} at index {:?} (shape {:?}); class indices must be in \
             0..2^32",
            position(flat, a.shape()),
            a.shape()
        )));
    }
    Ok(a.mapv(|v| v as u32))
}

/// One time-major batch for `config` from two `.npy` files, as the `grad` command takes it:
/// x `[T, B, I]` float; targets `[B]` classes or `[B, O]` values for `Readout::Last`,
/// `[T, B]` classes or `[T, B, O]` values for `Readout::All` (class indices for
/// cross-entropy, floats for MSE).
pub fn load_batch(
    config: &crate::ModelConfig,
    inputs_path: &Path,
    targets_path: &Path,
) -> Result<crate::Batch<f32>, Error> {
    use crate::config::{Loss, Readout};
    use crate::data::{Batch, Targets};
    use ndarray::Ix3;
    let inputs_name = format!("inputs '{}'", inputs_path.display());
    let targets_name = format!("targets '{}'", targets_path.display());
    let x = match read_npy(inputs_path, &inputs_name)? {
        Npy::Float(a) => a,
        Npy::Int(_, dtype) => {
            return Err(Error::Value(format!(
                "{inputs_name} have dtype {dtype}; expected float32 or float64"
            )))
        }
    };
    let shape = x.shape().to_vec();
    let x = x.into_dimensionality::<Ix3>().map_err(|_| {
        Error::Value(format!(
            "{inputs_name} have shape {shape:?}; expected [T, B, I]"
        ))
    })?;
    check_finite(&inputs_name, x.shape(), x.iter())?;
    let (t, b, i) = x.dim();
    if i != config.input_size || t == 0 || b == 0 {
        return Err(Error::Value(format!(
            "{inputs_name} have shape [{t}, {b}, {i}]; expected [T, B, {}] with T, B >= 1",
            config.input_size
        )));
    }
    let rows = config.scored_rows(t, b);
    let o = config.output_size;
    let expected = match (config.readout, config.loss) {
        (Readout::Last, Loss::CrossEntropy) => vec![b],
        (Readout::Last, Loss::Mse) => vec![b, o],
        (Readout::All, Loss::CrossEntropy) => vec![t, b],
        (Readout::All, Loss::Mse) => vec![t, b, o],
    };
    let targets = match (read_npy(targets_path, &targets_name)?, config.loss) {
        (Npy::Int(a, _), Loss::CrossEntropy) if a.shape() == expected.as_slice() => {
            let classes = to_classes(a, &targets_name)?;
            class_count(&targets_name, classes.shape(), classes.iter(), Some(o))?;
            Targets::Classes(classes.iter().copied().collect())
        }
        (Npy::Float(a), Loss::Mse) if a.shape() == expected.as_slice() => {
            check_finite(&targets_name, a.shape(), a.iter())?;
            let values = a.iter().copied().collect::<Vec<f32>>();
            Targets::Values(
                ndarray::Array2::from_shape_vec((rows, o), values).expect("rows * O values"),
            )
        }
        (found, _) => {
            let (kind, shape) = match &found {
                Npy::Int(a, dtype) => (format!("{dtype} classes"), a.shape().to_vec()),
                Npy::Float(a) => ("float values".to_string(), a.shape().to_vec()),
            };
            let want = match config.loss {
                Loss::CrossEntropy => "integer class indices",
                Loss::Mse => "float values",
            };
            return Err(Error::Value(format!(
                "{targets_name} hold {kind} of shape {shape:?}; the model ({} readout, {} loss) \
                 needs {want} of shape {expected:?}",
                config.readout, config.loss
            )));
        }
    };
    Ok(Batch {
        x,
        h0: None,
        c0: None,
        targets,
    })
}
