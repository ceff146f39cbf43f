//! `make demo`'s pipeline end to end: the launch line in pipelines/, through gst-launch-1.0 and the
//! built plugin, read back with ffprobe.

mod common;

use std::path::Path;
use std::process::Command;

use common::plugin_dir;

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
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,profile,pix_fmt,duration",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
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
    let out = std::env::temp_dir().join(format!("talkinghead-demo-{}.mp4", std::process::id()));
    let status = Command::new(root.join("pipelines/file-to-mp4.sh"))
        .arg(&clip)
        .arg(&out)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", out.with_extension("registry"))
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
    std::fs::remove_file(&out).unwrap();
    let _ = std::fs::remove_file(out.with_extension("registry"));
}
