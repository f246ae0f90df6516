//! The training loop end to end on the CPU engine (no adapter needed): a pinned loss curve,
//! resume from a checkpoint, a clean stop on divergence, Ctrl-C. The command line's answers to
//! bad options are in `bad_input.rs`.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::init::{initialize, InitConfig};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, Task};
use rnn_wgpu::train::{self, DataSource, Engine, Event, TrainOptions};
use rnn_wgpu::{Activation, Cell, Error, ModelConfig, Params};
use std::path::PathBuf;
use std::process::Command;

mod common;
use common::TempDir;

fn adding_lstm(seq_len: usize, hidden: usize) -> (Adding, ModelConfig) {
    let task = Adding::new(seq_len).unwrap();
    let config = task
        .spec()
        .model_config(Cell::Lstm, Activation::Tanh, hidden);
    (task, config)
}

fn options(steps: u64, eval_every: u64, save: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        eval_every,
        save,
        ..TrainOptions::new(steps, 8)
    }
}

/// Runs `steps` and returns every step's loss.
fn losses(
    engine: &mut Engine,
    data: &mut DataSource,
    config: &ModelConfig,
    opts: &TrainOptions,
) -> Vec<f32> {
    let mut seen = Vec::new();
    train::train(engine, data, config, opts, &mut |event| {
        if let Event::Step { loss, .. } = event {
            seen.push(loss)
        }
    })
    .unwrap();
    seen
}

fn new_engine(config: &ModelConfig, optimizer: OptimizerConfig) -> Engine<'static> {
    let params = initialize(
        config,
        &InitConfig::default(),
        &mut StdRng::seed_from_u64(11),
    )
    .unwrap();
    Engine::new(None, *config, &params, optimizer).unwrap()
}

/// Recorded from this code at this commit (CPU engine, f32): adding T=12, LSTM H=9, batch 8,
/// Adam lr 1e-2, seed 5. A change to the loop, the data stream, the initialisation or the
/// mathematics moves these numbers.
#[test]
fn five_steps_of_loss_are_pinned() {
    let (task, config) = adding_lstm(12, 9);
    let mut optimizer = OptimizerConfig::new(OptimizerKind::adam());
    optimizer.lr = 1e-2;
    let mut engine = new_engine(&config, optimizer);
    let mut data = DataSource::from_task(Box::new(task), 5);
    let got = losses(&mut engine, &mut data, &config, &options(5, 100, None));
    for (step, (g, p)) in got.iter().zip(PINNED).enumerate() {
        assert!(
            ((g - p) / p).abs() < 1e-5,
            "step {}: loss {g} differs from the pinned {p}; all: {got:?}",
            step + 1
        );
    }
    assert_eq!(got.len(), 5);
}

const PINNED: [f32; 5] = [0.7855462, 0.72641003, 0.6392661, 0.8357983, 0.69123507];

/// Six steps in one go, and three + save + load + three more: the same parameters bit for bit
/// (the optimizer state and the data stream's position travel with the checkpoint).
#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    let dir = TempDir::new("train-resume");
    let (task, config) = adding_lstm(7, 5);
    let mut optimizer = OptimizerConfig::new(OptimizerKind::rmsprop());
    optimizer.clip = Some(0.5);

    let mut straight = new_engine(&config, optimizer);
    let mut data = DataSource::from_task(Box::new(task.clone()), 3);
    losses(&mut straight, &mut data, &config, &options(6, 100, None));

    let saved = dir.join("half.safetensors");
    let mut first = new_engine(&config, optimizer);
    let mut data = DataSource::from_task(Box::new(task.clone()), 3);
    losses(
        &mut first,
        &mut data,
        &config,
        &options(3, 100, Some(saved.clone())),
    );
    let checkpoint = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    assert_eq!(
        checkpoint.metadata.get("step").map(String::as_str),
        Some("3")
    );
    let mut second = Engine::new(None, config, &checkpoint.params, optimizer).unwrap();
    assert_eq!(train::resume(&mut second, &checkpoint).unwrap(), 3);
    let mut data = DataSource::from_task(Box::new(task), 3);
    let rest = losses(&mut second, &mut data, &config, &options(6, 100, None));
    assert_eq!(rest.len(), 3, "steps 4..=6");

    let (a, b): (Params<f32>, Params<f32>) = (straight.params().unwrap(), second.params().unwrap());
    for ((name, x), (_, y)) in a.tensors().into_iter().zip(b.tensors()) {
        assert!(
            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} differs after resuming"
        );
    }
}

/// SGD at lr 1e6 without clipping on a ReLU RNN blows up within a few steps; the loop stops
/// with the step and the last finite norm, and the checkpoint written before is intact.
#[test]
fn divergence_stops_cleanly_and_keeps_the_last_good_checkpoint() {
    let dir = TempDir::new("train-diverge");
    let task = Adding::new(10).unwrap();
    let config = task.spec().model_config(Cell::Rnn, Activation::Relu, 16);
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 1e6;
    let mut engine = new_engine(&config, optimizer);
    let mut data = DataSource::from_task(Box::new(task), 1);
    let saved = dir.join("model.safetensors");
    let err = train::train(
        &mut engine,
        &mut data,
        &config,
        &options(200, 1, Some(saved.clone())),
        &mut |_| {},
    )
    .err()
    .expect("lr 1e6 must diverge");
    let Error::Diverged {
        step,
        last_finite,
        checkpoint,
        ..
    } = &err
    else {
        panic!("expected Error::Diverged, got {err}");
    };
    let message = err.to_string();
    assert!(message.contains(&format!("step {step}")), "{message}");
    assert!(message.contains("--clip"), "{message}");
    let (finite_step, _) = last_finite.expect("the first step is finite");
    assert_eq!(finite_step, step - 1);
    assert_eq!(checkpoint.as_deref(), Some(saved.to_str().unwrap()));
    let kept = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    assert_eq!(kept.metadata["step"], finite_step.to_string());
    assert!(kept
        .params
        .tensors()
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
}

#[test]
fn adding_batches_use_the_task_spec() {
    // the engine and the task agree on shapes: one step runs
    let (task, config) = adding_lstm(4, 3);
    let batch = task.batch(2, &mut StdRng::seed_from_u64(0));
    let mut engine = new_engine(&config, OptimizerConfig::new(OptimizerKind::adam()));
    assert!(
        engine
            .step(&batch, true)
            .unwrap()
            .grad_norm_h
            .unwrap()
            .len()
            == 4
    );
}

#[test]
fn sampling_is_seeded_and_stays_in_the_vocabulary() {
    use rnn_wgpu::internals::sample::sample_text;
    use rnn_wgpu::tasks::Text;
    let text = Text::from_bytes("inline", b"abracadabra, said the bat", 8).unwrap();
    let vocabulary = text.vocabulary().clone();
    let config = text.spec().model_config(Cell::Lstm, Activation::Tanh, 6);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(2));
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        sample_text(&config, &params, &vocabulary, b"abra", 40, 1.0, &mut rng).unwrap()
    };
    let first = draw(7);
    assert_eq!(first.len(), 40);
    assert_eq!(first, draw(7), "same seed, same text");
    assert_ne!(first, draw(8), "another seed, other text");
    assert!(first.iter().all(|b| vocabulary.class_of(*b).is_some()));
    let mut rng = StdRng::seed_from_u64(0);
    let err = sample_text(&config, &params, &vocabulary, b"xyz", 5, 1.0, &mut rng).unwrap_err();
    assert!(err.to_string().contains('x'), "{err}");
}

/// `sample` streams each byte as it is drawn: a sample far too long to hold shows its start
/// at once, and a reader that stops reading (`| head`) ends it with a clean exit.
#[cfg(unix)]
#[test]
fn sample_streams_and_ends_quietly_when_the_reader_stops() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = TempDir::new("sample-stream");
    std::fs::write(
        dir.join("text.txt"),
        b"abracadabra, said the bat. ".repeat(8),
    )
    .unwrap();
    let trained = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .current_dir(dir.path())
        .args([
            "train", "--device", "cpu", "--task", "text", "--text", "text.txt",
        ])
        .args([
            "--seq-len",
            "8",
            "--hidden",
            "6",
            "--batch",
            "4",
            "--steps",
            "2",
        ])
        .args(["--save", "model.safetensors"])
        .output()
        .unwrap();
    assert!(trained.status.success(), "{trained:?}");
    // 10^11 bytes: 100 GB held whole, hours to draw.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .current_dir(dir.path())
        .args(["sample", "--model", "model.safetensors", "--prime", "abra"])
        .args(["--length", "100000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut start = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut start)
        .unwrap();
    assert!(
        start.starts_with(b"abra"),
        "{:?}",
        String::from_utf8_lossy(&start)
    );
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ctrl-C (SIGINT) during `train` stops after the current step, saves a final checkpoint and
/// exits normally.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_final_checkpoint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = TempDir::new("train-sigint");
    let saved = dir.join("model.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args([
            "train",
            "--device",
            "cpu",
            "--task",
            "adding",
            "--seq-len",
            "20",
            "--hidden",
            "8",
            "--batch",
            "4",
            "--steps",
            "100000000",
            "--eval-every",
            "100000000",
            "--save",
        ])
        .arg(&saved)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // the first step is always evaluated and printed: training is under way after it
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("step"))
        .expect("a first step line");
    assert!(first.contains("step      1"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}; output {rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let kept = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    let step: u64 = kept.metadata["step"].parse().unwrap();
    assert!(
        step > 1,
        "the final checkpoint holds the steps taken after the first: {step}"
    );
}

/// A stacked bidirectional LSTM through the command line: `train` logs one norm row per cell
/// (`h_l0`, `h_l0_reverse`, ...) and saves the model, and `grad` on it writes the norms as
/// [L*D, T].
#[test]
fn a_stacked_bidirectional_model_reports_norms_per_cell() {
    let dir = TempDir::new("stacked-cli");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "train",
        "--device",
        "cpu",
        "--task",
        "adding",
        "--seq-len",
        "7",
        "--hidden",
        "5",
        "--layers",
        "2",
        "--bidirectional",
        "--dropout",
        "0.3",
        "--batch",
        "3",
        "--steps",
        "2",
        "--grad-norms",
        "norms.csv",
        "--grad-norms-every",
        "1",
        "--save",
        "m.safetensors",
    ]);
    let norms = std::fs::read_to_string(dir.join("norms.csv")).unwrap();
    let kinds: Vec<(&str, usize)> = norms
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[1], fields.len() - 2)
        })
        .collect();
    let cells = ["l0", "l0_reverse", "l1", "l1_reverse"];
    let expected: Vec<(String, usize)> = (0..2)
        .flat_map(|_| {
            ["h", "c"]
                .iter()
                .flat_map(|k| cells.iter().map(move |c| (format!("{k}_{c}"), 7)))
        })
        .collect();
    let kinds: Vec<(String, usize)> = kinds.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    assert_eq!(kinds, expected);

    let model = checkpoint::load(&dir.join("m.safetensors"), &LoadOverrides::default()).unwrap();
    assert_eq!((model.config.layers, model.config.bidirectional), (2, true));
    assert_eq!(model.config.dropout, 0.3);
    let x = ndarray::Array3::<f32>::from_shape_fn((7, 3, 2), |(t, b, i)| {
        ((t * 7 + b * 3 + i) % 5) as f32 / 5.0
    });
    let y = ndarray::Array2::<f32>::from_shape_fn((3, 1), |(b, _)| b as f32 / 2.0);
    use ndarray_npy::WriteNpyExt;
    x.write_npy(std::fs::File::create(dir.join("x.npy")).unwrap())
        .unwrap();
    y.write_npy(std::fs::File::create(dir.join("y.npy")).unwrap())
        .unwrap();
    run(&[
        "grad",
        "--device",
        "cpu",
        "--model",
        "m.safetensors",
        "--input",
        "x.npy",
        "--target",
        "y.npy",
        "--out",
        "g.safetensors",
    ]);
    let grads = checkpoint::load(&dir.join("g.safetensors"), &LoadOverrides::default()).unwrap();
    for name in ["grad_norm.h", "grad_norm.c"] {
        let (_, shape, values) = grads.tensor(name).unwrap();
        assert_eq!(shape, &vec![4, 7], "{name}");
        assert!(values.iter().all(|v| v.is_finite() && *v > 0.0), "{name}");
    }
}

/// `--device auto` (the default of train, vanishing, grad and bench) names the engine it chose
/// and why on the first line, as `auto_device::choose` decides from this machine's adapters: the
/// CPU engine where llvmpipe is the only one (CI), the GPU engine where a real GPU is, or where
/// WGPU_ADAPTER_NAME names an adapter; `--device gpu` runs on llvmpipe all the same. Without
/// XDG_RUNTIME_DIR, stderr carries no complaint of the Vulkan drivers about it.
#[test]
fn auto_device_says_what_it_chose_and_stderr_stays_clean() {
    let dir = TempDir::new("auto-device");
    let vanishing = |device: &str, named: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"));
        command
            .current_dir(dir.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("WGPU_ADAPTER_NAME")
            .args([
                "vanishing",
                "--seq-len",
                "6",
                "--hidden",
                "3",
                "--batch",
                "2",
            ])
            .args(["--device", device]);
        if let Some(named) = named {
            command.env("WGPU_ADAPTER_NAME", named);
        }
        let out = command.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{device}: {stdout}{stderr}");
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
        stdout
    };
    let adapters = rnn_wgpu::internals::gpu::adapter_kinds();
    let expected = rnn_wgpu::internals::auto_device::choose(&adapters, None);
    let stdout = vanishing("auto", None);
    assert_eq!(
        stdout.lines().next(),
        Some(&*expected.to_string()),
        "{stdout}"
    );
    // auto's line is the only one that names the device
    let device_lines = stdout.lines().filter(|l| l.starts_with("device:")).count();
    assert_eq!(device_lines, 1, "{stdout}");
    if let Some(first) = adapters.first() {
        let stdout = vanishing("auto", Some(&first.name));
        let want = format!("device: gpu (WGPU_ADAPTER_NAME='{}')", first.name);
        assert_eq!(stdout.lines().next(), Some(&*want), "{stdout}");
        assert!(vanishing("gpu", None).contains("device: gpu: "));
    }
    // an explicit device says nothing of auto
    let stdout = vanishing("cpu", None);
    assert!(
        stdout.starts_with("device: cpu (reference, f32, "),
        "{stdout}"
    );
}

/// `train --plot FILE.svg` writes the training and validation loss and the gradient norm
/// against the step at every evaluation: after the evaluations at steps 1, 20, 40 and 50 the
/// chart has the three curves of 4 points each, the axis running to the last step.
#[test]
fn train_plots_its_losses_and_gradient_norm() {
    let dir = TempDir::new("train-plot");
    let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .current_dir(dir.path())
        .args([
            "train",
            "--device",
            "cpu",
            "--steps",
            "50",
            "--eval-every",
            "20",
        ])
        .args([
            "--hidden",
            "6",
            "--batch",
            "4",
            "--seq-len",
            "8",
            "--plot",
            "curve.svg",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(dir.join("curve.svg")).unwrap();
    for label in [
        "training loss",
        "validation loss",
        "gradient norm",
        ">step<",
    ] {
        assert!(svg.contains(label), "{label}: {svg}");
    }
    let lines: Vec<&str> = svg.lines().filter(|l| l.contains("<polyline")).collect();
    assert_eq!(lines.len(), 3, "{svg}");
    for line in lines {
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 4, "4 points: {line}");
    }
    // the x axis ends at the last evaluation, step 50
    assert!(svg.contains(">50</text>"), "{svg}");
}

/// The CPU engine splits the batch, the long products and the zero fills over its threads so
/// that each element is computed as on one thread, and adds the per-step norms one sequence at a
/// time in batch order: three steps of a stacked bidirectional model of each cell save the same
/// checkpoint and write the same gradient norms on 1, 2 and 3 threads (`RNN_WGPU_CPU_THREADS`).
/// The sizes make every split happen: 40 sequences of 60 steps split three ways, and the input
/// projection's [T*B, 4H] output is past the size where its product takes more threads.
#[test]
fn the_cpu_engine_gives_the_same_bits_on_any_thread_count() {
    let dir = TempDir::new("cpu-threads");
    for cell in ["lstm", "gru", "rnn"] {
        let outputs: Vec<[Vec<u8>; 2]> = (1..=3)
            .map(|threads| {
                let [model, norms] = ["ckpt", "csv"].map(|ext| format!("{cell}-{threads}.{ext}"));
                let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
                    .current_dir(dir.path())
                    .env("RNN_WGPU_CPU_THREADS", threads.to_string())
                    .args([
                        "train", "--device", "cpu", "--task", "adding", "--cell", cell,
                    ])
                    .args(["--seq-len", "60", "--hidden", "48", "--batch", "40"])
                    .args(["--layers", "2", "--bidirectional", "--steps", "3"])
                    .args([
                        "--eval-every",
                        "3",
                        "--save",
                        &model,
                        "--grad-norms",
                        &norms,
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{cell} on {threads} threads: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                [model, norms].map(|file| std::fs::read(dir.path().join(file)).unwrap())
            })
            .collect();
        for (threads, output) in outputs.iter().enumerate().skip(1) {
            for (what, (bytes, one_thread)) in ["checkpoint", "gradient norms"]
                .into_iter()
                .zip(output.iter().zip(&outputs[0]))
            {
                let first_difference = bytes.iter().zip(one_thread).position(|(a, b)| a != b);
                assert!(
                    bytes.len() == one_thread.len() && first_difference.is_none(),
                    "{cell}: the {what} after 3 steps on {} threads differ from 1 thread's \
                     (lengths {} and {}, first differing byte {first_difference:?})",
                    threads + 1,
                    bytes.len(),
                    one_thread.len()
                );
            }
        }
    }
}
