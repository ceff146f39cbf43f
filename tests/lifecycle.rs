//! State changes while audio flows: no deadlock, no thread left behind.

mod common;

use std::time::Duration;

use common::init;
use gst::prelude::*;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

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

    for cycle in 0..200 {
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
}
