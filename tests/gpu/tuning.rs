//! Tuning (`rnn_wgpu::internals::gpu::tuning`): a tuned kernel is what `Auto` then runs, and
//! gives a correct product; tuning times only candidates whose product is right, and picks
//! among them by their times; a model's products are found by watching one step; the cache
//! file keeps other adapters' entries and refuses what it cannot trust. Each test makes a
//! context of its own: choices are per context, and the shared one must keep Auto's rules for
//! the other tests.

use super::gemm::{cases, mismatch, random, run_case};
use super::seed;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::internals::bench::{
    bench_shape, tune_recurrence, tune_step_split, tune_steps, Arch, Shape,
};
use rnn_wgpu::internals::gpu::gemm::{matmul_using, GemmKernel, Placement};
use rnn_wgpu::internals::gpu::tuning::{self, Check, Product, RecurrenceShape, Tuning};
use rnn_wgpu::internals::gpu::{CoopEdge, Kernel, MatrixUnits, Recurrence, StepKernel, StepShape};
use rnn_wgpu::internals::plan::PlanOptions;
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Readout};
use rnn_wgpu::{Gpu, Precision};
use std::path::PathBuf;

/// A one-layer, one-direction model of `cell`, as the suite's.
fn one_layer(cell: Cell) -> Arch {
    Arch {
        cell,
        layers: 1,
        bidirectional: false,
    }
}

/// A memory plan without recomputation or limits, storing in `precision`.
fn whole_sequence(precision: Precision) -> PlanOptions {
    PlanOptions {
        recompute: rnn_wgpu::internals::plan::Recompute::Off,
        max_memory: None,
        max_binding: None,
        precision,
    }
}

fn context() -> Gpu {
    Gpu::new().expect("GPU tests need an adapter and must not be skipped")
}

/// The entry points a candidate may dispatch for its product when Auto runs it: its register
/// block's, and the sum of K's parts.
fn entries_of(kernel: GemmKernel) -> Vec<Kernel> {
    match kernel {
        GemmKernel::Tile(tile) => vec![tile.kernel(), Kernel::GemmSplitSum],
        GemmKernel::MatrixUnits => vec![Kernel::GemmCoop],
        GemmKernel::Auto => unreachable!("Auto is not a candidate"),
    }
}

#[test]
fn a_tuned_kernel_is_what_auto_runs_and_its_product_is_right() {
    let gpu = context();
    let mut rng = StdRng::seed_from_u64(seed(1200));
    let mut failures = Vec::new();
    for shape in [(65, 17, 257), (3, 130, 33)] {
        for case in cases(shape, &mut rng) {
            let product = Product::new(shape, (case.trans_a, case.trans_b));
            for kernel in GemmKernel::candidates(&gpu, product) {
                gpu.set_choice(product, kernel);
                let run = run_case(&gpu, (GemmKernel::Auto, None), Placement::padded(3), &case);
                let label = format!("tuned {} {}", kernel.name(), case.label);
                if let Some(why) = mismatch(&case, &run.product) {
                    failures.push(format!("{label}: {why}"));
                }
                if !run.padding_kept {
                    failures.push(format!("{label}: wrote outside C"));
                }
                let allowed = entries_of(kernel);
                if run.kernels.iter().any(|k| !allowed.contains(k)) {
                    failures.push(format!("{label}: ran {:?}", run.kernels));
                }
            }
            gpu.forget_choice(product);
        }
    }
    assert_eq!(gpu.tuned_products(), 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tuning_times_every_candidate_and_leaves_the_rule_only_for_a_faster_one() {
    let gpu = context();
    let product = Product::new((33, 130, 65), (false, true));
    let tuned = tuning::tune_product(&gpu, product, 1).unwrap();
    let candidates = GemmKernel::candidates(&gpu, product);
    // every kernel is right here (the parity and GEMM tests say so), so none is left out
    assert!(tuned.rejected.is_empty(), "{:?}", tuned.rejected);
    assert_eq!(
        tuned.rule,
        GemmKernel::Tile(GemmKernel::Auto.resolve(&gpu, product.shape))
    );
    assert_eq!(
        tuned.seconds.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        candidates
    );
    for (kernel, seconds) in &tuned.seconds {
        assert!(
            seconds.is_finite() && *seconds > 0.0,
            "{}: {seconds} s",
            kernel.name()
        );
    }
    assert!(candidates.contains(&tuned.choice));
    if tuned.choice != tuned.rule {
        assert!(
            tuned.seconds_of(tuned.choice) < 0.95 * tuned.seconds_of(tuned.rule),
            "left the rule's {} ({} s) for {} ({} s)",
            tuned.rule.name(),
            tuned.seconds_of(tuned.rule),
            tuned.choice.name(),
            tuned.seconds_of(tuned.choice)
        );
    }
    // the context keeps the choice: Auto now runs it
    assert_eq!(gpu.tuned_products(), 1);
    let mut rng = StdRng::seed_from_u64(seed(1201));
    let (a, b) = (random(33, 65, &mut rng), random(130, 65, &mut rng));
    let run = matmul_using(
        &gpu,
        (GemmKernel::Auto, None),
        Placement::padded(0),
        (a.view(), false),
        (b.view(), true),
        None,
        None,
    )
    .unwrap();
    let allowed = entries_of(tuned.choice);
    assert!(
        run.kernels.iter().all(|k| allowed.contains(k)),
        "{}: ran {:?}",
        tuned.choice.name(),
        run.kernels
    );
}

/// A candidate whose product is off by more than the check's tolerance is left out with the
/// worst element named, and is never chosen, even where it is the rule's kernel. Kernels add
/// in different orders (the split ones sum slices of K apart, then the slices), so among all
/// this adapter runs, a tolerance equal to the smallest error leaves out exactly the kernels
/// further from the f64 answer than the best one; a wrong answer leaves out all of them, and
/// tuning fails naming each.
#[test]
fn a_candidate_with_a_wrong_product_is_left_out_and_never_chosen() {
    let gpu = context();
    let product = Product::new((17, 65, 257), (true, false));
    let mut check = Check::new(product);
    let kernels = super::gemm::tiles_under_test(&gpu);
    let errors: Vec<(GemmKernel, f64)> = kernels
        .iter()
        .copied()
        .map(|kernel| (kernel, check.compare(&gpu, kernel).unwrap().rel_error))
        .collect();
    for &(kernel, error) in &errors {
        assert!(
            error <= tuning::CHECK_TOLERANCE,
            "{}: {error:.3e}",
            kernel.name()
        );
    }
    let best = errors.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
    let off: Vec<GemmKernel> = errors.iter().filter(|e| e.1 > best).map(|e| e.0).collect();
    assert!(
        !off.is_empty(),
        "every candidate is equally close ({errors:?}): this test needs a product on which \
         their orders of summation differ"
    );
    check.tolerance = best;
    gpu.forget_choice(product);
    let tuned = tuning::tune_product_among(&gpu, &check, &kernels, 1).unwrap();
    let left_out: Vec<GemmKernel> = tuned.rejected.iter().map(|r| r.0).collect();
    assert_eq!(left_out, off, "{:?}", tuned.rejected);
    for (kernel, why) in &tuned.rejected {
        assert!(
            why.contains("wrong product") && why.contains("worst at row"),
            "{}: {why}",
            kernel.name()
        );
    }
    assert!(
        !off.contains(&tuned.choice),
        "chose {}",
        tuned.choice.name()
    );
    let timed: Vec<GemmKernel> = tuned.seconds.iter().map(|s| s.0).collect();
    assert!(timed.iter().all(|k| !off.contains(k)), "timed {timed:?}");
    assert!(tuned.seconds_of(tuned.choice).is_finite());

    // One wrong element in the answer: no candidate gives it, and tuning says which.
    check.tolerance = tuning::CHECK_TOLERANCE;
    check.answer[[5, 7]] += 1e4;
    gpu.forget_choice(product);
    let Err(e) = tuning::tune_product_among(&gpu, &check, &kernels, 1) else {
        panic!("tuning took a candidate against a wrong answer");
    };
    let e = e.to_string();
    assert!(e.contains("17x65x257 tn"), "{e}");
    for (kernel, _) in &errors {
        assert!(
            e.contains(&format!("{}: wrong product", kernel.name())),
            "{e}"
        );
    }
    assert!(e.contains("worst at row 5 column 7"), "{e}");
    assert_eq!(gpu.tuned_products(), 0, "a failed tuning left a choice");
}

/// One LSTM step at (B, T, I, H) = (3, 5, 2, 17) runs the recurrent products through Auto
/// (unless the persistent kernel runs the recurrence: steps are forced here).
#[test]
fn watching_one_step_finds_the_models_products() {
    let gpu = context();
    gpu.watch_products();
    let arch = one_layer(Cell::Lstm);
    let shape: Shape = "3,5,2,17".parse().unwrap();
    let options = whole_sequence(Precision::F32);
    bench_shape(Some(&gpu), arch, shape, 0, 1, options, Recurrence::Steps).unwrap();
    let products = gpu.watched_products();
    let (b, t, i, h) = (3, 5, 2, 17);
    for want in [
        ((t * b, 4 * h, i), (false, true)), // the input projection, X W_ih^T
        ((4 * h, h, t * b), (true, false)), // dW_hh = dgates^T h
        ((4 * h, i, t * b), (true, false)), // dW_ih = dgates^T x
    ] {
        let want = Product::new(want.0, want.1);
        assert!(products.contains(&want), "{want:?} not among {products:?}");
    }
    // The per-step products run inside the fused step kernels, not as products to tune.
    for step in [
        ((b, 4 * h, h), (false, true)),  // forward: h_{t-1} W_hh^T
        ((b, h, 4 * h), (false, false)), // backward: dgates W_hh
    ] {
        let step = Product::new(step.0, step.1);
        assert!(!products.contains(&step), "{step:?} among {products:?}");
    }
    // watching stopped
    assert!(gpu.watched_products().is_empty());
}

/// A file of its own under the target directory, removed first.
fn cache_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tuning");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn the_cache_keeps_other_adapters_and_refuses_what_it_cannot_trust() {
    let gpu = context();
    let path = cache_file("round_trip.json");
    let other = r#"{"format": 1, "adapters": {"another GPU | Metal": {"8x8x8 nn": "tiled"}}}"#;
    std::fs::write(&path, other).unwrap();
    let candidates = |product| GemmKernel::candidates(&gpu, product);
    let thin = Product::new((1, 3, 4096), (true, false));
    let odd = Product::new((65, 17, 257), (false, true));
    let half = odd.of((Precision::F16, Precision::F16));
    let tuned = Tuning {
        products: vec![
            (thin, candidates(thin)[0]),
            (odd, *candidates(odd).last().unwrap()),
            (half, candidates(half)[1]),
        ],
        recurrences: vec![
            (
                RecurrenceShape::new(Cell::Gru, 36, (1, Precision::F32)),
                Recurrence::Persistent,
            ),
            (
                RecurrenceShape::new(Cell::Lstm, 512, (64, Precision::F32)),
                Recurrence::Steps,
            ),
        ],
        steps: vec![
            (
                RecurrenceShape::new(Cell::Gru, 17, (33, Precision::F16)),
                StepKernel::Tiled,
            ),
            (
                RecurrenceShape::new(Cell::Lstm, 512, (256, Precision::F16)),
                StepKernel::MatrixUnits,
            ),
        ],
        splits: vec![
            (RecurrenceShape::new(Cell::Rnn, 65, (3, Precision::F32)), 1),
            (
                RecurrenceShape::new(Cell::Lstm, 512, (256, Precision::F16)),
                4,
            ),
        ],
    };
    tuning::write_tuning(&gpu, &path, &tuned).unwrap();
    let mut read = tuning::read_tuning(&gpu, &path).unwrap();
    read.products.sort_by_key(|(p, _)| *p);
    read.recurrences.sort_by_key(|(shape, _)| shape.hidden);
    read.steps.sort_by_key(|(shape, _)| shape.hidden);
    read.splits.sort_by_key(|(shape, _)| shape.hidden);
    assert_eq!(read, tuned);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("another GPU | Metal") && text.contains("8x8x8 nn"),
        "{text}"
    );
    assert!(text.contains("\"65x17x257 nt f16,f16\""), "{text}");
    let step = "\"f16 steps lstm h=512 b=256\": \"matrix-units\"";
    assert!(text.contains(step), "{text}");
    assert!(
        text.contains("\"step split lstm h=512 b=256 f16\": 4"),
        "{text}"
    );

    // what cannot be trusted is refused, naming the file and the entry
    let key = tuning::adapter_key(&gpu);
    let with = |entries: &str| {
        let key = key.replace('\\', "\\\\").replace('"', "\\\"");
        format!(r#"{{"format": 1, "adapters": {{"{key}": {entries}}}}}"#)
    };
    // a tile tuning never times: not a candidate anywhere
    let foreign = "4:3x5:7:3";
    for (text, names) in [
        ("{\"format\": 1, \"adapters\": ".to_string(), "is not JSON"),
        ("[1, 2]".to_string(), "\"format\": 1"),
        (with(r#"{"65x17 nt": "tiled"}"#), "a product '65x17 nt'"),
        (
            with(r#"{"65x17x257 nt f16": "tiled"}"#),
            "a product '65x17x257 nt f16'",
        ),
        (with(r#"{"65x17x257 nt": "fastest"}"#), "\"fastest\""),
        (
            with(&format!(r#"{{"65x17x257 nt": "{foreign}"}}"#)),
            foreign,
        ),
        (with(r#"{"recurrence lstm h=32 b=8": "auto"}"#), "\"auto\""),
        // a precision the engine does not store in
        (
            with(r#"{"recurrence lstm h=32 b=8 f64": "steps"}"#),
            "'recurrence lstm h=32 b=8 f64'",
        ),
        (
            with(r#"{"f16 steps gru h=32 b=8": "fastest"}"#),
            "a step kernel \"fastest\"",
        ),
        // layers of invocations: 1 to 4, as a number
        (
            with(r#"{"step split gru h=32 b=8": 8}"#),
            "a split of K 8 for step split gru h=32 b=8",
        ),
        (
            with(r#"{"step split gru h=32 b=8": "4"}"#),
            "a split of K \"4\"",
        ),
        (with(r#"{"step split gru h=32 b=8": 0}"#), "a split of K 0"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let e = tuning::read_tuning(&gpu, &path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains(names),
            "{text}: {e}"
        );
    }
    // a file of another format is someone else's: nothing for us, and `tune` replaces it
    std::fs::write(&path, r#"{"format": 99, "adapters": 3}"#).unwrap();
    assert!(tuning::read_tuning(&gpu, &path).unwrap().is_empty());
    tuning::write_tuning(&gpu, &path, &tuned).unwrap();
    assert_eq!(tuning::read_tuning(&gpu, &path).unwrap().len(), 9);

    // a split of K the matrix units' step cannot hold (the emulation at 16x16 runs one
    // subgroup of 256 lanes), where that step runs the f16 steps: refused, unless the shape's
    // steps are tuned to the tiles
    let emulated = super::emulated_matrix_units(CoopEdge::Sixteen);
    let split = r#""step split gru h=65 b=9 f16": 2"#;
    std::fs::write(&path, with(&format!("{{{split}}}"))).unwrap();
    let e = tuning::read_tuning(emulated, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("step split gru h=65 b=9 f16") && e.contains("512 invocations"),
        "{e}"
    );
    let tiled = r#""f16 steps gru h=65 b=9": "tiled""#;
    std::fs::write(&path, with(&format!("{{{split}, {tiled}}}"))).unwrap();
    assert_eq!(tuning::read_tuning(emulated, &path).unwrap().len(), 2);
    // without the matrix units the tiles run it
    std::fs::write(&path, with(&format!("{{{split}}}"))).unwrap();
    assert_eq!(tuning::read_tuning(&gpu, &path).unwrap().len(), 1);
}

/// Tuning the step kernels (f16, matrix units on; here emulated) checks the matrix units' step
/// against the CPU reference, times both kernels and keeps one; the choice is what the steps
/// then run on (each context below compiles only what it records). Without the matrix units,
/// or at f32, there is nothing to tune.
#[test]
fn tuning_the_step_kernels_times_both_and_the_choice_is_what_runs() {
    let gpu = Gpu::with_matrix_units(MatrixUnits::Emulate(CoopEdge::Sixteen)).unwrap();
    let arch = one_layer(Cell::Lstm);
    let half = whole_sequence(Precision::F16);
    let shape: Shape = "17,6,3,33".parse().unwrap();
    let tuned = tune_steps(&gpu, arch, shape, half, 1).unwrap().unwrap();
    assert_eq!(tuned.units_left_out, None);
    assert!(tuned.units_ms > 0.0 && tuned.tiled_ms > 0.0);
    let key = RecurrenceShape::new(Cell::Lstm, 33, (17, Precision::F16));
    assert_eq!(tuned.shape, key);
    assert_eq!(gpu.policy().step_kernel(key), Some(tuned.choice));
    let full = whole_sequence(Precision::F32);
    assert!(tune_steps(&gpu, arch, shape, full, 1).unwrap().is_none());
    let off = Gpu::with_matrix_units(MatrixUnits::Off).unwrap();
    assert!(tune_steps(&off, arch, shape, half, 1).unwrap().is_none());

    for (choice, runs, not) in [
        (
            StepKernel::Tiled,
            Kernel::LstmForward,
            Kernel::LstmForwardCoop,
        ),
        (
            StepKernel::MatrixUnits,
            Kernel::LstmBackwardCoop,
            Kernel::LstmBackward,
        ),
    ] {
        let gpu = Gpu::with_matrix_units(MatrixUnits::Emulate(CoopEdge::Sixteen)).unwrap();
        gpu.set_step_choice(key, choice);
        let result = bench_shape(Some(&gpu), arch, shape, 0, 1, half, Recurrence::Steps).unwrap();
        let compiled = gpu.compiled_kernels();
        assert!(
            compiled.contains(&runs) && !compiled.contains(&not),
            "{choice}: {compiled:?}"
        );
        // what bench reports (`step_kernel`, `step_shapes` in --json) is what ran
        assert_eq!(result.step_kernel, Some(choice));
        let shapes = result.step_shapes.expect("the steps ran a dispatch each");
        let on_units = |s: StepShape| matches!(s, StepShape::Coop { .. });
        let expected = choice == StepKernel::MatrixUnits;
        assert!(
            on_units(shapes.forward) == expected && on_units(shapes.backward) == expected,
            "{choice}: {shapes:?}"
        );
    }
}

/// Tuning how the steps split K times K whole and split over 2 and 4 layers (each split
/// checked against the CPU reference first) and keeps one; the choice is what the steps then
/// run in (bench's `step_shapes`), and any number of layers can be chosen. On the matrix units
/// the same holds for subgroups, as far as the workgroup holds them; in a forced tile there is
/// nothing to tune.
#[test]
fn tuning_the_steps_split_of_k_times_each_and_the_choice_is_what_runs() {
    let gpu = context();
    let arch = one_layer(Cell::Gru);
    let full = whole_sequence(Precision::F32);
    let shape: Shape = "9,5,3,65".parse().unwrap();
    let key = RecurrenceShape::new(Cell::Gru, 65, (9, Precision::F32));
    let tuned = tune_step_split(&gpu, arch, shape, full, 1)
        .unwrap()
        .unwrap();
    assert_eq!(tuned.shape, key);
    // K whole on a CPU adapter such as llvmpipe; on a GPU, 3 workgroups of 64 invocations
    // take 4 layers
    let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    assert_eq!(tuned.rule, if cpu { 1 } else { 4 });
    assert!(tuned.left_out.is_empty(), "{:?}", tuned.left_out);
    let layers: Vec<u32> = tuned.times.iter().map(|&(k, _)| k).collect();
    assert_eq!(layers, [1, 2, 4]);
    assert!(
        tuned.times.iter().all(|&(_, ms)| ms > 0.0),
        "{:?}",
        tuned.times
    );
    assert_eq!(gpu.policy().step_split(key), Some(tuned.choice));
    for layers in [1, 2, 4] {
        gpu.set_step_split(key, layers);
        let result = bench_shape(Some(&gpu), arch, shape, 0, 1, full, Recurrence::Steps).unwrap();
        let shapes = result.step_shapes.expect("the steps ran a dispatch each");
        for shape in [shapes.forward, shapes.backward] {
            assert!(
                matches!(shape, StepShape::Tile(t) if t.k_split == layers),
                "{layers} layers: {shapes:?}"
            );
        }
    }
    // H = 17 leaves no layer 16 of K past 1 layer: K whole is the only candidate
    let narrow: Shape = "9,5,3,17".parse().unwrap();
    let tuned = tune_step_split(&gpu, arch, narrow, full, 1)
        .unwrap()
        .unwrap();
    assert_eq!((tuned.times.len(), tuned.choice), (1, 1));

    // emulated on 8x8 tiles (64 lanes) 1, 2 and 4 subgroups; on 16x16 (256 lanes) one only
    let half = whole_sequence(Precision::F16);
    let key = RecurrenceShape::new(Cell::Gru, 65, (9, Precision::F16));
    for (edge, fitting) in [
        (CoopEdge::Eight, vec![1, 2, 4]),
        (CoopEdge::Sixteen, vec![1]),
    ] {
        let emulated = Gpu::with_matrix_units(MatrixUnits::Emulate(edge)).unwrap();
        let tuned = tune_step_split(&emulated, arch, shape, half, 1)
            .unwrap()
            .unwrap();
        let timed: Vec<u32> = (tuned.times.iter())
            .filter(|(_, ms)| *ms > 0.0)
            .map(|&(k, _)| k)
            .collect();
        assert_eq!(timed, fitting, "{edge}: {:?}", tuned.left_out);
        assert_eq!(tuned.left_out.len(), 3 - fitting.len(), "{edge}");
        for parts in fitting {
            emulated.set_step_split(key, parts);
            let way = Recurrence::Steps;
            let result = bench_shape(Some(&emulated), arch, shape, 0, 1, half, way).unwrap();
            let shapes = result.step_shapes.expect("the steps ran a dispatch each");
            for shape in [shapes.forward, shapes.backward] {
                assert!(
                    matches!(shape, StepShape::Coop(s) if s.parts == parts),
                    "{edge}, {parts} parts: {shapes:?}"
                );
            }
        }
    }
    gpu.force_step_tile(Some("8x8x16".parse().unwrap()));
    assert!(tune_step_split(&gpu, arch, shape, full, 1)
        .unwrap()
        .is_none());
}

/// A tuned recurrence is what `Recurrence::Auto` resolves to for that cell, hidden size and
/// batch, where the adapter can run it; other models keep the rule.
#[test]
fn a_tuned_recurrence_is_what_auto_resolves_to() {
    let gpu = context();
    let config = |hidden: usize| ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: hidden,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    let resolve = |hidden: usize, batch: usize| {
        Recurrence::Auto
            .resolve(&gpu, &config(hidden), (batch, Precision::F32))
            .unwrap()
    };
    // the rule: persistent for few FMAs per step, steps for many
    let (small, large) = (resolve(3, 1), resolve(32, 256));
    assert_eq!((small, large), (Recurrence::Persistent, Recurrence::Steps));
    gpu.set_recurrence_choice(
        RecurrenceShape::new(Cell::Lstm, 3, (1, Precision::F32)),
        Recurrence::Steps,
    );
    gpu.set_recurrence_choice(
        RecurrenceShape::new(Cell::Lstm, 32, (256, Precision::F32)),
        Recurrence::Persistent,
    );
    // At H = 33 W_hh is past the kernels' cache: the rule keeps steps, a tuned choice is taken
    assert_eq!(resolve(33, 1), Recurrence::Steps);
    gpu.set_recurrence_choice(
        RecurrenceShape::new(Cell::Lstm, 33, (1, Precision::F32)),
        Recurrence::Persistent,
    );
    assert_eq!(resolve(3, 1), Recurrence::Steps);
    assert_eq!(resolve(32, 256), Recurrence::Persistent);
    assert_eq!(resolve(33, 1), Recurrence::Persistent);
    // At H = 2000 one persistent step is past llvmpipe's loop limit even at one row: there a
    // choice of it is not taken, and asking for it is an error that says why.
    gpu.set_recurrence_choice(
        RecurrenceShape::new(Cell::Lstm, 2000, (1, Precision::F32)),
        Recurrence::Persistent,
    );
    let forced = Recurrence::Persistent.resolve(&gpu, &config(2000), (1, Precision::F32));
    if gpu.loop_limit().is_some() {
        assert_eq!(resolve(2000, 1), Recurrence::Steps);
        let e = forced.unwrap_err().to_string();
        assert!(
            e.contains("loop iterations") && e.contains("use steps"),
            "{e}"
        );
    } else {
        assert_eq!(resolve(2000, 1), Recurrence::Persistent);
        assert_eq!(forced.unwrap(), Recurrence::Persistent);
    }
    // At B = 4096 the rule says steps (512 slices of 8 rows), and a tuned persistent is taken:
    // an invocation loops over its slice's rows only, so even llvmpipe's loop limit allows it.
    assert_eq!(resolve(32, 4096), Recurrence::Steps);
    gpu.set_recurrence_choice(
        RecurrenceShape::new(Cell::Lstm, 32, (4096, Precision::F32)),
        Recurrence::Persistent,
    );
    assert_eq!(resolve(32, 4096), Recurrence::Persistent);
    // other batches, cells and precisions keep the rule
    assert_eq!(resolve(3, 2), Recurrence::Persistent);
    let at_f16 = Recurrence::Auto.resolve(&gpu, &config(3), (1, Precision::F16));
    assert_eq!(at_f16.unwrap(), Recurrence::Persistent);
    gpu.forget_recurrence_choice(RecurrenceShape::new(Cell::Lstm, 3, (1, Precision::F32)));
    assert_eq!(resolve(3, 1), Recurrence::Persistent);
}

/// Tuning a recurrence checks both ways against the CPU reference before timing them, at f32
/// and f16, at a batch of many slices and with W_hh past the persistent kernels' cache.
#[test]
fn tuning_a_recurrence_times_only_ways_that_run_right() {
    let gpu = context();
    let arch = one_layer(Cell::Lstm);
    let options = whole_sequence(Precision::F32);
    let tuned = |shape: &str| {
        let shape: Shape = shape.parse().unwrap();
        tune_recurrence(&gpu, arch, shape, options, 1).unwrap()
    };
    let both = tuned("3,40,2,17");
    assert_eq!(both.persistent_left_out, None);
    assert!(both.steps_ms > 0.0 && both.persistent_ms > 0.0);
    // at f16 both ways are checked against the f16 reference within parity's f16 bound
    let half = PlanOptions {
        precision: Precision::F16,
        ..options
    };
    let shape: Shape = "8,20,2,16".parse().unwrap();
    let f16 = tune_recurrence(&gpu, arch, shape, half, 1).unwrap();
    assert_eq!(f16.persistent_left_out, None);
    // 512 slices of 8 rows; W_hh past the kernels' cache, read from memory
    for shape in ["4096,3,2,32", "5,6,3,40"] {
        let t = tuned(shape);
        assert_eq!(t.persistent_left_out, None, "{shape}");
        assert!(t.steps_ms > 0.0 && t.persistent_ms > 0.0, "{shape}");
    }
}

#[test]
fn every_kernel_name_in_the_cache_reads_back_as_that_kernel() {
    let gpu = context();
    let mut kernels = super::gemm::tiles_under_test(&gpu);
    kernels.extend([GemmKernel::Auto, GemmKernel::MatrixUnits]);
    let mut names: Vec<String> = kernels.iter().map(|k| k.name()).collect();
    for kernel in &kernels {
        assert_eq!(GemmKernel::from_name(&kernel.name()), Some(*kernel));
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), kernels.len(), "{names:?}");
    assert_eq!(GemmKernel::from_name("Tiled"), None);
}

/// f16 products are tuned apart from f32 ones of the same shape: watching an f16 step notes
/// its products with f16 operands, tuning one checks every candidate on f16 operands (rounded,
/// so the f64 answer is that of what the GPU reads) and keeps the choice for f16 only. The
/// matrix units are a candidate only where they are on (never on llvmpipe, which has no
/// cooperative matrices), and forcing them where they are off is refused by name.
#[test]
fn f16_products_are_tuned_apart_and_the_matrix_units_only_where_they_run() {
    let gpu = context();
    gpu.watch_products();
    let arch = one_layer(Cell::Gru);
    let options = whole_sequence(Precision::F16);
    let shape: Shape = "3,5,2,17".parse().unwrap();
    bench_shape(Some(&gpu), arch, shape, 0, 1, options, Recurrence::Steps).unwrap();
    let products = gpu.watched_products();
    let (b, t, h) = (3, 5, 17);
    let dw_hh = Product::new((3 * h, h, t * b), (true, false)).of((Precision::F16, Precision::F16));
    assert!(
        products.contains(&dw_hh),
        "{dw_hh:?} not among {products:?}"
    );

    let on = gpu.matrix_units().is_ok();
    let candidates = GemmKernel::candidates(&gpu, dw_hh);
    assert_eq!(
        candidates.contains(&GemmKernel::MatrixUnits),
        on,
        "{candidates:?}"
    );
    assert_eq!(
        candidates[0] == GemmKernel::MatrixUnits,
        on,
        "{candidates:?}"
    );
    let f32_twin = Product::new(dw_hh.shape, dw_hh.transposed);
    assert!(!GemmKernel::candidates(&gpu, f32_twin).contains(&GemmKernel::MatrixUnits));

    let tuned = tuning::tune_product(&gpu, dw_hh, 1).unwrap();
    assert!(tuned.rejected.is_empty(), "{:?}", tuned.rejected);
    assert_eq!(tuned.seconds.len(), candidates.len());
    assert_eq!(gpu.policy().gemm(dw_hh), Some(tuned.choice));
    assert_eq!(
        gpu.policy().gemm(f32_twin),
        None,
        "the f32 product was tuned too"
    );
    assert!(tuning::product_key(dw_hh).ends_with(" f16,f16"));
    gpu.forget_choice(dw_hh);

    if !on {
        let check = Check::new(dw_hh);
        let e = check.compare(&gpu, GemmKernel::MatrixUnits).unwrap_err();
        assert!(e.to_string().contains("the matrix units are off"), "{e}");
        gpu.forget_choice(dw_hh);
    }
    assert_eq!(gpu.tuned_products(), 0);
}
