//! Live streaming over RTMP, end to end: the launch scripts in `pipelines/` publish through the
//! built plugin to a real RTMP server (nginx with its RTMP module, started and stopped here),
//! which records the stream; the recording is read back with ffprobe and the mouth measured
//! against the recording's own audio with `tools/measure_mouth.py`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::scripts::{
    FRAME_S, RtmpServer, Scratch, assert_onsets_in_sync, frames_off_the_grid, looped_clip,
    measure_recording, probe, python, root, run, script, stream,
};

/// Both tests run at real time; one at a time, so neither slows the other down.
static REAL_TIME: Mutex<()> = Mutex::new(());

/// H.264 and AAC, both lasting `seconds` within one frame, every frame on the 40 ms grid, and
/// the mouth opening within ±1 frame of each of at least `onsets` audio onsets.
fn assert_recording(path: &std::path::Path, seconds: f64, onsets: usize) {
    let streams = probe(path);
    let video = stream(&streams, "h264");
    let audio = stream(&streams, "aac");
    eprintln!(
        "{}: video {} frames, {:.3} s; audio {:.3} s",
        path.display(),
        video.pts.len(),
        video.end,
        audio.end
    );
    for s in [video, audio] {
        assert!(
            (s.end - seconds).abs() <= FRAME_S,
            "{} lasts {:.3} s, not {seconds} s",
            s.codec,
            s.end
        );
    }
    assert!(
        (video.end - audio.end).abs() <= FRAME_S,
        "video {:.3} s, audio {:.3} s",
        video.end,
        audio.end
    );
    let off = frames_off_the_grid(video);
    assert!(
        off.is_empty(),
        "{} of {} frames re-stamped off the 40 ms grid, (frame, s): {:?}",
        off.len(),
        video.pts.len(),
        &off[..off.len().min(20)]
    );
    assert_onsets_in_sync(&measure_recording(path), onsets);
}

#[test]
fn twenty_seconds_of_speech_published_and_recorded_in_sync() {
    let _one = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("rtmp-file");
    let speech = scratch.join("speech-20s.wav");
    looped_clip(2, &speech);
    let mut server = RtmpServer::start(&scratch.0);
    run(script("pipelines/file-to-rtmp.sh", &scratch)
        .arg(&speech)
        .arg(server.url("file")));
    server.stop();
    // the clip has 3 onsets after a pause of 0.3 s or more, so twice that
    assert_recording(&server.recording("file"), 20.0, 6);
}

#[test]
fn a_tts_voice_with_pauses_streams_and_records_in_sync() {
    let _one = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("rtmp-tts");
    let mut server = RtmpServer::start(&scratch.0);
    let mut publisher = script("pipelines/tts-to-rtmp.sh", &scratch)
        .arg(server.url("tts"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the voice starts once the stream plays, as a TTS service connects to a running stream
    let mut errors = BufReader::new(publisher.stderr.take().unwrap()).lines();
    let mut said = String::new();
    for line in errors.by_ref() {
        let line = line.unwrap();
        if line.contains("playing, reading stdin") {
            break;
        }
        said += &line;
    }
    let rest = std::thread::spawn(move || errors.map_while(Result::ok).collect::<Vec<_>>());
    // the clip twice with a 1 s pause between, in which nothing is written
    let mut feeder = Command::new(python())
        .arg(root().join("tools/pace_pcm.py"))
        .arg(root().join("models/demo/speech.wav"))
        .args(["--loops", "2", "--pause", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(
        feeder.stdout.as_mut().unwrap(),
        publisher.stdin.as_mut().unwrap(),
    )
    .unwrap();
    drop(publisher.stdin.take());
    let status = publisher.wait().unwrap();
    assert!(
        status.success(),
        "tts-to-rtmp.sh: {status}: {said}\n{}",
        rest.join().unwrap().join("\n")
    );
    assert!(feeder.wait().unwrap().success());
    server.stop();
    let recording = server.recording("tts");
    let seconds = probe(&recording)[0].end;
    assert!(
        (21.0..=22.0).contains(&seconds),
        "21 s of voice and pause made a {seconds:.3} s stream"
    );
    assert_recording(&recording, seconds, 5);
}
