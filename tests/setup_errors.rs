//! Set-up mistakes the avatar and property checks catch before streaming: the state change fails
//! with an element error naming the file (and line) or the property, and nothing panics or hangs.

mod common;

use std::path::Path;

use common::{gst_launch, init, make_avatar, start_error};
use gst::prelude::*;

fn load_error(avatar: &Path) -> String {
    start_error(&[("avatar", avatar.display().to_string())])
}

/// Replaces line `line` (1-based) of `landmarks/<frame>.lms`.
fn set_landmark(root: &Path, frame: usize, line: usize, text: &str) {
    let path = root.join(format!("landmarks/{frame}.lms"));
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[line - 1] = text.into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn assert_mentions(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "{part:?} is not in: {error}");
    }
}

#[test]
fn empty_avatar_folders_are_refused() {
    let root = std::env::temp_dir().join(format!("talkinghead-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let err = load_error(&root);
    assert_mentions(
        &err,
        &["talkinghead-empty-", "full_body_img: no such folder"],
    );

    std::fs::create_dir_all(root.join("full_body_img")).unwrap();
    std::fs::create_dir_all(root.join("landmarks")).unwrap();
    let err = load_error(&root);
    assert_mentions(&err, &["full_body_img: no numbered .jpg frames"]);
}

#[test]
fn a_short_landmark_file_is_named() {
    let root = make_avatar("short-lms", 3, (64, 64), 0, 0);
    let path = root.join("landmarks/1.lms");
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .take(60)
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let err = load_error(&root);
    assert_mentions(&err, &["landmarks/1.lms: has 60 points, expected 110"]);
}

#[test]
fn crop_boxes_outside_the_frame_or_empty_are_named() {
    // Point 52 (line 53) is the top of the crop box; below the 64-row frame it starts outside.
    let root = make_avatar("crop-outside", 3, (64, 64), 0, 0);
    set_landmark(&root, 2, 53, "32 70");
    let err = load_error(&root);
    assert_mentions(&err, &["landmarks/2.lms", "starts outside the 64x64 frame"]);

    // Points 1 and 31 (lines 2 and 32) are its left and right: equal, the box is empty.
    let root = make_avatar("crop-empty", 3, (64, 64), 0, 0);
    set_landmark(&root, 0, 32, "25 21");
    set_landmark(&root, 0, 2, "25 21");
    let err = load_error(&root);
    assert_mentions(&err, &["landmarks/0.lms", "empty crop box"]);
}

#[test]
fn a_frame_of_another_size_is_named() {
    let root = make_avatar("odd-size", 3, (64, 64), 0, 0);
    let other = make_avatar("odd-size-other", 1, (96, 64), 0, 0);
    std::fs::copy(
        other.join("full_body_img/0.jpg"),
        root.join("full_body_img/2.jpg"),
    )
    .unwrap();
    let err = load_error(&root);
    assert_mentions(
        &err,
        &[
            "full_body_img/2.jpg",
            "is 96x64, but the avatar's frames are 64x64",
        ],
    );
}

#[test]
fn invalid_property_values_are_refused() {
    // GLib checks the range and names the property; the element keeps its default and runs.
    let (ok, output) = gst_launch(
        "audiotestsrc num-buffers=5 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead batch-size=100 ! fakesink",
    );
    assert!(ok, "{output}");
    assert_mentions(&output, &["\"100\"", "out of range", "'batch-size'"]);
    let (_, output) = gst_launch(
        "audiotestsrc num-buffers=5 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead stats=x ! fakesink",
    );
    assert_mentions(&output, &["'stats'", "not writable"]);
    let (ok, output) = gst_launch(
        "audiotestsrc num-buffers=5 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead batch-size=abc ! fakesink",
    );
    assert!(!ok);
    assert_mentions(
        &output,
        &["could not set property \"batch-size\"", "\"abc\""],
    );
}

#[test]
fn ready_only_properties_are_refused_while_playing() {
    init();
    let pipeline = gst::parse::launch(
        "audiotestsrc is-live=true wave=silence samplesperbuffer=640 ! \
         audio/x-raw,rate=16000,channels=1 ! talkinghead name=head ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let head = pipeline.by_name("head").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (changed, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    changed.unwrap();

    head.set_property("batch-size", 2u32);
    head.set_property("avatar", "/somewhere/else");
    assert_eq!(head.property::<u32>("batch-size"), 8);
    assert_eq!(head.property::<Option<String>>("avatar"), None);
    let bus = pipeline.bus().unwrap();
    let warnings: Vec<String> = bus
        .iter_timed_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Warning])
        .filter_map(|message| match message.view() {
            gst::MessageView::Warning(warning) => Some(warning.error().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_mentions(
        &warnings[0],
        &["'batch-size'", "NULL or READY state, not in Playing"],
    );
    assert_mentions(&warnings[1], &["'avatar'"]);
    assert!(common::first_error(&bus).is_none());
    pipeline.set_state(gst::State::Null).unwrap();

    // Back in NULL the change is taken.
    head.set_property("batch-size", 2u32);
    assert_eq!(head.property::<u32>("batch-size"), 2);
}
