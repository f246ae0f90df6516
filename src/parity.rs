//! CPU-vs-GPU parity: the same random model and batch through the f64 CPU reference and the
//! f32 GPU engine, every tensor compared by `||gpu - cpu|| / ||cpu||`.

use crate::config::{Activation, Cell, ModelConfig};
use crate::cpu;
use crate::data::Batch;
use crate::error::Error;
use crate::internals::gpu::{Gpu, GpuModel, GpuOutput, Recurrence, Request};
use crate::internals::plan::PlanOptions;
use crate::optim;
use crate::params::Params;
use crate::precision::{LossScaler, Precision};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt;

/// Per-tensor bound on `||gpu - cpu|| / ||cpu||`: f32 arithmetic against an f64 reference,
/// with sums over up to T * B terms.
pub const TOLERANCE: f64 = 1e-4;

/// The same bound under f16 storage (`--precision f16`), where the reference rounds to f16
/// wherever the GPU stores a tensor, the same sums (b_ih inside the stored input product, as
/// the GPU's product adds it): the GPU's f32 sums and the reference's f64 ones still land on
/// either side of an f16 rounding boundary now and then, and such an element then differs by
/// one f16 unit in the last place (2^-11, 4.9e-4 of it), which the recurrence carries on and
/// sums that cancel magnify. Measured on llvmpipe over eight seeds of the awkward-size sweep
/// (tests/gpu/precision.rs): at most 2.0e-3 (a vanilla RNN's dE/dh0 after 17 steps), most
/// tensors below 1e-4. A kernel that stored in the wrong place or type is off by far more.
pub const F16_TOLERANCE: f64 = 5e-3;

/// The bound for `precision`.
pub fn tolerance(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => TOLERANCE,
        Precision::F16 => F16_TOLERANCE,
    }
}

/// One tensor's agreement, with the element that disagrees most.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The tensor compared: `loss`, `outputs`, `h_n`, a parameter's gradient, ...
    pub name: String,
    /// Its number of elements.
    pub len: usize,
    /// `||gpu - cpu|| / ||cpu||` (the absolute `||gpu - cpu||` when `||cpu|| = 0`).
    pub rel_error: f64,
    /// The flat index of the element whose difference is largest (a NaN's, where there is one).
    pub worst_index: usize,
    /// The GPU's value there.
    pub worst_gpu: f64,
    /// The reference's value there.
    pub worst_cpu: f64,
    /// Reference elements below the stored type's normal range (`floor`), compared as 0.
    pub subnormal: usize,
    /// That range's bottom: f32's 2^-126, or under f16 storage 2^-14 over the loss scale.
    pub floor: f64,
}

/// A value as a kernel storing f32 may hold it: below f32's normal range, 0. GPUs may flush
/// f32 subnormals to zero (Vulkan lets them, and NVIDIA's do), so gradients that have
/// vanished to 1e-40 on the f64 reference read 0 there; a relative error of 1 on them would
/// be noise. Under f16 storage the same holds of what is stored below f16's normal range
/// (2^-14 times the loss scale's inverse): a subnormal f16 keeps only a few bits.
fn flushed(x: f64, floor: f64) -> f64 {
    if x.abs() < floor {
        0.0
    } else {
        x
    }
}

/// The normal range's bottom, in the gradients' own units, of what `precision` stores at
/// `loss_scale`.
pub(crate) fn normal_floor(precision: Precision, loss_scale: f64) -> f64 {
    match precision {
        Precision::F32 => f32::MIN_POSITIVE as f64,
        Precision::F16 => half::f16::MIN_POSITIVE.to_f64() / loss_scale,
    }
}

impl Comparison {
    /// Compares the GPU's `gpu` with the reference's `cpu` (same length), taking values below
    /// f32's normal range as 0.
    pub fn new(name: &str, gpu: &[f32], cpu: &[f64]) -> Comparison {
        Comparison::with_floor(name, gpu, cpu, f32::MIN_POSITIVE as f64)
    }

    /// `new`, with elements below `floor` compared as 0 (`normal_floor`).
    pub(crate) fn with_floor(name: &str, gpu: &[f32], cpu: &[f64], floor: f64) -> Comparison {
        assert_eq!(gpu.len(), cpu.len(), "{name}: GPU and CPU lengths differ");
        let mut diff_sq = 0.0;
        let mut ref_sq = 0.0;
        let (mut worst_index, mut worst_diff) = (0, -1.0);
        let mut subnormal = 0;
        for (k, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
            subnormal += (c != 0.0 && flushed(c, floor) == 0.0) as usize;
            let (g, c) = (flushed(g as f64, floor), flushed(c, floor));
            let d = (g - c).abs();
            // NaN compares false: make sure a NaN is reported as the worst element
            if d > worst_diff || d.is_nan() && !worst_diff.is_nan() {
                worst_diff = d;
                worst_index = k;
            }
            diff_sq += d * d;
            ref_sq += c * c;
        }
        let rel_error = if ref_sq > 0.0 {
            (diff_sq / ref_sq).sqrt()
        } else {
            diff_sq.sqrt()
        };
        Comparison {
            name: name.to_string(),
            len: gpu.len(),
            rel_error,
            worst_index,
            worst_gpu: gpu.get(worst_index).map_or(0.0, |&g| g as f64),
            worst_cpu: cpu.get(worst_index).copied().unwrap_or(0.0),
            subnormal,
            floor,
        }
    }

    /// Whether the relative error is within `tolerance` (never for a NaN).
    pub fn passes(&self, tolerance: f64) -> bool {
        self.rel_error <= tolerance // false for NaN
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<28} {:>9} {:>10.3e}   worst [{}]: gpu {:.9e}  cpu {:.9e}",
            self.name, self.len, self.rel_error, self.worst_index, self.worst_gpu, self.worst_cpu
        )?;
        if self.subnormal > 0 {
            let range = match self.floor == f32::MIN_POSITIVE as f64 {
                true => "f32's normal range".to_string(),
                false => format!("the stored normal range ({:.1e})", self.floor),
            };
            write!(f, "  ({} below {range}, as 0)", self.subnormal)?;
        }
        Ok(())
    }
}

/// The result of one parity run.
#[derive(Clone, Debug)]
pub struct ParityReport {
    /// The GPU adapter the run used.
    pub adapter: String,
    /// One comparison per tensor.
    pub comparisons: Vec<Comparison>,
    /// ReLU pre-activations within f32 rounding of the kink in the reference (`relu_kinks`).
    pub kinks: usize,
}

impl ParityReport {
    /// The comparisons whose relative error exceeds `tolerance`.
    pub fn failures(&self, tolerance: f64) -> Vec<&Comparison> {
        self.comparisons
            .iter()
            .filter(|c| !c.passes(tolerance))
            .collect()
    }
}

/// A random model (PyTorch's default initialisation) and batch from `seed`, in f32 as the GPU
/// takes them.
pub fn random_problem(
    config: &ModelConfig,
    seq_len: usize,
    batch: usize,
    seed: u64,
) -> (Params<f32>, Batch<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let params = Params::<f32>::init_uniform(config, &mut rng);
    let data = Batch::<f32>::random(config, seq_len, batch, &mut rng);
    (params, data)
}

/// Runs one forward + backward on the GPU (f32) and the CPU reference (f64, on the same
/// f32-rounded inputs) and compares every tensor.
pub fn run_parity(
    gpu: &Gpu,
    config: &ModelConfig,
    params: &Params<f32>,
    batch: &Batch<f32>,
) -> Result<ParityReport, Error> {
    run_parity_with(gpu, config, params, batch, PlanOptions::default())
}

/// `run_parity` with the GPU workspace planned by `options` (segments, recomputation, the
/// storage precision, which the reference then rounds to as the GPU stores). Models the
/// adapter runs persistently (every one but on llvmpipe at H in the thousands) run both ways,
/// each compared on its own (the persistent run's tensors are named "persistent: ...").
pub fn run_parity_with(
    gpu: &Gpu,
    config: &ModelConfig,
    params: &Params<f32>,
    batch: &Batch<f32>,
    options: PlanOptions,
) -> Result<ParityReport, Error> {
    let mut recurrences = vec![Recurrence::Steps];
    if Recurrence::Persistent
        .resolve(gpu, config, (batch.batch_size(), options.precision))
        .is_ok()
    {
        recurrences.push(Recurrence::Persistent);
    }
    run_parity_on(gpu, (config, params, batch), options, &recurrences)
}

/// `run_parity_with` running the GPU's side each of `recurrences` ways (Steps or Persistent;
/// the persistent run's tensors are named "persistent: ..."), the reference's once.
pub fn run_parity_on(
    gpu: &Gpu,
    (config, params, batch): (&ModelConfig, &Params<f32>, &Batch<f32>),
    options: PlanOptions,
    recurrences: &[Recurrence],
) -> Result<ParityReport, Error> {
    let params64: Params<f64> = params.cast();
    let batch64: Batch<f64> = batch.cast();
    let fwd = cpu::forward_in(config, &params64, &batch64, None, options.precision)?;
    let (bwd, scale) = reference_backward(config, (&params64, &batch64), &fwd);

    let mut comparisons = Vec::new();
    for &recurrence in recurrences {
        let prefix = match recurrence {
            Recurrence::Persistent => "persistent: ",
            _ => "",
        };
        let mut model = GpuModel::new(gpu, *config, params)?;
        model.set_plan_options(options, 0);
        model.recurrence = recurrence;
        model.loss_scale = scale;
        let out = model.run(gpu, batch, Request::everything())?;
        let floors = Floors {
            values: normal_floor(options.precision, 1.0),
            grads: normal_floor(options.precision, scale as f64),
        };
        compare_all(&mut comparisons, prefix, (&out, floors), &fwd, &bwd);
    }
    Ok(ParityReport {
        adapter: gpu.adapter_name(),
        comparisons,
        kinks: relu_kinks(config, &params64, &batch64, &fwd),
    })
}

/// The reference's backward pass as training would run it: under f16 storage with the loss
/// scaled so that small gradients survive f16, at the largest scale from dynamic scaling's
/// first one down at which no stored gradient overflows. Returns that scale (1 under f32).
fn reference_backward(
    config: &ModelConfig,
    (params, batch): (&Params<f64>, &Batch<f64>),
    fwd: &cpu::Forward<f64>,
) -> (cpu::Backward<f64>, f32) {
    let backward = |scale: f32| {
        let bwd = cpu::backward_scaled(config, params, batch, fwd, scale as f64);
        let norm = (fwd.loss.is_finite()).then(|| optim::grad_norm(&bwd.grads) as f32);
        Ok::<_, std::convert::Infallible>((bwd, norm))
    };
    let Ok(fitted) = LossScaler::largest_fitting(fwd.precision, backward);
    fitted
}

/// How many pre-activations of a ReLU RNN's cells lie within f32 rounding of ReLU's kink in
/// the f64 reference: |pre| at most 64 f32 ulps of the sum of its terms' magnitudes
/// (|x| |W_ih|^T + |b_ih| + |h| |W_hh|^T + |b_hh|), on valid steps (under f16 storage, 8 f16
/// ulps: the pre-activation is stored rounded twice). A run may put such a unit on the other
/// side of 0, and then every gradient through it at that step differs from the reference
/// while the loss, outputs and states agree: no kernel fault. 0 for other cells.
pub(crate) fn relu_kinks(
    config: &ModelConfig,
    params: &Params<f64>,
    batch: &Batch<f64>,
    fwd: &cpu::Forward<f64>,
) -> usize {
    if config.cell != Cell::Rnn || config.activation != Activation::Relu {
        return 0;
    }
    let zone = match fwd.precision {
        Precision::F32 => 64.0 * f32::EPSILON as f64,
        Precision::F16 => 8.0 * half::f16::EPSILON.to_f64(),
    };
    let lengths = batch.lengths.as_deref();
    let directions = if config.bidirectional { 2 } else { 1 };
    let mut kinks = 0;
    for (c, (cell, run)) in params.cells.iter().zip(&fwd.cells).enumerate() {
        let (layer, direction) = (c / directions, c % directions);
        let natural = match layer {
            0 => batch.x.view(),
            _ => fwd.layer_inputs[layer - 1].view(),
        };
        let reversed;
        let input = match direction {
            0 => natural,
            _ => {
                reversed = cpu::stack::reverse_steps(&natural, lengths);
                reversed.view()
            }
        };
        let magnitude = |w: &ndarray::Array2<f64>| w.mapv(f64::abs).reversed_axes();
        let (w_ih, w_hh) = (magnitude(&cell.weight_ih), magnitude(&cell.weight_hh));
        let bias_size = cell.bias_ih.mapv(f64::abs) + cell.bias_hh.mapv(f64::abs);
        let (seq_len, rows, _) = input.dim();
        for s in 0..seq_len {
            let x = input.index_axis(ndarray::Axis(0), s);
            let h = run.hs.index_axis(ndarray::Axis(0), s);
            let pre = x.dot(&cell.weight_ih.t())
                + &cell.bias_ih
                + h.dot(&cell.weight_hh.t())
                + &cell.bias_hh;
            let size = x.mapv(f64::abs).dot(&w_ih) + h.mapv(f64::abs).dot(&w_hh) + &bias_size;
            for r in (0..rows).filter(|&r| lengths.is_none_or(|l| s < l[r])) {
                let near = pre
                    .row(r)
                    .iter()
                    .zip(size.row(r))
                    .filter(|(p, m)| p.abs() <= zone * **m)
                    .count();
                kinks += near;
            }
        }
    }
    kinks
}

/// What a run's comparisons flush to 0 (`normal_floor`): the forward pass's values, and the
/// gradients (stored times the loss scale).
#[derive(Clone, Copy)]
struct Floors {
    values: f64,
    grads: f64,
}

/// Every tensor of one GPU run against the CPU reference, named with `prefix`.
fn compare_all(
    comparisons: &mut Vec<Comparison>,
    prefix: &str,
    (out, floors): (&GpuOutput, Floors),
    fwd: &cpu::Forward<f64>,
    bwd: &cpu::Backward<f64>,
) {
    let mut compare = |name: &str, gpu: Option<&[f32]>, cpu: &[f64]| {
        let name = format!("{prefix}{name}");
        let gpu = gpu.unwrap_or_else(|| panic!("{name} was requested from the GPU"));
        let floor = match name.contains("d ") || name.contains("dE/") {
            true => floors.grads,
            false => floors.values,
        };
        comparisons.push(Comparison::with_floor(&name, gpu, cpu, floor));
    };
    let flat = |a: &ndarray::ArrayD<f64>| a.iter().copied().collect::<Vec<f64>>();
    compare("loss", Some(&[out.loss]), &[fwd.loss]);
    compare(
        "outputs",
        out.outputs.as_ref().and_then(|a| a.as_slice()),
        &flat(&fwd.outputs.clone().into_dyn()),
    );
    let (h_n, c_n) = fwd.final_states();
    compare(
        "h_n",
        out.h_n.as_ref().and_then(|a| a.as_slice()),
        &flat(&h_n.into_dyn()),
    );
    if let Some(c_n) = c_n {
        compare(
            "c_n",
            out.c_n.as_ref().and_then(|a| a.as_slice()),
            &flat(&c_n.into_dyn()),
        );
    }
    let gpu_grads = out.grads.as_ref().expect("gradients were requested");
    for ((name, g), (_, c)) in gpu_grads.tensors().into_iter().zip(bwd.grads.tensors()) {
        compare(&format!("d {name}"), Some(g), c);
    }
    compare(
        "d x",
        out.dx.as_ref().and_then(|a| a.as_slice()),
        &flat(&bwd.dx.clone().into_dyn()),
    );
    compare(
        "d h0",
        out.dh0.as_ref().and_then(|a| a.as_slice()),
        &flat(&bwd.dh0.clone().into_dyn()),
    );
    if let Some(dc0) = &bwd.dc0 {
        compare(
            "d c0",
            out.dc0.as_ref().and_then(|a| a.as_slice()),
            &flat(&dc0.clone().into_dyn()),
        );
    }
    compare("|dE/dh_t|", out.grad_norm_h.as_deref(), &bwd.grad_norm_h);
    if let Some(norms) = &bwd.grad_norm_c {
        compare("|dE/dc_t|", out.grad_norm_c.as_deref(), norms);
    }
}

#[cfg(test)]
mod tests {
    use super::{relu_kinks, Comparison};
    use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
    use crate::cpu;
    use crate::data::Batch;
    use crate::params::Params;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// With zero weights and input, unit 1's pre-activation is b_ih + b_hh = 0.5 - 0.5 = 0 at
    /// every step, the others' 1: exactly one kink per valid step and row, in both directions
    /// (the second sequence is two steps short); none for tanh.
    #[test]
    fn relu_kinks_counts_the_pre_activations_at_zero_on_valid_steps() {
        let config = ModelConfig {
            cell: Cell::Rnn,
            activation: Activation::Relu,
            input_size: 2,
            hidden_size: 3,
            output_size: 1,
            readout: Readout::Last,
            loss: Loss::Mse,
            layers: 1,
            bidirectional: true,
            dropout: 0.0,
        };
        let mut params = Params::<f64>::zeros(&config);
        for cell in &mut params.cells {
            cell.bias_ih.assign(&ndarray::arr1(&[0.5, 0.5, 0.5]));
            cell.bias_hh.assign(&ndarray::arr1(&[0.5, -0.5, 0.5]));
        }
        let mut batch = Batch::<f64>::random(&config, 7, 2, &mut StdRng::seed_from_u64(1));
        batch.x.fill(0.0);
        batch.lengths = Some(vec![7, 5]);
        let fwd = cpu::forward(&config, &params, &batch).unwrap();
        assert_eq!(relu_kinks(&config, &params, &batch, &fwd), 2 * (7 + 5));
        let tanh = ModelConfig {
            activation: Activation::Tanh,
            ..config
        };
        let fwd = cpu::forward(&tanh, &params, &batch).unwrap();
        assert_eq!(relu_kinks(&tanh, &params, &batch, &fwd), 0);
    }

    /// Reference values below f32's normal range count as 0 (a GPU may flush them); anything
    /// in the normal range still fails when the GPU loses it.
    #[test]
    fn subnormal_reference_values_compare_as_zero() {
        let vanished = Comparison::new("d h0", &[0.0, 0.0, 0.0], &[1.3e-43, -2.1e-40, 0.0]);
        assert_eq!(vanished.rel_error, 0.0);
        assert_eq!(vanished.subnormal, 2);
        assert!(vanished.to_string().contains("2 below f32's normal range"));
        let mixed = Comparison::new("d h0", &[0.0, 0.5], &[1e-41, 0.5]);
        assert!(mixed.passes(1e-12), "{mixed}");
        let lost = Comparison::new("d h0", &[0.0, 0.0], &[1e-30, 0.0]);
        assert!(!lost.passes(1e-4), "{lost}");
        let nan = Comparison::new("d h0", &[f32::NAN], &[1e-41]);
        assert!(!nan.passes(1e-4), "{nan}");
    }
}
