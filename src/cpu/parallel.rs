//! Threads for the CPU reference: disjoint parts of the work on the workers of one pool
//! (`pool.rs`), started once and kept busy between parts. The parts are coarse: a slice of the
//! batch through the whole time loop, or a block of a large matrix product. Each part is
//! computed as it would be on one thread, and sums across parts (the per-step norms) add one
//! sequence's share at a time in batch order: the thread count changes no bit of the results.

use super::pool::Pool;
use ndarray::{Array, ShapeBuilder};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The environment variable that sets the thread count (default: the cores this process may
/// use).
pub const THREADS_VAR: &str = "RNN_WGPU_CPU_THREADS";

/// Multiply-adds below which handing a part to another thread does not pay (a spinning worker
/// starts at once, but one that went to sleep takes 50-800 us to wake on a virtual machine).
const MIN_WORK_PER_THREAD: usize = 1 << 21;

/// Elements read or written below which handing a part to another thread does not pay, for
/// work bound by memory rather than arithmetic (a pass over 1 MiB of f32 takes about as long
/// as waking a sleeping worker).
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 18;

static THREADS: OnceLock<usize> = OnceLock::new();

/// Threads the CPU reference uses: `RNN_WGPU_CPU_THREADS` if it is a positive integer, else
/// the cores available to this process. Read once.
pub fn threads() -> usize {
    *THREADS.get_or_init(|| threads_from_env().unwrap_or_else(cores))
}

/// For `ways` processes sharing this machine's cores (data-parallel ranks): each uses
/// cores / ways threads (at least 1) unless `RNN_WGPU_CPU_THREADS` says otherwise. Call it
/// before the engine runs; returns the count in force.
pub fn share_cores(ways: usize) -> usize {
    *THREADS.get_or_init(|| threads_from_env().unwrap_or_else(|| (cores() / ways.max(1)).max(1)))
}

fn threads_from_env() -> Option<usize> {
    std::env::var(THREADS_VAR)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|&n: &usize| n >= 1)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Into how many parts to split `work` multiply-adds spread over `units` independent units
/// (rows, columns, sequences): at most one per thread and per unit, and one when the work is
/// too small to share.
pub fn parts(work: usize, units: usize) -> usize {
    threads().min(work / MIN_WORK_PER_THREAD).min(units).max(1)
}

/// `parts` for work that streams `elements` values through memory with a few operations each
/// (a zero fill, a product with an inner dimension of a few features), over `units` units.
pub fn streaming_parts(elements: usize, units: usize) -> usize {
    threads()
        .min(elements / MIN_ELEMENTS_PER_THREAD)
        .min(units)
        .max(1)
}

/// An array of zeros of `shape`, written by as many threads as pay off. The engine's arrays
/// of megabytes come from memory that the last step freed (`heap::keep_freed_memory`), so
/// zeroing them is a pass over all of it, which `Array::zeros` makes on the calling thread
/// while the others wait.
pub fn zeros<F: Copy + Send + num_traits::Zero, Sh: ShapeBuilder>(shape: Sh) -> Array<F, Sh::Dim> {
    let mut array = Array::uninit(shape);
    let values = array
        .as_slice_memory_order_mut()
        .expect("a new array is contiguous");
    let chunk = chunk_len(
        values.len(),
        streaming_parts(values.len(), values.len()),
        16,
    );
    run(values.chunks_mut(chunk.max(1)), |part| {
        part.fill(MaybeUninit::new(F::zero()))
    });
    // SAFETY: every element was written just above.
    unsafe { array.assume_init() }
}

/// The length of each of `parts` nearly equal chunks of `len` units, rounded up to a multiple
/// of `align` (so that matrix blocks stay whole microkernel tiles).
pub fn chunk_len(len: usize, parts: usize, align: usize) -> usize {
    len.div_ceil(parts).div_ceil(align) * align
}

/// Runs `task` on every item: the first on the calling thread, each other one on a worker of
/// the pool (`threads() - 1` of them). Returns when all are done; a panic in any task propagates.
pub fn run<T: Send>(items: impl IntoIterator<Item = T>, task: impl Fn(T) + Sync) {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(threads() - 1))
        .run(items, task);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn splits_and_runs_every_item() {
        assert_eq!(chunk_len(10, 3, 1), 4);
        assert_eq!(chunk_len(100, 2, 8), 56);
        assert_eq!(parts(0, 10), 1);
        assert_eq!(parts(usize::MAX, 1), 1);
        assert!(parts(usize::MAX, usize::MAX) == threads());
        let seen = Mutex::new(Vec::new());
        run(0..5, |i| seen.lock().unwrap().push(i));
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        run(std::iter::empty::<u8>(), |_| unreachable!());
    }

    #[test]
    fn zeros_fills_every_element_of_any_size() {
        for len in [0, 1, 17, MIN_ELEMENTS_PER_THREAD * 2 + 3] {
            let z: ndarray::Array2<f32> = zeros((len, 3));
            assert_eq!(z.dim(), (len, 3));
            assert!(z.iter().all(|&v| v == 0.0 && v.is_sign_positive()));
        }
        let z: ndarray::Array3<f64> = zeros((3, 0, 5));
        assert_eq!(z.len(), 0);
    }
}
