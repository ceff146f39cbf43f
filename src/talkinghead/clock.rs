//! The output frame grid: which video frames a given amount of audio makes, and their timestamps.
//!
//! Everything is counted from the stream start with integer math, so frame `n` lands on exactly
//! `n × frame duration` however the audio was split into buffers, and nothing drifts over hours.

const NSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// Maps audio samples to video frames for one sample rate and frame rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameClock {
    sample_rate: u128,
    fps_n: u128,
    fps_d: u128,
}

impl FrameClock {
    /// # Panics
    /// If any argument is zero.
    pub const fn new(sample_rate: u32, fps_n: u32, fps_d: u32) -> Self {
        assert!(
            sample_rate > 0 && fps_n > 0 && fps_d > 0,
            "rates must be positive"
        );
        Self {
            sample_rate: sample_rate as u128,
            fps_n: fps_n as u128,
            fps_d: fps_d as u128,
        }
    }

    /// Index of the first audio sample (counted from the stream start) inside frame `n`.
    pub fn first_sample(&self, n: u64) -> u64 {
        saturate(u128::from(n) * self.sample_rate * self.fps_d / self.fps_n)
    }

    /// How many frames start before sample `samples`: ceil(samples × fps / rate).
    ///
    /// Frame `n` exists once its first sample exists, so this is also the number of frames a
    /// stream of `samples` samples makes in all.
    pub fn frames_started(&self, samples: u64) -> u64 {
        let den = self.sample_rate * self.fps_d;
        saturate((u128::from(samples) * self.fps_n).div_ceil(den))
    }

    /// Timestamp of frame `n` relative to the stream start, in nanoseconds.
    pub fn pts_offset(&self, n: u64) -> u64 {
        saturate(u128::from(n) * NSECONDS_PER_SECOND * self.fps_d / self.fps_n)
    }

    /// Duration of frame `n` in nanoseconds: the distance to the next frame's timestamp.
    pub fn duration(&self, n: u64) -> u64 {
        self.pts_offset(n + 1) - self.pts_offset(n)
    }

    /// Number of samples that fit in `nanoseconds`, rounded down.
    pub fn samples_in(&self, nanoseconds: u64) -> u64 {
        saturate(u128::from(nanoseconds) * self.sample_rate / NSECONDS_PER_SECOND)
    }

    /// Duration of `samples` samples in nanoseconds, rounded down.
    pub fn samples_duration(&self, samples: u64) -> u64 {
        saturate(u128::from(samples) * NSECONDS_PER_SECOND / self.sample_rate)
    }
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ten_seconds_at_16k_make_250_frames_of_40ms() {
        let clock = FrameClock::new(16_000, 25, 1);
        assert_eq!(clock.frames_started(160_000), 250);
        for n in 0..250 {
            assert_eq!(clock.pts_offset(n), n * 40 * MS);
            assert_eq!(clock.duration(n), 40 * MS);
            assert_eq!(clock.first_sample(n), n * 640);
        }
    }

    #[test]
    fn a_frame_exists_from_its_first_sample() {
        let clock = FrameClock::new(16_000, 25, 1);
        assert_eq!(clock.frames_started(0), 0);
        assert_eq!(clock.frames_started(1), 1);
        assert_eq!(clock.frames_started(640), 1);
        assert_eq!(clock.frames_started(641), 2);
    }

    #[test]
    fn frames_started_agrees_with_first_sample_for_awkward_rates() {
        for (rate, fps_n, fps_d) in [(16_000, 30_000, 1001), (44_100, 25, 1), (16_000, 20, 1)] {
            let clock = FrameClock::new(rate, fps_n, fps_d);
            for samples in 0..5_000u64 {
                let expected = (0..1_000)
                    .take_while(|&n| clock.first_sample(n) < samples)
                    .count();
                assert_eq!(
                    clock.frames_started(samples),
                    expected as u64,
                    "{rate} {fps_n}/{fps_d}"
                );
            }
        }
    }

    #[test]
    fn durations_sum_to_the_timestamp_without_drift() {
        let clock = FrameClock::new(16_000, 30_000, 1001);
        let one_hour = 3600 * 30;
        let sum: u64 = (0..one_hour).map(|n| clock.duration(n)).sum();
        assert_eq!(sum, clock.pts_offset(one_hour));
        assert_eq!(clock.pts_offset(30_000), 1001 * 1_000 * MS);
    }

    #[test]
    fn sample_durations_round_trip() {
        let clock = FrameClock::new(16_000, 25, 1);
        assert_eq!(clock.samples_in(40 * MS), 640);
        assert_eq!(clock.samples_duration(640), 40 * MS);
        assert_eq!(clock.samples_in(u64::MAX), 295_147_905_179_352);
    }
}
