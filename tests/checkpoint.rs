//! Checkpoints: bit-exact round trips, the file's names, shapes and metadata as PyTorch sees
//! them, files written without metadata (as PyTorch writes them), refusals' messages (those a
//! user meets first are tested through the command line in `bad_input.rs`), and atomic
//! replacement, even when the saving process is killed. CPU only; files live in a fresh
//! directory under the system temp dir.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{load, save, Checkpoint, LoadOverrides, CONFIG_KEYS, FORMAT};
use rnn_wgpu::param_names;
use rnn_wgpu::{Activation, Cell, Error, Loss, ModelConfig, Params, Readout};
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::{raw_f32, read_raw, without, write_raw, Raw, TempDir};

fn config(cell: Cell, input: usize, hidden: usize, output: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: input,
        hidden_size: hidden,
        output_size: output,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// Random parameters (PyTorch's init), Adam-like state, a gradient norm per step, a loss and
/// training metadata: everything a training run saves.
fn full_checkpoint(config: ModelConfig, seed: u64) -> Checkpoint {
    let mut rng = StdRng::seed_from_u64(seed);
    let params = Params::<f32>::init_uniform(&config, &mut rng);
    let mut checkpoint = Checkpoint::new(config, params.clone());
    for (name, values) in params.tensors() {
        let shape = shape_of(&params, &name);
        let square: Vec<f32> = values.iter().map(|v| v * v).collect();
        checkpoint.extra.push((
            format!("optim.exp_avg.{name}"),
            shape.clone(),
            values.to_vec(),
        ));
        checkpoint
            .extra
            .push((format!("optim.exp_avg_sq.{name}"), shape, square));
    }
    checkpoint.extra.push((
        "grad_norm.h".to_string(),
        vec![11],
        (0..11).map(|t| 0.5f32.powi(t) / 3.0).collect(),
    ));
    checkpoint
        .extra
        .push(("loss".to_string(), vec![], vec![0.123_456_79]));
    for (key, value) in [("optimizer", "adam"), ("step", "1234"), ("seed", "7")] {
        checkpoint.metadata.insert(key.into(), value.into());
    }
    checkpoint
}

fn shape_of(params: &Params<f32>, name: &str) -> Vec<usize> {
    params
        .shapes()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
}

/// Bit patterns, so a round trip that turned -0.0 into 0.0 or changed a NaN would fail.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn assert_bit_exact(saved: &Checkpoint, loaded: &Checkpoint) {
    assert_eq!(loaded.config, saved.config);
    for ((name, a), (_, b)) in saved
        .params
        .tensors()
        .into_iter()
        .zip(loaded.params.tensors())
    {
        assert_eq!(bits(a), bits(b), "{name}");
    }
    let mut extra = saved.extra.clone();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded.extra.len(), extra.len());
    for ((name, shape, values), (loaded_name, loaded_shape, loaded_values)) in
        extra.iter().zip(&loaded.extra)
    {
        assert_eq!(loaded_name, name);
        assert_eq!(loaded_shape, shape, "{name}");
        assert_eq!(bits(loaded_values), bits(values), "{name}");
    }
    assert_eq!(loaded.metadata, saved.metadata);
}

/// A valid checkpoint of `config` saved at `path`, read back raw for a test to spoil.
fn saved_raw(path: &Path, config: ModelConfig) -> (Checkpoint, Vec<Raw>, BTreeMap<String, String>) {
    let checkpoint = full_checkpoint(config, 11);
    save(path, &checkpoint).unwrap();
    let (tensors, metadata) = read_raw(path);
    (checkpoint, tensors, metadata.unwrap())
}

/// The model's six tensors only, as a PyTorch state dict holds them.
fn state_dict(checkpoint: &Checkpoint) -> Vec<Raw> {
    let params = &checkpoint.params;
    params
        .tensors()
        .into_iter()
        .map(|(name, values)| raw_f32(&name, &shape_of(params, &name), values))
        .collect()
}

fn load_error(path: &Path, overrides: &LoadOverrides) -> Error {
    match load(path, overrides) {
        Ok(checkpoint) => panic!("{} loaded: {:?}", path.display(), checkpoint.config),
        Err(e) => e,
    }
}

/// Asserts that the message starts with the file's path and contains every `part`.
fn assert_message(error: &Error, path: &Path, parts: &[&str]) {
    let message = error.to_string();
    let file = path.display().to_string();
    // Error's Display puts its kind first ("invalid value: ..."); what follows is ours.
    let ours = message
        .split_once(&file)
        .map(|(kind, rest)| (kind.len(), rest));
    assert!(
        matches!(ours, Some((k, _)) if k <= "shape mismatch: ".len()),
        "'{message}' does not start with {file}"
    );
    for part in parts {
        assert!(message.contains(part), "'{message}' lacks '{part}'");
    }
}

#[test]
fn rnn_round_trip_is_bit_exact() {
    let dir = TempDir::new("rnn-round-trip");
    let path = dir.join("rnn.safetensors");
    let mut config = config(Cell::Rnn, 3, 7, 5);
    config.activation = Activation::Relu;
    config.readout = Readout::All;
    config.loss = Loss::CrossEntropy;
    let mut checkpoint = full_checkpoint(config, 1);
    // Values a sloppy conversion would lose.
    checkpoint.params.cells[0].bias_hh[0] = -0.0;
    checkpoint.params.cells[0].bias_hh[1] = f32::MIN_POSITIVE / 2.0;
    checkpoint.params.head_bias[4] = f32::MAX;
    save(&path, &checkpoint).unwrap();
    let loaded = load(&path, &LoadOverrides::default()).unwrap();
    assert_bit_exact(&checkpoint, &loaded);
    assert_eq!(
        loaded.tensor("grad_norm.h").unwrap().2,
        checkpoint.tensor("grad_norm.h").unwrap().2
    );
    assert!(loaded.tensor("weight_ih_l0").is_none());
}

/// The same checkpoint saved again is the same bytes (safetensors writes the metadata in hash
/// order, a new one per save; the header is rewritten sorted), and still loads.
#[test]
fn the_same_checkpoint_saves_to_the_same_bytes() {
    let dir = TempDir::new("same-bytes");
    let checkpoint = full_checkpoint(config(Cell::Lstm, 2, 5, 1), 3);
    let first = dir.join("first.safetensors");
    save(&first, &checkpoint).unwrap();
    let bytes = std::fs::read(&first).unwrap();
    for i in 0..4 {
        let again = dir.join(&format!("again-{i}.safetensors"));
        save(&again, &checkpoint).unwrap();
        assert!(
            std::fs::read(&again).unwrap() == bytes,
            "save {i} wrote other bytes"
        );
    }
    assert_bit_exact(
        &checkpoint,
        &load(&first, &LoadOverrides::default()).unwrap(),
    );
}

#[test]
fn lstm_round_trip_is_bit_exact() {
    let dir = TempDir::new("lstm-round-trip");
    for (i, (input, hidden, output)) in [(1, 13, 2), (9, 1, 1), (4, 33, 10)].into_iter().enumerate()
    {
        let path = dir.join(&format!("lstm-{i}.safetensors"));
        let checkpoint = full_checkpoint(config(Cell::Lstm, input, hidden, output), i as u64);
        save(&path, &checkpoint).unwrap();
        assert_bit_exact(
            &checkpoint,
            &load(&path, &LoadOverrides::default()).unwrap(),
        );
    }
    // A bare model round-trips too.
    let path = dir.join("bare.safetensors");
    let config = config(Cell::Lstm, 2, 3, 4);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(5));
    let checkpoint = Checkpoint::new(config, params);
    save(&path, &checkpoint).unwrap();
    assert_bit_exact(
        &checkpoint,
        &load(&path, &LoadOverrides::default()).unwrap(),
    );
}

#[test]
fn file_has_pytorch_names_shapes_and_metadata() {
    let dir = TempDir::new("layout");
    let path = dir.join("lstm.safetensors");
    let (checkpoint, tensors, metadata) = saved_raw(&path, config(Cell::Lstm, 3, 5, 2));
    let shapes: BTreeMap<&str, (Dtype, &[usize])> = tensors
        .iter()
        .map(|t| (t.name.as_str(), (t.dtype, t.shape.as_slice())))
        .collect();
    // G*H = 4 * 5 rows, gates stacked i, f, g, o as nn.LSTM stores them.
    let expected: [(&str, &[usize]); 6] = [
        ("weight_ih_l0", &[20, 3]),
        ("weight_hh_l0", &[20, 5]),
        ("bias_ih_l0", &[20]),
        ("bias_hh_l0", &[20]),
        ("head.weight", &[2, 5]),
        ("head.bias", &[2]),
    ];
    assert_eq!(
        expected.map(|(name, _)| name).to_vec(),
        param_names(&checkpoint.config)
    );
    for (name, shape) in expected {
        assert_eq!(shapes[name], (Dtype::F32, shape), "{name}");
        let optimizer_state = format!("optim.exp_avg.{name}");
        assert_eq!(shapes[optimizer_state.as_str()], (Dtype::F32, shape));
    }
    assert_eq!(shapes["grad_norm.h"], (Dtype::F32, &[11][..]));
    assert_eq!(shapes["loss"], (Dtype::F32, &[][..]));
    assert_eq!(tensors.len(), 6 + 12 + 2);
    // The data is little-endian f32, row-major.
    let weight_hh = tensors.iter().find(|t| t.name == "weight_hh_l0").unwrap();
    assert_eq!(
        weight_hh.bytes,
        raw_f32(
            "",
            &[],
            checkpoint.params.cells[0].weight_hh.as_slice().unwrap()
        )
        .bytes
    );

    let expected_metadata: BTreeMap<String, String> = [
        ("format", FORMAT),
        ("cell", "lstm"),
        ("activation", "tanh"),
        ("input_size", "3"),
        ("hidden_size", "5"),
        ("output_size", "2"),
        ("readout", "last"),
        ("loss", "mse"),
        ("layers", "1"),
        ("bidirectional", "false"),
        ("dropout", "0"),
        ("optimizer", "adam"),
        ("step", "1234"),
        ("seed", "7"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(metadata, expected_metadata);
    assert!(CONFIG_KEYS.iter().all(|key| metadata.contains_key(*key)));
}

#[test]
fn file_without_metadata_loads_by_inference() {
    let dir = TempDir::new("inference");
    for (cell, input, hidden, output) in [(Cell::Lstm, 3, 5, 2), (Cell::Rnn, 6, 4, 1)] {
        let path = dir.join(&format!("{cell}.safetensors"));
        let checkpoint = full_checkpoint(config(cell, input, hidden, output), 3);
        let mut tensors = state_dict(&checkpoint);
        tensors.push(raw_f32("optim.step", &[1], &[5.0]));
        write_raw(&path, &tensors, None);

        let loaded = load(&path, &LoadOverrides::default()).unwrap();
        // Sizes and cell from the shapes; activation, readout and loss PyTorch's/our defaults.
        assert_eq!(loaded.config, config(cell, input, hidden, output));
        assert_eq!(loaded.params, checkpoint.params);
        assert_eq!(
            loaded.extra,
            vec![("optim.step".to_string(), vec![1], vec![5.0])]
        );
        assert!(loaded.metadata.is_empty());

        let overrides = LoadOverrides {
            cell: Some(cell),
            activation: Some(Activation::Sigmoid),
            readout: Some(Readout::All),
            loss: Some(Loss::CrossEntropy),
            dropout: None,
        };
        let loaded = load(&path, &overrides).unwrap();
        assert_eq!(loaded.config.activation, Activation::Sigmoid);
        assert_eq!(loaded.config.readout, Readout::All);
        assert_eq!(loaded.config.loss, Loss::CrossEntropy);
    }

    // Other writers' metadata (transformers writes format=pt) does not stop inference, and
    // their format key is not kept, so saving the result again works.
    let path = dir.join("foreign.safetensors");
    let checkpoint = full_checkpoint(config(Cell::Lstm, 2, 3, 4), 4);
    let foreign = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_raw(&path, &state_dict(&checkpoint), Some(&foreign));
    let loaded = load(&path, &LoadOverrides::default()).unwrap();
    assert_eq!(loaded.config, config(Cell::Lstm, 2, 3, 4));
    assert!(loaded.metadata.is_empty());
    save(&path, &loaded).unwrap();
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("missing-file");
    let path = dir.join("nowhere.safetensors");
    let error = load_error(&path, &LoadOverrides::default());
    assert!(matches!(error, Error::Io(_)), "{error:?}");
    assert_message(&error, &path, &["cannot read checkpoint"]);
}

/// The refusals a user meets first (missing or extra tensors, wrong shapes or dtypes, a
/// corrupted header, another cell's metadata) are tested through the command line in
/// `bad_input.rs`; an unexpected name also gets a hint at what went wrong. A cell tensor of a
/// layer or direction the metadata's model lacks is named with that model.
#[test]
fn unexpected_names_get_a_hint() {
    let dir = TempDir::new("names");
    let path = dir.join("model.safetensors");
    for (name, hint) in [
        (
            "weight_ih_l1",
            "belongs to no cell of a 1-layer unidirectional model",
        ),
        (
            "weight_hh_l0_reverse",
            "belongs to no cell of a 1-layer unidirectional model",
        ),
        ("rnn.weight_hh_l0", "module prefix"),
        ("weight_ih_l01", "unexpected tensor 'weight_ih_l01'"),
    ] {
        let (_, mut tensors, metadata) = saved_raw(&path, config(Cell::Rnn, 2, 3, 4));
        tensors.push(raw_f32(name, &[3, 3], &[0.0; 9]));
        write_raw(&path, &tensors, Some(&metadata));
        let error = load_error(&path, &LoadOverrides::default());
        assert_message(&error, &path, &[&format!("tensor '{name}'"), hint]);
    }
}

#[test]
fn extra_tensors_may_have_any_shape() {
    let dir = TempDir::new("extra-shapes");
    let path = dir.join("model.safetensors");
    let (_, mut tensors, metadata) = saved_raw(&path, config(Cell::Rnn, 3, 5, 2));
    tensors.push(raw_f32("grad.anything", &[2, 1, 3], &[0.5; 6]));
    write_raw(&path, &tensors, Some(&metadata));
    let loaded = load(&path, &LoadOverrides::default()).unwrap();
    assert_eq!(loaded.tensor("grad.anything").unwrap().1, vec![2, 1, 3]);
}

#[test]
fn bad_metadata_is_refused_naming_key_and_value() {
    let dir = TempDir::new("metadata");
    let path = dir.join("model.safetensors");
    let cases: [(&str, Option<&str>, &[&str]); 6] = [
        (
            "cell",
            Some("transformer"),
            &["metadata cell", "unknown cell 'transformer'"],
        ),
        ("activation", Some("gelu"), &["unknown activation 'gelu'"]),
        (
            "hidden_size",
            Some("five"),
            &["hidden_size='five' is not a whole number"],
        ),
        (
            "input_size",
            Some("-3"),
            &["input_size='-3' is not a whole number"],
        ),
        ("output_size", None, &["no 'output_size'"]),
        (
            "format",
            Some("rnn-wgpu/2"),
            &["format 'rnn-wgpu/2' is not supported"],
        ),
    ];
    for (key, value, parts) in cases {
        let (_, tensors, mut metadata) = saved_raw(&path, config(Cell::Rnn, 2, 3, 4));
        match value {
            Some(value) => metadata.insert(key.into(), value.into()),
            None => metadata.remove(key),
        };
        write_raw(&path, &tensors, Some(&metadata));
        let error = load_error(&path, &LoadOverrides::default());
        assert_message(&error, &path, parts);
    }
}

#[test]
fn overrides_must_agree_with_the_file() {
    let dir = TempDir::new("overrides");
    let path = dir.join("model.safetensors");
    let mut config = config(Cell::Lstm, 2, 3, 4);
    config.loss = Loss::CrossEntropy;
    save(&path, &full_checkpoint(config, 6)).unwrap();

    let agreeing = LoadOverrides {
        cell: Some(Cell::Lstm),
        loss: Some(Loss::CrossEntropy),
        ..Default::default()
    };
    assert_eq!(load(&path, &agreeing).unwrap().config, config);

    let cases = [
        (
            LoadOverrides {
                cell: Some(Cell::Rnn),
                ..Default::default()
            },
            "file says cell=lstm, but this run needs cell=rnn",
        ),
        (
            LoadOverrides {
                loss: Some(Loss::Mse),
                ..Default::default()
            },
            "file says loss=ce, but this run needs loss=mse",
        ),
        (
            LoadOverrides {
                readout: Some(Readout::All),
                ..Default::default()
            },
            "file says readout=last, but this run needs readout=all",
        ),
        (
            LoadOverrides {
                activation: Some(Activation::Relu),
                ..Default::default()
            },
            "file says activation=tanh, but this run needs activation=relu",
        ),
    ];
    for (overrides, part) in cases {
        assert_message(&load_error(&path, &overrides), &path, &[part]);
    }

    // Without metadata the cell comes from the shapes, and must agree just the same.
    let checkpoint = full_checkpoint(config, 6);
    write_raw(&path, &state_dict(&checkpoint), None);
    let overrides = LoadOverrides {
        cell: Some(Cell::Rnn),
        ..Default::default()
    };
    assert_message(
        &load_error(&path, &overrides),
        &path,
        &["file says cell=lstm", "[12, 3]", "this run needs cell=rnn"],
    );
}

#[test]
fn inference_refuses_shapes_it_cannot_explain() {
    let dir = TempDir::new("inference-errors");
    let path = dir.join("model.safetensors");
    let lstm = full_checkpoint(config(Cell::Lstm, 2, 3, 4), 8);

    // A GRU's [3H, H] is inferred as one.
    let mut tensors = state_dict(&lstm);
    for t in tensors.iter_mut().filter(|t| t.name.contains("_l0")) {
        t.shape[0] = 9;
        t.bytes.truncate(t.bytes.len() / 4 * 3);
    }
    write_raw(&path, &tensors, None);
    let gru = load(&path, &LoadOverrides::default()).unwrap();
    assert_eq!(gru.config.cell, Cell::Gru);

    // 2H rows: nothing PyTorch makes.
    let mut tensors = state_dict(&lstm);
    for t in tensors.iter_mut().filter(|t| t.name.contains("_l0")) {
        t.shape[0] = 6;
        t.bytes.truncate(t.bytes.len() / 2);
    }
    write_raw(&path, &tensors, None);
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(&error, &path, &["[6, 3]", "none of an RNN's", "[6, 2]"]);

    // A bare nn.LSTM state dict: no head.
    write_raw(
        &path,
        &without(state_dict(&lstm), &["head.weight", "head.bias"]),
        None,
    );
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(&error, &path, &["no head.weight/head.bias"]);

    // Half a head, and no recurrent weights at all.
    write_raw(&path, &without(state_dict(&lstm), &["head.bias"]), None);
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(&error, &path, &["missing tensor 'head.bias'"]);
    write_raw(&path, &without(state_dict(&lstm), &["weight_hh_l0"]), None);
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(&error, &path, &["missing tensor 'weight_hh_l0'"]);

    // weight_ih_l0 disagreeing with weight_hh_l0 on G*H.
    let mut tensors = state_dict(&lstm);
    let weight_ih = tensors
        .iter_mut()
        .find(|t| t.name == "weight_ih_l0")
        .unwrap();
    weight_ih.shape = vec![6, 4];
    write_raw(&path, &tensors, None);
    let error = load_error(&path, &LoadOverrides::default());
    assert!(matches!(&error, Error::Shape { .. }), "{error:?}");
    assert_message(&error, &path, &["weight_ih_l0", "[6, 4]", "[12, 4]"]);
}

#[test]
fn save_refuses_what_load_would_refuse() {
    let dir = TempDir::new("save-errors");
    let path = dir.join("model.safetensors");
    let good = full_checkpoint(config(Cell::Lstm, 2, 3, 4), 9);

    let mut wrong_shape = good.clone();
    wrong_shape.config.hidden_size = 4;
    let error = save(&path, &wrong_shape).unwrap_err();
    assert!(matches!(&error, Error::Shape { .. }), "{error:?}");
    assert_message(&error, &path, &["weight_ih_l0"]);

    let mut reserved = good.clone();
    reserved.metadata.insert("cell".into(), "rnn".into());
    let error = save(&path, &reserved).unwrap_err();
    assert_message(&error, &path, &["metadata key 'cell' is reserved"]);

    let mut bad_name = good.clone();
    bad_name.extra.push(("momentum".into(), vec![1], vec![0.0]));
    let error = save(&path, &bad_name).unwrap_err();
    assert_message(&error, &path, &["extra tensor 'momentum'", "optim."]);

    let mut twice = good.clone();
    twice.extra.push(("loss".into(), vec![], vec![1.0]));
    let error = save(&path, &twice).unwrap_err();
    assert_message(&error, &path, &["extra tensor 'loss' appears twice"]);

    let mut short = good.clone();
    short
        .extra
        .push(("grad.x".into(), vec![2, 3], vec![0.0; 5]));
    let error = save(&path, &short).unwrap_err();
    assert_message(&error, &path, &["'grad.x' has 5 values", "[2, 3] holds 6"]);

    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn failed_saves_leave_the_old_file_intact() {
    let dir = TempDir::new("atomic-failure");
    let path = dir.join("model.safetensors");
    let old = full_checkpoint(config(Cell::Rnn, 2, 3, 4), 10);
    save(&path, &old).unwrap();
    let old_bytes = std::fs::read(&path).unwrap();
    let new = full_checkpoint(config(Cell::Lstm, 5, 6, 7), 12);

    // A target directory that does not exist: refused, naming the path.
    let elsewhere = dir.join("no-such-directory").join("model.safetensors");
    let error = save(&elsewhere, &new).unwrap_err();
    assert!(matches!(&error, Error::Io(_)), "{error:?}");
    assert!(error.to_string().contains(&elsewhere.display().to_string()));

    // A write that fails after everything was checked: the temporary file's place (fsio's
    // `.NAME.tmp-PID`) is taken by a directory, as if the disk had failed mid-save.
    let blocker = dir.join(&format!(".model.safetensors.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("occupied"), b"x").unwrap();
    let error = save(&path, &new).expect_err(
        "save succeeded: fsio's temporary file name changed; update this test's blocker",
    );
    assert!(matches!(&error, Error::Io(_)), "{error:?}");
    std::fs::remove_dir_all(&blocker).unwrap();

    // A checkpoint refused before writing.
    let mut invalid = new.clone();
    invalid.config.output_size = 1;
    save(&path, &invalid).unwrap_err();

    assert_eq!(std::fs::read(&path).unwrap(), old_bytes);
    assert_bit_exact(&old, &load(&path, &LoadOverrides::default()).unwrap());
    assert_eq!(dir.entries(), vec!["model.safetensors"]);
}

#[test]
fn saving_over_a_file_replaces_it_without_leftovers() {
    let dir = TempDir::new("atomic-replace");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, b"an older, unrelated file").unwrap();
    let first = full_checkpoint(config(Cell::Rnn, 2, 3, 4), 13);
    save(&path, &first).unwrap();
    assert_bit_exact(&first, &load(&path, &LoadOverrides::default()).unwrap());

    let second = full_checkpoint(config(Cell::Lstm, 5, 6, 7), 14);
    save(&path, &second).unwrap();
    assert_bit_exact(&second, &load(&path, &LoadOverrides::default()).unwrap());
    assert_eq!(dir.entries(), vec!["model.safetensors"]);
}

/// kill -9 in the middle of a save: `train` saves a 12 MB checkpoint (LSTM, H = 512, with Adam's
/// state) after every step; the test waits until the file exists, then until the next save's
/// temporary file appears, kills the process a few milliseconds later, and checks that the
/// checkpoint still loads in full. A temporary file left behind shows the kill interrupted that
/// save; the loop runs until four saves were interrupted. A writer that wrote in place would
/// leave a truncated checkpoint here.
#[cfg(unix)]
#[test]
fn a_save_killed_midway_leaves_the_previous_checkpoint_whole() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = TempDir::new("kill-9");
    let path = dir.join("m.safetensors");
    let is_temporary = |name: &str| name.starts_with(".m.safetensors.tmp-");
    let started = Instant::now();
    let (mut attempts, mut interrupted) = (0, 0);
    while interrupted < 4 {
        assert!(
            attempts < 30 && started.elapsed() < Duration::from_secs(15),
            "only {interrupted} of {attempts} kills landed inside a save; make the model larger"
        );
        attempts += 1;
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .args([
                "train",
                "--device",
                "cpu",
                "--task",
                "adding",
                "--seq-len",
                "2",
                "--hidden",
                "512",
                "--batch",
                "1",
                "--steps",
                "1000000",
                "--eval-every",
                "1",
                "--save",
            ])
            .arg(&path)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait_for = |what: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !what() {
                assert!(Instant::now() < deadline, "train never saved");
                std::thread::sleep(Duration::from_micros(100));
            }
        };
        wait_for(&|| path.exists());
        wait_for(&|| dir.entries().iter().any(|name| is_temporary(name)));
        // 0, 3, 6, ... ms into the save (one takes about 20 ms here).
        std::thread::sleep(Duration::from_millis(3 * (attempts % 5)));
        child.kill().unwrap();
        child.wait().unwrap();
        let kept = load(&path, &LoadOverrides::default()).unwrap_or_else(|e| {
            panic!("attempt {attempts}: the checkpoint does not load after kill -9: {e}")
        });
        assert!(kept.metadata["step"].parse::<u64>().unwrap() >= 1);
        assert!(kept
            .params
            .tensors()
            .iter()
            .all(|(_, v)| v.iter().all(|x| x.is_finite())));
        for name in dir.entries().into_iter().filter(|name| is_temporary(name)) {
            interrupted += 1;
            std::fs::remove_file(dir.join(&name)).unwrap();
        }
    }
}

fn stacked(cell: Cell, layers: usize, bidirectional: bool, dropout: f32) -> ModelConfig {
    ModelConfig {
        layers,
        bidirectional,
        dropout,
        ..config(cell, 3, 5, 2)
    }
}

/// Stacked and bidirectional models round-trip bit for bit, optimizer state included, with
/// every cell's four tensors under the names and shapes `nn.LSTM(3, 5, num_layers=2,
/// bidirectional=True).state_dict()` lists (in its order; layer 1 reads the 2H = 10 outputs of
/// layer 0) and layers, bidirectional and dropout in the metadata.
#[test]
fn stacked_and_bidirectional_round_trips_are_bit_exact() {
    let dir = TempDir::new("stacked-round-trip");
    let lstm: Vec<(&str, &[usize])> = vec![
        ("weight_ih_l0", &[20, 3]),
        ("weight_hh_l0", &[20, 5]),
        ("bias_ih_l0", &[20]),
        ("bias_hh_l0", &[20]),
        ("weight_ih_l0_reverse", &[20, 3]),
        ("weight_hh_l0_reverse", &[20, 5]),
        ("bias_ih_l0_reverse", &[20]),
        ("bias_hh_l0_reverse", &[20]),
        ("weight_ih_l1", &[20, 10]),
        ("weight_hh_l1", &[20, 5]),
        ("bias_ih_l1", &[20]),
        ("bias_hh_l1", &[20]),
        ("weight_ih_l1_reverse", &[20, 10]),
        ("weight_hh_l1_reverse", &[20, 5]),
        ("bias_ih_l1_reverse", &[20]),
        ("bias_hh_l1_reverse", &[20]),
        ("head.weight", &[2, 10]),
        ("head.bias", &[2]),
    ];
    let gru: Vec<(&str, &[usize])> = vec![
        ("weight_ih_l0", &[15, 3]),
        ("weight_hh_l0", &[15, 5]),
        ("bias_ih_l0", &[15]),
        ("bias_hh_l0", &[15]),
        ("weight_ih_l1", &[15, 5]),
        ("weight_hh_l1", &[15, 5]),
        ("bias_ih_l1", &[15]),
        ("bias_hh_l1", &[15]),
        ("weight_ih_l2", &[15, 5]),
        ("weight_hh_l2", &[15, 5]),
        ("bias_ih_l2", &[15]),
        ("bias_hh_l2", &[15]),
        ("head.weight", &[2, 5]),
        ("head.bias", &[2]),
    ];
    for (config, expected, metadata) in [
        (
            stacked(Cell::Lstm, 2, true, 0.25),
            lstm,
            [
                ("layers", "2"),
                ("bidirectional", "true"),
                ("dropout", "0.25"),
            ],
        ),
        (
            stacked(Cell::Gru, 3, false, 0.0),
            gru,
            [
                ("layers", "3"),
                ("bidirectional", "false"),
                ("dropout", "0"),
            ],
        ),
    ] {
        let path = dir.join(&format!("{}-{}.safetensors", config.cell, config.layers));
        let mut checkpoint = full_checkpoint(config, 21);
        checkpoint.params.cells.last_mut().unwrap().bias_hh[0] = -0.0;
        save(&path, &checkpoint).unwrap();
        assert_bit_exact(
            &checkpoint,
            &load(&path, &LoadOverrides::default()).unwrap(),
        );
        assert_eq!(checkpoint.extra.len(), 2 * expected.len() + 2);

        let names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
        assert_eq!(param_names(&config), names, "{}", path.display());
        let (tensors, file_metadata) = read_raw(&path);
        let file_metadata = file_metadata.unwrap();
        for (key, value) in metadata {
            assert_eq!(file_metadata[key], value, "{key}");
        }
        for (name, shape) in expected {
            let tensor = tensors.iter().find(|t| t.name == name).unwrap();
            assert_eq!((tensor.dtype, tensor.shape.as_slice()), (Dtype::F32, shape));
        }
    }
}

/// A PyTorch state dict of a stacked or bidirectional model (no rnn-wgpu metadata) loads with
/// the layers counted from the `_l{k}` names present and bidirectional from `_reverse` ones;
/// dropout is not in such a file, so it is 0 or the override.
#[test]
fn stacked_file_without_metadata_infers_layers_and_directions() {
    let dir = TempDir::new("stacked-inference");
    for (cell, layers, bidirectional) in [
        (Cell::Lstm, 2, true),
        (Cell::Gru, 3, false),
        (Cell::Rnn, 3, true),
        (Cell::Lstm, 1, true),
    ] {
        let config = stacked(cell, layers, bidirectional, 0.0);
        let path = dir.join(&format!("{cell}-{layers}-{bidirectional}.safetensors"));
        let checkpoint = full_checkpoint(config, 22);
        write_raw(&path, &state_dict(&checkpoint), None);

        let loaded = load(&path, &LoadOverrides::default()).unwrap();
        assert_eq!(loaded.config, config);
        for ((name, saved), (_, loaded)) in checkpoint
            .params
            .tensors()
            .into_iter()
            .zip(loaded.params.tensors())
        {
            assert_eq!(bits(saved), bits(loaded), "{name}");
        }
        assert!(loaded.metadata.is_empty());

        let overrides = LoadOverrides {
            dropout: Some(0.3),
            ..Default::default()
        };
        assert_eq!(
            load(&path, &overrides).unwrap().config,
            ModelConfig {
                dropout: 0.3,
                ..config
            }
        );
    }
}

/// A stacked bidirectional file that lacks one cell's tensor, or holds a stray `weight_ih_l5`,
/// is refused naming that tensor, whether or not its metadata says what the model is.
#[test]
fn stacked_files_with_missing_or_stray_tensors_are_refused() {
    let dir = TempDir::new("stacked-refusals");
    let path = dir.join("model.safetensors");
    let config = stacked(Cell::Lstm, 2, true, 0.0);
    for with_metadata in [true, false] {
        let (_, tensors, metadata) = saved_raw(&path, config);
        let metadata = with_metadata.then_some(&metadata);
        for missing in ["bias_hh_l1_reverse", "weight_ih_l1", "weight_hh_l0_reverse"] {
            write_raw(&path, &without(tensors.clone(), &[missing]), metadata);
            let error = load_error(&path, &LoadOverrides::default());
            assert_message(&error, &path, &[&format!("missing tensor '{missing}'")]);
        }
        let mut stray = tensors.clone();
        stray.push(raw_f32("weight_ih_l5", &[20, 10], &[0.0; 200]));
        write_raw(&path, &stray, metadata);
        let error = load_error(&path, &LoadOverrides::default());
        let why = if with_metadata {
            "belongs to no cell of a 2-layer bidirectional model"
        } else {
            "no tensor of layer 2"
        };
        assert_message(&error, &path, &["tensor 'weight_ih_l5'", why]);
    }
    // Metadata that claims far more layers than the file holds is refused at the first missing
    // tensor, without sizing anything for them first.
    let (_, tensors, mut metadata) = saved_raw(&path, config);
    metadata.insert("layers".into(), "1000000000".into());
    write_raw(&path, &tensors, Some(&metadata));
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(
        &error,
        &path,
        &["missing tensor 'weight_ih_l2'", "1000000000 layer(s)"],
    );
    // Metadata that names fewer layers than the file holds refuses the extra layer's tensors.
    let (_, tensors, mut metadata) = saved_raw(&path, config);
    metadata.insert("layers".into(), "1".into());
    write_raw(&path, &tensors, Some(&metadata));
    let error = load_error(&path, &LoadOverrides::default());
    assert_message(
        &error,
        &path,
        &[
            "tensor 'bias_hh_l1'",
            "belongs to no cell of a 1-layer bidirectional model",
        ],
    );
}
