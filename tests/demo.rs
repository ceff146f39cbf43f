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
