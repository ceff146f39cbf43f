//! Faults while streaming: a caps change, a flushing seek and EOS in the middle of a batch, and
//! downstream refusing frames; then two elements with their own avatars in one pipeline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    FRAME_NS, SAMPLE_RATE, harness_for, init, make_avatar, pull_all, run_to_end, with_appsink,
};
use gst::prelude::*;
use gst_check::Harness;
use gsttalkinghead::avatar::{self, Avatar, JpegDecoder, Source};

const F32_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

/// A voice-like signal: a 220 Hz tone switched on and off every quarter second, as S16 values.
fn signal(from: u64, count: u64) -> Vec<i16> {
    (from..from + count)
        .map(|n| {
            let on = (n / 4000) % 2 == 0;
            let t = n as f32 / SAMPLE_RATE as f32;
            if on {
                (9000.0 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()) as i16
            } else {
                0
            }
        })
        .collect()
}

fn timed(bytes: Vec<u8>, offset: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    buffer.make_mut().set_pts(gst::ClockTime::from_nseconds(
        offset * 1_000_000_000 / SAMPLE_RATE,
    ));
    buffer
}

fn s16_buffer(offset: u64, count: u64) -> gst::Buffer {
    let bytes = signal(offset, count)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    timed(bytes, offset)
}

/// The same samples as [`s16_buffer`], as F32 (exactly `s / 32768`, as the element converts).
fn f32_buffer(offset: u64, count: u64) -> gst::Buffer {
    let bytes = signal(offset, count)
        .iter()
        .flat_map(|&s| (f32::from(s) / 32768.0).to_le_bytes())
        .collect();
    timed(bytes, offset)
}

/// The element with the built-in avatar and its demo models, not live (so no frame is ever late
/// and replaced by an idle one: the output depends on the audio alone).
fn harness(batch_size: u32) -> Harness {
    init();
    let element = gst::ElementFactory::make("talkinghead")
        .property("batch-size", batch_size)
        .build()
        .unwrap();
    harness_for(&element)
}

fn assert_grid(buffers: &[gst::Buffer], first_pts: u64) {
    for (n, buffer) in buffers.iter().enumerate() {
        let pts = first_pts + n as u64 * FRAME_NS;
        assert_eq!(buffer.pts().unwrap().nseconds(), pts, "frame {n}");
    }
}

fn data(buffer: &gst::Buffer) -> Vec<u8> {
    buffer.map_readable().unwrap().to_vec()
}

#[test]
fn a_caps_change_mid_stream_keeps_the_grid_and_the_picture() {
    // 1.2 s as S16, and the same 1.2 s with its second half sent as F32 after new caps.
    const HALF: u64 = 9600;
    let mut reference = harness(8);
    reference.push(s16_buffer(0, 2 * HALF)).unwrap();
    assert!(reference.push_event(gst::event::Eos::new()));
    let expected = pull_all(&mut reference);

    let mut h = harness(8);
    for half in 0..2 {
        for part in 0..4 {
            let (start, count) = (half * HALF + part * 2400, 2400);
            if half == 0 {
                h.push(s16_buffer(start, count)).unwrap();
            } else {
                h.push(f32_buffer(start, count)).unwrap();
            }
        }
        if half == 0 {
            h.set_src_caps_str(F32_CAPS);
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let buffers = pull_all(&mut h);
    assert_eq!(buffers.len(), 30);
    assert_grid(&buffers, 0);
    for (n, (a, b)) in buffers.iter().zip(&expected).enumerate() {
        assert!(
            data(a) == data(b),
            "frame {n} differs after the caps change"
        );
    }
}

#[test]
fn eos_in_the_middle_of_a_batch_lets_every_frame_out() {
    // 7 and 13 frames with batches of 8: with models, none is complete before EOS (look-ahead)
    // or the last batch is partial.
    for frames in [7u64, 13] {
        let mut h = harness(8);
        h.push(s16_buffer(0, frames * 640)).unwrap();
        assert!(h.push_event(gst::event::Eos::new()));
        let buffers = pull_all(&mut h);
        assert_eq!(buffers.len() as u64, frames);
        assert_grid(&buffers, 0);
        let stats = h.element().unwrap().property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("frames-inferred").unwrap(), frames);
    }
}

/// The clip through the element, as BGR frames with their timestamps; `seek_to` seeks before the
/// first frame (in PAUSED), `seek_mid` after `pull_first` frames were taken while more are queued.
fn clip_frames(seek_to: gst::ClockTime, seek_mid: bool, pull_first: usize) -> Vec<(u64, Vec<u8>)> {
    let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo/speech.wav");
    let (pipeline, sink) = with_appsink(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         talkinghead batch-size=8 ! video/x-raw,format=BGR ! \
         appsink name=sink sync=false max-buffers=1",
        clip.display()
    ));
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE;
    if !seek_mid {
        pipeline.seek_simple(flags, seek_to).unwrap();
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let timeout = gst::ClockTime::from_seconds(30);
    let mut frames = Vec::new();
    if seek_mid {
        for _ in 0..pull_first {
            sink.try_pull_sample(timeout)
                .expect("a frame before the seek");
        }
        // The element holds two batches and a frame in render while appsink holds one.
        pipeline.seek_simple(flags, seek_to).unwrap();
    }
    while let Some(sample) = sink.try_pull_sample(timeout) {
        let segment = sample
            .segment()
            .unwrap()
            .downcast_ref::<gst::ClockTime>()
            .unwrap();
        assert_eq!(segment.start(), Some(seek_to), "a frame of the old segment");
        let buffer = sample.buffer().unwrap();
        frames.push((buffer.pts().unwrap().nseconds(), data(&buffer.to_owned())));
    }
    assert!(sink.is_eos());
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

#[test]
fn a_flushing_seek_mid_batch_leaves_nothing_stale() {
    let seek_to = gst::ClockTime::from_seconds(8);
    let fresh = clip_frames(seek_to, false, 0);
    let seeked = clip_frames(seek_to, true, 29);
    assert_eq!(fresh.len(), 50);
    assert_eq!(seeked.len(), fresh.len());
    for (n, ((pts, a), (expected_pts, b))) in seeked.iter().zip(&fresh).enumerate() {
        assert_eq!(*pts, seek_to.nseconds() + n as u64 * FRAME_NS, "frame {n}");
        assert_eq!(pts, expected_pts);
        assert!(
            a == b,
            "frame {n} after the seek is not what a fresh start renders"
        );
    }
}

/// Runs the element into a harness whose downstream returns `flow` from the 5th frame on; returns
/// what the chain function returned and the element's error message, if it posted one.
fn downstream_returns(flow: gst::FlowError) -> (gst::FlowError, Option<String>) {
    let mut h = harness(4);
    let element = h.element().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let pushed = Arc::new(Mutex::new(0));
    let count = pushed.clone();
    element
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut count = count.lock().unwrap();
            *count += 1;
            if *count <= 4 {
                return gst::PadProbeReturn::Ok;
            }
            info.flow_res = Err(flow);
            gst::PadProbeReturn::Handled
        });
    let started = Instant::now();
    let mut offset = 0;
    let returned = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the chain never returned {flow:?}"
        );
        match h.push(s16_buffer(offset, 640)) {
            Ok(_) => offset += 640,
            Err(err) => break err,
        }
        while h.try_pull().is_some() {}
    };
    let error = bus
        .iter_timed_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Error])
        .find_map(|message| match message.view() {
            gst::MessageView::Error(err) => Some(format!("{} ({:?})", err.error(), err.debug())),
            _ => None,
        });
    // The element stops cleanly with its task paused.
    element.set_state(gst::State::Null).unwrap();
    (returned, error)
}

#[test]
fn downstream_flow_errors_go_upstream_and_stop_the_task() {
    let (returned, error) = downstream_returns(gst::FlowError::Flushing);
    assert_eq!(returned, gst::FlowError::Flushing);
    assert_eq!(error, None);

    let (returned, error) = downstream_returns(gst::FlowError::NotLinked);
    assert_eq!(returned, gst::FlowError::NotLinked);
    let error = error.expect("an error message for not-linked");
    assert!(
        error.contains("Internal data stream error") && error.contains("NotLinked"),
        "{error}"
    );

    let (returned, error) = downstream_returns(gst::FlowError::Error);
    assert_eq!(returned, gst::FlowError::Error);
    let error = error.expect("an error message for error");
    assert!(
        error.contains("Internal data stream error") && error.contains("Error"),
        "{error}"
    );
}

#[test]
fn a_pipeline_whose_sink_fails_shuts_down() {
    let (pipeline, sink) = with_appsink(
        "audiotestsrc is-live=true samplesperbuffer=640 ! audio/x-raw,rate=16000,channels=1 ! \
         talkinghead ! appsink name=sink",
    );
    let frames = Arc::new(Mutex::new(0));
    let count = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut count = count.lock().unwrap();
                *count += 1;
                if *count > 10 {
                    Err(gst::FlowError::Error)
                } else {
                    Ok(gst::FlowSuccess::Ok)
                }
            })
            .build(),
    );
    let started = Instant::now();
    let err = run_to_end(&pipeline).unwrap_err();
    assert!(err.contains("Internal data stream error"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(*frames.lock().unwrap(), 11);
}

type Collected = Arc<Mutex<Vec<Vec<u8>>>>;

fn collect_into(sink: &gst_app::AppSink) -> Collected {
    let frames = Collected::default();
    let store = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                store
                    .lock()
                    .unwrap()
                    .push(data(&sample.buffer().unwrap().to_owned()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    frames
}

fn decoded(avatar: &Avatar, template: usize) -> Vec<u8> {
    let stride = 3 * avatar.width as usize;
    let mut bgr = vec![0; stride * avatar.height as usize];
    JpegDecoder::new()
        .unwrap()
        .decode_bgr(
            &avatar.frames[template].jpeg,
            &mut bgr,
            (avatar.width, avatar.height),
            stride,
        )
        .unwrap();
    bgr
}

#[test]
fn two_elements_with_different_avatars_in_one_pipeline() {
    init();
    let root = make_avatar("second-head", 4, (96, 64), 0, 0);
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc wave=silence num-buffers=30 samplesperbuffer=640 ! \
         audio/x-raw,rate=16000,channels=1 ! tee name=t \
         t. ! queue ! talkinghead ! video/x-raw,format=BGR ! appsink name=demo sync=false \
         t. ! queue ! talkinghead avatar={} ! video/x-raw,format=BGR ! \
             appsink name=other sync=false",
        root.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = |name| {
        pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
    };
    let (demo, other) = (collect_into(&sink("demo")), collect_into(&sink("other")));
    run_to_end(&pipeline).unwrap();

    let demo_avatar = Avatar::load(&Source::Builtin(&avatar::DEMO)).unwrap();
    let other_avatar = Avatar::load(&Source::Folder(root)).unwrap();
    let (demo, other) = (demo.lock().unwrap(), other.lock().unwrap());
    assert_eq!((demo.len(), other.len()), (30, 30));
    for (n, frame) in other.iter().enumerate() {
        let template = avatar::pingpong(n as u64, other_avatar.frames.len());
        assert!(
            *frame == decoded(&other_avatar, template),
            "other avatar, frame {n}"
        );
    }
    // The demo avatar's frames: its size, and its template's rows above the painted mouth.
    let row = 3 * demo_avatar.width as usize;
    for (n, frame) in demo.iter().enumerate() {
        assert_eq!(
            frame.len(),
            row * demo_avatar.height as usize,
            "demo frame {n}"
        );
        let template = avatar::pingpong(n as u64, demo_avatar.frames.len());
        let above = demo_avatar.frames[template].crop.y0 as usize * row;
        assert!(
            frame[..above] == decoded(&demo_avatar, template)[..above],
            "demo avatar, frame {n}"
        );
    }
}
