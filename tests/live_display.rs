//! `pipelines/live-to-display.sh` runs live: a live audio source through the element to a sink
//! that shows each frame at its time on the clock, as a display does; the frames reach the sink
//! at 25 fps, none missing, with no stall.

mod common;

use std::time::{Duration, SystemTime};

use common::scripts::{Scratch, run, script};

#[test]
fn a_live_source_plays_at_25_fps() {
    let scratch = Scratch::new("live-display");
    let frames = scratch.join("frames");
    std::fs::create_dir(&frames).unwrap();
    // 4 s of live audio (100 buffers of 40 ms); each frame, shrunk to a tiny JPEG, is written
    // when the clock reaches its timestamp, so the files' times are when a display shows them
    run(script("pipelines/live-to-display.sh", &scratch)
        .env(
            "SRC",
            "audiotestsrc is-live=true wave=sine freq=180 volume=0.3 samplesperbuffer=640 \
             num-buffers=100 ! audio/x-raw,rate=16000",
        )
        .env(
            "SINK",
            format!(
                "videoscale ! video/x-raw,width=32,height=18 ! jpegenc ! \
                 multifilesink sync=true location={}/%05d.jpg",
                frames.display()
            ),
        ));
    let mut times: Vec<SystemTime> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    times.sort();
    assert_eq!(times.len(), 100, "4 s of audio make 100 frames");
    let gaps: Vec<Duration> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap())
        .collect();
    // the rate once playing: from the first second's last frame on (frames of the start that
    // reach the sink late are shown at once, and are judged by the gap check alone)
    let span = times[99].duration_since(times[24]).unwrap().as_secs_f64();
    let fps = 75.0 / span;
    let longest = gaps.iter().max().unwrap().as_secs_f64();
    let start = times[24].duration_since(times[0]).unwrap().as_secs_f64();
    eprintln!(
        "frames 0-24 shown over {start:.3} s, frames 24-99 over {span:.3} s: {fps:.2} fps; \
         longest gap {longest:.3} s"
    );
    assert!((24.5..=25.5).contains(&fps), "{fps:.2} fps");
    assert!(longest < 0.2, "the picture stalled for {longest:.3} s");
}
