//! What a model is: its cell, sizes, readout and loss. Everything else (parameters, data,
//! CPU and GPU passes) is shaped by a `ModelConfig`.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

    /// Whether the cell keeps a state c beside h (the LSTM): handed across segments, its
    /// gradient carried and normed, c_n and dE/dc_0 read back.
    pub fn has_cell_state(self) -> bool {
        self == Cell::Lstm
    }

    /// Whether the recurrent product h_{t-1} W_hh^T is kept apart from the input's (the GRU,
    /// whose reset gate scales one block of it): then b_hh's gradient is its own column sums,
    /// where the other cells share b_ih's.
    pub(crate) fn keeps_recurrent_apart(self) -> bool {
        self == Cell::Gru
    }
}

/// The vanilla RNN's nonlinearity (ignored by the LSTM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `tanh`, PyTorch's default `nonlinearity`: zero-centred, derivative at most 1.
    Tanh,
    /// The textbook model of vanishing gradients: its derivative is at most 1/4.
    Sigmoid,
    /// `max(0, x)`: no saturation, so gradients can grow as well as vanish.
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
///
/// Stacked and bidirectional models are PyTorch's `num_layers` and `bidirectional`: layer 0
/// reads x, layer k > 0 reads layer k-1's outputs (both directions concatenated, forward
/// first: width D*H with D = 2 when bidirectional), with dropout between layers in training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// Which recurrent cell every layer and direction runs.
    pub cell: Cell,
    /// The vanilla RNN's nonlinearity (PyTorch's `nonlinearity`); the LSTM and GRU have their
    /// own gate functions and ignore it.
    pub activation: Activation,
    /// `I`: features per time step.
    pub input_size: usize,
    /// `H`: hidden units.
    pub hidden_size: usize,
    /// `O`: head outputs (classes for cross-entropy).
    pub output_size: usize,
    /// Which hidden states the head reads: the last step's or every step's.
    pub readout: Readout,
    /// What the head's outputs are scored with.
    pub loss: Loss,
    /// `L`: stacked layers (PyTorch's `num_layers`), at least 1.
    pub layers: usize,
    /// A second, reverse-time pass per layer (PyTorch's `bidirectional`).
    pub bidirectional: bool,
    /// Probability of zeroing each input of layers 1..L in training (PyTorch's `dropout`):
    /// never on the recurrent connections, nor at evaluation.
    pub dropout: f32,
}

impl ModelConfig {
    /// Rows of `weight_ih` and `weight_hh`: `G * H` with `G = 4` for the LSTM, 1 for the RNN.
    pub fn gate_rows(&self) -> usize {
        self.cell.gates() * self.hidden_size
    }

    /// Scalars in all parameter tensors together.
    pub fn param_count(&self) -> usize {
        let (gh, h, o) = (self.gate_rows(), self.hidden_size, self.output_size);
        let recurrent: usize = (0..self.cells())
            .map(|k| gh * (self.layer_input_size(k / self.directions()) + h + 2))
            .sum();
        recurrent + o * (self.head_input_size() + 1)
    }

    /// `D`: 2 for a bidirectional model, else 1.
    pub fn directions(&self) -> usize {
        1 + self.bidirectional as usize
    }

    /// Recurrent cells, one per layer and direction: `L * D`, indexed `layer * D + direction`
    /// (direction 1 is the reverse one).
    pub fn cells(&self) -> usize {
        self.layers * self.directions()
    }

    /// Features per step into `layer`: I for layer 0, D*H for the layers above it.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.directions() * self.hidden_size
        }
    }

    /// Features per scored row into the head: the last layer's D*H outputs.
    pub fn head_input_size(&self) -> usize {
        self.directions() * self.hidden_size
    }

    /// Whether this is PyTorch's plain one-layer, one-direction module.
    pub fn is_single_cell(&self) -> bool {
        self.cells() == 1
    }

    /// Rows the head scores for a batch of `batch` sequences of `seq_len` steps.
    pub fn scored_rows(&self, seq_len: usize, batch: usize) -> usize {
        match self.readout {
            Readout::Last => batch,
            Readout::All => seq_len * batch,
        }
    }

    /// Refuses (with [`Error::Config`]) a zero size or layer count, a dropout outside [0, 1),
    /// and sizes whose parameters would not fit in memory, before anything is allocated.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
            ("layers", self.layers),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1, got 0")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        // Per cell G*H*(I + H + 2) and D*G*H*(D*H + H + 2), and O*(D*H + 1) parameters, in f64 for the CPU reference: sizes whose
        // product overflows (from a command line or a file's metadata) are refused here, before
        // any shape is computed from them.
        let (g, h, i, o, d) = (
            self.cell.gates(),
            self.hidden_size,
            self.input_size,
            self.output_size,
            self.directions(),
        );
        let bytes = (|| {
            let dh = d.checked_mul(h)?;
            let cell = |width: usize| {
                g.checked_mul(h)?
                    .checked_mul(width.checked_add(h)?.checked_add(2)?)
            };
            let first = cell(i)?.checked_mul(d)?;
            let upper = cell(dh)?.checked_mul(d)?.checked_mul(self.layers - 1)?;
            let head = o.checked_mul(dh.checked_add(1)?)?;
            first.checked_add(upper)?.checked_add(head)?.checked_mul(8)
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
            /// The spelling the command line takes and checkpoints store (`Display` writes it,
            /// `FromStr` reads it back, in any case).
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

pub(crate) use text_enum;

text_enum!(Cell { Rnn => "rnn", Lstm => "lstm", Gru => "gru" });
text_enum!(Activation { Tanh => "tanh", Sigmoid => "sigmoid", Relu => "relu" });
text_enum!(Readout { Last => "last", All => "all" });
text_enum!(Loss { Mse => "mse", CrossEntropy => "ce" });
