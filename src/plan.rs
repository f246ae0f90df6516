//! Memory planning for a GPU pass: how many bytes a (configuration, T, B) needs, split into
//! named terms, checked against the adapter's limits and a budget before anything is
//! allocated; and how the time axis is cut into segments.
//!
//! Activations are stored per *segment* of at most S steps, one set of buffers per segment,
//! so no single binding grows with T. With recomputation only the state at each segment's
//! start is kept; the backward pass re-runs each segment's forward into one shared set of
//! buffers (memory ~ T/S + S instead of T). The GPU workspace allocates its buffers from the
//! plan's own list of them (`WorkspaceBuffers`), so the plan is what the GPU gets.

use crate::config::{ModelConfig, Readout};
use crate::error::Error;
use crate::internals::gpu::device::PARTIAL_SUMS;
use crate::internals::gpu::gemm::partial_words;
use crate::internals::gpu::kernels::{column_blocks, PARAMS_BINDING_SIZE};
use crate::precision::Precision;
use std::fmt::Write as _;
use std::str::FromStr;

/// `--recompute off|auto|K`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recompute {
    /// Keep every activation (split into segments only where a binding would overflow).
    #[default]
    Off,
    /// Off when it fits the budget, else the longest segments that fit.
    Auto,
    /// Segments of K steps, each recomputed during the backward pass.
    Every(usize),
}

impl FromStr for Recompute {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "off" => Ok(Recompute::Off),
            "auto" => Ok(Recompute::Auto),
            _ => match s.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Recompute::Every(k)),
                _ => Err(Error::Config(format!(
                    "--recompute '{s}': expected off, auto or a segment length K >= 1"
                ))),
            },
        }
    }
}

/// What a plan must fit into.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimits {
    /// The adapter's `max_storage_buffer_binding_size`, or a smaller artificial one.
    pub max_binding: u64,
    /// The adapter's `max_buffer_size`.
    pub max_buffer: u64,
    /// `min_uniform_buffer_offset_alignment`: the per-dispatch cost of the parameter arena.
    pub uniform_align: u64,
    /// `--max-memory`, or a default where one is known; `None` checks only the per-buffer
    /// limits (wgpu does not report how much memory an adapter has).
    pub budget: Option<u64>,
    /// What the budget is, for messages: "--max-memory", or where a default came from.
    pub budget_name: &'static str,
}

/// Planning options a model carries (the command line's `--recompute`, `--max-memory`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// How the time axis is cut and whether segments are recomputed (`--recompute`).
    pub recompute: Recompute,
    /// The budget in bytes that the whole plan must fit (`--max-memory`); `None` takes the
    /// adapter's default where one is known (3/4 of system memory on a CPU adapter), else none.
    pub max_memory: Option<u64>,
    /// Caps the storage binding below the adapter's (tests of the segment splitting).
    pub max_binding: Option<u64>,
    /// The element type of the activations, gates, their gradients and the weights' working
    /// copy (`--precision`).
    pub precision: Precision,
}

/// One group of equal buffers in the plan.
#[derive(Clone, Debug)]
pub struct Term {
    /// What the buffers hold, as the plan's table and error messages name it
    /// ("hidden states", "gate gradients", ...).
    pub name: &'static str,
    /// The shape of one buffer, as text ("[S+1, B, H] = [101, 32, 128]").
    pub shape: String,
    /// Elements per buffer, each of `precision`.
    pub words_each: usize,
    /// The element type: the storage precision for activations, gates, their gradients and
    /// the weights' working copies, f32 for everything else.
    pub precision: Precision,
    /// How many such buffers the pass allocates (per segment, per cell, ...); 0 leaves the
    /// term out of the plan.
    pub count: usize,
    /// Each buffer is bound whole, so it must fit `max_binding` (parameter-sized terms are
    /// several smaller tensors; the uniform arena is bound 64 bytes at a time).
    pub bound_whole: bool,
}

impl Term {
    /// The options that make one of these buffers smaller, from the dimensions its shape
    /// names: "--batch or --hidden" for `[S, B, G*H]`, "--seq-len" for `[2, L*D, T]`.
    pub fn options_that_shrink(&self) -> String {
        let symbols = self.shape.split(" = ").next().unwrap_or_default();
        let named = |dim: &str| {
            (symbols.split(|c: char| !c.is_ascii_alphanumeric())).any(|symbol| symbol == dim)
        };
        let options: Vec<&str> = [("B", "--batch"), ("T", "--seq-len"), ("H", "--hidden")]
            .into_iter()
            .filter(|(dim, _)| named(dim))
            .map(|(_, option)| option)
            .collect();
        match options.as_slice() {
            [] => "--batch or --hidden".to_string(),
            [one] => one.to_string(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        }
    }

    /// All `count` buffers' bytes: `count * bytes_each()`.
    pub fn bytes(&self) -> u64 {
        self.bytes_each() * self.count as u64
    }

    /// One buffer's bytes, in whole 4-byte words as the GPU allocates them.
    pub fn bytes_each(&self) -> u64 {
        (self.words_each as u64 * self.precision.element_bytes() as u64).next_multiple_of(4)
    }
}

/// The plan for one (T, B): the segmentation and every buffer the pass allocates.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// `T`: the time steps of the batch planned for.
    pub seq_len: usize,
    /// `B`: the sequences of the batch planned for.
    pub batch: usize,
    /// Steps per segment S (the last segment may be shorter).
    pub segment_len: usize,
    /// The number of segments, `ceil(T / S)`.
    pub segments: usize,
    /// Whether the backward pass recomputes each segment's forward from its saved start state
    /// into one shared set of activations; never true for a single segment.
    pub recompute: bool,
    /// The storage precision of the activations, gates, their gradients and the weights'
    /// working copies.
    pub precision: Precision,
    /// Model-side terms (parameters, gradients, optimizer state) first, then the workspace's
    /// buffers, the dispatch parameters and the partial sums.
    pub terms: Vec<Term>,
    /// The workspace's buffers, as `gpu::Workspace` allocates them.
    pub workspace: WorkspaceBuffers,
    /// The limits and budget the plan was made for and checked against.
    pub limits: MemoryLimits,
}

impl MemoryPlan {
    /// Every term's bytes together: what the model and one pass of this (T, B) allocate on the
    /// GPU, the number the budget is checked against.
    pub fn total_bytes(&self) -> u64 {
        self.terms.iter().map(Term::bytes).sum()
    }

    /// The term of the most bytes in all (`Term::bytes`), which a refusal names as the one to
    /// shrink.
    pub fn largest(&self) -> &Term {
        self.terms.iter().max_by_key(|t| t.bytes()).unwrap()
    }

    /// (first step, steps) of each segment, 0-based first step.
    pub fn segment_ranges(&self) -> Vec<(usize, usize)> {
        segment_ranges(self.seq_len, self.segment_len)
    }

    /// A table of the terms and the totals, for `--dry-run` and `bench`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let mode = if self.recompute {
            format!(
                "recomputation on: {} segments of {} steps, states kept at segment starts",
                self.segments, self.segment_len
            )
        } else if self.segments > 1 {
            format!(
                "all activations kept, split into {} segments of {} steps (binding limit)",
                self.segments, self.segment_len
            )
        } else {
            "all activations kept, one segment".to_string()
        };
        let _ = writeln!(
            s,
            "memory plan for T={} B={}, {} storage: {mode}",
            self.seq_len,
            self.batch,
            self.precision.name()
        );
        for term in &self.terms {
            let mut count = if term.count > 1 {
                format!(" x{}", term.count)
            } else {
                String::new()
            };
            if term.precision != Precision::F32 {
                count += &format!(" {}", term.precision.name());
            }
            let _ = writeln!(
                s,
                "  {:<34} {:<34} {:>12}",
                term.name,
                format!("{}{count}", term.shape),
                human_bytes(term.bytes())
            );
        }
        let budget = self.limits.budget.map_or_else(
            || "no budget (--max-memory)".to_string(),
            |b| format!("budget {}: {}", human_bytes(b), self.limits.budget_name),
        );
        let _ = writeln!(
            s,
            "  total {} ({budget}); largest binding {} of {} allowed",
            human_bytes(self.total_bytes()),
            human_bytes(self.largest_binding()),
            human_bytes(self.limits.max_binding)
        );
        s
    }

    /// The bytes of the largest single buffer bound whole (`Term::bound_whole`): what must fit
    /// `MemoryLimits::max_binding`.
    pub fn largest_binding(&self) -> u64 {
        self.terms
            .iter()
            .filter(|t| t.bound_whole)
            .map(|t| t.bytes_each())
            .max()
            .unwrap_or(0)
    }
}

/// This machine's memory in bytes (Linux's /proc/meminfo MemTotal; None elsewhere).
pub fn system_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Refuses a model whose parameters, gradients and optimizer state (`copies` f32 copies of the
/// parameters in all) cannot fit this machine's memory, before allocating them fails with an
/// abort instead of a message.
pub fn check_host_memory(config: &ModelConfig, copies: usize) -> Result<(), Error> {
    let Some(total) = system_memory() else {
        return Ok(());
    };
    let needed = config.param_count() as u64 * 4 * copies as u64;
    if needed > total {
        return Err(Error::Config(format!(
            "input_size {}, hidden_size {}, output_size {}: the {} {} parameters need {} for \
             the parameters, gradients and optimizer state, more than this machine's {}",
            config.input_size,
            config.hidden_size,
            config.output_size,
            config.param_count(),
            config.cell,
            human_bytes(needed),
            human_bytes(total)
        )));
    }
    Ok(())
}

/// What a pass on the host keeps: a forward pass's activations (`predict`), or also the
/// backward pass's gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPass {
    /// Inputs, states, gates and outputs.
    Forward,
    /// Those and every gradient of the backward pass.
    ForwardBackward,
}

/// Refuses a pass over `(seq_len, batch)` whose activations, `element_bytes` each (4 for the
/// CPU engine, 8 for its f64 reference), cannot fit this machine's memory, naming the largest,
/// before allocating them fails with an abort instead of a message. They are counted as the
/// GPU's plan lays them out with every step kept, which is about what the CPU engine keeps.
/// `fix` ends the message: what the caller's user can change.
pub fn check_host_pass(
    config: &ModelConfig,
    (seq_len, batch): (usize, usize),
    pass: HostPass,
    element_bytes: u64,
    fix: &str,
) -> Result<(), Error> {
    let Some(total) = system_memory() else {
        return Ok(());
    };
    let refuse = |needed: u64, largest: Option<&Term>| {
        let largest = largest.map_or(String::new(), |t| {
            format!(
                "; {} {} alone take {}",
                t.name,
                t.shape,
                human_bytes(t.bytes() / 4 * element_bytes)
            )
        });
        Err(Error::Config(format!(
            "T={seq_len} B={batch}: one pass keeps at least {} of activations in this \
             machine's memory{largest}, more than its {}; {fix}",
            human_bytes(needed),
            human_bytes(total)
        )))
    };
    // The gates alone, in u128 so that no size overflows before it is compared.
    let (t, b, gh) = (seq_len as u128, batch as u128, config.gate_rows() as u128);
    let gates = t * b * gh * config.cells() as u128 * element_bytes as u128;
    if gates > total as u128 {
        return refuse(u64::try_from(gates).unwrap_or(u64::MAX), None);
    }
    let one_segment = (seq_len.max(1), 1);
    let f32 = Precision::F32;
    let buffers = WorkspaceBuffers::new(config, (seq_len, batch), one_segment, false, f32);
    let bytes = |t: &&Term| t.bytes() / 4 * element_bytes;
    let terms = match pass {
        HostPass::Forward => buffers.forward().to_vec(),
        HostPass::ForwardBackward => buffers.all().to_vec(),
    };
    let needed: u64 = terms.iter().map(bytes).sum();
    match needed > total {
        true => refuse(needed, terms.into_iter().max_by_key(bytes)),
        false => Ok(()),
    }
}

/// `bytes` for people: whole bytes below 1 KiB ("512 B"), else one decimal in the largest
/// binary unit up to TiB ("1.5 GiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses `--max-memory`: bytes with an optional K/M/G/T suffix (powers of 1024), e.g. "4G",
/// "512MiB", "1000000".
pub fn parse_bytes(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => 0,
    };
    match number.parse::<f64>() {
        Ok(n) if scale > 0 && n.is_finite() && n > 0.0 => Ok((n * scale as f64) as u64),
        _ => Err(Error::Config(format!(
            "memory size '{text}': expected a positive number of bytes with an optional unit \
             (K, M, G, T), e.g. 4G"
        ))),
    }
}

/// The segments that cut `seq_len` steps into runs of `segment_len` (at least 1): (first
/// step, steps) of each, 0-based, all of `segment_len` steps but the last, which takes the
/// rest. Empty for `seq_len` 0.
pub fn segment_ranges(seq_len: usize, segment_len: usize) -> Vec<(usize, usize)> {
    (0..seq_len)
        .step_by(segment_len.max(1))
        .map(|t0| (t0, segment_len.min(seq_len - t0)))
        .collect()
}

const DISPATCH_PARAMS: &str = "dispatch parameters (uniform)";

/// Every buffer of the GPU workspace for a pass with segments of `s` steps (`n` of them): the
/// one list the memory plan counts and `gpu::Workspace` allocates from (each buffer its
/// term's `words_each`). A buffer only some cells have has 0 words for the others (the
/// workspace binds a 4-word placeholder; the plan leaves it out).
#[derive(Clone, Debug)]
pub struct WorkspaceBuffers {
    /// Per segment: the inputs `[S, B, I]`.
    pub x: Term,
    /// Per segment: the input gradients dE/dx `[S, B, I]`.
    pub dx: Term,
    /// Per segment and cell of the layers above the first: the cell's input `[S, B, D*H]`, the
    /// layer below's joined outputs (after dropout) in the cell's processing order.
    pub upper_x: Term,
    /// Per segment and cell of the layers above the first: the gradient w.r.t. `upper_x`.
    pub upper_dx: Term,
    /// For the reverse cell of layer 0 (bidirectional models, which run as one segment):
    /// the inputs reversed within each sequence's length, `[T, B, I]`.
    pub reversed_x: Term,
    /// The gradient w.r.t. `reversed_x`, `[T, B, I]`.
    pub reversed_dx: Term,
    /// A bidirectional `Readout::All`'s head inputs `[T*B, D*H]` and their gradients, two
    /// buffers (none for other models).
    pub head_in: Term,
    /// Per set of activations (one per segment, or one shared under recomputation; per cell):
    /// the hidden states `[S+1, B, H]`, row 0 the segment's start state.
    pub hs: Term,
    /// Per set: the LSTM's cell states `[S+1, B, H]` (0 words for the RNN and GRU).
    pub cs: Term,
    /// Per set: the gates `[S, B, G*H]`, pre-activations and then activated values.
    pub gates: Term,
    /// Per set: dE/d(pre-activation) of the gates, `[S, B, G*H]`.
    pub dgates: Term,
    /// Per set: the GRU's recurrent product h_{t-1} W_hh^T, kept apart from the input's,
    /// `[S, B, 3H]` (0 words for the RNN and LSTM).
    pub hh: Term,
    /// Per set: the gradient w.r.t. `hh`, `[S, B, 3H]` (GRU only).
    pub dhh: Term,
    /// Per set: the total dE/dh_t of every step, `[S, B, H]`, from which the norms are taken.
    pub dh: Term,
    /// Per set: the LSTM's total dE/dc_t, `[S, B, H]`.
    pub dc: Term,
    /// Under recomputation, per segment and cell: the hidden state at the segment's start,
    /// `[B, H]`.
    pub start_h: Term,
    /// Under recomputation, per segment and cell: the LSTM's cell state at the segment's
    /// start, `[B, H]`.
    pub start_c: Term,
    /// Per scored segment (every one under `Readout::All`, the last under `Readout::Last`):
    /// the head's outputs `[rows, O]`.
    pub outputs: Term,
    /// Per scored segment: the targets, `[rows, O]` words (values, or classes in the first
    /// `rows`).
    pub targets: Term,
    /// Per scored segment: dE/doutputs `[rows, O]`, multiplied by the loss scale.
    pub doutputs: Term,
    /// Per scored segment: each row's share of the mean loss, `[rows]`.
    pub row_loss: Term,
    /// The initial-state gradients dE/dh0 of every cell, `[L*D*B, H]`, each cell's `[B, H]`
    /// block in turn (dE/dc0 ends in each cell's `dc_carry`).
    pub dh0: Term,
    /// Per cell: the final hidden state h_T, `[B, H]`.
    pub final_h: Term,
    /// Per cell: the LSTM's final cell state c_T, `[B, H]`.
    pub final_c: Term,
    /// Per cell: dE/dh carried from step t+1 into step t during the backward pass (the
    /// recurrent product's share, the GRU's direct path, and what passes through padding
    /// steps), `[B, H]`, f32.
    pub h_carry: Term,
    /// Per cell: the LSTM's dE/dc carried along the cell path, ending as dE/dc0, `[B, H]`,
    /// f32.
    pub dc_carry: Term,
    /// Under f16, per cell of layer 0: the working copy of W_ih, `[G*H, I]`, which the
    /// products read in place of the f32 parameter.
    pub weight_ih_copy: Term,
    /// Under f16, per cell of the layers above: the working copy of W_ih, `[G*H, D*H]`.
    pub upper_weight_ih_copy: Term,
    /// Under f16, per cell: the working copy of W_hh, `[G*H, H]`, which the step kernels read.
    pub weight_hh_copy: Term,
    /// The per-step gradient norms `[2, L*D, T]`: `||dE/dh_t||` of every cell, then
    /// `||dE/dc_t||` for the LSTM.
    pub norms: Term,
    /// Each sequence's length, `[B]` u32 (`T` for all when the batch has none).
    pub lengths: Term,
    /// The loss, `[1]`.
    pub loss: Term,
    /// Each scored segment's share of the loss, summed in segment order into `loss`.
    pub loss_parts: Term,
}

impl WorkspaceBuffers {
    /// The buffers of a pass over `(t, b)` = (T, B) in `n` segments of `s` steps, with one
    /// shared set of activations when `recompute`, storing the activations, gates, their
    /// gradients and the weights' working copies in `precision`.
    pub fn new(
        config: &ModelConfig,
        (t, b): (usize, usize),
        (s, n): (usize, usize),
        recompute: bool,
        precision: Precision,
    ) -> Self {
        let (h, i, o, gh) = (
            config.hidden_size,
            config.input_size,
            config.output_size,
            config.gate_rows(),
        );
        let (cell, cells, d) = (config.cell, config.cells(), config.directions());
        let lstm = |words: usize| if cell.has_cell_state() { words } else { 0 };
        let gru = |words: usize| {
            if cell.keeps_recurrent_apart() {
                words
            } else {
                0
            }
        };
        let term = |name, shape: String, words_each, count| Term {
            name,
            shape,
            words_each,
            precision: Precision::F32,
            count,
            bound_whole: true,
        };
        // The activations, gates, their gradients and the weights' working copy.
        let stored = |name, shape: String, words_each, count| Term {
            precision,
            ..term(name, shape, words_each, count)
        };
        let copies = |count: usize| (precision != Precision::F32) as usize * count;
        let sets = if recompute { 1 } else { n } * cells;
        let starts = if recompute { n * cells } else { 0 };
        let (rows, scored, rows_name) = match config.readout {
            Readout::All => (s * b, n, "S*B"),
            Readout::Last => (b, 1, "B"),
        };
        let input = format!("[S, B, I] = [{s}, {b}, {i}]");
        let dh_width = config.head_input_size();
        let upper = format!("[S, B, D*H] = [{s}, {b}, {dh_width}]");
        let upper_count = (config.layers - 1) * d * n;
        let reversed = format!("[T, B, I] = [{t}, {b}, {i}]");
        let head_in = (d == 2 && config.readout == Readout::All) as usize;
        let state = format!("[S+1, B, H] = [{}, {b}, {h}]", s + 1);
        let gates = format!("[S, B, G*H] = [{s}, {b}, {gh}]");
        let per_step = format!("[S, B, H] = [{s}, {b}, {h}]");
        let bh = format!("[B, H] = [{b}, {h}]");
        let scored_shape = format!("[{rows_name}, O] = [{rows}, {o}]");
        WorkspaceBuffers {
            x: stored("inputs x", input.clone(), s * b * i, n),
            dx: stored("input gradients dx", input, s * b * i, n),
            upper_x: stored(
                "upper layers' inputs",
                upper.clone(),
                s * b * dh_width,
                upper_count,
            ),
            upper_dx: stored(
                "upper layers' input gradients",
                upper,
                s * b * dh_width,
                upper_count,
            ),
            reversed_x: stored("reversed inputs", reversed.clone(), t * b * i, d - 1),
            reversed_dx: stored("reversed input gradients", reversed, t * b * i, d - 1),
            head_in: stored(
                "head inputs and their gradients",
                format!("[T*B, D*H] = [{}, {dh_width}]", t * b),
                t * b * dh_width,
                2 * head_in,
            ),
            hs: stored("hidden states", state.clone(), (s + 1) * b * h, sets),
            cs: stored("cell states", state, lstm((s + 1) * b * h), sets),
            gates: stored("gates", gates.clone(), s * b * gh, sets),
            dgates: stored("gate gradients", gates.clone(), s * b * gh, sets),
            hh: stored("recurrent products", gates.clone(), gru(s * b * gh), sets),
            dhh: stored("recurrent-product gradients", gates, gru(s * b * gh), sets),
            dh: stored("dE/dh", per_step.clone(), s * b * h, sets),
            dc: stored("dE/dc", per_step, lstm(s * b * h), sets),
            start_h: stored("segment start states h", bh.clone(), b * h, starts),
            start_c: stored("segment start states c", bh.clone(), lstm(b * h), starts),
            outputs: term("head outputs", scored_shape.clone(), rows * o, scored),
            targets: term("targets", scored_shape.clone(), rows * o, scored),
            doutputs: term("output gradients", scored_shape, rows * o, scored),
            row_loss: term(
                "per-row losses",
                format!("[{rows_name}] = [{rows}]"),
                rows,
                scored,
            ),
            dh0: term(
                "initial-state gradients",
                format!("[L*D*B, H] = [{}, {h}]", cells * b),
                cells * b * h,
                1,
            ),
            final_h: stored("final hidden states", bh.clone(), b * h, cells),
            final_c: stored("final cell states", bh.clone(), lstm(b * h), cells),
            h_carry: term("hidden-state carries", bh.clone(), b * h, cells),
            dc_carry: term("cell-path gradients", bh, lstm(b * h), cells),
            weight_ih_copy: stored(
                "working copies of W_ih",
                format!("[G*H, I] = [{gh}, {i}]"),
                gh * i,
                copies(d),
            ),
            upper_weight_ih_copy: stored(
                "working copies of W_ih above layer 0",
                format!("[G*H, D*H] = [{gh}, {dh_width}]"),
                gh * dh_width,
                copies(cells - d),
            ),
            weight_hh_copy: stored(
                "working copies of W_hh",
                format!("[G*H, H] = [{gh}, {h}]"),
                gh * h,
                copies(cells),
            ),
            norms: term(
                "per-step gradient norms",
                format!("[2, L*D, T] = [2, {cells}, {t}]"),
                2 * cells * t,
                1,
            ),
            lengths: term("sequence lengths", format!("[B] = [{b}]"), b, 1),
            loss: term("loss", "[1]".to_string(), 1, 1),
            loss_parts: term("loss parts", format!("[{scored}]"), scored, 1),
        }
    }

    /// The terms a forward pass alone writes (inputs, states, gates, outputs), in the order of
    /// the plan's table.
    pub fn forward(&self) -> [&Term; 11] {
        [
            &self.x,
            &self.upper_x,
            &self.reversed_x,
            &self.hs,
            &self.cs,
            &self.gates,
            &self.hh,
            &self.outputs,
            &self.targets,
            &self.final_h,
            &self.final_c,
        ]
    }

    /// Every term, in the order of the plan's table.
    pub fn all(&self) -> [&Term; 33] {
        [
            &self.x,
            &self.dx,
            &self.upper_x,
            &self.upper_dx,
            &self.reversed_x,
            &self.reversed_dx,
            &self.head_in,
            &self.hs,
            &self.cs,
            &self.gates,
            &self.dgates,
            &self.hh,
            &self.dhh,
            &self.dh,
            &self.dc,
            &self.start_h,
            &self.start_c,
            &self.outputs,
            &self.targets,
            &self.doutputs,
            &self.row_loss,
            &self.dh0,
            &self.final_h,
            &self.final_c,
            &self.h_carry,
            &self.dc_carry,
            &self.weight_ih_copy,
            &self.upper_weight_ih_copy,
            &self.weight_hh_copy,
            &self.norms,
            &self.lengths,
            &self.loss,
            &self.loss_parts,
        ]
    }
}

/// The terms of a pass with segments of `s` steps (`n` of them): the parameter-sized ones
/// (parameters, gradients, `optimizer_words` of optimizer state) first, then the workspace's
/// buffers, the dispatch parameters and the partial sums.
fn terms(
    config: &ModelConfig,
    (t, b): (usize, usize),
    (s, n): (usize, usize),
    (recompute, precision): (bool, Precision),
    optimizer_words: usize,
    uniform_align: u64,
) -> (Vec<Term>, WorkspaceBuffers) {
    let params = config.param_count();
    let workspace = WorkspaceBuffers::new(config, (t, b), (s, n), recompute, precision);
    // Not bound whole: the parameter-sized terms are several tensors each, the arena is bound
    // one dispatch's parameters at a time, and the partial sums a part at a time.
    let unbound = |name, shape: String, words_each| Term {
        name,
        shape,
        words_each,
        precision: Precision::F32,
        count: 1,
        bound_whole: false,
    };
    // One parameter block per dispatch: forward and backward take 1 each per step (the fused
    // step kernels), recomputation 1 more, plus a few per segment.
    let per_step = if recompute { 3 } else { 2 };
    let dispatches = (per_step * t + 16 * n) * config.cells() + 16;
    let arena = dispatches * uniform_align.max(PARAMS_BINDING_SIZE) as usize / 4;
    let scratch = partial_sum_words(config, (s * b, b), workspace.row_loss.words_each);
    let terms = [
        unbound("parameters", format!("[{params}]"), params),
        unbound("parameter gradients", format!("[{params}]"), params),
        unbound(
            "optimizer state",
            format!("[{optimizer_words}]"),
            optimizer_words,
        ),
    ]
    .into_iter()
    .chain(workspace.all().into_iter().cloned())
    .chain([
        unbound(DISPATCH_PARAMS, format!("~{dispatches} dispatches"), arena),
        unbound(PARTIAL_SUMS, "(the largest user)".to_string(), scratch),
    ])
    .filter(|t| t.words_each > 0 && t.count > 0)
    .collect();
    (terms, workspace)
}

/// Words of the one scratch buffer of partial sums (`Gpu::scratch_partials`), sized for its
/// largest user: the bias gradients' column sums over blocks of a segment's `rows` (or of the
/// `scored_rows` the head sees), and the products whose long K is summed in parts
/// (`gemm::partial_words`): the weight gradients and the head's, or a segment border's
/// recurrent product at a long 4H, of the first layer or of a layer above.
fn partial_sum_words(config: &ModelConfig, (rows, b): (usize, usize), scored_rows: usize) -> usize {
    let (h, i, o, gh) = (
        config.hidden_size,
        config.input_size,
        config.output_size,
        config.gate_rows(),
    );
    let directions = config.directions();
    let blocks = column_blocks(rows.max(scored_rows));
    let bias_blocks = if blocks > 1 { blocks * gh.max(o) } else { 0 };
    let layer = |i: usize| -> usize {
        partial_words((gh, i, rows))
            .max(partial_words((gh, h, rows)))
            .max(partial_words((b, h, gh)))
    };
    let upper = if config.layers > 1 {
        layer(directions * h)
    } else {
        0
    };
    let head = partial_words((o, directions * h, scored_rows));
    bias_blocks.max(layer(i)).max(upper).max(head)
}

/// Chooses the segmentation for `recompute` and checks the result against `limits`; the
/// activations take `precision`'s element size.
pub fn plan(
    config: &ModelConfig,
    seq_len: usize,
    batch: usize,
    optimizer_words: usize,
    recompute: Recompute,
    precision: Precision,
    limits: MemoryLimits,
) -> Result<MemoryPlan, Error> {
    let planner = Planner {
        config,
        seq_len,
        batch,
        optimizer_words,
        precision,
        limits,
    };
    if config.bidirectional {
        planner.check_bidirectional(recompute)?;
    }
    let max_segment = planner.longest_segment()?;
    let chosen = planner.choose(recompute, max_segment)?;
    planner.check_budget(&chosen)?;
    if let Some(term) = (chosen.terms.iter()).find(|t| t.bytes_each() > limits.max_buffer) {
        return Err(Error::Config(format!(
            "{} {} needs {} in one buffer, more than the adapter's max_buffer_size of {}; \
             use a shorter --seq-len or --recompute",
            term.name,
            term.shape,
            human_bytes(term.bytes_each()),
            human_bytes(limits.max_buffer)
        )));
    }
    Ok(chosen)
}

/// What `plan` plans for, and the plans it weighs.
struct Planner<'a> {
    config: &'a ModelConfig,
    seq_len: usize,
    batch: usize,
    optimizer_words: usize,
    precision: Precision,
    limits: MemoryLimits,
}

impl Planner<'_> {
    /// The plan in segments of `s` steps, recomputing within them where `recompute` and there
    /// is more than one.
    fn build(&self, s: usize, recompute: bool) -> MemoryPlan {
        let n = self.seq_len.div_ceil(s);
        let (terms, workspace) = terms(
            self.config,
            (self.seq_len, self.batch),
            (s, n),
            (recompute && n > 1, self.precision),
            self.optimizer_words,
            self.limits.uniform_align,
        );
        MemoryPlan {
            precision: self.precision,
            seq_len: self.seq_len,
            batch: self.batch,
            segment_len: s,
            segments: n,
            recompute: recompute && n > 1,
            terms,
            workspace,
            limits: self.limits,
        }
    }

    /// The largest of `plan`'s terms bound whole that is past the adapter's binding size.
    fn worst_over_binding(&self, plan: &MemoryPlan) -> Option<Term> {
        (plan.terms.iter())
            .filter(|t| t.bound_whole && t.bytes_each() > self.limits.max_binding)
            .max_by_key(|t| t.bytes_each())
            .cloned()
    }

    /// The reverse direction reads each sequence from its own end, across what would be
    /// segment borders: bidirectional models are kept whole, so they must fit as one segment.
    fn check_bidirectional(&self, recompute: Recompute) -> Result<(), Error> {
        let (seq_len, batch) = (self.seq_len, self.batch);
        let kind = "bidirectional";
        if let Some(worst) = self.worst_over_binding(&self.build(seq_len, false)) {
            return Err(Error::Config(format!(
                "T={seq_len} B={batch}: a {}-layer {kind} model runs in one segment on the GPU, \
                 and its {} {} need {} in one binding, more than the adapter's \
                 max_storage_buffer_binding_size of {}; use a smaller --batch or --seq-len, or \
                 --device cpu",
                self.config.layers,
                worst.name,
                worst.shape,
                human_bytes(worst.bytes_each()),
                human_bytes(self.limits.max_binding)
            )));
        }
        if matches!(recompute, Recompute::Every(k) if k < seq_len) {
            return Err(Error::Config(format!(
                "--recompute: a {kind} model runs in one segment on the GPU, without \
                 recomputation; use --recompute off or auto"
            )));
        }
        Ok(())
    }

    /// The longest segment whose per-segment buffers all fit one binding (the uniform arena
    /// and the model terms do not depend on its length); an error where not even one step
    /// does.
    fn longest_segment(&self) -> Result<usize, Error> {
        let fits_binding = |s: usize| self.worst_over_binding(&self.build(s, false)).is_none();
        if let Some(worst) = self.worst_over_binding(&self.build(1, false)) {
            return Err(Error::Config(format!(
                "{} {} needs {} in one binding even for a single time step, more than the \
                 adapter's max_storage_buffer_binding_size of {}; use a smaller {}",
                worst.name,
                worst.shape,
                human_bytes(worst.bytes_each()),
                human_bytes(self.limits.max_binding),
                worst.options_that_shrink()
            )));
        }
        // fits_binding is monotone in S: binary search the largest S <= T that fits.
        let (mut lo, mut hi) = (1, self.seq_len.max(1));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits_binding(mid) {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        Ok(lo)
    }

    /// The segmentation `recompute` asks for; under auto, whole where it fits the budget, else
    /// the longest recomputed segments that do (fewest borders and start states), else the
    /// smallest plan (for `check_budget` to report).
    fn choose(&self, recompute: Recompute, max_segment: usize) -> Result<MemoryPlan, Error> {
        let within_budget =
            |p: &MemoryPlan| self.limits.budget.is_none_or(|b| p.total_bytes() <= b);
        Ok(match recompute {
            _ if self.config.bidirectional => self.build(self.seq_len, false),
            Recompute::Off => self.build(max_segment, false),
            Recompute::Every(k) => {
                if k > max_segment {
                    return Err(Error::Config(format!(
                        "--recompute {k}: a segment of {k} steps does not fit one storage \
                         binding of {} (the longest that fits is {max_segment} steps)",
                        human_bytes(self.limits.max_binding)
                    )));
                }
                self.build(k, true)
            }
            Recompute::Auto => {
                let off = self.build(max_segment, false);
                if within_budget(&off) {
                    return Ok(off);
                }
                (1..=max_segment.min(self.seq_len.saturating_sub(1)).max(1))
                    .rev()
                    .map(|s| self.build(s, true))
                    .find(within_budget)
                    .unwrap_or_else(|| {
                        (1..=max_segment)
                            .map(|s| self.build(s, true))
                            .min_by_key(MemoryPlan::total_bytes)
                            .expect("at least one segment length")
                    })
            }
        })
    }

    /// An error naming the largest term and what to try where `plan` is past the budget.
    fn check_budget(&self, plan: &MemoryPlan) -> Result<(), Error> {
        let Some(budget) = self.limits.budget.filter(|&b| plan.total_bytes() > b) else {
            return Ok(());
        };
        let largest = plan.largest();
        let hint = if self.config.bidirectional {
            "a smaller --batch or --seq-len (a bidirectional model runs in one segment), a \
             larger --max-memory, or --device cpu"
        } else if plan.recompute {
            "a smaller --batch or --hidden, or a larger --max-memory"
        } else {
            "--recompute auto (keeps only segment start states), a smaller --batch, or a \
             larger --max-memory"
        };
        Err(Error::Config(format!(
            "T={} B={} needs {} of GPU memory, more than {} {}; the largest term is {} {} ({}). \
             Try {hint}",
            self.seq_len,
            self.batch,
            human_bytes(plan.total_bytes()),
            self.limits.budget_name,
            human_bytes(budget),
            largest.name,
            largest.shape,
            human_bytes(largest.bytes()),
        )))
    }
}
