//! Where training batches come from: a synthetic task (fresh random batches forever, a fixed
//! validation set) or a dataset (shuffled epochs, a held-out split).

use crate::config::Readout;
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::tasks::{DataSpec, Dataset, Task};
use ndarray::s;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::VecDeque;

/// Batches drawn for the validation set of a synthetic task.
const VALIDATION_BATCHES: usize = 4;

/// The training and validation batches of a run, from a synthetic task or a dataset. Make one
/// with [`DataSource::from_task`] or [`DataSource::from_dataset`].
// One source per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum DataSource {
    /// A synthetic task: a fresh random training batch every step, and a fixed validation set.
    Task {
        /// The task that draws the batches.
        task: Box<dyn Task>,
        /// The training stream's random numbers.
        rng: StdRng,
        /// The validation set is drawn from this seed when asked for (not up front: a dry run
        /// of a huge configuration should not draw it).
        validation_seed: u64,
    },
    /// A dataset: shuffled epochs of its training part, and its held-out part for validation.
    Dataset {
        /// The sequences trained on.
        train: Dataset,
        /// The held-out sequences.
        validation: Dataset,
        /// The shuffles' random numbers.
        rng: StdRng,
        /// Sample indices of the current epoch not yet served.
        pending: Vec<usize>,
    },
}

impl DataSource {
    /// Batches from `task`, the training stream drawn from `seed`. A task's validation set is
    /// drawn from its own seed, so it never overlaps the training stream's draws and stays the
    /// same across resumed runs.
    pub fn from_task(task: Box<dyn Task>, seed: u64) -> Self {
        DataSource::Task {
            task,
            rng: StdRng::seed_from_u64(seed),
            validation_seed: seed ^ 0x05ee_d0f7_a11d,
        }
    }

    /// Holds out `validation_fraction` of `dataset` (seeded) and serves the rest in shuffled
    /// epochs.
    pub fn from_dataset(
        dataset: Dataset,
        validation_fraction: f64,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, Error> {
        let (train, validation) = dataset.split(validation_fraction, seed)?;
        if batch_size > train.len() {
            return Err(Error::Config(format!(
                "--batch {batch_size} is larger than the {} training sequences of {}",
                train.len(),
                train.name()
            )));
        }
        Ok(DataSource::Dataset {
            train,
            validation,
            rng: StdRng::seed_from_u64(seed),
            pending: Vec::new(),
        })
    }

    /// What the data decides of the model: input and output sizes, readout and loss.
    pub fn spec(&self) -> DataSpec {
        match self {
            DataSource::Task { task, .. } => task.spec(),
            DataSource::Dataset { train, .. } => train.spec(),
        }
    }

    /// Steps per training sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            DataSource::Task { task, .. } => task.seq_len(),
            DataSource::Dataset { train, .. } => train.inputs().shape()[1],
        }
    }

    /// The loss of a trivial predictor, where the data defines one.
    pub fn baseline(&self) -> Option<(f32, String)> {
        match self {
            DataSource::Task { task, .. } => Some((task.baseline(), task.baseline_description())),
            DataSource::Dataset { .. } => None,
        }
    }

    /// The next training batch of `batch_size` sequences. A dataset's epochs are shuffled
    /// with the seed; the last partial batch of an epoch is dropped so every batch has one
    /// shape (and one GPU workspace).
    pub fn next_batch(&mut self, batch_size: usize) -> Batch<f32> {
        match self {
            DataSource::Task { task, rng, .. } => task.batch(batch_size, rng),
            DataSource::Dataset {
                train,
                rng,
                pending,
                ..
            } => {
                if pending.len() < batch_size {
                    *pending = (0..train.len()).collect();
                    pending.shuffle(rng);
                }
                let indices: Vec<usize> = pending.drain(..batch_size).collect();
                train.batch(&indices)
            }
        }
    }

    /// Draws and discards `batches` training batches, so a resumed run sees the batches the
    /// uninterrupted run would have seen.
    pub fn skip(&mut self, batches: u64, batch_size: usize) {
        for _ in 0..batches {
            self.next_batch(batch_size);
        }
    }

    /// The validation batches: a task's fixed set, or the held-out split in order.
    pub fn validation_batches(&self, batch_size: usize) -> Vec<Batch<f32>> {
        match self {
            DataSource::Task {
                task,
                validation_seed,
                ..
            } => {
                let mut rng = StdRng::seed_from_u64(*validation_seed);
                (0..VALIDATION_BATCHES)
                    .map(|_| task.batch(batch_size, &mut rng))
                    .collect()
            }
            DataSource::Dataset { validation, .. } => {
                let indices: Vec<usize> = (0..validation.len()).collect();
                indices
                    .chunks(batch_size)
                    .map(|c| validation.batch(c))
                    .collect()
            }
        }
    }
}

/// One piece of truncated BPTT: a chunk of at most K steps, whether the state carried from
/// the previous chunk must be reset first, and whether it is scored (under `Readout::Last`
/// only a sequence's last chunk is; the others just advance the state).
pub struct Chunk {
    /// The chunk's steps of every sequence, `[K, B, I]` (the last chunk may be shorter).
    pub batch: Batch<f32>,
    /// Start from the batch's own initial state instead of the previous chunk's final one.
    pub reset: bool,
    /// Whether the chunk's loss counts and an update follows it.
    pub scored: bool,
}

/// Serves chunks of `steps` steps: consecutive chunks of a task's long streams (the text
/// task), or each batch of independent sequences cut along time, its state reset per batch.
pub struct Chunker {
    steps: usize,
    readout: Readout,
    /// Chunks served from a task's stream so far.
    index: u64,
    pending: VecDeque<Chunk>,
}

impl Chunker {
    /// A chunker of `steps` steps per chunk for a model reading `readout`; refuses 0 steps.
    pub fn new(steps: usize, readout: Readout) -> Result<Self, Error> {
        if steps == 0 {
            return Err(Error::Config("--tbptt must be at least 1 step".into()));
        }
        Ok(Chunker {
            steps,
            readout,
            index: 0,
            pending: VecDeque::new(),
        })
    }

    /// The next chunk for `batch_size` sequences, drawing a new batch from `data` when the
    /// previous one is used up.
    pub fn next(&mut self, data: &mut DataSource, batch_size: usize) -> Chunk {
        if let DataSource::Task { task, .. } = data {
            if let Some((batch, reset)) = task.stream_chunk(batch_size, self.steps, self.index) {
                self.index += 1;
                return Chunk {
                    batch,
                    reset,
                    scored: true,
                };
            }
        }
        if self.pending.is_empty() {
            let batch = data.next_batch(batch_size);
            // A chunk may hold nothing of a short sequence, which a batch cannot say.
            assert!(
                batch.lengths.is_none(),
                "truncated BPTT over sequences of different lengths is refused before training"
            );
            self.pending = split_in_time(&batch, self.steps, self.readout).into();
        }
        self.pending
            .pop_front()
            .expect("a batch has at least one step")
    }

    /// Serves and drops what `updates` scored chunks would take, so a resumed run reads on
    /// where the saved one stopped (its carried state starts from zero).
    pub fn skip(&mut self, data: &mut DataSource, batch_size: usize, updates: u64) {
        for _ in 0..updates {
            while !self.next(data, batch_size).scored {}
        }
    }
}

/// `batch` cut into chunks of `steps` steps; the first resets the state to the batch's own.
fn split_in_time(batch: &Batch<f32>, steps: usize, readout: Readout) -> Vec<Chunk> {
    let (t_len, b) = (batch.seq_len(), batch.batch_size());
    let starts: Vec<usize> = (0..t_len).step_by(steps).collect();
    let last = starts.len() - 1;
    starts
        .into_iter()
        .enumerate()
        .map(|(k, t0)| {
            let t1 = (t0 + steps).min(t_len);
            let rows = match readout {
                Readout::All => t0 * b..t1 * b,
                Readout::Last => 0..b,
            };
            let targets = match &batch.targets {
                Targets::Values(y) => Targets::Values(y.slice(s![rows, ..]).to_owned()),
                Targets::Classes(c) => Targets::Classes(c[rows].to_vec()),
            };
            Chunk {
                batch: Batch {
                    x: batch.x.slice(s![t0..t1, .., ..]).to_owned(),
                    h0: if k == 0 { batch.h0.clone() } else { None },
                    c0: if k == 0 { batch.c0.clone() } else { None },
                    targets,
                    lengths: None,
                },
                reset: k == 0,
                scored: readout == Readout::All || k == last,
            }
        })
        .collect()
}
