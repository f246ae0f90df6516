//! One batch of sequences: inputs, optional initial state, and targets.

use crate::config::{Cell, Loss, ModelConfig};
use crate::error::Error;
use crate::float::Float;
use crate::params::check_shape;
use ndarray::{Array2, Array3};
use rand::Rng;

/// What the head is scored against, one entry per scored row (see `Readout`).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<F> {
    /// MSE targets, `[rows, O]`.
    Values(Array2<F>),
    /// Cross-entropy class indices in `0..O`, `[rows]`.
    Classes(Vec<u32>),
}

/// `B` sequences of `T` steps with their targets: what one forward and backward pass reads.
///
/// x `[T, B, I]` (time-major, as PyTorch's default `batch_first=False`);
/// h0, c0 `[L*D*B, H]`: every cell's initial state, cell by cell in `Params::cells` order
/// (PyTorch's h_0 `[L*D, B, H]` with its first two axes merged; `[B, H]` for one cell), zero
/// when absent, c0 only for the LSTM;
/// lengths `[B]`: each sequence's steps, 1..=T (all T when absent). As with PyTorch's packed
/// sequences, the steps after a sequence's length are padding: they leave its state as it was
/// (so the last-step readout reads `h_len`), are not scored, and get no gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<F> {
    /// The inputs, `[T, B, I]`, time-major.
    pub x: Array3<F>,
    /// Every cell's initial hidden state, `[L*D*B, H]`; zeros when `None`.
    pub h0: Option<Array2<F>>,
    /// Every LSTM cell's initial cell state, `[L*D*B, H]`; zeros when `None`, and `None` for
    /// the other cells.
    pub c0: Option<Array2<F>>,
    /// What the scored rows are compared with.
    pub targets: Targets<F>,
    /// Each sequence's length in steps, `[B]`, each in `1..=T`; every sequence is `T` steps
    /// long when `None`.
    pub lengths: Option<Vec<usize>>,
}

impl<F: Float> Batch<F> {
    /// `T`: time steps, padding included.
    pub fn seq_len(&self) -> usize {
        self.x.shape()[0]
    }

    /// `B`: sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.x.shape()[1]
    }

    /// Whether step `t` (0-based) of sequence `b` is within its length.
    pub fn is_step_valid(&self, t: usize, b: usize) -> bool {
        self.lengths.as_ref().is_none_or(|l| t < l[b])
    }

    /// Scored rows that count in the loss: all under `Readout::Last` (h_T = h_len there), and
    /// under `Readout::All` the rows of steps within their sequence's length.
    pub fn valid_rows(&self, readout: crate::config::Readout) -> usize {
        let (t, b) = (self.seq_len(), self.batch_size());
        match (readout, &self.lengths) {
            (crate::config::Readout::All, Some(lengths)) => lengths.iter().sum(),
            (crate::config::Readout::All, None) => t * b,
            (crate::config::Readout::Last, _) => b,
        }
    }

    /// Fresh random data for tests and the `parity` command: x uniform in [-1, 1), h0 and c0
    /// uniform in [-0.5, 0.5), MSE targets uniform in [-1, 1), classes uniform in 0..O.
    pub fn random(config: &ModelConfig, seq_len: usize, batch: usize, rng: &mut impl Rng) -> Self {
        let (h, o) = (config.hidden_size, config.output_size);
        let mut uniform = |shape: &[usize], bound: f64| {
            let n = shape.iter().product();
            (0..n)
                .map(|_| F::from_f64(rng.random_range(-bound..bound)).unwrap())
                .collect::<Vec<F>>()
        };
        let x = Array3::from_shape_vec(
            (seq_len, batch, config.input_size),
            uniform(&[seq_len, batch, config.input_size], 1.0),
        )
        .unwrap();
        // Every cell's initial state, [L*D*B, H].
        let states = config.cells() * batch;
        let h0 = Array2::from_shape_vec((states, h), uniform(&[states, h], 0.5)).unwrap();
        let c0 = (config.cell == Cell::Lstm)
            .then(|| Array2::from_shape_vec((states, h), uniform(&[states, h], 0.5)).unwrap());
        let rows = config.scored_rows(seq_len, batch);
        let targets = match config.loss {
            Loss::Mse => Targets::Values(
                Array2::from_shape_vec((rows, o), uniform(&[rows, o], 1.0)).unwrap(),
            ),
            Loss::CrossEntropy => {
                Targets::Classes((0..rows).map(|_| rng.random_range(0..o as u32)).collect())
            }
        };
        Batch {
            x,
            h0: Some(h0),
            c0,
            targets,
            lengths: None,
        }
    }

    /// Checks every shape and value against `config`, naming what disagrees.
    pub fn check(&self, config: &ModelConfig) -> Result<(), Error> {
        let (t, b) = (self.seq_len(), self.batch_size());
        if t == 0 || b == 0 {
            return Err(Error::Value(format!(
                "x has shape {:?}: seq_len and batch must be at least 1",
                self.x.shape()
            )));
        }
        check_shape("x", self.x.shape(), &[t, b, config.input_size])?;
        if let Some(lengths) = &self.lengths {
            check_shape("lengths", &[lengths.len()], &[b])?;
            if let Some((k, &len)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > t) {
                return Err(Error::Value(format!(
                    "sequence {k} has length {len}; lengths must be 1..={t} (the batch's seq_len)"
                )));
            }
        }
        // [L*D*B, H]: one [B, H] block per cell
        let state = [config.cells() * b, config.hidden_size];
        if let Some(h0) = &self.h0 {
            check_shape("h0", h0.shape(), &state)?;
        }
        match (&self.c0, config.cell) {
            (Some(c0), Cell::Lstm) => check_shape("c0", c0.shape(), &state)?,
            (Some(_), Cell::Rnn | Cell::Gru) => {
                return Err(Error::Config(format!(
                    "c0 given, but the {} has no cell state",
                    config.cell
                )))
            }
            _ => {}
        }
        let rows = config.scored_rows(t, b);
        match (&self.targets, config.loss) {
            (Targets::Values(y), Loss::Mse) => {
                check_shape("targets", y.shape(), &[rows, config.output_size])?
            }
            (Targets::Classes(c), Loss::CrossEntropy) => {
                check_shape("targets", &[c.len()], &[rows])?;
                if let Some((row, &class)) = c
                    .iter()
                    .enumerate()
                    .find(|(_, &k)| k as usize >= config.output_size)
                {
                    return Err(Error::Value(format!(
                        "target class {class} at row {row} is out of range 0..{}",
                        config.output_size
                    )));
                }
            }
            (Targets::Values(_), Loss::CrossEntropy) => {
                return Err(Error::Config(
                    "cross-entropy needs class indices, got real-valued targets".into(),
                ))
            }
            (Targets::Classes(_), Loss::Mse) => {
                return Err(Error::Config(
                    "MSE needs real-valued targets, got class indices".into(),
                ))
            }
        }
        Ok(())
    }
}

impl<F: Float> Batch<F> {
    /// Converts element type (f32 data for the GPU <-> f64 for the reference).
    pub fn cast<G: Float>(&self) -> Batch<G> {
        let convert = |v: &F| G::from_f64(v.to_f64().unwrap()).unwrap();
        Batch {
            x: self.x.map(convert),
            h0: self.h0.as_ref().map(|a| a.map(convert)),
            c0: self.c0.as_ref().map(|a| a.map(convert)),
            targets: match &self.targets {
                Targets::Values(y) => Targets::Values(y.map(convert)),
                Targets::Classes(c) => Targets::Classes(c.clone()),
            },
            lengths: self.lengths.clone(),
        }
    }
}
