//! `rnn-wgpu train`: parses options into a task, a model, an optimizer and a device, then runs
//! `rnn_wgpu::train::train` with a progress bar.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::checkpoint::{self, Checkpoint, LoadOverrides};
use rnn_wgpu::init::{initialize, InitConfig, Scheme};
use rnn_wgpu::internals::plan::{check_host_memory, check_host_pass, HostPass, MemoryPlan};
use rnn_wgpu::internals::plot::{training_chart, TrainPoint};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind, Schedule};
use rnn_wgpu::tasks::{
    bits_per_char, Adding, CopyMemory, CsvFormat, CsvTargets, DataSpec, Dataset, Text,
};
use rnn_wgpu::train::{self, DataSource, Engine, Event, Record, TrainOptions};
use rnn_wgpu::{Activation, Cell, Gpu, ModelConfig, Params};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::distributed::{Distributed, Job};
use super::engine::{Device, GpuArgs, Say};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskName {
    Adding,
    Copy,
    Text,
    Npy,
    Csv,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// adding, copy, text (--text FILE), npy (--inputs/--targets) or csv (--csv FILE).
    #[arg(long, value_enum, default_value = "adding")]
    pub task: TaskName,
    /// Steps per sequence (T; default 100); for copy, the delay between the symbols and their
    /// recall. Not for --task npy, whose data says it.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// The text file of --task text (any bytes; the vocabulary is the bytes it contains).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Inputs [N, T, I] of --task npy.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Targets of --task npy: [N] or [N, T] classes, [N, O] or [N, T, O] values.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Each sample's length for --task npy or csv, integers [N] in 1..=T: the steps after it
    /// are padding (not scored, state held, as PyTorch's packed sequences).
    #[arg(long)]
    pub lengths: Option<PathBuf>,
    /// The file of --task csv: one sequence per line, T*I inputs then the targets.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// What a CSV line ends with: class (the default), values:O, step-classes, step-values:O.
    #[arg(long)]
    pub csv_targets: Option<String>,
    /// Number of classes for class targets (default: largest class + 1).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Fraction of a dataset (--task npy or csv) held out for validation (default 0.1).
    #[arg(long)]
    pub validation_fraction: Option<f64>,

    /// rnn, lstm (the default) or gru; with --load, the checkpoint's (given, it must match).
    #[arg(long)]
    pub cell: Option<Cell>,
    /// RNN nonlinearity: tanh (the default), sigmoid, relu.
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Hidden units (default 128).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Stacked recurrent layers (PyTorch's num_layers; default 1).
    #[arg(long)]
    pub layers: Option<usize>,
    /// A reverse-time pass per layer, outputs concatenated (PyTorch's bidirectional).
    #[arg(long)]
    pub bidirectional: bool,
    /// Dropout probability on the inputs of layers 2..L in training (PyTorch's dropout).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// pytorch (the default), glorot, orthogonal, identity.
    #[arg(long)]
    pub init: Option<Scheme>,
    /// Rescale W_hh to this largest singular value after initialising.
    #[arg(long)]
    pub hh_scale: Option<f64>,
    /// LSTM forget-gate bias (total of b_ih and b_hh).
    #[arg(long)]
    pub forget_bias: Option<f64>,

    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Total optimizer updates (a resumed run counts the saved ones).
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// sgd, adam, adamw, rmsprop.
    #[arg(long, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate (default: the optimizer's PyTorch default).
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD or RMSprop momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Weight decay (coupled L2; decoupled for adamw).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// constant, warmup:W, or cosine:W:TOTAL:MIN_LR.
    #[arg(long, default_value = "constant")]
    pub schedule: Schedule,
    /// Clip the global gradient 2-norm to this value.
    #[arg(long)]
    pub clip: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto (a GPU where there is one, else the CPU engine), gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Validate, log and checkpoint every K steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Log every evaluated step: CSV, or JSON lines for .jsonl.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Checkpoint (safetensors, PyTorch names) written atomically every K steps and at the end.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Start from this checkpoint; with optimizer state in it, resume where it stopped.
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// An SVG of the training and validation loss and the gradient norm against the step,
    /// rewritten (atomically) at each evaluation.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Append per-step gradient norms ||dE/dh_t|| (and ||dE/dc_t||) every --grad-norms-every steps.
    #[arg(long)]
    pub grad_norms: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub grad_norms_every: u64,
    #[command(flatten)]
    pub engine: GpuArgs,
    /// Truncated BPTT: one update per chunk of K steps, the state carried from chunk to chunk
    /// with gradients stopped at the borders. --task text then reads the file as --batch
    /// contiguous streams; other tasks cut each --seq-len batch into chunks.
    #[arg(long)]
    pub tbptt: Option<usize>,
    /// Print the GPU memory plan for this configuration and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    /// mpi: run as one rank of `mpirun -n N rnn-wgpu train --distributed mpi ...` (a build with
    /// --features mpi): --batch sequences per rank, gradients summed over the ranks in a fixed
    /// order, rank 0 alone writing files.
    #[arg(long, value_enum, default_value = "none")]
    pub distributed: Distributed,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let job = super::distributed::join(args.distributed)?;
    let result = run_rank(args, job.as_ref());
    super::distributed::finish(job, result)
}

/// Prints on rank 0 only (every rank of a one-process run is rank 0).
macro_rules! say {
    ($lead:expr, $($arg:tt)*) => {
        if $lead {
            println!($($arg)*);
        }
    };
}

fn run_rank(args: TrainArgs, job: Option<&Job>) -> Result<()> {
    let lead = job.is_none_or(|j| j.rank() == 0);
    check_args(&args, job)?;
    let (mut data, mut metadata) = data_source(&args)?;
    let optimizer = optimizer_config(&args)?;
    let start = starting_model(&args, &data.spec(), optimizer)?;
    let config = start.config;
    let gpu = open_device(&args, job, lead, (&config, data.seq_len()))?;
    let mut engine = Engine::new(gpu.as_ref(), config, &start.params, optimizer)?;
    if let Some(job) = job {
        super::distributed::check_same_start(job, gpu.as_ref())?;
    }
    engine.set_plan_options(args.engine.options());
    engine.set_precision(args.engine.precision);
    engine.set_recurrence(args.engine.recurrence);
    engine.set_dropout_seed(args.seed);
    // Plan before anything runs: a configuration that cannot fit stops here, naming why.
    let plan = engine.memory_plan(data.seq_len(), args.batch)?;
    if args.dry_run {
        println!("device: {}", engine.device_name());
        print!("{}", plan.expect("a GPU engine plans").describe());
        return Ok(());
    }
    // Files are rank 0's: the others train the same replica and write nothing.
    let args = match lead {
        true => args,
        false => TrainArgs {
            save: None,
            log: None,
            grad_norms: None,
            plot: None,
            ..args
        },
    };
    if let Some(checkpoint) = &start.loaded {
        let steps = train::resume(&mut engine, checkpoint)
            .with_context(|| "restoring the optimizer state from --load")?;
        if steps > 0 {
            say!(
                lead,
                "resuming at step {steps} with the saved optimizer state"
            );
        }
    }
    metadata.insert("optimizer".into(), optimizer.kind.name().into());
    metadata.insert("seed".into(), args.seed.to_string());
    let baseline = data.baseline();
    if lead {
        describe_run(&args, job, &engine, plan.as_ref(), &config, &optimizer);
        if let Some((value, description)) = &baseline {
            println!("baseline loss {value:.4}: {description}");
        }
    }
    let mut progress = Progress::new(&args, lead, &config, baseline.map(|b| b.0));
    progress.bar.set_position(engine.optimizer_state()?.0);
    let options = TrainOptions {
        steps: args.steps,
        batch: args.batch,
        eval_every: args.eval_every,
        log: args.log.clone(),
        save: args.save.clone(),
        grad_norms: args.grad_norms.clone(),
        grad_norms_every: args.grad_norms_every,
        metadata,
        interrupt: Some(interrupt_flag()?),
        tbptt: args.tbptt,
        group: job.map(|j| j.group.clone()),
    };
    let summary = train::train(&mut engine, &mut data, &config, &options, &mut |event| {
        progress.show(event)
    });
    progress.bar.finish_and_clear();
    let summary = summary?;
    if summary.interrupted {
        say!(lead, "interrupted: stopped after the current step");
    }
    say!(
        lead,
        "{} steps in {:.1} s{}",
        summary.steps_taken,
        summary.elapsed_seconds,
        args.save.as_ref().map_or(String::new(), |p| format!(
            "; model saved to {}",
            p.display()
        ))
    );
    Ok(())
}

/// The GPU to train on, or None for the CPU engine (whose threads then share the cores with
/// the machine's other ranks), once `config`'s pass over `seq_len` steps is known to fit this
/// machine's memory. `--dry-run` plans GPU memory, so it wants a GPU whatever auto would pick.
fn open_device(
    args: &TrainArgs,
    job: Option<&Job>,
    lead: bool,
    (config, seq_len): (&ModelConfig, usize),
) -> Result<Option<Gpu>> {
    let device = match (args.device, args.dry_run) {
        (Device::Auto, true) => Device::Gpu,
        (device, _) => super::engine::resolve_device_saying(
            device,
            if lead { Say::Stdout } else { Say::Nothing },
        ),
    };
    if args.dry_run && device == Device::Cpu {
        bail!("--dry-run plans GPU memory; it needs --device gpu");
    }
    if device == Device::Gpu {
        return Ok(Some(super::engine::open_gpu_for(
            job.map(|j| j.local_rank),
        )?));
    }
    // The CPU engine keeps a pass's activations in this machine's memory: one chunk's under
    // truncated BPTT.
    const FIX: &str = "use a smaller --batch, --seq-len (or --tbptt) or --hidden";
    let steps = args.tbptt.map_or(seq_len, |k| k.min(seq_len));
    let pass = HostPass::ForwardBackward;
    check_host_pass(config, (steps, args.batch), pass, 4, FIX)?;
    if let Some(job) = job {
        rnn_wgpu::cpu::parallel::share_cores(job.local_ranks);
    }
    Ok(None)
}

/// Refuses, before any work, options that cannot run: zero counts, options the task does not
/// read, and output paths that cannot be written (a bad path should not cost a training step,
/// or leave a log behind).
fn check_args(args: &TrainArgs, job: Option<&Job>) -> Result<()> {
    if job.is_some() && args.dry_run {
        bail!("--dry-run plans one process's GPU memory; run it without --distributed");
    }
    check_task_options(args)?;
    for (flag, value) in [
        ("--hidden", args.hidden.unwrap_or(DEFAULT_HIDDEN) as u64),
        ("--layers", args.layers.unwrap_or(1) as u64),
        ("--batch", args.batch as u64),
        ("--steps", args.steps),
        ("--eval-every", args.eval_every),
        ("--grad-norms-every", args.grad_norms_every),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1, got 0");
        }
    }
    for (flag, path) in [
        ("--save", &args.save),
        ("--log", &args.log),
        ("--grad-norms", &args.grad_norms),
        ("--plot", &args.plot),
    ] {
        if let Some(path) = path {
            rnn_wgpu::internals::fsio::check_writable(path).context(flag)?;
        }
    }
    Ok(())
}

/// The model training starts from: the checkpoint `--load` names (its architecture, checked
/// against the data and the options given), or a new one the options describe.
struct StartingModel {
    config: ModelConfig,
    params: Params<f32>,
    /// The checkpoint read, for its optimizer state.
    loaded: Option<Checkpoint>,
}

fn starting_model(
    args: &TrainArgs,
    spec: &DataSpec,
    optimizer: OptimizerConfig,
) -> Result<StartingModel> {
    let config = ModelConfig {
        layers: args.layers.unwrap_or(1),
        bidirectional: args.bidirectional,
        dropout: args.dropout.unwrap_or(0.0),
        ..spec.model_config(
            args.cell.unwrap_or(Cell::Lstm),
            args.activation.unwrap_or(Activation::Tanh),
            args.hidden.unwrap_or(DEFAULT_HIDDEN),
        )
    };
    config.validate()?;
    if config.dropout > 0.0 && config.layers == 1 {
        eprintln!("warning: --dropout acts between layers; with --layers 1 it does nothing");
    }
    // Parameters, gradients, optimizer state, and the CPU engine's copy.
    let copies = 3 + optimizer.kind.state_names().len();
    check_host_memory(&config, copies)?;
    let Some(path) = &args.load else {
        let init = InitConfig {
            scheme: args.init.unwrap_or(Scheme::PyTorch),
            hh_scale: args.hh_scale,
            forget_bias: args.forget_bias,
        };
        let mut rng = StdRng::seed_from_u64(args.seed);
        let params = initialize(&config, &init, &mut rng)?;
        return Ok(StartingModel {
            config,
            params,
            loaded: None,
        });
    };
    let overrides = LoadOverrides {
        cell: None,
        activation: None,
        readout: Some(spec.readout),
        loss: Some(spec.loss),
        dropout: args.dropout,
    };
    let checkpoint = checkpoint::load(path, &overrides)?;
    let c = checkpoint.config;
    if (c.input_size, c.output_size) != (spec.input_size, spec.output_size) {
        bail!(
            "{}: the model takes {} inputs and gives {} outputs, but the data has {} and {}",
            path.display(),
            c.input_size,
            c.output_size,
            spec.input_size,
            spec.output_size
        );
    }
    check_against_checkpoint(args, path, &c)?;
    Ok(StartingModel {
        config: c,
        params: checkpoint.params.clone(),
        loaded: Some(checkpoint),
    })
}

/// The lines before training: the device (and ranks), the memory plan's first line, the
/// model, the task and the optimizer.
fn describe_run(
    args: &TrainArgs,
    job: Option<&Job>,
    engine: &Engine,
    plan: Option<&MemoryPlan>,
    config: &ModelConfig,
    optimizer: &OptimizerConfig,
) {
    println!("device: {}{}", engine.device_name(), ranks_text(job));
    if let Some(plan) = plan {
        println!(
            "{} ({} planned)",
            plan.describe().lines().next().unwrap_or_default(),
            rnn_wgpu::internals::plan::human_bytes(plan.total_bytes())
        );
    }
    println!(
        "task {:?}: {}, hidden {}, input {}, output {}, readout {}, loss {}; batch {}{}, {} steps, {} lr {}",
        args.task,
        model_text(config),
        config.hidden_size,
        config.input_size,
        config.output_size,
        config.readout,
        config.loss,
        args.batch,
        job.map_or(String::new(), |j| format!(" per rank x {} ranks", j.ranks())),
        args.steps,
        optimizer.kind.name(),
        optimizer.lr
    );
}

/// "rnn (tanh) x 2 layers (dropout 0.1), bidirectional", or just "lstm".
fn model_text(config: &ModelConfig) -> String {
    let mut text = match config.cell {
        Cell::Lstm | Cell::Gru => config.cell.to_string(),
        Cell::Rnn => format!("rnn ({})", config.activation),
    };
    if config.layers > 1 {
        text += &format!(" x {} layers", config.layers);
        if config.dropout > 0.0 {
            text += &format!(" (dropout {})", config.dropout);
        }
    }
    if config.bidirectional {
        text += ", bidirectional";
    }
    text
}

/// What training shows as it runs: the progress bar, a line per evaluation and per skipped
/// update (rank 0 only), and the `--plot` chart rewritten at each evaluation.
struct Progress {
    bar: ProgressBar,
    lead: bool,
    /// " (baseline 0.1667)" where the task has a baseline loss
    baseline: String,
    text_task: bool,
    /// sequences per second at the last evaluation
    rate: f64,
    plot: Option<PathBuf>,
    plot_title: String,
    curve: Vec<TrainPoint>,
}

impl Progress {
    fn new(args: &TrainArgs, lead: bool, config: &ModelConfig, baseline: Option<f32>) -> Progress {
        let bar = match lead {
            true => ProgressBar::new(args.steps),
            false => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta}]")
                .expect("a valid template"),
        );
        Progress {
            bar,
            lead,
            baseline: baseline.map_or(String::new(), |b| format!(" (baseline {b:.4})")),
            text_task: args.task == TaskName::Text,
            rate: 0.0,
            plot: args.plot.clone(),
            plot_title: format!(
                "{} {}, hidden {}: training",
                format!("{:?}", args.task).to_lowercase(),
                config.cell,
                config.hidden_size
            ),
            curve: Vec::new(),
        }
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::Step {
                step,
                loss,
                grad_norm,
            } => {
                self.bar.set_position(step);
                self.bar.set_message(format!(
                    "loss {loss:.4}{} |grad| {grad_norm:.3} {:.0} seq/s",
                    self.baseline, self.rate
                ));
            }
            Event::Evaluated(r) => self.evaluated(r),
            Event::Saved(_) => {}
            Event::Skipped { step, scale } => self.say(format!(
                "step {step:>6}  the f16 gradient overflowed: update skipped, loss scale now \
                 {scale}"
            )),
        }
    }

    fn evaluated(&mut self, r: &Record) {
        self.rate = r.sequences_per_second;
        let validation = r.validation_loss.map_or(String::new(), |v| {
            if self.text_task {
                format!("  validation {v:.4} ({:.3} bits/char)", bits_per_char(v))
            } else {
                format!("  validation {v:.4}")
            }
        });
        self.say(format!(
            "step {:>6}  loss {:.4}{validation}{}  |grad| {:.4}  lr {:.2e}  {:.0} seq/s  {:.1} s",
            r.step,
            r.loss,
            self.baseline,
            r.grad_norm,
            r.lr,
            r.sequences_per_second,
            r.elapsed_seconds
        ));
        let Some(path) = &self.plot else {
            return;
        };
        self.curve.push(TrainPoint {
            step: r.step,
            loss: r.loss as f64,
            validation: r.validation_loss.map(f64::from),
            grad_norm: r.grad_norm as f64,
        });
        let svg = training_chart(&self.plot_title, &self.curve);
        if let Err(e) = rnn_wgpu::internals::fsio::write_atomic(path, svg.as_bytes()) {
            self.say(format!("warning: --plot: {e}"));
        }
    }

    /// A line above the bar on rank 0; a hidden bar (output not a terminal) drops println, so
    /// then a plain one.
    fn say(&self, line: String) {
        match (self.lead, self.bar.is_hidden()) {
            (false, _) => {}
            (true, true) => println!("{line}"),
            (true, false) => self.bar.println(line),
        }
    }
}

/// ", rank 0 of 2 (MPI; 2 on this machine)" for a rank of a job.
fn ranks_text(job: Option<&Job>) -> String {
    job.map_or(String::new(), |j| {
        format!(
            "; rank 0 of {} (MPI; {} on this machine)",
            j.ranks(),
            j.local_ranks
        )
    })
}

/// A flag Ctrl-C (or SIGTERM, which mpirun forwards) sets, so training stops after the
/// current step and saves what it has.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

fn optimizer_config(args: &TrainArgs) -> Result<OptimizerConfig> {
    let kind = with_overrides(args.optimizer, args.momentum, args.weight_decay)?;
    let mut config = OptimizerConfig::new(kind);
    if let Some(lr) = args.lr {
        config.lr = lr;
    }
    config.schedule = args.schedule;
    config.clip = args.clip;
    config.validate()?;
    Ok(config)
}

fn with_overrides(
    kind: OptimizerKind,
    momentum_arg: Option<f32>,
    weight_decay_arg: Option<f32>,
) -> Result<OptimizerKind> {
    Ok(match kind {
        OptimizerKind::Sgd {
            momentum,
            weight_decay,
        } => OptimizerKind::Sgd {
            momentum: momentum_arg.unwrap_or(momentum),
            weight_decay: weight_decay_arg.unwrap_or(weight_decay),
        },
        OptimizerKind::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            if momentum_arg.is_some() {
                bail!("--momentum applies to sgd and rmsprop; adam has beta1");
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                eps,
                weight_decay: weight_decay_arg.unwrap_or(weight_decay),
            }
        }
        OptimizerKind::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            if momentum_arg.is_some() {
                bail!("--momentum applies to sgd and rmsprop; adamw has beta1");
            }
            OptimizerKind::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay: weight_decay_arg.unwrap_or(weight_decay),
            }
        }
        OptimizerKind::RmsProp {
            alpha,
            eps,
            momentum,
        } => {
            if weight_decay_arg.is_some() {
                bail!("--weight-decay is not supported with rmsprop");
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum: momentum_arg.unwrap_or(momentum),
            }
        }
    })
}

const DEFAULT_HIDDEN: usize = 128;
const DEFAULT_SEQ_LEN: usize = 100;

/// Refuses an option the chosen task does not read, naming it: it would be ignored silently.
fn check_task_options(args: &TrainArgs) -> Result<()> {
    use TaskName::*;
    let task = args.task;
    let given: [(&str, bool, &[TaskName]); 9] = [
        (
            "--seq-len",
            args.seq_len.is_some(),
            &[Adding, Copy, Text, Csv],
        ),
        ("--text", args.text.is_some(), &[Text]),
        ("--inputs", args.inputs.is_some(), &[Npy]),
        ("--targets", args.targets.is_some(), &[Npy]),
        ("--csv", args.csv.is_some(), &[Csv]),
        ("--csv-targets", args.csv_targets.is_some(), &[Csv]),
        ("--classes", args.classes.is_some(), &[Npy, Csv]),
        ("--lengths", args.lengths.is_some(), &[Npy, Csv]),
        (
            "--validation-fraction",
            args.validation_fraction.is_some(),
            &[Npy, Csv],
        ),
    ];
    for (flag, set, tasks) in given {
        if set && !tasks.contains(&task) {
            let names: Vec<String> = tasks
                .iter()
                .map(|t| format!("{t:?}").to_lowercase())
                .collect();
            bail!(
                "{flag} does not apply to --task {}: it is read by --task {} only",
                format!("{task:?}").to_lowercase(),
                names.join(", ")
            );
        }
    }
    Ok(())
}

/// Refuses a model option that contradicts the checkpoint `--load` reads, naming both values:
/// the checkpoint's model is what trains, and a silently dropped option would mislead.
fn check_against_checkpoint(
    args: &TrainArgs,
    path: &std::path::Path,
    c: &ModelConfig,
) -> Result<()> {
    let given: [(&str, Option<String>, String); 5] = [
        (
            "--cell",
            args.cell.map(|v| v.to_string()),
            c.cell.to_string(),
        ),
        (
            "--activation",
            args.activation.map(|v| v.to_string()),
            c.activation.to_string(),
        ),
        (
            "--hidden",
            args.hidden.map(|v| v.to_string()),
            c.hidden_size.to_string(),
        ),
        (
            "--layers",
            args.layers.map(|v| v.to_string()),
            c.layers.to_string(),
        ),
        (
            "--bidirectional",
            args.bidirectional.then(|| "true".to_string()),
            c.bidirectional.to_string(),
        ),
    ];
    for (flag, option, saved) in given {
        if let Some(option) = option.filter(|o| *o != saved) {
            bail!(
                "{flag} {option} contradicts --load {}, whose model has {flag} {saved}; drop \
                 {flag} to train the saved model",
                path.display()
            );
        }
    }
    for (flag, set) in [
        ("--init", args.init.is_some()),
        ("--hh-scale", args.hh_scale.is_some()),
        ("--forget-bias", args.forget_bias.is_some()),
    ] {
        if set {
            bail!(
                "{flag} initialises a new model; --load {} brings its own weights",
                path.display()
            );
        }
    }
    Ok(())
}

/// The data and the metadata a checkpoint should carry to use the model with it again.
fn data_source(args: &TrainArgs) -> Result<(DataSource, BTreeMap<String, String>)> {
    let mut metadata = BTreeMap::new();
    let task_name = format!("{:?}", args.task).to_lowercase();
    metadata.insert("task".to_string(), task_name);
    let seq_len = args.seq_len.unwrap_or(DEFAULT_SEQ_LEN);
    let validation = args.validation_fraction.unwrap_or(0.1);
    if !matches!(args.task, TaskName::Npy) {
        metadata.insert("seq_len".to_string(), seq_len.to_string());
    }
    let need = |value: &Option<PathBuf>, flag: &str| -> Result<PathBuf> {
        value.clone().with_context(|| {
            format!(
                "--task {} needs {flag}",
                format!("{:?}", args.task).to_lowercase()
            )
        })
    };
    // Each sequence's length, for a padded dataset.
    let with_lengths = |dataset: Dataset| -> Result<Dataset> {
        let Some(path) = &args.lengths else {
            return Ok(dataset);
        };
        if args.tbptt.is_some() {
            bail!(
                "--tbptt cuts every sequence at the same steps, so it cannot train sequences of \
                 different lengths (--lengths); pad them to one length or drop --tbptt"
            );
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read lengths '{}'", path.display()))?;
        Ok(dataset.with_lengths_npy(&path.display().to_string(), &bytes)?)
    };
    let source = match args.task {
        TaskName::Adding => DataSource::from_task(Box::new(Adding::new(seq_len)?), args.seed),
        TaskName::Copy => DataSource::from_task(Box::new(CopyMemory::new(seq_len)?), args.seed),
        TaskName::Text => {
            let path = need(&args.text, "--text FILE")?;
            let text = Text::from_file(&path, seq_len)?;
            let symbols: Vec<String> = text
                .vocabulary()
                .symbols()
                .iter()
                .map(|b| b.to_string())
                .collect();
            metadata.insert("vocabulary".into(), symbols.join(","));
            metadata.insert("text".into(), path.display().to_string());
            DataSource::from_task(Box::new(text), args.seed)
        }
        TaskName::Npy => {
            let dataset = with_lengths(Dataset::from_npy(
                need(&args.inputs, "--inputs X.npy")?,
                need(&args.targets, "--targets Y.npy")?,
                args.classes,
            )?)?;
            DataSource::from_dataset(dataset, validation, args.batch, args.seed)?
        }
        TaskName::Csv => {
            let targets = parse_csv_targets(args.csv_targets.as_deref().unwrap_or("class"))?;
            let format = CsvFormat { seq_len, targets };
            let csv = need(&args.csv, "--csv FILE")?;
            let dataset = with_lengths(Dataset::from_csv(csv, format, args.classes)?)?;
            DataSource::from_dataset(dataset, validation, args.batch, args.seed)?
        }
    };
    Ok((source, metadata))
}

fn parse_csv_targets(text: &str) -> Result<CsvTargets> {
    let count = |s: &str| -> Result<usize> {
        s.parse::<usize>().ok().filter(|&n| n > 0).with_context(|| {
            format!("--csv-targets '{text}': the output count must be a positive integer")
        })
    };
    Ok(match text.split_once(':') {
        None if text == "class" => CsvTargets::Class,
        None if text == "step-classes" => CsvTargets::StepClasses,
        Some(("values", n)) => CsvTargets::Values(count(n)?),
        Some(("step-values", n)) => CsvTargets::StepValues(count(n)?),
        _ => {
            bail!("--csv-targets '{text}': expected class, values:O, step-classes or step-values:O")
        }
    })
}
