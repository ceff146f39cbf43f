//! A long real-size avatar stays within a fixed memory budget: frames are kept compressed and
//! decoded when shown, never all decoded at once. Alone in its own test binary, so the process's
//! peak RSS is this test's.

mod common;

use common::{init, make_avatar, run_to_end};
use gst::prelude::*;

const BUDGET_KIB: u64 = 600 * 1024;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_523_frame_720p_avatar_runs_within_600_mb() {
    init();
    let root = make_avatar("memory", 523, (1280, 720), 1, 48);
    let bytes: u64 = std::fs::read_dir(root.join("full_body_img"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        bytes > 523 * 100_000,
        "frames are too small to be realistic: {bytes} bytes"
    );

    // 1100 frames: past the end of the template loop and back.
    let pipeline = gst::parse::launch(
        "audiotestsrc wave=silence num-buffers=1100 samplesperbuffer=640 ! \
         audio/x-raw,rate=16000,channels=1 ! talkinghead name=head ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("head")
        .unwrap()
        .set_property("avatar", root.to_str().unwrap());
    run_to_end(&pipeline).unwrap();
    drop(pipeline);

    let peak = peak_rss_kib();
    eprintln!("JPEG data {} MiB, peak RSS {} MiB", bytes >> 20, peak >> 10);
    assert!(
        peak < BUDGET_KIB,
        "peak RSS {peak} KiB is over {BUDGET_KIB} KiB"
    );
    std::fs::remove_dir_all(root).unwrap();
}
