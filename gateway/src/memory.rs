//! Giving freed memory back to the operating system after a burst.
//!
//! glibc's allocator keeps what a burst freed inside its arenas (one per thread that
//! allocated, up to eight per core): the process's RSS stays at the burst's high-water mark
//! long after the work is gone (BENCHMARKS.md, memory after overload: 19 → 393 MB, and
//! still 394 MB through 20,000 calls at a sustainable rate). `malloc_trim(0)` walks every
//! arena and returns their free pages (`MADV_DONTNEED`), not only the top of the heap.
//!
//! [`run`] calls it every `every`, but only after the allocator's in-use total fell since
//! the last look (a burst ended): at a steady load, or when idle with nothing freed, it costs
//! one `mallinfo2` call. Other platforms and allocators: a no-op.

use std::time::Duration;
use tokio::sync::watch;

/// Trims every `every` while something was freed, until `shutdown`; `every` zero: never.
pub async fn run(every: Duration, mut shutdown: watch::Receiver<bool>) {
    if every.is_zero() {
        return;
    }
    let mut last_in_use = in_use();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let now_in_use = in_use();
        if now_in_use < last_in_use {
            let started = std::time::Instant::now();
            trim();
            tracing::debug!(
                freed_since_last = last_in_use - now_in_use,
                took_ms = started.elapsed().as_millis() as u64,
                "returned free memory to the OS"
            );
        }
        last_in_use = now_in_use;
    }
}

/// Bytes the allocator has handed out and not had back (0 where unknown).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters and returns them by value.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn in_use() -> usize {
    0
}

/// Returns every arena's free pages to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim takes the arenas' locks itself; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
