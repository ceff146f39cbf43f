//! The element against the SyncTalk_2D reference (`tools/reference.py`): the test models, the
//! reference's frames and the element's of one clip, and the parity tolerance.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gst::prelude::*;

use super::scripts::{python, root, run};
use super::{Frames, collect_bgr as collect};

/// The test models (encoder, generator), made once per test run.
pub fn models() -> &'static (PathBuf, PathBuf) {
    static MODELS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("talkinghead-parity-{}", std::process::id()));
        run(Command::new(python())
            .arg(root().join("tools/make_test_models.py"))
            .arg("--out")
            .arg(&dir));
        (dir.join("audio_encoder.onnx"), dir.join("generator.onnx"))
    })
}

/// An avatar folder and, if any, its models (encoder, generator).
pub struct Subject {
    pub avatar: PathBuf,
    pub models: Option<(PathBuf, PathBuf)>,
}

/// The demo avatar with the test models.
pub fn demo() -> Subject {
    Subject {
        avatar: root().join("models/demo"),
        models: Some(models().clone()),
    }
}

/// The element's frames of `clip` for `subject`, with `properties` set on it, and its `stats` at
/// the end.
pub fn element_frames_of(
    clip: &Path,
    subject: &Subject,
    properties: &str,
) -> (Frames, gst::Structure) {
    let head = std::sync::OnceLock::new();
    let frames = collect(
        &format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
             talkinghead name=head {properties} ! video/x-raw,format=BGR ! \
             appsink name=sink sync=false",
            clip.display()
        ),
        |pipeline| {
            let element = pipeline.by_name("head").unwrap();
            element.set_property("avatar", subject.avatar.to_str().unwrap());
            if let Some((encoder, generator)) = &subject.models {
                element.set_property("audio-encoder", encoder.to_str().unwrap());
                element.set_property("generator", generator.to_str().unwrap());
            }
            head.set(element).unwrap();
        },
    );
    let stats = head.get().unwrap().property::<gst::Structure>("stats");
    (frames, stats)
}

/// The reference's frames of `clip` for `subject` (which has models).
pub fn reference_frames_of(clip: &Path, subject: &Subject) -> Frames {
    let (encoder, generator) = subject.models.as_ref().unwrap();
    let out = std::env::temp_dir().join(format!(
        "talkinghead-reference-{}-{}",
        clip.file_stem().unwrap().to_str().unwrap(),
        std::process::id()
    ));
    run(Command::new(python())
        .arg(root().join("tools/reference.py"))
        .arg("--avatar")
        .arg(&subject.avatar)
        .arg("--audio")
        .arg(clip)
        .arg("--encoder")
        .arg(encoder)
        .arg("--generator")
        .arg(generator)
        .arg("--out")
        .arg(&out));
    let frames = collect(
        &format!(
            "multifilesrc location={}/frame_%05d.png caps=image/png,framerate=25/1 ! pngdec ! \
             videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false",
            out.display()
        ),
        |_| (),
    );
    std::fs::remove_dir_all(out).unwrap();
    frames
}

/// Asserts that each frame the reference made matches the element's within the speech
/// tolerance: a mean absolute difference of at most 0.5/255 and 99 % of values within ±2 in the
/// frame's crop box, and nothing different outside it.
pub fn assert_matches(ours: &Frames, reference: &Frames, avatar: &gsttalkinghead::avatar::Avatar) {
    assert_eq!(
        (ours.width, ours.height),
        (reference.width, reference.height)
    );
    let width = ours.width;
    let mut worst_mean: f64 = 0.0;
    let mut worst_within: f64 = 1.0;
    for (n, (ours, theirs)) in ours.frames.iter().zip(&reference.frames).enumerate() {
        let template = gsttalkinghead::avatar::pingpong(n as u64, avatar.frames.len());
        let crop = avatar.frames[template].crop;
        let (mut sum, mut within, mut count) = (0u64, 0u64, 0u64);
        for y in 0..ours.len() / (3 * width) {
            for x in 0..width {
                let inside = (crop.x0 as usize..crop.x1 as usize).contains(&x)
                    && (crop.y0 as usize..crop.y1 as usize).contains(&y);
                let i = 3 * (y * width + x);
                for c in 0..3 {
                    let diff = ours[i + c].abs_diff(theirs[i + c]);
                    if inside {
                        sum += u64::from(diff);
                        within += u64::from(diff <= 2);
                        count += 1;
                    } else {
                        assert_eq!(diff, 0, "frame {n}: pixel ({x}, {y}) outside the crop box");
                    }
                }
            }
        }
        let mean = sum as f64 / count as f64;
        let within = within as f64 / count as f64;
        assert!(mean <= 0.5, "frame {n}: mean abs difference {mean:.3}");
        assert!(
            within >= 0.99,
            "frame {n}: {:.2}% within ±2",
            100.0 * within
        );
        worst_mean = worst_mean.max(mean);
        worst_within = worst_within.min(within);
    }
    eprintln!(
        "{} frames: worst mean abs difference {worst_mean:.4}, worst share within ±2 {:.4}%",
        reference.frames.len(),
        100.0 * worst_within
    );
}
