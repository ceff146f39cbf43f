//! Soak run: `SOAK_MINUTES` (default 60) minutes of speech through `talkinghead` with the built-in
//! demo avatar and its models, as fast as it renders (no clock), with the process's resident
//! memory sampled at every minute of audio. Prints a table, writes it to `target/soak/rss.tsv`,
//! and fails if memory grows after the warm-up.
//!
//! ```text
//! SOAK_MINUTES=5 cargo run --release --example soak
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use gst::prelude::*;

#[path = "../tests/common/memory.rs"]
mod memory;
use memory::rss_kib;

const RATE: u64 = 16_000;
const FRAMES_PER_MINUTE: u64 = 25 * 60;
/// Minutes of audio before memory is expected to be flat (pools, caches and allocator arenas).
/// Measured: RSS rises for the first 3 minutes (63 → 234 → 248 → 258 MiB), then stays flat.
const WARM_UP_MINUTES: usize = 5;
/// Growth after the warm-up that still counts as flat: allocator noise, not a leak.
const ALLOWED_GROWTH_KIB: i64 = 8 * 1024;
/// Samples per buffer pushed: 100 ms.
const BUFFER_SAMPLES: usize = 1600;

/// The bundled clip's samples (16 kHz mono S16LE WAV).
fn speech() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo/speech.wav");
    let wav = std::fs::read(path).unwrap();
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .expect("a data chunk");
    let len = u32::from_le_bytes(wav[data + 4..data + 8].try_into().unwrap()) as usize;
    wav[data + 8..data + 8 + len].to_vec()
}

fn main() {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .map(|m| m.parse().expect("SOAK_MINUTES is a number of minutes"))
        .unwrap_or(60);
    gst::init().unwrap();
    gsttalkinghead::plugin_register_static().unwrap();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time is-live=false block=true max-bytes=64000 \
           caps=audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved ! \
         talkinghead name=head ! fakesink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();

    // A sample of memory at every minute of video.
    let (minute_done, minutes_seen) = mpsc::channel::<(u64, i64)>();
    let frames = AtomicU64::new(0);
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let frames = frames.fetch_add(1, Ordering::Relaxed) + 1;
            if frames % FRAMES_PER_MINUTE == 0 {
                let _ = minute_done.send((frames / FRAMES_PER_MINUTE, rss_kib()));
            }
            gst::PadProbeReturn::Ok
        });

    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let start_rss = rss_kib();
    let feeder = std::thread::spawn(move || {
        let clip = speech();
        let total = minutes * 60 * RATE;
        let mut sent = 0u64;
        let mut at = 0usize;
        while sent < total {
            let samples = (BUFFER_SAMPLES as u64).min(total - sent) as usize;
            let mut bytes = Vec::with_capacity(2 * samples);
            while bytes.len() < 2 * samples {
                let take = (2 * samples - bytes.len()).min(clip.len() - at);
                bytes.extend_from_slice(&clip[at..at + take]);
                at = (at + take) % clip.len();
            }
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            {
                let buffer = buffer.get_mut().unwrap();
                buffer.set_pts(gst::ClockTime::from_nseconds(sent * 1_000_000_000 / RATE));
                buffer.set_duration(gst::ClockTime::from_nseconds(
                    samples as u64 * 1_000_000_000 / RATE,
                ));
            }
            if src.push_buffer(buffer).is_err() {
                return;
            }
            sent += samples as u64;
        }
        let _ = src.end_of_stream();
    });

    println!("minute of audio\tRSS (MiB)\twall time (s)");
    let mut rows = vec![(0u64, start_rss, 0.0f64)];
    println!("0\t{:.1}\t0.0", start_rss as f64 / 1024.0);
    for (minute, rss) in minutes_seen.iter().take(minutes as usize) {
        let wall = started.elapsed().as_secs_f64();
        println!("{minute}\t{:.1}\t{wall:.1}", rss as f64 / 1024.0);
        rows.push((minute, rss, wall));
    }
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS after the last minute");
    if let gst::MessageView::Error(err) = message.view() {
        panic!("pipeline error: {}", err.error());
    }
    feeder.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let wall = started.elapsed().as_secs_f64();

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/soak");
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::File::create(format!("{dir}/rss.tsv")).unwrap();
    writeln!(file, "minute\trss_kib\twall_s").unwrap();
    for (minute, rss, wall) in &rows {
        writeln!(file, "{minute}\t{rss}\t{wall:.1}").unwrap();
    }

    let warm = WARM_UP_MINUTES.min(rows.len() - 1);
    let (warm_rss, last_rss) = (rows[warm].1, rows.last().unwrap().1);
    let peak_after = rows[warm..].iter().map(|row| row.1).max().unwrap();
    let growth = last_rss - warm_rss;
    println!(
        "{minutes} min of audio in {wall:.0} s ({:.1}x real time); RSS {:.1} MiB at minute {warm}, \
         {:.1} MiB at the end (peak {:.1}): growth after warm-up {:+.1} MiB",
        minutes as f64 * 60.0 / wall,
        warm_rss as f64 / 1024.0,
        last_rss as f64 / 1024.0,
        peak_after as f64 / 1024.0,
        growth as f64 / 1024.0,
    );
    if growth > ALLOWED_GROWTH_KIB {
        println!(
            "verdict: GROWING (more than {} MiB)",
            ALLOWED_GROWTH_KIB / 1024
        );
        std::process::exit(1);
    }
    println!("verdict: flat (within {} MiB)", ALLOWED_GROWTH_KIB / 1024);
}
