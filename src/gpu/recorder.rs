//! Records a whole pass (every time step, forward and backward) as one command buffer: each
//! dispatch's parameters go into one uniform arena read at a dynamic offset, so recording
//! needs no buffer writes between dispatches, and the host submits once and waits once.
//!
//! On request (`time_phases`, where the adapter has timestamp queries) the submission also
//! measures GPU time per `Phase`: compute passes are then split where the phase changes, each
//! pass writes a timestamp at its beginning and its end, and the query results come back with
//! the same single read-back. Copies and clears between passes are not timed.

use super::context::Gpu;
use super::device::{error_chain, WorkCounts};
use super::kernels::{Elements, Kernel, Layout, Slot, PARAMS_BINDING_SIZE};
use super::policy::KernelPolicy;
use super::tiles::PipelineShape;
use crate::error::Error;
use crate::precision::Precision;
use std::collections::HashMap;
use std::sync::Arc;

/// The part of a training step an op belongs to, for the per-phase GPU time that
/// `Recorder::time_phases` measures. The pass sets it as it records (`Recorder::set_phase`);
/// phases recur per time segment (and per recomputed segment) and their times add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The input projection `x W_ih^T + b_ih` of a segment's steps (recomputed ones included).
    InputGemm,
    /// Per step the fused step kernel (or a persistent run of steps); the head and the loss.
    ForwardRecurrence,
    /// dE/dh from the head, then per step back the fused step kernel (or a persistent run); the
    /// per-step gradient norms and dE/dh_0.
    BackwardRecurrence,
    /// dW_ih, dW_hh, the bias and head gradients over all rows of a segment, and dx.
    WeightGradients,
    /// Gradient norm, clipping and the parameter update.
    Optimizer,
}

impl Phase {
    /// Every phase, in the order a training step first enters them.
    pub const ALL: [Phase; 5] = [
        Phase::InputGemm,
        Phase::ForwardRecurrence,
        Phase::BackwardRecurrence,
        Phase::WeightGradients,
        Phase::Optimizer,
    ];

    /// Its key in `rnn-wgpu bench --json`'s `phases_ms`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::InputGemm => "input_gemm",
            Phase::ForwardRecurrence => "forward_recurrence",
            Phase::BackwardRecurrence => "backward_recurrence",
            Phase::WeightGradients => "weight_gradients",
            Phase::Optimizer => "optimizer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// GPU time per phase of one submission, in milliseconds: the sum over the compute passes
/// tagged with each phase of (end - beginning) timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    ms: [f64; Phase::ALL.len()],
    /// Compute passes whose time is in `ms`.
    pub passes: usize,
    /// Of those, phases that had at least one pass.
    seen: [bool; Phase::ALL.len()],
}

impl PhaseTimes {
    /// Milliseconds of GPU time in `phase`; None when the submission had no pass of it.
    pub fn get(&self, phase: Phase) -> Option<f64> {
        self.seen[phase.index()].then_some(self.ms[phase.index()])
    }

    /// The sum over every phase.
    pub fn total_ms(&self) -> f64 {
        self.ms.iter().sum()
    }
}

enum Op {
    Dispatch {
        kernel: Kernel,
        /// Its buffers' element types.
        elements: Elements,
        /// The workgroup shape of a `Kernel::tiled` kernel.
        tile: Option<PipelineShape>,
        params_offset: u32,
        /// The storage buffers in the order of the layout's slots.
        bound: Vec<wgpu::Buffer>,
        groups: [u32; 3],
    },
    Clear(wgpu::Buffer),
    Copy {
        source: wgpu::Buffer,
        source_offset: u64,
        destination: wgpu::Buffer,
        destination_offset: u64,
        bytes: u64,
    },
}

/// A part of a buffer to read back after the submission, in elements of `precision` (f16
/// elements come back as f32).
pub struct Read<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub len: usize,
    pub precision: Precision,
}

impl<'a> Read<'a> {
    /// `len` f32 words from word `offset`.
    pub fn words(buffer: &'a wgpu::Buffer, offset: usize, len: usize) -> Self {
        Read {
            buffer,
            offset,
            len,
            precision: Precision::F32,
        }
    }

    /// The whole 4-byte words that hold the elements, as (first byte, bytes): buffer copies
    /// move whole words.
    fn word_span(&self) -> (u64, u64) {
        let size = self.precision.element_bytes() as u64;
        let first = (self.offset as u64 * size) / 4 * 4;
        let end = ((self.offset + self.len) as u64 * size).next_multiple_of(4);
        (first, end - first)
    }

    /// The elements out of the bytes `word_span` copied.
    fn decode(&self, bytes: &[u8]) -> Vec<f32> {
        match self.precision {
            Precision::F32 => bytemuck::cast_slice(bytes).to_vec(),
            Precision::F16 => {
                let skip = (self.offset * 2) % 4;
                (bytes[skip..skip + 2 * self.len].chunks_exact(2))
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect()
            }
        }
    }
}

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    arena: Vec<u8>,
    ops: Vec<Op>,
    /// The phase of each op in `ops` (None before the first `set_phase`).
    phases: Vec<Option<Phase>>,
    phase: Option<Phase>,
    /// Whether `submit_and_read_timed` measures GPU time per phase.
    timed: bool,
    /// The kernel policy in force when recording began: every choice in it comes from here.
    policy: Arc<KernelPolicy>,
}

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder {
            gpu,
            arena: Vec::new(),
            ops: Vec::new(),
            phases: Vec::new(),
            phase: None,
            timed: false,
            policy: gpu.policy(),
        }
    }

    /// The kernel policy this recording follows.
    pub(crate) fn policy(&self) -> &KernelPolicy {
        &self.policy
    }

    /// Asks the submission to measure GPU time per phase with timestamp queries. Returns
    /// false (and records as usual) where the device lacks `Features::TIMESTAMP_QUERY`.
    pub fn time_phases(&mut self) -> bool {
        self.timed = self.gpu.has_timestamps();
        self.timed
    }

    /// Tags the ops recorded from now on with `phase` (only `time_phases` looks at it).
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = Some(phase);
    }

    fn push(&mut self, op: Op) {
        self.ops.push(op);
        self.phases.push(self.phase);
    }

    /// Records `kernel` over `groups` workgroups with `params` and the storage `buffers` in
    /// the order of its layout's slots.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        self.dispatch_as((kernel, Elements::F32), params, buffers, groups);
    }

    /// `dispatch` of a kernel compiled for buffers of `elements`.
    pub fn dispatch_as<P: bytemuck::Pod>(
        &mut self,
        (kernel, elements): (Kernel, Elements),
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        self.push_dispatch((kernel, elements, None), params, buffers, groups);
    }

    /// `dispatch_as` of a `Kernel::tiled` kernel in workgroup shape `shape`.
    pub(crate) fn dispatch_tiled<P: bytemuck::Pod>(
        &mut self,
        (kernel, elements, shape): (Kernel, Elements, impl Into<PipelineShape>),
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let key = (kernel, elements, Some(shape.into()));
        self.push_dispatch(key, params, buffers, groups);
    }

    fn push_dispatch<P: bytemuck::Pod>(
        &mut self,
        (kernel, elements, tile): (Kernel, Elements, Option<PipelineShape>),
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        assert_eq!(
            kernel.tiled(),
            tile.is_some(),
            "{kernel:?}: workgroup shape"
        );
        let bytes = bytemuck::bytes_of(params);
        assert!(
            bytes.len() as u64 <= PARAMS_BINDING_SIZE,
            "params too large"
        );
        let resources = (kernel.layout().slots().iter())
            .filter(|&&slot| slot != Slot::Params)
            .count();
        assert_eq!(
            buffers.len(),
            resources,
            "{kernel:?} binds {resources} buffers"
        );
        let align = self.gpu.limits.min_uniform_buffer_offset_alignment as usize;
        let params_offset = self.arena.len().next_multiple_of(align);
        self.arena.resize(params_offset, 0);
        self.arena.extend_from_slice(bytes);
        self.push(Op::Dispatch {
            kernel,
            elements,
            tile,
            params_offset: params_offset as u32,
            bound: buffers.iter().map(|&b| b.clone()).collect(),
            groups,
        });
    }

    /// Fills the whole buffer with zeros.
    pub fn clear(&mut self, buffer: &wgpu::Buffer) {
        self.push(Op::Clear(buffer.clone()));
    }

    /// Copies `words` f32 words between buffers, offsets in words.
    pub fn copy(
        &mut self,
        source: &wgpu::Buffer,
        source_offset: usize,
        destination: &wgpu::Buffer,
        destination_offset: usize,
        words: usize,
    ) {
        self.push(Op::Copy {
            source: source.clone(),
            source_offset: source_offset as u64 * 4,
            destination: destination.clone(),
            destination_offset: destination_offset as u64 * 4,
            bytes: words as u64 * 4,
        });
    }

    /// The entry points recorded so far, in order.
    pub fn kernels(&self) -> Vec<Kernel> {
        (self.ops.iter())
            .filter_map(|op| match op {
                Op::Dispatch { kernel, .. } => Some(*kernel),
                _ => None,
            })
            .collect()
    }

    /// Submits everything recorded as one command buffer, then reads back `reads` (copied
    /// into one staging buffer in the same submission) with a single wait.
    pub fn submit_and_read(self, reads: &[Read]) -> Result<Vec<Vec<f32>>, Error> {
        self.submit_and_read_timed(reads).map(|(data, _)| data)
    }

    /// Whether dispatch `k` begins a compute pass: the op before it is no dispatch or, when
    /// timed, belongs to another phase.
    fn begins_pass(&self, k: usize) -> bool {
        matches!(self.ops[k], Op::Dispatch { .. })
            && (k == 0
                || !matches!(self.ops[k - 1], Op::Dispatch { .. })
                || (self.timed && self.phases[k - 1] != self.phases[k]))
    }

    /// Whether op `k` is a dispatch that goes into the compute pass open before it.
    fn continues_pass(&self, k: usize) -> bool {
        k < self.ops.len() && matches!(self.ops[k], Op::Dispatch { .. }) && !self.begins_pass(k)
    }

    /// `submit_and_read`, plus the GPU time per phase when `time_phases` was granted.
    pub fn submit_and_read_timed(
        mut self,
        reads: &[Read],
    ) -> Result<(Vec<Vec<f32>>, Option<PhaseTimes>), Error> {
        let gpu = self.gpu;
        let device = &gpu.device;
        gpu.check_device()?;
        let oom_scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation_scope = device.push_error_scope(wgpu::ErrorFilter::Validation);

        let timed_passes = match self.timed {
            true => (0..self.ops.len())
                .filter(|&k| self.begins_pass(k) && self.phases[k].is_some())
                .count(),
            false => 0,
        };
        let timestamps = Timestamps::new(device, timed_passes);
        // The reads first, then the timestamps (u64 each) at the end of the staging buffer.
        let read_bytes: u64 = reads.iter().map(|r| r.word_span().1).sum();
        let staging_bytes = read_bytes + timestamps.bytes();
        let staging = (staging_bytes > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back staging"),
                size: staging_bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        if let Some(staging) = &staging {
            self.copy_reads_to(reads, staging);
        }
        let params = self.params_buffer();
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let encoded = self.encode(&mut encoder, &params, &timestamps);
        debug_assert_eq!(encoded.pass_phases.len(), timed_passes);
        if let Some(staging) = &staging {
            timestamps.resolve_into(&mut encoder, staging, read_bytes);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.count(self.work_counts(encoded.dispatches));
        check_errors(gpu, [validation_scope, oom_scope])?;

        let Some(staging) = &staging else {
            return Ok((Vec::new(), self.timed.then(PhaseTimes::default)));
        };
        let data = map_for_reading(device, staging)?;
        let (mut bytes, stamps) = data.split_at(read_bytes as usize);
        let mut result = Vec::with_capacity(reads.len());
        for read in reads {
            let (_, len) = read.word_span();
            let (this, rest) = bytes.split_at(if read.len > 0 { len as usize } else { 0 });
            result.push(if read.len > 0 {
                read.decode(this)
            } else {
                Vec::new()
            });
            bytes = rest;
        }
        let times = self.timed.then(|| {
            let stamps: Vec<u64> = stamps
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            phase_times(&encoded.pass_phases, &stamps, gpu)
        });
        Ok((result, times))
    }

    /// Records copies of `reads` into `staging`, one after another from its start.
    fn copy_reads_to(&mut self, reads: &[Read], staging: &wgpu::Buffer) {
        let mut at = 0;
        for read in reads.iter().filter(|r| r.len > 0) {
            let (first, bytes) = read.word_span();
            self.push(Op::Copy {
                source: read.buffer.clone(),
                source_offset: first,
                destination: staging.clone(),
                destination_offset: at,
                bytes,
            });
            at += bytes;
        }
    }

    /// The uniform buffer of every dispatch's parameters (the arena), padded so the last
    /// dispatch's binding of `PARAMS_BINDING_SIZE` bytes stays inside it.
    fn params_buffer(&mut self) -> wgpu::Buffer {
        self.arena.resize(
            (self.arena.len() + PARAMS_BINDING_SIZE as usize).max(256),
            0,
        );
        // Written through the queue rather than mapped at creation: mapping a buffer of a
        // device that was lost meanwhile panics inside wgpu.
        let params = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dispatch params"),
            size: self.arena.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu.queue.write_buffer(&params, 0, &self.arena);
        params
    }

    /// Encodes every op: one compute pass per run of consecutive dispatches (of one phase when
    /// timed; wgpu inserts the barriers between dependent dispatches inside a pass), clears
    /// and copies between them.
    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        timestamps: &Timestamps,
    ) -> Encoded {
        let gpu = self.gpu;
        // wgpu::Buffer hashes by its immutable id; the interior mutability clippy sees is the
        // mapping state, which the key never looks at.
        #[allow(clippy::mutable_key_type)]
        let mut bind_groups: HashMap<(Layout, Vec<wgpu::Buffer>), wgpu::BindGroup> = HashMap::new();
        let mut encoded = Encoded {
            dispatches: 0,
            pass_phases: Vec::new(),
        };
        let mut k = 0;
        while k < self.ops.len() {
            let op = &self.ops[k];
            k += 1;
            match op {
                Op::Dispatch { .. } => {
                    let phase = self.phases[k - 1].filter(|_| self.timed);
                    let timestamp_writes = phase.map(|phase| {
                        encoded.pass_phases.push(phase);
                        timestamps.writes(encoded.pass_phases.len() - 1)
                    });
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    let mut next = Some(op);
                    while let Some(Op::Dispatch {
                        kernel,
                        elements,
                        tile,
                        params_offset,
                        bound,
                        groups,
                    }) = next
                    {
                        let layout = kernel.layout();
                        let bind_group = bind_groups
                            .entry((layout, bound.clone()))
                            .or_insert_with(|| make_bind_group(gpu, layout, bound, params));
                        pass.set_pipeline(&gpu.pipelines().pipeline(*kernel, *elements, *tile));
                        pass.set_bind_group(0, &*bind_group, &[*params_offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        encoded.dispatches += 1;
                        next = self.continues_pass(k).then(|| {
                            k += 1;
                            &self.ops[k - 1]
                        });
                    }
                }
                Op::Clear(buffer) => encoder.clear_buffer(buffer, 0, None),
                Op::Copy {
                    source,
                    source_offset,
                    destination,
                    destination_offset,
                    bytes,
                } => encoder.copy_buffer_to_buffer(
                    source,
                    *source_offset,
                    destination,
                    *destination_offset,
                    *bytes,
                ),
            }
        }
        encoded
    }

    /// The submission's counts, for `Gpu::work_counts`.
    fn work_counts(&self, dispatches: u64) -> WorkCounts {
        let in_phase = |phase: Phase| {
            (self.ops.iter().zip(&self.phases))
                .filter(|(op, p)| matches!(op, Op::Dispatch { .. }) && **p == Some(phase))
                .count() as u64
        };
        WorkCounts {
            dispatches,
            submissions: 1,
            recurrence_dispatches: [
                in_phase(Phase::ForwardRecurrence),
                in_phase(Phase::BackwardRecurrence),
            ],
        }
    }
}

/// What `Recorder::encode` did: its dispatches, and the phase of each timed pass in the order
/// of their timestamp pairs.
struct Encoded {
    dispatches: u64,
    pass_phases: Vec<Phase>,
}

/// Two timestamps per timed pass, in query sets of at most `QUERY_SET_MAX_QUERIES`, and the
/// buffer they are resolved into.
struct Timestamps {
    sets: Vec<wgpu::QuerySet>,
    resolved: Option<wgpu::Buffer>,
    queries: u64,
}

impl Timestamps {
    const PER_SET: u64 = wgpu::QUERY_SET_MAX_QUERIES as u64;

    fn new(device: &wgpu::Device, timed_passes: usize) -> Timestamps {
        let queries = 2 * timed_passes as u64;
        let sets = (0..queries.div_ceil(Self::PER_SET))
            .map(|set| {
                device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("phase timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: (queries - set * Self::PER_SET).min(Self::PER_SET) as u32,
                })
            })
            .collect();
        let resolved = (queries > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved phase timestamps"),
                size: queries * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        });
        Timestamps {
            sets,
            resolved,
            queries,
        }
    }

    /// Bytes of the resolved timestamps.
    fn bytes(&self) -> u64 {
        self.queries * 8
    }

    /// Where timed pass `pass` writes its beginning and end.
    fn writes(&self, pass: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        let query = 2 * pass as u64;
        let index = (query % Self::PER_SET) as u32;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.sets[(query / Self::PER_SET) as usize],
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: Some(index + 1),
        }
    }

    /// Resolves every query and copies the results into `staging` from byte `at`.
    fn resolve_into(&self, encoder: &mut wgpu::CommandEncoder, staging: &wgpu::Buffer, at: u64) {
        let Some(resolved) = &self.resolved else {
            return;
        };
        for (set, query_set) in self.sets.iter().enumerate() {
            let first = set as u64 * Self::PER_SET;
            let count = (self.queries - first).min(Self::PER_SET);
            encoder.resolve_query_set(query_set, 0..count as u32, resolved, first * 8);
        }
        encoder.copy_buffer_to_buffer(resolved, 0, staging, at, self.bytes());
    }
}

/// The errors the submission raised in `scopes` or uncaptured, as one error.
///
/// wgpu-core reports validation and allocation errors synchronously, so the scopes resolve at
/// once; checking them before mapping turns a bad submission into an error instead of a wait
/// on work that never ran.
fn check_errors(gpu: &Gpu, scopes: [wgpu::ErrorScopeGuard; 2]) -> Result<(), Error> {
    let errors: Vec<String> = scopes
        .into_iter()
        .flat_map(|scope| pollster::block_on(scope.pop()))
        .map(|e| error_chain(&e))
        .chain(gpu.take_uncaptured_errors())
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    // A lost device fails everything with validation errors; say what happened.
    let _ = gpu.device.poll(wgpu::PollType::Poll);
    gpu.check_device()?;
    Err(Error::Gpu(errors.join("; ")))
}

/// Waits for the submission and maps `staging` for reading.
fn map_for_reading(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
) -> Result<wgpu::BufferView, Error> {
    let (sender, receiver) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |status| {
        let _ = sender.send(status);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    receiver
        .recv()
        .map_err(|_| Error::Gpu("the read-back mapping was dropped".into()))?
        .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))?;
    staging
        .get_mapped_range(..)
        .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))
}

/// Sums (end - beginning) of each pass into its phase, in milliseconds. A pass whose end reads
/// earlier than its beginning would give a negative time: it is kept so callers can see it.
fn phase_times(pass_phases: &[Phase], stamps: &[u64], gpu: &Gpu) -> PhaseTimes {
    let ns_per_tick = gpu.queue.get_timestamp_period() as f64;
    let mut times = PhaseTimes {
        passes: pass_phases.len(),
        ..Default::default()
    };
    for (phase, pair) in pass_phases.iter().zip(stamps.chunks_exact(2)) {
        let ticks = pair[1] as f64 - pair[0] as f64;
        times.ms[phase.index()] += ticks * ns_per_tick / 1e6;
        times.seen[phase.index()] = true;
    }
    times
}

fn make_bind_group(
    gpu: &Gpu,
    layout: Layout,
    bound: &[wgpu::Buffer],
    params: &wgpu::Buffer,
) -> wgpu::BindGroup {
    let mut resources = bound.iter();
    let entries: Vec<wgpu::BindGroupEntry> = layout
        .slots()
        .iter()
        .enumerate()
        .map(|(binding, slot)| wgpu::BindGroupEntry {
            binding: binding as u32,
            resource: match slot {
                Slot::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: params,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAMS_BINDING_SIZE),
                }),
                _ => (resources.next().expect("one buffer per slot")).as_entire_binding(),
            },
        })
        .collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: gpu.pipelines().bind_group_layout(layout),
        entries: &entries,
    })
}
