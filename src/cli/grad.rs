//! `rnn-wgpu grad`: the loss, every parameter gradient and the per-step norms of one batch,
//! written as safetensors so other frameworks can be compared against them.

use anyhow::{bail, Context, Result};
use rnn_wgpu::checkpoint::{self, Checkpoint, LoadOverrides};
use rnn_wgpu::internals::plan::{check_host_pass, HostPass, PlanOptions};
use rnn_wgpu::optim;
use rnn_wgpu::tasks::npy::load_batch;
use rnn_wgpu::{cpu, internals::non_finite, Activation, Cell, Params};
use rnn_wgpu::{Batch, GpuModel, Request};
use rnn_wgpu::{LossScaler, Precision};
use std::path::PathBuf;

use super::engine::Device;

#[derive(clap::Args)]
pub struct GradArgs {
    /// The model (safetensors; PyTorch names; configuration from its metadata or the shapes).
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs x [T, B, I] (time-major), float32 or float64.
    #[arg(long)]
    pub input: PathBuf,
    /// Targets: [B] classes or [B, O] values (last-step readout), [T, B] or [T, B, O] (every step).
    #[arg(long)]
    pub target: PathBuf,
    /// Where to write the gradients (under the parameters' names), grad_norm.h/.c and loss.
    #[arg(long)]
    pub out: PathBuf,
    /// auto (a GPU where there is one, else the CPU engine), gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// For a file without metadata: the cell (else inferred from the shapes).
    #[arg(long)]
    pub cell: Option<Cell>,
    /// For a file without metadata: the RNN nonlinearity (default tanh).
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Storage precision: f32, or f16 (the CPU engine rounds where the GPU stores; the loss
    /// is scaled as training scales it, from 2^16 down until no gradient overflows, and the
    /// scale divided out again).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

/// What `grad` writes: the loss, the gradients and the per-step norms.
struct Gradients {
    loss: f32,
    grads: Params<f32>,
    /// `||dE/dh_t||`, cell by cell
    norm_h: Vec<f32>,
    /// `||dE/dc_t||` for the LSTM
    norm_c: Option<Vec<f32>>,
}

/// `compute` at the loss scale `LossScaler::largest_fitting` settles on.
fn at_fitting_scale(
    precision: Precision,
    mut compute: impl FnMut(f32) -> Result<Gradients>,
) -> Result<Gradients> {
    let fitted = LossScaler::largest_fitting(precision, |scale| {
        let out = compute(scale)?;
        let norm = out.loss.is_finite().then(|| optim::grad_norm(&out.grads));
        anyhow::Ok((out, norm))
    })?;
    Ok(fitted.0)
}

pub fn run(args: GradArgs) -> Result<()> {
    let overrides = LoadOverrides {
        cell: args.cell,
        activation: args.activation,
        ..LoadOverrides::default()
    };
    rnn_wgpu::internals::fsio::check_writable(&args.out).context("--out")?;
    let model = checkpoint::load(&args.model, &overrides)?;
    let batch = load_batch(&model.config, &args.input, &args.target)?;
    // --device auto says which device and why itself; an explicit one is named below
    let g = match super::engine::resolve_device(args.device) {
        Device::Gpu => gpu_gradients(&args, &model, &batch)?,
        _ => cpu_gradients(&args, &model, &batch)?,
    };
    check_finite(&args, &model, &batch, &g)?;
    let config = model.config;
    let seq_len = batch.seq_len();
    let mut out = Checkpoint::new(config, g.grads);
    out.metadata.insert("content".into(), "gradients".into());
    out.metadata
        .insert("precision".into(), args.precision.name().into());
    out.metadata
        .insert("model".into(), args.model.display().to_string());
    out.extra.push(("loss".into(), vec![], vec![g.loss]));
    // [T], or [L*D, T] cell by cell for a stacked or bidirectional model
    let shape = match config.cells() {
        1 => vec![seq_len],
        cells => vec![cells, seq_len],
    };
    out.extra
        .push(("grad_norm.h".into(), shape.clone(), g.norm_h.clone()));
    if let Some(c) = g.norm_c {
        out.extra.push(("grad_norm.c".into(), shape, c));
    }
    checkpoint::save(&args.out, &out)?;
    println!(
        "loss {:.6}; ||dE/dh_t||{} from {:.3e} (t=1) to {:.3e} (t={seq_len}); wrote {}",
        g.loss,
        if config.is_single_cell() {
            ""
        } else {
            " of layer 0"
        },
        g.norm_h[0],
        g.norm_h[seq_len - 1],
        args.out.display()
    );
    Ok(())
}

fn gpu_gradients(args: &GradArgs, model: &Checkpoint, batch: &Batch<f32>) -> Result<Gradients> {
    let gpu = super::engine::open_gpu()?;
    let request = Request {
        backward: true,
        param_grads: true,
        grad_norms: true,
        ..Request::default()
    };
    let mut gpu_model = GpuModel::new(&gpu, model.config, &model.params)?;
    let options = PlanOptions {
        precision: args.precision,
        ..PlanOptions::default()
    };
    gpu_model.set_plan_options(options, 0);
    if args.device != Device::Auto {
        println!("device: gpu: {}", gpu.adapter_name());
    }
    at_fitting_scale(args.precision, |scale| {
        gpu_model.loss_scale = scale;
        let out = gpu_model.run(&gpu, batch, request)?;
        Ok(Gradients {
            loss: out.loss,
            grads: out.grads.context("gradients were requested")?,
            norm_h: out.grad_norm_h.context("norms were requested")?,
            norm_c: out.grad_norm_c,
        })
    })
}

fn cpu_gradients(args: &GradArgs, model: &Checkpoint, batch: &Batch<f32>) -> Result<Gradients> {
    let (config, params) = (&model.config, &model.params);
    const FIX: &str = "split --input into smaller batches, or use --device gpu";
    let rows = (batch.seq_len(), batch.batch_size());
    check_host_pass(config, rows, HostPass::ForwardBackward, 4, FIX)?;
    let fwd = cpu::forward_in(config, params, batch, None, args.precision)?;
    if args.device != Device::Auto {
        println!("device: {}", cpu::engine_name(args.precision));
    }
    at_fitting_scale(args.precision, |scale| {
        let bwd = cpu::backward_scaled(config, params, batch, &fwd, scale);
        Ok(Gradients {
            loss: fwd.loss,
            grads: bwd.grads,
            norm_h: bwd.grad_norm_h,
            norm_c: bwd.grad_norm_c,
        })
    })
}

/// An error, and nothing written, where the loss, a norm or a gradient is not finite, naming
/// where the first non-finite value came from.
fn check_finite(
    args: &GradArgs,
    model: &Checkpoint,
    batch: &Batch<f32>,
    g: &Gradients,
) -> Result<()> {
    let norms = g.norm_h.iter().chain(g.norm_c.iter().flatten());
    let bad_norms = norms.clone().filter(|n| !n.is_finite()).count();
    let bad_grads: usize = (g.grads.tensors().iter())
        .map(|(_, values)| values.iter().filter(|v| !v.is_finite()).count())
        .sum();
    if g.loss.is_finite() && bad_norms + bad_grads == 0 {
        return Ok(());
    }
    let source = non_finite::locate(&model.config, &model.params, batch)?.map_or_else(
        || "the forward pass is finite: the gradients overflow in backpropagation".into(),
        |found| found.to_string(),
    );
    bail!(
        "the loss is {}; {bad_norms} of the {} gradient norms and {bad_grads} gradient values \
         are non-finite: {source}. Nothing was written to {}",
        g.loss,
        norms.count(),
        args.out.display()
    );
}
