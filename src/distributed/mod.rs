//! Data-parallel training: N ranks, each holding a full replica, each computing the gradient
//! of its contiguous slice of every global batch (`--batch` rows per rank, as PyTorch's DDP).
//! The gradients are summed in rank order 0, 1, ..., N-1 by this module, not by the transport
//! (MPI may add in any order), so every rank gets the same bits and takes the same optimizer
//! step: replicas stay identical by construction, and two runs are bit-identical.
//!
//! The transport is a `Collective`: MPI under `--features mpi` (`distributed::mpi`), threads
//! of one process in tests (`ThreadGroup`).

#[cfg(feature = "mpi")]
pub mod mpi;

use crate::config::Readout;
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::params::Params;
use ndarray::{s, Axis};
use std::sync::{Arc, Barrier, Mutex};

/// The collectives the training loop needs, over every rank of a job. Each call is made by
/// every rank, in the same order, with the same lengths where it says so.
pub trait Collective {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// Ranks in the job.
    fn ranks(&self) -> usize;
    /// `send` [ranks * n]: its j-th n-chunk goes to rank j. Returns [ranks * n], the i-th
    /// chunk from rank i. n is the same on every rank.
    fn all_to_all(&self, send: &[f32]) -> Result<Vec<f32>, Error>;
    /// Every rank's `send` (the same length on every rank), concatenated in rank order.
    fn all_gather(&self, send: &[f32]) -> Result<Vec<f32>, Error>;
    /// Every rank's bytes (any length), in rank order.
    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<Vec<u8>>, Error>;
}

/// The element-wise sum over ranks of `values` (one length on every rank), added in rank
/// order whatever the transport does, so that every rank holds the same bits afterwards.
/// A reduce-scatter by all-to-all (rank r sums chunk r of every rank's vector, in rank order)
/// then an all-gather of the sums: each rank sends and receives 2 (N-1)/N of the vector, as
/// in a ring all-reduce.
pub fn sum_in_rank_order(group: &dyn Collective, values: &mut [f32]) -> Result<(), Error> {
    let ranks = group.ranks();
    if ranks == 1 {
        return Ok(());
    }
    let chunk = values.len().div_ceil(ranks);
    let mut send = values.to_vec();
    send.resize(chunk * ranks, 0.0);
    let received = group.all_to_all(&send)?;
    let mut mine = vec![0.0f32; chunk];
    for from in received.chunks_exact(chunk) {
        mine.iter_mut().zip(from).for_each(|(sum, v)| *sum += v);
    }
    let summed = group.all_gather(&mine)?;
    values.copy_from_slice(&summed[..values.len()]);
    Ok(())
}

/// What a rank adds to a step beyond its gradient.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// The mean loss over its scored rows.
    pub loss: f32,
    /// How many rows that mean is over (`Batch::valid_rows`): the weight of its gradient.
    pub rows: usize,
    /// Whether it was asked to stop (Ctrl-C, SIGTERM): every rank stops after the same step.
    pub interrupted: bool,
}

/// The step's global loss and whether any rank was asked to stop.
#[derive(Clone, Copy, Debug)]
pub struct Reduced {
    /// The global batch's mean loss: every rank's weighted by its rows.
    pub loss: f32,
    /// Whether any rank was asked to stop.
    pub interrupted: bool,
}

/// Replaces `grads` (the gradient of this rank's mean loss) by the gradient of the global
/// batch's mean loss: each rank's weighted by its rows, summed in rank order, divided by all
/// rows. One collective carries the gradients, the losses and the stop flags.
pub fn reduce_step(
    group: &dyn Collective,
    grads: &mut Params<f32>,
    share: Share,
) -> Result<Reduced, Error> {
    if group.ranks() == 1 {
        return Ok(Reduced {
            loss: share.loss,
            interrupted: share.interrupted,
        });
    }
    let rows = share.rows as f32;
    let mut flat: Vec<f32> = Vec::new();
    for (_, values) in grads.tensors() {
        flat.extend(values.iter().map(|g| g * rows));
    }
    flat.extend([share.loss * rows, rows, share.interrupted as u8 as f32]);
    sum_in_rank_order(group, &mut flat)?;
    let [loss, total_rows, stops] = flat[flat.len() - 3..] else {
        unreachable!("three values were appended");
    };
    let mut at = 0;
    grads.for_each_mut(|_, values| {
        for g in values.iter_mut() {
            *g = flat[at] / total_rows;
            at += 1;
        }
    });
    Ok(Reduced {
        loss: loss / total_rows,
        interrupted: stops > 0.0,
    })
}

/// The mean loss of a set of batches each split over the ranks: `shares[i]` is this rank's
/// (loss, rows) of batch i (rows 0 where its slice is empty). Batch i's loss is the
/// rows-weighted mean of its slices; the result is the plain mean over batches, as one process
/// computes it.
pub(crate) fn mean_over_batches(
    group: &dyn Collective,
    shares: &[(f32, usize)],
) -> Result<Option<f32>, Error> {
    if shares.is_empty() {
        return Ok(None);
    }
    let mut flat: Vec<f32> = (shares.iter())
        .flat_map(|&(loss, rows)| [loss * rows as f32, rows as f32])
        .collect();
    sum_in_rank_order(group, &mut flat)?;
    let total: f64 = (flat.chunks_exact(2))
        .map(|pair| (pair[0] / pair[1]) as f64)
        .sum();
    Ok(Some((total / shares.len() as f64) as f32))
}

/// Rows `[first, first + count)` of `batch` (sequences, the batch axis): x, the initial
/// states of every cell, the lengths and the targets of those sequences (every step's rows
/// under `Readout::All`). `None` when the slice is empty.
pub fn batch_rows(
    batch: &Batch<f32>,
    readout: Readout,
    first: usize,
    count: usize,
) -> Option<Batch<f32>> {
    let b = batch.batch_size();
    let end = (first + count).min(b);
    if first >= end {
        return None;
    }
    let keep = |row: usize| (first..end).contains(&(row % b));
    // h0 [L*D*B, H], targets [T*B, ...] under Readout::All: row r is sequence r % B
    let rows_of = |len: usize| (0..len).filter(|&r| keep(r)).collect::<Vec<usize>>();
    let states = |a: &ndarray::Array2<f32>| a.select(Axis(0), &rows_of(a.nrows()));
    let target_rows = match readout {
        Readout::All => rows_of(batch.seq_len() * b),
        Readout::Last => (first..end).collect(),
    };
    Some(Batch {
        x: batch.x.slice(s![.., first..end, ..]).to_owned(),
        h0: batch.h0.as_ref().map(states),
        c0: batch.c0.as_ref().map(states),
        targets: match &batch.targets {
            Targets::Values(y) => Targets::Values(y.select(Axis(0), &target_rows)),
            Targets::Classes(c) => Targets::Classes(target_rows.iter().map(|&r| c[r]).collect()),
        },
        lengths: batch.lengths.as_ref().map(|l| l[first..end].to_vec()),
    })
}

/// This rank's slice of a global batch of `ranks * per_rank` sequences.
pub(crate) fn shard(
    group: &dyn Collective,
    batch: &Batch<f32>,
    readout: Readout,
    per_rank: usize,
) -> Option<Batch<f32>> {
    batch_rows(batch, readout, group.rank() * per_rank, per_rank)
}

/// FNV-1a over the bits of every parameter: equal on every rank while the replicas are.
pub fn checksum(params: &Params<f32>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for (_, values) in params.tensors() {
        for v in values {
            for byte in v.to_bits().to_le_bytes() {
                hash = (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    hash
}

/// Refuses replicas that have drifted apart: every rank's checksum against rank 0's.
pub fn check_replicas(
    group: &dyn Collective,
    params: &Params<f32>,
    step: u64,
) -> Result<(), Error> {
    let sums = group.all_gather_bytes(&checksum(params).to_le_bytes())?;
    let value = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    match (sums.iter().enumerate()).find(|(_, s)| value(s) != value(&sums[0])) {
        None => Ok(()),
        Some((rank, sum)) => Err(Error::Ranks(format!(
            "rank {rank}'s parameters differ from rank 0's after step {step} (checksums \
             {:016x} and {:016x}): the replicas no longer take identical steps",
            value(sum),
            value(&sums[0])
        ))),
    }
}

/// Refuses ranks started differently: each rank's `settings` (name, value) pairs against
/// rank 0's, naming the first that differs with both values.
pub fn check_same_settings(
    group: &dyn Collective,
    settings: &[(String, String)],
) -> Result<(), Error> {
    let text: String = (settings.iter())
        .map(|(name, value)| format!("{name}\u{1f}{value}\u{1e}"))
        .collect();
    let all = group.all_gather_bytes(text.as_bytes())?;
    let parse = |bytes: &[u8]| -> Vec<(String, String)> {
        (String::from_utf8_lossy(bytes).split('\u{1e}'))
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, value) = s.split_once('\u{1f}').unwrap_or((s, ""));
                (name.to_string(), value.to_string())
            })
            .collect()
    };
    let first = parse(&all[0]);
    for (rank, bytes) in all.iter().enumerate().skip(1) {
        let theirs = parse(bytes);
        let names = (first.iter().chain(&theirs)).map(|(name, _)| name.as_str());
        for name in names {
            let of = |list: &[(String, String)]| {
                (list.iter().find(|(n, _)| n == name))
                    .map_or("(not given)".to_string(), |p| p.1.clone())
            };
            let (zero, other) = (of(&first), of(&theirs));
            if zero != other {
                return Err(Error::Ranks(format!(
                    "the ranks were started differently: {name} is {zero} on rank 0 and \
                     {other} on rank {rank}; every rank must run the same command"
                )));
            }
        }
    }
    Ok(())
}

/// Ranks as threads of one process, for tests of everything above the transport: each
/// collective waits for every rank, then reads what all of them posted.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Posts>,
}

struct Posts {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

impl ThreadGroup {
    /// `ranks` members of one group, rank 0 first; give each to its own thread.
    pub fn new(ranks: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Posts {
            barrier: Barrier::new(ranks),
            slots: Mutex::new(vec![Vec::new(); ranks]),
        });
        (0..ranks)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's bytes: post, wait for all, read, wait again before the slots are reused.
    fn exchange(&self, send: &[u8]) -> Vec<Vec<u8>> {
        self.shared.slots.lock().unwrap()[self.rank] = send.to_vec();
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().unwrap().clone();
        self.shared.barrier.wait();
        all
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn to_floats(bytes: &[u8]) -> Vec<f32> {
    let word = |w: &[u8]| f32::from_le_bytes(w.try_into().expect("4 bytes"));
    bytes.chunks_exact(4).map(word).collect()
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.shared.barrier_ranks()
    }

    fn all_to_all(&self, send: &[f32]) -> Result<Vec<f32>, Error> {
        let n = send.len() / self.ranks();
        let all = self.exchange(&to_bytes(send));
        let mine = |from: &Vec<u8>| to_floats(&from[self.rank * n * 4..(self.rank + 1) * n * 4]);
        Ok(all.iter().flat_map(mine).collect())
    }

    fn all_gather(&self, send: &[f32]) -> Result<Vec<f32>, Error> {
        let all = self.exchange(&to_bytes(send));
        Ok(all.iter().flat_map(|bytes| to_floats(bytes)).collect())
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.exchange(send))
    }
}

impl Posts {
    fn barrier_ranks(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}
