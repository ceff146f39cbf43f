//! The audio chain: arbitrary bytes as S16LE or F32LE samples (NaN and ±∞ included), cut into
//! arbitrary buffers, through the conversion, the mel front-end and the feature stream, exactly
//! as the element drives them. Nothing panics; every frame window is finite; and the windows are
//! identical, bit for bit, to those of the same audio pushed as one buffer.
//!
//! Input: `[flags, repeat, seed0, seed1, samples...]`. Bit 0 of `flags` picks F32LE, the rest the
//! encoder batch; the sample bytes are played `repeat % 32 + 1` times, so short inputs still reach
//! the feature look-ahead; the seed draws the buffer sizes (0 to 4000 samples).

#![no_main]

use gsttalkinghead::audio::features::{
    EMBEDDING_LEN, ENCODER_INPUT_LEN, FRAME_WINDOW_LEN, frame_window_ready,
    samples_needed_for_frame,
};
use gsttalkinghead::audio::samples;
use gsttalkinghead::audio::stream::FeatureStream;
use libfuzzer_sys::fuzz_target;

/// Samples in one 40 ms frame at 16 kHz.
const FRAME_SAMPLES: u64 = 640;

/// A fixed linear map standing in for the audio encoder's weights: every output depends on its
/// own window, so a window in the wrong place shows in the frame windows.
fn encode(windows: &[f32], outputs: &mut [f32]) -> Result<(), ()> {
    for (window, output) in windows
        .chunks_exact(ENCODER_INPUT_LEN)
        .zip(outputs.chunks_exact_mut(EMBEDDING_LEN))
    {
        for (j, value) in output.iter_mut().enumerate() {
            *value = window[j] - 0.5 * window[ENCODER_INPUT_LEN - 1 - j];
        }
    }
    Ok(())
}

fn convert(bytes: &[u8], f32le: bool) -> Vec<f32> {
    let mut out = Vec::new();
    if f32le {
        samples::extend_from_f32le(&mut out, bytes);
    } else {
        samples::extend_from_s16le(&mut out, bytes);
    }
    out
}

fn window(features: &FeatureStream, frame: usize) -> Vec<f32> {
    let mut out = vec![0.0; FRAME_WINDOW_LEN];
    features.write_frame_window(frame, &mut out);
    assert!(out.iter().all(|v| v.is_finite()), "frame {frame}");
    out
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, repeat, seed0, seed1], raw)) = data.split_first_chunk::<4>() else {
        return;
    };
    let f32le = flags & 1 == 1;
    let batch = 1 + usize::from(flags >> 1) % 16;
    let sample_size = if f32le { 4 } else { 2 };
    let raw = &raw[..raw.len() / sample_size * sample_size];
    let bytes: Vec<u8> = raw.repeat(usize::from(repeat % 32) + 1);
    let total = (bytes.len() / sample_size) as u64;
    let frames = total.div_ceil(FRAME_SAMPLES) as usize;

    // All at once.
    let mut whole = FeatureStream::new(batch);
    whole.push(&convert(&bytes, f32le));
    whole.finish();
    whole.encode(encode).unwrap();
    let expected: Vec<Vec<f32>> = (0..frames).map(|frame| window(&whole, frame)).collect();

    // In pieces, rendering each frame as soon as the element would.
    let mut features = FeatureStream::new(batch);
    let mut state = u32::from_le_bytes([seed0, seed1, 0x5e, 0xed]) | 1;
    let (mut pushed, mut next_frame) = (0u64, 0usize);
    while pushed < total {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let count = u64::from(state % 4001).min(total - pushed);
        let start = (pushed as usize) * sample_size;
        features.push(&convert(
            &bytes[start..start + count as usize * sample_size],
            f32le,
        ));
        pushed += count;
        features.encode(encode).unwrap();
        let started = pushed.div_ceil(FRAME_SAMPLES) as usize;
        let first = next_frame;
        while next_frame < started && samples_needed_for_frame(next_frame) <= pushed {
            assert!(
                frame_window_ready(next_frame, features.embedding_count()),
                "frame {next_frame} is due after {pushed} samples but its window is not ready"
            );
            assert!(
                same(&window(&features, next_frame), &expected[next_frame]),
                "frame {next_frame}"
            );
            next_frame += 1;
        }
        if next_frame > first {
            features.release_before(next_frame);
        }
    }
    features.finish();
    features.encode(encode).unwrap();
    for frame in next_frame..frames {
        assert!(
            same(&window(&features, frame), &expected[frame]),
            "frame {frame} at the end"
        );
    }
});
