//! How the process's allocator treats the CPU engine's activations.

/// Keeps memory that one training step frees for the next one to reuse.
///
/// The CPU engine allocates each step's activations afresh, megabytes to gigabytes of them.
/// glibc hands blocks that large back to the kernel when they are freed: above its mmap
/// threshold they are unmapped, and a free top of the heap is trimmed. So every step faulted
/// its pages in and had the kernel zero them again: about 12% of a (32, 100, 2, 128) LSTM step
/// (perf: page faults, page clearing, brk). Serving every block from the heap and never
/// trimming it keeps them in the process, as PyTorch's caching allocator does; the price is
/// that the process holds on to its peak memory until it exits. Programs that train on the CPU
/// call this once at start; elsewhere (other C libraries) it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters; called before heavy
    // allocation, and harmless afterwards too (it takes the allocator's lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
