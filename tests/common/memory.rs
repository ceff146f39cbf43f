//! The process's memory: RSS from `/proc/self/status` (shared with `examples/soak.rs`) and the heap in
//! use from malloc's counters.
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

/// glibc's `struct mallinfo2`.
#[repr(C)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

unsafe extern "C" {
    /// glibc ≥ 2.33: malloc's counters, summed over every arena.
    fn mallinfo2() -> MallInfo2;
}

/// Bytes the C and Rust heaps hold in use (`malloc` without `free`), in KiB: what leaks would
/// grow. RSS is no measure of that: freed memory at the top of a thread's malloc arena stays
/// resident, and `malloc_trim` gives back only the main arena's top.
pub fn heap_in_use_kib() -> i64 {
    // SAFETY: mallinfo2 only reads malloc's counters; it has no preconditions.
    let info = unsafe { mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as i64
}
