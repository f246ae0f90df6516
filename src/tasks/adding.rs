//! The adding problem (Hochreiter & Schmidhuber 1997; the version of Le et al. 2015):
//! x `[T, B, 2]`, targets `[B, 1]`, MSE on the last step.
//!
//! Feature 0 of every step is a value uniform in [0, 1); feature 1 is a marker that is 1 at
//! exactly two steps, one in the first half `0..T/2` and one in the second half `T/2..T`, and 0
//! elsewhere. The target is the sum of the two marked values. The first marker can be as far
//! as `T - 1` steps from the readout, so the task measures how far gradients carry.

use super::spec::DataSpec;
use super::task::Task;
use crate::config::{Loss, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use ndarray::{Array2, Array3};
use rand::{Rng, RngCore};

/// Feature index of the random value in each step.
pub const VALUE: usize = 0;
/// Feature index of the 0/1 marker in each step.
pub const MARKER: usize = 1;

/// The adding problem with sequences of `seq_len` steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adding {
    seq_len: usize,
}

impl Adding {
    /// Refuses `seq_len < 2`: each half must hold one marker.
    pub fn new(seq_len: usize) -> Result<Self, Error> {
        if seq_len < 2 {
            return Err(Error::Config(format!(
                "the adding problem needs seq_len >= 2 (one marker in each half), got {seq_len}"
            )));
        }
        Ok(Adding { seq_len })
    }
}

impl Task for Adding {
    fn name(&self) -> &'static str {
        "adding"
    }

    fn spec(&self) -> DataSpec {
        DataSpec {
            input_size: 2,
            output_size: 1,
            readout: Readout::Last,
            loss: Loss::Mse,
        }
    }

    fn seq_len(&self) -> usize {
        self.seq_len
    }

    fn batch(&self, batch_size: usize, rng: &mut dyn RngCore) -> Batch<f32> {
        let t_len = self.seq_len;
        let half = t_len / 2;
        let mut x = Array3::<f32>::zeros((t_len, batch_size, 2));
        let mut y = Array2::<f32>::zeros((batch_size, 1));
        for b in 0..batch_size {
            for t in 0..t_len {
                x[[t, b, VALUE]] = rng.random::<f32>();
            }
            let first = rng.random_range(0..half);
            let second = rng.random_range(half..t_len);
            x[[first, b, MARKER]] = 1.0;
            x[[second, b, MARKER]] = 1.0;
            y[[b, 0]] = x[[first, b, VALUE]] + x[[second, b, VALUE]];
        }
        Batch {
            x,
            h0: None,
            c0: None,
            targets: Targets::Values(y),
            lengths: None,
        }
    }

    /// The sum of two U(0, 1) values has mean 1 and variance 2 * 1/12 = 1/6.
    fn baseline(&self) -> f32 {
        1.0 / 6.0
    }

    fn baseline_description(&self) -> String {
        "always predict 1, the mean of the sum: MSE = Var(U1 + U2) = 1/6 ≈ 0.1667".into()
    }
}
