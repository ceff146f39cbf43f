//! The element against our SyncTalk_2D reference (`tools/reference.py`: librosa, OpenCV and ONNX
//! Runtime, written from the spec) on the demo avatar and clip, with the test models from
//! `tools/make_test_models.py`; real tensor batches giving the same frames as single frames; and
//! the fast paths for templates shown again (templates kept as their face region, frames kept
//! converted and converted again only around the face) giving the frames made without them.

mod common;

use std::path::Path;
use std::process::Command;

use common::Frames;
use common::parity::{Subject, assert_matches, demo, element_frames_of, reference_frames_of};
use common::scripts::{python, root, run};
use gst::prelude::*;

fn element_frames(batch_size: u32) -> Frames {
    let clip = root().join("models/demo/speech.wav");
    let properties = format!("batch-size={batch_size} silence-threshold=-200");
    element_frames_of(&clip, &demo(), &properties).0
}

fn reference_frames() -> Frames {
    reference_frames_of(&root().join("models/demo/speech.wav"), &demo())
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
    assert_matches(&ours, &reference, &avatar);

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

/// The bundled clip with digital silence added inside two of its pauses (at 3.7 s and 7.2 s, for
/// pauses of about 2 s and 4.8 s in all), as a 16 kHz WAV file.
fn clip_with_pauses(path: &Path) {
    let mut samples = common::read_wav_s16(&root().join("models/demo/speech.wav"));
    for (at, seconds) in [(115_200, 4.0), (59_200, 1.2)] {
        let zeros = (16_000.0 * seconds) as usize;
        samples.splice(at..at, std::iter::repeat_n(0, zeros));
    }
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in [16u32, 1 | 1 << 16, 16_000, 32_000, 2 | 16 << 16] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

/// Frames of `clip` whose audio window is silent at the default threshold, as the engine
/// decides it, out of `frames`.
fn silent_frames(clip: &Path, frames: usize) -> Vec<usize> {
    let samples: Vec<f32> = common::read_wav_s16(clip)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut stream = gsttalkinghead::audio::stream::FeatureStream::new(64);
    stream.push(&samples);
    stream.finish();
    stream.encode(|_, _| Ok::<(), ()>(())).unwrap();
    (0..frames)
        .filter(|&frame| stream.window_silent(frame, -50.0))
        .collect()
}

#[test]
fn pauses_match_the_reference_at_the_default_settings() {
    let clip = std::env::temp_dir().join(format!("talkinghead-pauses-{}.wav", std::process::id()));
    clip_with_pauses(&clip);
    let reference = reference_frames_of(&clip, &demo());
    let (ours, stats) = element_frames_of(&clip, &demo(), "");
    let avatar = gsttalkinghead::avatar::Avatar::load(&gsttalkinghead::avatar::Source::Folder(
        root().join("models/demo"),
    ))
    .unwrap();
    // 15.2 s: 380 frames from the element, 379 from the reference.
    assert_eq!(ours.frames.len(), 380);
    assert_eq!(reference.frames.len(), 379);
    assert_matches(&ours, &reference, &avatar);

    // The silent frames showed silent faces, each made once per template and kept after.
    let silent = silent_frames(&clip, ours.frames.len());
    let templates: std::collections::BTreeSet<usize> = silent
        .iter()
        .map(|&n| gsttalkinghead::avatar::pingpong(n as u64, avatar.frames.len()))
        .collect();
    let count = |field: &str| stats.get::<u64>(field).unwrap();
    eprintln!(
        "{} silent frames on {} templates; stats: {stats}",
        silent.len(),
        templates.len()
    );
    assert!(silent.len() >= 100, "{} silent frames", silent.len());
    assert_eq!(
        count("frames-silent") + count("silent-faces"),
        silent.len() as u64
    );
    // A template's silent face is made again only when the template comes back (where the
    // ping-pong turns) within two batches of 8, before the first one has landed.
    let template = |n: usize| gsttalkinghead::avatar::pingpong(n as u64, avatar.frames.len());
    let comebacks = silent
        .iter()
        .filter(|&&n| {
            silent
                .iter()
                .any(|&m| m < n && n - m < 16 && template(m) == template(n))
        })
        .count() as u64;
    let made = count("silent-faces");
    assert!(made >= templates.len() as u64, "{made} silent faces made");
    assert!(
        made <= templates.len() as u64 + comebacks,
        "{made} silent faces made, {comebacks} templates back within two batches"
    );
    assert_eq!(
        count("frames-inferred") + count("frames-silent"),
        ours.frames.len() as u64
    );
    std::fs::remove_file(clip).unwrap();
}

/// Writes `frames` into `dir` as PPM files, in order.
fn write_ppm(frames: &Frames, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (n, frame) in frames.frames.iter().enumerate() {
        let mut ppm = format!("P6 {} {} 255\n", frames.width, frames.height).into_bytes();
        ppm.extend(
            frame
                .chunks_exact(3)
                .flat_map(|bgr| [bgr[2], bgr[1], bgr[0]]),
        );
        std::fs::write(dir.join(format!("frame_{n:05}.ppm")), ppm).unwrap();
    }
}

/// Per pause of `clip` (runs of 0.5 s under −40 dBFS), the share of `frames` whose mouth is
/// closed (`tools/measure_mouth.py`: an opening under 4/255 against the demo avatar's closed
/// templates) and the widest opening.
fn mouth_in_pauses(frames: &Frames, clip: &Path, dir: &Path) -> Vec<(f64, f64)> {
    write_ppm(frames, dir);
    let result = common::scripts::measure_mouth(
        dir,
        &["--audio", clip.to_str().unwrap(), "--closed-threshold", "4"],
    );
    result["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pause| {
            (
                pause["closed_share"].as_f64().unwrap(),
                pause["max_opening"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn talking_templates_show_the_generated_silent_face_in_pauses() {
    // An avatar whose templates show the mouth open, as a real avatar's training video does: the
    // demo avatar rendered speaking, each template the loudest frame drawn on it.
    let dir = std::env::temp_dir().join(format!("talkinghead-talking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("speaking")).unwrap();
    let speech = root().join("models/demo/speech.wav");
    common::init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! talkinghead ! \
         videoconvert ! pngenc ! multifilesink location={}/frame_%05d.png",
        speech.display(),
        dir.join("speaking").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::run_to_end(&pipeline).unwrap();
    let avatar = dir.join("avatar");
    run(Command::new(python())
        .arg(root().join("tools/make_talking_avatar.py"))
        .arg("--frames")
        .arg(dir.join("speaking"))
        .arg("--audio")
        .arg(&speech)
        .arg("--avatar")
        .arg(root().join("models/demo"))
        .arg("--out")
        .arg(&avatar));
    // A generator that, like a trained model, draws the mouth closed in silence whatever the
    // template shows (the demo generator with the closed mouth of the demo's template 0).
    let models = dir.join("models");
    run(Command::new(python())
        .arg(root().join("tools/make_demo_models.py"))
        .arg("--closed-mouth")
        .arg(root().join("models/demo"))
        .arg("--out")
        .arg(&models));
    let talking = Subject {
        avatar: avatar.clone(),
        models: Some((
            models.join("audio_encoder.onnx"),
            models.join("generator.onnx"),
        )),
    };
    let clip = dir.join("pauses.wav");
    clip_with_pauses(&clip);

    // At the default settings the frames are the reference's, pauses included.
    let (ours, stats) = element_frames_of(&clip, &talking, "");
    let reference = reference_frames_of(&clip, &talking);
    let loaded = gsttalkinghead::avatar::Avatar::load(&gsttalkinghead::avatar::Source::Folder(
        talking.avatar.clone(),
    ))
    .unwrap();
    assert_matches(&ours, &reference, &loaded);
    assert!(stats.get::<u64>("frames-silent").unwrap() > 0, "{stats}");

    // In the pauses the mouth is closed, where the templates alone have it open.
    let without_models = Subject {
        avatar,
        models: None,
    };
    let templates = element_frames_of(&clip, &without_models, "").0;
    let shown = mouth_in_pauses(&ours, &clip, &dir.join("ours"));
    let template_mouths = mouth_in_pauses(&templates, &clip, &dir.join("templates"));
    eprintln!(
        "pauses (closed share, widest opening): templates {template_mouths:?}, element {shown:?}"
    );
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert_eq!(template_mouths.len(), shown.len());
    for ((closed, widest), (template_closed, _)) in shown.iter().zip(&template_mouths) {
        assert!(*closed >= 0.95 && *widest < 6.0, "{shown:?}");
        assert!(*template_closed <= 0.5, "{template_mouths:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
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
