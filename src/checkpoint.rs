//! Checkpoints: a model's configuration, its parameters and any optimizer state or gradients in
//! one safetensors file that PyTorch reads as it is.
//!
//! Layout: every tensor is F32, little-endian, under PyTorch's names and shapes
//! (`weight_ih_l{k}[_reverse]` `[G*H, W]` with W = I for layer 0 and D*H above,
//! `weight_hh_l{k}[_reverse]` `[G*H, H]`, `bias_ih_l{k}[_reverse]` and `bias_hh_l{k}[_reverse]`
//! `[G*H]`, `head.weight` `[O, D*H]`, `head.bias` `[O]`; G = 4 for the LSTM, 3 for the GRU, 1 for
//! the RNN; D = 2 for a bidirectional model), plus extra tensors named `loss` or under `optim.`,
//! `grad.` or `grad_norm.`. The header's `__metadata__` holds the configuration as strings
//! (`format` = "rnn-wgpu/1", `cell`, `activation`, `input_size`, `hidden_size`, `output_size`,
//! `readout`, `loss`, `layers`, `bidirectional`, `dropout`) and whatever else the caller adds
//! (`optimizer`, `step`, `seed`, ...).
//!
//! So the recurrent weights go into PyTorch unchanged:
//!
//! ```python
//! from safetensors.torch import load_file
//! sd = load_file("model.safetensors")
//! lstm = torch.nn.LSTM(input_size, hidden_size, num_layers=2, bidirectional=True)
//! lstm.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")})
//! ```
//!
//! and a file PyTorch wrote with `safetensors.torch.save_file(state_dict)` (top-level names as
//! above, no rnn-wgpu metadata) loads by inferring the configuration from the shapes.

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::error::Error;
use crate::params::{check_shape, param_names, param_shapes, Params, HEAD_NAMES};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

/// The `format` metadata value this version writes and reads.
pub const FORMAT: &str = "rnn-wgpu/1";

/// Prefixes under which extra (non-parameter) tensors may be stored.
pub(crate) const EXTRA_PREFIXES: [&str; 3] = ["optim.", "grad.", "grad_norm."];

/// Whole names accepted for extra tensors besides the prefixes.
pub(crate) const EXTRA_NAMES: [&str; 1] = ["loss"];

/// Metadata keys that carry the configuration; `Checkpoint::metadata` never holds them.
/// Files written before stacked models existed lack the last three; they mean one layer, one
/// direction, no dropout.
pub const CONFIG_KEYS: [&str; 11] = [
    "format",
    "cell",
    "activation",
    "input_size",
    "hidden_size",
    "output_size",
    "readout",
    "loss",
    "layers",
    "bidirectional",
    "dropout",
];

/// An extra tensor: name, shape, values flattened row-major.
pub type ExtraTensor = (String, Vec<usize>, Vec<f32>);

/// Everything one file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The model's architecture, from the metadata or inferred from the shapes.
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
/// Dropout only acts in training, so it is a setting rather than part of the file's model: an
/// override replaces the file's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadOverrides {
    /// The cell the caller expects (`--cell`); the shapes already tell the LSTM and GRU apart
    /// from the RNN.
    pub cell: Option<Cell>,
    /// The vanilla RNN's nonlinearity, which no shape shows (`--activation`).
    pub activation: Option<Activation>,
    /// Which hidden states the head reads (`--readout`).
    pub readout: Option<Readout>,
    /// The loss the head is scored with (`--loss`).
    pub loss: Option<Loss>,
    /// Dropout between layers for further training, replacing the file's.
    pub dropout: Option<f32>,
}

/// Whether `name` may be stored as an extra tensor: `loss`, or under one of `EXTRA_PREFIXES`.
pub(crate) fn is_extra_name(name: &str) -> bool {
    EXTRA_NAMES.contains(&name)
        || EXTRA_PREFIXES
            .iter()
            .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix))
}

/// Writes `checkpoint` to `path` as safetensors: the parameters under PyTorch's names and
/// shapes (`params::param_shapes`), then the extras, all
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

    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = checkpoint
        .params
        .tensors()
        .into_iter()
        .zip(param_shapes(config))
        .map(|((name, values), (_, shape))| (name, shape, little_endian(values)))
        .chain(
            checkpoint
                .extra
                .iter()
                .map(|(name, shape, values)| (name.clone(), shape.clone(), little_endian(values))),
        )
        .collect();
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Value(format!("{file}: cannot serialize: {e}")))?;
    let metadata = config_metadata(config)
        .into_iter()
        .chain(checkpoint.metadata.clone())
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Value(format!("{file}: cannot serialize: {e}")))
        .and_then(|bytes| {
            sorted_header(bytes).map_err(|e| Error::Value(format!("{file}: cannot serialize: {e}")))
        })?;
    crate::internals::fsio::write_atomic(path, &bytes)
}

/// safetensors writes the header's metadata in hash order, which changes from one save to the
/// next; with every key of the header in sorted order the same checkpoint is the same bytes.
/// Only the order changes, so the header keeps its length and the tensors their offsets.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    use serde_json::Value;
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|x, y| x.0.cmp(&y.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let len_bytes: [u8; 8] = bytes[..8].try_into().map_err(|_| "no header length")?;
    let len = u64::from_le_bytes(len_bytes) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + len]).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_vec(&sorted(header)).map_err(|e| e.to_string())?;
    if text.len() > len {
        return Err(format!(
            "the sorted header grew from {len} to {} bytes",
            text.len()
        ));
    }
    // safetensors pads the header with spaces to a multiple of 8 bytes
    text.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&text);
    Ok(bytes)
}

/// Reads a checkpoint from `path`. The configuration comes from the metadata where the file
/// has it (`overrides` must then agree), otherwise it is inferred from the names and shapes:
/// `weight_ih_l0` `[G*H, I]`, `weight_hh_l0` `[G*H, H]` (G = 4: LSTM, 3: GRU, 1: RNN), the
/// layers `weight_ih_l{k}` present, a `_reverse` twin for bidirectional, and `head.weight`
/// `[O, D*H]`; the activation, readout, loss and dropout from `overrides` or PyTorch's and this
/// crate's defaults: tanh, last, mse, 0.
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
        let is_param = is_param_name(&name);
        if !is_param && !is_extra_name(&name) {
            return Err(Error::Value(format!(
                "{file}: unexpected tensor '{name}'{}: expected weight_ih_l{{k}}, weight_hh_l{{k}}, \
                 bias_ih_l{{k}}, bias_hh_l{{k}} (each maybe with _reverse), {} and extras named {} \
                 or under {}",
                unexpected_hint(&name),
                HEAD_NAMES.join(", "),
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
        // A NaN or an infinity would run without a word and make every result non-finite (or,
        // where a kernel clamps, quietly finite).
        if let Some(flat) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Value(format!(
                "{file}: tensor '{name}' holds {} at index {:?} (shape {shape:?}); a checkpoint's \
                 values must be finite",
                values[flat],
                crate::tasks::npy::position(flat, &shape)
            )));
        }
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

/// Whether `name` is a parameter's: a head tensor, or a cell tensor of some layer and
/// direction (`weight_ih_l3`, `bias_hh_l0_reverse`).
fn is_param_name(name: &str) -> bool {
    HEAD_NAMES.contains(&name) || cell_tensor_layer(name).is_some()
}

/// The layer and direction (1: reverse) of a cell tensor's name.
fn cell_tensor_layer(name: &str) -> Option<(usize, usize)> {
    let rest = ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
        .iter()
        .find_map(|stem| name.strip_prefix(stem))?;
    let (digits, direction) = match rest.strip_suffix("_reverse") {
        Some(digits) => (digits, 1),
        None => (rest, 0),
    };
    let canonical = !digits.is_empty() && (digits == "0" || !digits.starts_with('0'));
    if !canonical || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, direction))
}

/// The configuration as `__metadata__` strings, `format` included.
fn config_metadata(config: &ModelConfig) -> [(String, String); 11] {
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
        entry("layers", config.layers.to_string()),
        entry("bidirectional", config.bidirectional.to_string()),
        entry("dropout", config.dropout.to_string()),
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
    // Absent in files from before stacked models: one layer, one direction.
    let layers = match header.get("layers") {
        Some(_) => size("layers")?,
        None => 1,
    };
    let bidirectional = match header.get("bidirectional").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::Value(format!(
                "{file}: metadata bidirectional='{other}' is neither true nor false"
            )))
        }
    };
    let dropout = match header.get("dropout") {
        None => 0.0,
        Some(value) => value.parse::<f32>().map_err(|_| {
            Error::Value(format!(
                "{file}: metadata dropout='{value}' is not a number"
            ))
        })?,
    };
    Ok(Some(ModelConfig {
        cell: agree(file, "cell", cell, overrides.cell)?,
        activation: agree(file, "activation", activation, overrides.activation)?,
        input_size: size("input_size")?,
        hidden_size: size("hidden_size")?,
        output_size: size("output_size")?,
        readout: agree(file, "readout", readout, overrides.readout)?,
        loss: agree(file, "loss", loss, overrides.loss)?,
        layers,
        bidirectional,
        dropout: overrides.dropout.unwrap_or(dropout),
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
    let Some((shape, _)) = params.get("weight_hh_l0") else {
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
/// `weight_ih_l0` `[G*H, I]`, the layers whose tensors are present, whether any is a `_reverse`
/// one, and `head.weight` `[O, D*H]`; the rest from `overrides` or defaults.
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
    let (gate_rows, hidden_size) = two_dimensional("weight_hh_l0", "[G*H, H]")?;
    let (_, input_size) = two_dimensional("weight_ih_l0", "[G*H, I]")?;
    let cell = cell_from_weight_hh(gate_rows, hidden_size).map_err(|why| {
        Error::Value(format!(
            "{file}: {why} (weight_ih_l0 has shape {:?})",
            shape("weight_ih_l0").unwrap_or_default()
        ))
    })?;
    // Layers 0..L each have their tensors; one missing from a layer that has others is reported
    // by name below, but a layer with none at all is a gap below a stray tensor (weight_ih_l5
    // in a 2-layer file), which is named here rather than as the gap's first missing tensor.
    let present: BTreeSet<usize> = params
        .keys()
        .filter_map(|name| cell_tensor_layer(name))
        .map(|(layer, _)| layer)
        .collect();
    let layers = 1 + present.last().copied().unwrap_or(0);
    if let Some(gap) = (0..layers).find(|layer| !present.contains(layer)) {
        let (stray, layer) = params
            .keys()
            .find_map(|name| {
                let (layer, _) = cell_tensor_layer(name)?;
                (layer > gap).then_some((name, layer))
            })
            .expect("a layer above the gap has a tensor");
        return Err(Error::Value(format!(
            "{file}: tensor '{stray}' is of layer {layer}, but the file has no tensor of layer \
             {gap} (layers are numbered 0..L-1 without gaps)"
        )));
    }
    let bidirectional = params.keys().any(|name| name.ends_with("_reverse"));
    if shape(HEAD_NAMES[0]).is_none() && shape(HEAD_NAMES[1]).is_none() {
        return Err(Error::Value(format!(
            "{file}: no head.weight/head.bias: this looks like a bare nn.RNN/nn.LSTM state dict; \
             rnn-wgpu models end in a linear head, so save it too (as 'head.weight' [O, D*H] \
             and 'head.bias' [O])"
        )));
    }
    let (output_size, _) = two_dimensional(HEAD_NAMES[0], "[O, D*H]")?;
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
        layers,
        bidirectional,
        dropout: overrides.dropout.unwrap_or(0.0),
    })
}

/// `Params` from the file's tensors, each checked against `config`'s shape.
fn params_from_tensors(
    file: &str,
    config: &ModelConfig,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<Params<f32>, Error> {
    // Every layer's 4*D tensors must be here, so names and shapes are listed for at most one
    // layer more than the file can hold: metadata that claims 10^9 layers is refused at the
    // first missing tensor rather than after listing them all.
    let listed = ModelConfig {
        layers: config
            .layers
            .min(tensors.len() / (4 * config.directions()) + 1),
        ..*config
    };
    for (name, expected) in param_shapes(&listed) {
        let (shape, _) = tensors.get(&name).ok_or_else(|| {
            Error::Value(format!(
                "{file}: missing tensor '{name}' (expected shape {expected:?} for {} with I={}, \
                 H={}, O={}, {} layer(s), {} direction(s))",
                config.cell,
                config.input_size,
                config.hidden_size,
                config.output_size,
                config.layers,
                config.directions()
            ))
        })?;
        check_shape(&format!("{file}: {name}"), shape, &expected)?;
    }
    debug_assert_eq!(
        listed.layers, config.layers,
        "all of 4*D*L names were present"
    );
    let names: BTreeSet<String> = param_names(config).into_iter().collect();
    if let Some(stray) = tensors.keys().find(|name| !names.contains(*name)) {
        return Err(Error::Value(format!(
            "{file}: tensor '{stray}' belongs to no cell of a {}-layer {} model",
            config.layers,
            if config.bidirectional {
                "bidirectional"
            } else {
                "unidirectional"
            }
        )));
    }
    let mut params = Params::zeros(config);
    params.for_each_mut(|name, values| values.copy_from_slice(&tensors[name].1));
    Ok(params)
}

/// Why an unexpected name might be there, for the error message.
fn unexpected_hint(name: &str) -> &'static str {
    let last = name.rsplit('.').next().unwrap_or(name);
    if name.contains('.') && cell_tensor_layer(last).is_some() {
        " (a submodule's parameter: save the state dict with the module prefix stripped)"
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
