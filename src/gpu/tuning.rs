//! One-time tuning of `GemmKernel::Auto`: on this adapter, time every kernel Auto chooses
//! among (`GemmKernel::candidates`) on each matrix product a model runs, keep the fastest, and
//! cache the choices on disk for later runs.
//!
//! Auto's rules were measured on two adapters (llvmpipe and an NVIDIA H200); on others their
//! thresholds (how many tiles fill the GPU, where splitting K pays) can be wrong, and timing
//! the candidates is the only way to know. `rnn-wgpu tune` does it; the other commands load the
//! cache (`load_cache`). The cache is keyed by adapter, driver and crate version, so a driver
//! update or a new release tunes afresh.
//!
//! Different kernels add in different orders, so a tuned product can differ from the untuned
//! one in the last bits: results are reproducible for a given cache (the same seed on the same
//! adapter with the same cache gives the same bits), and `RNN_WGPU_TUNING=off` gives the
//! untuned rules' results. The library's `Gpu::new` never reads the cache.

use super::context::Gpu;
use super::gemm::{time_steps, GemmKernel};
use crate::Error;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A product as tuned: (m, n, k) of `C[m, n] = op(A)[m, k] op(B)[k, n]`, and whether A and B
/// are used transposed.
pub type Product = ((usize, usize, usize), (bool, bool));

/// A tuned kernel replaces Auto's rule only when its median is below this fraction of the
/// rule's: a tie is no reason to leave the rule, and noise should not flip the choice.
const MARGIN: f64 = 0.95;

/// Each candidate's timing batch runs about this long (a few products on a fast GPU).
const BATCH_SECONDS: f64 = 0.05;

/// Bumped when the file's layout changes; files of another format are replaced by `tune`.
const FORMAT: u64 = 1;

/// What a context has been told to choose (`Gpu::tuned_choice`), and the products recorded
/// through Auto while watched (`Gpu::watch_products`).
#[derive(Default)]
pub(crate) struct Choices {
    pub(crate) chosen: HashMap<Product, GemmKernel>,
    pub(crate) watched: Option<BTreeSet<Product>>,
}

/// One product's tuning: Auto's rule, what was chosen, and each candidate's median seconds.
pub struct Tuned {
    pub product: Product,
    pub rule: GemmKernel,
    pub choice: GemmKernel,
    pub seconds: Vec<(GemmKernel, f64)>,
}

impl Tuned {
    pub fn seconds_of(&self, kernel: GemmKernel) -> f64 {
        self.seconds
            .iter()
            .find(|(k, _)| *k == kernel)
            .map_or(f64::NAN, |(_, s)| *s)
    }
}

/// Times every candidate on `product` as Auto would run it (the 64x64 lanes tile from
/// textures where Auto would use them) and as the recurrence does (`gemm::time_steps`: op(A)
/// new each time, so packing it into a texture is paid every time), `rounds` times
/// interleaved, and returns the medians and
/// the choice: the fastest, if it beats Auto's rule by `MARGIN`, else the rule's kernel. The
/// context keeps the choice.
pub fn tune_product(gpu: &Gpu, product: Product, rounds: usize) -> Result<Tuned, Error> {
    let (shape, trans) = product;
    gpu.forget_choice(product);
    let rule = GemmKernel::Auto.resolve(gpu, shape, true);
    let candidates = GemmKernel::candidates(gpu);
    let mut reps = Vec::new();
    for &kernel in &candidates {
        gpu.set_choice(product, kernel);
        // The first batch compiles the pipelines and sizes the batches.
        let (once, _) = time_steps(gpu, (GemmKernel::Auto, None), shape, trans, 1)?;
        reps.push(((BATCH_SECONDS / once.max(1e-9)) as usize).clamp(1, 200));
    }
    let mut times = vec![Vec::new(); candidates.len()];
    for _ in 0..rounds.max(1) {
        for (i, &kernel) in candidates.iter().enumerate() {
            gpu.set_choice(product, kernel);
            let auto = (GemmKernel::Auto, None);
            times[i].push(time_steps(gpu, auto, shape, trans, reps[i])?.0);
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
        .expect("every adapter has candidates");
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

/// The cache's key for this context: adapter, backend, driver and this crate's version (a new
/// version may change the kernels).
pub fn adapter_key(gpu: &Gpu) -> String {
    let info = &gpu.info;
    format!(
        "{} | {:?} | {:04x}:{:04x} | {} {} | rnn-wgpu {}",
        info.name,
        info.backend,
        info.vendor,
        info.device,
        info.driver,
        info.driver_info,
        env!("CARGO_PKG_VERSION")
    )
}

/// "m x n x k op", the product's key in the cache.
fn product_key(((m, n, k), (ta, tb)): Product) -> String {
    let op = |t: bool| if t { 't' } else { 'n' };
    format!("{m}x{n}x{k} {}{}", op(ta), op(tb))
}

fn parse_product(key: &str) -> Option<Product> {
    let (dims, op) = key.split_once(' ')?;
    let dims: Vec<usize> = dims
        .split('x')
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    let op = op.as_bytes();
    let t = |c: u8| match c {
        b'n' => Some(false),
        b't' => Some(true),
        _ => None,
    };
    match (dims.as_slice(), op) {
        (&[m, n, k], &[a, b]) => Some(((m, n, k), (t(a)?, t(b)?))),
        _ => None,
    }
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

/// This adapter's choices in the cache at `path`, checked: every product key parses and every
/// kernel is one Auto may choose on this adapter.
pub fn read_choices(gpu: &Gpu, path: &Path) -> Result<Vec<(Product, GemmKernel)>, Error> {
    let adapters = read_file(path)?;
    let Some(entries) = adapters.get(&adapter_key(gpu)) else {
        return Ok(Vec::new());
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
    let candidates = GemmKernel::candidates(gpu);
    entries
        .iter()
        .map(|(key, name)| {
            let product = parse_product(key).ok_or_else(|| bad(format!("a product '{key}'")))?;
            let kernel = name
                .as_str()
                .and_then(GemmKernel::from_name)
                .filter(|k| candidates.contains(k))
                .ok_or_else(|| bad(format!("a kernel {name} for {key}")))?;
            Ok((product, kernel))
        })
        .collect()
}

/// Adds `tuned` to this adapter's choices in the cache at `path` (other adapters' and other
/// products' entries are kept), written atomically.
pub fn write_choices(gpu: &Gpu, path: &Path, tuned: &[(Product, GemmKernel)]) -> Result<(), Error> {
    let mut adapters = read_file(path)?;
    let entry = adapters
        .entry(adapter_key(gpu))
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let products = entry.as_object_mut().expect("an object");
    for &(product, kernel) in tuned {
        products.insert(product_key(product), Value::from(kernel.name()));
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
    crate::fsio::write_atomic(path, text.as_bytes())
}

/// Loads this adapter's tuned choices from `cache_path()` into the context; returns the file
/// and how many products it tunes (none: no file, no entry for this adapter, or tuning off).
pub fn load_cache(gpu: &Gpu) -> Result<Option<(PathBuf, usize)>, Error> {
    let Some(path) = cache_path() else {
        return Ok(None);
    };
    let choices = read_choices(gpu, &path)?;
    if choices.is_empty() {
        return Ok(None);
    }
    for &(product, kernel) in &choices {
        gpu.set_choice(product, kernel);
    }
    Ok(Some((path, choices.len())))
}
