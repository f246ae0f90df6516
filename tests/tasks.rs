//! Synthetic tasks and dataset loading: the layouts the docs promise, the baselines, seeding,
//! and the messages of refusals that only the library meets. CPU only. What a user's bad files
//! get from the command line is in `bad_input.rs`.

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::WriteNpyExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::tasks::copy::{BLANK, DELIMITER, SYMBOLS};
use rnn_wgpu::tasks::{
    bits_per_char, Adding, CopyMemory, CsvFormat, CsvTargets, Dataset, SampleTargets, Task, Text,
    Vocabulary,
};
use rnn_wgpu::{Activation, Batch, Cell, Loss, Readout, Targets};
use std::path::Path;

mod common;
use common::TempDir;

fn write_npy<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    array: &ndarray::Array<A, D>,
) {
    array
        .write_npy(std::fs::File::create(path).unwrap())
        .unwrap();
}

fn error_text<T: std::fmt::Debug>(result: Result<T, rnn_wgpu::Error>) -> String {
    result.expect_err("expected an error").to_string()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "error message lacks '{part}': {message}"
        );
    }
}

fn classes(batch: &Batch<f32>) -> &[u32] {
    match &batch.targets {
        Targets::Classes(c) => c,
        Targets::Values(_) => panic!("expected class targets"),
    }
}

fn values(batch: &Batch<f32>) -> &Array2<f32> {
    match &batch.targets {
        Targets::Values(v) => v,
        Targets::Classes(_) => panic!("expected value targets"),
    }
}

/// The class whose one-hot entry is set at step t of sequence b; asserts exactly one is.
fn one_hot_class(batch: &Batch<f32>, t: usize, b: usize) -> u32 {
    let row = batch.x.slice(ndarray::s![t, b, ..]);
    let ones: Vec<usize> = (0..row.len()).filter(|&k| row[k] == 1.0).collect();
    assert_eq!(
        ones.len(),
        1,
        "step {t} of sequence {b} is not one-hot: {row}"
    );
    assert!(row.iter().all(|&v| v == 0.0 || v == 1.0));
    ones[0] as u32
}

fn check_against_spec(task: &dyn Task, batch: &Batch<f32>) {
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 4);
    batch.check(&config).unwrap();
    assert_eq!(batch.seq_len(), task.seq_len());
}

/// Two batches from the same seed are equal, and a different seed changes them.
fn check_seeding(task: &dyn Task) {
    let draw = |seed| task.batch(16, &mut StdRng::seed_from_u64(seed));
    assert_eq!(
        draw(7),
        draw(7),
        "{}: same seed, different data",
        task.name()
    );
    assert_ne!(
        draw(7),
        draw(8),
        "{}: different seeds, same data",
        task.name()
    );
}

// ---------------------------------------------------------------- adding

#[test]
fn adding_has_two_markers_one_per_half_and_targets_their_sum() {
    for t_len in [2, 3, 10, 101] {
        let task = Adding::new(t_len).unwrap();
        let batch = task.batch(200, &mut StdRng::seed_from_u64(1));
        check_against_spec(&task, &batch);
        assert_eq!(batch.x.shape(), &[t_len, 200, 2]);
        let y = values(&batch);
        assert_eq!(y.shape(), &[200, 1]);
        let half = t_len / 2;
        for b in 0..200 {
            let marked: Vec<usize> = (0..t_len).filter(|&t| batch.x[[t, b, 1]] == 1.0).collect();
            assert!((0..t_len).all(|t| matches!(batch.x[[t, b, 1]], 0.0 | 1.0)));
            assert_eq!(marked.len(), 2, "T={t_len} b={b}: markers at {marked:?}");
            assert!(
                marked[0] < half && marked[1] >= half,
                "T={t_len}: {marked:?}"
            );
            assert!((0..t_len).all(|t| (0.0..1.0).contains(&batch.x[[t, b, 0]])));
            let sum = batch.x[[marked[0], b, 0]] + batch.x[[marked[1], b, 0]];
            assert_eq!(y[[b, 0]], sum);
        }
    }
}

#[test]
fn adding_baseline_is_the_mse_of_predicting_one() {
    let task = Adding::new(50).unwrap();
    assert_eq!(task.spec().readout, Readout::Last);
    assert_eq!(task.spec().loss, Loss::Mse);
    assert!((task.baseline() - 1.0 / 6.0).abs() < 1e-7);
    assert!(task.baseline_description().contains("1/6"));
    let batch = task.batch(20_000, &mut StdRng::seed_from_u64(2));
    let mse = values(&batch)
        .iter()
        .map(|&y| (y - 1.0).powi(2))
        .sum::<f32>()
        / 20_000.0;
    assert!(
        (mse / task.baseline() - 1.0).abs() < 0.03,
        "MSE of predicting 1 is {mse}, expected about 1/6"
    );
}

#[test]
fn adding_refuses_sequences_shorter_than_two() {
    for t_len in [0, 1] {
        assert_mentions(&error_text(Adding::new(t_len)), &["seq_len >= 2"]);
    }
}

// ---------------------------------------------------------------- copy

#[test]
fn copy_layout_is_symbols_blanks_delimiter_blanks() {
    for delay in [1, 3, 17] {
        let task = CopyMemory::new(delay).unwrap();
        let (t_len, b_len) = (delay + 20, 50);
        assert_eq!(task.seq_len(), t_len);
        let batch = task.batch(b_len, &mut StdRng::seed_from_u64(3));
        check_against_spec(&task, &batch);
        assert_eq!(batch.x.shape(), &[t_len, b_len, 10]);
        let targets = classes(&batch);
        assert_eq!(targets.len(), t_len * b_len);
        for b in 0..b_len {
            let inputs: Vec<u32> = (0..t_len).map(|t| one_hot_class(&batch, t, b)).collect();
            let symbols = &inputs[..10];
            assert!(symbols.iter().all(|&s| s < SYMBOLS), "{inputs:?}");
            let mut expected_inputs = symbols.to_vec();
            expected_inputs.extend(std::iter::repeat_n(BLANK, delay - 1));
            expected_inputs.push(DELIMITER);
            expected_inputs.extend(std::iter::repeat_n(BLANK, 10));
            assert_eq!(inputs, expected_inputs, "T={delay}");
            let row_targets: Vec<u32> = (0..t_len).map(|t| targets[t * b_len + b]).collect();
            let mut expected_targets = vec![BLANK; delay + 10];
            expected_targets.extend_from_slice(symbols);
            assert_eq!(row_targets, expected_targets, "T={delay}");
        }
    }
}

#[test]
fn copy_draws_all_eight_symbols() {
    let batch = CopyMemory::new(5)
        .unwrap()
        .batch(100, &mut StdRng::seed_from_u64(4));
    let mut seen = [false; 8];
    for b in 0..100 {
        for t in 0..10 {
            seen[one_hot_class(&batch, t, b) as usize] = true;
        }
    }
    assert_eq!(seen, [true; 8]);
}

#[test]
fn copy_baseline_is_ten_ln_eight_over_the_length() {
    for delay in [1, 3, 17, 100] {
        let task = CopyMemory::new(delay).unwrap();
        let expected = 10.0 * 8f64.ln() / (delay as f64 + 20.0);
        assert!((task.baseline() as f64 - expected).abs() < 1e-6);
        // Score the described predictor: certain blank while the target is surely blank,
        // uniform over the 8 symbols at the 10 recall steps.
        let b_len = 8;
        let batch = task.batch(b_len, &mut StdRng::seed_from_u64(5));
        let targets = classes(&batch);
        let loss: f64 = (0..targets.len())
            .map(|row| {
                if row / b_len < delay + 10 {
                    assert_eq!(targets[row], BLANK);
                    0.0
                } else {
                    8f64.ln()
                }
            })
            .sum::<f64>()
            / targets.len() as f64;
        assert!((loss - expected).abs() < 1e-12);
    }
    assert_eq!(CopyMemory::new(3).unwrap().spec().output_size, 9);
    assert!(CopyMemory::new(0).is_err());
}

// ---------------------------------------------------------------- text

#[test]
fn vocabulary_is_sorted_bytes_and_round_trips() {
    let data = b"hello, w\xffrld\x00";
    let vocabulary = Vocabulary::from_data(data);
    assert_eq!(vocabulary.symbols(), b"\x00 ,dehlorw\xff");
    let encoded = vocabulary.encode(data).unwrap();
    assert_eq!(vocabulary.decode(&encoded).unwrap(), data);
    assert_eq!(vocabulary.class_of(0xff), Some(10));
    assert_eq!(vocabulary.byte_of(0), Some(0));
    assert_mentions(
        &error_text(vocabulary.encode(b"z")),
        &["0x7a", "position 0"],
    );
    assert_mentions(
        &error_text(vocabulary.decode(&[3, 11])),
        &["class 11", "at position 1", "0..11"],
    );
    assert_eq!(
        Vocabulary::from_symbols(vocabulary.symbols()).unwrap(),
        vocabulary
    );
    assert!(Vocabulary::from_symbols(b"ba").is_err());
    assert!(Vocabulary::from_symbols(b"").is_err());
}

#[test]
fn text_batches_are_windows_of_the_file_with_next_byte_targets() {
    let dir = TempDir::new("text-batches");
    let path = dir.join("corpus.txt");
    let contents: Vec<u8> = b"the quick brown fox jumps over the lazy dog \xe2\x9c\x93 "
        .repeat(3)
        .to_vec();
    std::fs::write(&path, &contents).unwrap();
    let (t_len, b_len) = (12, 30);
    let task = Text::from_file(&path, t_len).unwrap();
    let v = task.vocabulary().len();
    assert_eq!(v, Vocabulary::from_data(&contents).len());
    assert_eq!(task.spec().input_size, v);
    assert_eq!(task.spec().output_size, v);
    assert_eq!(task.spec().readout, Readout::All);
    let batch = task.batch(b_len, &mut StdRng::seed_from_u64(6));
    check_against_spec(&task, &batch);
    assert_eq!(batch.x.shape(), &[t_len, b_len, v]);
    let targets = classes(&batch);
    assert_eq!(targets.len(), t_len * b_len);
    for b in 0..b_len {
        let inputs: Vec<u32> = (0..t_len).map(|t| one_hot_class(&batch, t, b)).collect();
        for t in 0..t_len - 1 {
            assert_eq!(targets[t * b_len + b], inputs[t + 1]);
        }
        let mut window = inputs.clone();
        window.push(targets[(t_len - 1) * b_len + b]);
        let bytes = task.vocabulary().decode(&window).unwrap();
        assert!(
            contents.windows(t_len + 1).any(|w| w == bytes),
            "sequence {b} is not a window of the file"
        );
    }
    check_seeding(&task);
}

#[test]
fn text_baseline_is_the_unigram_entropy() {
    let task = Text::from_bytes("ab", b"abababab", 3).unwrap();
    assert!((task.baseline() - std::f32::consts::LN_2).abs() < 1e-6);
    assert!((bits_per_char(task.baseline()) - 1.0).abs() < 1e-6);
    assert!(task.baseline_description().contains("1.000 bits"));
}

/// A file of exactly `seq_len + 1` bytes holds one window (the refusals of shorter and empty
/// files are in `bad_input.rs`).
#[test]
fn text_of_seq_len_plus_one_bytes_is_one_window() {
    let task = Text::from_bytes("short", b"abcd", 3).unwrap();
    let batch = task.batch(2, &mut StdRng::seed_from_u64(0));
    assert_eq!(classes(&batch), &[1, 1, 2, 2, 3, 3]);
}

#[test]
fn synthetic_tasks_are_seeded() {
    check_seeding(&Adding::new(20).unwrap());
    check_seeding(&CopyMemory::new(4).unwrap());
}

// ---------------------------------------------------------------- datasets

/// `[N, T, I]` inputs whose value encodes its own position: 100 n + 10 t + i.
fn numbered_inputs(n: usize, t_len: usize, i: usize) -> Array3<f32> {
    Array3::from_shape_fn((n, t_len, i), |(n, t, i)| (100 * n + 10 * t + i) as f32)
}

/// The sample each batch column came from, read back from `numbered_inputs`.
fn sample_ids(batch: &Batch<f32>) -> Vec<usize> {
    (0..batch.batch_size())
        .map(|b| (batch.x[[0, b, 0]] / 100.0) as usize)
        .collect()
}

#[test]
fn npy_dataset_is_served_time_major() {
    let dir = TempDir::new("npy-time-major");
    let (inputs, targets) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy(&inputs, &numbered_inputs(5, 3, 2));
    write_npy(&targets, &Array1::<i64>::from(vec![0, 2, 1, 2, 0]));
    let data = Dataset::from_npy(&inputs, &targets, None).unwrap();
    assert_eq!((data.len(), data.seq_len()), (5, 3));
    let spec = data.spec();
    assert_eq!((spec.input_size, spec.output_size), (2, 3));
    assert_eq!(
        (spec.readout, spec.loss),
        (Readout::Last, Loss::CrossEntropy)
    );
    let batch = data.batch(&[3, 1]);
    batch
        .check(&spec.model_config(Cell::Rnn, Activation::Tanh, 4))
        .unwrap();
    assert_eq!(batch.x.shape(), &[3, 2, 2]);
    for (b, n) in [3, 1].into_iter().enumerate() {
        for t in 0..3 {
            for i in 0..2 {
                assert_eq!(batch.x[[t, b, i]], (100 * n + 10 * t + i) as f32);
            }
        }
    }
    assert_eq!(classes(&batch), &[2, 2]);
    // num_classes widens O beyond the classes present.
    assert_eq!(
        Dataset::from_npy(&inputs, &targets, Some(7))
            .unwrap()
            .spec()
            .output_size,
        7
    );
}

#[test]
fn npy_reads_f64_fortran_order_and_small_integer_dtypes() {
    let dir = TempDir::new("npy-dtypes");
    let (inputs, targets) = (dir.join("x.npy"), dir.join("y.npy"));
    let expected = numbered_inputs(4, 3, 2);
    // Logical shape [4, 3, 2] stored in Fortran (column-major) order, as float64.
    let fortran = expected
        .mapv(f64::from)
        .reversed_axes()
        .as_standard_layout()
        .reversed_axes()
        .into_owned();
    assert!(!fortran.is_standard_layout());
    write_npy(&inputs, &fortran);
    for dtype in ["int32", "uint8"] {
        match dtype {
            "int32" => write_npy(&targets, &Array1::<i32>::from(vec![1, 0, 1, 1])),
            _ => write_npy(&targets, &Array1::<u8>::from(vec![1, 0, 1, 1])),
        }
        let data = Dataset::from_npy(&inputs, &targets, None).unwrap();
        assert_eq!(data.inputs(), &expected, "{dtype}");
        assert_eq!(
            data.targets(),
            &SampleTargets::Classes(Array1::from(vec![1, 0, 1, 1]))
        );
    }
}

#[test]
fn per_step_and_value_targets_use_row_t_times_b_plus_b() {
    let dir = TempDir::new("npy-targets");
    let inputs = dir.join("x.npy");
    write_npy(&inputs, &numbered_inputs(4, 3, 2));
    let picks = [2, 0, 3];

    let step_classes = dir.join("step_classes.npy");
    let y = Array2::<i64>::from_shape_fn((4, 3), |(n, t)| (n * 3 + t) as i64);
    write_npy(&step_classes, &y);
    let data = Dataset::from_npy(&inputs, &step_classes, None).unwrap();
    assert_eq!(
        (data.spec().readout, data.spec().output_size),
        (Readout::All, 12)
    );
    let batch = data.batch(&picks);
    let got = classes(&batch);
    for t in 0..3 {
        for (b, &n) in picks.iter().enumerate() {
            assert_eq!(got[t * 3 + b], y[[n, t]] as u32);
        }
    }

    let last_values = dir.join("values.npy");
    let y = Array2::<f32>::from_shape_fn((4, 2), |(n, o)| n as f32 + o as f32 / 10.0);
    write_npy(&last_values, &y);
    let data = Dataset::from_npy(&inputs, &last_values, None).unwrap();
    assert_eq!(
        (
            data.spec().readout,
            data.spec().loss,
            data.spec().output_size
        ),
        (Readout::Last, Loss::Mse, 2)
    );
    let batch = data.batch(&picks);
    for (b, &n) in picks.iter().enumerate() {
        assert_eq!(values(&batch).row(b), y.row(n));
    }

    let step_values = dir.join("step_values.npy");
    let y = Array3::<f64>::from_shape_fn((4, 3, 2), |(n, t, o)| (n * 100 + t * 10 + o) as f64);
    write_npy(&step_values, &y);
    let data = Dataset::from_npy(&inputs, &step_values, None).unwrap();
    assert_eq!(
        (data.spec().readout, data.spec().loss),
        (Readout::All, Loss::Mse)
    );
    let batch = data.batch(&picks);
    batch
        .check(&data.spec().model_config(Cell::Lstm, Activation::Tanh, 3))
        .unwrap();
    for t in 0..3 {
        for (b, &n) in picks.iter().enumerate() {
            for o in 0..2 {
                assert_eq!(values(&batch)[[t * 3 + b, o]], y[[n, t, o]] as f32);
            }
        }
    }
}

fn small_dataset(n: usize) -> Dataset {
    let targets = Array1::from_shape_fn(n, |n| (n % 3) as u32);
    Dataset::from_arrays(
        "numbered",
        numbered_inputs(n, 2, 1),
        SampleTargets::Classes(targets),
        None,
    )
    .unwrap()
}

#[test]
fn shuffled_batches_cover_every_sample_once_and_follow_the_seed() {
    let data = small_dataset(23);
    let epoch = |seed| {
        let batches: Vec<Batch<f32>> = data
            .batches(5, &mut StdRng::seed_from_u64(seed))
            .unwrap()
            .collect();
        for batch in &batches {
            for (b, n) in sample_ids(batch).into_iter().enumerate() {
                assert_eq!(
                    classes(batch)[b],
                    (n % 3) as u32,
                    "targets travel with inputs"
                );
            }
        }
        batches
    };
    let batches = epoch(9);
    let sizes: Vec<usize> = batches.iter().map(Batch::batch_size).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    assert_eq!(
        data.batches(5, &mut StdRng::seed_from_u64(9))
            .unwrap()
            .len(),
        5
    );
    let order: Vec<usize> = batches.iter().flat_map(sample_ids).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..23).collect::<Vec<_>>());
    assert_ne!(order, sorted, "the order is shuffled");
    let again: Vec<usize> = epoch(9).iter().flat_map(sample_ids).collect();
    assert_eq!(order, again);
    let other: Vec<usize> = epoch(10).iter().flat_map(sample_ids).collect();
    assert_ne!(order, other);
    assert!(data.batches(0, &mut StdRng::seed_from_u64(0)).is_err());
}

#[test]
fn split_is_disjoint_complete_and_seeded() {
    let data = small_dataset(20);
    let ids = |d: &Dataset| -> Vec<usize> {
        d.inputs()
            .outer_iter()
            .map(|s| (s[[0, 0]] / 100.0) as usize)
            .collect()
    };
    let (train, validation) = data.split(0.25, 3).unwrap();
    assert_eq!((train.len(), validation.len()), (15, 5));
    assert_eq!(train.spec(), data.spec());
    assert_eq!(validation.spec(), data.spec());
    let mut all: Vec<usize> = ids(&train).into_iter().chain(ids(&validation)).collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    let (_, same) = data.split(0.25, 3).unwrap();
    assert_eq!(ids(&same), ids(&validation));
    let (_, different) = data.split(0.25, 4).unwrap();
    assert_ne!(ids(&different), ids(&validation));
    // At least one sample on each side.
    let (train, validation) = small_dataset(3).split(0.01, 0).unwrap();
    assert_eq!((train.len(), validation.len()), (2, 1));
    for fraction in [0.0, 1.0, f64::NAN, -0.5] {
        assert_mentions(&error_text(data.split(fraction, 0)), &["(0, 1)"]);
    }
    assert_mentions(&error_text(small_dataset(1).split(0.5, 0)), &["at least 2"]);
}

#[test]
fn csv_rows_are_inputs_then_targets_with_optional_header() {
    let dir = TempDir::new("csv");
    // T = 2, I = 2, one class per row.
    let with_header = dir.join("with_header.csv");
    std::fs::write(
        &with_header,
        "x0a,x0b,x1a,x1b,label\n1,2,3,4,1\n\n 5 , 6 , 7 , 8 , 0\n",
    )
    .unwrap();
    let without_header = dir.join("without_header.csv");
    std::fs::write(&without_header, "1,2,3,4,1\n5,6,7,8,0").unwrap();
    let format = CsvFormat {
        seq_len: 2,
        targets: CsvTargets::Class,
    };
    for path in [&with_header, &without_header] {
        let data = Dataset::from_csv(path, format, None).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!((data.spec().input_size, data.spec().output_size), (2, 2));
        let batch = data.batch(&[0, 1]);
        // x[t, b, i]: sequence 0 is [[1, 2], [3, 4]], sequence 1 is [[5, 6], [7, 8]].
        assert_eq!(
            batch.x.as_slice().unwrap(),
            &[1., 2., 5., 6., 3., 4., 7., 8.]
        );
        assert_eq!(classes(&batch), &[1, 0]);
    }

    // T = 2, I = 1, per-step values with O = 2: x0, x1, y0a, y0b, y1a, y1b.
    let step_values = dir.join("step_values.csv");
    std::fs::write(&step_values, "1,2,0.1,0.2,0.3,0.4\n3,4,0.5,0.6,0.7,0.8\n").unwrap();
    let format = CsvFormat {
        seq_len: 2,
        targets: CsvTargets::StepValues(2),
    };
    let data = Dataset::from_csv(&step_values, format, None).unwrap();
    assert_eq!(data.spec().input_size, 1);
    let batch = data.batch(&[1, 0]);
    // Rows t * B + b: (t0, seq1), (t0, seq0), (t1, seq1), (t1, seq0).
    let expected = [[0.5, 0.6], [0.1, 0.2], [0.7, 0.8], [0.3, 0.4]];
    assert_eq!(values(&batch), &Array2::from(expected.to_vec()));
}
