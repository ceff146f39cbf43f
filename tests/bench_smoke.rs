//! The throughput benchmark (`make bench`) in its smoke mode: every step on the demo avatar and
//! models with 2 s of audio, so a broken benchmark shows up in `make test`.

#[path = "../benches/throughput.rs"]
#[allow(dead_code)]
mod throughput;

#[test]
fn the_benchmark_runs_and_its_frames_match_the_naive_loop() {
    let table = throughput::run(true);
    for measure in [
        "1. ONNX Runtime alone, batch 16",
        "2. element end to end, default settings",
        "3. naive baseline",
        "frames identical to the naive baseline: best",
        "4. RSS growth",
        "5. U-Net",
    ] {
        assert!(table.contains(measure), "{measure} missing from:\n{table}");
    }
}
