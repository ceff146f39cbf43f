//! The element against our SyncTalk_2D reference (`tools/reference.py`: librosa, OpenCV and ONNX
//! Runtime, written from the spec) on the demo avatar and clip, with the test models from
//! `tools/make_test_models.py`; real tensor batches giving the same frames as single frames; and
//! the fast paths for templates shown again (templates kept as their face region, frames kept
//! converted and converted again only around the face) giving the frames made without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Frames, collect_bgr as collect};
use gst::prelude::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{python:?} is missing: `make test` sets up the virtualenv"
    );
    python
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The test models (encoder, generator), made once per test run.
fn models() -> &'static (PathBuf, PathBuf) {
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

fn element_frames(batch_size: u32) -> Frames {
    let (encoder, generator) = models();
    let clip = root().join("models/demo/speech.wav");
    collect(
        &format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
             talkinghead name=head batch-size={batch_size} \
             silence-threshold=-200 blend-frames=1 ! video/x-raw,format=BGR ! \
             appsink name=sink sync=false",
            clip.display()
        ),
        |pipeline| {
            let head = pipeline.by_name("head").unwrap();
            head.set_property("avatar", root().join("models/demo").to_str().unwrap());
            head.set_property("audio-encoder", encoder.to_str().unwrap());
            head.set_property("generator", generator.to_str().unwrap());
        },
    )
}

fn reference_frames() -> Frames {
    let (encoder, generator) = models();
    let out = std::env::temp_dir().join(format!("talkinghead-reference-{}", std::process::id()));
    run(Command::new(python())
        .arg(root().join("tools/reference.py"))
        .arg("--avatar")
        .arg(root().join("models/demo"))
        .arg("--audio")
        .arg(root().join("models/demo/speech.wav"))
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

#[test]
fn frames_match_the_reference() {
    let reference = reference_frames();
    let ours = element_frames(8);
    let avatar = gsttalkinghead::avatar::Avatar::load(&gsttalkinghead::avatar::Source::Folder(
        root().join("models/demo"),
    ))
    .unwrap();

    // 10 s of audio: 250 frames from the element, n + 2 = 249 from the reference.
    assert_eq!(ours.frames.len(), 250);
    assert_eq!(reference.frames.len(), 249);
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
        "249 frames: worst mean abs difference {worst_mean:.4}, worst share within ±2 {:.4}%",
        100.0 * worst_within
    );

    // The element's extra trailing frame: the template outside the crop box, painted inside it.
    let mut decoder = gsttalkinghead::avatar::JpegDecoder::new().unwrap();
    for (n, frame) in ours.frames.iter().enumerate().skip(reference.frames.len()) {
        let template =
            &avatar.frames[gsttalkinghead::avatar::pingpong(n as u64, avatar.frames.len())];
        let mut expected = vec![0; frame.len()];
        let size = (avatar.width, avatar.height);
        decoder
            .decode_bgr(&template.jpeg, &mut expected, size, 3 * width)
            .unwrap();
        let crop = template.crop;
        for (i, (a, b)) in frame.iter().zip(&expected).enumerate() {
            let (x, y) = ((i / 3) % width, i / 3 / width);
            let inside = (crop.x0 as usize..crop.x1 as usize).contains(&x)
                && (crop.y0 as usize..crop.y1 as usize).contains(&y);
            assert!(
                inside || a == b,
                "trailing frame {n}: pixel ({x}, {y}) is not the template's"
            );
        }
        assert!(frame != &expected, "trailing frame {n} was not painted");
    }
}

#[test]
fn batch_sizes_give_identical_frames() {
    let single = element_frames(1);
    for batch_size in [4, 16] {
        let batched = element_frames(batch_size);
        assert_eq!(batched.frames.len(), single.frames.len());
        for (n, (a, b)) in single.frames.iter().zip(&batched.frames).enumerate() {
            assert!(a == b, "frame {n} differs between batch 1 and {batch_size}");
        }
    }
}

/// Every output buffer of the element at its defaults (demo avatar and models, speech with its
/// silences, so idle frames and fades as well), in I420, with `template-cache` MiB of templates.
fn i420_buffers(template_cache: u32) -> Vec<Vec<u8>> {
    let clip = root().join("models/demo/speech.wav");
    let (pipeline, sink) = common::with_appsink(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         talkinghead template-cache={template_cache} ! video/x-raw,format=I420 ! \
         appsink name=sink sync=false",
        clip.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut buffers = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        buffers.push(sample.buffer().unwrap().map_readable().unwrap().to_vec());
    }
    assert!(sink.is_eos(), "the stream ends with EOS");
    pipeline.set_state(gst::State::Null).unwrap();
    buffers
}

#[test]
fn templates_and_frames_kept_give_the_frames_made_whole() {
    // Nothing kept: every template decoded and every frame converted whole.
    let whole = i420_buffers(0);
    let kept = i420_buffers(128);
    assert_eq!(whole.len(), 250);
    assert_eq!(kept.len(), whole.len());
    for (n, (a, b)) in whole.iter().zip(&kept).enumerate() {
        assert!(a == b, "frame {n} differs with templates kept");
    }
}
