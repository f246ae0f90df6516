//! NaN and infinity put into a model or a batch through the library, where no loader checks
//! them: both engines report a non-finite loss and gradient at the same places, a non-finite
//! gradient leaves the parameters unchanged on both, and `locate` and the command line name
//! the source. (WGSL may assume floats are finite, so the GPU's answers here come from the
//! explicit bit checks of shaders/finite.wgsl.)

use super::common::TempDir;
use super::{gpu, matrix_unit_contexts, seed};
use rnn_wgpu::checkpoint::{self, Checkpoint};
use rnn_wgpu::internals::gpu::optim::GpuOptimizer;
use rnn_wgpu::internals::gpu::Recurrence;
use rnn_wgpu::internals::non_finite::{locate, NonFinite};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::internals::plan::PlanOptions;
use rnn_wgpu::optim::{CpuOptimizer, OptimizerConfig, OptimizerKind};
use rnn_wgpu::{cpu, Activation, Batch, Cell, Loss, ModelConfig, Params, Readout};
use rnn_wgpu::{Gpu, GpuModel, Precision, Request};
use std::process::Command;

const SEQ_LEN: usize = 17;
const BATCH: usize = 3;

fn config(cell: Cell, activation: Activation, hidden: usize, loss: Loss) -> ModelConfig {
    ModelConfig {
        cell,
        activation,
        input_size: 3,
        hidden_size: hidden,
        output_size: 2,
        readout: Readout::All,
        loss,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

/// Where the bad value goes, and what `locate` must then name.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// A NaN in weight_hh_l0 at flat index 5.
    WeightNan,
    /// A NaN in x at step 6 (0-based 5) of sequence 1.
    InputNan,
    /// +inf in x there: saturating cells turn it into finite states.
    InputInf,
}

impl Spoil {
    const ALL: [Spoil; 3] = [Spoil::WeightNan, Spoil::InputNan, Spoil::InputInf];

    fn apply(self, params: &mut Params<f32>, batch: &mut Batch<f32>) -> NonFinite {
        match self {
            Spoil::WeightNan => {
                let mut tensors = params.tensors_mut();
                let (_, weight_hh) = tensors
                    .iter_mut()
                    .find(|(name, _)| name == "weight_hh_l0")
                    .expect("every model has weight_hh_l0");
                weight_hh[5] = f32::NAN;
                NonFinite::Parameter {
                    tensor: "weight_hh_l0".into(),
                    index: 5,
                    value: f32::NAN,
                }
            }
            Spoil::InputNan | Spoil::InputInf => {
                let value = match self {
                    Spoil::InputNan => f32::NAN,
                    _ => f32::INFINITY,
                };
                batch.x[[5, 1, 0]] = value;
                NonFinite::Input {
                    tensor: "x",
                    index: vec![5, 1, 0],
                    value,
                }
            }
        }
    }
}

/// NonFinite with NaN compared as equal to NaN.
fn same(a: &NonFinite, b: &NonFinite) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn finite_pattern(values: &[f32]) -> Vec<bool> {
    values.iter().map(|v| v.is_finite()).collect()
}

/// Which parameter tensors hold a non-finite gradient.
fn grad_pattern(grads: &Params<f32>) -> Vec<(String, bool)> {
    let tensors = grads.tensors();
    let finite = |values: &[f32]| values.iter().all(|v| v.is_finite());
    tensors.into_iter().map(|(n, v)| (n, finite(v))).collect()
}

/// Every cell and activation, both losses, hidden 17 (both recurrences) and 65 (per step):
/// the loss's finiteness, the steps whose ||dE/dh_t|| (and ||dE/dc_t||) are finite and the
/// gradient tensors holding a non-finite value agree between the engines; a NaN always makes
/// the loss non-finite; `locate` names the spoiled value.
#[test]
fn both_engines_report_injected_nan_and_inf_alike() {
    let failed = non_finite_disagreements(gpu(), Precision::F32, &[17, 65], 900);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// As above under f16 storage, on `gpu()` (the fused step tiles, unless the run turns the
/// matrix units on) and on every context of `matrix_unit_contexts` (hidden 17 and 33: one and
/// more than one tile of step_coop.wgsl at either edge): a NaN or an infinity rounded to f16
/// and carried through the f16 x f16 products reaches the same places as in the CPU engine's
/// f16 mirror.
#[test]
fn at_f16_both_engines_report_injected_nan_and_inf_alike() {
    let mut failed = non_finite_disagreements(gpu(), Precision::F16, &[17, 33], 930);
    for (context, name) in matrix_unit_contexts() {
        failed.extend(
            (non_finite_disagreements(context, Precision::F16, &[17, 33], 930).into_iter())
                .map(|e| format!("{name}: {e}")),
        );
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every cell and activation, both losses and every spoil at each of `hiddens` on `gpu`,
/// stored in `precision`: the cases where the engines disagree, described.
fn non_finite_disagreements(
    gpu: &Gpu,
    precision: Precision,
    hiddens: &[usize],
    first_seed: u64,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut case = 0;
    for (cell, activation) in super::common::EVERY_CELL {
        for &hidden in hiddens {
            for loss in [Loss::Mse, Loss::CrossEntropy] {
                for spoil in Spoil::ALL {
                    case += 1;
                    let config = config(cell, activation, hidden, loss);
                    let label = format!("{cell:?}/{activation:?} H={hidden} {loss} {spoil:?}");
                    let run = Run { gpu, precision };
                    if let Err(e) = check_case(run, &config, spoil, seed(first_seed + case)) {
                        failed.push(format!("{label}: {e}"));
                    }
                }
            }
        }
    }
    failed
}

/// Where a case runs: the GPU context and the storage precision of both engines.
#[derive(Clone, Copy)]
struct Run<'g> {
    gpu: &'g Gpu,
    precision: Precision,
}

fn check_case(run: Run, config: &ModelConfig, spoil: Spoil, seed: u64) -> Result<(), String> {
    let (mut params, mut batch) = random_problem(config, SEQ_LEN, BATCH, seed);
    let expected = spoil.apply(&mut params, &mut batch);
    let found = locate(config, &params, &batch).map_err(|e| e.to_string())?;
    if !found.as_ref().is_some_and(|f| same(f, &expected)) {
        return Err(format!("locate found {found:?}, expected {expected:?}"));
    }
    let fwd =
        cpu::forward_in(config, &params, &batch, None, run.precision).map_err(|e| e.to_string())?;
    let bwd = cpu::backward(config, &params, &batch, &fwd);
    if matches!(spoil, Spoil::WeightNan | Spoil::InputNan) && fwd.loss.is_finite() {
        return Err(format!("the CPU engine's loss is {} for a NaN", fwd.loss));
    }
    let mut recurrences = vec![Recurrence::Steps];
    if Recurrence::Persistent
        .resolve(run.gpu, config, (BATCH, run.precision))
        .is_ok()
    {
        recurrences.push(Recurrence::Persistent);
    }
    for recurrence in recurrences {
        let mut model = GpuModel::new(run.gpu, *config, &params).map_err(|e| e.to_string())?;
        let options = PlanOptions {
            precision: run.precision,
            ..Default::default()
        };
        model.set_plan_options(options, 0);
        model.recurrence = recurrence;
        let out = model
            .run(run.gpu, &batch, Request::everything())
            .map_err(|e| e.to_string())?;
        let differs = |what: &str, cpu: String, gpu: String| {
            Err(format!("{recurrence:?}: {what}: CPU {cpu}, GPU {gpu}"))
        };
        if fwd.loss.is_finite() != out.loss.is_finite() {
            return differs("loss", fwd.loss.to_string(), out.loss.to_string());
        }
        let norm_h = out.grad_norm_h.as_deref().expect("norms were requested");
        if finite_pattern(&bwd.grad_norm_h) != finite_pattern(norm_h) {
            return differs(
                "||dE/dh_t||",
                format!("{:?}", bwd.grad_norm_h),
                format!("{norm_h:?}"),
            );
        }
        if let (Some(cpu_c), Some(gpu_c)) = (&bwd.grad_norm_c, &out.grad_norm_c) {
            if finite_pattern(cpu_c) != finite_pattern(gpu_c) {
                return differs("||dE/dc_t||", format!("{cpu_c:?}"), format!("{gpu_c:?}"));
            }
        }
        let grads = out.grads.as_ref().expect("gradients were requested");
        if grad_pattern(&bwd.grads) != grad_pattern(grads) {
            let (cpu, gpu) = (grad_pattern(&bwd.grads), grad_pattern(grads));
            return differs(
                "finite gradient tensors",
                format!("{cpu:?}"),
                format!("{gpu:?}"),
            );
        }
    }
    Ok(())
}

fn bits(params: &Params<f32>) -> Vec<u32> {
    let tensors = params.tensors();
    tensors
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x.to_bits()))
        .collect()
}

/// A step whose gradient is non-finite updates nothing on either engine (Adam, whose state
/// would otherwise carry the NaN on), and the next finite step trains again.
#[test]
fn a_non_finite_gradient_skips_the_update_on_both_engines() {
    let config = config(Cell::Lstm, Activation::Tanh, 17, Loss::Mse);
    let (params, mut batch) = random_problem(&config, SEQ_LEN, BATCH, seed(950));
    let good = batch.clone();
    batch.x[[3, 0, 2]] = f32::NAN;
    let optimizer = OptimizerConfig::new(OptimizerKind::adam());

    let mut cpu_params = params.clone();
    let mut cpu_opt = CpuOptimizer::<f32>::new(&config, optimizer).unwrap();
    let fwd = cpu::forward(&config, &cpu_params, &batch).unwrap();
    let grads = cpu::backward(&config, &cpu_params, &batch, &fwd).grads;
    let norm = cpu_opt.step(&mut cpu_params, &grads);
    assert!(!norm.is_finite(), "CPU: the gradient norm is {norm}");
    assert_eq!(
        bits(&cpu_params),
        bits(&params),
        "CPU: the update was applied"
    );

    let model = GpuModel::new(gpu(), config, &params).unwrap();
    let mut gpu_opt = GpuOptimizer::new(gpu(), &model, optimizer).unwrap();
    let out = model
        .train_step(gpu(), &batch, &mut gpu_opt, Request::default())
        .unwrap();
    assert!(
        !out.grad_norm.is_finite(),
        "GPU: the gradient norm is {}",
        out.grad_norm
    );
    assert!(!out.loss.is_finite(), "GPU: the loss is {}", out.loss);
    let after = model.params(gpu()).unwrap();
    assert_eq!(bits(&after), bits(&params), "GPU: the update was applied");

    let out = model
        .train_step(gpu(), &good, &mut gpu_opt, Request::default())
        .unwrap();
    assert!(out.loss.is_finite() && out.grad_norm.is_finite());
    let after = model.params(gpu()).unwrap();
    assert_ne!(bits(&after), bits(&params), "GPU: a finite step must train");
    assert!(bits(&after).iter().all(|b| f32::from_bits(*b).is_finite()));
}

/// `grad` through the binary on a ReLU RNN whose recurrent weights overflow f32 within a few
/// steps (a checkpoint the loader accepts: every value is finite): both devices refuse with
/// a message naming the same first non-finite step, exit non-zero and write nothing.
#[test]
fn grad_names_the_first_non_finite_step_on_both_devices() {
    let dir = TempDir::new("non-finite-grad");
    let config = config(Cell::Rnn, Activation::Relu, 17, Loss::Mse);
    let (mut params, mut batch) = random_problem(&config, SEQ_LEN, BATCH, seed(960));
    // what the npy files carry: no initial state, every sequence whole
    (batch.h0, batch.c0, batch.lengths) = (None, None, None);
    // |W_hh| ~ 1e12: the state grows ~1e12-fold a step and passes f32's 3.4e38 by step 5
    for (name, values) in params.tensors_mut() {
        if name == "weight_hh_l0" {
            values.iter_mut().for_each(|w| *w = w.abs() * 1e12);
        }
    }
    let expected = locate(&config, &params, &batch).unwrap();
    let Some(NonFinite::State { step, .. }) = expected else {
        panic!("expected an overflowing state, found {expected:?}");
    };
    checkpoint::save(&dir.join("m.safetensors"), &Checkpoint::new(config, params)).unwrap();
    write_npy(&dir, "x.npy", batch.x.view().into_dyn());
    let rnn_wgpu::Targets::Values(targets) = &batch.targets else {
        panic!("MSE targets are values");
    };
    let targets = targets
        .view()
        .into_shape_with_order((SEQ_LEN, BATCH, 2))
        .unwrap();
    write_npy(&dir, "y.npy", targets.into_dyn());
    for device in ["cpu", "gpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .current_dir(dir.path())
            .args(["grad", "--model", "m.safetensors", "--input", "x.npy"])
            .args([
                "--target",
                "y.npy",
                "--out",
                "g.safetensors",
                "--device",
                device,
            ])
            .output()
            .unwrap();
        let stderr = failed(out, device);
        for part in [
            "error: ",
            &format!(
                "hidden state h of layer 0 first turns non-finite at time step {step} of {SEQ_LEN}"
            ),
            "Nothing was written to g.safetensors",
        ] {
            assert!(stderr.contains(part), "{device}: lacks '{part}':\n{stderr}");
        }
        assert!(
            !dir.join("g.safetensors").exists(),
            "{device} wrote the gradients"
        );
    }
}

fn write_npy(dir: &TempDir, name: &str, array: ndarray::ArrayViewD<f32>) {
    use ndarray_npy::WriteNpyExt;
    array
        .write_npy(std::fs::File::create(dir.join(name)).unwrap())
        .unwrap();
}

/// `train` through the binary on a ReLU RNN initialised to overflow: both devices stop at step
/// 1 with a non-zero exit, naming the same first non-finite time step.
#[test]
fn train_names_the_first_non_finite_step_on_both_devices() {
    let dir = TempDir::new("non-finite-train");
    let mut located = Vec::new();
    for device in ["cpu", "gpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .current_dir(dir.path())
            .args([
                "train",
                "--device",
                device,
                "--task",
                "adding",
                "--seq-len",
                "40",
            ])
            .args(["--cell", "rnn", "--activation", "relu", "--hh-scale", "1e6"])
            .args(["--hidden", "17", "--batch", "3", "--steps", "3"])
            .output()
            .unwrap();
        let stderr = failed(out, device);
        let part = "training diverged at step 1: loss NaN";
        assert!(stderr.contains(part), "{device}: lacks '{part}':\n{stderr}");
        let at = stderr
            .find("the hidden state h of layer 0 first turns non-finite at time step")
            .unwrap_or_else(|| panic!("{device}: no first non-finite step named:\n{stderr}"));
        located.push(stderr[at..].split(';').next().unwrap().to_string());
    }
    assert_eq!(located[0], located[1], "the devices name different steps");
}

/// The stderr of a command that must have exited non-zero.
fn failed(out: std::process::Output, device: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{device}: exit {:?}\nstderr: {stderr}",
        out.status
    );
    stderr
}
