//! `rnn-wgpu vanishing`: the study's table in the terminal, its SVG plot and CSV on disk.

use super::engine::Device;
use anyhow::{Context, Result};
use rnn_wgpu::internals::plot::{log_line_chart, Series};
use rnn_wgpu::internals::study::{
    format_csv, format_table, run_vanishing, Profile, Study, VanishingOptions, FIT_FLOOR,
};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct VanishingArgs {
    /// Time steps (T) of the adding problem.
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
    /// Hidden units of every model.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Sequences in the batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Rescale W_hh of every model to this largest singular value (above 1/gamma the RNN's
    /// gradients may explode instead). Default: PyTorch's initialisation as it comes.
    #[arg(long)]
    pub scale: Option<f64>,
    /// Also train every model this many steps on the adding problem and measure again.
    #[arg(long, default_value_t = 0)]
    pub train_steps: u64,
    /// Optimizer for --train-steps: sgd, adam, adamw, rmsprop.
    #[arg(long, default_value = "rmsprop")]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Clip the global gradient norm while training (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// Seed for weights and data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto (a GPU where there is one, else the CPU engine), gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// The forget-gate bias of the study's extra LSTM (lstm-forgetB): near 1 its forget gate
    /// carries the cell state's gradient back where PyTorch's initialisation (f near 0.5)
    /// lets it vanish.
    #[arg(long, default_value_t = 3.0)]
    pub forget_bias: f64,
    /// Stacked layers per model: each layer gets its own profile (label-l0, label-l1, ...).
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Where to write the plot.
    #[arg(long, default_value = "vanishing.svg")]
    pub svg: PathBuf,
    /// Where to write the numbers, one row per time step.
    #[arg(long, default_value = "vanishing.csv")]
    pub csv: PathBuf,
}

pub fn run(args: VanishingArgs) -> Result<()> {
    for (flag, path) in [("--svg", &args.svg), ("--csv", &args.csv)] {
        rnn_wgpu::internals::fsio::check_writable(path).context(flag)?;
    }
    let gpu = match super::engine::resolve_device(args.device) {
        Device::Gpu => Some(super::engine::open_gpu()?),
        _ => None,
    };
    let mut optimizer = OptimizerConfig::new(args.optimizer);
    optimizer.lr = args.lr;
    optimizer.clip = (args.clip > 0.0).then_some(args.clip);
    optimizer.validate()?;
    let options = VanishingOptions {
        seq_len: args.seq_len,
        hidden: args.hidden,
        batch: args.batch,
        seed: args.seed,
        scale: args.scale,
        train_steps: args.train_steps,
        optimizer,
        layers: args.layers,
        forget_bias: Some(args.forget_bias),
    };
    let study = run_vanishing(gpu.as_ref(), &options)?;
    // --device auto has said which device and why already
    if args.device != Device::Auto {
        println!(
            "device: {}",
            gpu.as_ref()
                .map_or(rnn_wgpu::cpu::engine_name(Default::default()), |g| format!(
                    "gpu: {}",
                    g.adapter_name()
                ))
        );
    }
    print_study(&args, &study);
    let svg = chart(&args, &study);
    rnn_wgpu::internals::fsio::write_atomic(&args.svg, svg.as_bytes())?;
    let csv = format_csv(study.trained.as_deref().unwrap_or(&study.initial));
    rnn_wgpu::internals::fsio::write_atomic(&args.csv, csv.as_bytes())?;
    println!("wrote {} and {}", args.svg.display(), args.csv.display());
    Ok(())
}

/// The tables of `||dE/dh||` by steps back, at initialisation and (where the study trained)
/// after training, with the losses before and after.
fn print_study(args: &VanishingArgs, study: &Study) {
    let weights = args
        .scale
        .map_or("as initialised (PyTorch default)".to_string(), |s| {
            format!("rescaled to sigma_max = {s}")
        });
    println!(
        "adding problem, T = {}, batch {}, hidden {}, W_hh {weights}; ||dE/dh|| (and ||dE/dc||) by steps back from the loss:",
        args.seq_len, args.batch, args.hidden,
    );
    if study.trained.is_some() {
        println!("at initialisation:");
    }
    print!("{}", format_table(&study.initial));
    if let Some(trained) = &study.trained {
        println!(
            "after {} training steps ({} lr {}, clip {}):",
            args.train_steps,
            args.optimizer.name(),
            args.lr,
            args.clip
        );
        print!("{}", format_table(trained));
        for (before, after) in study.initial.iter().zip(trained) {
            println!(
                "{:<12} loss {:.4} -> {:.4} (predicting 1 scores 0.1667)",
                before.label, before.loss, after.loss
            );
        }
    }
    println!(
        "per-step factor: geometric mean of ||dE/dh_(t-1)|| / ||dE/dh_t|| over the norms of {:e} \
         and up. A vanilla RNN whose sigma_max(W_hh) is below the bound (1/max act') must vanish.",
        FIT_FLOOR
    );
}

/// The SVG of every model's gradient norm against the steps back, the initial ones faint where
/// the study also trained.
fn chart(args: &VanishingArgs, study: &Study) -> String {
    let mut series = Vec::new();
    match &study.trained {
        None => add_series(&mut series, &study.initial, "", false),
        Some(trained) => {
            add_series(&mut series, &study.initial, " (init)", true);
            add_series(
                &mut series,
                trained,
                &format!(" ({} steps)", args.train_steps),
                false,
            );
        }
    }
    let title = format!(
        "Gradient norm vs steps back from the loss (adding, T={}, H={})",
        args.seq_len, args.hidden
    );
    let steps_back: Vec<f64> = (0..args.seq_len).map(|x| x as f64).collect();
    log_line_chart(
        &title,
        ("steps back from the loss", "gradient norm (log scale)"),
        &steps_back,
        &series,
    )
}

/// One line per model (and a dashed one for the LSTM's cell state), oldest step on the right.
fn add_series(series: &mut Vec<Series>, profiles: &[Profile], suffix: &str, faint: bool) {
    // Tableau's ten: one per model, or per layer of each model with --layers.
    let colors = [
        "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    let back = |norms: &[f32]| norms.iter().rev().map(|&v| v as f64).collect::<Vec<f64>>();
    for (p, color) in profiles.iter().zip(colors.into_iter().cycle()) {
        series.push(Series {
            label: format!("{} |dE/dh|{suffix}", p.label),
            values: back(&p.grad_norm_h),
            color,
            dashed: false,
            faint,
        });
        if let Some(c) = &p.grad_norm_c {
            series.push(Series {
                label: format!("{} |dE/dc|{suffix}", p.label),
                values: back(c),
                color,
                dashed: true,
                faint,
            });
        }
    }
}
