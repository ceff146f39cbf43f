#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS seconds each (default 60) and prints how many
# inputs each ran. A crash stops the run, leaves the input under fuzz/artifacts/<target>/ and
# fails. cargo-fuzz passes nightly flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. No sanitizer: the code under test is safe Rust, so panics and failed assertions are
# what the targets look for.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
cargo fuzz build -s none -O
mkdir -p target/logs
for target in $targets; do
    log=target/logs/$target.log
    if ! cargo fuzz run -s none -O "$target" -- -max_total_time="$seconds" -max_len=8192 \
        >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz $target: FAILED (input saved under fuzz/artifacts/$target/, log in fuzz/$log)"
        exit 1
    fi
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log")
    echo "fuzz $target: $runs, no failure"
done
