//! The talking head live in a browser: `examples/webrtc` publishes the demo avatar speaking the
//! bundled clip through `webrtcbin` (H.264 and Opus) to its page; Debian's chromium, headless
//! and driven over its DevTools protocol, opens the page, and a probe in the page records every
//! video frame it presents (with the mean brightness of the mouth) and the level of the audio it
//! plays, against the wall clock the publisher stamps its speech onsets with.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::browser::Browser;
use common::scripts::{Scratch, root};

/// Seconds of silence before each time the publisher says the clip: the mouth is closed in them.
const PAUSE_S: f64 = 4.0;
/// Seconds over which the frame rate is measured.
const RATE_WINDOW_MS: f64 = 10_000.0;
/// How far apart the page may present the voice and the mouth it moves. The probe sees the
/// mouth two frames after the voice starts even where the two are exact (80 ms on the element's
/// offline frames of the same speech), and the browser's lip sync is not exact; a voice not
/// held back for its face comes about 700 ms early.
const MAX_AV_OFFSET_MS: f64 = 300.0;
/// RMS (full scale 1) from which the page's audio counts as speech: -40 dBFS, the publisher's.
const SPEECH_RMS: f64 = 0.01;

/// The publisher, stopped when dropped; its speech onsets (unix ms) as it prints them.
struct Publisher {
    child: Child,
    url: String,
    onsets: Arc<Mutex<Vec<f64>>>,
}

impl Publisher {
    fn start(scratch: &Scratch) -> Publisher {
        let dir = common::plugin_dir();
        let mut child = Command::new(dir.join("examples/webrtc"))
            .args(["--port", "0", "--pause", &PAUSE_S.to_string()])
            .env("GST_PLUGIN_PATH", &dir)
            .env("GST_REGISTRY", scratch.join("registry.bin"))
            .env_remove("G_DEBUG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the webrtc example (cargo test builds it)");
        // its log, into the test's output (shown when the test fails)
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("publisher: {line}");
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the publisher did not start: {first:?}"))
            .to_owned();
        let onsets = Arc::new(Mutex::new(Vec::new()));
        let found = onsets.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(ms) = line.strip_prefix("speech-onset unix-ms=") {
                    found.lock().unwrap().push(ms.parse::<f64>().unwrap());
                }
            }
        });
        Publisher { child, url, onsets }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The box, in the demo avatar's 640x360 frame, holding its mouth in every template with room
/// to open: landmarks 76..95 (lips), widened as `tools/measure_mouth.py` widens them.
fn mouth_box() -> [u32; 4] {
    let dir = root().join("models/demo/landmarks");
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().skip(76).take(20) {
            let mut xy = line.split_whitespace().map(|v| v.parse::<f64>().unwrap());
            let (x, y) = (xy.next().unwrap(), xy.next().unwrap());
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let (w, h) = (x1 - x0, y1 - y0);
    let (left, top) = (x0 - 0.25 * w, y0 - 0.2 * h);
    let (right, bottom) = (x1 + 0.25 * w, y1 + 0.6 * w);
    [
        left as u32,
        top as u32,
        (right - left) as u32,
        (bottom - top) as u32,
    ]
}

/// Records, from now on, each presented video frame as [unix ms it is shown, presented-frame
/// count, mean luma of the mouth box] and every 10 ms the audio the page plays as [unix ms it is
/// heard, RMS].
fn start_probe(browser: &mut Browser) {
    let [x, y, w, h] = mouth_box();
    browser.eval(&format!(
        r#"(() => {{
  const video = document.getElementById('video');
  const probe = {{ frames: [], audio: [] }};
  window.probe = probe;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d', {{ willReadFrequently: true }});
  const onFrame = (now, frame) => {{
    context.drawImage(video, 0, 0);
    const pixels = context.getImageData({x}, {y}, {w}, {h}).data;
    let luma = 0;
    for (let i = 0; i < pixels.length; i += 4) {{
      luma += 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
    }}
    probe.frames.push([performance.timeOrigin + frame.expectedDisplayTime, frame.presentedFrames,
                       luma / (pixels.length / 4)]);
    video.requestVideoFrameCallback(onFrame);
  }};
  video.requestVideoFrameCallback(onFrame);
  const audio = new AudioContext();
  const analyser = audio.createAnalyser();
  analyser.fftSize = 512;
  audio.createMediaStreamSource(video.srcObject).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  setInterval(() => {{
    analyser.getFloatTimeDomainData(samples);
    let energy = 0;
    for (const s of samples) energy += s * s;
    // the analyser reads what is about to go out: it is heard the output's latency later
    const heard = performance.now() + 1000 * (audio.baseLatency + audio.outputLatency);
    probe.audio.push([performance.timeOrigin + heard, Math.sqrt(energy / samples.length)]);
  }}, 10);
  return audio.state;
}})()"#
    ));
}

/// Presented frames per second over [from, to] (unix ms), from the frame counter.
fn frame_rate(frames: &[[f64; 3]], from: f64, to: f64) -> f64 {
    let inside: Vec<_> = frames
        .iter()
        .filter(|f| (from..=to).contains(&f[0]))
        .collect();
    let (first, last) = (inside[0], inside[inside.len() - 1]);
    (last[1] - first[1]) / (last[0] - first[0]) * 1000.0
}

/// When the page first played sound after `after` (unix ms).
fn audio_onset(audio: &[[f64; 2]], after: f64) -> Option<f64> {
    audio
        .iter()
        .find(|a| a[0] >= after && a[1] >= SPEECH_RMS)
        .map(|a| a[0])
}

/// When the page first showed the mouth open after `after` (unix ms): the first frame whose
/// mouth box is darker than every frame shown in the second before by more than 1.5 levels
/// (the closed mouth shown as the head sways moves it by about 1).
fn mouth_onset(frames: &[[f64; 3]], after: f64) -> Option<f64> {
    let closed = frames
        .iter()
        .filter(|f| (after - 1000.0..after).contains(&f[0]))
        .map(|f| f[2])
        .fold(f64::MAX, f64::min);
    frames
        .iter()
        .find(|f| f[0] >= after && f[2] < closed - 1.5)
        .map(|f| f[0])
}

#[test]
fn the_page_plays_the_avatar_live_with_its_voice() {
    let scratch = Scratch::new("webrtc");
    let publisher = Publisher::start(&scratch);
    let mut browser = Browser::open(&publisher.url, &scratch.join("profile"));
    browser.wait_for(
        "(() => { const v = document.getElementById('video'); \
           return !!v && v.readyState >= 2 && v.videoWidth > 0 && !v.paused; })()",
        Duration::from_secs(30),
    );
    let size = browser.eval("[video.videoWidth, video.videoHeight]");
    assert_eq!(size, serde_json::json!([640, 360]), "the video's size");
    start_probe(&mut browser);
    // the first second catches up on what was decoded before the page started playing
    std::thread::sleep(Duration::from_secs(2));
    let started = now_ms();
    // 10 s, then a speech onset with 2 s of speech after it: by then the browser has the
    // sender reports it syncs the two streams by (the first come a few seconds in)
    let deadline = Instant::now() + Duration::from_secs(60);
    let onset = loop {
        std::thread::sleep(Duration::from_millis(200));
        let onsets = publisher.onsets.lock().unwrap().clone();
        let now = now_ms();
        let onset = onsets
            .into_iter()
            .find(|&t| t > started + RATE_WINDOW_MS && now > t + 2000.0);
        if let Some(onset) = onset {
            break onset;
        }
        assert!(
            Instant::now() < deadline,
            "no speech onset followed for 2 s within 60 s: onsets {:?} s from the start",
            publisher
                .onsets
                .lock()
                .unwrap()
                .iter()
                .map(|t| (t - started) / 1000.0)
                .collect::<Vec<_>>()
        );
    };
    let shot = browser.screenshot();
    let probe = browser.eval("window.probe");
    let out = root().join("target/webrtc");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("probe.json"), probe.to_string()).unwrap();
    std::fs::write(out.join("screenshot.png"), &shot).unwrap();
    let frames: Vec<[f64; 3]> = serde_json::from_value(probe["frames"].clone()).unwrap();
    let audio: Vec<[f64; 2]> = serde_json::from_value(probe["audio"].clone()).unwrap();

    let fps = frame_rate(&frames, started, started + RATE_WINDOW_MS);
    let heard = audio_onset(&audio, onset).expect("the page played no speech after the onset");
    let seen =
        mouth_onset(&frames, onset).expect("the page showed no mouth opening after the onset");
    eprintln!(
        "webrtc: {fps:.1} frames/s presented over 10 s; from the speech's capture to the page: \
         voice {:.0} ms, mouth {:.0} ms (mouth - voice {:+.0} ms); screenshot {}",
        heard - onset,
        seen - onset,
        seen - heard,
        out.join("screenshot.png").display()
    );
    assert!(
        (23.0..=27.0).contains(&fps),
        "{fps:.1} frames/s, not 25 ± 2"
    );
    assert!(
        (seen - heard).abs() <= MAX_AV_OFFSET_MS,
        "the mouth moved {:+.0} ms after the voice was heard",
        seen - heard
    );
    assert_avatar_in(&out.join("screenshot.png"), &browser.eval(VIDEO_RECT));
}

/// The video element's box in the page, in screenshot pixels: [x, y, width, height].
const VIDEO_RECT: &str = "(() => { const r = video.getBoundingClientRect(); \
    return [r.x, r.y, r.width, r.height].map(v => Math.round(v * devicePixelRatio)); })()";

/// The screenshot shows, in the video's box, one of the demo avatar's frames: its luma correlates
/// with the template it best matches by r ≥ 0.9 (the mouth the model drew, head sway between
/// templates and the H.264 coding make up the rest).
fn assert_avatar_in(screenshot: &std::path::Path, rect: &Value) {
    let rect: [usize; 4] = serde_json::from_value(rect.clone()).unwrap();
    assert_eq!(
        rect[2..],
        [640, 360],
        "the video's box (at device pixel ratio 1)"
    );
    let shot = common::collect_bgr(
        &format!(
            "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=BGR ! \
             appsink name=sink",
            screenshot.display()
        ),
        |_| {},
    );
    let luma = |bgr: &[u8]| 0.114 * bgr[0] as f64 + 0.587 * bgr[1] as f64 + 0.299 * bgr[2] as f64;
    let shown: Vec<f64> = (0..360)
        .flat_map(|y| {
            let row = (rect[1] + y) * shot.width + rect[0];
            shot.frames[0][3 * row..3 * (row + 640)]
                .chunks(3)
                .map(luma)
                .collect::<Vec<_>>()
        })
        .collect();
    let templates = common::collect_bgr(
        &format!(
            "multifilesrc location={}/%d.jpg index=0 stop-index=59 caps=image/jpeg,framerate=25/1 ! \
             jpegdec ! videoconvert ! video/x-raw,format=BGR ! appsink name=sink",
            root().join("models/demo/full_body_img").display()
        ),
        |_| {},
    );
    let best = templates
        .frames
        .iter()
        .map(|t| correlation(&shown, &t.chunks(3).map(luma).collect::<Vec<_>>()))
        .fold(f64::MIN, f64::max);
    eprintln!("webrtc: screenshot against the best-matching template: r = {best:.3}");
    assert!(
        best >= 0.9,
        "the screenshot does not show the avatar: r = {best:.3}"
    );
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        (ab, aa, bb) = (
            ab + (x - ma) * (y - mb),
            aa + (x - ma).powi(2),
            bb + (y - mb).powi(2),
        );
    }
    ab / (aa * bb).sqrt()
}
