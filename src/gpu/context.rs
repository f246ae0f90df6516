//! The one GPU context, `Gpu`: the device (`device.rs`), its compiled kernels (`pipelines.rs`)
//! and the kernel policy in force (`policy.rs`). Built once and passed by reference to
//! everything that computes; it dereferences to its `Device`.

use super::device::{Device, MatrixUnits};
use super::kernels::Kernel;
use super::pipelines::Pipelines;
use super::policy::{KernelPolicy, Product, Recurrence, RecurrenceShape, StepKernel};
use super::tiles::{GemmKernel, StepTile};
use crate::error::Error;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

/// The GPU context: one device on the chosen adapter (`Device`, to which it dereferences),
/// the kernels compiled for it so far (each pipeline on first use) and the kernel policy in
/// force (tuned products and recurrences, a forced step tile). Opening one is slow: make one
/// and pass it by reference to every model, optimizer and product that runs on it. Nothing
/// in it ties it to one model, and the policy may be changed while it is shared.
pub struct Gpu {
    device: Device,
    pipelines: Pipelines,
    /// Replaced whole, never changed in place: a recording holds the one it started with.
    policy: RwLock<Arc<KernelPolicy>>,
    /// The products recorded through `GemmKernel::Auto` while watched (`watch_products`).
    watched: Mutex<Option<BTreeSet<Product>>>,
}

impl std::ops::Deref for Gpu {
    type Target = Device;

    fn deref(&self) -> &Device {
        &self.device
    }
}

impl Gpu {
    /// The default high-performance adapter, or the one named by `WGPU_ADAPTER_NAME`, with
    /// the adapter's own limits requested (wgpu's defaults cap a storage binding at 128 MiB),
    /// and an empty kernel policy: the rules alone.
    /// The matrix units as `RNN_WGPU_MATRIX_UNITS` says (`MatrixUnits::from_env`).
    pub fn new() -> Result<Gpu, Error> {
        Gpu::open(None, MatrixUnits::from_env())
    }

    /// `new` with the matrix units in `mode`, whatever the environment says.
    pub fn with_matrix_units(mode: MatrixUnits) -> Result<Gpu, Error> {
        Gpu::open(None, mode)
    }

    /// `new` for rank `local_rank` of the data-parallel ranks on this machine: the
    /// (local_rank mod count)-th of its GPUs of the most capable kind, where it has any and
    /// `WGPU_ADAPTER_NAME` names none; else the adapter `new` opens.
    pub fn for_local_rank(local_rank: usize) -> Result<Gpu, Error> {
        Gpu::open(Some(local_rank), MatrixUnits::from_env())
    }

    fn open(local_rank: Option<usize>, mode: MatrixUnits) -> Result<Gpu, Error> {
        let device = pollster::block_on(Device::new(local_rank, mode))?;
        let pipelines = Pipelines::new(&device.device, device.matrix_units_emulated());
        Ok(Gpu {
            device,
            pipelines,
            policy: RwLock::default(),
            watched: Mutex::default(),
        })
    }

    pub(crate) fn pipelines(&self) -> &Pipelines {
        &self.pipelines
    }

    /// The kernel policy in force now.
    pub fn policy(&self) -> Arc<KernelPolicy> {
        self.policy.read().unwrap().clone()
    }

    /// Puts `policy` in force for the recordings started from now on.
    pub fn set_policy(&self, policy: KernelPolicy) {
        *self.policy.write().unwrap() = Arc::new(policy);
    }

    /// The policy in force, changed by `change`, put in force.
    fn change_policy(&self, change: impl FnOnce(&mut KernelPolicy)) {
        let mut policy = KernelPolicy::clone(&self.policy());
        change(&mut policy);
        self.set_policy(policy);
    }

    /// Makes Auto take `kernel` for `product` (what `tuning::tune_product` and
    /// `tuning::load_cache` do; also for tests). `kernel` should be one of
    /// `GemmKernel::candidates`, which run as Auto runs them.
    pub fn set_choice(&self, product: Product, kernel: GemmKernel) {
        self.change_policy(|p| {
            p.products.insert(product, kernel);
        });
    }

    /// Auto's rule again for `product`.
    pub fn forget_choice(&self, product: Product) {
        self.change_policy(|p| {
            p.products.remove(&product);
        });
    }

    /// How many products have a tuned kernel in the policy in force.
    pub fn tuned_products(&self) -> usize {
        self.policy().tuned_products()
    }

    /// Makes `Recurrence::Auto` take `recurrence` (Steps or Persistent) for `shape`, where the
    /// adapter runs it.
    pub fn set_recurrence_choice(&self, shape: RecurrenceShape, recurrence: Recurrence) {
        self.change_policy(|p| {
            p.recurrences.insert(shape, recurrence);
        });
    }

    /// The recurrence rule again for `shape`.
    pub fn forget_recurrence_choice(&self, shape: RecurrenceShape) {
        self.change_policy(|p| {
            p.recurrences.remove(&shape);
        });
    }

    /// Makes f16 models of `shape` run their time steps on `kernel` where the matrix units
    /// are on (what `bench::tune_steps` and `tuning::load_cache` do; also for tests).
    pub fn set_step_choice(&self, shape: RecurrenceShape, kernel: StepKernel) {
        self.change_policy(|p| {
            p.step_kernels.insert(shape, kernel);
        });
    }

    /// The rule again for the time steps of `shape` (the matrix units, where they are on).
    pub fn forget_step_choice(&self, shape: RecurrenceShape) {
        self.change_policy(|p| {
            p.step_kernels.remove(&shape);
        });
    }

    /// Makes the time steps of `shape` split K over `layers` layers of invocations of
    /// fused.wgsl (`StepTile::k_split`) or subgroups of step_coop.wgsl (`CoopStep::parts`) in
    /// place of the rule.
    pub fn set_step_split(&self, shape: RecurrenceShape, layers: u32) {
        self.change_policy(|p| {
            p.step_splits.insert(shape, layers);
        });
    }

    /// Makes the time steps of `shape` split K as the rule says again.
    pub fn forget_step_split(&self, shape: RecurrenceShape) {
        self.change_policy(|p| {
            p.step_splits.remove(&shape);
        });
    }

    /// Makes the fused step kernels run in workgroup shape `tile` for every model (None:
    /// `StepTile::for_shape`'s rule, or the matrix units' step kernels for f16 where they are
    /// on), to measure shapes against each other. Shapes with K whole sum in the same order
    /// whatever their other sides; a split K (`StepTile::k_split`) sums in another fixed order.
    pub fn force_step_tile(&self, tile: Option<StepTile>) {
        self.change_policy(|p| p.step_tile = tile);
    }

    /// The kernels this context has compiled so far, each once: each was recorded at least
    /// once, since pipelines are compiled on first use (for tests: which kernels ran).
    pub fn compiled_kernels(&self) -> Vec<Kernel> {
        self.pipelines.compiled_kernels()
    }

    /// Starts noting every product recorded through `GemmKernel::Auto` (to find a model's
    /// products for tuning: `watched_products` returns them).
    pub fn watch_products(&self) {
        *self.watched.lock().unwrap() = Some(BTreeSet::new());
    }

    /// Notes `product`, recorded through Auto, while watching.
    pub(crate) fn note_product(&self, product: Product) {
        if let Some(watched) = &mut *self.watched.lock().unwrap() {
            watched.insert(product);
        }
    }

    /// The products noted since `watch_products`, in order of shape; stops watching.
    pub fn watched_products(&self) -> Vec<Product> {
        let watched = self.watched.lock().unwrap().take();
        watched.unwrap_or_default().into_iter().collect()
    }
}
