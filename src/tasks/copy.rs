//! The copy-memory task (Hochreiter & Schmidhuber 1997; the version of Arjovsky et al. 2016):
//! x `[T + 20, B, 10]` one-hot, targets `[(T + 20) * B]` classes in `0..9`, cross-entropy on
//! every step (`Readout::All`, row `t * B + b`), where `T` is the delay.
//!
//! Input steps: 10 symbols drawn uniformly from 8 categories, then `T - 1` blanks, the
//! delimiter, then 10 more blanks. Target steps: blank for the first `T + 10` steps, then the
//! 10 symbols in order. Input classes: symbols `0..8`, [`BLANK`] = 8, [`DELIMITER`] = 9.
//!
//! Outputs have 9 classes (8 symbols and blank), not 10: the delimiter is never a target, and
//! a tenth output would only be a logit the model must learn to suppress. Output class `k` is
//! the same symbol as input class `k`.

use super::spec::DataSpec;
use super::task::Task;
use crate::config::{Loss, Readout};
use crate::data::{Batch, Targets};
use crate::error::Error;
use ndarray::Array3;
use rand::{Rng, RngCore};

/// Distinct symbols to remember.
pub const SYMBOLS: u32 = 8;
/// Symbols per sequence, shown first and recalled last.
pub const RECALL_LEN: usize = 10;
/// The blank class, in both inputs and outputs.
pub const BLANK: u32 = 8;
/// The input class that says "recall now"; never a target.
pub const DELIMITER: u32 = 9;
/// One-hot input width: 8 symbols, blank, delimiter.
pub const INPUT_CLASSES: usize = 10;
/// Output classes: 8 symbols and blank.
pub const OUTPUT_CLASSES: usize = 9;

/// Copy-memory with a delay of `delay` steps (`T`) between the symbols and the delimiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyMemory {
    delay: usize,
}

impl CopyMemory {
    /// Refuses `delay == 0`: the layout has `delay - 1` blanks before the delimiter.
    pub fn new(delay: usize) -> Result<Self, Error> {
        if delay == 0 {
            return Err(Error::Config(
                "the copy task needs a delay T >= 1 (T - 1 blanks precede the delimiter), got 0"
                    .into(),
            ));
        }
        Ok(CopyMemory { delay })
    }

    /// `T`, the delay: sequences are `T + 20` steps long, with `T - 1` blanks between the
    /// symbols and the delimiter.
    pub fn delay(&self) -> usize {
        self.delay
    }
}

impl Task for CopyMemory {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn spec(&self) -> DataSpec {
        DataSpec {
            input_size: INPUT_CLASSES,
            output_size: OUTPUT_CLASSES,
            readout: Readout::All,
            loss: Loss::CrossEntropy,
        }
    }

    /// `T + 20`: 10 symbols, `T - 1` blanks, the delimiter, 10 recall steps.
    fn seq_len(&self) -> usize {
        self.delay + 2 * RECALL_LEN
    }

    fn batch(&self, batch_size: usize, rng: &mut dyn RngCore) -> Batch<f32> {
        let t_len = self.seq_len();
        let delimiter_step = RECALL_LEN + self.delay - 1;
        let recall_start = t_len - RECALL_LEN;
        let mut x = Array3::<f32>::zeros((t_len, batch_size, INPUT_CLASSES));
        let mut classes = vec![BLANK; t_len * batch_size];
        for b in 0..batch_size {
            for t in 0..t_len {
                let input_class = if t < RECALL_LEN {
                    let symbol = rng.random_range(0..SYMBOLS);
                    classes[(recall_start + t) * batch_size + b] = symbol;
                    symbol
                } else if t == delimiter_step {
                    DELIMITER
                } else {
                    BLANK
                };
                x[[t, b, input_class as usize]] = 1.0;
            }
        }
        Batch {
            x,
            h0: None,
            c0: None,
            targets: Targets::Classes(classes),
            lengths: None,
        }
    }

    /// Zero loss on the `T + 10` steps whose target is surely blank, `ln 8` on each of the 10
    /// recall steps, averaged over all `T + 20` steps.
    fn baseline(&self) -> f32 {
        (RECALL_LEN as f64 * (SYMBOLS as f64).ln() / self.seq_len() as f64) as f32
    }

    fn baseline_description(&self) -> String {
        format!(
            "blank where the target is surely blank, uniform over the 8 symbols at the 10 recall \
             steps: 10 ln 8 / (T + 20) = {:.4} for T = {}",
            self.baseline(),
            self.delay
        )
    }
}
