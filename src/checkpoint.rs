//! Checkpoints: a model's configuration, its parameters and any optimizer state or gradients in
//! one safetensors file that PyTorch reads as it is.
//!
//! Layout: every tensor is F32, little-endian, under PyTorch's names and shapes
//! (`weight_ih_l0` `[G*H, I]`, `weight_hh_l0` `[G*H, H]`, `bias_ih_l0` `[G*H]`,
//! `bias_hh_l0` `[G*H]`, `head.weight` `[O, H]`, `head.bias` `[O]`; G = 4 for the LSTM, 1 for
//! the RNN), plus extra tensors named `loss` or under `optim.`, `grad.` or `grad_norm.`. The
//! header's `__metadata__` holds the configuration as strings (`format` = "rnn-wgpu/1", `cell`,
//! `activation`, `input_size`, `hidden_size`, `output_size`, `readout`, `loss`) and whatever
//! else the caller adds (`optimizer`, `step`, `seed`, ...).
//!
//! So the recurrent weights go into PyTorch unchanged:
//!
//! ```python
//! from safetensors.torch import load_file
//! sd = load_file("model.safetensors")
//! lstm = torch.nn.LSTM(input_size, hidden_size)
//! names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
//! lstm.load_state_dict({k: sd[k] for k in names})
//! ```
//!
//! and a file PyTorch wrote with `safetensors.torch.save_file(state_dict)` (top-level names as
//! above, no rnn-wgpu metadata) loads by inferring the configuration from the shapes.

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::params::{check_shape, Params, PARAM_NAMES};
use crate::Error;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

/// The `format` metadata value this version writes and reads.
pub const FORMAT: &str = "rnn-wgpu/1";

/// Prefixes under which extra (non-parameter) tensors may be stored.
pub const EXTRA_PREFIXES: [&str; 3] = ["optim.", "grad.", "grad_norm."];

/// Whole names accepted for extra tensors besides the prefixes.
pub const EXTRA_NAMES: [&str; 1] = ["loss"];

/// Metadata keys that carry the configuration; `Checkpoint::metadata` never holds them.
pub const CONFIG_KEYS: [&str; 8] = [
    "format",
    "cell",
    "activation",
    "input_size",
    "hidden_size",
    "output_size",
    "readout",
    "loss",
];

/// An extra tensor: name, shape, values flattened row-major.
pub type ExtraTensor = (String, Vec<usize>, Vec<f32>);

/// Everything one file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: ModelConfig,
    /// Shapes as `config` implies (see `Params`).
    pub params: Params<f32>,
    /// Other f32 tensors, e.g. optimizer state ("optim.exp_avg.weight_ih_l0") or gradients and
    /// their norms ("grad.weight_hh_l0", "grad_norm.h"). `load` returns them sorted by name.
    pub extra: Vec<ExtraTensor>,
    /// The header's `__metadata__` besides `CONFIG_KEYS`, e.g. "optimizer", "step", "seed".
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// A checkpoint of just a model: no extra tensors, no metadata beyond the configuration.
    pub fn new(config: ModelConfig, params: Params<f32>) -> Self {
        Checkpoint {
            config,
            params,
            extra: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// The extra tensor called `name` (parameters are in `params`, not here).
    pub fn tensor(&self, name: &str) -> Option<&ExtraTensor> {
        self.extra.iter().find(|(n, _, _)| n == name)
    }
}

/// Command-line choices to apply when loading. Where the file's metadata names the
/// configuration, an override must agree with it; a file without metadata takes them as given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOverrides {
    pub cell: Option<Cell>,
    pub activation: Option<Activation>,
    pub readout: Option<Readout>,
    pub loss: Option<Loss>,
}

/// Whether `name` may be stored as an extra tensor: `loss`, or under one of `EXTRA_PREFIXES`.
pub fn is_extra_name(name: &str) -> bool {
    EXTRA_NAMES.contains(&name)
        || EXTRA_PREFIXES
            .iter()
            .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix))
}

/// Writes `checkpoint` to `path` as safetensors: the six parameters under PyTorch's names and
/// shapes (`[G*H, I]`, `[G*H, H]`, `[G*H]`, `[G*H]`, `[O, H]`, `[O]`), then the extras, all
/// F32; the configuration and `checkpoint.metadata` in `__metadata__`. Atomic: a failed or
/// interrupted save leaves whatever was at `path` untouched.
pub fn save(path: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let file = path.display();
    let config = &checkpoint.config;
    // Everything is checked before anything is written, so a refused save costs nothing.
    config.validate().map_err(|e| in_file(path, e))?;
    checkpoint
        .params
        .check(config)
        .map_err(|e| in_file(path, e))?;
    if let Some(key) = checkpoint
        .metadata
        .keys()
        .find(|key| CONFIG_KEYS.contains(&key.as_str()))
    {
        return Err(Error::Value(format!(
            "{file}: metadata key '{key}' is reserved for the configuration; set it in \
             Checkpoint::config instead"
        )));
    }
    let mut seen = BTreeSet::new();
    for (name, shape, values) in &checkpoint.extra {
        if !is_extra_name(name) {
            return Err(Error::Value(format!(
                "{file}: extra tensor '{name}' must be named {} or start with one of {}",
                EXTRA_NAMES.join(", "),
                EXTRA_PREFIXES.join(", ")
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Value(format!(
                "{file}: extra tensor '{name}' appears twice"
            )));
        }
        let len: usize = shape.iter().product();
        if len != values.len() {
            return Err(Error::Value(format!(
                "{file}: extra tensor '{name}' has {} values but its shape {shape:?} holds {len}",
                values.len()
            )));
        }
    }

    let owned: Vec<(&str, Vec<usize>, Vec<u8>)> = checkpoint
        .params
        .tensors()
        .into_iter()
        .zip(param_shapes(config))
        .map(|((name, values), shape)| (name, shape, little_endian(values)))
        .chain(
            checkpoint
                .extra
                .iter()
                .map(|(name, shape, values)| (name.as_str(), shape.clone(), little_endian(values))),
        )
        .collect();
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (*name, view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Value(format!("{file}: cannot serialize: {e}")))?;
    let metadata = config_metadata(config)
        .into_iter()
        .chain(checkpoint.metadata.clone())
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Value(format!("{file}: cannot serialize: {e}")))?;
    crate::fsio::write_atomic(path, &bytes)
}

/// Reads a checkpoint from `path`. The configuration comes from the metadata where the file
/// has it (`overrides` must then agree), otherwise it is inferred from the shapes
/// `weight_ih_l0` `[G*H, I]`, `weight_hh_l0` `[G*H, H]` and `head.weight` `[O, H]` (G = 4: LSTM,
/// G = 1: RNN), with the activation, readout and loss from `overrides` or PyTorch's and this
/// crate's defaults: tanh, last, mse.
///
/// Only F32 tensors are accepted; F64, F16 and BF16 are refused rather than converted, so a
/// loaded model is exactly the one saved (convert in PyTorch with `v.float()`).
pub fn load(path: &Path, overrides: &LoadOverrides) -> Result<Checkpoint, Error> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("{file}: cannot read checkpoint: {e}")))?;
    from_bytes(&file, &bytes, overrides)
}

/// [`load`] for a file already in memory; `file` starts every error message.
pub fn from_bytes(
    file: &str,
    bytes: &[u8],
    overrides: &LoadOverrides,
) -> Result<Checkpoint, Error> {
    let invalid = |e: safetensors::SafeTensorError| {
        Error::Value(format!("{file}: not a valid safetensors file: {e}"))
    };
    // SafeTensors keeps the header's __metadata__ to itself; read_metadata exposes it.
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let header: BTreeMap<String, String> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let safetensors = SafeTensors::deserialize(bytes).map_err(invalid)?;

    let mut params = BTreeMap::new();
    let mut extra = Vec::new();
    for (name, view) in safetensors.tensors() {
        let is_param = PARAM_NAMES.contains(&name.as_str());
        if !is_param && !is_extra_name(&name) {
            return Err(Error::Value(format!(
                "{file}: unexpected tensor '{name}'{}: expected {} and extras named {} or under \
                 {}",
                unexpected_hint(&name),
                PARAM_NAMES.join(", "),
                EXTRA_NAMES.join(", "),
                EXTRA_PREFIXES.join(", ")
            )));
        }
        if view.dtype() != Dtype::F32 {
            return Err(Error::Value(format!(
                "{file}: tensor '{name}' has dtype {}; rnn-wgpu reads only F32 (in PyTorch: \
                 {{k: v.float() for k, v in state_dict.items()}})",
                view.dtype()
            )));
        }
        let values = from_little_endian(view.data());
        let shape = view.shape().to_vec();
        if is_param {
            params.insert(name, (shape, values));
        } else {
            extra.push((name, shape, values));
        }
    }
    extra.sort_by(|a, b| a.0.cmp(&b.0));

    let config = match config_from_metadata(file, &header, overrides)? {
        Some(config) => {
            check_cell_against_shapes(file, &config, &params)?;
            config
        }
        None => infer_config(file, &params, overrides)?,
    };
    config.validate().map_err(|e| in_file(Path::new(file), e))?;
    let params = params_from_tensors(file, &config, &params)?;
    let metadata = header
        .into_iter()
        .filter(|(key, _)| !CONFIG_KEYS.contains(&key.as_str()))
        .collect();
    Ok(Checkpoint {
        config,
        params,
        extra,
        metadata,
    })
}

/// The parameters' shapes in `PARAM_NAMES` order:
/// `[G*H, I]`, `[G*H, H]`, `[G*H]`, `[G*H]`, `[O, H]`, `[O]`.
fn param_shapes(config: &ModelConfig) -> [Vec<usize>; 6] {
    let (gh, h, i, o) = (
        config.gate_rows(),
        config.hidden_size,
        config.input_size,
        config.output_size,
    );
    [
        vec![gh, i],
        vec![gh, h],
        vec![gh],
        vec![gh],
        vec![o, h],
        vec![o],
    ]
}

/// The configuration as `__metadata__` strings, `format` included.
fn config_metadata(config: &ModelConfig) -> [(String, String); 8] {
    let entry = |key: &str, value: String| (key.to_string(), value);
    [
        entry("format", FORMAT.to_string()),
        entry("cell", config.cell.name().to_string()),
        entry("activation", config.activation.name().to_string()),
        entry("input_size", config.input_size.to_string()),
        entry("hidden_size", config.hidden_size.to_string()),
        entry("output_size", config.output_size.to_string()),
        entry("readout", config.readout.name().to_string()),
        entry("loss", config.loss.name().to_string()),
    ]
}

/// The configuration the header names, or `None` when it names none (a file from PyTorch).
fn config_from_metadata(
    file: &str,
    header: &BTreeMap<String, String>,
    overrides: &LoadOverrides,
) -> Result<Option<ModelConfig>, Error> {
    let format = header.get("format").map(String::as_str);
    if let Some(format) = format {
        if format.starts_with("rnn-wgpu/") && format != FORMAT {
            return Err(Error::Value(format!(
                "{file}: format '{format}' is not supported; this version reads {FORMAT}"
            )));
        }
    }
    // Other writers put their own keys there (transformers writes format=pt), so only ours
    // mean the configuration is present.
    let names_config =
        format == Some(FORMAT) || CONFIG_KEYS[1..].iter().any(|key| header.contains_key(*key));
    if !names_config {
        return Ok(None);
    }

    let field = |key: &str| {
        header.get(key).map(String::as_str).ok_or_else(|| {
            Error::Value(format!(
                "{file}: metadata has an rnn-wgpu configuration but no '{key}'"
            ))
        })
    };
    fn choice<T: FromStr<Err = Error>>(file: &str, key: &str, value: &str) -> Result<T, Error> {
        value
            .parse()
            .map_err(|e| Error::Value(format!("{file}: metadata {key}: {}", message(e))))
    }
    let size = |key: &str| {
        let value = field(key)?;
        value.parse::<usize>().map_err(|_| {
            Error::Value(format!(
                "{file}: metadata {key}='{value}' is not a whole number"
            ))
        })
    };
    let cell = choice(file, "cell", field("cell")?)?;
    let activation = choice(file, "activation", field("activation")?)?;
    let readout = choice(file, "readout", field("readout")?)?;
    let loss = choice(file, "loss", field("loss")?)?;
    Ok(Some(ModelConfig {
        cell: agree(file, "cell", cell, overrides.cell)?,
        activation: agree(file, "activation", activation, overrides.activation)?,
        input_size: size("input_size")?,
        hidden_size: size("hidden_size")?,
        output_size: size("output_size")?,
        readout: agree(file, "readout", readout, overrides.readout)?,
        loss: agree(file, "loss", loss, overrides.loss)?,
    }))
}

/// `from_file`, unless the caller (a command-line option, or the data a model is loaded for)
/// needs something else.
fn agree<T: PartialEq + Display>(
    file: &str,
    key: &str,
    from_file: T,
    needed: Option<T>,
) -> Result<T, Error> {
    match needed {
        Some(wanted) if wanted != from_file => Err(Error::Value(format!(
            "{file}: file says {key}={from_file}, but this run needs {key}={wanted}"
        ))),
        _ => Ok(from_file),
    }
}

/// The cell whose `weight_hh_l0` has `rows` x `hidden` (`[G*H, H]`); `Err` explains the shape.
fn cell_from_weight_hh(rows: usize, hidden: usize) -> Result<Cell, String> {
    let shape = [rows, hidden];
    if hidden == 0 || !rows.is_multiple_of(hidden) {
        return Err(format!(
            "weight_hh_l0 has shape {shape:?}, which is none of an RNN's [H, H], a GRU's \
             [3H, H] or an LSTM's [4H, H]"
        ));
    }
    match rows / hidden {
        1 => Ok(Cell::Rnn),
        3 => Ok(Cell::Gru),
        4 => Ok(Cell::Lstm),
        g => Err(format!(
            "weight_hh_l0 has shape {shape:?} = [{g}H, H], which is none of an RNN's [H, H], a \
             GRU's [3H, H] or an LSTM's [4H, H]"
        )),
    }
}

/// Refuses metadata whose cell contradicts `weight_hh_l0`'s `[G*H, H]`, e.g. cell=rnn with 4H
/// rows, with a clearer message than the bare shape mismatch `params_from_tensors` would give.
fn check_cell_against_shapes(
    file: &str,
    config: &ModelConfig,
    params: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<(), Error> {
    let Some((shape, _)) = params.get(PARAM_NAMES[1]) else {
        return Ok(()); // reported as missing later
    };
    if let [rows, hidden] = shape[..] {
        if let Ok(cell) = cell_from_weight_hh(rows, hidden) {
            if cell != config.cell {
                return Err(Error::Value(format!(
                    "{file}: metadata says cell={} but weight_hh_l0 has shape {shape:?}, an {}'s \
                     [{}H, H] with H = {hidden}",
                    config.cell,
                    cell,
                    cell.gates()
                )));
            }
        }
    }
    Ok(())
}

/// The configuration of a file without metadata, from `weight_hh_l0` `[G*H, H]`,
/// `weight_ih_l0` `[G*H, I]` and `head.weight` `[O, H]`; the rest from `overrides` or defaults.
fn infer_config(
    file: &str,
    params: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    overrides: &LoadOverrides,
) -> Result<ModelConfig, Error> {
    let shape = |name: &str| params.get(name).map(|(shape, _)| shape.as_slice());
    let missing = |name: &str| {
        Error::Value(format!(
            "{file}: missing tensor '{name}' (and no rnn-wgpu metadata to say what the model is)"
        ))
    };
    let two_dimensional = |name: &str, layout: &str| {
        let shape = shape(name).ok_or_else(|| missing(name))?;
        match shape {
            [rows, cols] => Ok((*rows, *cols)),
            _ => Err(Error::Value(format!(
                "{file}: {name} has shape {shape:?}; expected {layout}"
            ))),
        }
    };
    let (gate_rows, hidden_size) = two_dimensional(PARAM_NAMES[1], "[G*H, H]")?;
    let (_, input_size) = two_dimensional(PARAM_NAMES[0], "[G*H, I]")?;
    let cell = cell_from_weight_hh(gate_rows, hidden_size).map_err(|why| {
        Error::Value(format!(
            "{file}: {why} (weight_ih_l0 has shape {:?})",
            shape(PARAM_NAMES[0]).unwrap_or_default()
        ))
    })?;
    if shape(PARAM_NAMES[4]).is_none() && shape(PARAM_NAMES[5]).is_none() {
        return Err(Error::Value(format!(
            "{file}: no head.weight/head.bias: this looks like a bare nn.RNN/nn.LSTM state dict; \
             rnn-wgpu models end in a linear head, so save it too (as 'head.weight' [O, H] and \
             'head.bias' [O])"
        )));
    }
    let (output_size, _) = two_dimensional(PARAM_NAMES[4], "[O, H]")?;
    if let Some(wanted) = overrides.cell {
        if wanted != cell {
            return Err(Error::Value(format!(
                "{file}: file says cell={cell} (weight_hh_l0 has shape {:?}), but this run needs \
                 cell={wanted}",
                [gate_rows, hidden_size]
            )));
        }
    }
    Ok(ModelConfig {
        cell,
        // PyTorch's nn.RNN default; the file cannot say otherwise without metadata.
        activation: overrides.activation.unwrap_or(Activation::Tanh),
        input_size,
        hidden_size,
        output_size,
        readout: overrides.readout.unwrap_or(Readout::Last),
        loss: overrides.loss.unwrap_or(Loss::Mse),
    })
}

/// `Params` from the file's tensors, each checked against `config`'s shape.
fn params_from_tensors(
    file: &str,
    config: &ModelConfig,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<Params<f32>, Error> {
    for (name, expected) in PARAM_NAMES.iter().zip(param_shapes(config)) {
        let (shape, _) = tensors.get(*name).ok_or_else(|| {
            Error::Value(format!(
                "{file}: missing tensor '{name}' (expected shape {expected:?} for {} with I={}, \
                 H={}, O={})",
                config.cell, config.input_size, config.hidden_size, config.output_size
            ))
        })?;
        check_shape(&format!("{file}: {name}"), shape, &expected)?;
    }
    let mut params = Params::zeros(config);
    params.for_each_mut(|name, values| values.copy_from_slice(&tensors[name].1));
    Ok(params)
}

/// Why an unexpected name might be there, for the error message.
fn unexpected_hint(name: &str) -> &'static str {
    if PARAM_NAMES
        .iter()
        .any(|param| name.strip_suffix(param).is_some_and(|s| s.ends_with('.')))
    {
        " (a submodule's parameter: save the state dict with the module prefix stripped)"
    } else if ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
        .iter()
        .any(|stem| name.starts_with(stem))
    {
        " (only single-layer, unidirectional models are supported: layer 0, no _reverse)"
    } else {
        ""
    }
}

/// `error` with its message prefixed by the file, as every checkpoint error is.
fn in_file(path: &Path, error: Error) -> Error {
    let file = path.display();
    match error {
        Error::Shape {
            what,
            got,
            expected,
        } => Error::Shape {
            what: format!("{file}: {what}"),
            got,
            expected,
        },
        Error::Io(message) => Error::Io(format!("{file}: {message}")),
        other => Error::Value(format!("{file}: {}", message(other))),
    }
}

/// The message inside `error`, without its variant's prefix.
fn message(error: Error) -> String {
    match error {
        Error::Config(message) | Error::Value(message) | Error::Io(message) => message,
        other => other.to_string(),
    }
}

/// Values as safetensors stores them: little-endian whatever the machine.
fn little_endian(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of `little_endian`; `bytes.len()` is a multiple of 4 (safetensors checked it).
fn from_little_endian(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4-byte chunk")))
        .collect()
}
