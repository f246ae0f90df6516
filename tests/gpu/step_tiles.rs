//! The fused step kernels (shaders/fused.wgsl) in workgroup shapes other than the rule's
//! (`Gpu::force_step_tile`, `RNN_WGPU_STEP_TILE` in the CLI): odd invocation counts and slices
//! of K that divide nothing, K split over layers of invocations, every cell, stacked and
//! bidirectional. Every shape with K whole sums each output over k in order from 0, so all
//! give the same bits; a shape with K split sums in another fixed order, the same bits on
//! every run; and a shape past the adapter's workgroup memory is refused with a message that
//! names it.

use super::determinism::bits;
use super::seed;
use rnn_wgpu::internals::gpu::{Recurrence, StepShape, StepShapes, StepTile};
use rnn_wgpu::internals::parity::{random_problem, run_parity, TOLERANCE};
use rnn_wgpu::{Activation, Cell, Error, Loss, ModelConfig, Precision, Readout};
use rnn_wgpu::{Gpu, GpuModel, Request};

fn config(cell: Cell, layers: usize, bidirectional: bool) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: 65,
        output_size: 2,
        readout: Readout::All,
        loss: Loss::Mse,
        layers,
        bidirectional,
        dropout: 0.0,
    }
}

/// Shapes the rule never picks: 3x5 invocations with slices of 7, one invocation with slices
/// of 1, 16x4 with slices of 16; and K split: 3 layers of 3x5 with slices of 7, 2 layers of
/// one invocation, and 4 layers of 8x8 with slices of 8 (what the rule picks on a large GPU,
/// its slices halved to fit llvmpipe's workgroup memory). H = 65 leaves a last stage of K
/// shorter than one layer's slice.
const TILES: [&str; 6] = ["3x5x7", "1x1x1", "16x4x16", "3x5x7x3", "1x1x3x2", "8x8x8x4"];

#[test]
fn every_step_tile_matches_cpu_and_gives_the_same_bits() {
    // A context of its own: a forced tile applies to every model of its context.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let mut failed = Vec::new();
    for (k, (cell, layers, bidirectional)) in [
        (Cell::Lstm, 1, false),
        (Cell::Gru, 2, true),
        (Cell::Rnn, 2, false),
    ]
    .into_iter()
    .enumerate()
    {
        let config = config(cell, layers, bidirectional);
        let (params, batch) = random_problem(&config, 9, 17, seed(900 + k as u64));
        let mut first: Option<(String, Vec<u32>)> = None;
        for tile in TILES {
            let shape: StepTile = tile.parse().unwrap();
            gpu.force_step_tile(Some(shape));
            let rows = (batch.batch_size(), Precision::F32);
            let shapes = StepShapes::resolve(&gpu, &gpu.policy(), &config, rows).unwrap();
            assert_eq!(
                (shapes.forward, shapes.backward),
                (StepShape::Tile(shape), StepShape::Tile(shape))
            );
            let report = run_parity(&gpu, &config, &params, &batch).unwrap();
            for failure in report.failures(TOLERANCE) {
                failed.push(format!("{cell}, tile {tile}: {failure}"));
            }
            let mut model = GpuModel::new(&gpu, config, &params).unwrap();
            model.recurrence = Recurrence::Steps;
            let run = || bits(&model.run(&gpu, &batch, Request::everything()).unwrap());
            let bits = run();
            if shape.k_split > 1 {
                if run() != bits {
                    failed.push(format!("{cell}: tile {tile} gives other bits when rerun"));
                }
                continue;
            }
            match &first {
                None => first = Some((tile.to_string(), bits)),
                Some((other, expected)) if *expected != bits => failed.push(format!(
                    "{cell}: tiles {other} and {tile} give different bits"
                )),
                Some(_) => {}
            }
        }
    }
    gpu.force_step_tile(None);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn a_step_tile_past_the_workgroup_memory_is_refused_by_name() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    // 64 units x 4 gates x 64 k of vec4s: 256 KiB, more than any adapter's workgroup memory
    gpu.force_step_tile(Some("64x1x64".parse().unwrap()));
    let config = config(Cell::Lstm, 1, false);
    let (params, batch) = random_problem(&config, 3, 5, seed(910));
    let mut model = GpuModel::new(&gpu, config, &params).unwrap();
    model.recurrence = Recurrence::Steps;
    let err = model.run(&gpu, &batch, Request::everything()).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("64x1x64") && m.contains("workgroup memory")),
        "{err}"
    );
}

#[test]
fn step_tiles_parse_and_refuse_what_cannot_run() {
    let tile: StepTile = "8x4x16".parse().unwrap();
    assert_eq!(
        (tile.group_units, tile.group_rows, tile.slice, tile.k_split),
        (8, 4, 16, 1)
    );
    assert_eq!(tile.to_string(), "8x4x16");
    let split: StepTile = "8x8x16x4".parse().unwrap();
    assert_eq!((split.slice, split.k_split, split.stage()), (16, 4, 64));
    assert_eq!(split.to_string(), "8x8x16x4");
    assert_eq!("8x4x16x1".parse::<StepTile>().unwrap(), tile);
    for bad in [
        "8x8",
        "8x0x16",
        "32x16x4",
        "ax8x16",
        "",
        "8x8x16x0",
        "8x8x16x8",
        "1x1x1x1x1",
    ] {
        let err = bad.parse::<StepTile>().unwrap_err();
        assert!(err.to_string().contains("UNITSxROWSxSLICE"), "{bad}: {err}");
    }
}
