//! The CSV reader behind [`super::Dataset::from_csv`], and the layout it is told
//! (`CsvFormat`, `CsvTargets`; described in `dataset`'s module docs).

use super::targets::SampleTargets;
use crate::error::Error;
use ndarray::{Array1, Array2, Array3};

/// What each CSV line holds after its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvTargets {
    /// One class index: last-step cross-entropy.
    Class,
    /// `O` values: last-step MSE.
    Values(usize),
    /// `T` class indices, one per step: per-step cross-entropy.
    StepClasses,
    /// `T * O` values, step by step: per-step MSE.
    StepValues(usize),
}

/// How to cut a CSV line into inputs and targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvFormat {
    /// `T`: steps per sequence.
    pub seq_len: usize,
    /// What follows the `T * I` inputs on each line, and so the targets' layout.
    pub targets: CsvTargets,
}

/// Inputs `[N, T, I]` and targets from the bytes of a CSV file; `name` names it in messages.
pub(crate) fn parse(
    bytes: &[u8],
    name: &str,
    format: CsvFormat,
) -> Result<(Array3<f32>, SampleTargets), Error> {
    let t_len = format.seq_len;
    if t_len == 0 {
        return Err(Error::Config(format!("{name}: seq_len must be at least 1")));
    }
    let (target_fields, what) = match format.targets {
        CsvTargets::Class => (1, "1 class".to_string()),
        CsvTargets::Values(o) => (o, format!("{o} values")),
        CsvTargets::StepClasses => (t_len, format!("{t_len} classes (one per step)")),
        CsvTargets::StepValues(o) => (t_len * o, format!("{t_len} x {o} values (per step)")),
    };
    if target_fields == 0 {
        return Err(Error::Config(format!(
            "{name}: targets need at least 1 value per row"
        )));
    }
    let rows = Rows::parse(text_of(bytes, name)?, name)?;
    let width = rows.width;
    let input_fields = width.saturating_sub(target_fields);
    if input_fields == 0 || input_fields % t_len != 0 {
        return Err(Error::Value(format!(
            "{name} has {width} fields per line; with seq_len {t_len} and {what} as \
             targets, expected {t_len} * I + {target_fields} fields for some I >= 1"
        )));
    }
    let rows = &rows.values;
    let (n, i) = (rows.len(), input_fields / t_len);
    let inputs = Array3::from_shape_fn((n, t_len, i), |(r, t, k)| rows[r][t * i + k] as f32);
    let target = |r: usize, k: usize| rows[r][input_fields + k];
    let class = |r: usize, k: usize| -> Result<u32, Error> {
        let v = target(r, k);
        if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
            return Err(Error::Value(format!(
                "{name} data row {}, column {}: class {v} is not a non-negative integer",
                r + 1,
                input_fields + k + 1
            )));
        }
        Ok(v as u32)
    };
    let targets = match format.targets {
        CsvTargets::Class => SampleTargets::Classes(
            (0..n)
                .map(|r| class(r, 0))
                .collect::<Result<Array1<u32>, _>>()?,
        ),
        CsvTargets::StepClasses => {
            let flat = (0..n * t_len)
                .map(|j| class(j / t_len, j % t_len))
                .collect::<Result<Vec<u32>, _>>()?;
            SampleTargets::StepClasses(Array2::from_shape_vec((n, t_len), flat).unwrap())
        }
        CsvTargets::Values(o) => {
            SampleTargets::Values(Array2::from_shape_fn((n, o), |(r, k)| target(r, k) as f32))
        }
        CsvTargets::StepValues(o) => {
            SampleTargets::StepValues(Array3::from_shape_fn((n, t_len, o), |(r, t, k)| {
                target(r, t * o + k) as f32
            }))
        }
    };
    Ok((inputs, targets))
}

/// `bytes` as text, or an error naming the line and offset of the first byte that is not
/// UTF-8.
fn text_of<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes).map_err(|err| {
        let at = err.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        Error::Value(format!(
            "{name} line {line}: byte {:#04x} at offset {at} is not UTF-8 text; expected \
             comma-separated numbers",
            bytes[at]
        ))
    })
}

/// A CSV file's data rows, all of `width` numbers.
struct Rows {
    values: Vec<Vec<f64>>,
    width: usize,
}

impl Rows {
    /// Every non-blank line's numbers. A first line with a field that is not a number is a
    /// header, skipped, though its width must match; any later one is an error naming the
    /// line and column, as is a line of another width or a file with no data rows.
    fn parse(text: &str, name: &str) -> Result<Rows, Error> {
        let mut values: Vec<Vec<f64>> = Vec::new();
        let mut width = None;
        for (line_index, line) in text.lines().enumerate() {
            let line_number = line_index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let parsed: Vec<Option<f64>> = fields.iter().map(|f| f.parse().ok()).collect();
            if values.is_empty() && width.is_none() && parsed.iter().any(Option::is_none) {
                width = Some(fields.len());
                continue;
            }
            if let Some(column) = parsed.iter().position(Option::is_none) {
                return Err(Error::Value(format!(
                    "{name} line {line_number}, column {}: '{}' is not a number",
                    column + 1,
                    fields[column]
                )));
            }
            let expected = *width.get_or_insert(fields.len());
            if fields.len() != expected {
                return Err(Error::Value(format!(
                    "{name} line {line_number} has {} fields; earlier lines have {expected}",
                    fields.len()
                )));
            }
            values.push(parsed.into_iter().map(Option::unwrap).collect());
        }
        match width.filter(|_| !values.is_empty()) {
            Some(width) => Ok(Rows { values, width }),
            None => Err(Error::Value(format!("{name} holds no data rows"))),
        }
    }
}
