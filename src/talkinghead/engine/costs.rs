//! What rendering a frame costs, for deciding whether a live batch can be inferred in time.
//!
//! Inference is only measured while frames are inferred; once a stream falls so far behind that
//! its batches infer nothing, its last measurement would say "too slow" for ever. Batches without
//! inference (held faces, silent faces, templates: "idle") are measured all the time, though, and
//! they slow down and speed up with the machine's load as inference does. So the inferred cost is
//! predicted as the last one measured, scaled by how the idle cost has changed since: when the
//! load that made inference late goes away, the prediction drops and the stream goes back to
//! inferring. A model that is simply too slow for the machine keeps its prediction.
//!
//! Batches without inference differ in what they cost (a kept silent face is a copy, a template a
//! JPEG decode), so between batches that infer, a cheaper one says nothing about the load: the
//! prediction only drops once no batch has inferred for [`STALE_AFTER`] batches.

use std::time::Duration;

/// A moving average of a duration.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Average(Option<Duration>);

impl Average {
    fn add(&mut self, sample: Duration) {
        self.0 = Some(match self.0 {
            Some(average) => average.mul_f64(0.7) + sample.mul_f64(0.3),
            None => sample,
        });
    }
}

/// Batches without inference in a row after which their cost may lower the prediction.
pub const STALE_AFTER: u32 = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Costs {
    inferred: Average,
    idle: Average,
    /// The idle cost when the inferred one was last measured (the first idle measurement after).
    idle_then: Option<Duration>,
    /// Batches without inference since the last that inferred.
    idle_batches: u32,
}

impl Costs {
    /// Records `frames` inferred frames that took `time` to render.
    pub fn add_inferred(&mut self, time: Duration, frames: usize) {
        if frames > 0 {
            self.inferred.add(time / frames as u32);
            self.idle_then = None;
            self.idle_batches = 0;
        }
    }

    /// Records `frames` idle frames that took `time` to render.
    pub fn add_idle(&mut self, time: Duration, frames: usize) {
        if frames > 0 {
            self.idle.add(time / frames as u32);
            self.idle_batches = self.idle_batches.saturating_add(1);
            if self.inferred.0.is_some() {
                self.idle_then = self.idle_then.or(self.idle.0);
            }
        }
    }

    /// The predicted time to infer `frames` frames (zero before any measurement).
    pub fn inferred(&self, frames: usize) -> Duration {
        let per_frame = self.inferred.0.unwrap_or_default();
        let load = match (self.idle.0, self.idle_then) {
            (Some(now), Some(then)) if !then.is_zero() => {
                (now.as_secs_f64() / then.as_secs_f64()).clamp(0.1, 10.0)
            }
            _ => 1.0,
        };
        let load = if self.idle_batches < STALE_AFTER {
            load.max(1.0)
        } else {
            load
        };
        per_frame.mul_f64(load) * frames as u32
    }

    /// The average inferred frame as last measured.
    pub fn inferred_frame(&self) -> Option<Duration> {
        self.inferred.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn predicts_from_the_average_of_inferred_frames() {
        let mut costs = Costs::default();
        assert_eq!(costs.inferred(4), Duration::ZERO);
        costs.add_inferred(80 * MS, 4);
        assert_eq!(costs.inferred(4), 80 * MS);
        costs.add_inferred(120 * MS, 4);
        // 0.7 × 20 ms + 0.3 × 30 ms a frame.
        assert_eq!(costs.inferred(1), 23 * MS);
    }

    #[test]
    fn load_that_goes_away_brings_inference_back() {
        let mut costs = Costs::default();
        // Under load: inference measured slow, then idle frames measured slow as well.
        costs.add_inferred(400 * MS, 4);
        for _ in 0..20 {
            costs.add_idle(40 * MS, 4);
        }
        assert_eq!(costs.inferred(1), 100 * MS);
        // The load goes: idle frames get ten times faster, and so does the prediction.
        for _ in 0..30 {
            costs.add_idle(4 * MS, 4);
        }
        let predicted = costs.inferred(1);
        assert!(predicted < 11 * MS, "{predicted:?}");
    }

    #[test]
    fn cheap_batches_between_inferred_ones_do_not_lower_the_prediction() {
        let mut costs = Costs::default();
        for _ in 0..10 {
            costs.add_idle(40 * MS, 4);
        }
        // Batches that infer, each followed by one of kept silent faces, much cheaper.
        for _ in 0..5 {
            costs.add_inferred(400 * MS, 4);
            costs.add_idle(4 * MS, 4);
        }
        assert_eq!(costs.inferred(1), 100 * MS);
    }

    #[test]
    fn a_model_too_slow_for_the_machine_stays_too_slow() {
        let mut costs = Costs::default();
        costs.add_idle(8 * MS, 4);
        costs.add_inferred(1200 * MS, 4);
        for _ in 0..50 {
            costs.add_idle(8 * MS, 4);
        }
        assert_eq!(costs.inferred(1), 300 * MS);
    }
}
