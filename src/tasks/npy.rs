//! Reading `.npy` files of any of the dtypes the crate accepts, and the checks every loader
//! shares (finite values, class ranges), each error naming the file and the element.

use crate::error::Error;
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

/// The most classes inferred from the targets alone: a larger index is far more likely a stray
/// value than a real class, and would size the model's head by it.
pub const MAX_INFERRED_CLASSES: usize = 1 << 16;

/// `O` for class targets: `num_classes` if given (checking every index), else max + 1, which
/// must not exceed [`MAX_INFERRED_CLASSES`].
pub(crate) fn class_count<'a>(
    name: &str,
    shape: &[usize],
    classes: impl Iterator<Item = &'a u32>,
    num_classes: Option<usize>,
) -> Result<usize, Error> {
    let mut max: Option<(usize, u32)> = None;
    for (flat, &class) in classes.enumerate() {
        if num_classes.is_some_and(|o| class as usize >= o) {
            return Err(Error::Value(format!(
                "{name} hold class {class} at index {:?}, out of range 0..{} for {} classes",
                position(flat, shape),
                num_classes.unwrap(),
                num_classes.unwrap()
            )));
        }
        if max.is_none_or(|(_, m)| class > m) {
            max = Some((flat, class));
        }
    }
    match (num_classes, max) {
        (Some(0), _) => Err(Error::Config(
            "the number of classes must be at least 1".into(),
        )),
        (Some(o), _) => Ok(o),
        (None, Some((flat, class))) if class as usize >= MAX_INFERRED_CLASSES => {
            Err(Error::Value(format!(
                "{name} hold class {class} at index {:?}, which would make {} classes; at most \
                 {MAX_INFERRED_CLASSES} are inferred from the data: give the number of classes \
                 (--classes) if there really are that many",
                position(flat, shape),
                class as u64 + 1
            )))
        }
        (None, max) => Ok(max.map_or(0, |(_, class)| class as usize) + 1),
    }
}

/// A `.npy` array as read: floats as f32, any integer dtype as i64 with its numpy name.
pub(crate) enum Npy {
    Float(ArrayD<f32>),
    Int(ArrayD<i64>, &'static str),
}

/// The contents of an `.npy` file as float32/float64/int64/int32/uint8, trying each element
/// type in turn: ndarray-npy refuses a mismatched dtype before it reads any data. The data's
/// lengths are checked first (the header's against the file, the data's against the header's
/// shape and dtype), so a header claiming a huge size or shape is refused, not allocated.
/// `name` says which file it is in messages.
pub(crate) fn parse_npy(bytes: &[u8], name: &str) -> Result<Npy, Error> {
    // ndarray-npy allocates the header's stated length (up to 4 GiB) before reading it.
    if let Some((preamble, header_len)) = stated_header_len(bytes) {
        if preamble + header_len > bytes.len() {
            return Err(Error::Value(format!(
                "{name} is truncated: its header says it is {header_len} bytes long but only {} \
                 bytes follow",
                bytes.len() - preamble
            )));
        }
    }
    let mut data = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut data)
        .map_err(|err| Error::Value(format!("{name} is not a valid .npy file: {err}")))?;
    let (dtype, shape) = (&header.type_descriptor, &header.shape);
    if let Some(item_size) = item_size(&dtype.to_string()) {
        let needed = shape
            .iter()
            .try_fold(item_size, |bytes, &d| bytes.checked_mul(d));
        let described = match needed {
            Some(n) => format!("{n} bytes of data"),
            None => "more bytes than fit in memory".to_string(),
        };
        if needed.is_none_or(|n| n > data.len()) {
            return Err(Error::Value(format!(
                "{name} is truncated: its header says dtype {dtype}, shape {shape:?} \
                 ({described}) but only {} bytes follow the header",
                data.len()
            )));
        }
        if needed.is_some_and(|n| n < data.len()) {
            return Err(Error::Value(format!(
                "{name} has {} bytes after its header, but the header's dtype {dtype}, shape \
                 {shape:?} describes {described}",
                data.len()
            )));
        }
    }
    let fail = |err: ReadNpyError| {
        Error::Value(format!(
            "{name} (dtype {dtype}, shape {shape:?}) could not be read: {err}"
        ))
    };
    macro_rules! attempt {
        ($ty:ty, $wrap:expr) => {
            match ArrayD::<$ty>::read_npy(bytes) {
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
        "{name} have dtype {dtype} (shape {shape:?}); expected float32 or float64 values, or \
         int64, int32 or uint8 class indices"
    )))
}

/// The preamble's length and the header length it states: the magic string, the version, then
/// the length as 2 bytes (version 1) or 4 bytes (versions 2 and 3), little-endian. `None` when
/// `bytes` do not start like an `.npy` file (the header reader then says why).
fn stated_header_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let rest = bytes.strip_prefix(b"\x93NUMPY")?;
    match rest {
        [1, _, a, b, ..] => Some((10, u16::from_le_bytes([*a, *b]) as usize)),
        [2 | 3, _, a, b, c, d, ..] => Some((12, u32::from_le_bytes([*a, *b, *c, *d]) as usize)),
        _ => None,
    }
}

/// Bytes per element of a plain numeric dtype such as `'<f4'` or `'|u1'` (as the header's
/// Python literal: byte order, kind, size); `None` for anything else, which the readers refuse
/// by its dtype without reading the data.
fn item_size(dtype: &str) -> Option<usize> {
    let text = dtype.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut chars = text.chars();
    let (order, kind) = (chars.next()?, chars.next()?);
    if !"<>|=".contains(order) || !"fiub".contains(kind) {
        return None;
    }
    chars.as_str().parse().ok()
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
    config: &crate::config::ModelConfig,
    inputs_path: &Path,
    targets_path: &Path,
) -> Result<crate::data::Batch<f32>, Error> {
    let read = |path: &Path, role: &str| {
        std::fs::read(path)
            .map_err(|err| Error::Value(format!("cannot read {role} '{}': {err}", path.display())))
    };
    batch_from_npy_bytes(
        config,
        &inputs_path.display().to_string(),
        &read(inputs_path, "inputs")?,
        &targets_path.display().to_string(),
        &read(targets_path, "targets")?,
    )
}

/// Time-major inputs x [T, B, I] for `config` from an `.npy` file's bytes (float32 or float64,
/// every value finite, T and B at least 1); `file` names it in messages.
pub fn inputs_from_npy_bytes(
    config: &crate::config::ModelConfig,
    file: &str,
    bytes: &[u8],
) -> Result<ndarray::Array3<f32>, Error> {
    use ndarray::Ix3;
    let name = format!("inputs '{file}'");
    let x = match parse_npy(bytes, &name)? {
        Npy::Float(a) => a,
        Npy::Int(_, dtype) => {
            return Err(Error::Value(format!(
                "{name} have dtype {dtype}; expected float32 or float64"
            )))
        }
    };
    let shape = x.shape().to_vec();
    let x = x
        .into_dimensionality::<Ix3>()
        .map_err(|_| Error::Value(format!("{name} have shape {shape:?}; expected [T, B, I]")))?;
    check_finite(&name, x.shape(), x.iter())?;
    let (t, b, i) = x.dim();
    if i != config.input_size || t == 0 || b == 0 {
        return Err(Error::Value(format!(
            "{name} have shape [{t}, {b}, {i}]; expected [T, B, {}] with T, B >= 1",
            config.input_size
        )));
    }
    Ok(x)
}

/// Each of `n` sequences' length from an integer `.npy` of shape `[n]` (values `1..=steps`);
/// `name` says which file in messages, `samples` whose samples they are.
pub fn lengths_from_npy_bytes(
    name: &str,
    samples: &str,
    bytes: &[u8],
    n: usize,
    steps: usize,
) -> Result<Vec<usize>, Error> {
    let values = match parse_npy(bytes, name)? {
        Npy::Int(a, _) if a.ndim() == 1 && a.len() == n => a,
        Npy::Int(a, _) => {
            return Err(Error::Value(format!(
                "{name} have shape {:?}; expected [N] = [{n}], one per sample of {samples}",
                a.shape()
            )))
        }
        Npy::Float(_) => {
            return Err(Error::Value(format!(
                "{name} are floats; expected integers (int64, int32 or uint8) of shape [{n}]"
            )))
        }
    };
    let mut lengths = Vec::with_capacity(n);
    for (k, &v) in values.iter().enumerate() {
        if v < 1 || v as usize > steps {
            return Err(Error::Value(format!(
                "{name}: sample {k} has length {v}; lengths must be 1..={steps} (the inputs' T)"
            )));
        }
        lengths.push(v as usize);
    }
    Ok(lengths)
}

/// [`load_batch`] for files already in memory; the names (file names) appear in messages.
pub fn batch_from_npy_bytes(
    config: &crate::config::ModelConfig,
    inputs_file: &str,
    inputs: &[u8],
    targets_file: &str,
    targets: &[u8],
) -> Result<crate::data::Batch<f32>, Error> {
    use crate::config::{Loss, Readout};
    use crate::data::{Batch, Targets};
    let targets_name = format!("targets '{targets_file}'");
    let x = inputs_from_npy_bytes(config, inputs_file, inputs)?;
    let (t, b, _) = x.dim();
    let rows = config.scored_rows(t, b);
    let o = config.output_size;
    let expected = match (config.readout, config.loss) {
        (Readout::Last, Loss::CrossEntropy) => vec![b],
        (Readout::Last, Loss::Mse) => vec![b, o],
        (Readout::All, Loss::CrossEntropy) => vec![t, b],
        (Readout::All, Loss::Mse) => vec![t, b, o],
    };
    let targets = match (parse_npy(targets, &targets_name)?, config.loss) {
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
        lengths: None,
    })
}
