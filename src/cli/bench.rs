//! `rnn-wgpu bench`: the benchmark suite (or one shape) on the GPU and/or the CPU.

use super::distributed::Job;
use super::engine::{Device, GpuArgs};
use anyhow::Result;
use rnn_wgpu::internals::bench::{
    bench_distributed, bench_shape, recurrent_dispatches_per_step, Arch, BenchResult, Shape, SUITE,
};
use rnn_wgpu::internals::gpu::StepKernel;
use rnn_wgpu::Cell;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// One shape B,T,I,H instead of the suite.
    #[arg(long)]
    pub shape: Option<Shape>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Devices to run, comma-separated: auto (a GPU where there is one, else the CPU engine),
    /// gpu, cpu or gpu,cpu.
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    pub device: Vec<Device>,
    /// Timed training steps per shape (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed steps first (pipeline compilation, allocation).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// One JSON object per result instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: GpuArgs,
    /// mpi: time data-parallel steps as one rank of `mpirun -n N rnn-wgpu bench --distributed
    /// mpi ...` (a build with --features mpi): the step, the gradient collective inside it, the
    /// same step alone, the bytes each rank sends. --shape's batch is per rank.
    #[arg(long, value_enum, default_value = "none")]
    pub distributed: super::distributed::Distributed,
}

/// The model `bench` and `tune` run on each shape.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ModelArgs {
    #[arg(long, default_value = "lstm")]
    pub cell: Cell,
    /// Stacked layers.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// A reverse-time pass per layer.
    #[arg(long)]
    pub bidirectional: bool,
}

impl ModelArgs {
    pub fn arch(&self) -> Result<Arch> {
        if self.layers == 0 {
            anyhow::bail!("--layers must be at least 1, got 0");
        }
        Ok(Arch {
            cell: self.cell,
            layers: self.layers,
            bidirectional: self.bidirectional,
        })
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    // A median of no runs would be a made-up figure.
    if args.runs == 0 {
        anyhow::bail!("--runs must be at least 1, got 0");
    }
    let job = super::distributed::join(args.distributed)?;
    let result = match &job {
        Some(job) => run_rank(&args, job),
        None => run_alone(&args),
    };
    super::distributed::finish(job, result)
}

/// `bench --distributed mpi`: rank 0 prints one line per shape.
fn run_rank(args: &BenchArgs, job: &Job) -> Result<()> {
    let arch = args.model.arch()?;
    let lead = job.rank() == 0;
    let [device] = args.device[..] else {
        anyhow::bail!("--distributed times one engine: give one --device, not a list");
    };
    let say = match (lead, args.json) {
        (false, _) => super::engine::Say::Nothing,
        (true, true) => super::engine::Say::Stderr,
        (true, false) => super::engine::Say::Stdout,
    };
    let gpu = match super::engine::resolve_device_saying(device, say) {
        Device::Gpu => Some(super::engine::open_gpu_for(Some(job.local_rank))?),
        _ => {
            rnn_wgpu::cpu::parallel::share_cores(job.local_ranks);
            None
        }
    };
    super::distributed::check_same_start(job, gpu.as_ref())?;
    if lead && !args.json {
        println!(
            "data-parallel training steps (forward + BPTT + gradient reduction + SGD), {} ranks \
             ({} on this machine), {} cell; medians of the slowest rank over {} steps after {} \
             warm-up; the batch B is per rank",
            job.ranks(),
            job.local_ranks,
            arch.cell,
            args.runs,
            args.warmup
        );
        println!(
            "{:<4} {:<22} {:>9} {:>9} {:>9} {:>11} {:>12} {:>11} {:>10}   adapter",
            "dev",
            "shape (B, T, I, H)",
            "step ms",
            "comm ms",
            "alone ms",
            "reduced KiB",
            "sent KiB/rk",
            "seq/s (all)",
            "efficiency"
        );
    }
    let shapes: Vec<Shape> = args.shape.map_or(SUITE.to_vec(), |s| vec![s]);
    for shape in shapes {
        let group = (job.group.as_ref(), args.engine.options());
        let r = bench_distributed(gpu.as_ref(), arch, shape, args.warmup, args.runs, group)?;
        if !lead {
            continue;
        }
        if args.json {
            println!(
                "{{\"ranks\":{},\"device\":\"{}\",\"adapter\":{:?},\"shape\":\"{}\",\"runs\":{},\
                 \"step_ms\":{:.4},\"communication_ms\":{:.4},\"alone_ms\":{:.4},\
                 \"reduced_bytes\":{},\"sent_bytes_per_rank\":{},\"sequences_per_second\":{:.2},\
                 \"efficiency\":{:.4}}}",
                r.ranks,
                r.device,
                r.adapter,
                r.shape,
                r.runs,
                r.step_ms,
                r.communication_ms,
                r.alone_ms,
                r.reduced_bytes,
                r.sent_bytes_per_rank,
                r.sequences_per_second,
                r.efficiency()
            );
        } else {
            println!(
                "{:<4} {:<22} {:>9.2} {:>9.3} {:>9.2} {:>11.1} {:>12.1} {:>11.0} {:>9.1}%   {}",
                r.device,
                r.shape.to_string(),
                r.step_ms,
                r.communication_ms,
                r.alone_ms,
                r.reduced_bytes as f64 / 1024.0,
                r.sent_bytes_per_rank as f64 / 1024.0,
                r.sequences_per_second,
                100.0 * r.efficiency(),
                r.adapter
            );
        }
    }
    Ok(())
}

fn run_alone(args: &BenchArgs) -> Result<()> {
    let arch = args.model.arch()?;
    let shapes: Vec<Shape> = args.shape.map_or(SUITE.to_vec(), |s| vec![s]);
    let devices: Vec<Device> = (args.device.iter())
        .map(|&d| {
            super::engine::resolve_device_saying(
                d,
                if args.json {
                    super::engine::Say::Stderr
                } else {
                    super::engine::Say::Stdout
                },
            )
        })
        .collect();
    let gpu = if devices.contains(&Device::Gpu) {
        Some(super::engine::open_gpu()?)
    } else {
        None
    };
    if !args.json {
        println!(
            "one training step (forward + BPTT + SGD), {}, head on the last step, MSE; median of {} after {} warm-up",
            model_name(arch),
            args.runs,
            args.warmup
        );
        println!(
            "{:<4} {:<22} {:>10} {:>10} {:>14} {:>9} {:>11}   adapter",
            "dev", "shape (B, T, I, H)", "median ms", "min ms", "seq*steps/s", "GFLOP/s", "GPU MiB"
        );
    }
    for shape in shapes {
        for device in &devices {
            let gpu = match device {
                Device::Gpu => gpu.as_ref(),
                _ => None,
            };
            let mut r = bench_shape(
                gpu,
                arch,
                shape,
                args.warmup,
                args.runs,
                args.engine.options(),
                args.engine.recurrence,
            )?;
            if let (Some(gpu), Some(recurrence)) = (gpu, r.recurrence) {
                r.recurrent_dispatches_per_step = Some(recurrent_dispatches_per_step(
                    gpu,
                    &shape.config(arch),
                    shape.batch,
                    recurrence,
                )?);
            }
            match args.json {
                true => println!("{}", r.to_json()),
                false => print_result(&r),
            }
        }
    }
    Ok(())
}

/// "lstm cell x 2 layers, bidirectional", or just "lstm cell".
fn model_name(arch: Arch) -> String {
    format!(
        "{} cell{}{}",
        arch.cell,
        match arch.layers {
            1 => String::new(),
            n => format!(" x {n} layers"),
        },
        if arch.bidirectional {
            ", bidirectional"
        } else {
            ""
        }
    )
}

/// A shape's row of the table, with the memory plan before it and its dispatches and GPU time
/// per phase after.
fn print_result(r: &BenchResult) {
    let memory =
        (r.gpu_memory_bytes).map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0));
    if let Some(plan) = &r.plan {
        print!("{}", plan.describe());
    }
    let recurrence = match (r.persistent_slices, r.step_kernel) {
        (Some(s), _) => {
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            format!(
                " (persistent recurrence, {} workgroup{} of {} row{})",
                s.count,
                plural(s.count),
                s.rows,
                plural(s.rows)
            )
        }
        (_, Some(StepKernel::MatrixUnits)) => " (steps on matrix units)".into(),
        _ => String::new(),
    };
    println!(
        "{:<4} {:<22} {:>10.1} {:>10.1} {:>14.0} {:>9.2} {:>11}   {}{recurrence}",
        r.device,
        r.shape.to_string(),
        r.median_ms,
        r.min_ms,
        r.sequence_steps_per_second,
        r.gflops,
        memory,
        r.adapter
    );
    if let (Some(all), Some(per_step)) = (r.dispatches, r.recurrent_dispatches_per_step) {
        // the step kernels' shapes, where the steps ran a dispatch each
        let (forward, backward) = r.step_shapes.map_or((String::new(), String::new()), |s| {
            (format!(" ({})", s.forward), format!(" ({})", s.backward))
        });
        println!(
            "     dispatches: {all} per training step; per time step and cell {}{forward} \
             forward, {}{backward} backward",
            per_step.forward, per_step.backward
        );
    }
    match r.describe_phases() {
        Some(line) => println!("     {line}"),
        None if r.device == "gpu" => {
            println!("     GPU ms per phase: the adapter has no timestamp queries")
        }
        None => {}
    }
}
