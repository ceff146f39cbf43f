//! The audio/frame grid of one stream: how much audio has arrived, where a buffer of it belongs,
//! and which frames it completes. The one owner of "which frames are ready", for the element and
//! the bench alike. Pure: times are nanoseconds, counts are samples at the mel front-end's rate.
//!
//! Frame `n` carries the timestamp `origin + n × frame duration`, where `origin` is the timestamp
//! of the stream's first audio. With models, frame `n` is complete once the audio its feature
//! window reads (about 0.45 s past its start) is in; without, once its first sample is. At the end
//! of the stream every frame that any audio started is complete.
//!
//! Audio timestamps keep the grid: audio that starts more than [`RESYNC_THRESHOLD_NS`] after the
//! samples counted so far leaves a gap, filled with silence; audio more than that before them
//! (overlapping what was counted) is dropped. Jitter below it is ignored, as audio sinks do.

use std::ops::Range;

use super::clock::FrameClock;
use crate::audio::features::samples_needed_for_frame;
use crate::audio::mel::SAMPLE_RATE;
use crate::avatar::pingpong;

/// SyncTalk_2D avatars and their models are made at 25 frames per second.
pub const FPS: u32 = 25;
/// Audio timestamps further than this from the samples counted so far move the grid.
pub const RESYNC_THRESHOLD_NS: u64 = 40_000_000;
/// Frames the feature window's read-ahead repeats over: 16 mel frames every 5 video frames.
const WINDOW_PERIOD: u64 = 5;

/// The grid of the element: 16 kHz audio, 25 frames per second.
pub const FRAME_CLOCK: FrameClock = FrameClock::new(SAMPLE_RATE, FPS, 1);

/// One output frame: its index on the grid, its template, and its timestamp and duration in
/// nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub index: u64,
    pub template: usize,
    pub pts: u64,
    pub duration: u64,
}

/// Where a buffer of audio goes: `silence` samples first (a gap before it), then the buffer
/// without its first `skip` samples (they overlap audio already counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub silence: u64,
    pub skip: u64,
}

#[derive(Clone, Debug)]
pub struct Timeline {
    /// Templates in the avatar's loop (0: no avatar, no frames) and the step the loop starts at.
    templates: usize,
    start_frame: u32,
    /// Frames wait for the audio their feature window reads (there are models).
    look_ahead: bool,
    /// Timestamp of frame 0: the first audio buffer's, or the segment start.
    origin: Option<u64>,
    /// Audio samples since `origin`, gaps counted as silence.
    samples: u64,
    /// Frames handed out as ready.
    frames_ready: u64,
}

impl Timeline {
    pub fn new(templates: usize, start_frame: u32, look_ahead: bool) -> Self {
        Self {
            templates,
            start_frame,
            look_ahead,
            origin: None,
            samples: 0,
            frames_ready: 0,
        }
    }

    /// Forgets the stream, as after a flush: the next audio starts the grid again.
    pub fn restart(&mut self) {
        *self = Self::new(self.templates, self.start_frame, self.look_ahead);
    }

    pub fn origin(&self) -> Option<u64> {
        self.origin
    }

    /// Audio samples counted since the origin.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The first frame not yet handed out as ready.
    pub fn next_frame(&self) -> u64 {
        self.frames_ready
    }

    /// Counts a buffer of `samples` samples stamped `pts`; the stream's first audio sets the
    /// origin, at `pts` or, untimed, at `fallback`.
    pub fn place_audio(&mut self, pts: Option<u64>, fallback: u64, samples: u64) -> Placement {
        let origin = *self.origin.get_or_insert(pts.unwrap_or(fallback));
        let mut placement = Placement::default();
        if let Some(pts) = pts {
            let at = FRAME_CLOCK.samples_in(pts.saturating_sub(origin));
            let threshold = FRAME_CLOCK.samples_in(RESYNC_THRESHOLD_NS);
            if at > self.samples + threshold {
                placement.silence = at - self.samples;
            } else if at + threshold < self.samples {
                placement.skip = (self.samples - at).min(samples);
            }
        }
        self.samples += placement.silence + samples - placement.skip;
        placement
    }

    /// Counts a gap from `timestamp` to `end` as silence; returns the samples of silence it adds.
    /// A gap first in the stream sets the origin.
    pub fn gap(&mut self, timestamp: u64, end: u64) -> u64 {
        let origin = *self.origin.get_or_insert(timestamp);
        self.add_silence(FRAME_CLOCK.samples_in(end.saturating_sub(origin)))
    }

    /// Counts as silence the audio up to `position` (a stream time, `None`: none of it) and at
    /// least the audio the next frame needs; returns the samples of silence it adds. For a live
    /// stream whose audio stopped coming. Nothing before the first audio.
    pub fn fill_silence(&mut self, position: Option<u64>) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let until = position.map_or(0, |position| {
            FRAME_CLOCK.samples_in(position.saturating_sub(origin))
        });
        self.add_silence(until.max(self.samples_for_frame(self.frames_ready)))
    }

    fn add_silence(&mut self, until: u64) -> u64 {
        let silence = until.saturating_sub(self.samples);
        self.samples += silence;
        silence
    }

    /// Samples the stream must have before frame `n` is complete.
    pub fn samples_for_frame(&self, n: u64) -> u64 {
        if self.look_ahead {
            samples_needed_for_frame(n as usize)
        } else {
            FRAME_CLOCK.first_sample(n) + 1
        }
    }

    /// The frames the audio so far completes, or at the end of the stream (`at_eos`) all the
    /// audio started, from the first not handed out before. Empty without an avatar or audio.
    pub fn take_ready(&mut self, at_eos: bool) -> ReadyFrames {
        let Some(origin) = self.origin.filter(|_| self.templates > 0) else {
            return ReadyFrames::empty();
        };
        let started = FRAME_CLOCK.frames_started(self.samples);
        let mut ready = self.frames_ready;
        while ready < started && (at_eos || self.samples_for_frame(ready) <= self.samples) {
            ready += 1;
        }
        let indices = self.frames_ready..ready;
        self.frames_ready = ready;
        ReadyFrames {
            indices,
            templates: self.templates,
            start_frame: self.start_frame,
            origin,
        }
    }

    /// The timestamp of frame `n`, once the origin is known.
    pub fn pts(&self, n: u64) -> Option<u64> {
        Some(self.origin? + FRAME_CLOCK.pts_offset(n))
    }

    /// How far past a frame's start its feature window reads, at most: what a frame waits for
    /// after its own audio.
    pub fn look_ahead_ns(&self) -> u64 {
        if !self.look_ahead {
            return 0;
        }
        let samples = (0..WINDOW_PERIOD)
            .map(|n| samples_needed_for_frame(n as usize) - FRAME_CLOCK.first_sample(n))
            .max()
            .unwrap_or(0);
        FRAME_CLOCK.samples_duration(samples)
    }
}

/// Frames ready to render, placed on the grid one by one as they are taken (no list per audio
/// buffer).
#[derive(Clone, Debug)]
pub struct ReadyFrames {
    indices: Range<u64>,
    templates: usize,
    start_frame: u32,
    origin: u64,
}

impl ReadyFrames {
    fn empty() -> Self {
        Self {
            indices: 0..0,
            templates: 0,
            start_frame: 0,
            origin: 0,
        }
    }
}

impl Iterator for ReadyFrames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let index = self.indices.next()?;
        Some(Frame {
            index,
            template: pingpong(index + u64::from(self.start_frame), self.templates),
            pts: self.origin + FRAME_CLOCK.pts_offset(index),
            duration: FRAME_CLOCK.duration(index),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for ReadyFrames {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::features::{EMBEDDING_LEN, ENCODER_INPUT_LEN, frame_window_ready};
    use crate::audio::stream::FeatureStream;

    const MS: u64 = 1_000_000;

    fn indices(frames: ReadyFrames) -> Vec<u64> {
        frames.map(|frame| frame.index).collect()
    }

    #[test]
    fn without_models_a_frame_is_ready_from_its_first_sample() {
        let mut timeline = Timeline::new(3, 0, false);
        assert_eq!(timeline.place_audio(Some(0), 0, 640), Placement::default());
        assert_eq!(indices(timeline.take_ready(false)), [0]);
        timeline.place_audio(Some(40 * MS), 0, 1);
        let frames: Vec<Frame> = timeline.take_ready(false).collect();
        assert_eq!(
            frames,
            [Frame {
                index: 1,
                template: 2,
                pts: 40 * MS,
                duration: 40 * MS
            }]
        );
    }

    #[test]
    fn with_models_frames_wait_for_their_window_until_the_end() {
        let mut timeline = Timeline::new(10, 0, true);
        timeline.place_audio(Some(0), 0, 16_000);
        let ready = indices(timeline.take_ready(false));
        assert_eq!(ready.len(), 14, "{ready:?}");
        assert!(timeline.samples_for_frame(14) > 16_000);
        // At the end of the stream every frame the audio started is out.
        assert_eq!(
            indices(timeline.take_ready(true)),
            (14..25).collect::<Vec<_>>()
        );
        assert_eq!(timeline.look_ahead_ns(), 452_500_000);
    }

    #[test]
    fn the_origin_is_the_first_timestamp_and_frames_follow_the_grid() {
        let mut timeline = Timeline::new(1, 0, false);
        timeline.place_audio(None, 5 * MS, 1280);
        assert_eq!(timeline.origin(), Some(5 * MS));
        let pts: Vec<u64> = timeline.take_ready(false).map(|frame| frame.pts).collect();
        assert_eq!(pts, [5 * MS, 45 * MS]);
    }

    #[test]
    fn a_gap_in_the_timestamps_is_silence_and_an_overlap_is_dropped() {
        let mut timeline = Timeline::new(1, 0, false);
        timeline.place_audio(Some(0), 0, 640);
        // 100 ms on: 60 ms of silence first.
        let placement = timeline.place_audio(Some(100 * MS), 0, 640);
        assert_eq!((placement.silence, placement.skip), (960, 0));
        assert_eq!(timeline.samples(), 2240);
        // Back at 50 ms: what overlaps the 140 ms counted is dropped.
        let placement = timeline.place_audio(Some(50 * MS), 0, 3200);
        assert_eq!((placement.silence, placement.skip), (0, 1440));
        assert_eq!(timeline.samples(), 4000);
        // Jitter under 40 ms is ignored.
        let placement = timeline.place_audio(Some(280 * MS), 0, 640);
        assert_eq!(placement, Placement::default());
    }

    #[test]
    fn gaps_and_missing_live_audio_count_as_silence() {
        let mut timeline = Timeline::new(1, 0, true);
        assert_eq!(
            timeline.fill_silence(Some(MS)),
            0,
            "nothing before the first audio"
        );
        assert_eq!(timeline.gap(0, 200 * MS), 3200);
        assert_eq!(timeline.gap(0, 100 * MS), 0);
        // Live audio stopped: the audio due by then, and at least what the next frame needs.
        let next = timeline.samples_for_frame(0);
        assert_eq!(timeline.fill_silence(None), next - 3200);
        assert_eq!(indices(timeline.take_ready(false)), [0]);
        assert_eq!(timeline.fill_silence(Some(2000 * MS)), 32_000 - next);
    }

    #[test]
    fn a_restart_forgets_the_stream() {
        let mut timeline = Timeline::new(4, 2, false);
        timeline.place_audio(Some(0), 0, 6400);
        let first: Vec<Frame> = timeline.take_ready(false).collect();
        assert_eq!(first.len(), 10);
        timeline.restart();
        assert_eq!(timeline.origin(), None);
        timeline.place_audio(Some(7 * MS), 0, 640);
        let frames: Vec<Frame> = timeline.take_ready(false).collect();
        assert_eq!(frames[0].index, 0);
        assert_eq!(frames[0].template, first[0].template);
        assert_eq!(frames[0].pts, 7_000_000);
    }

    #[test]
    fn no_avatar_no_frames() {
        let mut timeline = Timeline::new(0, 0, false);
        timeline.place_audio(Some(0), 0, 6400);
        assert_eq!(timeline.take_ready(true).len(), 0);
    }

    /// The frames the timeline hands out as ready are exactly those whose window the feature
    /// stream can write, however the audio is split: the streaming thread counts samples and the
    /// task computes features, and the two must agree.
    #[test]
    fn ready_frames_have_their_feature_windows() {
        for chunk in [160, 441, 640, 1000, 4000] {
            let mut timeline = Timeline::new(1, 0, true);
            let mut features = FeatureStream::new(8);
            let mut ready = 0;
            for pushed in 0..60 {
                timeline.place_audio(None, 0, chunk);
                features.push(&vec![0.1; chunk as usize]);
                let at_eos = pushed == 59;
                if at_eos {
                    features.finish();
                }
                features
                    .encode(|windows: &[f32], out: &mut [f32]| {
                        let n = windows.len() / ENCODER_INPUT_LEN;
                        out[..n * EMBEDDING_LEN].fill(0.5);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                ready += timeline.take_ready(at_eos).len() as u64;
                let started = FRAME_CLOCK.frames_started(timeline.samples()) as usize;
                let windows = (0..started)
                    .take_while(|&n| frame_window_ready(n, features.embedding_count()))
                    .count() as u64;
                assert_eq!(ready, windows, "chunk {chunk}, push {pushed}");
            }
        }
    }
}
