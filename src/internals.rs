//! The building blocks of the `rnn-wgpu` command line, its tests and its benchmarks.
//!
//! They are public so that the binary, `tests/` and `benches/` can reach them; a library user
//! needs none of them for training or studying a model, and they change with the tool, with
//! no promise of stability.
//!
//! The files stay in `src/` beside the library's modules (`#[path]` below); the crate names
//! them by their place here, `crate::internals::gpu` and so on.

#[path = "auto_device.rs"]
pub mod auto_device;
#[path = "bench.rs"]
pub mod bench;
#[path = "distributed/mod.rs"]
pub mod distributed;
#[path = "fsio.rs"]
pub mod fsio;
#[path = "gpu/mod.rs"]
pub mod gpu;
#[path = "non_finite.rs"]
pub mod non_finite;
#[path = "parity.rs"]
pub mod parity;
#[path = "plan.rs"]
pub mod plan;
#[path = "plot.rs"]
pub mod plot;
#[path = "sample.rs"]
pub mod sample;
#[path = "study.rs"]
pub mod study;
