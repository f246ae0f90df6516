//! Replays the fuzzers' committed seeds (`fuzz/seeds/<target>/`, including every input a fuzzer
//! once crashed on) through the fuzz targets' own bodies on stable Rust: each loader must
//! refuse or accept every one of them without panicking. The fuzzers themselves need nightly
//! and `cargo fuzz` (README, "Robustness").

#[path = "../fuzz/src/lib.rs"]
mod fuzz_targets;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{}: too few seeds", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        // A panic names the seed that caused it.
        eprintln!("{target}: {}", file.display());
        body(&bytes);
    }
}

#[test]
fn npy_seeds() {
    replay("npy", fuzz_targets::npy);
}

#[test]
fn csv_seeds() {
    replay("csv", fuzz_targets::csv);
}

#[test]
fn checkpoint_seeds() {
    replay("checkpoint", fuzz_targets::checkpoint);
}

#[test]
fn text_seeds() {
    replay("text", fuzz_targets::text);
}
