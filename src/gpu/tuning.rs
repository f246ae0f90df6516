//! One-time tuning of the automatic choices: on this adapter, time every kernel
//! `GemmKernel::Auto` chooses among (`GemmKernel::candidates`) on each matrix product a model
//! runs, both ways of running its steps (`Recurrence::Auto`; `bench::tune_recurrence` times
//! them), and at f16 with the matrix units
//! on, both step kernels (`StepKernel`; `bench::tune_steps`); on the step kernel kept, K whole
//! and split over layers of invocations (`StepTile::k_split`) or subgroups (`CoopStep::parts`;
//! `bench::tune_step_split`);
//! keep the fastest, and cache the choices on disk for later runs.
//!
//! The rules were measured on two adapters (llvmpipe and an NVIDIA H200); on others their
//! thresholds (how many tiles fill the GPU, where splitting K pays, in a product or in a step,
//! how many FMAs a step may have for one workgroup to beat a dispatch per step, how many
//! such workgroups a GPU runs side by side) can be wrong, and timing the candidates is the only
//! way to know. `rnn-wgpu tune` does it; the other commands load the
//! cache (`load_cache`). The cache is keyed by adapter, driver, crate version and shader
//! sources, so a driver update or changed kernels are tuned afresh.
//!
//! Different kernels add in different orders, so a tuned product can differ from the untuned
//! one in the last bits: results are reproducible for a given cache (the same seed on the same
//! adapter with the same cache gives the same bits), and `RNN_WGPU_TUNING=off` gives the
//! untuned rules' results. The library's `Gpu::new` never reads the cache.

use super::context::Gpu;
use super::gemm::{matmul_using, time_products, Placement};
use super::kernels::Shader;
pub use super::policy::{Product, RecurrenceShape};
use super::policy::{Recurrence, StepKernel};
use super::recurrence::coop_step_refusal;
use super::tiles::{CoopStep, GemmKernel, StepTile};
use crate::error::Error;
use crate::internals::parity::Comparison;
use crate::precision::Precision;
use clap::ValueEnum;
use ndarray::{Array1, Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use std::path::{Path, PathBuf};

/// What a cache holds for one adapter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    /// The kernel `GemmKernel::Auto` takes for each tuned matrix product.
    pub products: Vec<(Product, GemmKernel)>,
    /// The way `Recurrence::Auto` runs the steps of each tuned shape: `Steps` or `Persistent`.
    pub recurrences: Vec<(RecurrenceShape, Recurrence)>,
    /// The kernel that runs the time steps of each tuned shape at f16 with the matrix units on.
    pub steps: Vec<(RecurrenceShape, StepKernel)>,
    /// The layers (or subgroups) the time steps of each tuned shape split K over
    /// (`StepTile::k_split`, `CoopStep::parts`).
    pub splits: Vec<(RecurrenceShape, u32)>,
}

impl Tuning {
    /// Choices held, products, recurrences, step kernels and their splits together.
    pub fn len(&self) -> usize {
        self.products.len() + self.recurrences.len() + self.steps.len() + self.splits.len()
    }

    /// Whether it holds no choice.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tuned choice replaces the rule only when its median is below this fraction of the
/// rule's: a tie is no reason to leave the rule, and noise should not flip the choice.
pub const MARGIN: f64 = 0.95;

/// `tune_product` stops timing a candidate after its first round at more than this many
/// times the fastest one's time.
const PRUNE: f64 = 2.0;

/// Each candidate's timing batch runs about this long (a few products on a fast GPU).
const BATCH_SECONDS: f64 = 0.05;

/// Bumped when the file's layout changes; files of another format are replaced by `tune`.
const FORMAT: u64 = 1;

/// A candidate's product may differ from the f64 answer by at most this `||gpu - cpu|| /
/// ||cpu||`: f32 sums of up to 64,000 terms in any order stay near 1e-6, while a kernel that
/// drops one K-slice of 2,048 or one tile, or reads a wrong row, is off by 1e-2 or more.
pub const CHECK_TOLERANCE: f64 = 1e-3;

/// One product's tuning: Auto's rule, what was chosen, each candidate's median seconds, and
/// the candidates left out because they failed or gave a wrong product (with why).
pub struct Tuned {
    /// The product tuned.
    pub product: Product,
    /// What Auto runs untuned (`GemmKernel::rule`).
    pub rule: GemmKernel,
    /// What Auto runs from now on: the fastest candidate where it beats the rule's time by
    /// `MARGIN` (or the rule was rejected), else the rule.
    pub choice: GemmKernel,
    /// Every timed candidate's median seconds per product, in candidate order.
    pub seconds: Vec<(GemmKernel, f64)>,
    /// The candidates left out before timing, with why (a failed run or a wrong product).
    pub rejected: Vec<(GemmKernel, String)>,
}

/// A product on random operands (a fixed seed: tuning is repeatable) and its answer in f64,
/// which every candidate must give before it is timed. Tuning is for adapters the kernels were
/// not tested on, and a kernel a driver miscompiles must not be cached for being fast.
pub struct Check {
    /// The product checked: its shape, transposes and operand element types.
    pub product: Product,
    /// A as stored: [m, k], or [k, m] when the product uses it transposed.
    pub a: Array2<f32>,
    /// B as stored: [k, n], or [n, k] when transposed.
    pub b: Array2<f32>,
    /// C before the product ([m, n]: tuning times `C += op(A) op(B) + bias`, as the engine runs).
    pub c: Array2<f32>,
    /// The bias added to every row, `[n]`.
    pub bias: Array1<f32>,
    /// `c + op(a) op(b) + bias` in f64.
    pub answer: Array2<f64>,
    /// The largest `||gpu - answer|| / ||answer||` a candidate may have.
    pub tolerance: f64,
}

impl Check {
    /// Random operands, C and bias in `[-1, 1)` for `product` (the same every time), A and B
    /// rounded to their element types, the answer computed from them in f64, and the
    /// tolerance `CHECK_TOLERANCE`.
    pub fn new(product: Product) -> Check {
        let Product {
            shape: (m, n, k),
            transposed: (trans_a, trans_b),
            operands,
        } = product;
        let mut rng = StdRng::seed_from_u64(0x7e57_c0de);
        let mut random = |(rows, cols): (usize, usize)| {
            Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
        };
        // The operands as they are stored, so that the answer is the product of what the GPU
        // reads (f16 operands are rounded on upload).
        let stored = |mut x: Array2<f32>, precision: Precision| {
            precision.round_array(&mut x);
            x
        };
        let a = stored(random(if trans_a { (k, m) } else { (m, k) }), operands.0);
        let b = stored(random(if trans_b { (n, k) } else { (k, n) }), operands.1);
        let c = random((m, n));
        let bias = random((1, n)).remove_axis(ndarray::Axis(0));
        // op(x) in f64 (the CPU product takes any layout: a transpose is a view)
        let wide = |x: ArrayView2<f32>, t: bool| {
            let x = x.mapv(f64::from);
            if t {
                x.reversed_axes()
            } else {
                x
            }
        };
        let mut answer =
            crate::cpu::matmul::product(&wide(a.view(), trans_a), &wide(b.view(), trans_b));
        answer += &c.mapv(f64::from);
        answer += &bias.mapv(f64::from);
        Check {
            product,
            a,
            b,
            c,
            bias,
            answer,
            tolerance: CHECK_TOLERANCE,
        }
    }

    /// Runs `kernel` on the check's operands as Auto runs it (the context's choice for the
    /// product becomes `kernel`) and compares its product with the answer. An error is the
    /// run's (the kernel would not compile or run here).
    pub fn compare(&self, gpu: &Gpu, kernel: GemmKernel) -> Result<Comparison, Error> {
        let (trans_a, trans_b) = self.product.transposed;
        gpu.set_choice(self.product, kernel);
        let run = matmul_using(
            gpu,
            (GemmKernel::Auto, None),
            Placement {
                pad: 0,
                operands: self.product.operands,
            },
            (self.a.view(), trans_a),
            (self.b.view(), trans_b),
            self.bias.as_slice(),
            Some(self.c.view()),
        )?;
        let got = run.product.as_standard_layout();
        let answer = self.answer.as_standard_layout();
        let (got, answer) = (got.as_slice(), answer.as_slice());
        Ok(Comparison::new(
            &kernel.name(),
            got.unwrap(),
            answer.unwrap(),
        ))
    }

    /// Why `kernel` may not be timed, if it may not: its run failed, or its product is off
    /// by more than the tolerance (the worst element named by row and column).
    pub fn rejects(&self, gpu: &Gpu, kernel: GemmKernel) -> Result<Option<String>, Error> {
        match self.compare(gpu, kernel) {
            Ok(c) if c.passes(self.tolerance) => Ok(None),
            Ok(c) => {
                let n = self.answer.ncols();
                Ok(Some(format!(
                    "wrong product: ||gpu - cpu|| / ||cpu|| = {:.3e} (at most {:.0e}), worst at \
                     row {} column {}: gpu {:.6e}, cpu {:.6e}",
                    c.rel_error,
                    self.tolerance,
                    c.worst_index / n,
                    c.worst_index % n,
                    c.worst_gpu,
                    c.worst_cpu
                )))
            }
            Err(e) => {
                // A lost device fails every candidate: that is the device's error, not theirs.
                gpu.check_device()?;
                Ok(Some(format!("failed: {e}")))
            }
        }
    }
}

impl Tuned {
    /// `kernel`'s median seconds per product; NaN when it was not timed (rejected, or not a
    /// candidate).
    pub fn seconds_of(&self, kernel: GemmKernel) -> f64 {
        self.seconds
            .iter()
            .find(|(k, _)| *k == kernel)
            .map_or(f64::NAN, |(_, s)| *s)
    }
}

/// Times every candidate on `product` as Auto would run it, `rounds` times interleaved (after
/// the first round, one more than `PRUNE` times as slow as the fastest is timed no more,
/// except the rule's), and returns the medians and the choice: the fastest, if it beats
/// Auto's rule by `MARGIN`, else the rule's kernel.
/// First every candidate must give the product right (`Check`); one that fails or is wrong
/// is left out, even the rule's (then the fastest right one is chosen). The context keeps the
/// choice.
pub fn tune_product(gpu: &Gpu, product: Product, rounds: usize) -> Result<Tuned, Error> {
    let candidates = GemmKernel::candidates(gpu, product);
    tune_product_among(gpu, &Check::new(product), &candidates, rounds)
}

/// `tune_product` among `kernels`, checked against `check` (whose product is the one tuned).
pub fn tune_product_among(
    gpu: &Gpu,
    check: &Check,
    kernels: &[GemmKernel],
    rounds: usize,
) -> Result<Tuned, Error> {
    let product = check.product;
    gpu.forget_choice(product);
    let rule = GemmKernel::rule(gpu, product);
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    for &kernel in kernels {
        match check.rejects(gpu, kernel)? {
            None => candidates.push(kernel),
            Some(why) => rejected.push((kernel, why)),
        }
    }
    if candidates.is_empty() {
        gpu.forget_choice(product);
        let whys: Vec<String> = rejected
            .iter()
            .map(|(kernel, why)| format!("{}: {why}", kernel.name()))
            .collect();
        return Err(Error::Gpu(format!(
            "no matrix-product kernel gives {} right on this adapter; {}",
            product_key(product),
            whys.join("; ")
        )));
    }
    let mut reps = Vec::new();
    for &kernel in &candidates {
        gpu.set_choice(product, kernel);
        // The first batch compiles the pipelines and sizes the batches.
        let (once, _) = time_products(gpu, (GemmKernel::Auto, None), product, 1)?;
        reps.push(((BATCH_SECONDS / once.max(1e-9)) as usize).clamp(1, 200));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for round in 0..rounds.max(1) {
        // After the first round, a candidate at more than `PRUNE` times the fastest is out
        // (on lavapipe the losers take seconds a product); the rule always stays in.
        let fastest = times
            .iter()
            .filter_map(|t| t.first())
            .fold(f64::MAX, |a, &b| a.min(b));
        for (i, &kernel) in candidates.iter().enumerate() {
            if round > 0 && kernel != rule && times[i][0] > PRUNE * fastest {
                continue;
            }
            gpu.set_choice(product, kernel);
            let auto = (GemmKernel::Auto, None);
            times[i].push(time_products(gpu, auto, product, reps[i])?.0);
        }
    }
    let seconds: Vec<(GemmKernel, f64)> = candidates
        .iter()
        .zip(times)
        .map(|(&kernel, mut t)| {
            t.sort_by(f64::total_cmp);
            (kernel, t[t.len() / 2])
        })
        .collect();
    let (fastest, best) = seconds
        .iter()
        .copied()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .expect("at least one candidate was right");
    let rule_seconds = seconds.iter().find(|(k, _)| *k == rule).map(|(_, s)| *s);
    let choice = match rule_seconds {
        Some(s) if best >= MARGIN * s => rule,
        _ => fastest,
    };
    gpu.set_choice(product, choice);
    Ok(Tuned {
        product,
        rule,
        choice,
        seconds,
        rejected,
    })
}

/// Where the cache lives: `RNN_WGPU_TUNING` (a file; `off` for none), else
/// `$XDG_CACHE_HOME/rnn-wgpu/tuning.json`, else `~/.cache/rnn-wgpu/tuning.json`.
pub fn cache_path() -> Option<PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = nonempty("RNN_WGPU_TUNING") {
        return (path != "off").then(|| PathBuf::from(path));
    }
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("rnn-wgpu").join("tuning.json"))
}

/// The cache's key for this context: adapter, backend, driver, this crate's version and a hash
/// of its shaders' sources (changed kernels are tuned afresh).
pub fn adapter_key(gpu: &Gpu) -> String {
    let info = &gpu.info;
    format!(
        "{} | {:?} | {:04x}:{:04x} | {} {} | rnn-wgpu {} | shaders {:016x}",
        info.name,
        info.backend,
        info.vendor,
        info.device,
        info.driver,
        info.driver_info,
        env!("CARGO_PKG_VERSION"),
        shaders_hash()
    )
}

/// FNV-1a over every shader file's source: the same on every build of the same sources.
fn shaders_hash() -> u64 {
    let bytes = Shader::ALL.iter().flat_map(|s| s.source().bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// "m x n x k op", a product's key in the cache (and its name in `rnn-wgpu tune`'s table),
/// followed by the operands' element types where they are not both f32 ("64x64x64 nt
/// f16,f16").
pub fn product_key(product: Product) -> String {
    let Product {
        shape: (m, n, k),
        transposed: (ta, tb),
        operands: (a, b),
    } = product;
    let op = |t: bool| if t { 't' } else { 'n' };
    let key = format!("{m}x{n}x{k} {}{}", op(ta), op(tb));
    if (a, b) == (Precision::F32, Precision::F32) {
        key
    } else {
        format!("{key} {},{}", a.name(), b.name())
    }
}

fn parse_product(key: &str) -> Option<Product> {
    let words: Vec<&str> = key.split(' ').collect();
    let (dims, op, operands) = match *words.as_slice() {
        [dims, op] => (dims, op, None),
        [dims, op, operands] => (dims, op, Some(operands)),
        _ => return None,
    };
    let dims: Vec<usize> = dims
        .split('x')
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    let t = |c: u8| match c {
        b'n' => Some(false),
        b't' => Some(true),
        _ => None,
    };
    let precision = |name: &str| Precision::from_str(name, true).ok();
    let operands = match operands.map(|o| o.split_once(',')) {
        None => (Precision::F32, Precision::F32),
        Some(Some((a, b))) => (precision(a)?, precision(b)?),
        Some(None) => return None,
    };
    match (dims.as_slice(), op.as_bytes()) {
        (&[m, n, k], &[a, b]) => Some(Product::new((m, n, k), (t(a)?, t(b)?)).of(operands)),
        _ => None,
    }
}

/// "recurrence lstm h=32 b=64" (f32; "... b=64 f16" at f16), a recurrence's key in the cache
/// (and its name in the table).
pub fn recurrence_key(shape: RecurrenceShape) -> String {
    shape_key("recurrence", shape, true)
}

/// "f16 steps lstm h=32 b=64", the key of a step kernel's choice in the cache (and its name in
/// the table); only f16 has the choice.
pub fn steps_key(shape: RecurrenceShape) -> String {
    shape_key("f16 steps", shape, false)
}

/// "step split lstm h=32 b=64" (f32; "... b=64 f16" at f16), the key of the layers (or
/// subgroups) the steps split K over in the cache (and its name in the table).
pub fn split_key(shape: RecurrenceShape) -> String {
    shape_key("step split", shape, true)
}

/// `what` and the shape; its precision named where `named` and it is not f32 (keys written
/// before the precision was part of them are f32's).
fn shape_key(what: &str, shape: RecurrenceShape, named: bool) -> String {
    let RecurrenceShape {
        cell,
        hidden,
        batch,
        precision,
    } = shape;
    let suffix = match precision {
        Precision::F16 if named => " f16",
        _ => "",
    };
    format!("{what} {cell} h={hidden} b={batch}{suffix}")
}

/// The shape of a key `shape_key` wrote for `what`, of `precision` unless the key names f16.
fn parse_shape_key(what: &str, key: &str, precision: Precision) -> Option<RecurrenceShape> {
    let rest = key.strip_prefix(what)?.strip_prefix(' ')?;
    let words: Vec<&str> = rest.split(' ').collect();
    let (cell, hidden, batch, precision) = match *words.as_slice() {
        [cell, hidden, batch] => (cell, hidden, batch, precision),
        [cell, hidden, batch, "f16"] => (cell, hidden, batch, Precision::F16),
        _ => return None,
    };
    Some(RecurrenceShape::new(
        cell.parse().ok()?,
        hidden.strip_prefix("h=")?.parse().ok()?,
        (batch.strip_prefix("b=")?.parse().ok()?, precision),
    ))
}

/// The whole cache file: every adapter's choices (none if there is no file yet).
fn read_file(path: &Path) -> Result<Map<String, Value>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(Error::Io(format!("cannot read {}: {e}", path.display()))),
    };
    let bad = |why: String| {
        Error::Value(format!(
            "the tuning cache {} {why}: delete it (or set RNN_WGPU_TUNING=off)",
            path.display()
        ))
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("is not JSON ({e})")))?;
    let format = value.get("format").and_then(Value::as_u64);
    match (format, value.get("adapters")) {
        (Some(FORMAT), Some(Value::Object(adapters))) => Ok(adapters.clone()),
        (Some(f), _) if f != FORMAT => Ok(Map::new()),
        _ => Err(bad("has no \"format\": 1 and \"adapters\" object".into())),
    }
}

/// This adapter's choices in the cache at `path`, checked: every key parses, every kernel is
/// one Auto may choose on this adapter, every persistent recurrence fits, every split of K
/// fits the step kernel it applies to.
pub fn read_tuning(gpu: &Gpu, path: &Path) -> Result<Tuning, Error> {
    let adapters = read_file(path)?;
    let mut tuning = Tuning::default();
    let Some(entries) = adapters.get(&adapter_key(gpu)) else {
        return Ok(tuning);
    };
    let bad = |what: String| {
        Error::Value(format!(
            "the tuning cache {} has {what} for '{}': delete it (or set RNN_WGPU_TUNING=off)",
            path.display(),
            gpu.info.name
        ))
    };
    let entries = entries
        .as_object()
        .ok_or_else(|| bad("no object of products".into()))?;
    for (key, value) in entries {
        let name = value.as_str().unwrap_or_default();
        if let Some(shape) = parse_shape_key("f16 steps", key, Precision::F16) {
            let kernel = (name.parse().ok())
                .ok_or_else(|| bad(format!("a step kernel {value} for {key}")))?;
            tuning.steps.push((shape, kernel));
            continue;
        }
        if let Some(shape) = parse_shape_key("step split", key, Precision::F32) {
            let layers = (value.as_u64())
                .filter(|k| (1..=StepTile::MAX_K_SPLIT as u64).contains(k))
                .ok_or_else(|| bad(format!("a split of K {value} for {key}")))?;
            tuning.splits.push((shape, layers as u32));
            continue;
        }
        if let Some(shape) = parse_shape_key("recurrence", key, Precision::F32) {
            let recurrence = name
                .parse()
                .ok()
                .filter(|r| *r != Recurrence::Auto)
                .ok_or_else(|| bad(format!("a recurrence {value} for {key}")))?;
            tuning.recurrences.push((shape, recurrence));
            continue;
        }
        let product = parse_product(key).ok_or_else(|| bad(format!("a product '{key}'")))?;
        let kernel = GemmKernel::from_name(name)
            .filter(|k| GemmKernel::candidates(gpu, product).contains(k))
            .ok_or_else(|| bad(format!("a kernel {value} for {key}")))?;
        tuning.products.push((product, kernel));
    }
    if let Some((shape, why)) = unfit_split(gpu, &tuning) {
        return Err(bad(format!("a split of K for {} {why}", split_key(shape))));
    }
    Ok(tuning)
}

/// A split of `tuning`'s that the matrix units' step kernel cannot run where it applies to it
/// (an f16 shape whose steps are not tuned to the tiles, the units on), and why: a split tuned
/// on the tiles with the units off, say, and one the units' workgroups cannot hold.
fn unfit_split(gpu: &Gpu, tuning: &Tuning) -> Option<(RecurrenceShape, String)> {
    let coop = gpu.matrix_units().ok()?;
    let tiled = |shape| tuning.steps.contains(&(shape, StepKernel::Tiled));
    (tuning.splits.iter())
        .filter(|(shape, _)| shape.precision == Precision::F16 && !tiled(*shape))
        .find_map(|&(shape, parts)| {
            let why = coop_step_refusal(gpu, CoopStep { coop, parts })?;
            Some((shape, format!("that the matrix units cannot run: {why}")))
        })
}

/// Adds `tuned` to this adapter's choices in the cache at `path` (other adapters' and other
/// entries are kept), written atomically.
pub fn write_tuning(gpu: &Gpu, path: &Path, tuned: &Tuning) -> Result<(), Error> {
    let mut adapters = read_file(path)?;
    let entry = adapters
        .entry(adapter_key(gpu))
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let entries = entry.as_object_mut().expect("an object");
    for &(product, kernel) in &tuned.products {
        entries.insert(product_key(product), Value::from(kernel.name()));
    }
    for &(shape, recurrence) in &tuned.recurrences {
        entries.insert(recurrence_key(shape), Value::from(recurrence.name()));
    }
    for &(shape, kernel) in &tuned.steps {
        entries.insert(steps_key(shape), Value::from(kernel.name()));
    }
    for &(shape, layers) in &tuned.splits {
        entries.insert(split_key(shape), Value::from(layers));
    }
    let mut file = Map::new();
    file.insert("format".into(), Value::from(FORMAT));
    file.insert("adapters".into(), Value::Object(adapters));
    let mut text = serde_json::to_string_pretty(&Value::Object(file))
        .map_err(|e| Error::Io(format!("cannot encode the tuning cache: {e}")))?;
    text.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::internals::fsio::write_atomic(path, text.as_bytes())
}

/// Makes the context take `tuning`'s choices.
pub fn apply(gpu: &Gpu, tuning: &Tuning) {
    for &(product, kernel) in &tuning.products {
        gpu.set_choice(product, kernel);
    }
    for &(shape, recurrence) in &tuning.recurrences {
        gpu.set_recurrence_choice(shape, recurrence);
    }
    for &(shape, kernel) in &tuning.steps {
        gpu.set_step_choice(shape, kernel);
    }
    for &(shape, layers) in &tuning.splits {
        gpu.set_step_split(shape, layers);
    }
}

/// Loads this adapter's tuned choices from `cache_path()` into the context; returns the file
/// and how many choices it holds (none: no file, no entry for this adapter, or tuning off).
pub fn load_cache(gpu: &Gpu) -> Result<Option<(PathBuf, usize)>, Error> {
    let Some(path) = cache_path() else {
        return Ok(None);
    };
    let tuning = read_tuning(gpu, &path)?;
    if tuning.is_empty() {
        return Ok(None);
    }
    apply(gpu, &tuning);
    Ok(Some((path, tuning.len())))
}
