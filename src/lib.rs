//! rnn-wgpu: batched vanilla RNN, LSTM and GRU forward and backpropagation through time (BPTT)
//! in WGSL compute shaders, stacked and bidirectional, a CPU reference on ndarray that defines
//! the same mathematics, and the per-time-step gradient norms `||dE/dh_t||` (and `||dE/dc_t||`)
//! that show gradients vanishing or exploding.
//!
//! Conventions are PyTorch's: time-major input `[T, B, I]`, LSTM gates stacked i, f, g, o, GRU
//! gates r, z, n, parameters named as `nn.LSTM.state_dict()` names them (`weight_ih_l0`,
//! `weight_hh_l1_reverse`, ...).
//!
//! # One forward and backward pass
//!
//! A [`ModelConfig`] says what the model is, [`Params`] holds its weights and a [`Batch`] its
//! data. The GPU engine ([`Gpu`], [`GpuModel`]) keeps the parameters on the GPU and reads back
//! only what the [`Request`] names; [`cpu::forward`] and [`cpu::backward`] are the reference,
//! in f32 or f64:
//!
//! ```no_run
//! use rand::{rngs::StdRng, SeedableRng};
//! use rnn_wgpu::{cpu, Activation, Batch, Cell, Loss, ModelConfig, Params, Readout};
//! use rnn_wgpu::{Gpu, GpuModel, Request};
//!
//! # fn main() -> Result<(), rnn_wgpu::Error> {
//! let config = ModelConfig {
//!     cell: Cell::Lstm,
//!     activation: Activation::Tanh,
//!     input_size: 2,
//!     hidden_size: 128,
//!     output_size: 1,
//!     readout: Readout::Last,
//!     loss: Loss::Mse,
//!     layers: 1,
//!     bidirectional: false,
//!     dropout: 0.0,
//! };
//! let mut rng = StdRng::seed_from_u64(1);
//! let params = Params::<f32>::init_uniform(&config, &mut rng); // PyTorch's default
//! let batch = Batch::<f32>::random(&config, 100, 32, &mut rng); // T = 100, B = 32
//!
//! let gpu = Gpu::new()?; // one context, reused
//! let model = GpuModel::new(&gpu, config, &params)?; // parameters stay on the GPU
//! let out = model.run(&gpu, &batch, Request::everything())?; // one submission, one read-back
//! println!("loss {} |dE/dh_1| {}", out.loss, out.grad_norm_h.unwrap()[0]);
//!
//! let fwd = cpu::forward(&config, &params, &batch)?; // the reference, f32 or f64
//! let bwd = cpu::backward(&config, &params, &batch, &fwd);
//! println!("loss {} |dE/dh_1| {}", fwd.loss, bwd.grad_norm_h[0]);
//! # Ok(())
//! # }
//! ```
//!
//! # Training
//!
//! An [`Engine`] takes one optimizer step on either device (`None` for the GPU context runs the
//! CPU engine), a [`DataSource`] hands it batches from a [`tasks::Task`] or a
//! [`tasks::Dataset`], and [`train::train`] runs the loop with validation, a log, checkpoints
//! and a clean stop on a non-finite loss:
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use rnn_wgpu::tasks::{Adding, Task};
//! use rnn_wgpu::{init, train, Activation, Cell, DataSource, Engine, InitConfig};
//! use rnn_wgpu::{OptimizerConfig, OptimizerKind, TrainOptions};
//!
//! # fn main() -> Result<(), rnn_wgpu::Error> {
//! let task = Adding::new(20)?; // the adding problem, T = 20
//! let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 16);
//! let params = init::initialize(&config, &InitConfig::default(), &mut StdRng::seed_from_u64(1))?;
//! let optimizer = OptimizerConfig::new(OptimizerKind::adam());
//! let mut engine = Engine::new(None, config, &params, optimizer)?;
//! let mut data = DataSource::from_task(Box::new(task), 1);
//! let options = TrainOptions::new(5, 8); // 5 steps of 8 sequences, no files written
//! let summary = train::train(&mut engine, &mut data, &config, &options, &mut |_event| {})?;
//! assert_eq!(summary.steps_taken, 5);
//! # Ok(())
//! # }
//! ```
//!
//! [`checkpoint::save`] and [`checkpoint::load`] move a model (and its optimizer state) through
//! safetensors files that PyTorch reads as they are.
//!
//! # What is public
//!
//! The names at the root and the modules [`checkpoint`], [`cpu`], [`init`], [`onnx`],
//! [`optim`], [`tasks`] and [`train`] are the library. [`internals`] holds the building blocks
//! of the `rnn-wgpu` command line, its tests and benchmarks (the GPU engine's kernels and
//! tuning, memory planning, data-parallel training, plotting, ...), public so that those can
//! reach them, with no promise that they stay as they are.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod cpu;
pub mod init;
pub mod onnx;
pub mod optim;
pub mod tasks;
pub mod train;

// Every public item of these is re-exported at the root.
mod config;
mod data;
mod error;
mod float;
mod params;
mod precision;

pub use checkpoint::{Checkpoint, LoadOverrides};
pub use config::{Activation, Cell, Loss, ModelConfig, Readout};
pub use data::{Batch, Targets};
pub use error::{Error, NonFinite};
pub use float::Float;
pub use init::InitConfig;
pub use internals::gpu::{Gpu, GpuModel, GpuOutput, Request};
pub use optim::{OptimizerConfig, OptimizerKind};
pub use params::{param_names, CellParams, Params};
pub use precision::{LossScaler, Precision};
pub use train::{DataSource, Engine, TrainOptions};

pub mod internals;
