//! The CPU engine's worker threads: started once, and kept spinning for a while after each job.
//!
//! Starting a thread for each parallel part cost 40-50 us on a 2-core KVM guest (Zen 3), and
//! 500-800 us one time in three: the second vCPU had gone idle, and the host took that long to
//! run it again (pthread_create to the thread's first instruction, 2,000 tries: p50 50 us, p90
//! 780 us). A training step of (32, 100, 2, 128) has about a dozen parallel parts, so its time
//! on two threads moved between 13 and 20 ms from run to run while one thread held 24-25 ms. A
//! worker that spins on its job slot starts in under a microsecond (p90 0.5 us), and it keeps
//! its vCPU busy, so the gaps between the parts of a step never let the vCPU sleep. After
//! `SPIN` without a job a worker sleeps on a condition variable, so an idle process costs
//! nothing.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant};

/// How long a worker waits for its next job before it sleeps: longer than the serial work
/// between two parallel parts of a step, and than the gap between steps of a training loop.
const SPIN: Duration = Duration::from_millis(5);

/// A job with the lifetime of the borrows it holds erased: `Pool::run` waits for every job it
/// hands out before it returns, so those borrows outlive the job.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// A worker's job slot.
struct Slot {
    job: Mutex<Option<Job>>,
    /// Whether `job` holds one, read while spinning without taking the lock.
    full: AtomicBool,
    /// Wakes a worker that stopped spinning.
    filled: Condvar,
}

/// Threads that run jobs handed to them by `Pool::run`.
pub struct Pool {
    slots: Vec<Arc<Slot>>,
    /// Held by the `run` using the workers; a `run` that cannot take it (nested in a job, or on
    /// another thread at the same time) runs its items on its own thread.
    in_use: Mutex<()>,
}

/// What the jobs of one `run` report back.
struct Finished {
    remaining: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Pool {
    /// A pool of `workers` threads (0: every `run` runs on its caller).
    pub fn new(workers: usize) -> Pool {
        let slots: Vec<Arc<Slot>> = (0..workers)
            .map(|_| {
                Arc::new(Slot {
                    job: Mutex::new(None),
                    full: AtomicBool::new(false),
                    filled: Condvar::new(),
                })
            })
            .collect();
        for (i, slot) in slots.iter().enumerate() {
            let slot = Arc::clone(slot);
            std::thread::Builder::new()
                .name(format!("rnn-wgpu cpu {}", i + 1))
                .spawn(move || work(&slot))
                .expect("the CPU engine could not start a worker thread");
        }
        Pool {
            slots,
            in_use: Mutex::new(()),
        }
    }

    /// Runs `task` on every item: the first on the calling thread, the next ones on a worker
    /// each, any beyond the workers on the calling thread after its first. Returns when all are
    /// done; a panic in any task is raised here once all have finished.
    pub fn run<T: Send>(&self, items: impl IntoIterator<Item = T>, task: impl Fn(T) + Sync) {
        let mut items: Vec<T> = items.into_iter().collect();
        if items.is_empty() {
            return;
        }
        let guard = match self.in_use.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        };
        let workers = match guard {
            Some(_) => self.slots.len().min(items.len().saturating_sub(1)),
            None => 0,
        };
        let finished = Finished {
            remaining: AtomicUsize::new(workers),
            panic: Mutex::new(None),
        };
        let task = &task;
        let handed_out: Vec<T> = items.drain(1..1 + workers).collect();
        for (slot, item) in self.slots.iter().zip(handed_out) {
            let finished = &finished;
            let job = move || {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| task(item))) {
                    finished.keep(panic);
                }
                // The last touch of anything `run` owns: `run` may return right after.
                finished.remaining.fetch_sub(1, Ordering::Release);
            };
            let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
            // SAFETY: `run` does not return, nor unwind, before `remaining` is 0, that is before
            // this job has run to its end; so the borrows it holds (task, finished, the item's)
            // stay valid for as long as it can use them.
            let job: Job = unsafe { std::mem::transmute(job) };
            *slot.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
            slot.full.store(true, Ordering::Release);
            slot.filled.notify_one();
        }
        for item in items {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| task(item))) {
                finished.keep(panic);
            }
        }
        // Spin while the workers finish; past `SPIN` (a worker that was asleep, an overloaded
        // machine) give the core away between looks. The clock is read every 256 spins.
        let (start, mut spins, mut spinning) = (Instant::now(), 0u32, true);
        while finished.remaining.load(Ordering::Acquire) > 0 {
            spins = spins.wrapping_add(1);
            if spinning && spins.is_multiple_of(256) {
                spinning = start.elapsed() < SPIN;
            }
            if spinning {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        drop(guard);
        if let Some(panic) = finished
            .panic
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            resume_unwind(panic);
        }
    }
}

impl Finished {
    /// Keeps the first panic of a `run`'s tasks.
    fn keep(&self, panic: Box<dyn Any + Send>) {
        let mut first = self.panic.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(panic);
    }
}

/// A worker's life: spin on its slot for up to `SPIN`, then sleep until a job arrives; run it.
fn work(slot: &Slot) {
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while !slot.full.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            // Reading the clock costs tens of nanoseconds: only every 256 spins.
            if spins.is_multiple_of(256) && start.elapsed() >= SPIN {
                let mut job = slot.job.lock().unwrap_or_else(|p| p.into_inner());
                while job.is_none() {
                    job = slot.filled.wait(job).unwrap_or_else(|p| p.into_inner());
                }
                break;
            }
            std::hint::spin_loop();
        }
        let job = slot.job.lock().unwrap_or_else(|p| p.into_inner()).take();
        slot.full.store(false, Ordering::Relaxed);
        if let Some(job) = job {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_item_once_with_more_items_than_workers() {
        let pool = Pool::new(2);
        for count in [0, 1, 2, 3, 7] {
            let seen = Mutex::new(Vec::new());
            pool.run(0..count, |i| seen.lock().unwrap().push(i));
            let mut seen = seen.into_inner().unwrap();
            seen.sort();
            assert_eq!(seen, (0..count).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller_after_all_items_ran() {
        let pool = Pool::new(2);
        let ran = AtomicUsize::new(0);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            pool.run(0..3, |i| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(i != 2, "item 2 fails");
            })
        }));
        let panic = outcome.expect_err("the panic of item 2 propagates");
        let message = (panic.downcast_ref::<String>().cloned())
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains("item 2 fails"), "{message}");
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        // The pool still works afterwards.
        let sum = AtomicUsize::new(0);
        pool.run(1..=3, |i| {
            sum.fetch_add(i, Ordering::SeqCst);
        });
        assert_eq!(sum.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn nested_and_concurrent_runs_finish() {
        let pool = Pool::new(1);
        let total = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        pool.run(0..2, |_| {
                            // Nested: the outer run holds the workers, so this runs inline.
                            pool.run(0..2, |_| {
                                total.fetch_add(1, Ordering::SeqCst);
                            })
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::SeqCst), 2 * 50 * 2 * 2);
    }

    #[test]
    fn a_sleeping_worker_wakes_for_its_next_job() {
        let pool = Pool::new(1);
        pool.run(0..2, |_| {});
        std::thread::sleep(SPIN * 3);
        let on_worker = AtomicUsize::new(0);
        let caller = std::thread::current().id();
        pool.run(0..2, |_| {
            if std::thread::current().id() != caller {
                on_worker.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(on_worker.load(Ordering::SeqCst), 1);
    }
}
