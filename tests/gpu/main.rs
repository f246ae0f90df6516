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

use rnn_wgpu::internals::gpu::{CoopEdge, MatrixUnits};
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

/// A context on the same adapter with the matrix units emulated on tiles of `edge`
/// (`MatrixUnits::Emulate`), so that the code of gemm_coop.wgsl and step_coop.wgsl runs where
/// the adapter has no matrix units, at every edge. It needs f16, which llvmpipe has: without
/// it the tests fail, never skip.
pub fn emulated_matrix_units(edge: CoopEdge) -> &'static Gpu {
    static GPUS: [OnceLock<Gpu>; 2] = [OnceLock::new(), OnceLock::new()];
    let at = CoopEdge::PREFERRED.iter().position(|&e| e == edge).unwrap();
    GPUS[at].get_or_init(|| {
        let gpu = Gpu::with_matrix_units(MatrixUnits::Emulate(edge))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter and must not be skipped: {e}"));
        assert!(
            gpu.matrix_units_emulated(),
            "emulated matrix units need f16 in shaders: {:?}",
            gpu.matrix_units()
        );
        gpu
    })
}

/// The contexts the kernels on matrix units are checked on: emulated on tiles of every edge,
/// and one on the adapter's own matrix units where the run asks for them
/// (`RNN_WGPU_MATRIX_UNITS=on`, as scripts/matrix_units_check.sh does on a llvmpipe that has
/// cooperative matrices): then they must be on. Each with its name for messages; each used
/// only for f16 work, so what it compiled shows where that work ran.
pub fn matrix_unit_contexts() -> Vec<(&'static Gpu, String)> {
    let emulated = (CoopEdge::PREFERRED.into_iter()).map(|edge| {
        (
            emulated_matrix_units(edge),
            format!("emulated on {edge} tiles"),
        )
    });
    let mut contexts: Vec<_> = emulated.collect();
    if MatrixUnits::from_env() == MatrixUnits::On {
        static GPU: OnceLock<Gpu> = OnceLock::new();
        let gpu = GPU.get_or_init(|| {
            Gpu::with_matrix_units(MatrixUnits::On)
                .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
        });
        let coop = gpu.matrix_units().unwrap_or_else(|why| {
            panic!("RNN_WGPU_MATRIX_UNITS=on asks for the adapter's matrix units: {why}")
        });
        contexts.push((gpu, format!("the adapter's matrix units ({coop})")));
    }
    contexts
}

/// Seeds are fixed so failures reproduce; set RNN_WGPU_TEST_SEED to draw other data.
pub fn seed(case: u64) -> u64 {
    let base: u64 = std::env::var("RNN_WGPU_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    base.wrapping_mul(1_000_003).wrapping_add(case)
}
