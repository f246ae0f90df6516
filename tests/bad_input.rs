//! Whatever a user feeds the command line, it answers with a message naming the file, the
//! field or shape, and what was expected; exits non-zero; does not panic; and leaves no output
//! file (and no temporary file) behind. One test per kind of bad input, each run through the
//! built binary in a directory of its own, so the file names in the messages are short.
//!
//! Every test starts from files that train (`good_files_train` checks they do) and spoils one
//! thing, so each refusal is for the reason its test names.

use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use ndarray_npy::{WritableElement, WriteNpyExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, Checkpoint, LoadOverrides};
use rnn_wgpu::tasks::{Adding, Task};
use rnn_wgpu::{Activation, Cell, Params};
use safetensors::Dtype;
use std::process::{Command, Output};

mod common;
use common::{raw_f32, read_raw, without, write_raw, TempDir};

fn run(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args(args)
        .current_dir(dir.path())
        // A panic would print a backtrace, which `refused` looks for.
        .env("RUST_BACKTRACE", "1")
        // The rules, whatever this machine's tuning cache holds (a test may name a cache).
        .env("RNN_WGPU_TUNING", "off")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// Runs `rnn-wgpu args` in `dir`, checks what every refusal must do (a non-zero exit status
/// rather than a signal, an `error:` line, no panic or backtrace, no new file in `dir`) and
/// returns standard error.
fn refused_with_env(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> String {
    let before = dir.entries();
    let out = run(dir, args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    assert!(
        code.is_some_and(|c| c != 0),
        "{args:?}: exit status {:?}, expected a non-zero exit code\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.trim_start().starts_with("error: "),
        "{args:?}: stderr does not start with 'error: ':\n{stderr}"
    );
    for sign in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(sign),
            "{args:?}: '{sign}' in stderr:\n{stderr}"
        );
    }
    assert_eq!(dir.entries(), before, "{args:?} left files behind");
    stderr
}

fn refused(dir: &TempDir, args: &[&str]) -> String {
    refused_with_env(dir, args, &[])
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "the message lacks '{part}':\n{message}"
        );
    }
}

/// `train` on the CPU for one step of a tiny model, writing a checkpoint and a log (whatever a
/// refusal leaves of those, the test sees), plus `extra`, whose flags replace these defaults.
fn train<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train"];
    for (flag, value) in [
        ("--device", "cpu"),
        ("--hidden", "3"),
        ("--steps", "1"),
        ("--save", "out.safetensors"),
        ("--log", "log.csv"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

fn write_npy<A: WritableElement, D: ndarray::Dimension>(
    dir: &TempDir,
    name: &str,
    array: &ndarray::Array<A, D>,
) {
    array
        .write_npy(std::fs::File::create(dir.join(name)).unwrap())
        .unwrap();
}

/// x.npy `[5, 3, 2]` float32 and y.npy `[5]` int64 classes 0..3: a dataset that trains.
fn good_npy(dir: &TempDir) {
    let x = Array3::from_shape_fn((5, 3, 2), |(n, t, i)| (n + t + i) as f32 / 10.0);
    write_npy(dir, "x.npy", &x);
    write_npy(dir, "y.npy", &Array1::<i64>::from(vec![0, 1, 2, 1, 0]));
}

fn npy_task<'a>(inputs: &'a str, targets: &'a str) -> Vec<&'a str> {
    train(&[
        "--task",
        "npy",
        "--inputs",
        inputs,
        "--targets",
        targets,
        "--batch",
        "2",
    ])
}

fn csv_task(file: &str) -> Vec<&str> {
    train(&[
        "--task",
        "csv",
        "--csv",
        file,
        "--seq-len",
        "2",
        "--batch",
        "2",
    ])
}

/// Two steps of two inputs, then a class, on each line.
const GOOD_CSV: &str = "x0a,x0b,x1a,x1b,label\n1,2,3,4,1\n5,6,7,8,0\n1,1,1,1,0\n2,2,2,2,1\n";

fn text_task(file: &str) -> Vec<&str> {
    train(&[
        "--task",
        "text",
        "--text",
        file,
        "--seq-len",
        "4",
        "--batch",
        "2",
    ])
}

/// m.safetensors: an LSTM (H = 5) for the adding problem, as `train --load` takes it.
fn good_checkpoint(dir: &TempDir) {
    let config = Adding::new(5)
        .unwrap()
        .spec()
        .model_config(Cell::Lstm, Activation::Tanh, 5);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(1));
    checkpoint::save(&dir.join("m.safetensors"), &Checkpoint::new(config, params)).unwrap();
}

fn load_task() -> Vec<&'static str> {
    train(&[
        "--task",
        "adding",
        "--seq-len",
        "5",
        "--batch",
        "2",
        "--hidden",
        "5",
        "--load",
        "m.safetensors",
    ])
}

/// The control for every test below: the unspoiled files train and write both outputs.
#[test]
fn good_files_train() {
    let dir = TempDir::new("bad-input-control");
    good_npy(&dir);
    std::fs::write(dir.join("good.csv"), GOOD_CSV).unwrap();
    std::fs::write(dir.join("text.txt"), "abracadabra, said the bat").unwrap();
    good_checkpoint(&dir);
    for args in [
        npy_task("x.npy", "y.npy"),
        csv_task("good.csv"),
        text_task("text.txt"),
        load_task(),
    ] {
        let out = run(&dir, &args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checkpoint::load(&dir.join("out.safetensors"), &LoadOverrides::default()).unwrap();
        assert!(std::fs::read_to_string(dir.join("log.csv"))
            .unwrap()
            .starts_with("step,"));
        std::fs::remove_file(dir.join("out.safetensors")).unwrap();
        std::fs::remove_file(dir.join("log.csv")).unwrap();
    }
}

// ---- .npy ------------------------------------------------------------------------------

#[test]
fn npy_of_the_wrong_dtype() {
    let dir = TempDir::new("bad-input-npy-dtype");
    good_npy(&dir);
    write_npy(&dir, "int_x.npy", &Array3::<i64>::zeros((5, 3, 2)));
    assert_mentions(
        &refused(&dir, &npy_task("int_x.npy", "y.npy")),
        &["inputs 'int_x.npy'", "int64", "expected float32 or float64"],
    );
    write_npy(&dir, "i16_y.npy", &Array1::<i16>::zeros(5));
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "i16_y.npy")),
        &["targets 'i16_y.npy'", "'<i2'", "int64, int32 or uint8"],
    );
}

#[test]
fn npy_of_the_wrong_rank() {
    let dir = TempDir::new("bad-input-npy-rank");
    good_npy(&dir);
    write_npy(&dir, "rank2.npy", &Array2::<f32>::zeros((5, 6)));
    assert_mentions(
        &refused(&dir, &npy_task("rank2.npy", "y.npy")),
        &["inputs 'rank2.npy'", "[5, 6]", "rank 3 [N, T, I]"],
    );
    write_npy(&dir, "float_y.npy", &Array1::<f32>::zeros(5));
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "float_y.npy")),
        &["targets 'float_y.npy'", "[5]", "[N, O]"],
    );
    write_npy(&dir, "rank3_y.npy", &Array3::<i64>::zeros((5, 3, 1)));
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "rank3_y.npy")),
        &[
            "targets 'rank3_y.npy'",
            "[5, 3, 1]",
            "expected [N] or [N, T]",
        ],
    );
}

#[test]
fn npy_targets_that_disagree_with_the_inputs() {
    let dir = TempDir::new("bad-input-npy-targets");
    good_npy(&dir);
    write_npy(&dir, "short_y.npy", &Array1::<i64>::zeros(4));
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "short_y.npy")),
        &[
            "targets 'short_y.npy'",
            "[4]",
            "inputs 'x.npy'",
            "[5, 3, 2]",
            "expected targets [5]",
        ],
    );
    write_npy(&dir, "wrong_t.npy", &Array2::<i64>::zeros((5, 4)));
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "wrong_t.npy")),
        &["targets 'wrong_t.npy'", "[5, 4]", "expected targets [5, 3]"],
    );
}

/// A model loaded for data it does not fit: the inputs' width, the loss the targets imply, and
/// the `grad` command's time-major batch.
#[test]
fn npy_that_disagrees_with_the_model() {
    let dir = TempDir::new("bad-input-npy-model");
    good_checkpoint(&dir); // I = 2, O = 1, MSE on the last step
    let x3 = Array3::from_shape_fn((5, 3, 3), |(n, t, i)| (n + t + i) as f32);
    write_npy(&dir, "x3.npy", &x3);
    write_npy(&dir, "values.npy", &Array2::<f32>::zeros((5, 1)));
    let mut args = npy_task("x3.npy", "values.npy");
    args.extend(["--load", "m.safetensors"]);
    assert_mentions(
        &refused(&dir, &args),
        &["m.safetensors", "takes 2 inputs", "the data has 3"],
    );

    good_npy(&dir); // class targets: cross-entropy
    let mut args = npy_task("x.npy", "y.npy");
    args.extend(["--load", "m.safetensors"]);
    assert_mentions(
        &refused(&dir, &args),
        &["m.safetensors", "loss=mse", "this run needs loss=ce"],
    );

    // grad takes x [T, B, I]: here I = 3 for a model of I = 2, then targets of the wrong shape.
    let grad = |x: &'static str, y: &'static str| {
        [
            "grad",
            "--device",
            "cpu",
            "--model",
            "m.safetensors",
            "--input",
            x,
            "--target",
            y,
            "--out",
            "g.safetensors",
        ]
    };
    assert_mentions(
        &refused(&dir, &grad("x3.npy", "values.npy")),
        &["inputs 'x3.npy'", "[5, 3, 3]", "expected [T, B, 2]"],
    );
    write_npy(&dir, "x_tbi.npy", &Array3::<f32>::zeros((5, 3, 2)));
    assert_mentions(
        &refused(&dir, &grad("x_tbi.npy", "values.npy")),
        &[
            "targets 'values.npy'",
            "[5, 1]",
            "needs float values of shape [3, 1]",
        ],
    );
}

/// An `.npy` version 1.0 header for `descr` and `shape` (Python literals), padded with spaces
/// and a newline to a multiple of 64 bytes as numpy writes it.
fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes
}

#[test]
fn npy_truncated() {
    let dir = TempDir::new("bad-input-npy-truncated");
    good_npy(&dir);
    let whole = std::fs::read(dir.join("x.npy")).unwrap();
    std::fs::write(dir.join("cut.npy"), &whole[..whole.len() - 7]).unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("cut.npy", "y.npy")),
        &[
            "inputs 'cut.npy' is truncated",
            "'<f4'",
            "[5, 3, 2]",
            "(120 bytes of data)",
            "only 113 bytes",
        ],
    );
    // Cut inside the header (its stated length is checked before it is read).
    std::fs::write(dir.join("cut_header.npy"), &whole[..20]).unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("cut_header.npy", "y.npy")),
        &[
            "inputs 'cut_header.npy' is truncated",
            "header says it is 118 bytes long but only 10 bytes follow",
        ],
    );
    // A header that claims far more than any file holds is refused, not allocated.
    let mut huge = npy_header("'<f4'", "(5000000000000, 3, 2)");
    huge.extend_from_slice(&whole[whole.len() - 120..]);
    std::fs::write(dir.join("huge.npy"), &huge).unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("huge.npy", "y.npy")),
        &["inputs 'huge.npy' is truncated", "[5000000000000, 3, 2]"],
    );
    // Data beyond what the header describes.
    let mut long = whole.clone();
    long.extend_from_slice(&[0; 8]);
    std::fs::write(dir.join("long.npy"), &long).unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("long.npy", "y.npy")),
        &[
            "inputs 'long.npy' has 128 bytes after its header",
            "120 bytes",
        ],
    );
}

#[test]
fn npy_that_is_not_npy_at_all() {
    let dir = TempDir::new("bad-input-npy-garbage");
    good_npy(&dir);
    std::fs::write(dir.join("garbage.npy"), b"not numpy at all").unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("garbage.npy", "y.npy")),
        &["inputs 'garbage.npy' is not a valid .npy file"],
    );
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "missing.npy")),
        &["cannot read targets 'missing.npy'"],
    );
}

#[test]
fn npy_holding_nan_or_inf() {
    let dir = TempDir::new("bad-input-npy-nan");
    good_npy(&dir);
    let mut with_nan = Array3::<f32>::zeros((5, 3, 2));
    with_nan[[2, 1, 0]] = f32::NAN;
    write_npy(&dir, "nan_x.npy", &with_nan);
    assert_mentions(
        &refused(&dir, &npy_task("nan_x.npy", "y.npy")),
        &[
            "inputs 'nan_x.npy'",
            "NaN at index [2, 1, 0]",
            "must be finite",
        ],
    );
    let mut with_inf = Array2::<f32>::zeros((5, 2));
    with_inf[[4, 1]] = f32::NEG_INFINITY;
    write_npy(&dir, "inf_y.npy", &with_inf);
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "inf_y.npy")),
        &[
            "targets 'inf_y.npy'",
            "-inf at index [4, 1]",
            "must be finite",
        ],
    );
}

#[test]
fn npy_class_index_out_of_range() {
    let dir = TempDir::new("bad-input-npy-classes");
    good_npy(&dir); // classes 0..=2
    let mut args = npy_task("x.npy", "y.npy");
    args.extend(["--classes", "2"]);
    assert_mentions(
        &refused(&dir, &args),
        &[
            "targets 'y.npy'",
            "class 2 at index [2]",
            "out of range 0..2",
        ],
    );
    write_npy(
        &dir,
        "negative.npy",
        &Array1::<i64>::from(vec![0, 1, -1, 1, 0]),
    );
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "negative.npy")),
        &["targets 'negative.npy'", "class -1 at index [2]", "0..2^32"],
    );
    // A stray huge index would size the model's head: refused unless --classes says so.
    write_npy(
        &dir,
        "stray.npy",
        &Array1::<i64>::from(vec![0, 1, 70000, 1, 0]),
    );
    assert_mentions(
        &refused(&dir, &npy_task("x.npy", "stray.npy")),
        &[
            "targets 'stray.npy'",
            "class 70000 at index [2]",
            "70001 classes",
            "--classes",
        ],
    );
    write_npy(&dir, "values.npy", &Array2::<f32>::zeros((5, 1)));
    let mut args = npy_task("x.npy", "values.npy");
    args.extend(["--classes", "3"]);
    assert_mentions(
        &refused(&dir, &args),
        &["targets 'values.npy'", "real values (MSE)", "3 classes"],
    );
}

#[test]
fn npy_empty() {
    let dir = TempDir::new("bad-input-npy-empty");
    good_npy(&dir);
    write_npy(
        &dir,
        "empty_x.npy",
        &ArrayD::<f32>::zeros(IxDyn(&[0, 3, 2])),
    );
    write_npy(&dir, "empty_y.npy", &Array1::<i64>::zeros(0));
    assert_mentions(
        &refused(&dir, &npy_task("empty_x.npy", "empty_y.npy")),
        &[
            "inputs 'empty_x.npy' are empty",
            "[0, 3, 2]",
            "every size >= 1",
        ],
    );
    std::fs::write(dir.join("zero_bytes.npy"), b"").unwrap();
    assert_mentions(
        &refused(&dir, &npy_task("zero_bytes.npy", "y.npy")),
        &["inputs 'zero_bytes.npy' is not a valid .npy file"],
    );
}

// ---- CSV -------------------------------------------------------------------------------

/// Writes `contents` as `file` and returns the refusal of `--task csv` on it (T = 2, a class
/// per line).
fn refused_csv(dir: &TempDir, file: &str, contents: &[u8]) -> String {
    std::fs::write(dir.join(file), contents).unwrap();
    let stderr = refused(dir, &csv_task(file));
    assert_mentions(&stderr, &[&format!("CSV '{file}'")]);
    stderr
}

#[test]
fn csv_ragged_rows() {
    let dir = TempDir::new("bad-input-csv-ragged");
    let stderr = refused_csv(&dir, "ragged.csv", b"1,2,3,4,0\n4,5,6,7,8,1\n");
    assert_mentions(&stderr, &["line 2 has 6 fields", "earlier lines have 5"]);
    // Every line alike, but not 2 * I + 1 wide.
    let stderr = refused_csv(&dir, "width.csv", b"1,2,3,0\n4,5,6,1\n");
    assert_mentions(
        &stderr,
        &[
            "4 fields per line",
            "seq_len 2",
            "expected 2 * I + 1 fields",
        ],
    );
}

#[test]
fn csv_non_numeric_fields() {
    let dir = TempDir::new("bad-input-csv-text");
    let stderr = refused_csv(&dir, "word.csv", b"1,2,3,4,0\n4,x,6,7,1\n");
    assert_mentions(&stderr, &["line 2, column 2", "'x' is not a number"]);
    let stderr = refused_csv(&dir, "fraction.csv", b"1,2,3,4,0.5\n");
    assert_mentions(
        &stderr,
        &[
            "data row 1, column 5",
            "class 0.5 is not a non-negative integer",
        ],
    );
    let stderr = refused_csv(&dir, "nan.csv", b"1,2,3,4,0\n3,nan,1,1,1\n");
    assert_mentions(&stderr, &["NaN at index [1, 0, 1]", "must be finite"]);
    let stderr = refused_csv(&dir, "latin1.csv", b"x0,x1,x2,x3,caf\xe9\n1,2,3,4,0\n");
    assert_mentions(&stderr, &["line 1", "byte 0xe9", "not UTF-8"]);
}

/// A first line with any non-numeric field is a header (`good_files_train` trains on one); it
/// must be as wide as the data, and a second one is data that is not numbers.
#[test]
fn csv_header_or_no_header() {
    let dir = TempDir::new("bad-input-csv-header");
    let stderr = refused_csv(&dir, "narrow_header.csv", b"a,b,label\n1,2,3,4,0\n");
    assert_mentions(&stderr, &["line 2 has 5 fields", "earlier lines have 3"]);
    let stderr = refused_csv(
        &dir,
        "two_headers.csv",
        b"a,b,c,d,e\nx,y,z,w,v\n1,2,3,4,0\n",
    );
    assert_mentions(&stderr, &["line 2, column 1", "'x' is not a number"]);
    let stderr = refused_csv(&dir, "header_only.csv", b"a,b,c,d,label\n");
    assert_mentions(&stderr, &["holds no data rows"]);
}

#[test]
fn csv_empty_file() {
    let dir = TempDir::new("bad-input-csv-empty");
    assert_mentions(
        &refused_csv(&dir, "empty.csv", b""),
        &["holds no data rows"],
    );
    assert_mentions(
        &refused_csv(&dir, "blank.csv", b"\n  \n\n"),
        &["holds no data rows"],
    );
    assert_mentions(
        &refused(&dir, &csv_task("missing.csv")),
        &["cannot read CSV 'missing.csv'"],
    );
}

// ---- safetensors checkpoints -------------------------------------------------------------

/// Spoils m.safetensors with `spoil(tensors, metadata)` and returns `train --load`'s refusal,
/// which names the file.
fn refused_checkpoint(
    dir: &TempDir,
    spoil: impl FnOnce(&mut Vec<common::Raw>, &mut std::collections::BTreeMap<String, String>),
) -> String {
    good_checkpoint(dir);
    let path = dir.join("m.safetensors");
    let (mut tensors, metadata) = read_raw(&path);
    let mut metadata = metadata.unwrap();
    spoil(&mut tensors, &mut metadata);
    write_raw(&path, &tensors, Some(&metadata));
    let stderr = refused(dir, &load_task());
    assert_mentions(&stderr, &["m.safetensors: "]);
    stderr
}

#[test]
fn safetensors_missing_tensor() {
    let dir = TempDir::new("bad-input-st-missing");
    let stderr = refused_checkpoint(&dir, |tensors, _| {
        *tensors = without(std::mem::take(tensors), &["bias_hh_l0"]);
    });
    assert_mentions(
        &stderr,
        &["missing tensor 'bias_hh_l0'", "expected shape [20]", "H=5"],
    );
}

#[test]
fn safetensors_extra_tensor() {
    let dir = TempDir::new("bad-input-st-extra");
    let stderr = refused_checkpoint(&dir, |tensors, _| {
        tensors.push(raw_f32("optimizer_state", &[2], &[1.0, 2.0]));
    });
    assert_mentions(
        &stderr,
        &[
            "unexpected tensor 'optimizer_state'",
            "expected weight_ih_l{k}",
            "under optim., grad., grad_norm.",
        ],
    );
}

#[test]
fn safetensors_wrong_shape_for_the_configuration() {
    let dir = TempDir::new("bad-input-st-shape");
    // The metadata says H = 6, the tensors are an LSTM's of H = 5.
    let stderr = refused_checkpoint(&dir, |_, metadata| {
        metadata.insert("hidden_size".into(), "6".into());
    });
    assert_mentions(&stderr, &["weight_ih_l0", "[20, 2]", "expected [24, 2]"]);
}

#[test]
fn safetensors_wrong_dtype() {
    let dir = TempDir::new("bad-input-st-dtype");
    for (dtype, width) in [(Dtype::F64, 8), (Dtype::F16, 2), (Dtype::BF16, 2)] {
        let stderr = refused_checkpoint(&dir, |tensors, _| {
            let head_bias = tensors.iter_mut().find(|t| t.name == "head.bias").unwrap();
            head_bias.dtype = dtype;
            head_bias.bytes = vec![0; width];
        });
        assert_mentions(
            &stderr,
            &["tensor 'head.bias'", &format!("dtype {dtype}"), "only F32"],
        );
    }
}

#[test]
fn safetensors_corrupted_header() {
    let dir = TempDir::new("bad-input-st-corrupt");
    good_checkpoint(&dir);
    let path = dir.join("m.safetensors");
    let good = std::fs::read(&path).unwrap();
    let mut garbled = good.clone();
    garbled[8] = b'[';
    let cases: [(&[u8], &str); 4] = [
        (&garbled, "JSON"),
        (&good[..5], "header"),
        (&good[..good.len() - 3], "incomplete"),
        (b"", "header"),
    ];
    for (bytes, reason) in cases {
        std::fs::write(&path, bytes).unwrap();
        assert_mentions(
            &refused(&dir, &load_task()),
            &["m.safetensors: not a valid safetensors file", reason],
        );
    }
}

#[test]
fn safetensors_metadata_from_another_cell_type() {
    let dir = TempDir::new("bad-input-st-cell");
    let stderr = refused_checkpoint(&dir, |_, metadata| {
        metadata.insert("cell".into(), "rnn".into());
    });
    assert_mentions(
        &stderr,
        &[
            "metadata says cell=rnn",
            "weight_hh_l0 has shape [20, 5]",
            "an lstm's [4H, H] with H = 5",
        ],
    );
}

// ---- the text task -----------------------------------------------------------------------

#[test]
fn text_empty_file() {
    let dir = TempDir::new("bad-input-text-empty");
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    assert_mentions(
        &refused(&dir, &text_task("empty.txt")),
        &["text file 'empty.txt' is empty"],
    );
    assert_mentions(
        &refused(&dir, &text_task("missing.txt")),
        &["cannot read text file 'missing.txt'"],
    );
}

#[test]
fn text_shorter_than_one_sequence() {
    let dir = TempDir::new("bad-input-text-short");
    std::fs::write(dir.join("short.txt"), b"abcd").unwrap();
    assert_mentions(
        &refused(&dir, &text_task("short.txt")),
        &["'short.txt' has 4 bytes", "seq_len 4 needs at least 5"],
    );
}

/// The text task reads bytes, not UTF-8 (README, `tasks::text`): a file that is not UTF-8
/// trains, and its vocabulary holds the raw bytes.
#[test]
fn text_that_is_not_utf8_is_read_as_bytes() {
    let dir = TempDir::new("bad-input-text-bytes");
    std::fs::write(
        dir.join("latin1.txt"),
        b"caf\xe9 cr\xe8me br\xfbl\xe9e\xff\x00",
    )
    .unwrap();
    let out = run(&dir, &text_task("latin1.txt"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = checkpoint::load(&dir.join("out.safetensors"), &LoadOverrides::default()).unwrap();
    let vocabulary = &saved.metadata["vocabulary"];
    for byte in ["0", "232", "233", "251", "255"] {
        assert!(
            vocabulary.split(',').any(|b| b == byte),
            "byte {byte} not in the vocabulary {vocabulary}"
        );
    }
}

// ---- the command line --------------------------------------------------------------------

#[test]
fn zero_sizes_are_refused_by_name() {
    let dir = TempDir::new("bad-input-zero");
    for flag in [
        "--hidden",
        "--layers",
        "--batch",
        "--steps",
        "--eval-every",
        "--grad-norms-every",
    ] {
        assert_mentions(
            &refused(&dir, &train(&["--seq-len", "5", flag, "0"])),
            &[&format!("{flag} must be at least 1, got 0")],
        );
    }
}

/// A pass or a model too large for any machine's memory is refused by name before anything
/// is allocated (allocating it would abort the process with no message).
#[test]
fn models_and_passes_too_large_for_this_machine_are_refused() {
    let dir = TempDir::new("bad-input-host-memory");
    let huge = "4294967297";
    let pass = format!("T={huge} B={huge}: one pass keeps at least");
    let train = train(&["--device", "cpu", "--batch", huge, "--seq-len", huge]);
    assert_mentions(&refused(&dir, &train), &[&pass, "--seq-len"]);
    let parity = ["parity", "--batch", huge, "--seq-len", huge];
    assert_mentions(&refused(&dir, &parity), &[&pass]);
    let shape = format!("{huge},{huge},1,1");
    let bench = ["bench", "--device", "cpu", "--shape", &shape, "--runs", "1"];
    assert_mentions(&refused(&dir, &bench), &[&pass]);
    let bench = [
        "bench",
        "--device",
        "cpu",
        "--shape",
        "2,3,1,1000000",
        "--runs",
        "1",
    ];
    assert_mentions(
        &refused(&dir, &bench),
        &[
            "hidden_size 1000000",
            "parameters need",
            "more than this machine's",
        ],
    );
}

/// A benchmark of no timed runs, or a tuning of no rounds, would report a figure nothing
/// measured.
#[test]
fn timing_with_no_runs_is_refused() {
    let dir = TempDir::new("bad-input-no-runs");
    let bench = [
        "bench", "--device", "cpu", "--shape", "2,3,1,4", "--runs", "0",
    ];
    assert_mentions(
        &refused(&dir, &bench),
        &["--runs must be at least 1, got 0"],
    );
    let tune = ["tune", "--shape", "2,3,1,4", "--rounds", "0"];
    assert_mentions(
        &refused(&dir, &tune),
        &["--rounds must be at least 1, got 0"],
    );
}

/// Dropout outside [0, 1), and truncated BPTT (which carries one cell's state from chunk to
/// chunk) for a stacked or bidirectional model.
#[test]
fn stacked_model_options_that_cannot_apply_are_refused() {
    let dir = TempDir::new("bad-input-stacked");
    for p in ["1", "1.5", "NaN"] {
        assert_mentions(
            &refused(&dir, &train(&["--layers", "2", "--dropout", p])),
            &[&format!("dropout must be in [0, 1), got {p}")],
        );
    }
    let args = train(&[
        "--task",
        "adding",
        "--seq-len",
        "6",
        "--tbptt",
        "3",
        "--bidirectional",
    ]);
    assert_mentions(
        &refused(&dir, &args),
        &["--tbptt", "a bidirectional model's reverse direction"],
    );
}

#[test]
fn negative_sizes_are_refused_by_name() {
    let dir = TempDir::new("bad-input-negative");
    for flag in ["--hidden", "--batch", "--seq-len", "--steps"] {
        assert_mentions(
            &refused(&dir, &train(&[flag, "-3"])),
            &[&format!("invalid value '-3' for '{flag} <")],
        );
    }
}

/// Sizes whose parameters alone overflow, or do not fit this machine, are refused before
/// anything is allocated (an allocation that fails aborts with no message).
#[test]
fn sizes_too_large_for_memory_are_refused() {
    let dir = TempDir::new("bad-input-huge");
    assert_mentions(
        &refused(&dir, &train(&["--hidden", "4611686018427387904"])),
        &["hidden_size 4611686018427387904", "would not fit in memory"],
    );
    assert_mentions(
        &refused(&dir, &train(&["--hidden", "1000000"])),
        &[
            "hidden_size 1000000",
            "TiB for the parameters",
            "more than this machine's",
        ],
    );
}

#[test]
fn seq_len_zero() {
    let dir = TempDir::new("bad-input-seq-len");
    std::fs::write(dir.join("text.txt"), "some text").unwrap();
    std::fs::write(dir.join("good.csv"), GOOD_CSV).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--task", "adding"],
            "the adding problem needs seq_len >= 2",
        ),
        (&["--task", "copy"], "the copy task needs a delay T >= 1"),
        (
            &["--task", "text", "--text", "text.txt"],
            "text task: seq_len must be at least 1",
        ),
        (
            &["--task", "csv", "--csv", "good.csv"],
            "CSV 'good.csv': seq_len must be at least 1",
        ),
    ];
    for (task, message) in cases {
        let mut args = train(task);
        args.extend(["--seq-len", "0"]);
        assert_mentions(&refused(&dir, &args), &[message]);
    }
}

#[test]
fn batch_larger_than_the_data_set() {
    let dir = TempDir::new("bad-input-batch");
    good_npy(&dir); // 5 sequences: 1 for validation, 4 for training
    let mut args = train(&["--task", "npy", "--inputs", "x.npy", "--targets", "y.npy"]);
    args.extend(["--batch", "5"]);
    assert_mentions(
        &refused(&dir, &args),
        &[
            "--batch 5 is larger than the 4 training sequences",
            "inputs 'x.npy'",
        ],
    );
}

#[test]
fn learning_rate_and_other_reals_not_finite() {
    let dir = TempDir::new("bad-input-lr");
    // "-inf" is no number to the parser, so it must be given as --lr=-inf.
    for lr in ["--lr=nan", "--lr=NaN", "--lr=inf", "--lr=-inf", "--lr=-1"] {
        assert_mentions(
            &refused(&dir, &train(&["--seq-len", "5", lr])),
            &["adam: lr must be finite and >= 0"],
        );
    }
    assert_mentions(
        &refused(&dir, &train(&["--seq-len", "5", "--lr", "fast"])),
        &["invalid value 'fast' for '--lr <LR>'"],
    );
    let cases: [(&str, &str, &str); 3] = [
        (
            "--clip",
            "inf",
            "clip (max gradient norm) must be finite and > 0",
        ),
        ("--hh-scale", "nan", "--hh-scale must be finite and >= 0"),
        ("--forget-bias", "inf", "--forget-bias must be finite"),
    ];
    for (flag, value, message) in cases {
        assert_mentions(
            &refused(&dir, &train(&["--seq-len", "5", flag, value])),
            &[message],
        );
    }
}

/// A recurrence that does not exist (one the adapter cannot run: tests/gpu/persistent.rs).
#[test]
fn recurrences_that_do_not_exist_are_refused() {
    let dir = TempDir::new("bad-input-recurrence");
    assert_mentions(
        &refused(&dir, &train(&["--recurrence", "sometimes"])),
        &["unknown recurrence 'sometimes'", "auto, steps, persistent"],
    );
}

/// Devices are picked by `WGPU_ADAPTER_NAME` (README); a name that matches nothing is refused,
/// listing what there is (no adapter is needed to see this).
#[test]
fn unknown_adapter_name() {
    let dir = TempDir::new("bad-input-adapter");
    let args = train(&["--seq-len", "5", "--device", "gpu"]);
    let stderr = refused_with_env(&dir, &args, &[("WGPU_ADAPTER_NAME", "no-such-adapter-xyz")]);
    assert_mentions(
        &stderr,
        &[
            "WGPU_ADAPTER_NAME='no-such-adapter-xyz' matches no adapter",
            "found: ",
        ],
    );
}

#[test]
fn unknown_names_and_missing_files_on_the_command_line() {
    let dir = TempDir::new("bad-input-names");
    let cases: [(&[&str], &str); 4] = [
        (&["--task", "text"], "--task text needs --text FILE"),
        (
            &["--task", "npy", "--inputs", "x.npy"],
            "--task npy needs --targets Y.npy",
        ),
        (&["--optimizer", "lbfgs"], "rmsprop"),
        (
            &[
                "--task",
                "csv",
                "--csv",
                "x.csv",
                "--csv-targets",
                "values:0",
            ],
            "--csv-targets 'values:0': the output count must be a positive integer",
        ),
    ];
    for (extra, message) in cases {
        assert_mentions(&refused(&dir, &train(extra)), &[message]);
    }
}

/// Output paths are checked before any work: a directory that does not exist, a "directory"
/// that is a regular file (how a path that cannot be written looks even to root), and a path
/// that is a directory.
#[test]
fn output_path_that_cannot_be_written() {
    let dir = TempDir::new("bad-input-output");
    std::fs::write(dir.join("file"), b"a regular file").unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    let cases = [
        ("no/such/dir/out.x", "no/such/dir does not exist"),
        ("file/out.x", "file is not a directory"),
        ("folder", "folder: it is a directory"),
    ];
    for (path, why) in cases {
        for flag in ["--save", "--log", "--grad-norms"] {
            let stderr = refused(&dir, &train(&["--seq-len", "5", flag, path]));
            assert_mentions(&stderr, &[&format!("{flag}: cannot write {path}: "), why]);
        }
        let stderr = refused(
            &dir,
            &[
                "grad",
                "--model",
                "m.safetensors",
                "--input",
                "x.npy",
                "--target",
                "y.npy",
                "--out",
                path,
            ],
        );
        assert_mentions(&stderr, &[&format!("--out: cannot write {path}: "), why]);
        for flag in ["--svg", "--csv"] {
            let stderr = refused(&dir, &["vanishing", "--device", "cpu", flag, path]);
            assert_mentions(&stderr, &[&format!("{flag}: cannot write {path}: "), why]);
        }
    }
}

/// `tune` writes the cache the other commands load. A cache that cannot be read is refused by
/// `tune`, which leaves it as it was, and passed over with a warning by the others, which run
/// untuned (the rules are as correct).
#[test]
fn tuning_cache_written_loaded_and_refused() {
    let dir = TempDir::new("tuning_cache");
    let cache = dir.join("tuning.json");
    let env = [("RNN_WGPU_TUNING", cache.to_str().unwrap())];
    let tune = ["tune", "--shape", "3,5,2,17", "--rounds", "1"];
    let bench = [
        "bench", "--shape", "3,5,2,17", "--runs", "1", "--warmup", "0", "--json", "--device", "gpu",
    ];
    let out = run(&dir, &tune, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tune failed: {stderr}");
    let text = std::fs::read_to_string(&cache).unwrap();
    // the input projection of (B, T, I, H) = (3, 5, 2, 17): [15, 2] x [2, 68]
    assert!(text.contains("\"15x68x2 nt\""), "{text}");
    // and the way its steps run
    assert!(text.contains("\"recurrence lstm h=17 b=3\""), "{text}");
    let out = run(&dir, &bench, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"tuned_products\":") && !stdout.contains("\"tuned_products\":0"),
        "{stdout}"
    );

    std::fs::write(&cache, "{ not json").unwrap();
    let stderr = refused_with_env(&dir, &tune, &env);
    assert_mentions(
        &stderr,
        &["tuning.json", "is not JSON", "RNN_WGPU_TUNING=off"],
    );
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "{ not json");
    let out = run(&dir, &bench, &env);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("tuning.json"),
        "{stderr}"
    );
    assert!(stdout.contains("\"tuned_products\":0"), "{stdout}");
}

/// No silent overrides: a model option that contradicts the checkpoint `--load` reads is
/// refused with both values, and an option the task does not read is refused by name.
#[test]
fn contradicting_a_checkpoint_or_the_task_is_refused() {
    let dir = TempDir::new("overrides");
    let saved = run(
        &dir,
        &[
            "train",
            "--device",
            "cpu",
            "--steps",
            "1",
            "--hidden",
            "4",
            "--batch",
            "2",
            "--seq-len",
            "5",
            "--eval-every",
            "1",
            "--save",
            "lstm.safetensors",
        ],
        &[],
    );
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let load = [
        "train",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--batch",
        "2",
        "--seq-len",
        "5",
    ];
    let load = [&load[..], &["--load", "lstm.safetensors"]].concat();
    for (option, value, saved) in [
        ("--cell", "gru", "lstm"),
        ("--hidden", "8", "4"),
        ("--layers", "2", "1"),
        ("--activation", "relu", "tanh"),
    ] {
        let stderr = refused(&dir, &[&load[..], &[option, value]].concat());
        assert_mentions(
            &stderr,
            &[
                &format!("{option} {value} contradicts"),
                &format!("{option} {saved}"),
            ],
        );
    }
    let stderr = refused(&dir, &[&load[..], &["--bidirectional"]].concat());
    assert_mentions(
        &stderr,
        &["--bidirectional true contradicts", "--bidirectional false"],
    );
    for (option, value) in [("--forget-bias", "1"), ("--init", "orthogonal")] {
        let stderr = refused(&dir, &[&load[..], &[option, value]].concat());
        assert_mentions(&stderr, &[option, "its own weights"]);
    }
    // options that agree with the checkpoint are fine
    let agreeing = run(
        &dir,
        &[&load[..], &["--cell", "lstm", "--hidden", "4"]].concat(),
        &[],
    );
    assert!(
        agreeing.status.success(),
        "{}",
        String::from_utf8_lossy(&agreeing.stderr)
    );

    let adding = [
        "train", "--device", "cpu", "--steps", "1", "--hidden", "4", "--batch", "2",
    ];
    for (option, value) in [
        ("--validation-fraction", "0.2"),
        ("--classes", "3"),
        ("--csv-targets", "class"),
        ("--inputs", "x.npy"),
    ] {
        let stderr = refused(&dir, &[&adding[..], &[option, value]].concat());
        assert_mentions(
            &stderr,
            &[&format!("{option} does not apply to --task adding")],
        );
    }
    let npy = [
        "train",
        "--task",
        "npy",
        "--inputs",
        "x.npy",
        "--targets",
        "y.npy",
    ];
    let stderr = refused(&dir, &[&npy[..], &["--seq-len", "7"]].concat());
    assert_mentions(&stderr, &["--seq-len does not apply to --task npy"]);
}

/// A checkpoint holding a NaN or an infinity is refused with the tensor and the first index
/// (by `train --load` as by any loader), as `.npy` and CSV inputs are (`csv_non_numeric_fields`).
#[test]
fn non_finite_checkpoints_are_refused() {
    let dir = TempDir::new("non-finite");
    let config = Adding::new(5)
        .unwrap()
        .spec()
        .model_config(Cell::Lstm, Activation::Tanh, 5);
    for (value, text) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(1));
        params.cells[0].weight_hh[[7, 2]] = value;
        checkpoint::save(&dir.join("m.safetensors"), &Checkpoint::new(config, params)).unwrap();
        let stderr = refused(&dir, &load_task());
        assert_mentions(
            &stderr,
            &[
                "m.safetensors",
                "'weight_hh_l0'",
                &format!("holds {text} at index [7, 2]"),
            ],
        );
    }
}

/// `--distributed mpi` in a build without the mpi feature says how to get one.
#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_without_the_mpi_feature() {
    let dir = TempDir::new("bad-input-no-mpi");
    let stderr = refused(&dir, &train(&["--distributed", "mpi"]));
    assert_mentions(
        &stderr,
        &["--distributed mpi needs a build with MPI", "--features mpi"],
    );
}

/// `export` and `predict` refuse what they cannot do, naming it, and write nothing.
#[test]
fn export_and_predict_refusals() {
    let dir = TempDir::new("bad-input-export");
    good_checkpoint(&dir); // I = 2, O = 1
    let export = [
        "export",
        "--model",
        "m.safetensors",
        "--onnx",
        "m.onnx",
        "--opset",
        "9",
    ];
    assert_mentions(&refused(&dir, &export), &["--opset 9", "opsets 14 to 21"]);
    write_npy(&dir, "x3.npy", &Array3::<f32>::zeros((4, 2, 3)));
    let predict = |input: &'static str| {
        vec![
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            input,
            "--out",
            "y.npy",
        ]
    };
    assert_mentions(
        &refused(&dir, &predict("x3.npy")),
        &["x3.npy", "shape [4, 2, 3]", "expected [T, B, 2]"],
    );
    write_npy(&dir, "x.npy", &Array3::<f32>::zeros((4, 2, 2)));
    write_npy(&dir, "l.npy", &Array1::<i64>::from(vec![5, 1]));
    let mut with_lengths = predict("x.npy");
    with_lengths.extend(["--lengths", "l.npy"]);
    assert_mentions(
        &refused(&dir, &with_lengths),
        &["l.npy", "sample 0 has length 5", "lengths must be 1..=4"],
    );
}
