//! The device: the adapter wgpu chose, its queue, limits and capabilities, the buffers made on
//! it, the work recorded for it, and the errors it reports. Knows nothing of kernels or of
//! what to run: `pipelines.rs` compiles the kernels, `policy.rs` chooses among them.

use super::kernels::CoopEdge;
use super::tiles::CoopShape;
use crate::error::Error;
use crate::precision::Precision;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one adapter is, for `rnn-wgpu devices` and for reports.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Name, vendor, device type, backend and driver, as the adapter reports them.
    pub info: wgpu::AdapterInfo,
    /// The adapter's own limits (what `Gpu::new` would request, not wgpu's defaults).
    pub limits: wgpu::Limits,
    /// Every feature the adapter offers; the engine uses `SHADER_F16`, `TIMESTAMP_QUERY` and
    /// the experimental cooperative matrices.
    pub features: wgpu::Features,
    /// The cooperative-matrix shapes the adapter lists (empty without them).
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
}

/// Counts of GPU work recorded since the context was made, so tests can check that a pass
/// issues the dispatches and submissions it promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkCounts {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Of `dispatches`, those recorded in the forward and in the backward recurrence's phase
    /// (`Phase::ForwardRecurrence`, `Phase::BackwardRecurrence`).
    pub recurrence_dispatches: [u64; 2],
}

/// Loop iterations after which llvmpipe ends every loop of an invocation: gallivm counts the
/// iterations of all of a shader's loops together in one counter per invocation
/// (`LP_MAX_TGSI_LOOP_ITERATIONS`, a guard against endless loops) and, once it reaches this,
/// leaves each loop at its next test. Nothing reports it; the results are just wrong (a GEMM
/// with K past about 65,000 in one dispatch misses the rest of its sums).
pub const LLVMPIPE_LOOP_LIMIT: u64 = 65_535;

/// The label of the scratch buffer of partial sums (`Device::scratch_partials`), also the memory
/// plan's name for it, so errors name it alike.
pub(crate) const PARTIAL_SUMS: &str = "partial sums (split K, column blocks)";

/// One wgpu device on the chosen adapter, with the bookkeeping the engine keeps beside it:
/// work and memory counters, the partial-sums scratch buffer, and the errors wgpu reports
/// asynchronously (uncaptured errors, device loss). `Gpu` dereferences to it.
pub struct Device {
    /// The logical device: buffers, pipelines and command encoders are made through it.
    pub device: wgpu::Device,
    /// Its queue: every submission and buffer write goes through it.
    pub queue: wgpu::Queue,
    /// The adapter's name, vendor, device type, backend and driver.
    pub info: wgpu::AdapterInfo,
    /// The adapter's own limits, all requested for the device.
    pub limits: wgpu::Limits,
    /// The tiles and subgroup size the cooperative-matrix kernels run with, or why they do not
    /// run.
    matrix_units: Result<CoopShape, String>,
    dispatches: AtomicU64,
    submissions: AtomicU64,
    recurrence_dispatches: [AtomicU64; 2],
    storage_bytes: AtomicU64,
    /// Partial sums: of matrix products split over parts of K (`gemm::k_parts`) and of column
    /// sums over blocks of rows; grown to the largest recorded so far. Their dispatches are
    /// ordered on the queue, so all share it.
    partials: Mutex<Option<wgpu::Buffer>>,
    /// Errors wgpu reports outside an error scope; collected instead of panicking.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it has been.
    lost: Arc<Mutex<Option<String>>>,
}

fn instance() -> wgpu::Instance {
    // Honours WGPU_BACKEND (vulkan, metal, dx12, ...).
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// What `--device auto` needs of every adapter wgpu finds (`auto_device::choose`).
pub fn adapter_kinds() -> Vec<crate::internals::auto_device::AdapterKind> {
    (enumerate_adapters().into_iter())
        .map(|a| crate::internals::auto_device::AdapterKind {
            name: a.info.name,
            device_type: a.info.device_type,
        })
        .collect()
}

/// Every adapter wgpu finds, in its order.
pub fn enumerate_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|adapter| AdapterSummary {
            info: adapter.get_info(),
            limits: adapter.limits(),
            features: adapter.features(),
            cooperative_matrices: adapter.cooperative_matrix_properties(),
        })
        .collect()
}

/// The environment variable that turns the cooperative-matrix kernels (f16 products and time
/// steps) on: wgpu offers cooperative matrices only as an experimental feature, so using them
/// is the user's explicit choice ("on"); off by default. "emulate" runs those kernels on 16 x 16
/// tiles with the matrix operations written out in plain WGSL, "emulate-8x8" on 8 x 8 tiles
/// (`MatrixUnits::Emulate`).
pub const MATRIX_UNITS_VAR: &str = "RNN_WGPU_MATRIX_UNITS";

/// Whether the matrix products of f16 operands and the f16 time steps run on cooperative
/// matrices (`RNN_WGPU_MATRIX_UNITS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatrixUnits {
    /// The tiled kernels for every product and step (the default).
    #[default]
    Off,
    /// gemm_coop.wgsl and step_coop.wgsl on the adapter's cooperative matrices, where it lists
    /// a square f16 x f16 -> f32 shape of a `CoopEdge` (the first of `CoopEdge::PREFERRED`).
    On,
    /// gemm_coop.wgsl and step_coop.wgsl on tiles of this edge with their cooperative-matrix
    /// operations replaced by plain WGSL (`coop_emulation.rs`), on any adapter with f16: slow,
    /// for checking those kernels' code on adapters without matrix units (CI's llvmpipe).
    Emulate(CoopEdge),
}

impl MatrixUnits {
    /// `RNN_WGPU_MATRIX_UNITS`: "on", "emulate" (16 x 16 tiles), "emulate-8x8", anything else
    /// off.
    pub fn from_env() -> MatrixUnits {
        match std::env::var(MATRIX_UNITS_VAR).as_deref() {
            Ok("on") => MatrixUnits::On,
            Ok("emulate") => MatrixUnits::Emulate(CoopEdge::Sixteen),
            Ok("emulate-8x8") => MatrixUnits::Emulate(CoopEdge::Eight),
            _ => MatrixUnits::Off,
        }
    }
}

/// The tiles and subgroup size to run the cooperative-matrix kernels with on `adapter` under
/// `mode`, or why they stay off: not asked for, no f16 or cooperative matrices, no square
/// f16 x f16 -> f32 shape of a `CoopEdge` listed, or a subgroup size that varies
/// (gemm_coop.wgsl and step_coop.wgsl are one subgroup per workgroup, and must know its size).
fn matrix_units(adapter: &wgpu::Adapter, mode: MatrixUnits) -> Result<CoopShape, String> {
    let f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
    match mode {
        MatrixUnits::Off => return Err(format!("off ({MATRIX_UNITS_VAR}=on turns them on)")),
        MatrixUnits::Emulate(edge) if f16 => {
            // The emulation needs no subgroup of any size: a lane per element of a tile gives
            // each operation one element per invocation (so that one dispatch under llvmpipe's
            // loop limit sums a K that is split into parts), and at 8x8 room for step_coop.wgsl's
            // 4 parts within WebGPU's 256 invocations.
            let subgroup = edge.size() * edge.size();
            let emulated = true;
            return Ok(CoopShape {
                edge,
                subgroup,
                emulated,
            });
        }
        MatrixUnits::Emulate(_) => return Err("emulated, but the adapter has no f16".into()),
        MatrixUnits::On => {}
    }
    let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    if !adapter.features().contains(needed) {
        return Err("the adapter has no cooperative matrices with f16".into());
    }
    let listed = adapter.cooperative_matrix_properties();
    let Some(edge) = fitting_edge(&listed) else {
        return Err("the adapter lists no 16x16x16 or 8x8x8 f16 x f16 -> f32 shape".into());
    };
    let info = adapter.get_info();
    if info.subgroup_min_size != info.subgroup_max_size {
        return Err(format!(
            "the subgroup size varies ({} to {})",
            info.subgroup_min_size, info.subgroup_max_size
        ));
    }
    let subgroup = info.subgroup_max_size;
    let emulated = false;
    Ok(CoopShape {
        edge,
        subgroup,
        emulated,
    })
}

/// The first of `CoopEdge::PREFERRED` whose square f16 x f16 -> f32 shape is `listed`.
fn fitting_edge(listed: &[wgpu::CooperativeMatrixProperties]) -> Option<CoopEdge> {
    use wgpu::CooperativeScalarType::{F16, F32};
    let lists = |edge: CoopEdge| {
        let t = edge.size();
        (listed.iter()).any(|p| {
            (p.m_size, p.n_size, p.k_size) == (t, t, t) && p.ab_type == F16 && p.cr_type == F32
        })
    };
    CoopEdge::PREFERRED.into_iter().find(|&edge| lists(edge))
}

/// The GPUs of the most capable kind wgpu finds (discrete before integrated before virtual;
/// never a CPU adapter), in wgpu's order: rank k of a machine's data-parallel ranks opens the
/// (k mod count)-th.
async fn gpus_for_ranks(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    let rank =
        |a: &wgpu::Adapter| crate::internals::auto_device::gpu_rank(a.get_info().device_type);
    let best = adapters.iter().filter_map(rank).max();
    (adapters.into_iter())
        .filter(|a| best.is_some() && rank(a) == best)
        .collect()
}

async fn choose_adapter(
    instance: &wgpu::Instance,
    local_rank: Option<usize>,
) -> Result<wgpu::Adapter, Error> {
    if let (Some(k), false) = (local_rank, std::env::var_os("WGPU_ADAPTER_NAME").is_some()) {
        let mut gpus = gpus_for_ranks(instance).await;
        if !gpus.is_empty() {
            let count = gpus.len();
            return Ok(gpus.swap_remove(k % count));
        }
    }
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted_lower = wanted.to_lowercase();
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        let names: Vec<String> = adapters
            .iter()
            .map(|a| format!("'{}'", a.get_info().name))
            .collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lower))
            .ok_or_else(|| {
                Error::Config(format!(
                    "WGPU_ADAPTER_NAME='{wanted}' matches no adapter; found: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoAdapter {
            detail: format!(" ({e})"),
        })
}

impl Device {
    /// The default high-performance adapter, or the one named by `WGPU_ADAPTER_NAME`, with
    /// the adapter's own limits requested (wgpu's defaults cap a storage binding at 128 MiB).
    pub(crate) async fn new(local_rank: Option<usize>, mode: MatrixUnits) -> Result<Device, Error> {
        let instance = instance();
        let adapter = choose_adapter(&instance, local_rank).await?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Timestamp queries where offered, for the per-phase GPU time of `rnn-wgpu bench`
        // (nothing records a query unless asked to: `Recorder::time_phases`); f16 storage
        // where offered, for `--precision f16`.
        let mut features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let matrix_units = matrix_units(&adapter, mode);
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        if matrix_units.is_ok() && mode == MatrixUnits::On {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: the user asked for wgpu's experimental cooperative matrices
            // (RNN_WGPU_MATRIX_UNITS=on), which wgpu documents may hit bugs of its own; only
            // gemm_coop.wgsl and step_coop.wgsl use them, on the shape the adapter lists.
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("rnn-wgpu"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("requesting a device from '{}': {e}", info.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lost_sink.lock().unwrap() = Some(format!("{reason:?}: {message}"));
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(error_chain(&e));
        }));
        Ok(Device {
            device,
            queue,
            info,
            limits,
            matrix_units,
            dispatches: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            recurrence_dispatches: Default::default(),
            storage_bytes: AtomicU64::new(0),
            partials: Mutex::new(None),
            uncaptured,
            lost,
        })
    }

    /// How many loop iterations one invocation may run before the driver ends its loops:
    /// `LLVMPIPE_LOOP_LIMIT` on llvmpipe, none elsewhere. Kernels whose loops grow with the
    /// problem (a GEMM's K, the persistent recurrence's steps) split their work into dispatches
    /// that stay well below it.
    pub fn loop_limit(&self) -> Option<u64> {
        let llvmpipe = self.info.driver == "llvmpipe" || self.info.name.starts_with("llvmpipe");
        llvmpipe.then_some(LLVMPIPE_LOOP_LIMIT)
    }

    /// Refuses work that would make one invocation run `iterations` loop iterations where the
    /// adapter ends loops (`loop_limit`; half of it, as a margin): a clear error instead of a
    /// silently wrong result. `what` names the work ("the loss over 9000000 rows").
    pub(crate) fn check_loops(&self, what: &str, iterations: u64) -> Result<(), Error> {
        match self.loop_limit() {
            Some(limit) if 2 * iterations > limit => Err(Error::Config(format!(
                "{what}: one invocation would run {iterations} loop iterations, and '{}' ends an \
                 invocation's loops after {limit} in all (wrong results, no error); use a \
                 smaller batch or sequence, or a GPU",
                self.info.name
            ))),
            _ => Ok(()),
        }
    }

    /// "name (backend, device type)", for reports.
    pub fn adapter_name(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The tiles and subgroup size of the cooperative-matrix kernels (f16 x f16 -> f32) where
    /// they are on, else why not (a line for reports).
    pub fn matrix_units(&self) -> Result<CoopShape, &str> {
        self.matrix_units
            .as_ref()
            .map(|&s| s)
            .map_err(String::as_str)
    }

    /// Whether the cooperative-matrix kernels run emulated in plain WGSL
    /// (`MatrixUnits::Emulate`).
    pub fn matrix_units_emulated(&self) -> bool {
        (self.matrix_units.as_ref()).is_ok_and(|coop| coop.emulated)
    }

    /// Refuses `precision` where the device cannot store it (f16 needs `Features::SHADER_F16`).
    pub fn check_precision(&self, precision: Precision) -> Result<(), Error> {
        let f16 = self.device.features().contains(wgpu::Features::SHADER_F16);
        if precision == Precision::F16 && !f16 {
            return Err(Error::Config(format!(
                "--precision f16: '{}' has no f16 storage in shaders (wgpu's SHADER_F16); \
                 use --precision f32",
                self.info.name
            )));
        }
        Ok(())
    }

    /// Whether the device can time compute passes (`Features::TIMESTAMP_QUERY`).
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Creates a storage buffer of `words` f32 words after checking it against the adapter's
    /// limits; `what` names it in the error ("the LSTM gates, [T, B, 4H]").
    pub(crate) fn storage_buffer(&self, what: &str, words: usize) -> Result<wgpu::Buffer, Error> {
        self.storage_buffer_of(what, words, Precision::F32)
    }

    /// `storage_buffer` of `len` elements of `precision`, in whole 4-byte words.
    pub(crate) fn storage_buffer_of(
        &self,
        what: &str,
        len: usize,
        precision: Precision,
    ) -> Result<wgpu::Buffer, Error> {
        // Zero-length bindings are invalid; a 16-byte floor also keeps dummies valid.
        let bytes = ((len * precision.element_bytes()).next_multiple_of(4)).max(16) as u64;
        for (limit, limit_name) in [
            (
                self.limits.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            ),
            (self.limits.max_buffer_size, "max_buffer_size"),
        ] {
            if bytes > limit {
                return Err(Error::Limit {
                    what: what.to_string(),
                    needed: bytes,
                    limit,
                    limit_name,
                    adapter: self.info.name.clone(),
                });
            }
        }
        self.storage_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A scratch buffer of at least `words` f32 words for partial sums: of split-K products (at
    /// most `gemm::SPLIT_PARTIALS_BYTES`, which `gemm::k_parts` respects) and of column sums
    /// over blocks of rows (the memory plan's "partial sums"). A larger one replaces the
    /// one kept; recorded dispatches keep theirs alive until they have run.
    pub(crate) fn scratch_partials(&self, words: usize) -> Result<wgpu::Buffer, Error> {
        let mut kept = self.partials.lock().unwrap();
        match &*kept {
            Some(buffer) if buffer.size() >= 4 * words as u64 => Ok(buffer.clone()),
            _ => {
                let buffer = self.storage_buffer(PARTIAL_SUMS, words)?;
                *kept = Some(buffer.clone());
                Ok(buffer)
            }
        }
    }

    /// Splits `groups` workgroups over x and y so neither exceeds the adapter's per-dimension
    /// limit; kernels rebuild the linear index as `x + y * num_workgroups.x`.
    pub(crate) fn grid(&self, what: &str, groups: u64) -> Result<[u32; 3], Error> {
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        let x = groups.clamp(1, max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(Error::Limit {
                what: format!("{what} ({groups} workgroups)"),
                needed: groups,
                limit: max * max,
                limit_name: "max_compute_workgroups_per_dimension squared",
                adapter: self.info.name.clone(),
            });
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Adds `counts` (a recording's work, at its submission) to the totals `work_counts`
    /// reports.
    pub(crate) fn count(&self, counts: WorkCounts) {
        self.dispatches
            .fetch_add(counts.dispatches, Ordering::Relaxed);
        self.submissions
            .fetch_add(counts.submissions, Ordering::Relaxed);
        for (total, n) in self
            .recurrence_dispatches
            .iter()
            .zip(counts.recurrence_dispatches)
        {
            total.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Dispatches and queue submissions recorded so far.
    pub fn work_counts(&self) -> WorkCounts {
        WorkCounts {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            submissions: self.submissions.load(Ordering::Relaxed),
            recurrence_dispatches: [0, 1]
                .map(|d| self.recurrence_dispatches[d].load(Ordering::Relaxed)),
        }
    }

    /// Bytes of storage buffers created through this context so far (model, optimizer state,
    /// workspaces; freed buffers are not subtracted).
    pub fn storage_bytes_created(&self) -> u64 {
        self.storage_bytes.load(Ordering::Relaxed)
    }

    /// An error once the device is lost (driver reset, unplugged, destroyed): nothing recorded
    /// for it can run, and waiting on it would not return.
    pub(crate) fn check_device(&self) -> Result<(), Error> {
        match &*self.lost.lock().unwrap() {
            Some(why) => Err(Error::Gpu(format!(
                "the GPU device '{}' was lost ({why}); results since the last completed step \
                 are gone. Start again (from the last checkpoint with --load)",
                self.info.name
            ))),
            None => Ok(()),
        }
    }

    /// Returns (and clears) errors wgpu reported outside an error scope.
    pub(crate) fn take_uncaptured_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.uncaptured.lock().unwrap())
    }
}

/// An error with its causes, which wgpu keeps in the source chain ("Validation Error" alone
/// names none).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(cause.to_string().trim());
        source = cause.source();
    }
    text
}
