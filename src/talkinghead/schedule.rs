//! The live policy: when a frame is due, how long a batch may wait for more frames, whether it
//! can still be inferred in time, and what downstream QoS says is too late.
//!
//! Pure: the pipeline clock's time is passed in (as the time since the clock's zero), so every
//! rule is tested without a clock and without sleeping.

use std::time::Duration;

use super::engine::Costs;

/// Slack kept between a live batch's expected end and its deadline: this much, and an eighth of
/// the batch's predicted cost, for how much inference times vary from batch to batch.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// How long a batch predicted to take `cost` is given, slack included.
fn with_margin(cost: Duration) -> Duration {
    cost + cost / 8 + DEADLINE_MARGIN
}

/// A live stream's timing, in the pipeline clock's time: frame `n` is due downstream at
/// `base_time + running time + latency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub base_time: Duration,
    pub latency: Duration,
    /// What upstream reported: its audio reaches the element that long after it was captured.
    pub upstream_latency: Duration,
    /// The element's `max-latency`: what a frame may take, once its audio is in, to fill a batch
    /// and render.
    pub max_latency: Duration,
}

impl Live {
    /// The latency frames are due by: upstream's and the element's (`ours`, the two added), or
    /// the pipeline's if less. The rest of the pipeline latency belongs to the elements
    /// downstream (a sink's processing deadline, say). A pipeline latency below upstream's own
    /// is one no sink waits by (none downstream syncs to the clock, as webrtcbin's does not):
    /// `ours` then.
    pub fn latency(ours: Duration, pipeline: Option<Duration>, upstream: Duration) -> Duration {
        pipeline
            .filter(|&pipeline| pipeline >= upstream)
            .map_or(ours, |pipeline| pipeline.min(ours))
    }

    /// The clock time by which the frame at `running_time` must be downstream.
    pub fn deadline(&self, running_time: Duration) -> Duration {
        self.base_time + running_time + self.latency
    }

    /// When the frame at `running_time` must be made without its audio, if that has not come:
    /// half of `max-latency` before its deadline, keeping the other half to render it.
    pub fn next_frame_due(&self, running_time: Duration) -> Duration {
        self.deadline(running_time)
            .saturating_sub(self.max_latency / 2)
    }

    /// The running time up to which a live source has captured audio at `now`: what should have
    /// arrived by then.
    pub fn captured(&self, now: Duration) -> Duration {
        now.saturating_sub(self.base_time)
            .saturating_sub(self.upstream_latency)
    }

    /// Until when a batch of `frames` frames, the first due at `deadline`, may wait for one more
    /// frame: while all of them can still be inferred by the deadline, at what inference costs.
    pub fn gather_until(&self, deadline: Duration, costs: &Costs, frames: usize) -> Duration {
        deadline.saturating_sub(with_margin(costs.inferred(frames + 1)))
    }

    /// How late a batch of `frames` frames, the first due at `deadline`, would be if inferred
    /// from `now` at what inference costs; `None` when it is in time.
    pub fn late_by(
        &self,
        now: Duration,
        deadline: Duration,
        costs: &Costs,
        frames: usize,
    ) -> Option<Duration> {
        let done = now + with_margin(costs.inferred(frames));
        done.checked_sub(deadline).filter(|late| !late.is_zero())
    }

    /// How many of `frames` frames, the first due at `deadline`, can be inferred from `now` in
    /// time, at what inference costs.
    pub fn affordable(
        &self,
        now: Duration,
        deadline: Duration,
        costs: &Costs,
        frames: usize,
    ) -> usize {
        (1..=frames)
            .take_while(|&n| self.late_by(now, deadline, costs, n).is_none())
            .last()
            .unwrap_or(0)
    }
}

/// What downstream's QoS events say: the running time before which frames arrive too late.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qos {
    earliest: Option<Duration>,
}

impl Qos {
    /// Takes a QoS event: the frame at `timestamp` (running time) was `diff` nanoseconds late
    /// (negative: early). As GstVideoDecoder does, a frame late by `diff` means the next ones
    /// would be too until twice that has been made up.
    pub fn update(&mut self, timestamp: Option<Duration>, diff: i64, frame_duration: Duration) {
        self.earliest = timestamp.map(|timestamp| {
            let diff_ns = Duration::from_nanos(diff.unsigned_abs());
            if diff > 0 {
                timestamp + 2 * diff_ns + frame_duration
            } else {
                timestamp.saturating_sub(diff_ns)
            }
        });
    }

    /// Forgets what downstream said, as after a flush.
    pub fn reset(&mut self) {
        self.earliest = None;
    }

    /// How late the frame at `running_time` would arrive; `None` when in time.
    pub fn late_by(&self, running_time: Duration) -> Option<Duration> {
        let earliest = self.earliest?;
        (running_time < earliest).then(|| earliest - running_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A stream with models: 452.5 ms of look-ahead and 200 ms of `max-latency`.
    fn live() -> Live {
        Live {
            base_time: 1000 * MS,
            latency: Live::latency(652 * MS, None, Duration::ZERO),
            upstream_latency: Duration::ZERO,
            max_latency: 200 * MS,
        }
    }

    fn costs(per_frame: Duration) -> Costs {
        let mut costs = Costs::default();
        costs.add_inferred(per_frame * 4, 4);
        costs
    }

    /// Gathers a batch as the element's task does: frame `k` arrives at `arrivals[k]`, and the
    /// batch waits for it while `gather_until` allows. Returns the frames gathered.
    fn gather(live: &Live, costs: &Costs, arrivals: &[Duration], batch: usize) -> usize {
        let deadline = live.deadline(Duration::ZERO);
        let mut now = arrivals[0];
        let mut frames = 1;
        while frames < batch {
            let until = live.gather_until(deadline, costs, frames);
            match arrivals.get(frames) {
                Some(&arrival) if now < until && arrival <= until => {
                    now = now.max(arrival);
                    frames += 1;
                }
                _ => break,
            }
        }
        frames
    }

    #[test]
    fn a_batch_gathers_while_its_deadline_allows() {
        let live = live();
        let deadline = live.deadline(Duration::ZERO);
        assert_eq!(deadline, 1652 * MS);
        // Live audio: frame k's window is complete 452.5 ms after its start.
        let arrivals: Vec<Duration> = (0..16).map(|k| 1452 * MS + 40 * MS * k).collect();
        // At 20 ms a frame, frame k joins while 1452 + 40k <= 1652 − 22.5(k + 1) − 10.
        assert_eq!(gather(&live, &costs(20 * MS), &arrivals, 8), 3);
        // Cheaper frames wait for more; frames all queued already fill the batch.
        assert_eq!(gather(&live, &costs(5 * MS), &arrivals, 8), 5);
        let queued = vec![1452 * MS; 16];
        assert_eq!(gather(&live, &costs(20 * MS), &queued, 8), 8);
        // The gathered batch is in time: 3 frames from the time the third arrived.
        assert_eq!(live.late_by(1532 * MS, deadline, &costs(20 * MS), 3), None);
    }

    #[test]
    fn a_batch_too_late_to_infer_whole_infers_what_fits() {
        let live = live();
        let deadline = live.deadline(Duration::ZERO);
        let slow = costs(20 * MS);
        // 8 frames at 20 ms, an eighth more and 10 ms from 50 ms before the deadline: 140 ms late.
        assert_eq!(
            live.late_by(deadline - 50 * MS, deadline, &slow, 8),
            Some(140 * MS)
        );
        // No frame at all can be gathered for it.
        assert!(live.gather_until(deadline, &slow, 1) <= deadline - 50 * MS);
        // One frame still fits: 22.5 ms and 10 in 50 ms; four in 110 ms, not five.
        assert_eq!(live.late_by(deadline - 50 * MS, deadline, &slow, 1), None);
        assert_eq!(live.affordable(deadline - 50 * MS, deadline, &slow, 8), 1);
        assert_eq!(live.affordable(deadline - 110 * MS, deadline, &slow, 8), 4);
        assert_eq!(live.affordable(deadline - 500 * MS, deadline, &slow, 8), 8);
        assert_eq!(live.affordable(deadline - 20 * MS, deadline, &slow, 8), 0);
    }

    #[test]
    fn inference_comes_back_once_its_predicted_cost_drops() {
        let live = live();
        let deadline = live.deadline(Duration::ZERO);
        let now = deadline - 200 * MS;
        // Under load: inference measured at 100 ms a frame, idle frames at 10 ms.
        let mut costs = costs(100 * MS);
        for _ in 0..20 {
            costs.add_idle(40 * MS, 4);
        }
        assert!(live.late_by(now, deadline, &costs, 4).is_some());
        // The load goes: idle frames get ten times faster, and so does the prediction.
        for _ in 0..30 {
            costs.add_idle(4 * MS, 4);
        }
        assert_eq!(live.late_by(now, deadline, &costs, 4), None);
        assert!(live.gather_until(deadline, &costs, 4) > now);
    }

    #[test]
    fn qos_marks_frames_before_the_earliest_time_late() {
        let frame = 40 * MS;
        let mut qos = Qos::default();
        assert_eq!(qos.late_by(Duration::ZERO), None);
        // A frame at 1 s was 30 ms late: frames before 1 s + 60 ms + a frame are late too.
        qos.update(Some(1000 * MS), 30_000_000, frame);
        assert_eq!(qos.late_by(1000 * MS), Some(100 * MS));
        assert_eq!(qos.late_by(1099 * MS), Some(MS));
        assert_eq!(qos.late_by(1100 * MS), None);
        // Early frames move the earliest time back.
        qos.update(Some(2000 * MS), -5_000_000, frame);
        assert_eq!(qos.late_by(1994 * MS), Some(MS));
        assert_eq!(qos.late_by(1995 * MS), None);
        qos.update(None, 30_000_000, frame);
        assert_eq!(qos.late_by(Duration::ZERO), None);
        qos.update(Some(1000 * MS), 30_000_000, frame);
        qos.reset();
        assert_eq!(qos.late_by(Duration::ZERO), None);
    }

    #[test]
    fn missing_audio_is_due_half_the_maximum_latency_before_its_deadline() {
        let live = Live {
            upstream_latency: 20 * MS,
            ..live()
        };
        assert_eq!(live.next_frame_due(400 * MS), (1000 + 400 + 652 - 100) * MS);
        // At 1.5 s of clock time, audio captured up to 480 ms of running time has arrived.
        assert_eq!(live.captured(1500 * MS), 480 * MS);
        assert_eq!(live.captured(10 * MS), Duration::ZERO);
        assert_eq!(Live::latency(652 * MS, Some(2000 * MS), 20 * MS), 652 * MS);
        assert_eq!(Live::latency(652 * MS, Some(500 * MS), 20 * MS), 500 * MS);
        // no sink syncs: the pipeline's latency is 0, less than the audio's own
        assert_eq!(
            Live::latency(652 * MS, Some(Duration::ZERO), 20 * MS),
            652 * MS
        );
        assert_eq!(Live::latency(652 * MS, Some(10 * MS), 20 * MS), 652 * MS);
    }
}
