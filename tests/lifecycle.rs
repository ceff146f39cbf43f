//! State changes while audio flows: no deadlock, no thread, mapping or heap memory left behind.

mod common;

use std::time::Duration;

use common::init;
use common::memory::heap_in_use_kib;
use gst::prelude::*;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Cycles before memory is measured: caches and GStreamer's pools settle.
const WARM_UP_CYCLES: u64 = 50;
/// What the heap may grow by over the measured 150 cycles. What GStreamer and ONNX Runtime keep
/// settles within about 70 KiB; one leaked 640x360 I420 frame a cycle (338 KiB) would add 50 MiB.
const MAX_HEAP_GROWTH_KIB: i64 = 1024;

#[test]
fn start_stop_cycles_with_audio_flowing() {
    init();
    let pipeline = gst::parse::launch(
        "audiotestsrc is-live=true samplesperbuffer=441 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead ! fakesink sync=false",
    )
    .unwrap();
    // Warm up once, so the threads the libraries keep for good exist before counting.
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pipeline.set_state(gst::State::Null).unwrap();
    let before = threads();
    let (mut heap_after_warm_up, mut mappings_after_warm_up) = (0, 0);

    for cycle in 0..200 {
        if cycle == WARM_UP_CYCLES {
            heap_after_warm_up = heap_in_use_kib();
            mappings_after_warm_up = mappings();
        }
        pipeline.set_state(gst::State::Playing).unwrap();
        let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
        assert!(result.is_ok(), "cycle {cycle}: no PLAYING");
        std::thread::sleep(Duration::from_millis(5 + cycle % 20));
        if cycle % 3 == 0 {
            pipeline.set_state(gst::State::Paused).unwrap();
            pipeline.set_state(gst::State::Playing).unwrap();
        }
        pipeline.set_state(gst::State::Null).unwrap();
    }
    let after = threads();
    assert!(
        after <= before + 2,
        "threads: {before} before, {after} after 200 cycles"
    );
    let heap_growth = heap_in_use_kib() - heap_after_warm_up;
    eprintln!(
        "heap in use grew by {heap_growth} KiB over the last {} cycles",
        200 - WARM_UP_CYCLES
    );
    assert!(
        heap_growth <= MAX_HEAP_GROWTH_KIB,
        "heap in use grew by {heap_growth} KiB over the last {} cycles",
        200 - WARM_UP_CYCLES
    );
    let mappings_after = mappings();
    assert!(
        mappings_after <= mappings_after_warm_up + 16,
        "memory mappings: {mappings_after_warm_up} after warm-up, {mappings_after} after 200 cycles"
    );
}
