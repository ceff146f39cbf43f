//! `make demo`'s pipeline end to end: the launch line in pipelines/, through gst-launch-1.0 and the
//! built plugin, read back with ffprobe, and the mouth measured against the MP4's own audio.

mod common;

use std::path::Path;

use common::scripts::{Scratch, assert_onsets_in_sync, ffprobe, measure_recording, script};

fn wav_seconds(path: &Path) -> f64 {
    let data = std::fs::read(path).unwrap();
    let rate = u32::from_le_bytes(data[24..28].try_into().unwrap());
    let block_align = u16::from_le_bytes(data[32..34].try_into().unwrap());
    let at = data.windows(4).position(|w| w == b"data").unwrap();
    let size = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
    f64::from(size) / f64::from(block_align) / f64::from(rate)
}

/// (codec, profile, pixel format, duration in seconds) of each stream.
fn probe(path: &Path) -> Vec<(String, String, String, f64)> {
    ffprobe(path, "stream=codec_name,profile,pix_fmt,duration")
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let (codec, profile, rest) = (fields[0], fields[1], &fields[2..]);
            let (pix_fmt, duration) = match rest {
                [pix_fmt, duration] => (*pix_fmt, *duration),
                [duration] => ("", *duration),
                _ => panic!("unexpected ffprobe line {line:?}"),
            };
            (
                codec.into(),
                profile.into(),
                pix_fmt.into(),
                duration.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_demo_mp4_has_h264_and_aac_as_long_as_the_clip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join("models/demo/speech.wav");
    let scratch = Scratch::new("demo");
    let out = scratch.join("demo.mp4");
    let status = script("pipelines/file-to-mp4.sh", &scratch)
        .arg(&clip)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());

    let seconds = wav_seconds(&clip);
    let streams = probe(&out);
    let video = streams
        .iter()
        .find(|s| s.0 == "h264")
        .expect("an H.264 stream");
    let audio = streams
        .iter()
        .find(|s| s.0 == "aac")
        .expect("an AAC stream");
    assert_eq!(video.2, "yuv420p", "{video:?}");
    assert!(!video.1.contains("4:4:4"), "{video:?}");
    for stream in [video, audio] {
        assert!(
            (stream.3 - seconds).abs() <= 0.040,
            "{stream:?} vs clip of {seconds} s"
        );
    }
    // the clip has 3 audio onsets after a pause of 0.3 s or more
    assert_onsets_in_sync(&measure_recording(&out), 3);
}

/// `pipelines/text-to-mp4.sh`: espeak's voice and the avatar speaking it, each stream as long as
/// the speech within a frame, and the mouth following the voice.
#[test]
fn text_to_mp4_speaks_the_text() {
    let text = "Hello. I am a talking head, and I speak whatever you type. Pauses, too: like \
                this. Then I go on.";
    let scratch = Scratch::new("text");
    // The speech alone, as espeak makes it.
    let speech = scratch.join("speech.wav");
    let status = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "espeak",
            &format!("text={text}"),
            "!",
            "wavenc",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", speech.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let seconds = wav_seconds(&speech);
    assert!(seconds > 5.0, "espeak spoke {seconds} s");

    let out = scratch.join("text.mp4");
    let status = script("pipelines/text-to-mp4.sh", &scratch)
        .arg(text)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let streams = probe(&out);
    assert_eq!(
        streams.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["h264", "aac"]
    );
    for stream in &streams {
        assert!(
            (stream.3 - seconds).abs() <= 0.040,
            "{stream:?} vs speech of {seconds} s"
        );
    }
    let mouth = measure_recording(&out);
    let r = mouth["pearson_r"].as_f64().unwrap();
    assert!(r >= 0.5, "mouth against the voice: r = {r}");
}
