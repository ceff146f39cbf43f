//! The frame grid seen from the element's pads: counts, timestamps, EOS and flushing.

mod common;

use common::{
    AUDIO_CAPS, FRAME_NS, SAMPLE_RATE, audio_buffer, harness_for, init, make_avatar, pull_all,
};
use gst::prelude::*;
use gst_check::Harness;

/// The element with the built-in avatar and its demo models.
fn harness() -> Harness {
    init();
    let mut h = Harness::new("talkinghead");
    h.set_live(false);
    h.set_src_caps_str(AUDIO_CAPS);
    h
}

/// The element with an avatar that has no models: frames need no audio look-ahead.
fn harness_without_models(name: &str) -> Harness {
    init();
    let avatar = make_avatar(name, 3, (64, 64), 0, 0);
    let element = gst::ElementFactory::make("talkinghead")
        .property("avatar", avatar.to_str().unwrap())
        .build()
        .unwrap();
    harness_for(&element)
}

fn push_audio(h: &mut Harness, start: u64, total: u64, per_buffer: u64) {
    let mut offset = 0;
    while offset < total {
        let samples = per_buffer.min(total - offset);
        h.push(audio_buffer(start + offset, samples)).unwrap();
        offset += samples;
    }
}

fn assert_frame_grid(buffers: &[gst::Buffer], first_pts: u64) {
    for (n, buffer) in buffers.iter().enumerate() {
        let n = n as u64;
        assert_eq!(
            buffer.pts().unwrap().nseconds(),
            first_pts + n * FRAME_NS,
            "frame {n}"
        );
        assert_eq!(buffer.duration().unwrap().nseconds(), FRAME_NS, "frame {n}");
        assert_eq!(buffer.offset(), n);
    }
}

#[test]
fn ten_seconds_make_250_frames_whatever_the_buffer_size() {
    for per_buffer in [160, 441, 1024, 16_000] {
        let mut h = harness();
        push_audio(&mut h, 0, 10 * SAMPLE_RATE, per_buffer);
        assert!(h.push_event(gst::event::Eos::new()));
        let buffers = pull_all(&mut h);
        assert_eq!(buffers.len(), 250, "buffers of {per_buffer} samples");
        assert_frame_grid(&buffers, 0);
        assert!(buffers[0].flags().contains(gst::BufferFlags::DISCONT));
    }
}

#[test]
fn a_partial_last_frame_still_counts() {
    let mut h = harness();
    push_audio(&mut h, 0, 641, 641);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(pull_all(&mut h).len(), 2);
}

#[test]
fn frames_follow_the_first_audio_timestamp() {
    let mut h = harness();
    let start = 3 * SAMPLE_RATE + 17;
    push_audio(&mut h, start, 2 * SAMPLE_RATE, 1000);
    assert!(h.push_event(gst::event::Eos::new()));
    let buffers = pull_all(&mut h);
    assert_eq!(buffers.len(), 50);
    assert_frame_grid(&buffers, start * 1_000_000_000 / SAMPLE_RATE);
}

#[test]
fn no_audio_makes_no_frames_and_a_clean_eos() {
    let mut h = harness();
    assert!(h.push_event(gst::event::Eos::new()));
    assert!(pull_all(&mut h).is_empty());
    // The harness flags EOS just before queueing the event, so wait for the event itself.
    while h.pull_event().unwrap().type_() != gst::EventType::Eos {}
}

#[test]
fn a_gap_is_filled_with_frames() {
    let mut h = harness();
    push_audio(&mut h, 0, SAMPLE_RATE, 1600);
    assert!(
        h.push_event(
            gst::event::Gap::builder(gst::ClockTime::SECOND)
                .duration(gst::ClockTime::SECOND)
                .build()
        )
    );
    push_audio(&mut h, 2 * SAMPLE_RATE, SAMPLE_RATE, 1600);
    assert!(h.push_event(gst::event::Eos::new()));
    let buffers = pull_all(&mut h);
    assert_eq!(buffers.len(), 75);
    assert_frame_grid(&buffers, 0);
}

#[test]
fn a_flush_drops_queued_frames_and_restarts_the_grid() {
    let mut h = harness_without_models("flush");
    // Every push downstream now waits for a pull, so frames pile up in the element.
    h.set_blocking_push_mode();
    push_audio(&mut h, 0, 8 * 640, 8 * 640);

    let sinkpad = h.element().unwrap().static_pad("sink").unwrap();
    let flush = std::thread::spawn(move || sinkpad.send_event(gst::event::FlushStart::new()));
    let mut before_flush = 0;
    while !flush.is_finished() {
        if h.try_pull().is_some() {
            before_flush += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(flush.join().unwrap());
    assert!(
        before_flush < 8,
        "all {before_flush} queued frames went out despite the flush"
    );

    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(10));
    segment.set_time(gst::ClockTime::from_seconds(10));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push_audio(&mut h, 10 * SAMPLE_RATE, 5 * 640, 640);
    assert!(h.push_event(gst::event::Eos::new()));

    let mut after = Vec::new();
    loop {
        // In blocking mode each push waits for its pull, so pull one by one up to EOS.
        match h.try_pull() {
            Some(buffer) => after.push(buffer),
            None if h.events_in_queue() > 0 && pull_until_eos_seen(&mut h) => break,
            None => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    assert_eq!(after.len(), 5, "frames after the flush: {after:?}");
    assert_frame_grid(&after, 10_000_000_000);
    assert!(after[0].flags().contains(gst::BufferFlags::DISCONT));
}

fn pull_until_eos_seen(h: &mut Harness) -> bool {
    let mut eos = false;
    while let Some(event) = h.try_pull_event() {
        eos |= event.type_() == gst::EventType::Eos;
    }
    eos
}

#[test]
fn upstream_latency_passes_through_when_not_live() {
    let mut h = harness();
    h.set_live(false);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(30));
    let mut query = gst::query::Latency::new();
    assert!(
        h.element()
            .unwrap()
            .static_pad("src")
            .unwrap()
            .query(&mut query)
    );
    let (live, min, _) = query.result();
    assert!(!live);
    assert_eq!(min, gst::ClockTime::from_mseconds(30));
}

#[test]
fn live_latency_adds_max_latency() {
    let mut h = harness_without_models("latency");
    h.set_live(true);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(30));
    // 30 ms upstream + the default max-latency of 200 ms.
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(230)));
    h.element()
        .unwrap()
        .set_property("max-latency", gst::ClockTime::from_mseconds(80).nseconds());
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(110)));
}

#[test]
fn live_latency_with_models_adds_the_feature_look_ahead() {
    let mut h = harness();
    h.set_live(true);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(30));
    // 30 ms upstream + 7240 samples (452.5 ms) of look-ahead + 200 ms max-latency.
    assert_eq!(
        h.query_latency(),
        Some(gst::ClockTime::from_useconds(682_500))
    );
}

#[test]
fn empty_huge_and_untimed_buffers_keep_the_grid() {
    let mut h = harness_without_models("buffers");
    h.push(audio_buffer(0, 0)).unwrap();
    // One minute in one buffer, then a buffer without timestamps.
    h.push(audio_buffer(0, 60 * SAMPLE_RATE)).unwrap();
    let mut untimed = audio_buffer(0, 640);
    untimed.make_mut().set_pts(gst::ClockTime::NONE);
    h.push(untimed).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let buffers = pull_all(&mut h);
    assert_eq!(buffers.len(), 60 * 25 + 1);
    assert_frame_grid(&buffers, 0);
}

/// F32 audio with the given samples, at sample `offset`.
fn f32_buffer(offset: u64, samples: &[f32]) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    buffer.make_mut().set_pts(gst::ClockTime::from_nseconds(
        offset * 1_000_000_000 / SAMPLE_RATE,
    ));
    buffer
}

#[test]
fn non_finite_samples_are_treated_as_silence_and_reported_once() {
    let speech: Vec<f32> = (0..2 * SAMPLE_RATE as usize)
        .map(|n| 0.3 * (n as f32 * 0.05).sin() * ((n / 4000) % 2) as f32)
        .collect();
    let mut broken = speech.clone();
    for (n, sample) in broken.iter_mut().enumerate().skip(9000).step_by(97) {
        *sample = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][n % 3];
    }
    let non_finite = broken.iter().filter(|sample| !sample.is_finite()).count() as u64;
    let mut zeroed = speech;
    for sample in zeroed.iter_mut().skip(9000).step_by(97) {
        *sample = 0.0;
    }
    // Four buffers of 0.5 s, each with non-finite samples but the first.
    let render = |samples: &[f32]| {
        let mut h = harness();
        let bus = gst::Bus::new();
        h.element().unwrap().set_bus(Some(&bus));
        h.set_src_caps_str("audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
        let chunk = SAMPLE_RATE as usize / 2;
        for (n, part) in samples.chunks(chunk).enumerate() {
            h.push(f32_buffer((n * chunk) as u64, part)).unwrap();
        }
        assert!(h.push_event(gst::event::Eos::new()));
        let frames = pull_all(&mut h)
            .iter()
            .map(|buffer| buffer.map_readable().unwrap().to_vec())
            .collect::<Vec<_>>();
        let warnings: Vec<String> = bus
            .iter_filtered(&[gst::MessageType::Warning])
            .filter_map(|message| match message.view() {
                gst::MessageView::Warning(warning) => Some(warning.error().to_string()),
                _ => None,
            })
            .collect();
        let counted = stats(&h).get::<u64>("samples-non-finite").unwrap();
        (frames, warnings, counted)
    };
    let (from_broken, warnings, counted) = render(&broken);
    let (from_zeroed, no_warnings, none) = render(&zeroed);
    assert_eq!(from_broken.len(), 50);
    assert!(
        from_broken == from_zeroed,
        "non-finite samples changed the frames"
    );
    assert_eq!(counted, non_finite);
    assert_eq!((no_warnings.len(), none), (0, 0));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Audio buffer at 0:00:00.500000000 has")
            && warnings[0].contains("NaN or infinite samples: replaced by silence"),
        "{}",
        warnings[0]
    );
}

fn stats(h: &Harness) -> gst::Structure {
    h.element().unwrap().property::<gst::Structure>("stats")
}

#[test]
fn stats_count_inferred_silent_and_idle_frames() {
    // Silent audio: with models at the default threshold, the frames whose window reads padding
    // (the first 8, the reference's last 7 and the element's extra frame) are inferred, and the
    // others show their template's silent face, made the first time the template comes (the 84
    // frames from frame 8 show templates 9 to 59, some twice where the ping-pong turns within
    // two batches) and kept after; when the threshold is off every frame is inferred; without
    // models every frame is idle.
    for (mut h, threshold, inferred, silent) in [
        (harness(), None, 16, 84),
        (harness(), Some(-200.0), 100, 0),
        (harness_without_models("stats"), None, 0, 0),
    ] {
        if let Some(threshold) = threshold {
            h.element()
                .unwrap()
                .set_property("silence-threshold", threshold);
        }
        push_audio(&mut h, 0, 4 * SAMPLE_RATE, 1600);
        assert!(h.push_event(gst::event::Eos::new()));
        assert_eq!(pull_all(&mut h).len(), 100);
        let stats = stats(&h);
        assert_eq!(stats.get::<u64>("frames-out").unwrap(), 100, "{stats}");
        let count = |field| stats.get::<u64>(field).unwrap();
        let made = count("silent-faces");
        assert_eq!(count("frames-inferred"), inferred + made, "{stats}");
        assert_eq!(count("frames-silent"), silent - made, "{stats}");
        if silent > 0 {
            assert!((51..=61).contains(&made), "{stats}");
        }
        assert_eq!(count("frames-idle"), 100 - inferred - silent, "{stats}");
        assert_eq!(stats.get::<u64>("frames-late").unwrap(), 0, "{stats}");
        assert_eq!(stats.get::<u32>("batch-size").unwrap(), 8);
        assert!(stats.get::<f64>("render-fps").unwrap() > 0.0, "{stats}");
        assert!(stats.get::<f64>("image-ms").unwrap() > 0.0, "{stats}");
        let generator_ms = stats.get::<f64>("generator-ms").unwrap();
        assert_eq!(generator_ms > 0.0, inferred > 0, "{stats}");
    }
}
