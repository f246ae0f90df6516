//! `--lengths`: a dataset of sequences of different lengths trains on both engines, and bad
//! lengths files are refused naming the file, the sample and what was expected.

use ndarray::{Array1, Array3};
use ndarray_npy::WriteNpyExt;
use std::process::Command;

mod common;
use common::TempDir;

/// x [6, 5, 2], y [6] classes 0..3, and lengths [6] with a length-1 sequence.
fn dataset(dir: &TempDir, lengths: &[i64]) {
    let x = Array3::from_shape_fn((6, 5, 2), |(n, t, i)| {
        ((n * 7 + t * 3 + i) % 11) as f32 / 10.0
    });
    x.write_npy(std::fs::File::create(dir.join("x.npy")).unwrap())
        .unwrap();
    Array1::<i64>::from(vec![0, 1, 2, 1, 0, 2])
        .write_npy(std::fs::File::create(dir.join("y.npy")).unwrap())
        .unwrap();
    Array1::<i64>::from(lengths.to_vec())
        .write_npy(std::fs::File::create(dir.join("lengths.npy")).unwrap())
        .unwrap();
}

fn train(dir: &TempDir, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args([
            "train",
            "--task",
            "npy",
            "--inputs",
            "x.npy",
            "--targets",
            "y.npy",
        ])
        .args([
            "--hidden",
            "4",
            "--steps",
            "2",
            "--batch",
            "3",
            "--eval-every",
            "1",
        ])
        .args(extra)
        .current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

#[test]
fn ragged_datasets_train_on_both_engines() {
    let dir = TempDir::new("lengths-train");
    dataset(&dir, &[5, 1, 3, 5, 2, 4]);
    for device in ["cpu", "gpu"] {
        for cell in ["lstm", "gru", "rnn"] {
            let (ok, text) = train(
                &dir,
                &[
                    "--lengths",
                    "lengths.npy",
                    "--device",
                    device,
                    "--cell",
                    cell,
                ],
            );
            assert!(ok, "{device} {cell}: {text}");
            assert!(text.contains("step      2"), "{device} {cell}: {text}");
        }
    }
}

#[test]
fn bad_lengths_are_refused_naming_what_is_wrong() {
    let dir = TempDir::new("lengths-bad");
    for (lengths, expected) in [
        (
            &[5, 0, 3, 5, 2, 4][..],
            "sample 1 has length 0; lengths must be 1..=5",
        ),
        (
            &[5, 1, 3, 9, 2, 4][..],
            "sample 3 has length 9; lengths must be 1..=5",
        ),
        (&[5, 1, 3][..], "have shape [3]; expected [N] = [6]"),
    ] {
        dataset(&dir, lengths);
        let (ok, text) = train(&dir, &["--lengths", "lengths.npy", "--device", "cpu"]);
        assert!(!ok, "{lengths:?} was accepted: {text}");
        assert!(
            text.contains("lengths 'lengths.npy'") && text.contains(expected),
            "{lengths:?}: {text}"
        );
    }
    dataset(&dir, &[5, 1, 3, 5, 2, 4]);
    Array1::<f32>::from(vec![5.0; 6])
        .write_npy(std::fs::File::create(dir.join("float.npy")).unwrap())
        .unwrap();
    let (ok, text) = train(&dir, &["--lengths", "float.npy", "--device", "cpu"]);
    assert!(
        !ok && text.contains("are floats; expected integers"),
        "{text}"
    );
    let (ok, text) = train(
        &dir,
        &[
            "--lengths",
            "lengths.npy",
            "--device",
            "cpu",
            "--tbptt",
            "2",
        ],
    );
    assert!(
        !ok && text.contains("--tbptt cuts every sequence at the same steps"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args([
            "train",
            "--task",
            "adding",
            "--lengths",
            "lengths.npy",
            "--device",
            "cpu",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("--lengths does not apply to --task adding"),
        "{text}"
    );
}

/// `--task csv --lengths`: rows padded to T steps train, and what the padding holds changes
/// nothing (the same losses, bit for bit, whatever is written past each sequence's end).
#[test]
fn padded_csv_rows_train_and_their_padding_is_ignored() {
    let dir = TempDir::new("lengths-csv");
    let lengths: [usize; 6] = [5, 1, 3, 5, 2, 4];
    Array1::<i64>::from(lengths.iter().map(|&l| l as i64).collect::<Vec<_>>())
        .write_npy(std::fs::File::create(dir.join("lengths.npy")).unwrap())
        .unwrap();
    let losses = |padding: f32| {
        // Rows of 5 steps x 2 inputs, then one class.
        let rows: Vec<String> = (0..6)
            .map(|n| {
                let mut fields: Vec<String> = (0..5)
                    .flat_map(|t| (0..2).map(move |i| (t, i)))
                    .map(|(t, i)| match t < lengths[n] {
                        true => format!("{}", ((n * 7 + t * 3 + i) % 11) as f32 / 10.0),
                        false => format!("{padding}"),
                    })
                    .collect();
                fields.push((n % 3).to_string());
                fields.join(",")
            })
            .collect();
        std::fs::write(dir.join("data.csv"), rows.join("\n") + "\n").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .args([
                "train",
                "--task",
                "csv",
                "--csv",
                "data.csv",
                "--seq-len",
                "5",
            ])
            .args([
                "--csv-targets",
                "class",
                "--lengths",
                "lengths.npy",
                "--device",
                "cpu",
            ])
            .args([
                "--hidden",
                "4",
                "--steps",
                "3",
                "--batch",
                "3",
                "--eval-every",
                "1",
            ])
            .current_dir(dir.path())
            .output()
            .expect("the binary runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .filter(|l| l.starts_with("step"))
            .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let zeros = losses(0.0);
    assert_eq!(zeros.len(), 3, "{zeros:?}");
    assert_eq!(zeros, losses(37.5));
}
