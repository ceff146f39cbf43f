//! State changes while audio flows: no deadlock, no thread left behind; memory growth reported.

mod common;

use std::time::Duration;

use common::init;
use common::memory::live_rss_kib;
use gst::prelude::*;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Cycles before memory is measured: caches and GStreamer's pools settle.
const WARM_UP_CYCLES: u64 = 50;
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
    let mut rss_after_warm_up = 0;

    for cycle in 0..200 {
        if cycle == WARM_UP_CYCLES {
            rss_after_warm_up = live_rss_kib();
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
    // Reported, not asserted: over these cycles RSS moved by −4.9, −2.7 and +11.7 MiB in three
    // runs, and by +22.5 and +33.7 MiB with malloc's arenas trimmed in two more; the cause is not
    // found yet.
    let growth = live_rss_kib() - rss_after_warm_up;
    eprintln!(
        "memory in use grew by {growth} KiB over the last {} cycles",
        200 - WARM_UP_CYCLES
    );
}
