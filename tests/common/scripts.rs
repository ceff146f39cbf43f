//! Running the launch scripts in `pipelines/` and the tools they are measured with: the built
//! plugin, ffprobe, `tools/measure_mouth.py`, and a local RTMP server.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::plugin_dir;

/// One video frame at 25 fps, in seconds: the sync tolerance.
pub const FRAME_S: f64 = 0.040;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder under the system temp dir, removed with its contents when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("talkinghead-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pipelines/NAME` or `tools/NAME`, set up to find this build's plugin through its own registry
/// file in `scratch`.
pub fn script(path: &str, scratch: &Scratch) -> Command {
    let mut command = Command::new(root().join(path));
    command
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", scratch.join("registry.bin"));
    command
}

pub fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{python:?} is missing: `make test` sets it up"
    );
    python
}

/// Runs a command to its end and fails the test, with its output, unless it succeeds.
pub fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A speech file of the bundled clip played `loops` times back to back (16 kHz mono WAV).
pub fn looped_clip(loops: u32, path: &Path) {
    run(Command::new(python())
        .arg(root().join("tools/pace_pcm.py"))
        .arg(root().join("models/demo/speech.wav"))
        .args(["--loops", &loops.to_string(), "--raw-out"])
        .arg(path));
}

/// One stream of a media file, from its packets.
#[derive(Debug)]
pub struct Stream {
    pub codec: String,
    /// Packet timestamps in seconds, in file order.
    pub pts: Vec<f64>,
    /// The end of its last packet (timestamp + duration), in seconds.
    pub end: f64,
}

/// ffprobe's `entries` of `path`, one line per item, fields separated by commas.
pub fn ffprobe(path: &Path, entries: &str) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {path:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The streams of `path`, read with ffprobe.
pub fn probe(path: &Path) -> Vec<Stream> {
    let mut streams: Vec<Stream> = ffprobe(path, "stream=codec_name")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|codec| Stream {
            codec: codec.to_string(),
            pts: Vec::new(),
            end: 0.0,
        })
        .collect();
    for line in ffprobe(path, "packet=stream_index,pts_time,duration_time").lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(index), Some(Ok(pts))) = (
            fields.first().and_then(|i| i.parse::<usize>().ok()),
            fields.get(1).map(|p| p.parse::<f64>()),
        ) else {
            continue;
        };
        let duration = fields
            .get(2)
            .and_then(|d| d.parse::<f64>().ok())
            .unwrap_or(0.0);
        let stream = &mut streams[index];
        stream.pts.push(pts);
        stream.end = stream.end.max(pts + duration);
    }
    streams
}

pub fn stream<'a>(streams: &'a [Stream], codec: &str) -> &'a Stream {
    streams
        .iter()
        .find(|s| s.codec == codec)
        .unwrap_or_else(|| panic!("no {codec} stream in {streams:?}"))
}

/// Video frames whose timestamp is not `n × 40 ms` for the frame's place `n` in the stream
/// (a muxer re-stamps frames that reach it too late), with their timestamps.
pub fn frames_off_the_grid(video: &Stream) -> Vec<(usize, f64)> {
    let first = video.pts.first().copied().unwrap_or(0.0);
    video
        .pts
        .iter()
        .enumerate()
        .filter(|(n, pts)| (*pts - first - *n as f64 * FRAME_S).abs() > 0.0015)
        .map(|(n, pts)| (n, *pts))
        .collect()
}

/// `tools/measure_mouth.py` on `frames` (a video file or a folder of images) of the built-in
/// avatar, with `args` (what audio to compare with, options): its JSON result.
pub fn measure_mouth(frames: &Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(python())
        .arg(root().join("tools/measure_mouth.py"))
        .arg(frames)
        .args(["--avatar", root().join("models/demo").to_str().unwrap()])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "measure_mouth.py {frames:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("{}: {result}", frames.display());
    result
}

/// `tools/measure_mouth.py` on a recording of the built-in avatar, against its own audio track.
pub fn measure_recording(path: &Path) -> serde_json::Value {
    measure_mouth(path, &["--audio-track"])
}

/// Every audio onset after a pause has the mouth opening within ±1 frame of it.
pub fn assert_onsets_in_sync(result: &serde_json::Value, min_onsets: usize) {
    let onsets = result["onsets"].as_array().unwrap();
    assert!(
        onsets.len() >= min_onsets,
        "{} audio onsets, expected at least {min_onsets}: {onsets:?}",
        onsets.len()
    );
    for onset in onsets {
        let offset = onset["offset_frames"].as_i64();
        assert!(
            offset.is_some_and(|o| o.abs() <= 1),
            "mouth onset not within ±1 frame of the audio onset: {onset}"
        );
    }
}

/// A local RTMP server (`tools/rtmp_server.sh`: nginx with its RTMP module) on 127.0.0.1 and a
/// free port, recording every stream under its folder; stopped when dropped, also when a test
/// fails.
pub struct RtmpServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RtmpServer {
    pub fn start(dir: &Path) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(root().join("tools/rtmp_server.sh"))
            .arg(dir)
            .arg(port.to_string())
            .spawn()
            .expect("starting tools/rtmp_server.sh");
        let mut server = RtmpServer {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the RTMP server exited ({status}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the RTMP server does not listen on port {port} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }

    pub fn recording(&self, stream: &str) -> PathBuf {
        self.dir.join("rec").join(format!("{stream}.flv"))
    }

    /// Stops the server with SIGTERM (SIGKILL if it has not exited 5 s later).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
