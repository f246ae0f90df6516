//! The training loop: batches from a `DataSource`, one `Engine` step each, validation every
//! K steps, a log of every evaluated step, per-step gradient norms on request, checkpoints
//! written atomically, and a clean stop when the loss or gradients stop being finite.

pub mod data;
pub mod engine;

pub use data::{Chunk, Chunker, DataSource};
pub use engine::{Engine, GradientNorms, GroupStep, State, StepResult, StepWants};

use crate::checkpoint::{self, Checkpoint};
use crate::config::{ModelConfig, Readout};
use crate::data::Batch;
use crate::error::Error;
use crate::internals::distributed::{self, Collective};
use crate::precision::LossScaler;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Prefix of optimizer-state tensors in checkpoints.
pub(crate) const OPTIM_PREFIX: &str = "optim.";

/// What a run of [`train()`] does besides the steps: how many, on batches of what size, and
/// what it evaluates, logs and writes. [`TrainOptions::new`] gives a run that writes nothing.
pub struct TrainOptions {
    /// Train until this many updates have been taken (a resumed run counts the saved ones).
    pub steps: u64,
    /// Sequences per step (per rank in data-parallel training).
    pub batch: usize,
    /// Validate, log and checkpoint every this many steps (and at the last step).
    pub eval_every: u64,
    /// CSV, or JSON lines when the name ends in `.jsonl`/`.json`.
    pub log: Option<PathBuf>,
    /// The checkpoint written (atomically) at every evaluation and at the end.
    pub save: Option<PathBuf>,
    /// Append `||dE/dh_t||` (and `||dE/dc_t||`) rows every `grad_norms_every` steps.
    pub grad_norms: Option<PathBuf>,
    /// Steps between rows of `grad_norms`.
    pub grad_norms_every: u64,
    /// Stored in checkpoints beside the optimizer's own keys (task, seed, vocabulary...).
    pub metadata: BTreeMap<String, String>,
    /// Set from outside (Ctrl-C) to stop after the current step; the loop then saves a final
    /// checkpoint when `save` is given and returns normally.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Truncated BPTT: one update per chunk of this many steps, the final state of a chunk
    /// the (constant) initial state of the next; gradients stop at chunk borders.
    pub tbptt: Option<usize>,
    /// Data-parallel training: this process is one rank of `group`, `batch` is per rank, and
    /// each global batch of `ranks * batch` sequences is split among the ranks in rank order
    /// (`crate::internals::distributed`). Only rank 0 should be given files to write.
    pub group: Option<Rc<dyn Collective>>,
}

impl TrainOptions {
    /// `steps` updates on batches of `batch`, evaluated only at the first and the last step,
    /// writing no file, in one process: change what a run needs with struct update syntax.
    pub fn new(steps: u64, batch: usize) -> Self {
        TrainOptions {
            steps,
            batch,
            eval_every: steps.max(1),
            log: None,
            save: None,
            grad_norms: None,
            grad_norms_every: 1,
            metadata: BTreeMap::new(),
            interrupt: None,
            tbptt: None,
            group: None,
        }
    }

    /// Sequences per step over every rank.
    pub fn global_batch(&self) -> usize {
        self.batch * self.group.as_ref().map_or(1, |g| g.ranks())
    }

    /// This rank's slice of a global batch (the whole batch without a group).
    fn shard(&self, batch: Batch<f32>, readout: Readout) -> Option<Batch<f32>> {
        match &self.group {
            None => Some(batch),
            Some(group) => distributed::shard(group.as_ref(), &batch, readout, self.batch),
        }
    }
}

/// One evaluated step, as logged and shown.
#[derive(Clone, Debug)]
pub struct Record {
    /// The update count, from 1.
    pub step: u64,
    /// The step's training loss.
    pub loss: f32,
    /// The mean loss over the validation batches, where the data has them.
    pub validation_loss: Option<f32>,
    /// The step's global gradient norm, before clipping.
    pub grad_norm: f32,
    /// The step's learning rate, after the schedule.
    pub lr: f32,
    /// Training sequences per second since the previous record.
    pub sequences_per_second: f64,
    /// Wall-clock seconds since the run started.
    pub elapsed_seconds: f64,
}

/// What the loop reports as it goes.
pub enum Event<'a> {
    /// A step was taken.
    Step {
        /// The update count, from 1.
        step: u64,
        /// Its training loss.
        loss: f32,
        /// Its global gradient norm, before clipping.
        grad_norm: f32,
    },
    /// A step was evaluated (validated, logged): its record.
    Evaluated(&'a Record),
    /// A checkpoint was written to this path.
    Saved(&'a Path),
    /// Under f16 storage the scaled gradient overflowed: the update was skipped and dynamic
    /// loss scaling lowered its scale to `scale`.
    Skipped {
        /// The update count of the skipped step, from 1.
        step: u64,
        /// The loss scale for the next step.
        scale: f32,
    },
}

/// How a run of [`train()`] went.
pub struct Summary {
    /// Stopped early by `TrainOptions::interrupt`.
    pub interrupted: bool,
    /// The first evaluated step, `None` when the run took no step.
    pub first: Option<Record>,
    /// The last evaluated step.
    pub last: Option<Record>,
    /// Steps taken by this call, skipped f16 updates included (a resumed run does not count
    /// the saved ones).
    pub steps_taken: u64,
    /// Wall-clock seconds the run took.
    pub elapsed_seconds: f64,
}

/// Trains `engine` on batches from `data` until `options.steps` updates have been taken,
/// starting after the updates the engine's optimizer already counts (a resumed run reads on
/// where the saved one stopped), and tells `observer` of every step, evaluation and
/// checkpoint. The first step, every `eval_every`-th and the last are evaluated: validation
/// loss, a log row, a checkpoint. A non-finite loss or gradient norm stops the run with
/// [`Error::Diverged`], naming the step, where the first non-finite value came from and the
/// last checkpoint written, which is kept.
pub fn train(
    engine: &mut Engine,
    data: &mut DataSource,
    config: &ModelConfig,
    options: &TrainOptions,
    observer: &mut dyn FnMut(Event),
) -> Result<Summary, Error> {
    // Refused before the log and norm files are opened, so a refusal leaves no file behind.
    if options.tbptt.is_some() && config.bidirectional {
        return Err(Error::Config(
            "--tbptt carries the state from chunk to chunk forward in time; a bidirectional \
             model's reverse direction reads each sequence from its end"
                .into(),
        ));
    }
    let start_step = engine.optimizer_state()?.0;
    let mut run = Run::open(data, config, options, start_step)?;
    for step in start_step + 1..=options.steps {
        let batch = run.next_batch(engine, data)?;
        let (mut result, interrupted) = run.step(engine, &batch, step)?;
        run.carried = result.final_state.take();
        if result.skipped && result.loss.is_finite() {
            let scale = engine.loss_scaler().map_or(1.0, |s| s.scale);
            observer(Event::Skipped { step, scale });
        } else {
            run.check_finite(engine, &batch, step, &result)?;
            observer(Event::Step {
                step,
                loss: result.loss,
                grad_norm: result.grad_norm,
            });
        }
        run.summary.steps_taken += 1;
        run.window_steps += 1;
        run.write_norms(step, &result)?;
        run.summary.interrupted = interrupted;
        if interrupted
            || step.is_multiple_of(options.eval_every)
            || step == options.steps
            || step == start_step + 1
        {
            run.evaluate(engine, step, &result, observer)?;
        }
        if interrupted {
            break;
        }
    }
    run.summary.elapsed_seconds = run.started.elapsed().as_secs_f64();
    Ok(run.summary)
}

/// What `train` keeps from step to step: its files, the validation batches, the chunks of
/// truncated BPTT and the state they carry, the timing window, and what a divergence report
/// names.
struct Run<'a> {
    config: &'a ModelConfig,
    options: &'a TrainOptions,
    log: Option<Log>,
    norms_file: Option<File>,
    validation: Vec<Option<Batch<f32>>>,
    chunker: Option<Chunker>,
    /// The final state of the last chunk, which the next chunk of its sequences starts from.
    carried: Option<State>,
    started: Instant,
    /// Since the last evaluation, for its sequences per second.
    window_start: Instant,
    window_steps: u64,
    /// The last step with a finite loss and gradient norm, and that norm.
    last_finite: Option<(u64, f32)>,
    last_saved: Option<&'a Path>,
    summary: Summary,
}

impl<'a> Run<'a> {
    /// Opens the log and norm files (appending where the run resumes at `start_step` > 0),
    /// takes this rank's validation batches and moves `data` past the batches already used.
    fn open(
        data: &mut DataSource,
        config: &'a ModelConfig,
        options: &'a TrainOptions,
        start_step: u64,
    ) -> Result<Run<'a>, Error> {
        let resumed = start_step > 0;
        let log = (options.log.as_deref())
            .map(|p| Log::open(p, resumed))
            .transpose()?;
        let norms_file = (options.grad_norms.as_deref())
            .map(|p| open_output(p, resumed))
            .transpose()?;
        let global = options.global_batch();
        let validation = (data.validation_batches(global).into_iter())
            .map(|b| options.shard(b, config.readout))
            .collect();
        let mut chunker = (options.tbptt)
            .map(|k| Chunker::new(k, config.readout))
            .transpose()?;
        match chunker.as_mut() {
            Some(chunker) => chunker.skip(data, global, start_step),
            None => data.skip(start_step, global),
        }
        Ok(Run {
            config,
            options,
            log,
            norms_file,
            validation,
            chunker,
            carried: None,
            started: Instant::now(),
            window_start: Instant::now(),
            window_steps: 0,
            last_finite: None,
            last_saved: None,
            summary: Summary {
                interrupted: false,
                first: None,
                last: None,
                steps_taken: 0,
                elapsed_seconds: 0.0,
            },
        })
    }

    /// This rank's next batch. Under truncated BPTT, chunks before the scored one only advance
    /// the state, and each starts from the state the previous chunk of its sequences left.
    fn next_batch(&mut self, engine: &Engine, data: &mut DataSource) -> Result<Batch<f32>, Error> {
        let (options, readout) = (self.options, self.config.readout);
        let global = options.global_batch();
        let whole = "a training batch holds every rank's rows";
        let Some(chunker) = self.chunker.as_mut() else {
            return Ok(options
                .shard(data.next_batch(global), readout)
                .expect(whole));
        };
        loop {
            let chunk = chunker.next(data, global);
            let mut batch = options.shard(chunk.batch, readout).expect(whole);
            if let Some((h, c)) = self.carried.take().filter(|_| !chunk.reset) {
                (batch.h0, batch.c0) = (Some(h), c);
            }
            if chunk.scored {
                return Ok(batch);
            }
            self.carried = Some(engine.advance(&batch)?);
        }
    }

    /// One update on `batch` (with the group's, where there is one), and whether to stop
    /// after it: asked for here or, in a group, on any rank.
    fn step(
        &self,
        engine: &mut Engine,
        batch: &Batch<f32>,
        step: u64,
    ) -> Result<(StepResult, bool), Error> {
        let options = self.options;
        let want = StepWants {
            norms: self.norms_file.is_some()
                && (step.is_multiple_of(options.grad_norms_every) || step == options.steps),
            state: self.chunker.is_some(),
        };
        let interrupted =
            (options.interrupt.as_ref()).is_some_and(|flag| flag.load(Ordering::Relaxed));
        Ok(match &options.group {
            None => (
                engine.step_with(batch, want.norms, want.state)?,
                interrupted,
            ),
            Some(group) => {
                let shared = engine.step_in_group(batch, want, group.as_ref(), interrupted)?;
                (shared.result, shared.interrupted)
            }
        })
    }

    /// `Error::Diverged` where the step's loss or gradient norm is not finite, naming where
    /// the first non-finite value came from; else remembers the step as the last finite one.
    fn check_finite(
        &mut self,
        engine: &Engine,
        batch: &Batch<f32>,
        step: u64,
        result: &StepResult,
    ) -> Result<(), Error> {
        if !(result.loss.is_finite() && result.grad_norm.is_finite()) {
            let params = engine.params()?;
            return Err(Error::Diverged {
                step,
                loss: result.loss,
                grad_norm: result.grad_norm,
                origin: crate::internals::non_finite::locate(self.config, &params, batch)?,
                last_finite: self.last_finite,
                checkpoint: self.last_saved.map(|p| p.display().to_string()),
            });
        }
        self.last_finite = Some((step, result.grad_norm));
        Ok(())
    }

    /// Appends the step's per-step gradient norms, where it read them back.
    fn write_norms(&mut self, step: u64, result: &StepResult) -> Result<(), Error> {
        if let (Some(file), Some(h)) = (self.norms_file.as_mut(), &result.grad_norm_h) {
            let path = self.options.grad_norms.as_deref().unwrap();
            write_norms(file, path, self.config, step, h, &result.grad_norm_c)?;
        }
        Ok(())
    }

    /// Validates, logs and checkpoints the step, and tells the observer.
    fn evaluate(
        &mut self,
        engine: &Engine,
        step: u64,
        result: &StepResult,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), Error> {
        let options = self.options;
        let validation_loss = mean_loss(engine, &self.validation, options.group.as_deref())?;
        if let Some(group) = &options.group {
            distributed::check_replicas(group.as_ref(), &engine.params()?, step)?;
        }
        let window = self.window_start.elapsed().as_secs_f64();
        let record = Record {
            step,
            loss: result.loss,
            validation_loss,
            grad_norm: result.grad_norm,
            lr: result.lr,
            sequences_per_second: (self.window_steps * options.global_batch() as u64) as f64
                / window,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        };
        (self.window_start, self.window_steps) = (Instant::now(), 0);
        if let Some(log) = self.log.as_mut() {
            log.write(&record)?;
        }
        observer(Event::Evaluated(&record));
        if let Some(path) = options.save.as_deref() {
            save(engine, self.config, &options.metadata, path)?;
            self.last_saved = Some(path);
            observer(Event::Saved(path));
        }
        self.summary.first.get_or_insert_with(|| record.clone());
        self.summary.last = Some(record);
        Ok(())
    }
}

/// Mean loss over the validation batches (`None` when there are none). In a group each rank
/// holds its slice of every batch (`None` where the slice is empty), and the batches' losses
/// are reduced over the ranks.
fn mean_loss(
    engine: &Engine,
    batches: &[Option<Batch<f32>>],
    group: Option<&dyn Collective>,
) -> Result<Option<f32>, Error> {
    if batches.is_empty() {
        return Ok(None);
    }
    let mut shares = Vec::with_capacity(batches.len());
    for batch in batches {
        shares.push(match batch {
            Some(b) => (engine.evaluate(b)?, b.valid_rows(engine.readout())),
            None => (0.0, 0),
        });
    }
    match group {
        Some(group) => distributed::mean_over_batches(group, &shares),
        None => {
            let total: f64 = shares.iter().map(|&(loss, _)| loss as f64).sum();
            Ok(Some((total / shares.len() as f64) as f32))
        }
    }
}

/// Parameters, optimizer state under `optim.<state>.<param>` and metadata, atomically.
pub fn save(
    engine: &Engine,
    config: &ModelConfig,
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<(), Error> {
    let params = engine.params()?;
    let (steps, state) = engine.optimizer_state()?;
    let mut checkpoint = Checkpoint::new(*config, params);
    checkpoint.metadata = metadata.clone();
    checkpoint.metadata.insert("step".into(), steps.to_string());
    if let Some(scaler) = engine.loss_scaler() {
        for (key, value) in [
            (LOSS_SCALE, scaler.scale.to_string()),
            (LOSS_SCALE_GOOD_STEPS, scaler.good_steps.to_string()),
            (LOSS_SCALE_SKIPPED, scaler.skipped.to_string()),
        ] {
            checkpoint.metadata.insert(key.into(), value);
        }
    }
    let shapes = checkpoint.params.shapes();
    for (name, values) in state {
        // "exp_avg.weight_ih_l0" keeps its parameter's shape
        let shape = shapes
            .iter()
            .find(|(param, _)| name.ends_with(&format!(".{param}")))
            .map_or(vec![values.len()], |(_, shape)| shape.clone());
        checkpoint
            .extra
            .push((format!("{OPTIM_PREFIX}{name}"), shape, values));
    }
    checkpoint::save(path, &checkpoint)
}

/// Restores optimizer state and the step count saved by `save`, when the checkpoint has
/// them; returns the step count (0 when the file holds only a model).
pub fn resume(engine: &mut Engine, checkpoint: &Checkpoint) -> Result<u64, Error> {
    let state: Vec<(String, Vec<f32>)> = checkpoint
        .extra
        .iter()
        .filter_map(|(name, _, values)| {
            name.strip_prefix(OPTIM_PREFIX)
                .map(|n| (n.to_string(), values.clone()))
        })
        .collect();
    let steps = match checkpoint.metadata.get("step") {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| Error::Value(format!("checkpoint metadata step='{s}' is not a count")))?,
        None => 0,
    };
    if state.is_empty() {
        return Ok(0);
    }
    engine.load_optimizer_state(steps, &state)?;
    if let Some(scaler) = saved_loss_scaler(checkpoint)? {
        engine.set_loss_scaler(scaler);
    }
    Ok(steps)
}

/// Checkpoint metadata of dynamic loss scaling (f16 runs).
const LOSS_SCALE: &str = "loss_scale";
const LOSS_SCALE_GOOD_STEPS: &str = "loss_scale_good_steps";
const LOSS_SCALE_SKIPPED: &str = "loss_scale_skipped";

/// Dynamic loss scaling's state as `save` wrote it (None in a checkpoint of an f32 run).
fn saved_loss_scaler(checkpoint: &Checkpoint) -> Result<Option<LossScaler>, Error> {
    let get = |key: &str| checkpoint.metadata.get(key);
    let (Some(scale), Some(good), Some(skipped)) = (
        get(LOSS_SCALE),
        get(LOSS_SCALE_GOOD_STEPS),
        get(LOSS_SCALE_SKIPPED),
    ) else {
        return Ok(None);
    };
    let bad = |key: &str, value: &str| {
        Error::Value(format!("checkpoint metadata {key}='{value}' is not valid"))
    };
    let scale: f32 = (scale.parse().ok())
        .filter(|s: &f32| s.is_finite() && *s > 0.0)
        .ok_or_else(|| bad(LOSS_SCALE, scale))?;
    Ok(Some(LossScaler {
        scale,
        good_steps: good.parse().map_err(|_| bad(LOSS_SCALE_GOOD_STEPS, good))?,
        skipped: skipped
            .parse()
            .map_err(|_| bad(LOSS_SCALE_SKIPPED, skipped))?,
    }))
}

fn open_output(path: &Path, append: bool) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| Error::Io(format!("cannot open {} for writing: {e}", path.display())))
}

/// `step,kind,t1,...,tT`: one row per recorded step and quantity (`h`, and `c` for the LSTM),
/// and per cell of a stacked or bidirectional model (`h_l0`, `h_l0_reverse`, `h_l1`, ...).
fn write_norms(
    file: &mut File,
    path: &Path,
    config: &ModelConfig,
    step: u64,
    norm_h: &[f32],
    norm_c: &Option<Vec<f32>>,
) -> Result<(), Error> {
    let mut text = String::new();
    let (cells, d) = (config.cells(), config.directions());
    for (kind, norms) in [("h", Some(norm_h)), ("c", norm_c.as_deref())] {
        let Some(norms) = norms else { continue };
        for (k, cell_norms) in norms.chunks(norms.len() / cells).enumerate() {
            let kind = match cells {
                1 => kind.to_string(),
                _ => crate::params::cell_tensor_name(kind, k / d, k % d == 1),
            };
            let values: Vec<String> = cell_norms.iter().map(|v| format!("{v:e}")).collect();
            text.push_str(&format!("{step},{kind},{}\n", values.join(",")));
        }
    }
    file.write_all(text.as_bytes())
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// The training log, CSV or JSON lines.
struct Log {
    file: File,
    path: PathBuf,
    json: bool,
}

impl Log {
    fn open(path: &Path, append: bool) -> Result<Log, Error> {
        let json = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl") | Some("json")
        );
        let fresh = !append || !path.exists();
        let mut log = Log {
            file: open_output(path, append)?,
            path: path.to_path_buf(),
            json,
        };
        if fresh && !json {
            log.line(
                "step,loss,validation_loss,grad_norm,lr,sequences_per_second,elapsed_seconds",
            )?;
        }
        Ok(log)
    }

    fn write(&mut self, r: &Record) -> Result<(), Error> {
        let validation = r.validation_loss.map_or(String::new(), |v| format!("{v}"));
        let line = if self.json {
            format!(
                "{{\"step\":{},\"loss\":{},\"validation_loss\":{},\"grad_norm\":{},\"lr\":{},\"sequences_per_second\":{:.1},\"elapsed_seconds\":{:.3}}}",
                r.step,
                r.loss,
                if validation.is_empty() { "null".into() } else { validation },
                r.grad_norm,
                r.lr,
                r.sequences_per_second,
                r.elapsed_seconds
            )
        } else {
            format!(
                "{},{},{},{},{},{:.1},{:.3}",
                r.step,
                r.loss,
                validation,
                r.grad_norm,
                r.lr,
                r.sequences_per_second,
                r.elapsed_seconds
            )
        };
        self.line(&line)
    }

    fn line(&mut self, line: &str) -> Result<(), Error> {
        writeln!(self.file, "{line}")
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", self.path.display())))
    }
}
