//! rnn-wgpu: batched vanilla RNN, LSTM and GRU forward and backpropagation through time (BPTT)
//! in WGSL compute shaders, stacked and bidirectional, a CPU reference on ndarray that defines
//! the same mathematics, and the per-time-step gradient norms `||dE/dh_t||` (and `||dE/dc_t||`)
//! that show gradients vanishing or exploding.
//!
//! Conventions are PyTorch's: time-major input `[T, B, I]`, LSTM gates stacked i, f, g, o, GRU
//! gates r, z, n, parameters named as `nn.LSTM.state_dict()` names them (`weight_ih_l0`,
//! `weight_hh_l1_reverse`, ...).

pub mod auto_device;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod data;
pub mod distributed;
mod error;
mod float;
pub mod fsio;
pub mod gpu;
pub mod init;
pub mod non_finite;
pub mod onnx;
pub mod optim;
pub mod params;
pub mod parity;
pub mod plan;
pub mod plot;
pub mod precision;
pub mod sample;
pub mod study;
pub mod tasks;
pub mod train;

pub use config::{Activation, Cell, Loss, ModelConfig, Readout};
pub use data::{Batch, Targets};
pub use error::Error;
pub use float::Float;
pub use params::Params;
