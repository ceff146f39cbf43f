//! An ONNX Runtime library older than this build needs is refused with its path and both
//! versions, and leaves the process free to load a good one. Its own test binary: a process loads
//! ONNX Runtime once.

mod common;

use std::path::Path;

use common::start_error;
use gst::prelude::*;

/// The old release `make deps` fetches for this test (onnxruntime 1.20.1's wheel).
const OLD_LIBRARY: &str = "target/ort-old/libonnxruntime.so.1.20.1";

#[test]
fn an_onnx_runtime_too_old_is_named_then_a_good_one_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let old = root.join(OLD_LIBRARY);
    assert!(old.exists(), "{}: run `make deps`", old.display());
    // The built-in avatar with its demo models, on the old library.
    let err = start_error(&[("ort-library", old.display().to_string())]);
    assert_eq!(
        err,
        format!(
            "Cannot load the models: {}: ONNX Runtime 1.20.1 is too old: this build needs \
             1.23.0 or newer",
            old.display()
        )
    );

    // The default library (the project's) still loads in this process after the refusal.
    let pipeline = gst::parse::launch(
        "audiotestsrc num-buffers=10 samplesperbuffer=1600 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead name=head ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::run_to_end(&pipeline).unwrap();
    let stats = pipeline
        .by_name("head")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-inferred").unwrap(), 25);
}
