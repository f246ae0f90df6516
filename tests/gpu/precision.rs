//! `--precision f16` on the GPU: f16 storage of the activations, gates, their gradients and the
//! weights' working copy, every sum in f32.

use super::{gpu, matrix_unit_contexts, seed};
use crate::common::{assert_params_close, relative_error, small_model, TempDir, EVERY_CELL};
use ndarray_npy::WriteNpyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::checkpoint::{self, LoadOverrides};
use rnn_wgpu::internals::gpu::tuning::RecurrenceShape;
use rnn_wgpu::internals::gpu::{CoopStep, GemmKernel, Kernel, Shader, StepShape, StepShapes};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, F16_TOLERANCE};
use rnn_wgpu::internals::plan::{PlanOptions, Recompute};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use rnn_wgpu::tasks::{Adding, CopyMemory, Task};
use rnn_wgpu::train::{self, DataSource, Engine, Event, TrainOptions};
use rnn_wgpu::LossScaler;
use rnn_wgpu::Precision;
use rnn_wgpu::{Activation, Cell, Params};
use rnn_wgpu::{Gpu, GpuModel, Request};
use rnn_wgpu::{Loss, ModelConfig, Readout};

/// f16 storage stays near the f32 run (f16 keeps 11 significant bits: relative errors of a
/// few 1e-3) yet differs from it, for every cell.
#[test]
fn f16_storage_stays_near_f32() {
    for (k, (cell, activation)) in EVERY_CELL.into_iter().enumerate() {
        let config = small_model(cell, activation);
        let (params, batch) = random_problem(&config, 9, 5, seed(900 + k as u64));
        let run = |precision| {
            let mut model = GpuModel::new(gpu(), config, &params).unwrap();
            let options = PlanOptions {
                precision,
                ..Default::default()
            };
            model.set_plan_options(options, 0);
            model.run(gpu(), &batch, Request::everything()).unwrap()
        };
        let (full, half) = (run(Precision::F32), run(Precision::F16));
        let grads = |o: &rnn_wgpu::GpuOutput| {
            let g = o.grads.as_ref().unwrap();
            g.tensors()
                .into_iter()
                .flat_map(|(_, v)| v.to_vec())
                .collect::<Vec<f32>>()
        };
        let outputs = |o: &rnn_wgpu::GpuOutput| {
            o.outputs
                .as_ref()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        let (e_out, _) = relative_error(&outputs(&half), &outputs(&full));
        let (e_grad, _) = relative_error(&grads(&half), &grads(&full));
        let (e_dx, _) = relative_error(
            half.dx.as_ref().unwrap().as_slice().unwrap(),
            full.dx.as_ref().unwrap().as_slice().unwrap(),
        );
        eprintln!("{cell:?}/{activation:?}: outputs {e_out:.2e} grads {e_grad:.2e} dx {e_dx:.2e} loss {} vs {}", half.loss, full.loss);
        assert!(e_out < 1e-2 && e_grad < 3e-2 && e_dx < 3e-2, "{cell:?}");
        assert!(e_out > 0.0);
    }
}

/// One model shape of the f16 parity sweep.
#[derive(Clone, Copy)]
struct Case {
    batch: usize,
    seq_len: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
    ragged: bool,
    readout: Readout,
}

/// GPU f16 storage against the f64 reference rounding to f16 where the GPU stores, within
/// `F16_TOLERANCE`, for every cell at awkward sizes: batch 1, 3 and 33, T 1 to 65, hidden 1 to
/// 65, stacked, bidirectional, ragged, every-step readout, and in segments recomputed from
/// their saved states (f16 start states, odd element offsets).
#[test]
fn f16_parity_with_the_rounding_reference_at_awkward_sizes() {
    let failed = f16_parity_failures(gpu(), &awkward_cases());
    assert!(
        failed.is_empty(),
        "beyond {F16_TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// As above on every context of `matrix_unit_contexts` (the matrix units emulated on tiles of
/// each edge, and the adapter's own where the run asks for them): the products of two f16
/// operands (the input projection, the weight gradients, dx) run gemm_coop.wgsl, and the time
/// steps step_coop.wgsl, forward and backward, for every cell.
#[test]
fn f16_parity_holds_on_the_matrix_units() {
    let mut failed = Vec::new();
    for (gpu, name) in matrix_unit_contexts() {
        failed.extend(
            matrix_unit_parity_failures(gpu)
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
    }
    assert!(
        failed.is_empty(),
        "beyond {F16_TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// `f16_parity_failures` on `gpu`, whose matrix units are on, and what did not run on them.
fn matrix_unit_parity_failures(gpu: &Gpu) -> Vec<String> {
    gpu.watch_products();
    let mut failed = f16_parity_failures(gpu, &awkward_cases());
    let on_matrix_units = (gpu.watched_products().into_iter())
        .filter(|&p| GemmKernel::rule(gpu, p) == GemmKernel::MatrixUnits)
        .count();
    if on_matrix_units == 0 {
        failed.push("no product ran on the matrix units".into());
    }
    let compiled = gpu.compiled_kernels();
    // every cell's forward and backward step on matrix units: the coop kernels but the product's
    let steps: Vec<Kernel> = (Kernel::ALL.into_iter())
        .filter(|k| k.shader().on_matrix_units() && k.shader() != Shader::GemmCoop)
        .collect();
    assert_eq!(
        steps.len(),
        6,
        "three cells, forward and backward: {steps:?}"
    );
    let missing: Vec<_> = steps.iter().filter(|k| !compiled.contains(k)).collect();
    if !missing.is_empty() {
        failed.push(format!("never ran: {missing:?}"));
    }
    let fused = [Kernel::LstmForward, Kernel::LstmBackward];
    if fused.iter().any(|k| compiled.contains(k)) {
        failed.push(format!(
            "f16 steps ran without the matrix units: {compiled:?}"
        ));
    }
    failed
}

/// The matrix units' step with K split over 2 and 4 subgroups (`CoopStep::parts`, forced as
/// `rnn-wgpu tune` keeps a split) on every context of `matrix_unit_contexts` whose workgroups
/// hold them (the emulation on 8x8 tiles; llvmpipe's own 8x8 units where the run asks for
/// them): the steps resolve to those parts, and every cell stays within `F16_TOLERANCE` of the
/// reference, forward K over 2 stages and backward over 5 (LSTM) at H = 65.
#[test]
fn the_matrix_units_step_holds_with_k_split_over_subgroups() {
    let cases = [
        case(19, 6, 3, 65),
        Case {
            layers: 2,
            bidirectional: true,
            ragged: true,
            readout: Readout::All,
            ..case(3, 9, 2, 24)
        },
    ];
    let (mut failed, mut ran) = (Vec::new(), Vec::new());
    for (gpu, name) in matrix_unit_contexts() {
        let coop = gpu.matrix_units().unwrap();
        let (storage, most) = (
            gpu.limits.max_compute_workgroup_storage_size,
            gpu.limits.max_compute_invocations_per_workgroup,
        );
        for parts in [2, 4] {
            if (CoopStep { coop, parts }).refusal(storage, most).is_some() {
                continue;
            }
            let shapes = (cases.iter()).flat_map(|c| {
                (EVERY_CELL.iter()).map(|&(cell, _)| {
                    RecurrenceShape::new(cell, c.hidden, (c.batch, Precision::F16))
                })
            });
            let shapes: Vec<_> = shapes.collect();
            for &shape in &shapes {
                gpu.set_step_split(shape, parts);
                let config = small_model(shape.cell, Activation::Tanh);
                let config = ModelConfig {
                    hidden_size: shape.hidden,
                    ..config
                };
                let resolved =
                    StepShapes::resolve(gpu, &gpu.policy(), &config, (shape.batch, Precision::F16));
                match resolved.map(|s| (s.forward, s.backward)) {
                    Ok((StepShape::Coop(f), StepShape::Coop(b)))
                        if f.parts == parts && b.parts == parts => {}
                    other => failed.push(format!(
                        "{name}: {shape:?} in {parts} parts resolved to {other:?}"
                    )),
                }
            }
            failed.extend(
                (f16_parity_failures(gpu, &cases).into_iter())
                    .map(|f| format!("{name}, K in {parts} parts: {f}")),
            );
            for &shape in &shapes {
                gpu.forget_step_split(shape);
            }
            ran.push(format!("{name}, {parts} parts"));
        }
    }
    // the emulation on 8x8 tiles has 64 lanes: 2 and 4 parts always fit
    assert!(ran.len() >= 2, "ran only {ran:?}");
    assert!(
        failed.is_empty(),
        "beyond {F16_TOLERANCE:e}:\n{}",
        failed.join("\n")
    );
}

/// A case of one plain layer: the last step read out, full lengths.
fn case(batch: usize, seq_len: usize, input: usize, hidden: usize) -> Case {
    Case {
        batch,
        seq_len,
        input,
        hidden,
        layers: 1,
        bidirectional: false,
        ragged: false,
        readout: Readout::Last,
    }
}

/// Every cell at awkward sizes: batch 1, 3 and 33, T 1 to 65, hidden 1 to 65, stacked,
/// bidirectional, ragged and every-step readout.
fn awkward_cases() -> [Case; 5] {
    [
        case(1, 1, 1, 1),
        case(3, 17, 5, 17),
        // past one tile of the matrix units' step kernels (8 or 16) along both rows and units
        case(33, 5, 3, 33),
        Case {
            readout: Readout::All,
            ragged: true,
            ..case(3, 65, 2, 65)
        },
        Case {
            layers: 2,
            bidirectional: true,
            ragged: true,
            ..case(3, 9, 3, 5)
        },
    ]
}

/// Every cell in each of `cases` at f16 on `gpu` against the CPU engine's f16 mirror, T past 7
/// in segments recomputed from their saved states (f16 start states, odd element offsets): the
/// cases beyond `F16_TOLERANCE`, described.
fn f16_parity_failures(gpu: &Gpu, cases: &[Case]) -> Vec<String> {
    let recompute = PlanOptions {
        recompute: Recompute::Every(7),
        precision: Precision::F16,
        ..Default::default()
    };
    let plain = PlanOptions {
        precision: Precision::F16,
        ..Default::default()
    };
    let mut failed = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        for (cell, activation) in EVERY_CELL {
            let config = ModelConfig {
                cell,
                activation,
                input_size: c.input,
                hidden_size: c.hidden,
                output_size: 2,
                readout: c.readout,
                loss: Loss::Mse,
                layers: c.layers,
                bidirectional: c.bidirectional,
                dropout: 0.0,
            };
            let seed = seed(910 + k as u64);
            let (params, mut batch) = random_problem(&config, c.seq_len, c.batch, seed);
            if c.ragged {
                let lengths = (0..c.batch)
                    .map(|b| c.seq_len - b * c.seq_len / 3)
                    .collect();
                batch.lengths = Some(lengths);
            }
            let long = c.seq_len > 7 && !c.bidirectional;
            let options = if long { recompute } else { plain };
            let label = format!(
                "{cell:?}/{activation:?} B={} T={} I={} H={} layers={} bidirectional={} \
                 ragged={} readout={} recompute={long} seed={seed}",
                c.batch,
                c.seq_len,
                c.input,
                c.hidden,
                c.layers,
                c.bidirectional,
                c.ragged,
                c.readout
            );
            let report = run_parity_with(gpu, &config, &params, &batch, options)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            // A ReLU unit whose pre-activation lies within f16 rounding of the kink may switch
            // off on one side only: then its gradients differ, no kernel fault, and only the
            // forward values must agree.
            let forward_only = report.kinks > 0;
            let failures: Vec<_> = (report.failures(F16_TOLERANCE).into_iter())
                .filter(|c| !forward_only || !c.name.contains("d "))
                .collect();
            if !failures.is_empty() {
                let lines: Vec<String> = failures.iter().map(|c| format!("    {c}")).collect();
                failed.push(format!("{label}\n{}", lines.join("\n")));
            }
        }
    }
    failed
}

/// One engine training `task` at f16 storage from `params`, on the GPU or the CPU reference.
fn f16_engine<'g>(
    gpu: Option<&'g rnn_wgpu::Gpu>,
    config: ModelConfig,
    params: &rnn_wgpu::Params<f32>,
) -> Engine<'g> {
    let optimizer = OptimizerConfig::new(OptimizerKind::adamw());
    let mut engine = Engine::new(gpu, config, params, optimizer).unwrap();
    engine.set_precision(Precision::F16);
    engine
}

/// A resumed f16 run is the uninterrupted one bit for bit: dynamic loss scaling's state (a
/// scale moved by an overflow) comes back from the checkpoint with the optimizer's.
#[test]
fn a_resumed_f16_run_matches_an_uninterrupted_one_bit_for_bit() {
    let dir = TempDir::new("f16-resume");
    let task = CopyMemory::new(3).unwrap();
    let config = task.spec().model_config(Cell::Gru, Activation::Tanh, 17);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(950)));
    let options = |steps, save| TrainOptions {
        eval_every: 2,
        save,
        ..TrainOptions::new(steps, 5)
    };
    let run = |engine: &mut Engine, steps, save| {
        let mut data = DataSource::from_task(Box::new(task.clone()), 9);
        train::train(
            engine,
            &mut data,
            &config,
            &options(steps, save),
            &mut |_| {},
        )
        .unwrap();
    };
    // Far too large a first scale: the first steps overflow, are skipped and halve it.
    let start = LossScaler {
        scale: 2f32.powi(40),
        ..LossScaler::default()
    };
    let mut straight = f16_engine(Some(gpu()), config, &params);
    straight.set_loss_scaler(start);
    run(&mut straight, 6, None);
    let saved = dir.join("half.safetensors");
    let mut first = f16_engine(Some(gpu()), config, &params);
    first.set_loss_scaler(start);
    run(&mut first, 4, Some(saved.clone()));
    let loaded = checkpoint::load(&saved, &LoadOverrides::default()).unwrap();
    let mut second = f16_engine(Some(gpu()), config, &loaded.params);
    train::resume(&mut second, &loaded).unwrap();
    assert_eq!(second.loss_scaler(), first.loss_scaler());
    run(&mut second, 6, None);
    assert_eq!(second.loss_scaler(), straight.loss_scaler());
    assert!(straight.loss_scaler().unwrap().skipped > 0);
    assert_params_close(
        &second.params().unwrap(),
        &straight.params().unwrap(),
        0.0,
        "resumed",
    );
}

/// An overflowing scaled gradient skips the update on both engines alike: the parameters stay
/// as they were, the scale halves, the loop reports the step and goes on; once the scale fits,
/// the engines train the same model within the f16 parity bound.
#[test]
fn overflow_skips_the_update_and_halves_the_scale_on_both_engines() {
    let task = Adding::new(12).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 9);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(951)));
    let mut engines = [
        f16_engine(Some(gpu()), config, &params),
        f16_engine(None, config, &params),
    ];
    let mut skipped = [Vec::new(), Vec::new()];
    for (engine, skipped) in engines.iter_mut().zip(&mut skipped) {
        engine.set_loss_scaler(LossScaler {
            scale: 2f32.powi(30),
            ..LossScaler::default()
        });
        let mut data = DataSource::from_task(Box::new(task.clone()), 3);
        let mut first = train::train(
            engine,
            &mut data,
            &config,
            &TrainOptions::new(1, 8),
            &mut |_| {},
        );
        assert!(first.is_ok(), "{:?}", first.as_mut().err());
        assert_params_close(
            &engine.params().unwrap(),
            &params,
            0.0,
            "after a skipped step",
        );
        let mut data = DataSource::from_task(Box::new(task.clone()), 3);
        train::train(
            engine,
            &mut data,
            &config,
            &TrainOptions::new(40, 8),
            &mut |event| {
                if let Event::Skipped { step, scale } = event {
                    skipped.push((step, scale));
                }
            },
        )
        .unwrap();
    }
    assert_eq!(skipped[0], skipped[1], "the engines skip the same steps");
    let scaler = engines[0].loss_scaler().unwrap();
    assert_eq!(scaler.skipped as usize, skipped[0].len() + 1);
    assert_eq!(
        scaler.scale,
        2f32.powi(30 - scaler.skipped as i32),
        "{scaler:?}"
    );
    let (gpu_params, cpu_params) = (engines[0].params().unwrap(), engines[1].params().unwrap());
    assert_params_close(
        &gpu_params,
        &cpu_params,
        F16_TOLERANCE,
        "GPU against CPU at f16",
    );
}

/// How far f16 storage's gradients may lie from f32's (`grad --precision f16`, README): f16
/// keeps 11 significant bits, and the recurrence carries each step's rounding on; measured
/// below 2e-3 here.
const F16_AGAINST_F32: f64 = 1e-2;

/// `rnn-wgpu grad --precision f16` on the GPU and the CPU reference agree within the f16
/// parity bound, and lie within `F16_AGAINST_F32` of the f32 gradients, not on them.
#[test]
fn the_grad_command_at_f16_agrees_across_engines_and_near_f32() {
    let dir = TempDir::new("f16-grad");
    let task = Adding::new(13).unwrap();
    let config = task.spec().model_config(Cell::Lstm, Activation::Tanh, 17);
    let params = Params::<f32>::init_uniform(&config, &mut StdRng::seed_from_u64(seed(952)));
    let model = dir.join("model.safetensors");
    checkpoint::save(&model, &checkpoint::Checkpoint::new(config, params)).unwrap();
    let mut rng = StdRng::seed_from_u64(seed(953));
    let x = ndarray::Array3::<f32>::from_shape_fn((13, 3, 2), |_| rng.random_range(0.0..1.0));
    let y = ndarray::Array2::<f32>::from_shape_fn((3, 1), |_| rng.random_range(0.0..2.0));
    x.write_npy(std::fs::File::create(dir.join("x.npy")).unwrap())
        .unwrap();
    y.write_npy(std::fs::File::create(dir.join("y.npy")).unwrap())
        .unwrap();
    let grad = |device: &str, precision: &str| {
        let out = dir.join(&format!("{device}-{precision}.safetensors"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .args([
                "grad",
                "--device",
                device,
                "--precision",
                precision,
                "--model",
            ])
            .arg(&model)
            .args(["--input".as_ref(), dir.join("x.npy").as_os_str()])
            .args(["--target".as_ref(), dir.join("y.npy").as_os_str()])
            .args(["--out".as_ref(), out.as_os_str()])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "grad --device {device} --precision {precision}"
        );
        let got = checkpoint::load(&out, &LoadOverrides::default()).unwrap();
        assert_eq!(got.metadata["precision"], precision);
        got.params
    };
    let (gpu_half, cpu_half) = (grad("gpu", "f16"), grad("cpu", "f16"));
    let full = grad("gpu", "f32");
    assert_params_close(&gpu_half, &cpu_half, F16_TOLERANCE, "f16: GPU against CPU");
    assert_params_close(&gpu_half, &full, F16_AGAINST_F32, "f16 against f32");
    let flat = |p: &Params<f32>| -> Vec<f32> {
        p.tensors()
            .into_iter()
            .flat_map(|(_, v)| v.to_vec())
            .collect()
    };
    let (differs, _) = relative_error(&flat(&gpu_half), &flat(&full));
    assert!(differs > 0.0, "f16 storage changed nothing");
}
