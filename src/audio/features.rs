//! The audio encoder's input windows over the mel frames, and each video frame's window over the
//! encoder outputs: SyncTalk_2D's `AudDataset` and `inference_328.py` in "ave" mode.
//!
//! # Encoder windows
//!
//! Video frame `j` has one encoder input: the 16 mel frames from `⌊80·j/25⌋` on, transposed to
//! 80 bins × 16 frames ([`pack_encoder_input`]). A window that would run past the last mel frame
//! is slid back to end on it ([`encoder_window_start`]). A stream of T mel frames has
//! [`encoder_window_count`] windows, the reference's `data_len`.
//!
//! # Frame windows
//!
//! The encoder outputs E[0..n) are padded by repeating the first and the last,
//! P = [E0, E0, E1, …, E(n−1), E(n−1)], and video frame `i` reads the 16 rows P[i−8 .. i+8), zeros
//! where a row falls outside P ([`write_frame_window`]). The rows, concatenated, are the U-Net's
//! [32, 16, 16] audio input: channel `c` is half `c % 2` of row `c / 2`.
//!
//! # Streaming
//!
//! While the stream is open, a window is final once all 16 of its mel frames exist, as it can no
//! longer slide back ([`encoder_windows_ready`]); the last ones wait for the end of the stream.
//! Frame `i` is final once E[0..=i+6] exist ([`embeddings_needed`]): its last row, P[i+7], is
//! E[i+6] whenever that exists. Chaining the two with the mel frames' own needs, frame `i` is
//! final once [`samples_needed_for_frame`] samples are in, 0.44–0.45 s past its start. At the end
//! of the stream every remaining window and frame is final.
//!
//! # Frames past the reference's last
//!
//! The reference renders n + 2 frames. The element renders a frame for every 40 ms of audio
//! started, ⌈25·d⌉ for d seconds, which is one to three more; their windows run past the end of P
//! and are zero-filled like any row outside it. Under 16 mel frames (less than 0.1875 s of audio)
//! the reference cannot cut a single window and fails; here there are no encoder windows then, P
//! is empty and every frame window is all zeros.

use super::mel::{MEL_BANDS, MelFrame, samples_needed};

/// Mel frames in one encoder input.
pub const ENCODER_WINDOW_FRAMES: usize = 16;
/// Floats in one encoder input, [1, 1, 80, 16].
pub const ENCODER_INPUT_LEN: usize = MEL_BANDS * ENCODER_WINDOW_FRAMES;
/// Floats in one encoder output.
pub const EMBEDDING_LEN: usize = 512;
/// Encoder outputs in one frame window.
pub const FRAME_WINDOW_ROWS: usize = 16;
/// Floats in one frame window, the U-Net's [1, 32, 16, 16] audio input.
pub const FRAME_WINDOW_LEN: usize = FRAME_WINDOW_ROWS * EMBEDDING_LEN;
/// Rows of a frame window that come before the frame's own.
const FRAME_WINDOW_ROWS_BEFORE: usize = 8;

/// Number of encoder windows in a stream of `total_mel_frames` mel frames: the reference's
/// `int((T - 16) / 80. * 25.) + 2`, in f64 and in the same order, so it is one less than exact
/// arithmetic gives for some T (384, 672, 752, …), as in the reference.
///
/// Under 16 mel frames there is no window (see the module docs).
pub fn encoder_window_count(total_mel_frames: usize) -> usize {
    if total_mel_frames < ENCODER_WINDOW_FRAMES {
        return 0;
    }
    ((total_mel_frames - ENCODER_WINDOW_FRAMES) as f64 / 80.0 * 25.0) as usize + 2
}

/// Number of encoder windows that are final while the stream is open with `mel_frames_so_far`
/// mel frames: window `j` is, once ⌊16j/5⌋ + 16 ≤ F, i.e. 16j < 5(F − 15).
pub fn encoder_windows_ready(mel_frames_so_far: usize) -> usize {
    (5 * mel_frames_so_far.saturating_sub(ENCODER_WINDOW_FRAMES - 1)).div_ceil(16)
}

/// First mel frame of encoder window `window` given `mel_frames` mel frames: the final count at
/// the end of the stream, or the count so far for any window below [`encoder_windows_ready`].
///
/// The reference's `int(80. * (j / 25.))` is computed exactly as ⌊16j/5⌋; the two agree for every
/// j below 200 000 (over 2 hours), and past that this one stays on the exact grid.
///
/// # Panics
/// If `mel_frames` is under 16, when no window exists.
pub fn encoder_window_start(window: usize, mel_frames: usize) -> usize {
    let last_start = mel_frames
        .checked_sub(ENCODER_WINDOW_FRAMES)
        .expect("an encoder window needs 16 mel frames");
    (window * 16 / 5).min(last_start)
}

/// Writes the encoder input for the window starting at mel frame `start`: element
/// `[bin][t]` = `mel_frame(start + t)[bin]`, the [80, 16] layout of `mel[start:start+16].T`.
///
/// # Panics
/// If `out` does not hold exactly [`ENCODER_INPUT_LEN`] floats.
pub fn pack_encoder_input<'a>(
    start: usize,
    mel_frame: impl Fn(usize) -> &'a MelFrame,
    out: &mut [f32],
) {
    assert_eq!(out.len(), ENCODER_INPUT_LEN, "encoder input length");
    for t in 0..ENCODER_WINDOW_FRAMES {
        for (bin, &level) in mel_frame(start + t).iter().enumerate() {
            out[bin * ENCODER_WINDOW_FRAMES + t] = level;
        }
    }
}

/// How many encoder outputs exist, and whether that is all the stream will have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingCount {
    /// The stream is still open; more may follow.
    SoFar(usize),
    /// The stream has ended with this many (`data_len`).
    Final(usize),
}

/// Encoder outputs E[0..needed) that frame `frame` reads while the stream is open.
pub fn embeddings_needed(frame: usize) -> usize {
    frame + FRAME_WINDOW_ROWS - FRAME_WINDOW_ROWS_BEFORE - 1
}

/// Whether frame `frame`'s window can be written now.
pub fn frame_window_ready(frame: usize, embeddings: EmbeddingCount) -> bool {
    match embeddings {
        EmbeddingCount::SoFar(count) => count >= embeddings_needed(frame),
        EmbeddingCount::Final(_) => true,
    }
}

/// Number of frames the reference renders from `embeddings` encoder outputs: the length of P.
pub fn reference_frame_count(embeddings: usize) -> usize {
    if embeddings == 0 { 0 } else { embeddings + 2 }
}

/// Input samples needed, counted from the stream start, before frame `frame`'s window is final
/// while the stream is open: the element's audio look-ahead.
pub fn samples_needed_for_frame(frame: usize) -> u64 {
    let last_window = embeddings_needed(frame) - 1;
    let last_mel_frame = last_window * 16 / 5 + ENCODER_WINDOW_FRAMES - 1;
    samples_needed(last_mel_frame as u64)
}

/// Writes frame `frame`'s window, P[frame−8 .. frame+8) with zeros outside P, as the
/// [`FRAME_WINDOW_LEN`] floats of the U-Net's [32, 16, 16] audio input. `embedding(k)` is E[k].
///
/// # Panics
/// If the window is not [`frame_window_ready`], if `out` does not hold exactly
/// [`FRAME_WINDOW_LEN`] floats, or if an embedding is not [`EMBEDDING_LEN`] long.
pub fn write_frame_window<'a>(
    frame: usize,
    embeddings: EmbeddingCount,
    embedding: impl Fn(usize) -> &'a [f32],
    out: &mut [f32],
) {
    assert!(
        frame_window_ready(frame, embeddings),
        "frame {frame} needs {} embeddings, have {embeddings:?}",
        embeddings_needed(frame)
    );
    assert_eq!(out.len(), FRAME_WINDOW_LEN, "frame window length");
    for (offset, row) in out.chunks_exact_mut(EMBEDDING_LEN).enumerate() {
        let source = (frame + offset)
            .checked_sub(FRAME_WINDOW_ROWS_BEFORE)
            .and_then(|padded_row| padded_row_source(padded_row, embeddings));
        match source {
            Some(index) => row.copy_from_slice(embedding(index)),
            None => row.fill(0.0),
        }
    }
}

/// Whether frame `frame`'s window (ready) has rows outside P, written as zeros: the first eight
/// frames of a stream, and the last ones once it has ended.
pub fn window_padded(frame: usize, embeddings: EmbeddingCount) -> bool {
    (0..FRAME_WINDOW_ROWS).any(|offset| {
        (frame + offset)
            .checked_sub(FRAME_WINDOW_ROWS_BEFORE)
            .and_then(|padded_row| padded_row_source(padded_row, embeddings))
            .is_none()
    })
}

/// The encoder output that row `padded_row` of P repeats, or `None` past P's end.
fn padded_row_source(padded_row: usize, embeddings: EmbeddingCount) -> Option<usize> {
    let index = padded_row.saturating_sub(1);
    match embeddings {
        // A ready window reads no row past the outputs known so far, all of them inside P.
        EmbeddingCount::SoFar(_) => Some(index),
        EmbeddingCount::Final(count) => {
            (padded_row < reference_frame_count(count)).then(|| index.min(count - 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::mel::mel_frame_count;

    /// E[k] holds k·1000 + position, so a copied row shows where it came from and that its
    /// order is kept.
    fn embeddings(count: usize) -> Vec<Vec<f32>> {
        (0..count)
            .map(|k| (0..EMBEDDING_LEN).map(|i| (k * 1000 + i) as f32).collect())
            .collect()
    }

    /// For each row of the window, the embedding it holds, or `None` for a zero row.
    fn window_sources(
        frame: usize,
        count: EmbeddingCount,
        rows: &[Vec<f32>],
    ) -> Vec<Option<usize>> {
        let mut out = vec![f32::NAN; FRAME_WINDOW_LEN];
        write_frame_window(frame, count, |k| &rows[k], &mut out);
        out.chunks_exact(EMBEDDING_LEN)
            .map(|row| {
                if row.iter().all(|&v| v == 0.0) {
                    return None;
                }
                let k = row[0] as usize / 1000;
                assert_eq!(row, &rows[k][..]);
                Some(k)
            })
            .collect()
    }

    #[test]
    fn window_count_keeps_the_reference_float_quirk() {
        for (mel_frames, count) in [(384, 116), (672, 206), (752, 231)] {
            let exact = (mel_frames - 16) * 25 / 80 + 2;
            assert_eq!(encoder_window_count(mel_frames), count);
            assert_eq!(count, exact - 1, "T = {mel_frames}");
        }
        for (mel_frames, count) in [(16, 2), (17, 2), (19, 2), (20, 3), (800, 247), (801, 247)] {
            assert_eq!(encoder_window_count(mel_frames), count, "T = {mel_frames}");
        }
    }

    #[test]
    fn too_short_a_stream_has_no_window() {
        for mel_frames in 0..16 {
            assert_eq!(encoder_window_count(mel_frames), 0);
            assert_eq!(encoder_windows_ready(mel_frames), 0);
        }
        assert_eq!(reference_frame_count(0), 0);
    }

    #[test]
    fn window_start_matches_the_reference_float_expression() {
        for window in 0..200_000 {
            let reference = (80.0 * (window as f64 / 25.0)) as usize;
            assert_eq!(encoder_window_start(window, usize::MAX), reference);
        }
    }

    #[test]
    fn windows_past_the_end_slide_back() {
        // T = 100: 28 windows; 26 starts at 83 and fits, 27 would start at 86 and ends on 99.
        assert_eq!(encoder_window_count(100), 28);
        assert_eq!(encoder_window_start(26, 100), 83);
        assert_eq!(encoder_window_start(27, 100), 84);
        // T = 16: both windows are the whole spectrogram.
        assert_eq!(encoder_window_start(0, 16), 0);
        assert_eq!(encoder_window_start(1, 16), 0);
    }

    #[test]
    fn ready_windows_are_final_whatever_the_stream_length() {
        for so_far in 0..1_500 {
            let ready = encoder_windows_ready(so_far);
            let fitting = (0..).take_while(|&j| j * 16 / 5 + 16 <= so_far).count();
            assert_eq!(ready, fitting, "F = {so_far}");
            assert!(ready <= encoder_window_count(so_far), "F = {so_far}");
            for window in 0..ready {
                let start = encoder_window_start(window, so_far);
                for total in [so_far, so_far + 1, so_far + 7, so_far + 1_000] {
                    assert_eq!(encoder_window_start(window, total), start);
                }
            }
        }
    }

    #[test]
    fn encoder_input_is_bin_major() {
        let mel: Vec<MelFrame> = (0..40)
            .map(|t| std::array::from_fn(|bin| (t * 100 + bin) as f32))
            .collect();
        let mut out = [0.0; ENCODER_INPUT_LEN];
        pack_encoder_input(7, |t| &mel[t], &mut out);
        for bin in 0..MEL_BANDS {
            for t in 0..ENCODER_WINDOW_FRAMES {
                assert_eq!(out[bin * 16 + t], mel[7 + t][bin]);
            }
        }
    }

    #[test]
    fn first_frames_zero_fill_then_repeat_the_first_output() {
        let rows = embeddings(20);
        let first = window_sources(0, EmbeddingCount::Final(20), &rows);
        let expected: Vec<_> = [None; 8]
            .into_iter()
            .chain([0, 0, 1, 2, 3, 4, 5, 6].map(Some))
            .collect();
        assert_eq!(first, expected);
        let second = window_sources(1, EmbeddingCount::Final(20), &rows);
        assert_eq!(second[..7], [None; 7]);
        assert_eq!(second[7..], [0, 0, 1, 2, 3, 4, 5, 6, 7].map(Some));
    }

    #[test]
    fn last_frames_repeat_the_last_output_then_zero_fill() {
        let rows = embeddings(20);
        // Frame 21 is the reference's last (n + 2 = 22 frames): P[13..=21] then zeros.
        let last = window_sources(21, EmbeddingCount::Final(20), &rows);
        let expected: Vec<_> = (12..20)
            .map(Some)
            .chain([Some(19)])
            .chain([None; 7])
            .collect();
        assert_eq!(last, expected);
        // The element's extra frames read further past P's end.
        let extra = window_sources(23, EmbeddingCount::Final(20), &rows);
        assert_eq!(
            extra[..7],
            (14..21).map(|k| Some(k.min(19))).collect::<Vec<_>>()[..]
        );
        assert_eq!(extra[7..], [None; 9]);
        assert_eq!(
            window_sources(30, EmbeddingCount::Final(20), &rows),
            [None; 16]
        );
    }

    #[test]
    fn window_rows_concatenate_into_32_channels() {
        let rows = embeddings(30);
        let mut out = vec![0.0; FRAME_WINDOW_LEN];
        write_frame_window(12, EmbeddingCount::Final(30), |k| &rows[k], &mut out);
        for (channel, plane) in out.chunks_exact(256).enumerate() {
            let (row, half) = (channel / 2, channel % 2);
            let source = &rows[12 + row - 8 - 1];
            assert_eq!(plane, &source[half * 256..][..256], "channel {channel}");
        }
    }

    #[test]
    fn streaming_windows_equal_the_final_ones() {
        let rows = embeddings(40);
        for frame in 0..20 {
            let needed = embeddings_needed(frame);
            assert!(!frame_window_ready(
                frame,
                EmbeddingCount::SoFar(needed - 1)
            ));
            let early = window_sources(frame, EmbeddingCount::SoFar(needed), &rows);
            for total in needed..=40 {
                assert_eq!(
                    early,
                    window_sources(frame, EmbeddingCount::Final(total), &rows)
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "needs 7 embeddings")]
    fn writing_a_window_too_early_panics() {
        let rows = embeddings(6);
        let mut out = vec![0.0; FRAME_WINDOW_LEN];
        write_frame_window(0, EmbeddingCount::SoFar(6), |k| &rows[k], &mut out);
    }

    #[test]
    fn no_outputs_give_all_zero_windows() {
        assert_eq!(window_sources(0, EmbeddingCount::Final(0), &[]), [None; 16]);
        assert_eq!(window_sources(3, EmbeddingCount::Final(0), &[]), [None; 16]);
    }

    #[test]
    fn look_ahead_is_about_450_ms() {
        // Frame 0 needs E[6], window 6 covers mel frames 19..35, mel frame 34 needs 7200 samples.
        assert_eq!(samples_needed_for_frame(0), 7_200);
        // Window starts are rounded down to whole mel frames, up to 160 samples early.
        for frame in 0..1_000 {
            let frame_start = frame as u64 * 640;
            let look_ahead = samples_needed_for_frame(frame) - frame_start;
            assert!(
                (7_080..=7_240).contains(&look_ahead),
                "frame {frame}: {look_ahead}"
            );
        }
    }

    #[test]
    fn the_element_renders_at_least_the_reference_frames() {
        for samples in (0..400_000u64).step_by(7) {
            let mel_frames = mel_frame_count(samples) as usize;
            let reference = reference_frame_count(encoder_window_count(mel_frames));
            let element = samples.div_ceil(640) as usize;
            assert!(
                (1..=3).contains(&(element - reference)) || mel_frames < 16,
                "{samples} samples: element {element}, reference {reference}"
            );
        }
    }
}
