//! What a model is: its cell, sizes, readout and loss. Everything else (parameters, data,
//! CPU and GPU passes) is shaped by a `ModelConfig`.

use crate::Error;
use std::fmt;
use std::str::FromStr;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)` (PyTorch's `nn.RNN`).
    Rnn,
    /// PyTorch's `nn.LSTM`, gates stacked row-wise as i, f, g, o.
    Lstm,
    /// PyTorch's `nn.GRU`, gates stacked row-wise as r, z, n; the reset gate scales the
    /// recurrent product inside n.
    Gru,
}

impl Cell {
    /// Gate blocks stacked in `weight_ih`/`weight_hh`: rows are `gates() * hidden`.
    pub fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// The vanilla RNN's nonlinearity (ignored by the LSTM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    /// The textbook model of vanishing gradients: its derivative is at most 1/4.
    Sigmoid,
    Relu,
}

/// Which hidden states the linear head `y = W_out h + b_out` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readout {
    /// Many-to-one: only `h_T`; `B` scored rows.
    Last,
    /// Many-to-many: every `h_t`; `T * B` scored rows, time-major (row = t * B + b).
    All,
}

/// The loss over the scored rows, averaged as PyTorch averages it (`reduction='mean'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Mean over all `rows * O` squared differences (`nn.MSELoss`).
    Mse,
    /// Softmax cross-entropy against class indices, mean over rows (`nn.CrossEntropyLoss`).
    CrossEntropy,
}

/// A model's architecture. `activation` only matters for `Cell::Rnn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub cell: Cell,
    pub activation: Activation,
    /// `I`: features per time step.
    pub input_size: usize,
    /// `H`: hidden units.
    pub hidden_size: usize,
    /// `O`: head outputs (classes for cross-entropy).
    pub output_size: usize,
    pub readout: Readout,
    pub loss: Loss,
}

impl ModelConfig {
    /// Rows of `weight_ih` and `weight_hh`: `G * H` with `G = 4` for the LSTM, 1 for the RNN.
    pub fn gate_rows(&self) -> usize {
        self.cell.gates() * self.hidden_size
    }

    /// Scalars in all parameter tensors together.
    pub fn param_count(&self) -> usize {
        let (gh, h, i, o) = (
            self.gate_rows(),
            self.hidden_size,
            self.input_size,
            self.output_size,
        );
        gh * (i + h + 2) + o * (h + 1)
    }

    /// Rows the head scores for a batch of `batch` sequences of `seq_len` steps.
    pub fn scored_rows(&self, seq_len: usize, batch: usize) -> usize {
        match self.readout {
            Readout::Last => batch,
            Readout::All => seq_len * batch,
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1, got 0")));
            }
        }
        // G*H*(I + H + 2) + O*(H + 1) parameters, in f64 for the CPU reference: sizes whose
        // product overflows (from a command line or a file's metadata) are refused here, before
        // any shape is computed from them.
        let (g, h, i, o) = (
            self.cell.gates(),
            self.hidden_size,
            self.input_size,
            self.output_size,
        );
        let bytes = (|| {
            let recurrent = g
                .checked_mul(h)?
                .checked_mul(i.checked_add(h)?.checked_add(2)?)?;
            let head = o.checked_mul(h.checked_add(1)?)?;
            recurrent.checked_add(head)?.checked_mul(8)
        })();
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(Error::Config(format!(
                "input_size {i}, hidden_size {h}, output_size {o}: the {} parameters would not fit \
                 in memory",
                self.cell
            )));
        }
        Ok(())
    }
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every accepted spelling, for error messages and `--help`.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(Error::Config(format!(
                        "unknown {} '{s}': expected one of {}",
                        stringify!($ty).to_lowercase(),
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}

text_enum!(Cell { Rnn => "rnn", Lstm => "lstm", Gru => "gru" });
text_enum!(Activation { Tanh => "tanh", Sigmoid => "sigmoid", Relu => "relu" });
text_enum!(Readout { Last => "last", All => "all" });
text_enum!(Loss { Mse => "mse", CrossEntropy => "ce" });
