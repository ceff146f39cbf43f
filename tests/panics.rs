//! A panic while rendering (in the source pad task or a frame-synthesis thread) becomes an element
//! error, the pipeline shuts down, and the same element streams again afterwards. The panics are
//! injected through the `fault-injection` feature, which `make test` enables.

mod common;

use std::time::{Duration, Instant};

use common::{init, make_avatar, run_to_end};
use gst::prelude::*;
use gsttalkinghead::fault::{self, Site};

const FRAMES: u64 = 60;

fn frames_out(head: &gst::Element) -> u64 {
    head.property::<gst::Structure>("stats")
        .get::<u64>("frames-out")
        .unwrap()
}

fn a_panic_becomes_an_error(site: Site, name: &str) {
    init();
    let root = make_avatar(name, 3, (64, 64), 0, 0);
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc wave=silence num-buffers={FRAMES} samplesperbuffer=640 ! \
         audio/x-raw,rate=16000,channels=1,format=F32LE ! \
         talkinghead name=head batch-size=4 avatar={} ! fakesink sync=false",
        root.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let head = pipeline.by_name("head").unwrap();

    fault::arm(site, root.to_str().unwrap());
    let started = Instant::now();
    let err = run_to_end(&pipeline).expect_err("the injected panic is an error");
    assert!(
        err.starts_with(&format!("Rendering failed: injected panic ({site:?})")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shut down late"
    );
    assert!(frames_out(&head) < FRAMES);

    // Nothing is left broken: the element starts again and renders every frame.
    run_to_end(&pipeline).unwrap();
    assert_eq!(frames_out(&head), FRAMES);
}

#[test]
fn a_panic_in_the_source_pad_task_is_an_element_error() {
    a_panic_becomes_an_error(Site::Task, "panic-task");
}

#[test]
fn a_panic_in_a_synthesis_thread_is_an_element_error() {
    a_panic_becomes_an_error(Site::Synth, "panic-synth");
}
