//! The built-in avatar speaks: with no configuration, its mouth follows the voice (measured by
//! `tools/measure_mouth.py` on the rendered frames), closes through pauses and holds still in
//! silence — on the bundled clip, on a voice and language the demo models were not made with, and
//! on the clip as 44.1 kHz stereo put back through `audioconvert ! audioresample`.

mod common;

use std::path::{Path, PathBuf};

use common::{init, run_to_end};
use gst::prelude::*;

/// Mean |Δ opening| between consecutive frames of steady silence, on the 0–255 scale, above which
/// the mouth counts as jittering.
const MAX_SILENCE_JITTER: f64 = 0.5;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("talkinghead-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn launch(description: &str) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    run_to_end(&pipeline).unwrap();
}

/// Renders `audio` with the element at its defaults and measures the mouth against `reference`
/// (the same speech as a 16 kHz file, for the RMS the mouth is compared with).
fn measure(name: &str, audio: &Path, reference: &Path) -> serde_json::Value {
    let frames = scratch(name);
    launch(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample ! talkinghead ! \
         videoconvert ! pngenc ! multifilesink location={}/frame_%05d.png",
        audio.display(),
        frames.display()
    ));
    let result = common::scripts::measure_mouth(&frames, &["--audio", reference.to_str().unwrap()]);
    std::fs::remove_dir_all(frames).unwrap();
    eprintln!("{name}: {result}");
    result
}

fn assert_follows_the_voice(result: &serde_json::Value, min_r: f64) {
    let r = result["pearson_r"].as_f64().unwrap();
    assert!(
        r >= min_r,
        "mouth opening vs audio RMS: r = {r:.3} < {min_r}"
    );
    let pauses = result["pauses"].as_array().unwrap();
    assert!(pauses.len() >= 2, "the clip has pauses: {pauses:?}");
    for pause in pauses {
        let closed = pause["closed_share"].as_f64().unwrap();
        assert!(
            closed >= 0.95,
            "mouth closed in {:.0}% of {pause}",
            100.0 * closed
        );
    }
    let jitter = result["silence_jitter"].as_f64().unwrap();
    assert!(jitter < MAX_SILENCE_JITTER, "silence jitter {jitter:.3}");
}

#[test]
fn the_mouth_follows_the_bundled_clip() {
    let clip = root().join("models/demo/speech.wav");
    assert_follows_the_voice(&measure("mouth-clip", &clip, &clip), 0.6);
}

#[test]
fn the_mouth_follows_another_voice_and_language() {
    let clip = root().join("tests/data/other_voice.wav");
    assert_follows_the_voice(&measure("mouth-other", &clip, &clip), 0.5);
}

#[test]
fn the_mouth_follows_the_clip_at_44100_hz_stereo() {
    let clip = root().join("models/demo/speech.wav");
    let dir = scratch("mouth-44k");
    let converted = dir.join("speech-44100-stereo.wav");
    launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         audio/x-raw,rate=44100,channels=2 ! wavenc ! filesink location={}",
        clip.display(),
        converted.display()
    ));
    assert_follows_the_voice(&measure("mouth-44k-render", &converted, &clip), 0.5);
    std::fs::remove_dir_all(dir).unwrap();
}
