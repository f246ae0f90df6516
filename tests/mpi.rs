//! `train --distributed mpi` through `mpirun` with 2 ranks (Open MPI; CI installs it and runs
//! these with `cargo test --release --features mpi --test mpi`): 2 ranks x batch 16 train as
//! one process x batch 32 on the CPU engine and on the GPU (lavapipe in CI), two identical
//! runs write bit-identical checkpoints, a 2-rank checkpoint resumes on 1 rank, and the job's
//! refusals and failures: outside mpirun, ranks started differently, a rank killed mid-run,
//! SIGTERM. Without mpirun these fail with the instructions; they are never skipped.
#![cfg(feature = "mpi")]

mod common;

use common::{assert_params_close, TempDir};
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::Params;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnn-wgpu");

/// `mpirun` as root (CI runs as root) with more ranks than cores allowed.
fn mpirun(dir: &TempDir) -> Command {
    let mut command = Command::new("mpirun");
    command
        .current_dir(dir.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe"]);
    command
}

fn finished(mut command: Command, what: &str) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot start it ({e}). These tests need Open MPI's mpirun: apt-get install \
             openmpi-bin libopenmpi-dev libclang-dev"
        )
    })
}

fn succeeded(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A small LSTM on the adding task: 20 Adam steps with clipping, checkpoint and log written.
fn train_args(device: &str, batch: usize, save: &str) -> Vec<String> {
    train_steps(device, batch, save, 20)
}

fn train_steps(device: &str, batch: usize, save: &str, steps: u64) -> Vec<String> {
    let args = format!(
        "train --device {device} --task adding --seq-len 17 --hidden 17 --batch {batch} \
         --steps {steps} --clip 0.5 --lr 0.01 --eval-every 10 --save {save} --log {save}.csv"
    );
    args.split(' ').map(String::from).collect()
}

fn two_ranks(dir: &TempDir, device: &str, save: &str) {
    let mut command = mpirun(dir);
    command
        .args(["-n", "2", BIN])
        .args(train_args(device, 16, save));
    command.args(["--distributed", "mpi"]);
    succeeded(finished(command, "mpirun -n 2"), "2 ranks");
}

fn one_process(dir: &TempDir, device: &str, save: &str) {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .args(train_args(device, 32, save));
    succeeded(finished(command, "one process"), "one process");
}

fn params(path: &Path) -> Params<f32> {
    checkpoint::load(path, &LoadOverrides::default())
        .unwrap()
        .params
}

/// The last log row's training loss.
fn last_loss(path: &Path) -> f32 {
    let text = std::fs::read_to_string(path).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|c| *c == "loss")
        .expect("a loss column");
    let last: Vec<&str> = text.lines().last().unwrap().split(',').collect();
    last[column].parse().unwrap()
}

fn matches_one_process(device: &str) {
    let dir = TempDir::new(&format!("mpi-equal-{device}"));
    two_ranks(&dir, device, "two.safetensors");
    one_process(&dir, device, "one.safetensors");
    let what = format!("{device} engine");
    let two = params(&dir.join("two.safetensors"));
    assert_params_close(&two, &params(&dir.join("one.safetensors")), 1e-5, &what);
    let (two, one) = (
        last_loss(&dir.join("two.safetensors.csv")),
        last_loss(&dir.join("one.safetensors.csv")),
    );
    assert!(
        ((two - one) / one).abs() < 1e-5,
        "{what}: loss {two} on 2 ranks, {one} on one"
    );
}

#[test]
fn two_ranks_train_as_one_process_on_the_cpu_engine() {
    matches_one_process("cpu");
}

#[test]
fn two_ranks_train_as_one_process_on_the_gpu() {
    matches_one_process("gpu");
}

/// Two identical 2-rank runs write the same bytes; the checkpoint resumes on 1 rank.
#[test]
fn two_rank_runs_are_bit_identical_and_resume_on_one_rank() {
    let dir = TempDir::new("mpi-identical");
    two_ranks(&dir, "cpu", "a.safetensors");
    two_ranks(&dir, "cpu", "b.safetensors");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    assert!(
        read("a.safetensors") == read("b.safetensors"),
        "two runs differ"
    );
    let mut command = Command::new(BIN);
    let args = train_steps("cpu", 32, "resumed.safetensors", 30);
    command
        .current_dir(dir.path())
        .args(args)
        .args(["--load", "a.safetensors"]);
    let stdout = succeeded(finished(command, "resume"), "resume on 1 rank");
    assert!(stdout.contains("resuming at step 20"), "{stdout}");
    let resumed = checkpoint::load(&dir.join("resumed.safetensors"), &LoadOverrides::default());
    assert_eq!(
        resumed.unwrap().metadata.get("step").map(String::as_str),
        Some("30")
    );
}

fn refused(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: exit 0\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: a panic\n{stderr}");
    stderr
}

#[test]
fn outside_mpirun_and_ranks_started_differently_are_refused() {
    let dir = TempDir::new("mpi-refused");
    let mut alone = Command::new(BIN);
    alone
        .current_dir(dir.path())
        .args(["train", "--distributed", "mpi", "--device", "cpu"]);
    let stderr = refused(finished(alone, "outside mpirun"), "outside mpirun");
    assert!(stderr.contains("runs under an MPI launcher"), "{stderr}");

    let rank = |hidden: &str| {
        format!("-n 1 {BIN} train --distributed mpi --device cpu --seq-len 5 --steps 2 --hidden {hidden}")
    };
    let mut command = mpirun(&dir);
    command.args(format!("{} : {}", rank("8"), rank("16")).split(' '));
    let stderr = refused(
        finished(command, "two commands"),
        "ranks started differently",
    );
    assert!(
        stderr.contains("--hidden is 8 on rank 0 and 16 on rank 1"),
        "{stderr}"
    );
}

/// A long run in the background, started once its log has a row (training is under way).
fn long_run(dir: &TempDir, log: &str) -> Child {
    let mut command = mpirun(dir);
    command.args([
        "-n",
        "2",
        BIN,
        "train",
        "--distributed",
        "mpi",
        "--device",
        "cpu",
    ]);
    command.args([
        "--seq-len",
        "30",
        "--hidden",
        "32",
        "--batch",
        "8",
        "--steps",
        "100000000",
    ]);
    command.args([
        "--eval-every",
        "1000000",
        "--save",
        "long.safetensors",
        "--log",
        log,
    ]);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = child.expect("mpirun starts (apt-get install openmpi-bin)");
    let started = Instant::now();
    while std::fs::read_to_string(dir.join(log)).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no training step in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Waits for `child` at most `limit`; its output.
fn ended_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().ok();
            panic!("{what}: mpirun still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The pid of rank `rank` among the processes whose command line names `tag`.
fn rank_pid(tag: &str, rank: usize) -> u32 {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    (std::fs::read_dir("/proc").unwrap().flatten())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let read =
                |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).replace('\0', " ");
            text(read("cmdline")).contains(tag) && text(read("environ")).contains(&wanted)
        })
        .unwrap_or_else(|| panic!("no rank {rank} running with '{tag}'"))
}

#[test]
fn a_killed_rank_stops_the_job_within_seconds() {
    let dir = TempDir::new("mpi-killed");
    let log = format!("killed-{}.csv", std::process::id());
    let child = long_run(&dir, &log);
    let pid = rank_pid(&log, 1);
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let out = ended_within(child, Duration::from_secs(20), "rank 1 killed");
    let stderr = refused(out, "rank 1 killed");
    assert!(
        stderr.contains("rank 1") && stderr.contains("signal 9"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_every_rank_after_one_step_and_saves_once() {
    let dir = TempDir::new("mpi-sigterm");
    let child = long_run(&dir, "term.csv");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = ended_within(child, Duration::from_secs(20), "SIGTERM");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("interrupted: stopped after the current step"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("model saved to").count(), 1, "{stdout}");
    let saved = checkpoint::load(&dir.join("long.safetensors"), &LoadOverrides::default());
    let step: u64 = saved.unwrap().metadata["step"].parse().unwrap();
    assert!(step >= 1, "saved at step {step}");
}
