//! The `Collective` over MPI (Open MPI or MPICH): one process per rank, started by `mpirun`.

use super::Collective;
use crate::error::Error;
use mpi::collective::CommunicatorCollectives;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Count;

/// The job's ranks, and the ranks on this machine (which pick the GPUs).
pub struct MpiWorld {
    // Fields drop in order: the communicators are freed before the universe finalizes MPI.
    local: SimpleCommunicator,
    world: SimpleCommunicator,
    _universe: Universe,
}

/// Variables a process started by mpirun (Open MPI, or MPICH's Hydra) finds set.
const LAUNCHER_VARS: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"];

impl MpiWorld {
    /// Initializes MPI, refusing a process that no MPI launcher started (MPI would run it as a
    /// job of one rank, which is surely not what was meant).
    pub fn init() -> Result<MpiWorld, Error> {
        if !LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
            return Err(Error::Config(
                "--distributed mpi runs under an MPI launcher, one process per rank: \
                 mpirun -n 2 rnn-wgpu train --distributed mpi ... (none of OMPI_COMM_WORLD_SIZE, \
                 PMIX_RANK, PMI_RANK, PMI_SIZE is set)"
                    .into(),
            ));
        }
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Config("MPI was initialized twice in one process".into()))?;
        let world = universe.world();
        let local = world.split_shared(world.rank());
        Ok(MpiWorld {
            local,
            world,
            _universe: universe,
        })
    }

    /// This rank's index among the ranks on its machine, and how many those are.
    pub fn local_rank(&self) -> usize {
        self.local.rank() as usize
    }

    /// How many ranks run on this machine (the GPUs they share out).
    pub fn local_ranks(&self) -> usize {
        self.local.size() as usize
    }

    /// Ends every rank of the job at once (after this rank has said why).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    fn all_to_all(&self, send: &[f32]) -> Result<Vec<f32>, Error> {
        let mut received = vec![0.0f32; send.len()];
        self.world.all_to_all_into(send, &mut received[..]);
        Ok(received)
    }

    fn all_gather(&self, send: &[f32]) -> Result<Vec<f32>, Error> {
        let mut received = vec![0.0f32; send.len() * self.ranks()];
        self.world.all_gather_into(send, &mut received[..]);
        Ok(received)
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let len = Count::try_from(send.len())
            .map_err(|_| Error::Value(format!("{} bytes are too many for MPI", send.len())))?;
        let mut counts: Vec<Count> = vec![0; self.ranks()];
        self.world.all_gather_into(&[len][..], &mut counts[..]);
        let starts: Vec<Count> = (counts.iter())
            .scan(0, |next, &count| {
                let start = *next;
                *next += count;
                Some(start)
            })
            .collect();
        let mut all = vec![0u8; counts.iter().map(|&c| c as usize).sum()];
        let mut parts = PartitionMut::new(&mut all[..], &counts[..], &starts[..]);
        self.world.all_gather_varcount_into(send, &mut parts);
        Ok((starts.iter().zip(&counts))
            .map(|(&start, &count)| all[start as usize..(start + count) as usize].to_vec())
            .collect())
    }
}
