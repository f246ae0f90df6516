//! Character-level language modelling on any file: x `[T, B, V]` one-hot, targets `[T * B]`
//! classes (row `t * B + b`), cross-entropy on every step (`Readout::All`).
//!
//! The file is read as bytes, not as UTF-8 text: the vocabulary is the sorted set of distinct
//! bytes in the file and each byte is one "character". Any file works, including non-UTF-8
//! text and binary data; a multi-byte UTF-8 character is several steps. Each sequence starts
//! at a uniformly random offset, and the target at step `t` is the byte at step `t + 1`.

use super::spec::DataSpec;
use super::task::Task;
use crate::config::{Loss, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use ndarray::Array3;
use rand::{Rng, RngCore};
use std::path::Path;

/// Converts a cross-entropy in nats per byte to bits per character (byte).
pub fn bits_per_char(loss_nats: f32) -> f32 {
    loss_nats / std::f32::consts::LN_2
}

/// The byte <-> class mapping: class `k` is the `k`-th smallest distinct byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    /// Sorted, distinct; `symbols[class] = byte`.
    symbols: Vec<u8>,
    /// `class_of[byte]`, for bytes that occur.
    class_of: [Option<u32>; 256],
}

impl Vocabulary {
    /// The distinct bytes of `data`.
    pub fn from_data(data: &[u8]) -> Self {
        let mut seen = [false; 256];
        for &byte in data {
            seen[byte as usize] = true;
        }
        let symbols = (0..=255u8).filter(|&b| seen[b as usize]).collect();
        Self::from_sorted(symbols)
    }

    /// Rebuilds a vocabulary saved as `symbols()`, e.g. next to a checkpoint.
    pub fn from_symbols(symbols: &[u8]) -> Result<Self, Error> {
        if symbols.is_empty() || symbols.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Value(format!(
                "a vocabulary must be non-empty, sorted and without repeats, got {symbols:?}"
            )));
        }
        Ok(Self::from_sorted(symbols.to_vec()))
    }

    fn from_sorted(symbols: Vec<u8>) -> Self {
        let mut class_of = [None; 256];
        for (class, &byte) in symbols.iter().enumerate() {
            class_of[byte as usize] = Some(class as u32);
        }
        Vocabulary { symbols, class_of }
    }

    /// `V`: the number of classes.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether the vocabulary has no classes: only `from_data` of no bytes gives one
    /// (`from_symbols` refuses an empty list, `Text` an empty file).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The bytes in class order.
    pub fn symbols(&self) -> &[u8] {
        &self.symbols
    }

    /// The class of `byte`, `None` when the vocabulary lacks it.
    pub fn class_of(&self, byte: u8) -> Option<u32> {
        self.class_of[byte as usize]
    }

    /// The byte of `class`, `None` outside `0..V`.
    pub fn byte_of(&self, class: u32) -> Option<u8> {
        self.symbols.get(class as usize).copied()
    }

    /// Bytes to classes; refuses a byte the vocabulary lacks, naming it and its position.
    pub fn encode(&self, bytes: &[u8]) -> Result<Vec<u32>, Error> {
        bytes
            .iter()
            .enumerate()
            .map(|(at, &byte)| {
                self.class_of(byte).ok_or_else(|| {
                    Error::Value(format!(
                        "byte {byte:#04x} at position {at} is not in the vocabulary"
                    ))
                })
            })
            .collect()
    }

    /// Classes to bytes; refuses a class outside `0..V`.
    pub fn decode(&self, classes: &[u32]) -> Result<Vec<u8>, Error> {
        classes
            .iter()
            .enumerate()
            .map(|(at, &class)| {
                self.byte_of(class).ok_or_else(|| {
                    Error::Value(format!(
                        "class {class} at position {at} is out of range 0..{}",
                        self.len()
                    ))
                })
            })
            .collect()
    }
}

/// A byte-level language-modelling task over one file's contents.
#[derive(Clone, Debug)]
pub struct Text {
    name: String,
    vocabulary: Vocabulary,
    /// The whole file; bytes map to classes per batch, which keeps memory at one byte each.
    data: Vec<u8>,
    seq_len: usize,
    /// Entropy of the byte frequencies, nats: the unigram baseline.
    unigram_entropy: f64,
}

impl Text {
    /// Reads `path` whole. Errors name the file: unreadable (with the I/O error), empty, or
    /// shorter than `seq_len + 1` bytes (a sequence needs one more byte for its last target).
    pub fn from_file(path: impl AsRef<Path>, seq_len: usize) -> Result<Self, Error> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|err| {
            Error::Value(format!("cannot read text file '{}': {err}", path.display()))
        })?;
        Self::from_bytes(&path.display().to_string(), &data, seq_len)
    }

    /// Like `from_file` for data already in memory; `name` appears in error messages.
    pub fn from_bytes(name: &str, data: &[u8], seq_len: usize) -> Result<Self, Error> {
        if seq_len == 0 {
            return Err(Error::Config(
                "text task: seq_len must be at least 1".into(),
            ));
        }
        if data.is_empty() {
            return Err(Error::Value(format!("text file '{name}' is empty")));
        }
        if data.len() < seq_len + 1 {
            return Err(Error::Value(format!(
                "text file '{name}' has {} bytes, but seq_len {seq_len} needs at least {} \
                 (each sequence also needs the byte after its last step as a target)",
                data.len(),
                seq_len + 1
            )));
        }
        Ok(Text {
            name: name.to_string(),
            vocabulary: Vocabulary::from_data(data),
            unigram_entropy: unigram_entropy(data),
            data: data.to_vec(),
            seq_len,
        })
    }

    /// The file's distinct bytes as classes: `V`, the one-hot input width and the number of
    /// output classes.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The file name (or the name given to `from_bytes`).
    pub fn source_name(&self) -> &str {
        &self.name
    }

    /// Bytes in the file.
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }
}

fn unigram_entropy(data: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &byte in data {
        counts[byte as usize] += 1;
    }
    let total = data.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / total;
            -p * p.ln()
        })
        .sum()
}

impl Task for Text {
    fn name(&self) -> &'static str {
        "text"
    }

    fn spec(&self) -> DataSpec {
        DataSpec {
            input_size: self.vocabulary.len(),
            output_size: self.vocabulary.len(),
            readout: Readout::All,
            loss: Loss::CrossEntropy,
        }
    }

    fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The file as `batch_size` contiguous streams (stream b starts at b * len / B); chunk k
    /// reads steps [k * steps, (k + 1) * steps) of each, wrapping to the start when a stream
    /// has no whole chunk left.
    fn stream_chunk(
        &self,
        batch_size: usize,
        steps: usize,
        index: u64,
    ) -> Option<(Batch<f32>, bool)> {
        let v = self.vocabulary.len();
        // Each stream needs its chunk plus the byte after it as the last target.
        let stream_len = (self.data.len() - 1) / batch_size.max(1);
        let chunks_per_pass = (stream_len / steps.max(1)).max(1) as u64;
        let within = (index % chunks_per_pass) as usize;
        let steps = steps.min(self.data.len() - 1);
        let mut x = Array3::<f32>::zeros((steps, batch_size, v));
        let mut targets = vec![0u32; steps * batch_size];
        for b in 0..batch_size {
            // Short files: streams overlap rather than run past the end.
            let start = (b * stream_len + within * steps).min(self.data.len() - 1 - steps);
            let class = |t: usize| {
                self.vocabulary
                    .class_of(self.data[start + t])
                    .expect("the vocabulary covers its own data")
            };
            for t in 0..steps {
                x[[t, b, class(t) as usize]] = 1.0;
                targets[t * batch_size + b] = class(t + 1);
            }
        }
        let batch = Batch {
            x,
            h0: None,
            c0: None,
            targets: Targets::Classes(targets),
            lengths: None,
        };
        Some((batch, within == 0))
    }

    fn batch(&self, batch_size: usize, rng: &mut dyn RngCore) -> Batch<f32> {
        let (t_len, v) = (self.seq_len, self.vocabulary.len());
        // The last usable start leaves `seq_len + 1` bytes: inputs plus the final target.
        let last_start = self.data.len() - (t_len + 1);
        let mut x = Array3::<f32>::zeros((t_len, batch_size, v));
        let mut targets = vec![0u32; t_len * batch_size];
        for b in 0..batch_size {
            let start = rng.random_range(0..=last_start);
            let class = |t: usize| {
                let byte = self.data[start + t];
                self.vocabulary
                    .class_of(byte)
                    .expect("the vocabulary covers its own data")
            };
            for t in 0..t_len {
                x[[t, b, class(t) as usize]] = 1.0;
                targets[t * batch_size + b] = class(t + 1);
            }
        }
        Batch {
            x,
            h0: None,
            c0: None,
            targets: Targets::Classes(targets),
            lengths: None,
        }
    }

    /// Predicting every byte with its frequency in the file scores the unigram entropy; a
    /// uniform guess (`ln V`) is never better, so this is the stronger trivial baseline.
    fn baseline(&self) -> f32 {
        self.unigram_entropy as f32
    }

    fn baseline_description(&self) -> String {
        format!(
            "predict each byte's frequency in the file (unigram entropy): {:.4} nats = {:.3} \
             bits per char, V = {}",
            self.unigram_entropy,
            bits_per_char(self.unigram_entropy as f32),
            self.vocabulary.len()
        )
    }
}
