//! Long sequences: activations split into time segments (forced here by a small artificial
//! binding limit, so the sizes stay small), recomputation, and the memory plan against what the
//! GPU really allocates.

use super::{gpu, seed};
use rnn_wgpu::internals::parity::{random_problem, run_parity_with, TOLERANCE};
use rnn_wgpu::internals::plan::{self, MemoryLimits, PlanOptions, Recompute};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{Gpu, GpuModel, GpuOutput, Request};

fn config(cell: Cell, readout: Readout, loss: Loss) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 2,
        hidden_size: 5,
        output_size: 3,
        readout,
        loss,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// Every (cell, readout, loss) combination the engine has, with one layer and with three
/// (a stacked model runs layer by layer over the same segments).
fn configs() -> Vec<ModelConfig> {
    let mut all = Vec::new();
    for cell in [Cell::Lstm, Cell::Rnn, Cell::Gru] {
        for layers in [1, 3] {
            for (readout, loss) in [
                (Readout::Last, Loss::Mse),
                (Readout::All, Loss::CrossEntropy),
            ] {
                all.push(ModelConfig {
                    layers,
                    ..config(cell, readout, loss)
                });
            }
        }
    }
    all
}

/// The smallest binding limit under which segments of `steps` steps of a `seq_len`-step batch
/// fit (and `steps + 1` do not, where the per-segment buffers are the largest), so the off mode
/// splits exactly where a recomputed run would.
fn binding_for_segments_of(
    config: &ModelConfig,
    batch: usize,
    steps: usize,
    seq_len: usize,
) -> u64 {
    let unlimited = MemoryLimits {
        max_binding: u64::MAX,
        max_buffer: u64::MAX,
        uniform_align: 256,
        budget: None,
        budget_name: "--max-memory",
    };
    // A recomputed plan has the same per-segment buffers, and the whole-sequence ones (the
    // per-step norms) of the real length.
    plan::plan(
        config,
        seq_len,
        batch,
        0,
        Recompute::Every(steps.min(seq_len)),
        Default::default(),
        unlimited,
    )
    .unwrap()
    .largest_binding()
}

fn split(config: &ModelConfig, batch: usize, steps: usize, seq_len: usize) -> PlanOptions {
    PlanOptions {
        recompute: Recompute::Off,
        max_memory: None,
        max_binding: Some(binding_for_segments_of(config, batch, steps, seq_len)),
        precision: Default::default(),
    }
}

#[test]
fn split_activations_match_cpu_at_segment_borders() {
    const S: usize = 4;
    let batch = 3;
    let mut failed = Vec::new();
    for (k, config) in configs().into_iter().enumerate() {
        // Sequences ending one step before, on, and one step after a segment border.
        for seq_len in [S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1] {
            let options = split(&config, batch, S, seq_len);
            let seed = seed(300 + 10 * k as u64 + seq_len as u64);
            let (params, data) = random_problem(&config, seq_len, batch, seed);
            let model = planned_model(gpu(), &config, &params, options);
            let plan = model.memory_plan(gpu(), seq_len, batch).unwrap();
            assert_eq!(
                (plan.segment_len, plan.segments, plan.recompute),
                (S.min(seq_len), seq_len.div_ceil(S), false),
                "T={seq_len}: the binding limit should give segments of {S} steps"
            );
            let report = run_parity_with(gpu(), &config, &params, &data, options).unwrap();
            for c in report.failures(TOLERANCE) {
                failed.push(format!("{config:?} T={seq_len} seed={seed}: {c}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "||gpu - cpu|| / ||cpu|| > {TOLERANCE:e} with split activations:\n{}",
        failed.join("\n")
    );
}

fn planned_model(
    gpu: &Gpu,
    config: &ModelConfig,
    params: &rnn_wgpu::Params<f32>,
    options: PlanOptions,
) -> GpuModel {
    let mut model = GpuModel::new(gpu, *config, params).unwrap();
    model.set_plan_options(options, 0);
    model
}

/// Every tensor of a full request, by name, for bitwise comparison.
fn tensors(out: &GpuOutput) -> Vec<(String, Vec<f32>)> {
    let mut all = vec![("loss".to_string(), vec![out.loss])];
    let mut add = |name: &str, values: Option<Vec<f32>>| {
        all.push((name.to_string(), values.expect("requested")));
    };
    add(
        "outputs",
        out.outputs.as_ref().map(|a| a.iter().copied().collect()),
    );
    add("h_n", out.h_n.as_ref().map(|a| a.iter().copied().collect()));
    add("dx", out.dx.as_ref().map(|a| a.iter().copied().collect()));
    add("dh0", out.dh0.as_ref().map(|a| a.iter().copied().collect()));
    add("|dE/dh_t|", out.grad_norm_h.clone());
    if let Some(c) = &out.c_n {
        all.push(("c_n".into(), c.iter().copied().collect()));
        all.push((
            "dc0".into(),
            out.dc0.as_ref().unwrap().iter().copied().collect(),
        ));
        all.push(("|dE/dc_t|".into(), out.grad_norm_c.clone().unwrap()));
    }
    for (name, values) in out.grads.as_ref().expect("requested").tensors() {
        all.push((format!("d {name}"), values.to_vec()));
    }
    all
}

#[test]
fn recomputation_changes_no_bit() {
    // A batch wide enough that one step's buffers outweigh the three layers' norms [2, 3, T].
    let (batch, seq_len) = (7, 11);
    let mut differences = Vec::new();
    for (k, config) in configs().into_iter().enumerate() {
        let (params, data) = random_problem(&config, seq_len, batch, seed(400 + k as u64));
        // Segments of 4, 4, 3 steps; of 1 step each (2 where a whole-sequence buffer, the
        // 3 layers' dE/dh_0 [3B, H], outweighs a step's); and one segment (nothing recomputed).
        for wanted in [4, 1, seq_len] {
            let options = split(&config, batch, wanted, seq_len);
            let kept = planned_model(gpu(), &config, &params, options);
            let steps = kept.memory_plan(gpu(), seq_len, batch).unwrap().segment_len;
            assert!(steps <= wanted.max(2), "K={wanted}: segments of {steps}");
            let recomputed = planned_model(
                gpu(),
                &config,
                &params,
                PlanOptions {
                    recompute: Recompute::Every(steps),
                    ..PlanOptions::default()
                },
            );
            let plan = recomputed.memory_plan(gpu(), seq_len, batch).unwrap();
            assert_eq!(plan.recompute, steps < seq_len, "K={steps}");
            let a = kept.run(gpu(), &data, Request::everything()).unwrap();
            let b = recomputed.run(gpu(), &data, Request::everything()).unwrap();
            for ((name, x), (_, y)) in tensors(&a).into_iter().zip(tensors(&b)) {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                if let Some(i) = (0..x.len()).find(|&i| bits(&x)[i] != bits(&y)[i]) {
                    differences.push(format!(
                        "{config:?} K={steps}: {name}[{i}] kept {} recomputed {}",
                        x[i], y[i]
                    ));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "recomputation changed results:\n{}",
        differences.join("\n")
    );
}

#[test]
fn recomputed_gradients_match_cpu() {
    let mut failed = Vec::new();
    for (k, config) in configs().into_iter().enumerate() {
        for (seq_len, steps) in [(17, 5), (9, 2)] {
            let seed = seed(500 + 10 * k as u64 + steps as u64);
            let (params, data) = random_problem(&config, seq_len, 4, seed);
            let options = PlanOptions {
                recompute: Recompute::Every(steps),
                ..PlanOptions::default()
            };
            let report = run_parity_with(gpu(), &config, &params, &data, options).unwrap();
            for c in report.failures(TOLERANCE) {
                failed.push(format!("{config:?} T={seq_len} K={steps} seed={seed}: {c}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "recomputed gradients:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_gpu_allocates_what_the_plan_says() {
    // A context of its own: the shared one counts the buffers of tests running beside this.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let one = config(Cell::Lstm, Readout::All, Loss::CrossEntropy);
    let stacked = ModelConfig { layers: 3, ..one };
    let bidirectional = ModelConfig {
        layers: 2,
        bidirectional: true,
        ..one
    };
    let (seq_len, batch) = (40, 6);
    for (config, recompute) in [
        (one, Recompute::Off),
        (one, Recompute::Every(7)),
        (stacked, Recompute::Off),
        (stacked, Recompute::Every(7)),
        (bidirectional, Recompute::Off),
    ] {
        let (params, data) = random_problem(&config, seq_len, batch, seed(600));
        let options = PlanOptions {
            recompute,
            ..PlanOptions::default()
        };
        let model = planned_model(&gpu, &config, &params, options);
        let plan = model.memory_plan(&gpu, seq_len, batch).unwrap();
        let before = gpu.storage_bytes_created();
        model.run(&gpu, &data, Request::everything()).unwrap();
        let created = gpu.storage_bytes_created() - before;
        // The workspace is everything but the parameters (allocated with the model) and the
        // dispatch-parameter arena (a uniform buffer, made at submission).
        let planned: u64 = plan
            .terms
            .iter()
            .filter(|t| t.name != "parameters" && t.bound_whole || t.name == "parameter gradients")
            .map(|t| t.bytes())
            .sum();
        // The workspace allocates the plan's own list of buffers (`MemoryPlan::workspace`);
        // only the 16-byte floor of a buffer differs (the placeholders of buffers a cell lacks).
        let relative = (created as f64 - planned as f64).abs() / planned as f64;
        assert!(
            created >= planned && relative < 0.002,
            "{} layer(s), bidirectional {}, {recompute:?}: planned {planned} bytes of workspace, \
             created {created}\n{}",
            config.layers,
            config.bidirectional,
            plan.describe()
        );
    }
}

#[test]
fn a_budget_too_small_is_refused_before_anything_is_allocated() {
    let gpu = gpu();
    // Wide enough that activations, not the per-dispatch parameters, dominate.
    let config = ModelConfig {
        hidden_size: 32,
        ..config(Cell::Lstm, Readout::Last, Loss::Mse)
    };
    let (seq_len, batch) = (200, 8);
    let (params, data) = random_problem(&config, seq_len, batch, seed(700));
    let plan_for = |recompute| {
        let options = PlanOptions {
            recompute,
            ..PlanOptions::default()
        };
        planned_model(gpu, &config, &params, options)
            .memory_plan(gpu, seq_len, batch)
            .unwrap()
    };
    let full = plan_for(Recompute::Off).total_bytes();
    let smallest = plan_for(Recompute::Every(14)).total_bytes(); // ~ sqrt(T)
    assert!(smallest < full / 3, "recomputation should save memory");

    // Between the two: `off` is refused with the largest term and a way out...
    let budget = (smallest + full) / 2;
    let refused = planned_model(
        gpu,
        &config,
        &params,
        PlanOptions {
            recompute: Recompute::Off,
            max_memory: Some(budget),
            max_binding: None,
            precision: Default::default(),
        },
    );
    let error = refused
        .run(gpu, &data, Request::default())
        .unwrap_err()
        .to_string();
    for needle in ["--max-memory", "largest term is gate", "--recompute auto"] {
        assert!(error.contains(needle), "'{needle}' missing from: {error}");
    }
    // ...and `auto` recomputes, within the budget, with the CPU's gradients.
    let options = PlanOptions {
        recompute: Recompute::Auto,
        max_memory: Some(budget),
        max_binding: None,
        precision: Default::default(),
    };
    let auto = planned_model(gpu, &config, &params, options);
    let plan = auto.memory_plan(gpu, seq_len, batch).unwrap();
    assert!(
        plan.recompute && plan.total_bytes() <= budget,
        "{}",
        plan.describe()
    );
    let report = run_parity_with(gpu, &config, &params, &data, options).unwrap();
    let failures: Vec<String> = report
        .failures(TOLERANCE)
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(failures.is_empty(), "auto recomputation: {failures:?}");

    // A budget below even the smallest plan names what to change.
    let tiny = PlanOptions {
        recompute: Recompute::Auto,
        max_memory: Some(4096),
        max_binding: None,
        precision: Default::default(),
    };
    let error = planned_model(gpu, &config, &params, tiny)
        .run(gpu, &data, Request::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("more than --max-memory 4.0 KiB") && error.contains("--batch"),
        "{error}"
    );
}
