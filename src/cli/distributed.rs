//! `--distributed mpi`: this process as one rank of an MPI job (`mpirun -n N rnn-wgpu ...`).
//! The library does the data-parallel work (`rnn_wgpu::internals::distributed`); here are the
//! job's start (refusing ranks started differently), what each rank opens, and how a failure on
//! one rank ends them all.

use anyhow::Result;
use rnn_wgpu::internals::distributed::{self, Collective};
use rnn_wgpu::Gpu;
use std::rc::Rc;

/// `--distributed`: one process, or one rank of an MPI job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distributed {
    None,
    Mpi,
}

/// This process's place in the job.
pub struct Job {
    pub group: Rc<dyn Collective>,
    /// Rank among the ranks on this machine, and how many those are (they share its GPUs
    /// and cores).
    pub local_rank: usize,
    pub local_ranks: usize,
    #[cfg(feature = "mpi")]
    world: Rc<distributed::mpi::MpiWorld>,
}

impl Job {
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn ranks(&self) -> usize {
        self.group.ranks()
    }

    /// Ends every rank of the job now, after this one has said why.
    fn abort(&self) -> ! {
        #[cfg(feature = "mpi")]
        self.world.abort(1);
        #[cfg(not(feature = "mpi"))]
        unreachable!("a job exists only under the mpi feature")
    }
}

/// Joins the job `--distributed` asks for (`None` for one process), refusing a build without
/// MPI and a process no MPI launcher started.
pub fn join(kind: Distributed) -> Result<Option<Job>> {
    match kind {
        Distributed::None => Ok(None),
        Distributed::Mpi => join_mpi().map(Some),
    }
}

#[cfg(feature = "mpi")]
fn join_mpi() -> Result<Job> {
    let world = Rc::new(distributed::mpi::MpiWorld::init()?);
    Ok(Job {
        group: world.clone(),
        local_rank: world.local_rank(),
        local_ranks: world.local_ranks(),
        world,
    })
}

#[cfg(not(feature = "mpi"))]
fn join_mpi() -> Result<Job> {
    anyhow::bail!(
        "--distributed mpi needs a build with MPI: cargo build --release --features mpi \
         (Open MPI or MPICH, and libclang for the binding; on Debian: apt-get install \
         openmpi-bin libopenmpi-dev libclang-dev)"
    )
}

/// Refuses ranks that were started with different options or run on different engines or
/// adapter models: `gpu` is what this rank runs on (None: the CPU engine). Ranks on different
/// GPU models or drivers could round the optimizer step differently and drift apart, so they
/// are refused; GPUs of one model and driver differ only in their bus address, which is left
/// out.
pub fn check_same_start(job: &Job, gpu: Option<&Gpu>) -> Result<()> {
    let mut settings = command_settings(std::env::args().skip(1));
    settings.push(("the engine".into(), gpu.map_or("cpu".into(), adapter_model)));
    distributed::check_same_settings(job.group.as_ref(), &settings)?;
    Ok(())
}

/// The adapter's model, driver and backend: what must be the same on every rank.
fn adapter_model(gpu: &Gpu) -> String {
    let info = &gpu.info;
    format!(
        "'{}' (vendor {:#x}, device {:#x}, {:?}, {:?}; driver {} {})",
        info.name,
        info.vendor,
        info.device,
        info.device_type,
        info.backend,
        info.driver,
        info.driver_info
    )
}

/// The command line as (option, value) pairs: `--hidden 16` and `--hidden=16` alike, an
/// option's values up to the next `--` option, the subcommand under "command".
fn command_settings(args: impl Iterator<Item = String>) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = Vec::new();
    for arg in args {
        if let Some(option) = arg.strip_prefix("--").filter(|o| !o.is_empty()) {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            settings.push((format!("--{name}"), value.to_string()));
        } else if let Some((_, value)) = settings.last_mut() {
            value.push_str(if value.is_empty() { "" } else { " " });
            value.push_str(&arg);
        } else {
            settings.push(("command".into(), arg));
        }
    }
    for (_, value) in &mut settings {
        if value.is_empty() {
            *value = "given".into();
        }
    }
    settings
}

/// How a rank's run ends: an error every rank meets alike (divergence, ranks that differ) is
/// said by rank 0 alone and ends every rank with exit status 1; any other error is said by
/// its rank, which then ends the whole job, so the others do not wait for it forever.
pub fn finish(job: Option<Job>, result: Result<()>) -> Result<()> {
    let (Some(job), Err(e)) = (job, &result) else {
        return result;
    };
    let alike = matches!(
        e.downcast_ref::<rnn_wgpu::Error>(),
        Some(rnn_wgpu::Error::Diverged { .. } | rnn_wgpu::Error::Ranks(_))
    );
    if !alike {
        eprintln!("error: rank {} of {}: {e:#}", job.rank(), job.ranks());
        job.abort();
    }
    if job.rank() == 0 {
        eprintln!("error: {e:#}");
    }
    // The launcher ends the whole job when the first rank exits non-zero: no rank may exit
    // before rank 0 has said why, or the message can be lost with rank 0's output.
    let said = job.group.all_gather_bytes(&[]);
    drop(job); // MPI finalizes, with every rank
    if let Err(lost) = said {
        eprintln!("error: {lost}");
    }
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_settings_pair_options_with_their_values() {
        let args = [
            "train",
            "--hidden",
            "16",
            "--bidirectional",
            "--lr=0.1",
            "--shape",
            "1",
            "2",
        ];
        let settings = command_settings(args.iter().map(|a| a.to_string()));
        let expected = [
            ("command", "train"),
            ("--hidden", "16"),
            ("--bidirectional", "given"),
            ("--lr", "0.1"),
            ("--shape", "1 2"),
        ];
        let expected: Vec<(String, String)> = (expected.iter())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(settings, expected);
    }
}
