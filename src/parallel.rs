//! Data-parallel training over MPI (cargo feature `mpi`): under `mpirun -n N` each process (a
//! rank) trains on its share of the rows of every step's batch, the ranks' gradients are summed
//! by MPI_Allreduce, and every rank applies the same update. Without the feature, or outside
//! mpirun, a run is the one rank 0 of 1.
//!
//! The ranks are process-wide: `init` (in `main`, for `ddpm train`) starts MPI and `finalize`
//! ends it; `ranks()` tells any module which rank it is.

use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Result};

/// This process's place among the ranks of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranks {
    pub rank: usize,
    pub size: usize,
}

impl Ranks {
    pub const SINGLE: Ranks = Ranks { rank: 0, size: 1 };

    /// Rank 0 alone writes the run directory and prints the run's reports.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    pub fn is_parallel(&self) -> bool {
        self.size > 1
    }

    /// The rows of a batch of `batch` this rank computes: its share [rank B/N, (rank + 1) B/N).
    pub fn share(&self, batch: usize) -> std::ops::Range<usize> {
        let per_rank = batch / self.size;
        self.rank * per_rank..(self.rank + 1) * per_rank
    }

    /// Refuses a batch the ranks cannot split evenly.
    pub fn check_batch(&self, batch: usize) -> Result<(), String> {
        if !batch.is_multiple_of(self.size) {
            return Err(format!(
                "--batch-size {batch} does not split evenly over {} MPI ranks: --batch-size is \
                 the global batch, so give a multiple of {}",
                self.size, self.size
            ));
        }
        Ok(())
    }
}

static RANKS: OnceLock<Ranks> = OnceLock::new();

/// The ranks of this process: set by `init`, else one rank.
pub fn ranks() -> Ranks {
    RANKS.get().copied().unwrap_or(Ranks::SINGLE)
}

/// The number of ranks mpirun (Open MPI, MPICH, Slurm's PMI) says it started, from the
/// environment it gives each process; None outside a launcher.
fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The rank's index among the ranks on its own machine, for picking one GPU per rank.
pub fn local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

#[cfg(feature = "mpi")]
static UNIVERSE: Mutex<Option<mpi::environment::Universe>> = Mutex::new(None);
#[cfg(not(feature = "mpi"))]
static UNIVERSE: Mutex<Option<()>> = Mutex::new(None);

/// Starts MPI when the process was launched by mpirun with more than one rank. `command` names
/// what runs: only training is data-parallel, so other commands are refused under mpirun, and
/// a build without the `mpi` feature refuses such a launch instead of running N copies.
pub fn init(command: &str, trains: bool) -> Result<()> {
    let Some(size) = launched_size().filter(|&n| n > 1) else {
        return Ok(());
    };
    if !trains {
        bail!(
            "`ddpm {command}` runs in one process: run it without mpirun (only `ddpm train` \
             spreads over MPI ranks)"
        );
    }
    #[cfg(feature = "mpi")]
    {
        use mpi::traits::Communicator;
        let Some(universe) = mpi::initialize() else {
            bail!("MPI was already initialised in this process");
        };
        let world = universe.world();
        let ranks = Ranks {
            rank: world.rank() as usize,
            size: world.size() as usize,
        };
        if ranks.size != size {
            bail!(
                "mpirun announced {size} ranks but MPI reports {}: is this binary linked \
                 against the MPI whose mpirun started it?",
                ranks.size
            );
        }
        RANKS.set(ranks).ok();
        *UNIVERSE.lock().unwrap_or_else(|e| e.into_inner()) = Some(universe);
        Ok(())
    }
    #[cfg(not(feature = "mpi"))]
    bail!(
        "this ddpm was launched as one of {size} MPI ranks but built without MPI: build it with \
         `cargo build --release --features mpi` (Open MPI: apt-get install libopenmpi-dev \
         libclang-dev), or run it without mpirun"
    )
}

/// Ends MPI (every rank must before it exits, or mpirun reports the run as failed); nothing
/// outside MPI.
pub fn finalize() {
    // Taking the universe out drops it, which calls MPI_Finalize.
    let _ = UNIVERSE.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// Stops every rank of the run after this one failed, so none waits forever for its
/// gradients. Outside MPI it does nothing.
pub fn abort_all(code: i32) {
    if ranks().is_parallel() {
        comm::abort(code);
    }
}

/// Sums `buf` over the ranks, in place (MPI_Allreduce); the identity on one rank.
pub fn sum_f32(buf: &mut [f32]) {
    if ranks().is_parallel() {
        comm::sum_f32(buf);
    }
}

/// Rank 0's `buf` on every rank (MPI_Bcast); the identity on one rank.
pub fn broadcast_f32(buf: &mut [f32]) {
    if ranks().is_parallel() {
        comm::broadcast_f32(buf);
    }
}

/// Rank 0's `value` on every rank; the identity on one rank.
pub fn broadcast_u64(value: u64) -> u64 {
    if ranks().is_parallel() {
        comm::broadcast_u64(value)
    } else {
        value
    }
}

/// Whether every rank holds the same `value` (the minimum and the maximum over the ranks
/// agree); true on one rank.
pub fn all_agree(value: u64) -> bool {
    !ranks().is_parallel() || comm::all_agree(value)
}

/// The collectives over MPI_COMM_WORLD, for a run of several ranks.
#[cfg(feature = "mpi")]
mod comm {
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives, Root};

    pub fn abort(code: i32) {
        SimpleCommunicator::world().abort(code);
    }

    pub fn sum_f32(buf: &mut [f32]) {
        let send = buf.to_vec();
        SimpleCommunicator::world().all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    pub fn broadcast_f32(buf: &mut [f32]) {
        SimpleCommunicator::world()
            .process_at_rank(0)
            .broadcast_into(buf);
    }

    pub fn broadcast_u64(value: u64) -> u64 {
        let mut v = value;
        SimpleCommunicator::world()
            .process_at_rank(0)
            .broadcast_into(&mut v);
        v
    }

    pub fn all_agree(value: u64) -> bool {
        let world = SimpleCommunicator::world();
        let (mut lo, mut hi) = (0u64, 0u64);
        world.all_reduce_into(&value, &mut lo, SystemOperation::min());
        world.all_reduce_into(&value, &mut hi, SystemOperation::max());
        lo == hi
    }
}

/// Without the `mpi` feature a run is one rank (`init` refuses an mpirun launch), so the
/// collectives are never reached; these keep the callers free of cfg.
#[cfg(not(feature = "mpi"))]
mod comm {
    pub fn abort(_code: i32) {}
    pub fn sum_f32(_buf: &mut [f32]) {}
    pub fn broadcast_f32(_buf: &mut [f32]) {}
    pub fn broadcast_u64(value: u64) -> u64 {
        value
    }
    pub fn all_agree(_value: u64) -> bool {
        true
    }
}

/// FNV-1a over the bits of `values`: the parameter check's fingerprint of the weights.
pub fn fingerprint(values: &[f32]) -> u64 {
    values.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
        v.to_bits()
            .to_le_bytes()
            .iter()
            .fold(h, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
    })
}

/// A line on stderr from rank 0 only, so N ranks do not print N interleaved copies.
pub fn root_eprintln(line: std::fmt::Arguments) {
    if ranks().is_root() {
        eprintln!("{line}");
    }
}
