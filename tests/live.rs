//! Live streams at real time: frames keep their grid and their pace through pauses in the audio
//! and while inference falls behind, and the latency the element reports is the one it has.
//!
//! Each test feeds the bundled clip through a live `appsrc` at real-time pace and takes the frames
//! with a synchronised `appsink`, straight after the element or behind a `queue`, so they take as
//! long as the audio they stream (about 9 and 10 s); they run one at a time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FRAME_NS, SAMPLE_RATE, init, read_wav_s16};
use gst::prelude::*;
use gsttalkinghead::avatar::{self, Avatar, JpegDecoder, Source};

/// Live tests share the machine's cores and its clock: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Samples per buffer: 20 ms, as a sound card or a TTS service delivers them.
const CHUNK: usize = 320;

enum Piece {
    /// The bundled clip from one second to another.
    Speech(f64, f64),
    /// Nothing at all for this many seconds, as between two TTS utterances.
    Pause(f64),
}

struct Received {
    pts: gst::ClockTime,
    /// When the sink got it.
    at: Instant,
    bgr: Vec<u8>,
}

struct Run {
    frames: Vec<Received>,
    /// The element's stats, polled every 50 ms, with when; the last after EOS.
    stats: Vec<(Instant, gst::Structure)>,
    started: Instant,
    /// Pipeline clock times of the first audio into the element and its first frame out.
    first_audio_in: gst::ClockTime,
    first_frame_out: gst::ClockTime,
    /// The most audio ever waiting in the source for the element to take it.
    max_upstream_level: gst::ClockTime,
}

impl Run {
    fn last_stats(&self) -> &gst::Structure {
        &self.stats.last().unwrap().1
    }

    /// The stats as they were `seconds` after the start.
    fn stats_at(&self, seconds: f64) -> &gst::Structure {
        let at = self.started + Duration::from_secs_f64(seconds);
        &self
            .stats
            .iter()
            .rev()
            .find(|(when, _)| *when <= at)
            .expect("stats polled from the start")
            .1
    }

    fn max_of(&self, field: &str) -> u64 {
        self.stats
            .iter()
            .map(|(_, stats)| stats.get::<u64>(field).unwrap())
            .max()
            .unwrap()
    }
}

fn count(stats: &gst::Structure, field: &str) -> u64 {
    stats.get::<u64>(field).unwrap()
}

/// Streams `pieces` live through the element with the built-in avatar, calling `meanwhile` with
/// the seconds since the start every 50 ms.
/// Downstream of the element: its sink straight after it, or behind a `queue`.
#[derive(Clone, Copy)]
enum Downstream {
    Sink,
    Queue,
}

fn run_live(pieces: &[Piece], downstream: Downstream, mut meanwhile: impl FnMut(f64)) -> Run {
    init();
    let clip = read_wav_s16(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo/speech.wav"),
    );
    let queue = match downstream {
        Downstream::Sink => "",
        Downstream::Queue => "queue !",
    };
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true do-timestamp=true format=time min-latency=0 \
           caps=audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved ! \
         talkinghead name=head ! {queue} video/x-raw,format=BGR ! appsink name=sink sync=true",
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let source = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let head = pipeline.by_name("head").unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();

    let frames = Arc::new(Mutex::new(Vec::new()));
    let store = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().unwrap();
                store.lock().unwrap().push(Received {
                    pts: buffer.pts().unwrap(),
                    at: Instant::now(),
                    bgr: buffer.map_readable().unwrap().to_vec(),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let first_in = first_buffer_time(&head.static_pad("sink").unwrap());
    let first_out = first_buffer_time(&head.static_pad("src").unwrap());

    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let feeder = {
        let source = source.clone();
        let pieces: Vec<(bool, usize, usize)> = pieces
            .iter()
            .map(|piece| match *piece {
                Piece::Speech(from, to) => (true, seconds(from), seconds(to)),
                Piece::Pause(length) => (false, 0, seconds(length)),
            })
            .collect();
        std::thread::spawn(move || {
            let mut due = Instant::now();
            for (speech, from, to) in pieces {
                if !speech {
                    due += Duration::from_secs_f64(to as f64 / SAMPLE_RATE as f64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    continue;
                }
                for chunk in clip[from..to].chunks(CHUNK) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                    if source.push_buffer(gst::Buffer::from_slice(bytes)).is_err() {
                        return;
                    }
                    due += Duration::from_secs_f64(chunk.len() as f64 / SAMPLE_RATE as f64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            let _ = source.end_of_stream();
        })
    };

    let bus = pipeline.bus().unwrap();
    let mut stats = Vec::new();
    let mut max_upstream_level = gst::ClockTime::ZERO;
    loop {
        meanwhile(started.elapsed().as_secs_f64());
        stats.push((Instant::now(), head.property::<gst::Structure>("stats")));
        max_upstream_level = max_upstream_level.max(source.current_level_time());
        if let Some(message) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(50),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(err) = message.view() {
                panic!("{} ({:?})", err.error(), err.debug());
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no EOS within 60 s"
        );
    }
    stats.push((Instant::now(), head.property::<gst::Structure>("stats")));
    feeder.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    let first_audio_in = first_in.lock().unwrap().expect("audio reached the element");
    let first_frame_out = first_out.lock().unwrap().expect("a frame left the element");
    Run {
        frames,
        stats,
        started,
        first_audio_in,
        first_frame_out,
        max_upstream_level,
    }
}

fn seconds(at: f64) -> usize {
    (at * SAMPLE_RATE as f64).round() as usize
}

/// The pipeline clock time when the first buffer goes through `pad`.
fn first_buffer_time(pad: &gst::Pad) -> Arc<Mutex<Option<gst::ClockTime>>> {
    let time = Arc::new(Mutex::new(None));
    let store = time.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        let now = pad
            .parent_element()
            .and_then(|element| element.clock())
            .map(|clock| clock.time());
        store.lock().unwrap().get_or_insert(now.unwrap());
        gst::PadProbeReturn::Remove
    });
    time
}

/// Frame `n` is the one `n` steps after the first, 40 ms apart: no gap, no repeat.
fn assert_grid(frames: &[Received]) {
    let first = frames[0].pts;
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts,
            first + gst::ClockTime::from_nseconds(n as u64 * FRAME_NS),
            "frame {n}"
        );
    }
}

/// The longest wait between two frames at the sink.
fn longest_wait(frames: &[Received]) -> Duration {
    frames
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .max()
        .unwrap()
}

#[test]
fn frames_keep_coming_through_a_pause_with_the_idle_avatar() {
    through_a_pause(Downstream::Sink);
}

#[test]
fn frames_keep_coming_through_a_pause_into_a_queue() {
    through_a_pause(Downstream::Queue);
}

fn through_a_pause(downstream: Downstream) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 3.2 s of speech, 3 s with no audio at all, 2.68 s of speech.
    let run = run_live(
        &[
            Piece::Speech(0.0, 3.2),
            Piece::Pause(3.0),
            Piece::Speech(4.12, 6.8),
        ],
        downstream,
        |_| (),
    );
    let frames = &run.frames;
    let stats = run.last_stats();
    let reported = gst::ClockTime::from_nseconds(count(stats, "latency"));
    let measured = run.first_frame_out - run.first_audio_in;
    println!(
        "{} frames, longest wait {:?}, latency reported {reported}, measured {measured}\n{stats}",
        frames.len(),
        longest_wait(frames)
    );
    assert_grid(frames);
    let expected = (8.88 * 25.0) as i64;
    assert!(
        (frames.len() as i64 - expected).abs() <= 5,
        "{} frames for 8.88 s",
        frames.len()
    );
    let wait = longest_wait(frames);
    assert!(wait < Duration::from_millis(120), "a {wait:?} stall");

    // Through the pause, the template's silent faces: what the demo generator draws for
    // silence, the template itself, mouth closed (up to the crop's resizing there and back).
    let avatar = Avatar::load(&Source::Builtin(&avatar::DEMO)).unwrap();
    let mut decoder = JpegDecoder::new().unwrap();
    let (width, height) = (avatar.width, avatar.height);
    let in_pause = (3.2 + 0.5) * 25.0..(6.2 - 0.5) * 25.0;
    let mut checked = 0;
    for (n, frame) in frames.iter().enumerate() {
        if !in_pause.contains(&(n as f64)) {
            continue;
        }
        let template = &avatar.frames[avatar::pingpong(n as u64, avatar.frames.len())];
        let mut expected = vec![0; frame.bgr.len()];
        decoder
            .decode_bgr(
                &template.jpeg,
                &mut expected,
                (width, height),
                3 * width as usize,
            )
            .unwrap();
        let crop = template.crop;
        let mean =
            common::face_box_difference(&frame.bgr, &expected, width, crop, &format!("frame {n}"));
        assert!(
            mean < 1.0,
            "frame {n} in the pause: {mean:.2} from its template"
        );
        checked += 1;
    }
    assert!(checked >= 45, "{checked} frames checked");

    assert!(
        count(stats, "silent-faces") + count(stats, "frames-silent") >= 50,
        "{stats}"
    );
    assert!(count(stats, "frames-inferred") >= 80, "{stats}");
    assert_eq!(count(stats, "frames-out"), frames.len() as u64, "{stats}");
    assert!(
        run.max_upstream_level < gst::ClockTime::from_mseconds(100),
        "audio waited {} upstream",
        run.max_upstream_level
    );

    // The latency the element reports is what its first frame took from its first audio: not
    // more, give or take a frame for the first batch's cost, and made of the audio look-ahead the
    // frame had to wait for plus at most `max-latency` (200 ms by default) to batch and render.
    assert!(
        measured <= reported + gst::ClockTime::from_nseconds(FRAME_NS),
        "first frame late: reported {reported}, measured {measured}"
    );
    assert!(
        measured + gst::ClockTime::from_mseconds(200) >= reported,
        "latency over-reported: reported {reported}, measured {measured}"
    );
}

#[test]
fn inference_that_falls_behind_holds_faces_and_comes_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Busy threads, eight per core, load the machine from 1 s to 5 s.
    let stop = Arc::new(AtomicBool::new(false));
    let mut hogs = Vec::new();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let run = run_live(&[Piece::Speech(0.0, 10.0)], Downstream::Queue, |at| {
        if at >= 1.0 && hogs.is_empty() && !stop.load(Ordering::Relaxed) {
            hogs = (0..8 * cores)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                        }
                    })
                })
                .collect();
        }
        if at >= 5.0 && !hogs.is_empty() {
            stop.store(true, Ordering::Relaxed);
            hogs.drain(..).for_each(|hog| hog.join().unwrap());
        }
    });
    let frames = &run.frames;
    assert_grid(frames);
    assert!(
        (frames.len() as i64 - 250).abs() <= 3,
        "{} frames",
        frames.len()
    );
    let wait = longest_wait(frames);
    println!("longest wait between frames: {wait:?}");
    println!(
        "stats at 1 s: {}\nat 5 s: {}\nat 6.5 s: {}\nend: {}",
        run.stats_at(1.0),
        run.stats_at(5.0),
        run.stats_at(6.5),
        run.last_stats()
    );
    let (loaded, recovered, end) = (run.stats_at(5.0), run.stats_at(6.5), run.last_stats());
    let skipped = |stats| count(stats, "frames-held") + count(stats, "frames-late");
    assert!(skipped(loaded) > 0, "every frame inferred under load");
    // Once the load is gone, every frame with speech is inferred again.
    assert_eq!(
        skipped(end),
        skipped(recovered),
        "still late after the load went"
    );
    assert!(
        count(end, "frames-inferred") >= count(recovered, "frames-inferred") + 30,
        "not inferring after the load went"
    );
    // Frames not inferred in time are held instead of piling up: the queue holds no more than a
    // batch and the frames that arrive while the slowest batch renders (the longest wait at the
    // sink).
    let stalled = wait.as_nanos() as u64 / FRAME_NS + 1;
    let queued = run.max_of("queued-frames");
    assert!(
        queued <= 8 + stalled,
        "{queued} frames queued, {stalled} arrived in the longest stall"
    );
    assert!(
        run.max_upstream_level < gst::ClockTime::from_mseconds(100),
        "audio waited {} upstream",
        run.max_upstream_level
    );
}

/// The generator held to at least this long a frame while it lives, as on a slower machine.
struct SlowGenerator;

impl SlowGenerator {
    fn new(per_frame: Duration) -> Self {
        gsttalkinghead::fault::slow_generator(per_frame);
        SlowGenerator
    }
}

impl Drop for SlowGenerator {
    fn drop(&mut self) {
        gsttalkinghead::fault::slow_generator(Duration::ZERO);
    }
}

#[test]
fn a_generator_at_half_real_time_still_moves_the_mouth() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 80 ms a frame: 12.5 frames a second, half of real time.
    let slow = SlowGenerator::new(Duration::from_millis(80));
    let run = run_live(&[Piece::Speech(0.0, 10.0)], Downstream::Queue, |_| ());
    drop(slow);
    let frames = &run.frames;
    assert_grid(frames);
    let stats = run.last_stats();
    println!("{} frames\n{stats}", frames.len());
    // Inference fell short, and every frame still showed a generated face: inferred, held from
    // the nearest one inferred, or a silent face.
    assert!(count(stats, "frames-held") >= 50, "{stats}");
    assert_eq!(count(stats, "frames-late"), 0, "{stats}");
    assert_eq!(count(stats, "frames-idle"), 0, "{stats}");

    // The mouth follows the voice (tools/measure_mouth.py on the frames, as PPM files).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("talkinghead-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let avatar = Avatar::load(&Source::Builtin(&avatar::DEMO)).unwrap();
    for (n, frame) in frames.iter().enumerate() {
        let mut ppm = format!("P6 {} {} 255\n", avatar.width, avatar.height).into_bytes();
        ppm.extend(
            frame
                .bgr
                .chunks_exact(3)
                .flat_map(|bgr| [bgr[2], bgr[1], bgr[0]]),
        );
        std::fs::write(dir.join(format!("frame_{n:05}.ppm")), ppm).unwrap();
    }
    let audio = root.join("models/demo/speech.wav");
    let result = common::scripts::measure_mouth(&dir, &["--audio", audio.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let r = result["pearson_r"].as_f64().unwrap();
    assert!(r >= 0.5, "mouth opening vs audio RMS: r = {r:.3}");
}
