//! The counters behind the `stats` property.

use std::time::{Duration, Instant};

use super::engine::{Stages, Tally};
use crate::inference::{Acceleration, Device};

#[derive(Default)]
pub struct Stats {
    pub frames_out: u64,
    /// Frames through the generator, `silent_faces` of them to make a silent face.
    pub frames_inferred: u64,
    pub silent_faces: u64,
    /// Bytes of silent faces kept.
    pub silent_bytes: u64,
    /// Frames that showed their template's silent face, kept from before.
    pub frames_silent: u64,
    /// Frames that held a nearby frame's face, as inferring them would have made them late.
    pub frames_held: u64,
    /// Template frames shown for want of models.
    pub frames_idle: u64,
    /// Template frames shown because no face near them could be inferred in time.
    pub frames_late: u64,
    /// NaN or infinite audio samples replaced by silence.
    pub samples_non_finite: u64,
    pub last_batch: u32,
    /// What the generator runs on; `None` without models.
    pub runs_on: Option<(Acceleration, Device)>,
    /// The generator's graph is 8-bit quantized.
    pub generator_quantized: bool,
    /// Time spent rendering (features, generator, composition, conversion), and on the frames
    /// that went through the generator.
    render_time: Duration,
    inference_time: Duration,
    stages: Stages,
    first_output: Option<Instant>,
}

impl Stats {
    /// Counters at zero, for a stream whose generator runs on `runs_on`.
    pub fn new(runs_on: Option<(Acceleration, Device)>, generator_quantized: bool) -> Self {
        Stats {
            runs_on,
            generator_quantized,
            ..Stats::default()
        }
    }

    /// Adds what rendering a batch of `frames` frames did.
    pub fn count(&mut self, tally: &Tally, frames: usize) {
        self.render_time += tally.time;
        self.stages.add(&tally.stages);
        self.inference_time += tally.inference_time;
        self.last_batch = frames as u32;
        self.frames_inferred += tally.inferred;
        self.silent_faces += tally.silent_faces;
        self.frames_silent += tally.silent;
        self.frames_held += tally.held;
        self.frames_late += tally.late;
        self.frames_idle += tally.idle;
    }

    /// Counts a frame pushed downstream.
    pub fn count_out(&mut self) {
        self.frames_out += 1;
        self.first_output.get_or_insert_with(Instant::now);
    }

    pub fn to_structure(
        &self,
        batch_size: u32,
        queued_frames: usize,
        latency: gst::ClockTime,
    ) -> gst::Structure {
        let runs_on = self.runs_on.as_ref();
        let per_second = |frames: u64, time: Duration| {
            let seconds = time.as_secs_f64();
            if seconds > 0.0 {
                frames as f64 / seconds
            } else {
                0.0
            }
        };
        let rendered = self.frames_inferred
            + self.frames_silent
            + self.frames_held
            + self.frames_idle
            + self.frames_late;
        let ms_per = |time: Duration, frames: u64| {
            if frames > 0 {
                1e3 * time.as_secs_f64() / frames as f64
            } else {
                0.0
            }
        };
        let since_first = self.first_output.map_or(Duration::ZERO, |t| t.elapsed());
        gst::Structure::builder("application/x-talkinghead-stats")
            .field("frames-out", self.frames_out)
            .field("frames-inferred", self.frames_inferred)
            .field("silent-faces", self.silent_faces)
            .field("silent-bytes", self.silent_bytes)
            .field("frames-silent", self.frames_silent)
            .field("frames-held", self.frames_held)
            .field("frames-idle", self.frames_idle)
            .field("frames-late", self.frames_late)
            .field("samples-non-finite", self.samples_non_finite)
            .field("batch-size", batch_size)
            .field("last-batch", self.last_batch)
            .field("queued-frames", queued_frames as u64)
            .field("render-fps", per_second(rendered, self.render_time))
            .field(
                "inference-fps",
                per_second(self.frames_inferred, self.inference_time),
            )
            .field("output-fps", per_second(self.frames_out, since_first))
            .field("encoder-ms", ms_per(self.stages.encoder, rendered))
            .field(
                "generator-ms",
                ms_per(self.stages.generator, self.frames_inferred),
            )
            .field("image-ms", ms_per(self.stages.image, rendered))
            .field("convert-ms", ms_per(self.stages.convert, rendered))
            .field("latency", latency.nseconds())
            .field(
                "execution-provider",
                runs_on.map_or("none", |(acceleration, _)| acceleration.provider.name()),
            )
            .field(
                "device",
                runs_on.map_or("none".into(), |(_, device)| device.to_string()),
            )
            .field(
                "precision",
                runs_on.map_or("none", |(acceleration, _)| acceleration.precision.name()),
            )
            .field("generator-quantized", self.generator_quantized)
            .build()
    }
}
