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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident memory of this process, bytes.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn trimming_returns_the_pages_a_burst_freed_between_live_blocks() {
        // 128 MiB in 1 KiB blocks, one in 64 kept: no free span reaches the top of the heap,
        // so glibc's own trimming gives nothing back; a freed span holds whole pages.
        let mut blocks: Vec<Box<[u8; 1024]>> =
            (0..128 * 1024).map(|i| Box::new([i as u8; 1024])).collect();
        let mut kept = Vec::new();
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 64 == 0 {
                kept.push(b);
            }
        }
        let before = rss();
        let in_use_before = in_use();
        trim();
        let after = rss();
        assert!(
            before - after.min(before) > 64 << 20,
            "trimming gave back {} MiB of {} MiB resident",
            (before - after.min(before)) >> 20,
            before >> 20
        );
        assert!(
            in_use_before < 16 << 20,
            "freed blocks are not counted in use"
        );
        assert_eq!(kept.len(), 2048);
    }

    #[tokio::test]
    async fn the_task_stops_at_shutdown_and_zero_turns_it_off() {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(Duration::from_millis(10), rx.clone()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops at shutdown")
            .unwrap();
        tokio::time::timeout(Duration::from_millis(100), run(Duration::ZERO, rx))
            .await
            .expect("zero: returns at once");
    }
}
