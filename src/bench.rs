//! The benchmark suite behind `rnn-wgpu bench`: median time of one training step (forward +
//! BPTT + SGD update) per shape and device, with the napkin maths to judge it, and on adapters
//! with timestamp queries the GPU time per phase of one more step.

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::data::Batch;
use crate::error::Error;
use crate::internals::gpu::tuning::{self, RecurrenceShape};
use crate::internals::gpu::{
    Gpu, GpuModel, PersistentSlices, Phase, PhaseTimes, Recurrence, Request, StepKernel, StepShape,
    StepShapes, StepTile,
};
use crate::internals::plan::{
    check_host_memory, check_host_pass, HostPass, MemoryPlan, PlanOptions,
};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::params::Params;
use crate::precision::Precision;
use crate::train::Engine;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;

/// (B, T, I, H) of one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `B`: sequences per batch.
    pub batch: usize,
    /// `T`: time steps per sequence.
    pub seq_len: usize,
    /// `I`: input features per step.
    pub input: usize,
    /// `H`: hidden units.
    pub hidden: usize,
}

/// The suite the performance issue names: small, wide, long, and large.
pub const SUITE: [Shape; 4] = [
    Shape {
        batch: 32,
        seq_len: 100,
        input: 2,
        hidden: 128,
    },
    Shape {
        batch: 128,
        seq_len: 256,
        input: 64,
        hidden: 256,
    },
    Shape {
        batch: 64,
        seq_len: 1000,
        input: 2,
        hidden: 128,
    },
    Shape {
        batch: 256,
        seq_len: 128,
        input: 128,
        hidden: 512,
    },
];

/// The benchmarked architecture: a cell, stacked and maybe bidirectional (one layer, one
/// direction from a bare `Cell`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// The recurrent cell.
    pub cell: Cell,
    /// Stacked layers, at least 1.
    pub layers: usize,
    /// Whether each layer also runs in reverse time.
    pub bidirectional: bool,
}

impl From<Cell> for Arch {
    fn from(cell: Cell) -> Self {
        Arch {
            cell,
            layers: 1,
            bidirectional: false,
        }
    }
}

impl Shape {
    /// FLOPs of one training step: per cell `3 * 2 * T * B * (W + H) * G * H` (forward products,
    /// and twice that backward: the gradients w.r.t. the inputs and the weights), with W = I for
    /// layer 0 and D*H above; one cell gives the issue's `3 * 2 * T * B * (I + H) * G * H`.
    pub fn step_flops(&self, arch: impl Into<Arch>) -> f64 {
        let arch = arch.into();
        let g = arch.cell.gates() as f64;
        let d = 1 + arch.bidirectional as usize;
        let (b, t, h) = (self.batch as f64, self.seq_len as f64, self.hidden as f64);
        (0..arch.layers)
            .map(|layer| {
                let width = if layer == 0 {
                    self.input
                } else {
                    d * self.hidden
                } as f64;
                d as f64 * 3.0 * 2.0 * t * b * (width + h) * g * h
            })
            .sum()
    }
}

impl Shape {
    /// The benchmarked model on this shape, as the reference figures were taken: `cell` (tanh
    /// for the RNN) with PyTorch's initialisation, a head on the last step, MSE, and a random
    /// batch, all from seed 0. `rnn-wgpu bench` and the criterion benches share it.
    pub fn problem(&self, arch: impl Into<Arch>) -> (ModelConfig, Params<f32>, Batch<f32>) {
        let config = self.config(arch);
        let mut rng = StdRng::seed_from_u64(0);
        let params = Params::<f32>::init_uniform(&config, &mut rng);
        let batch = Batch::<f32>::random(&config, self.seq_len, self.batch, &mut rng);
        (config, params, batch)
    }

    /// The benchmarked model's configuration on this shape (`problem` without its data).
    pub fn config(&self, arch: impl Into<Arch>) -> ModelConfig {
        let arch = arch.into();
        ModelConfig {
            cell: arch.cell,
            activation: Activation::Tanh,
            input_size: self.input,
            hidden_size: self.hidden,
            output_size: 1,
            readout: Readout::Last,
            loss: Loss::Mse,
            layers: arch.layers,
            bidirectional: arch.bidirectional,
            dropout: 0.0,
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let parts: Vec<usize> = text
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Error::Config(format!(
                    "--shape '{text}': expected B,T,I,H as four positive integers"
                ))
            })?;
        match parts[..] {
            [batch, seq_len, input, hidden] if parts.iter().all(|&p| p > 0) => Ok(Shape {
                batch,
                seq_len,
                input,
                hidden,
            }),
            _ => Err(Error::Config(format!(
                "--shape '{text}': expected B,T,I,H as four positive integers"
            ))),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            self.batch, self.seq_len, self.input, self.hidden
        )
    }
}

/// One measured shape on one device.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// "gpu" or "cpu".
    pub device: String,
    /// The GPU adapter's name, or the CPU engine's (with its vector path).
    pub adapter: String,
    /// The model timed.
    pub arch: Arch,
    /// The sizes timed.
    pub shape: Shape,
    /// The storage precision (`--precision`).
    pub precision: Precision,
    /// Timed steps (after the untimed warm-up ones).
    pub runs: usize,
    /// Median wall time of one training step, in milliseconds.
    pub median_ms: f64,
    /// Fastest training step, in milliseconds.
    pub min_ms: f64,
    /// B * T / median: sequence steps trained per second.
    pub sequence_steps_per_second: f64,
    /// `Shape::step_flops` over the median time, in GFLOP/s.
    pub gflops: f64,
    /// GPU storage buffers the run created (model, optimizer state, workspace); None on CPU.
    pub gpu_memory_bytes: Option<u64>,
    /// The GPU memory plan the run used; None on CPU.
    pub plan: Option<MemoryPlan>,
    /// How the GPU ran the time steps (steps or persistent); None on CPU.
    pub recurrence: Option<Recurrence>,
    /// The kernel of its time steps where they ran one dispatch per step (`StepKernel::
    /// resolve`: on the matrix units or on tiles); None on CPU and for the persistent kernel.
    pub step_kernel: Option<StepKernel>,
    /// Those kernels' shapes forward and backward (`StepShapes::resolve`: a fused.wgsl tile
    /// such as `8x8x16x4`, or the matrix units); None where `step_kernel` is.
    pub step_shapes: Option<StepShapes>,
    /// How the persistent kernels sliced the batch over workgroups, where they ran the steps;
    /// None elsewhere.
    pub persistent_slices: Option<PersistentSlices>,
    /// GPU time per phase of one extra step timed with timestamp queries, and that step's
    /// wall time in ms; None on CPU and on adapters without timestamp queries.
    pub phases: Option<(PhaseTimes, f64)>,
    /// Products whose kernel `rnn-wgpu tune` chose (loaded into the context); None on CPU.
    pub tuned_products: Option<usize>,
    /// Dispatches of one timed training step, from the context's counter; None on CPU.
    pub dispatches: Option<u64>,
    /// Dispatches per time step and cell, forward and backward, where counted
    /// (`recurrent_dispatches_per_step`; `rnn-wgpu bench` counts them on GPUs).
    pub recurrent_dispatches_per_step: Option<DispatchesPerStep>,
}

/// Dispatches each time step adds to a pass, per cell: forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchesPerStep {
    /// Dispatches per time step and cell in the forward recurrence.
    pub forward: u64,
    /// Dispatches per time step and cell in the backward recurrence.
    pub backward: u64,
}

/// What one more time step costs in dispatches for `config` at `batch` rows with `recurrence`,
/// read from the context's counter of dispatches in the forward and in the backward
/// recurrence's phase: a whole pass (forward and BPTT with every gradient) at T = 2 and at
/// T = 3, the differences divided by the cells. (The recurrence phases hold what runs per
/// step; the products over all steps, which a CPU adapter may run in more chunks at a longer
/// T, are in phases of their own.) Counts only what this call submits, so nothing else may use
/// `gpu` meanwhile.
pub fn recurrent_dispatches_per_step(
    gpu: &Gpu,
    config: &ModelConfig,
    batch: usize,
    recurrence: Recurrence,
) -> Result<DispatchesPerStep, Error> {
    let mut rng = StdRng::seed_from_u64(0);
    let params = Params::<f32>::init_uniform(config, &mut rng);
    let mut model = GpuModel::new(gpu, *config, &params)?;
    model.recurrence = recurrence;
    let mut count = |seq_len: usize| -> Result<[u64; 2], Error> {
        let data = Batch::<f32>::random(config, seq_len, batch, &mut rng);
        let before = gpu.work_counts().recurrence_dispatches;
        model.run(gpu, &data, Request::everything())?;
        let after = gpu.work_counts().recurrence_dispatches;
        Ok([0, 1].map(|d| after[d] - before[d]))
    };
    let (short, long) = (count(2)?, count(3)?);
    let cells = config.cells() as u64;
    Ok(DispatchesPerStep {
        forward: (long[0] - short[0]) / cells,
        backward: (long[1] - short[1]) / cells,
    })
}

/// Times `runs` training steps after `warmup` untimed ones. The model is an LSTM or RNN (tanh)
/// with PyTorch's initialisation, a head on the last step, MSE and plain SGD, as the reference
/// figures were taken. On a GPU with timestamp queries one more step is recorded with them
/// (`Request::phase_times`) for the per-phase times; the timed steps record no queries.
pub fn bench_shape(
    gpu: Option<&Gpu>,
    arch: Arch,
    shape: Shape,
    warmup: usize,
    runs: usize,
    plan_options: PlanOptions,
    recurrence: Recurrence,
) -> Result<BenchResult, Error> {
    // Refused before the problem is allocated: parameters, gradients and the engine's copy,
    // and on the CPU engine a pass's activations.
    let config = shape.config(arch);
    check_host_memory(&config, 3)?;
    if gpu.is_none() {
        const FIX: &str = "use a smaller shape";
        let rows = (shape.seq_len, shape.batch);
        check_host_pass(&config, rows, HostPass::ForwardBackward, 4, FIX)?;
    }
    let (_, params, batch) = shape.problem(arch);
    let recurrence = gpu
        .map(|gpu| recurrence.resolve(gpu, &config, (shape.batch, plan_options.precision)))
        .transpose()?;
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 1e-3;
    let before = gpu.map(|g| g.storage_bytes_created());
    let mut engine = Engine::new(gpu, config, &params, optimizer)?;
    engine.set_plan_options(plan_options);
    engine.set_precision(plan_options.precision);
    if let Some(recurrence) = recurrence {
        engine.set_recurrence(recurrence);
    }
    let plan = engine.memory_plan(shape.seq_len, shape.batch)?;
    let stepping = (gpu.zip(recurrence)).filter(|(_, recurrence)| *recurrence == Recurrence::Steps);
    let rows = (shape.batch, plan_options.precision);
    let step_shapes = stepping
        .map(|(gpu, _)| StepShapes::resolve(gpu, &gpu.policy(), &config, rows))
        .transpose()?;
    let step_kernel = step_shapes.map(|shapes| shapes.kernel());
    let persistent_slices = (recurrence == Some(Recurrence::Persistent))
        .then(|| PersistentSlices::of(&config, shape.batch));
    for _ in 0..warmup {
        engine.step(&batch, false)?;
    }
    let mut times = Vec::with_capacity(runs);
    let mut dispatches = None;
    for _ in 0..runs.max(1) {
        let before = gpu.map(|g| g.work_counts().dispatches);
        let start = Instant::now();
        engine.step(&batch, false)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        dispatches = gpu.zip(before).map(|(g, b)| g.work_counts().dispatches - b);
    }
    let phases = match &mut engine {
        Engine::Gpu {
            gpu,
            model,
            optimizer,
            ..
        } if gpu.has_timestamps() => {
            let request = Request {
                phase_times: true,
                ..Request::default()
            };
            let start = Instant::now();
            let out = model.train_step(gpu, &batch, optimizer, request)?;
            let wall_ms = start.elapsed().as_secs_f64() * 1e3;
            out.output.phase_times.map(|p| (p, wall_ms))
        }
        _ => None,
    };
    times.sort_by(f64::total_cmp);
    let median_ms = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let seconds = median_ms / 1e3;
    Ok(BenchResult {
        device: if gpu.is_some() { "gpu" } else { "cpu" }.to_string(),
        precision: plan_options.precision,
        adapter: gpu.map_or(crate::cpu::engine_name(plan_options.precision), |g| {
            g.adapter_name()
        }),
        arch,
        shape,
        runs: times.len(),
        median_ms,
        min_ms: times[0],
        sequence_steps_per_second: (shape.batch * shape.seq_len) as f64 / seconds,
        gflops: shape.step_flops(arch) / seconds / 1e9,
        gpu_memory_bytes: gpu.zip(before).map(|(g, b)| g.storage_bytes_created() - b),
        plan,
        recurrence,
        step_kernel,
        step_shapes,
        persistent_slices,
        phases,
        tuned_products: gpu.map(Gpu::tuned_products),
        dispatches,
        recurrent_dispatches_per_step: None,
    })
}

impl BenchResult {
    /// One JSON object (no dependency on a JSON crate: every field is a number or a plain
    /// string without quotes or backslashes to escape, except the adapter name, escaped here).
    /// `phases_ms` maps each `Phase::name` to its GPU milliseconds (null for a phase the step
    /// did not record), or is null without timestamp queries; `phases_step_ms` is the wall
    /// time of the step they were measured on.
    pub fn to_json(&self) -> String {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let phases_ms = self.phases.map_or("null".to_string(), |(times, _)| {
            let entries: Vec<String> = Phase::ALL
                .iter()
                .map(|&phase| {
                    let ms = times
                        .get(phase)
                        .map_or("null".to_string(), |ms| format!("{ms:.3}"));
                    format!("\"{}\":{ms}", phase.name())
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        });
        format!(
            "{{\"device\":\"{}\",\"adapter\":\"{}\",\"cell\":\"{}\",\"layers\":{},\"bidirectional\":{},\"shape\":[{},{},{},{}],\"precision\":\"{}\",\"runs\":{},\"median_ms\":{:.3},\"min_ms\":{:.3},\"sequence_steps_per_second\":{:.1},\"gflops\":{:.3},\"gpu_memory_bytes\":{},\"planned_bytes\":{},\"segments\":{},\"recompute\":{},\"recurrence\":{},\"step_kernel\":{},\"step_shapes\":{},\"persistent_slices\":{},\"phases_ms\":{},\"phases_step_ms\":{},\"tuned_products\":{},\"dispatches\":{},\"recurrent_dispatches_per_step\":{}}}",
            self.device,
            escape(&self.adapter),
            self.arch.cell,
            self.arch.layers,
            self.arch.bidirectional,
            self.shape.batch,
            self.shape.seq_len,
            self.shape.input,
            self.shape.hidden,
            self.precision.name(),
            self.runs,
            self.median_ms,
            self.min_ms,
            self.sequence_steps_per_second,
            self.gflops,
            self.gpu_memory_bytes.map_or("null".to_string(), |b| b.to_string()),
            self.plan.as_ref().map_or("null".to_string(), |p| p.total_bytes().to_string()),
            self.plan.as_ref().map_or("null".to_string(), |p| p.segments.to_string()),
            self.plan.as_ref().map_or("null".to_string(), |p| p.recompute.to_string()),
            self.recurrence.map_or("null".to_string(), |r| format!("\"{r}\"")),
            self.step_kernel.map_or("null".to_string(), |k| format!("\"{k}\"")),
            self.step_shapes.map_or("null".to_string(), |s| format!(
                "{{\"forward\":\"{}\",\"backward\":\"{}\"}}",
                s.forward, s.backward
            )),
            self.persistent_slices.map_or("null".to_string(), |s| format!(
                "{{\"rows\":{},\"workgroups\":{}}}",
                s.rows, s.count
            )),
            phases_ms,
            self.phases.map_or("null".to_string(), |(_, wall)| format!("{wall:.3}")),
            self.tuned_products.map_or("null".to_string(), |n| n.to_string()),
            self.dispatches.map_or("null".to_string(), |n| n.to_string()),
            self.recurrent_dispatches_per_step
                .map_or("null".to_string(), |d| format!("[{},{}]", d.forward, d.backward)),
        )
    }

    /// The per-phase line of the table: GPU ms per phase, their sum against the profiled
    /// step's wall time.
    pub fn describe_phases(&self) -> Option<String> {
        let (times, wall_ms) = self.phases?;
        let parts: Vec<String> = Phase::ALL
            .iter()
            .map(|&phase| {
                let ms = times
                    .get(phase)
                    .map_or("-".to_string(), |ms| format!("{ms:.1}"));
                format!("{} {ms}", phase.name())
            })
            .collect();
        Some(format!(
            "GPU ms per phase: {}; sum {:.1} of {:.1} ms wall ({} timed passes)",
            parts.join(", "),
            times.total_ms(),
            wall_ms,
            times.passes
        ))
    }
}

/// One model's recurrence as tuned (`tune_recurrence`): Auto's rule, the choice kept, and the
/// median ms of a training step each way (NaN for a way left out).
pub struct TunedRecurrence {
    /// The model's recurrence as the tuning cache keys it.
    pub shape: RecurrenceShape,
    /// What `Recurrence::Auto`'s built-in rule picks for it.
    pub rule: Recurrence,
    /// The way kept: the rule's, unless the other was timed and faster by `tuning::MARGIN`.
    pub choice: Recurrence,
    /// Median ms of a training step with one dispatch per time step.
    pub steps_ms: f64,
    /// Median ms of a training step with the persistent kernel.
    pub persistent_ms: f64,
    /// Why the persistent kernel was not timed: it cannot run on this adapter, or its step
    /// disagrees with the CPU reference (where the per-step way's agrees).
    pub persistent_left_out: Option<String>,
}

/// Why the persistent recurrence may not be timed for `shape`'s model on this adapter, if it
/// may not: it cannot run here, or one training step of it disagrees with the f64 CPU
/// reference (`checked_step`). A kernel a driver gets wrong must not be cached for being
/// fast. An error where the per-step way disagrees too: then the engine itself is wrong here.
fn persistent_left_out(
    gpu: &Gpu,
    arch: Arch,
    shape: Shape,
    plan_options: PlanOptions,
) -> Result<Option<String>, Error> {
    let config = shape.config(arch);
    let rows = (shape.batch, plan_options.precision);
    if let Err(e) = Recurrence::Persistent.resolve(gpu, &config, rows) {
        return Ok(Some(e.to_string()));
    }
    let ways = [Recurrence::Steps, Recurrence::Persistent];
    let check = checked_step(gpu, arch, shape, plan_options, &ways)?;
    if let Some(why) = check.steps {
        return Err(Error::Gpu(format!(
            "{shape}: a training step with a dispatch per step disagrees with the CPU reference \
             on '{}' {why}",
            gpu.info.name
        )));
    }
    Ok(check
        .persistent
        .map(|why| format!("disagrees with the CPU reference {why}")))
}

/// What `checked_step` found wrong with each way of running the steps (None: right).
struct StepCheck {
    /// A dispatch per step, in the kernel the context's policy takes.
    steps: Option<String>,
    /// The persistent kernel, where the model fits it.
    persistent: Option<String>,
}

/// Gate pre-activations (T * B * G * H values) the recurrence check below keeps in f64 at
/// most: 128 MiB. Longer sequences of large batches are checked on their first steps only.
const CHECK_GATE_VALUES: usize = 1 << 24;

/// One training step of `shape`'s model each of `ways` (Steps, Persistent) against the f64
/// CPU reference (`parity`, at its bound for the precision; over all of T where that keeps the
/// reference within `CHECK_GATE_VALUES`, else over the longest T that does, at least 64): for
/// each way that disagrees, the bound and its three worst tensors.
fn checked_step(
    gpu: &Gpu,
    arch: Arch,
    shape: Shape,
    plan_options: PlanOptions,
    ways: &[Recurrence],
) -> Result<StepCheck, Error> {
    let gate_values = shape.batch * arch.cell.gates() * shape.hidden;
    let shape = Shape {
        seq_len: shape
            .seq_len
            .min((CHECK_GATE_VALUES / gate_values.max(1)).max(64)),
        ..shape
    };
    let (config, params, batch) = shape.problem(arch);
    let problem = (&config, &params, &batch);
    let report = crate::internals::parity::run_parity_on(gpu, problem, plan_options, ways)?;
    // f16 storage rounds where the reference does not: `parity`'s bound for the precision.
    let tolerance = crate::internals::parity::tolerance(plan_options.precision);
    let (persistent, steps): (Vec<_>, Vec<_>) = report
        .failures(tolerance)
        .into_iter()
        .partition(|c| c.name.starts_with("persistent: "));
    // the worst three tensors (one wrong step makes most of them wrong)
    let listed = |mut worst: Vec<&crate::internals::parity::Comparison>| {
        if worst.is_empty() {
            return None;
        }
        worst.sort_by(|x, y| y.rel_error.total_cmp(&x.rel_error));
        let lines: Vec<String> = worst.iter().take(3).map(|c| c.to_string()).collect();
        let more = match worst.len() {
            0..=3 => String::new(),
            n => format!("; and {} more", n - 3),
        };
        Some(format!(
            "(||gpu - cpu|| / ||cpu|| > {tolerance:e}): {}{more}",
            lines.join("; ")
        ))
    };
    Ok(StepCheck {
        steps: listed(steps),
        persistent: listed(persistent),
    })
}

/// Checks that both ways of running `shape`'s steps give its training step right
/// (`persistent_left_out`), times its training step with a dispatch per step and with the
/// persistent kernel, `rounds` times interleaved (median of 3 steps
/// after one warm-up each), and keeps the other way than Auto's rule only where it beats the
/// rule's by `tuning::MARGIN`. The context keeps the choice.
pub fn tune_recurrence(
    gpu: &Gpu,
    arch: Arch,
    shape: Shape,
    plan_options: PlanOptions,
    rounds: usize,
) -> Result<TunedRecurrence, Error> {
    let config = shape.config(arch);
    let rows = (shape.batch, plan_options.precision);
    let key = RecurrenceShape::of(&config, rows);
    gpu.forget_recurrence_choice(key);
    let rule = Recurrence::Auto.resolve(gpu, &config, rows)?;
    let left_out = persistent_left_out(gpu, arch, shape, plan_options)?;
    let ways: &[Recurrence] = match left_out {
        Some(_) => &[Recurrence::Steps],
        None => &[Recurrence::Steps, Recurrence::Persistent],
    };
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds.max(1) {
        for (i, &way) in ways.iter().enumerate() {
            let run = bench_shape(Some(gpu), arch, shape, 1, 3, plan_options, way)?;
            times[i].push(run.median_ms);
        }
    }
    let [steps_ms, persistent_ms] = times.map(median);
    let (rule_ms, other, other_ms) = match rule {
        Recurrence::Persistent => (persistent_ms, Recurrence::Steps, steps_ms),
        _ => (steps_ms, Recurrence::Persistent, persistent_ms),
    };
    // NaN (a way left out) compares false: the other way is kept only when it was timed and
    // won, and a left-out rule gives way to the other.
    let choice = if other_ms < tuning::MARGIN * rule_ms || rule_ms.is_nan() {
        other
    } else {
        rule
    };
    gpu.set_recurrence_choice(key, choice);
    Ok(TunedRecurrence {
        shape: key,
        rule,
        choice,
        steps_ms,
        persistent_ms,
        persistent_left_out: left_out,
    })
}

/// One f16 model's time steps as tuned (`tune_steps`): the kernel kept (the rule's is
/// `StepKernel::MatrixUnits`) and the median ms of a training step on each (NaN for one left
/// out).
pub struct TunedSteps {
    /// The model's steps as the tuning cache keys them.
    pub shape: RecurrenceShape,
    /// The kernel kept: the matrix units, unless the tiles were faster by `tuning::MARGIN`
    /// or the matrix units' step was left out.
    pub choice: StepKernel,
    /// Median ms of a training step with its time steps on the matrix units (step_coop.wgsl).
    pub units_ms: f64,
    /// Median ms of a training step with its time steps on fused.wgsl's tiles.
    pub tiled_ms: f64,
    /// Why the matrix units' step was not timed: it disagrees with the CPU reference.
    pub units_left_out: Option<String>,
}

/// At f16 where the matrix units are on (else None): checks that their step kernel gives
/// `shape`'s training step right (`checked_step`), times a training step with one dispatch
/// per time step on the matrix units and on fused.wgsl's tiles, `rounds` times interleaved
/// (median of 3 steps after one warm-up each), and keeps the tiles only where they beat the
/// matrix units (the rule) by `tuning::MARGIN`, or where the matrix units' step is wrong. The
/// context keeps the choice.
pub fn tune_steps(
    gpu: &Gpu,
    arch: Arch,
    shape: Shape,
    plan_options: PlanOptions,
    rounds: usize,
) -> Result<Option<TunedSteps>, Error> {
    if plan_options.precision != Precision::F16 || gpu.matrix_units().is_err() {
        return Ok(None);
    }
    let config = shape.config(arch);
    let key = RecurrenceShape::of(&config, (shape.batch, plan_options.precision));
    gpu.set_step_choice(key, StepKernel::MatrixUnits);
    let check = checked_step(gpu, arch, shape, plan_options, &[Recurrence::Steps])?;
    let left_out = (check.steps).map(|why| format!("disagrees with the CPU reference {why}"));
    let ways: &[StepKernel] = match left_out {
        Some(_) => &[StepKernel::Tiled],
        None => &[StepKernel::MatrixUnits, StepKernel::Tiled],
    };
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds.max(1) {
        for &way in ways {
            gpu.set_step_choice(key, way);
            let run = bench_shape(
                Some(gpu),
                arch,
                shape,
                1,
                3,
                plan_options,
                Recurrence::Steps,
            )?;
            times[(way == StepKernel::Tiled) as usize].push(run.median_ms);
        }
    }
    let [units_ms, tiled_ms] = times.map(median);
    // NaN (left out) compares false: the matrix units are kept only when timed.
    let choice = if tiled_ms < tuning::MARGIN * units_ms || units_ms.is_nan() {
        StepKernel::Tiled
    } else {
        StepKernel::MatrixUnits
    };
    gpu.set_step_choice(key, choice);
    Ok(Some(TunedSteps {
        shape: key,
        choice,
        units_ms,
        tiled_ms,
        units_left_out: left_out,
    }))
}

/// One model's time steps as tuned (`tune_step_split`): the layers of invocations (on the
/// matrix units, subgroups) K is split over by the rule and as kept, and the median ms of a
/// training step with each candidate.
pub struct TunedSplit {
    /// The model's steps as the tuning cache keys them.
    pub shape: RecurrenceShape,
    /// The rule's layers (`StepTile::for_shape`, `CoopStep::for_shape`).
    pub rule: u32,
    /// The layers kept: the rule's, unless another was faster by `tuning::MARGIN` or the
    /// rule's was left out.
    pub choice: u32,
    /// Every candidate's layers and median ms (NaN for one left out), fewest layers first.
    pub times: Vec<(u32, f64)>,
    /// The candidates left out, and why: it cannot run on this adapter, or its step disagrees
    /// with the CPU reference.
    pub left_out: Vec<(u32, String)>,
}

impl TunedSplit {
    /// The median ms of `layers` (NaN if not a timed candidate).
    pub fn ms(&self, layers: u32) -> f64 {
        (self.times.iter())
            .find(|(k, _)| *k == layers)
            .map_or(f64::NAN, |&(_, ms)| ms)
    }
}

/// Where `shape`'s time steps run in the rule's shape (no tile forced; else None): times a
/// training step with K whole and split over 2 and 4 layers of invocations of fused.wgsl, or
/// subgroups of step_coop.wgsl (those that leave each `StepTile::MIN_LAYER_K` of H),
/// `rounds` times interleaved (median of 3 steps after one warm-up each), after checking each
/// split against the CPU reference (`checked_step`; K whole is the order every other tile
/// sums in); keeps the rule's unless another is faster by `tuning::MARGIN`. The context keeps
/// the choice, for `shape` at `plan_options.precision`.
pub fn tune_step_split(
    gpu: &Gpu,
    arch: Arch,
    shape: Shape,
    plan_options: PlanOptions,
    rounds: usize,
) -> Result<Option<TunedSplit>, Error> {
    let config = shape.config(arch);
    let rows = (shape.batch, plan_options.precision);
    let key = RecurrenceShape::of(&config, rows);
    gpu.forget_step_split(key);
    let rule = match StepShapes::resolve(gpu, &gpu.policy(), &config, rows)?.forward {
        StepShape::Tile(tile) if gpu.policy().step_tile().is_none() => tile.k_split,
        StepShape::Tile(_) => return Ok(None),
        StepShape::Coop(step) => step.parts,
    };
    let candidates: Vec<u32> = (0..3)
        .map(|i| 1u32 << i)
        .filter(|&k| k == 1 || config.hidden_size >= k as usize * StepTile::MIN_LAYER_K)
        .collect();
    let mut left_out = Vec::new();
    let mut timed = Vec::new();
    for &layers in &candidates {
        gpu.set_step_split(key, layers);
        if let Err(e) = StepShapes::resolve(gpu, &gpu.policy(), &config, rows) {
            left_out.push((layers, e.to_string()));
            continue;
        }
        if layers > 1 {
            let check = checked_step(gpu, arch, shape, plan_options, &[Recurrence::Steps])?;
            if let Some(why) = check.steps {
                left_out.push((layers, format!("disagrees with the CPU reference {why}")));
                continue;
            }
        }
        timed.push((layers, Vec::new()));
    }
    for _ in 0..rounds.max(1) {
        for (layers, times) in &mut timed {
            gpu.set_step_split(key, *layers);
            let way = Recurrence::Steps;
            times.push(bench_shape(Some(gpu), arch, shape, 1, 3, plan_options, way)?.median_ms);
        }
    }
    let mut tuned = TunedSplit {
        shape: key,
        rule,
        choice: rule,
        times: (candidates.iter())
            .map(|&k| {
                let times = timed.iter().find(|(t, _)| *t == k);
                (
                    k,
                    times.map_or(f64::NAN, |(_, times)| median(times.clone())),
                )
            })
            .collect(),
        left_out,
    };
    let fastest = (tuned.times.iter())
        .filter(|(_, ms)| !ms.is_nan())
        .min_by(|a, b| a.1.total_cmp(&b.1));
    // NaN (left out) compares false: another is kept only when timed and faster, and a
    // left-out rule gives way to the fastest.
    if let Some(&(k, ms)) = fastest {
        let rule_ms = tuned.ms(rule);
        if ms < tuning::MARGIN * rule_ms || rule_ms.is_nan() {
            tuned.choice = k;
        }
    }
    gpu.set_step_split(key, tuned.choice);
    Ok(Some(tuned))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula for one cell; a stacked bidirectional model counts every cell, the
    /// upper layers with their D*H inputs; and the count matches the parameters it multiplies:
    /// 6 FLOPs per recurrent weight per sequence step.
    #[test]
    fn step_flops_count_every_cell() {
        let shape = Shape {
            batch: 3,
            seq_len: 5,
            input: 7,
            hidden: 11,
        };
        let one = 6.0 * 5.0 * 3.0 * (7.0 + 11.0) * 4.0 * 11.0;
        assert_eq!(shape.step_flops(Cell::Lstm), one);
        let arch = Arch {
            cell: Cell::Gru,
            layers: 3,
            bidirectional: true,
        };
        let (config, params, _) = shape.problem(arch);
        let weights: usize = params
            .cells
            .iter()
            .map(|c| c.weight_ih.len() + c.weight_hh.len())
            .sum();
        assert_eq!(config.cells(), 6);
        assert_eq!(shape.step_flops(arch), 6.0 * 15.0 * weights as f64);
    }
}

/// `bench --distributed`: data-parallel training steps on `shape` (its batch per rank), as
/// the slowest rank saw them.
#[derive(Clone, Debug)]
pub struct DistributedResult {
    /// Ranks in the group.
    pub ranks: usize,
    /// "gpu" or "cpu".
    pub device: String,
    /// The GPU adapter's name, or the CPU engine's.
    pub adapter: String,
    /// The sizes timed, `batch` per rank.
    pub shape: Shape,
    /// Timed steps of each kind (after the untimed warm-up ones).
    pub runs: usize,
    /// Median ms of a whole data-parallel step (the slowest rank's median, as every median
    /// here).
    pub step_ms: f64,
    /// Median ms of the gradient collective inside it, waiting for the slowest rank included.
    pub communication_ms: f64,
    /// Median ms of the same engine's step with no communication, every rank running at once.
    pub alone_ms: f64,
    /// Bytes of the reduced vector: every gradient and 3 scalars.
    pub reduced_bytes: u64,
    /// Bytes each rank sends of it per step: 2 (N-1)/N of it (all-to-all, then all-gather),
    /// none for one rank.
    pub sent_bytes_per_rank: u64,
    /// Sequences per second over all ranks.
    pub sequences_per_second: f64,
}

impl DistributedResult {
    /// alone / step: the share of a step not lost to communication.
    pub fn efficiency(&self) -> f64 {
        self.alone_ms / self.step_ms
    }
}

/// The median of `times` (NaN for none: a way left out untimed).
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n == 0 {
        return f64::NAN;
    }
    match n % 2 {
        1 => times[n / 2],
        _ => (times[n / 2 - 1] + times[n / 2]) / 2.0,
    }
}

/// Times `runs` steps of one engine alone, then `runs` data-parallel steps over `group`
/// (after `warmup` of each), planned and stored as `plan_options` say; every rank calls it
/// alike.
pub fn bench_distributed(
    gpu: Option<&Gpu>,
    arch: Arch,
    shape: Shape,
    warmup: usize,
    runs: usize,
    (group, plan_options): (&dyn crate::internals::distributed::Collective, PlanOptions),
) -> Result<DistributedResult, Error> {
    use crate::train::StepWants;
    let (config, params, batch) = shape.problem(arch);
    let mut optimizer = OptimizerConfig::new(OptimizerKind::sgd());
    optimizer.lr = 1e-3;
    let mut engine = Engine::new(gpu, config, &params, optimizer)?;
    engine.set_plan_options(plan_options);
    engine.set_precision(plan_options.precision);
    let runs = runs.max(1);
    let mut alone = Vec::with_capacity(runs);
    for k in 0..warmup + runs {
        let start = Instant::now();
        engine.step(&batch, false)?;
        if k >= warmup {
            alone.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (mut steps, mut communication) = (Vec::new(), Vec::new());
    for k in 0..warmup + runs {
        let start = Instant::now();
        let step = engine.step_in_group(&batch, StepWants::default(), group, false)?;
        if k >= warmup {
            steps.push(start.elapsed().as_secs_f64() * 1e3);
            communication.push(step.communication.as_secs_f64() * 1e3);
        }
    }
    // the slowest rank's medians
    let mine = [median(steps), median(communication), median(alone)];
    let all = group.all_gather(&mine.map(|v| v as f32))?;
    let slowest = |i: usize| {
        (all.chunks_exact(3))
            .map(|r| r[i] as f64)
            .fold(0.0, f64::max)
    };
    let ranks = group.ranks();
    let values: usize = params.tensors().iter().map(|(_, v)| v.len()).sum();
    let reduced_bytes = 4 * (values as u64 + 3);
    let step_ms = slowest(0);
    Ok(DistributedResult {
        ranks,
        device: if gpu.is_some() { "gpu" } else { "cpu" }.to_string(),
        adapter: gpu.map_or(crate::cpu::engine_name(plan_options.precision), |g| {
            g.adapter_name()
        }),
        shape,
        runs,
        step_ms,
        communication_ms: slowest(1),
        alone_ms: slowest(2),
        reduced_bytes,
        sent_bytes_per_rank: 2 * (ranks as u64 - 1) * reduced_bytes / ranks as u64,
        sequences_per_second: (ranks * shape.batch) as f64 / (step_ms / 1e3),
    })
}
