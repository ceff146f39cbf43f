//! The process's memory, from `/proc/self/status` (shared with `examples/soak.rs`).
#![allow(dead_code)] // Each user takes what it needs.

/// Resident memory in KiB.
pub fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

unsafe extern "C" {
    /// glibc: gives the free memory of every malloc arena back to the system.
    fn malloc_trim(pad: usize) -> i32;
}

/// Resident memory in KiB once freed memory has gone back to the system: what is still in use,
/// whatever threads' malloc arenas happened to keep.
pub fn live_rss_kib() -> i64 {
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe { malloc_trim(0) };
    rss_kib()
}
