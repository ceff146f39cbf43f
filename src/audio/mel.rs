//! The SyncTalk_2D "ave" mel spectrogram, computed incrementally.
//!
//! The reference (`utils.melspectrogram`) runs librosa over a whole file: pre-emphasis
//! `y[n] = x[n] − 0.97·x[n−1]`, a centred STFT (n_fft 800, hop 200, periodic Hann, 400 zeros of
//! padding on each side), the magnitude, librosa's default Slaney mel filterbank (80 bands,
//! 55–7600 Hz), `20·log10(max(x, 1e-5)) − 20` and `clip(8·(S + 100)/100 − 4, −4, 4)`.
//! [`MelStream`] computes the same frames from audio that arrives in pieces of any size: frame `t`
//! is emitted as soon as the [`samples_needed`] for it are in, and [`MelStream::finish`] supplies
//! the trailing padding. The result does not depend on how the audio was split.
//!
//! Everything runs in f64. The reference's pre-emphasis (scipy `lfilter`) already promotes the
//! float32 samples to float64, so librosa's STFT runs in float64 too; only its filterbank is
//! stored as float32, which the filterbank here reproduces.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate the front-end expects, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Mel bands per frame.
pub const MEL_BANDS: usize = 80;
/// Samples between the starts of consecutive mel frames (80 frames per second).
pub const HOP_LENGTH: usize = 200;

/// One mel frame: the 80 band levels on the model's [−4, 4] scale, lowest band first.
pub type MelFrame = [f32; MEL_BANDS];

const FFT_LENGTH: usize = 800;
/// librosa's `center=True` pads half a window of zeros on each side of the signal.
const CENTER_PAD: usize = FFT_LENGTH / 2;
const SPECTRUM_BINS: usize = FFT_LENGTH / 2 + 1;
const PREEMPHASIS: f64 = 0.97;
const MIN_FREQUENCY_HZ: f64 = 55.0;
const MAX_FREQUENCY_HZ: f64 = 7600.0;
const MIN_AMPLITUDE: f64 = 1e-5;
const REF_LEVEL_DB: f64 = 20.0;
const MIN_LEVEL_DB: f64 = -100.0;
const MAX_ABS_LEVEL: f64 = 4.0;

/// Number of mel frames a stream of `samples` samples makes in all: 1 + ⌊samples / 200⌋.
pub fn mel_frame_count(samples: u64) -> u64 {
    1 + samples / HOP_LENGTH as u64
}

/// Number of input samples that must have been pushed before mel frame `frame` can be emitted.
///
/// Frame `t` covers samples `[200·t − 400, 200·t + 400)`; those before the stream start are the
/// virtual leading zeros of the centred STFT.
pub fn samples_needed(frame: u64) -> u64 {
    frame * HOP_LENGTH as u64 + CENTER_PAD as u64
}

/// Incremental mel front-end for one 16 kHz mono stream.
///
/// All buffers are allocated in [`MelStream::new`]; pushing audio and emitting frames allocate
/// nothing. Frames are handed to a callback by reference, so the caller decides where they go.
pub struct MelStream {
    fft: Arc<dyn RealToComplex<f64>>,
    window: Box<[f64]>,
    filterbank: Box<[MelBand]>,
    /// Pre-emphasised, zero-padded signal of the frame being filled, from its first sample on.
    pending: Box<[f64]>,
    pending_len: usize,
    previous_sample: f64,
    fft_input: Box<[f64]>,
    spectrum: Box<[Complex<f64>]>,
    fft_scratch: Box<[Complex<f64>]>,
    magnitudes: Box<[f64]>,
    frame: MelFrame,
}

impl Default for MelStream {
    fn default() -> Self {
        Self::new()
    }
}

impl MelStream {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_LENGTH);
        let spectrum = fft.make_output_vec().into_boxed_slice();
        let fft_scratch = fft.make_scratch_vec().into_boxed_slice();
        let mut stream = Self {
            fft,
            window: periodic_hann(FFT_LENGTH),
            filterbank: slaney_mel_filterbank(),
            pending: vec![0.0; FFT_LENGTH].into_boxed_slice(),
            pending_len: 0,
            previous_sample: 0.0,
            fft_input: vec![0.0; FFT_LENGTH].into_boxed_slice(),
            spectrum,
            fft_scratch,
            magnitudes: vec![0.0; SPECTRUM_BINS].into_boxed_slice(),
            frame: [0.0; MEL_BANDS],
        };
        stream.reset();
        stream
    }

    /// Forgets the current stream (e.g. on a flush) and gets ready for a new one.
    pub fn reset(&mut self) {
        self.pending[..CENTER_PAD].fill(0.0);
        self.pending_len = CENTER_PAD;
        self.previous_sample = 0.0;
    }

    /// Feeds the next samples of the stream (in [−1, 1]) and emits every frame they complete.
    pub fn push(&mut self, samples: &[f32], mut on_frame: impl FnMut(&MelFrame)) {
        for &sample in samples {
            let sample = f64::from(sample);
            let emphasised = sample - PREEMPHASIS * self.previous_sample;
            self.previous_sample = sample;
            self.append(emphasised, &mut on_frame);
        }
    }

    /// Ends the stream: emits the frames that reach into the trailing padding, then resets.
    ///
    /// The padding is appended after pre-emphasis, as librosa pads the already filtered signal.
    pub fn finish(&mut self, mut on_frame: impl FnMut(&MelFrame)) {
        for _ in 0..CENTER_PAD {
            self.append(0.0, &mut on_frame);
        }
        self.reset();
    }

    fn append(&mut self, value: f64, on_frame: &mut impl FnMut(&MelFrame)) {
        self.pending[self.pending_len] = value;
        self.pending_len += 1;
        if self.pending_len == FFT_LENGTH {
            self.compute_frame();
            on_frame(&self.frame);
            self.pending.copy_within(HOP_LENGTH.., 0);
            self.pending_len -= HOP_LENGTH;
        }
    }

    fn compute_frame(&mut self) {
        for ((input, sample), weight) in self
            .fft_input
            .iter_mut()
            .zip(&*self.pending)
            .zip(&*self.window)
        {
            *input = sample * weight;
        }
        self.fft
            .process_with_scratch(
                &mut self.fft_input,
                &mut self.spectrum,
                &mut self.fft_scratch,
            )
            .expect("the FFT buffers were made by its own plan");
        for (magnitude, bin) in self.magnitudes.iter_mut().zip(&*self.spectrum) {
            *magnitude = bin.norm();
        }
        for (level, band) in self.frame.iter_mut().zip(&*self.filterbank) {
            let amplitude: f64 = band
                .weights
                .iter()
                .zip(&self.magnitudes[band.first_bin..])
                .map(|(weight, magnitude)| weight * magnitude)
                .sum();
            *level = normalized_level(amplitude) as f32;
        }
    }
}

/// Amplitude → dB relative to the reference level → the model's clipped [−4, 4] scale, with the
/// reference's operation order.
fn normalized_level(amplitude: f64) -> f64 {
    let db = 20.0 * amplitude.max(MIN_AMPLITUDE).log10() - REF_LEVEL_DB;
    let scaled = (2.0 * MAX_ABS_LEVEL) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_LEVEL;
    scaled.clamp(-MAX_ABS_LEVEL, MAX_ABS_LEVEL)
}

/// `scipy.signal.get_window('hann', n, fftbins=True)`: the periodic form, w[n] = ½ − ½·cos(2πn/N).
fn periodic_hann(length: usize) -> Box<[f64]> {
    (0..length)
        .map(|n| 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / length as f64).cos())
        .collect()
}

/// The non-zero stretch of one triangular mel filter.
#[derive(Debug)]
struct MelBand {
    first_bin: usize,
    weights: Box<[f64]>,
}

/// `librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)`: Slaney mel scale,
/// Slaney area normalisation, computed with librosa's operation order.
///
/// librosa stores the triangles in a float32 matrix and scales them in place, so each weight is
/// rounded to f32 twice, as here; that keeps the weights bit-identical to librosa's.
fn slaney_mel_filterbank() -> Box<[MelBand]> {
    let band_edges_hz = mel_frequencies(MEL_BANDS + 2, MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ);
    // np.fft.rfftfreq(n, d=1/sr) multiplies the bin index by 1 / (n·d).
    let bin_spacing_hz = 1.0 / (FFT_LENGTH as f64 * (1.0 / f64::from(SAMPLE_RATE)));
    band_edges_hz
        .windows(3)
        .map(|edges| {
            let [lower_hz, center_hz, upper_hz] = [edges[0], edges[1], edges[2]];
            let area_norm = 2.0 / (upper_hz - lower_hz);
            let weight = |bin: usize| {
                let bin_hz = bin as f64 * bin_spacing_hz;
                let rising = (bin_hz - lower_hz) / (center_hz - lower_hz);
                let falling = (upper_hz - bin_hz) / (upper_hz - center_hz);
                let triangle = f64::from(rising.min(falling).max(0.0) as f32);
                f64::from((triangle * area_norm) as f32)
            };
            let in_band = |bin: usize| weight(bin) > 0.0;
            let first_bin = (0..SPECTRUM_BINS)
                .position(in_band)
                .expect("every band covers a bin");
            let last_bin = (0..SPECTRUM_BINS)
                .rposition(in_band)
                .expect("every band covers a bin");
            MelBand {
                first_bin,
                weights: (first_bin..=last_bin).map(weight).collect(),
            }
        })
        .collect()
}

/// `librosa.mel_frequencies(count, fmin, fmax, htk=False)`: `count` frequencies evenly spaced on
/// the Slaney mel scale, as `np.linspace` spaces them.
fn mel_frequencies(count: usize, min_hz: f64, max_hz: f64) -> Vec<f64> {
    let min_mel = hz_to_mel(min_hz);
    let max_mel = hz_to_mel(max_hz);
    let step = (max_mel - min_mel) / (count - 1) as f64;
    (0..count)
        .map(|i| {
            if i == count - 1 {
                max_mel
            } else {
                i as f64 * step + min_mel
            }
        })
        .map(mel_to_hz)
        .collect()
}

/// The Slaney mel scale is linear below 1 kHz and logarithmic above.
const SLANEY_HZ_PER_MEL: f64 = 200.0 / 3.0;
const SLANEY_LOG_START_HZ: f64 = 1000.0;
const SLANEY_LOG_START_MEL: f64 = SLANEY_LOG_START_HZ / SLANEY_HZ_PER_MEL;

fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= SLANEY_LOG_START_HZ {
        SLANEY_LOG_START_MEL + (hz / SLANEY_LOG_START_HZ).ln() / slaney_log_step()
    } else {
        hz / SLANEY_HZ_PER_MEL
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= SLANEY_LOG_START_MEL {
        SLANEY_LOG_START_HZ * (slaney_log_step() * (mel - SLANEY_LOG_START_MEL)).exp()
    } else {
        SLANEY_HZ_PER_MEL * mel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic speech-like test signal: a gliding tone with harmonics, bursts of
    /// pseudo-random noise and a stretch of digital silence.
    fn test_signal(len: usize) -> Vec<f32> {
        let mut noise_state = 0x2545_f491_u32;
        (0..len)
            .map(|n| {
                noise_state = noise_state
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                let noise = (noise_state >> 8) as f32 / (1 << 24) as f32 - 0.5;
                let t = n as f32 / SAMPLE_RATE as f32;
                let phase = std::f32::consts::TAU * (120.0 * t + 40.0 * t * t);
                let voiced = 0.3 * phase.sin() + 0.1 * (3.0 * phase).sin();
                match (n / 4000) % 4 {
                    0 | 1 => voiced,
                    2 => 0.2 * noise,
                    _ => 0.0,
                }
            })
            .collect()
    }

    fn mel_of(signal: &[f32], push_size: usize) -> Vec<MelFrame> {
        let mut stream = MelStream::new();
        let mut frames = Vec::new();
        for chunk in signal.chunks(push_size) {
            stream.push(chunk, |frame| frames.push(*frame));
        }
        stream.finish(|frame| frames.push(*frame));
        frames
    }

    #[test]
    fn push_sizes_do_not_change_a_bit() {
        let signal = test_signal(37_123);
        let whole = mel_of(&signal, signal.len());
        assert_eq!(whole.len() as u64, mel_frame_count(signal.len() as u64));
        for push_size in [1, 160, 441, 1024] {
            let pieces = mel_of(&signal, push_size);
            let same_bits = whole
                .iter()
                .flatten()
                .zip(pieces.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same_bits && whole.len() == pieces.len(),
                "push size {push_size}"
            );
        }
    }

    #[test]
    fn each_frame_is_emitted_as_soon_as_its_samples_are_in() {
        let signal = test_signal(2_000);
        let mut stream = MelStream::new();
        let mut emitted = 0u64;
        for (pushed, sample) in (1u64..).zip(&signal) {
            stream.push(std::slice::from_ref(sample), |_| emitted += 1);
            let ready = (0u64..)
                .take_while(|&t| samples_needed(t) <= pushed)
                .count() as u64;
            assert_eq!(emitted, ready, "after {pushed} samples");
        }
        stream.finish(|_| emitted += 1);
        assert_eq!(emitted, mel_frame_count(signal.len() as u64));
    }

    #[test]
    fn frame_count_follows_the_centred_stft() {
        for samples in [0, 1, 199, 200, 201, 399, 400, 3_000, 16_000] {
            let frames = mel_of(&test_signal(samples), 333);
            assert_eq!(
                frames.len() as u64,
                1 + samples as u64 / 200,
                "{samples} samples"
            );
        }
    }

    #[test]
    fn finish_and_reset_start_a_fresh_stream() {
        let signal = test_signal(5_000);
        let expected = mel_of(&signal, 512);
        let mut stream = MelStream::new();
        let mut frames = Vec::new();
        stream.push(&test_signal(777), |_| {});
        stream.reset();
        for _ in 0..2 {
            frames.clear();
            stream.push(&signal, |frame| frames.push(*frame));
            stream.finish(|frame| frames.push(*frame));
            assert_eq!(frames, expected);
        }
    }

    #[test]
    fn silence_sits_on_the_floor() {
        let frames = mel_of(&[0.0; 4_000], 4_000);
        assert!(frames.iter().flatten().all(|&level| level == -4.0));
    }

    #[test]
    fn filterbank_has_librosa_slaney_shape() {
        let bank = slaney_mel_filterbank();
        assert_eq!(bank.len(), MEL_BANDS);
        for pair in bank.windows(2) {
            assert!(pair[0].first_bin <= pair[1].first_bin);
        }
        let last = &bank[MEL_BANDS - 1];
        assert!(last.first_bin + last.weights.len() <= SPECTRUM_BINS);
        for band in &*bank {
            // Triangles: rising to one peak, then falling.
            let peak = band
                .weights
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(index, _)| index);
            assert!(band.weights[..=peak].windows(2).all(|w| w[0] <= w[1]));
            assert!(band.weights[peak..].windows(2).all(|w| w[0] >= w[1]));
        }
        // Slaney normalisation gives each triangle unit area in Hz; sampled on 20 Hz bins, the
        // narrow triangles come within a few percent of it.
        for band in &*bank {
            let area: f64 = band.weights.iter().sum::<f64>() * 20.0;
            assert!((area - 1.0).abs() < 0.05, "area {area}");
        }
    }

    #[test]
    fn filterbank_matches_librosa_values() {
        let bank = slaney_mel_filterbank();
        let weight = |band: usize, bin: usize| {
            let band = &bank[band];
            bin.checked_sub(band.first_bin)
                .and_then(|offset| band.weights.get(offset))
                .copied()
                .unwrap_or(0.0)
        };
        // Values of librosa 0.11.0 `filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55,
        // fmax=7600)` (float32), at [band, bin].
        for (band, bin, expected) in LIBROSA_WEIGHTS {
            assert_eq!(weight(band, bin) as f32, expected, "band {band}, bin {bin}");
        }
    }

    const LIBROSA_WEIGHTS: [(usize, usize, f32); 11] = [
        (0, 2, 0.0),
        (0, 3, 0.003869592),
        (0, 4, 0.01934796),
        (0, 5, 0.02081245),
        (1, 6, 0.022485306),
        (40, 86, 0.014343159),
        (40, 90, 0.0),
        (79, 353, 4.2686377e-05),
        (79, 370, 0.0026630082),
        (79, 379, 0.0002663008),
        (79, 380, 0.0),
    ];

    /// Samples of a 16-bit PCM mono WAV file, scaled to [−1, 1) as libsndfile (librosa) does.
    fn read_pcm16_mono_wav(bytes: &[u8]) -> Vec<f32> {
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WAVE");
        let mut rest = &bytes[12..];
        let mut format_checked = false;
        while rest.len() >= 8 {
            let id = &rest[..4];
            let size = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            let body = &rest[8..8 + size];
            match id {
                b"fmt " => {
                    let field = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
                    let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                    assert_eq!(
                        (field(0), field(2), rate, field(14)),
                        (1, 1, SAMPLE_RATE, 16)
                    );
                    format_checked = true;
                }
                b"data" => {
                    assert!(format_checked, "data chunk before fmt chunk");
                    return body
                        .chunks_exact(2)
                        .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
                        .collect();
                }
                _ => {}
            }
            rest = &rest[(8 + size + size % 2).min(rest.len())..];
        }
        panic!("no data chunk");
    }

    #[test]
    fn matches_librosa_on_the_demo_speech() {
        let root = env!("CARGO_MANIFEST_DIR");
        let wav = std::fs::read(format!("{root}/models/demo/speech.wav")).expect("demo speech");
        let fixture = std::fs::read(format!("{root}/tests/data/speech_mel.f32"))
            .expect("fixture made by tools/make_mel_fixture.py");
        let reference: Vec<f32> = fixture
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();

        let frames = mel_of(&read_pcm16_mono_wav(&wav), 441);
        assert_eq!(frames.len() * MEL_BANDS, reference.len());
        assert!(frames.iter().flatten().all(|level| level.is_finite()));
        let max_diff = frames
            .iter()
            .flatten()
            .zip(&reference)
            .map(|(ours, theirs)| (ours - theirs).abs())
            .fold(0.0f32, f32::max);
        println!(
            "max abs diff vs librosa over {} frames: {max_diff:e}",
            frames.len()
        );
        assert!(max_diff <= 2e-3, "max abs diff {max_diff}");
    }
}
