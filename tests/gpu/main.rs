//! Every GPU test, as modules of one test binary. They need a real adapter (CI installs Mesa's
//! software Vulkan driver, lavapipe): without one they fail with the instructions, never skip.

#[path = "../common/mod.rs"]
mod common;
mod determinism;
mod device_lost;
mod distributed;
mod gemm;
mod limits;
mod non_finite;
mod optim;
mod parity;
mod persistent;
mod phases;
mod precision;
mod ragged;
mod segments;
mod stacked;
mod step_tiles;
mod study;
mod train;
mod tuning;
mod work_counts;

use rnn_wgpu::internals::gpu::MatrixUnits;
use rnn_wgpu::Gpu;
use std::sync::OnceLock;

/// The one context shared by every test in this binary.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("GPU tests need an adapter and must not be skipped: {e}"));
        eprintln!("GPU tests run on: {}", gpu.adapter_name());
        gpu
    })
}

/// A second context on the same adapter with the matrix units emulated
/// (`MatrixUnits::Emulate`), so that the code of gemm_coop.wgsl and step_coop.wgsl runs where
/// the adapter has no matrix units. It needs f16, which llvmpipe has: without it the tests fail, never skip.
pub fn emulated_matrix_units() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::with_matrix_units(MatrixUnits::Emulate)
            .unwrap_or_else(|e| panic!("GPU tests need an adapter and must not be skipped: {e}"));
        assert!(
            gpu.matrix_units_emulated(),
            "emulated matrix units need f16 in shaders: {:?}",
            gpu.matrix_units()
        );
        gpu
    })
}

/// Seeds are fixed so failures reproduce; set RNN_WGPU_TEST_SEED to draw other data.
pub fn seed(case: u64) -> u64 {
    let base: u64 = std::env::var("RNN_WGPU_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    base.wrapping_mul(1_000_003).wrapping_add(case)
}
