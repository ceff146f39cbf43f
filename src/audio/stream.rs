//! The audio side of one stream: samples in, each video frame's encoder-output window out.
//!
//! Keeps only what frames still to come need: mel frames from the next encoder window on, and
//! encoder outputs from the oldest row an unrendered frame reads. Memory stays flat however long
//! the stream runs.
//!
//! It also measures the audio level of each frame's window, the stretch of audio that the frame's
//! generator input is computed from, so that frames with nothing but silence in it can skip the
//! models ([`FeatureStream::window_level_db`]).

use std::collections::VecDeque;

use super::features::{
    EMBEDDING_LEN, ENCODER_INPUT_LEN, ENCODER_WINDOW_FRAMES, EmbeddingCount, embeddings_needed,
    encoder_window_count, encoder_window_start, encoder_windows_ready, pack_encoder_input,
    window_padded, write_frame_window,
};
use super::mel::{HOP_LENGTH, MelFrame, MelStream};

/// Rows before frame `i`'s own that its window reads: P[i−8] is E[i−9].
const EMBEDDINGS_BEFORE_FRAME: usize = 9;
/// Level reported for digital silence, in dBFS.
pub const SILENCE_FLOOR_DB: f32 = -200.0;

pub struct FeatureStream {
    mel: MelStream,
    /// Mel frames from `mel_base` on.
    mel_frames: VecDeque<MelFrame>,
    mel_base: usize,
    /// Encoder outputs from `embedding_base` on.
    embeddings: VecDeque<[f32; EMBEDDING_LEN]>,
    embedding_base: usize,
    finished: bool,
    max_batch: usize,
    windows: Vec<f32>,
    outputs: Vec<f32>,
    /// Mean square of each hop of 200 samples from hop `level_base` on (hop `h` holds samples
    /// `200·h .. 200·h + 200`), and the sum and count of the hop being filled.
    levels: VecDeque<f32>,
    level_base: usize,
    hop_sum: f64,
    hop_fill: usize,
}

impl FeatureStream {
    /// A stream whose encoder runs on up to `max_batch` windows at a time.
    pub fn new(max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        Self {
            mel: MelStream::new(),
            mel_frames: VecDeque::new(),
            mel_base: 0,
            embeddings: VecDeque::new(),
            embedding_base: 0,
            finished: false,
            max_batch,
            windows: vec![0.0; max_batch * ENCODER_INPUT_LEN],
            outputs: vec![0.0; max_batch * EMBEDDING_LEN],
            levels: VecDeque::new(),
            level_base: 0,
            hop_sum: 0.0,
            hop_fill: 0,
        }
    }

    /// Starts a new stream, keeping the buffers.
    pub fn reset(&mut self) {
        self.mel.reset();
        self.mel_frames.clear();
        self.mel_base = 0;
        self.embeddings.clear();
        self.embedding_base = 0;
        self.finished = false;
        self.levels.clear();
        self.level_base = 0;
        self.hop_sum = 0.0;
        self.hop_fill = 0;
    }

    /// Adds samples (16 kHz mono, in [−1, 1]).
    pub fn push(&mut self, samples: &[f32]) {
        let frames = &mut self.mel_frames;
        self.mel.push(samples, |frame| frames.push_back(*frame));
        for &sample in samples {
            self.hop_sum += f64::from(sample) * f64::from(sample);
            self.hop_fill += 1;
            if self.hop_fill == HOP_LENGTH {
                self.end_hop();
            }
        }
    }

    fn end_hop(&mut self) {
        self.levels
            .push_back((self.hop_sum / HOP_LENGTH as f64) as f32);
        self.hop_sum = 0.0;
        self.hop_fill = 0;
    }

    /// Ends the stream: the last mel frames, and every remaining window becomes final.
    pub fn finish(&mut self) {
        let frames = &mut self.mel_frames;
        self.mel.finish(|frame| frames.push_back(*frame));
        self.finished = true;
        if self.hop_fill > 0 {
            self.end_hop();
        }
    }

    /// The hops of audio frame `frame`'s generator input is computed from: its encoder outputs
    /// E[i−9 ..= i+6] read mel frames ⌊16·(i−9)/5⌋ to ⌊16·(i+6)/5⌋ + 15, and mel frame `t` reads
    /// samples `200·t − 400 .. 200·t + 400`, hops `t − 2 ..= t + 1`.
    fn window_hops(frame: usize) -> std::ops::Range<usize> {
        let first_mel = frame.saturating_sub(EMBEDDINGS_BEFORE_FRAME) * 16 / 5;
        let last_mel = (embeddings_needed(frame) - 1) * 16 / 5 + ENCODER_WINDOW_FRAMES - 1;
        first_mel.saturating_sub(2)..last_mel + 2
    }

    /// The loudest 12.5 ms of the audio frame `frame`'s window reads so far, as RMS in dBFS
    /// (a full-scale square wave is 0 dB; digital silence is [`SILENCE_FLOOR_DB`]).
    pub fn window_level_db(&self, frame: usize) -> f32 {
        let hops = Self::window_hops(frame);
        let from = hops.start.max(self.level_base) - self.level_base;
        let to = hops
            .end
            .saturating_sub(self.level_base)
            .min(self.levels.len());
        let peak = self
            .levels
            .range(from.min(to)..to)
            .fold(0.0f32, |peak, &level| peak.max(level));
        if peak > 0.0 {
            (10.0 * peak.log10()).max(SILENCE_FLOOR_DB)
        } else {
            SILENCE_FLOOR_DB
        }
    }

    /// Whether frame `frame`'s window (ready) reads nothing but audio under `threshold_db` (see
    /// [`FeatureStream::window_level_db`]) and no row outside the encoder outputs. In digital
    /// silence, such a frame's generator input is exactly that of any other such frame.
    pub fn window_silent(&self, frame: usize, threshold_db: f32) -> bool {
        // Encoded or not yet, the windows there are (all of them, once the stream has ended).
        let windows = if self.finished {
            EmbeddingCount::Final(self.windows_total())
        } else {
            EmbeddingCount::SoFar(self.windows_total())
        };
        self.window_level_db(frame) < threshold_db && !window_padded(frame, windows)
    }

    fn mel_total(&self) -> usize {
        self.mel_base + self.mel_frames.len()
    }

    fn windows_total(&self) -> usize {
        if self.finished {
            encoder_window_count(self.mel_total())
        } else {
            encoder_windows_ready(self.mel_total())
        }
    }

    /// Runs `encoder` (windows [n, 1, 80, 16] → outputs [n, 512]) on every window that is final,
    /// up to `max_batch` at a time.
    pub fn encode<E>(
        &mut self,
        mut encoder: impl FnMut(&[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let total = self.windows_total();
        let mel_total = self.mel_total();
        while self.embedding_base + self.embeddings.len() < total {
            let first = self.embedding_base + self.embeddings.len();
            let count = (total - first).min(self.max_batch);
            for (slot, window) in self.windows[..count * ENCODER_INPUT_LEN]
                .chunks_exact_mut(ENCODER_INPUT_LEN)
                .enumerate()
            {
                let start = encoder_window_start(first + slot, mel_total);
                let (frames, base) = (&self.mel_frames, self.mel_base);
                pack_encoder_input(start, |t| &frames[t - base], window);
            }
            encoder(
                &self.windows[..count * ENCODER_INPUT_LEN],
                &mut self.outputs[..count * EMBEDDING_LEN],
            )?;
            for output in self.outputs[..count * EMBEDDING_LEN].chunks_exact(EMBEDDING_LEN) {
                self.embeddings
                    .push_back(output.try_into().expect("512 values"));
            }
        }
        self.release_mel(total);
        Ok(())
    }

    /// Drops the mel frames no window from `next_window` on reads.
    fn release_mel(&mut self, next_window: usize) {
        let mel_total = self.mel_total();
        let keep_from = (next_window * 16 / 5).min(mel_total.saturating_sub(ENCODER_WINDOW_FRAMES));
        while self.mel_base < keep_from && !self.mel_frames.is_empty() {
            self.mel_frames.pop_front();
            self.mel_base += 1;
        }
    }

    /// Encoder outputs available to frame windows.
    pub fn embedding_count(&self) -> EmbeddingCount {
        let count = self.embedding_base + self.embeddings.len();
        if self.finished && count == self.windows_total() {
            EmbeddingCount::Final(count)
        } else {
            EmbeddingCount::SoFar(count)
        }
    }

    /// Writes frame `frame`'s [32, 16, 16] audio input into `out`.
    ///
    /// # Panics
    /// If the frame is not ready (see [`super::features::frame_window_ready`]) or was released.
    pub fn write_frame_window(&self, frame: usize, out: &mut [f32]) {
        let (rows, base) = (&self.embeddings, self.embedding_base);
        write_frame_window(frame, self.embedding_count(), |k| &rows[k - base], out);
    }

    /// Frees the encoder outputs and levels only frames before `frame` read.
    pub fn release_before(&mut self, frame: usize) {
        let keep_from = frame.saturating_sub(EMBEDDINGS_BEFORE_FRAME);
        while self.embedding_base < keep_from && !self.embeddings.is_empty() {
            self.embeddings.pop_front();
            self.embedding_base += 1;
        }
        let keep_from = Self::window_hops(frame).start;
        while self.level_base < keep_from && !self.levels.is_empty() {
            self.levels.pop_front();
            self.level_base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::features::{
        FRAME_WINDOW_LEN, frame_window_ready, reference_frame_count, samples_needed_for_frame,
    };

    /// A stand-in encoder whose output identifies its window by content.
    fn fake_encoder(windows: &[f32], outputs: &mut [f32]) -> Result<(), ()> {
        for (window, output) in windows
            .chunks_exact(ENCODER_INPUT_LEN)
            .zip(outputs.chunks_exact_mut(EMBEDDING_LEN))
        {
            let sum: f32 = window.iter().sum();
            output
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = sum + i as f32);
        }
        Ok(())
    }

    fn signal(samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|n| ((n as f32) * 0.013).sin() * 0.3 * ((n / 3000) % 2) as f32)
            .collect()
    }

    /// Frame windows of a whole stream pushed `chunk` samples at a time, encoding and releasing as
    /// a streaming element would.
    fn windows_streamed(audio: &[f32], chunk: usize, batch: usize, frames: usize) -> Vec<Vec<f32>> {
        let mut stream = FeatureStream::new(batch);
        let mut out = Vec::new();
        let emit = |stream: &mut FeatureStream, out: &mut Vec<Vec<f32>>| {
            while out.len() < frames && frame_window_ready(out.len(), stream.embedding_count()) {
                let mut window = vec![0.0; FRAME_WINDOW_LEN];
                stream.write_frame_window(out.len(), &mut window);
                out.push(window);
                stream.release_before(out.len());
            }
        };
        for piece in audio.chunks(chunk) {
            stream.push(piece);
            stream.encode(fake_encoder).unwrap();
            emit(&mut stream, &mut out);
        }
        stream.finish();
        stream.encode(fake_encoder).unwrap();
        emit(&mut stream, &mut out);
        out
    }

    #[test]
    fn streaming_matches_the_whole_file_and_stays_small() {
        let audio = signal(5 * 16_000 + 123);
        let frames = 126;
        let whole = windows_streamed(&audio, audio.len(), 64, frames);
        assert_eq!(whole.len(), frames);
        for (chunk, batch) in [(160, 1), (441, 4), (1024, 16)] {
            assert_eq!(
                windows_streamed(&audio, chunk, batch, frames),
                whole,
                "{chunk}/{batch}"
            );
        }
    }

    #[test]
    fn window_level_sees_exactly_the_audio_the_window_reads() {
        // 2 s of silence with one 12.5 ms click at 1.0 s: hop 80, samples 16 000 to 16 199.
        let mut audio = vec![0.0f32; 32_000];
        audio[16_000..16_200].fill(0.5);
        let mut stream = FeatureStream::new(4);
        stream.push(&audio);
        stream.finish();
        let loud: Vec<usize> = (0..50)
            .filter(|&frame| stream.window_level_db(frame) > SILENCE_FLOOR_DB)
            .collect();
        // Frame i reads samples from 200·(⌊16(i−9)/5⌋ − 2) to 200·(⌊16(i+6)/5⌋ + 17): the click
        // is in the window of frames 14 to 34 (0.44 s before the click to 0.36 s after it,
        // give or take a hop), and nowhere else.
        assert_eq!(loud, (14..=34).collect::<Vec<_>>());
        let level = stream.window_level_db(25);
        assert!((level - 10.0 * 0.25f32.log10()).abs() < 0.01, "{level}");
    }

    /// Frame `frame`'s window in `stream`.
    fn window(stream: &FeatureStream, frame: usize) -> Vec<f32> {
        let mut window = vec![0.0; FRAME_WINDOW_LEN];
        stream.write_frame_window(frame, &mut window);
        window
    }

    #[test]
    fn a_silent_window_is_the_window_of_digital_silence() {
        // The window of frame 8 of a stream of silence: the first that reads no padding.
        let mut silence = FeatureStream::new(8);
        silence.push(&vec![0.0; samples_needed_for_frame(8) as usize]);
        silence.encode(fake_encoder).unwrap();
        let silent = window(&silence, 8);
        // Silence, 1 s of speech, 1.5 s of silence, 1 s of speech, 1 s of silence.
        let speech = signal(16_000);
        let mut audio = vec![0.0; 8_000];
        audio.extend(speech.iter().map(|s| s + 0.01));
        audio.extend(vec![0.0; 24_000]);
        audio.extend(speech.iter().map(|s| s + 0.01));
        audio.extend(vec![0.0; 16_000]);
        let mut stream = FeatureStream::new(8);
        stream.push(&audio);
        stream.finish();
        // Which frames are silent is known before their windows are encoded.
        let before: Vec<bool> = (0..200).map(|f| stream.window_silent(f, -50.0)).collect();
        stream.encode(fake_encoder).unwrap();
        let after: Vec<bool> = (0..200).map(|f| stream.window_silent(f, -50.0)).collect();
        assert_eq!(before, after);
        let EmbeddingCount::Final(count) = stream.embedding_count() else {
            panic!("the stream has ended");
        };
        let frames = reference_frame_count(count);
        let silent_frames: Vec<usize> = (0..frames)
            .filter(|&frame| stream.window_silent(frame, -50.0))
            .collect();
        for &frame in &silent_frames {
            assert!(window(&stream, frame) == silent, "frame {frame}");
        }
        // Frames 0 to 7 read padding, and so do the last seven; frames whose window reads speech
        // are not silent; the middle of the pause is.
        assert!(silent_frames.iter().all(|&f| f >= 8 && f + 7 < frames));
        let pause = 25 * (8_000 + 16_000) / 16_000..25 * (8_000 + 40_000) / 16_000;
        let in_pause = silent_frames
            .iter()
            .filter(|&&f| pause.contains(&f))
            .count();
        assert!(in_pause >= 15, "{in_pause} silent frames in the pause");
        assert!(!silent_frames.contains(&pause.start) && !silent_frames.contains(&(pause.end - 1)));
        // Under a threshold below digital silence's level, nothing is silent.
        assert!((0..frames).all(|frame| !stream.window_silent(frame, SILENCE_FLOOR_DB)));
    }

    #[test]
    fn held_data_is_bounded() {
        let mut stream = FeatureStream::new(8);
        let audio = signal(16_000);
        let mut frame = 0;
        for _ in 0..60 {
            stream.push(&audio);
            stream.encode(fake_encoder).unwrap();
            while frame_window_ready(frame, stream.embedding_count()) {
                frame += 1;
            }
            stream.release_before(frame);
            assert!(
                stream.mel_frames.len() <= 60,
                "{} mel frames held",
                stream.mel_frames.len()
            );
            assert!(
                stream.embeddings.len() <= 20,
                "{} outputs held",
                stream.embeddings.len()
            );
            assert!(
                stream.levels.len() <= 150,
                "{} levels held",
                stream.levels.len()
            );
        }
        assert!(frame > 1400);
    }
}
