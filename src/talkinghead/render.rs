//! The source pad task's rendering: a batch gathered from the queue (audio fed to the engine on
//! the way), weighed, checked against its deadline and downstream QoS, rendered by the engine into
//! pooled buffers of the negotiated format, and sent to the push thread in order.

use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::engine::{Batch, Costs, Engine, EngineError, Tally};
use super::imp::{CAT, LiveClock, TalkingHead, clock_time, duration};
use super::output::{self, BufferError, OutputFormat};
use super::push::Outgoing;
use super::queue::{Item, Next};
use super::timeline::Frame;

/// Everything the source pad task renders with; only the task touches it.
#[derive(Default)]
pub(super) struct Renderer {
    pub engine: Option<Engine>,
    pub format: Option<OutputFormat>,
    /// The lists a batch is gathered and rendered into, kept from batch to batch.
    pub batch: Batch,
    pub buffers: Vec<Result<gst::Buffer, gst::FlowError>>,
}

impl TalkingHead {
    pub(super) fn apply_audio(&self, engine: &mut Engine, item: Item) {
        match item {
            Item::Audio {
                buffer,
                format,
                skip,
            } => {
                let Ok(map) = buffer.map_readable() else {
                    return;
                };
                // `skip` leading samples overlap audio already counted.
                let bytes = map.get(format.bytes() * skip..).unwrap_or(&[]);
                let non_finite = engine.push_audio(bytes, format) as u64;
                if non_finite > 0 {
                    self.report_non_finite(&buffer, non_finite);
                }
            }
            Item::Silence(samples) => engine.push_silence(samples),
            Item::EndOfAudio => engine.finish_audio(),
            Item::Restart => engine.restart(),
            Item::Frame(_) | Item::Event(_) | Item::Negotiate => unreachable!("not audio"),
        }
    }

    /// Counts samples that were NaN or infinite, and warns about the first buffer of a run that
    /// has any.
    pub(super) fn report_non_finite(&self, buffer: &gst::BufferRef, samples: u64) {
        let first = {
            let mut stats = self.stats.lock().unwrap();
            stats.samples_non_finite += samples;
            stats.samples_non_finite == samples
        };
        if first {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "Audio buffer at {} has {samples} NaN or infinite samples: replaced by \
                     silence (this warning is given once per run; the stats count them all)",
                    buffer.pts().display()
                )
            );
        }
    }

    /// Renders `first` and the frames queued right behind it, up to the batch size, and pushes
    /// them. Live, it waits for more frames while the first one's deadline allows, and infers
    /// only the share of the frames that the deadline and downstream QoS leave time for.
    pub(super) fn render_batch(
        &self,
        renderer: &mut Renderer,
        first: Frame,
        live: Option<&LiveClock>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.srcpad.check_reconfigure() {
            self.flush_in_flight(renderer)?;
            self.negotiate(renderer)?;
        }
        let threshold_db = self.settings.lock().unwrap().silence_threshold_db as f32;
        let Renderer {
            engine,
            format,
            batch,
            buffers,
        } = renderer;
        let Some(engine) = engine.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let costs = *engine.costs();
        let deadline = live.and_then(|live| live.deadline(first.pts));
        batch.clear();
        batch.push(first);
        while batch.len() < engine.batch_size() {
            // Live, a batch takes no more frames, queued or not, than can be inferred by the
            // first one's deadline; the rest start the next batch instead of being held.
            let gather_until = match (live, deadline) {
                (Some(live), Some(deadline)) => {
                    let until = live.timing.gather_until(deadline, &costs, batch.len());
                    if live.now() >= until {
                        break;
                    }
                    Some(live.instant(until))
                }
                _ => None,
            };
            match self.queue.next(false, gather_until) {
                Next::Item(Item::Frame(frame)) => batch.push(frame),
                Next::Item(audio) => self.apply_audio(engine, audio),
                Next::Timeout | Next::Nothing => break,
            }
        }

        // What each frame shows, and how many of the frames to infer there is time for.
        let rows = engine.plan(batch, threshold_db);
        let short = if rows > 0 {
            self.shortfall(live, deadline, batch.frames()[0], rows, &costs)
        } else {
            None
        };
        let Some(format) = format.as_mut() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        // A frame on a template kept converted needs only the template's region: the batch in
        // flight, converted before this one, can only add to what is kept.
        batch.read_whole(|template| format.converter.converts_whole(template));
        let span = (batch.frames()[0], batch.frames()[batch.len() - 1]);
        let batch_len = batch.len();
        buffers.clear();
        let tally = engine
            .render(
                batch,
                live.is_some(),
                short.map(|(budget, _)| budget),
                &mut |frame, bgr| {
                    buffers.push(self.output_buffer(format, frame, bgr));
                },
            )
            .map_err(|err| self.render_failed(err))?;
        if let Some((_, late_by)) = short {
            self.post_qos(live, span, tally.held + tally.late, late_by);
        }
        self.count(engine, &tally, batch_len);
        self.push_rendered(buffers)
    }

    /// Lands the batch in flight, if any, and pushes its frames: before anything else goes
    /// downstream, and when no more frames are queued to overlap it with.
    pub(super) fn flush_in_flight(
        &self,
        renderer: &mut Renderer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Renderer {
            engine,
            format,
            buffers,
            ..
        } = renderer;
        let (Some(engine), Some(format)) = (engine.as_mut(), format.as_mut()) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let frames = engine.in_flight();
        if frames == 0 {
            return Ok(gst::FlowSuccess::Ok);
        }
        buffers.clear();
        let tally = engine
            .land(&mut |frame, bgr| buffers.push(self.output_buffer(format, frame, bgr)))
            .map_err(|err| self.render_failed(err))?;
        self.count(engine, &tally, frames);
        self.push_rendered(buffers)
    }

    /// Adds what rendering `frames` frames did to the stats.
    fn count(&self, engine: &Engine, tally: &Tally, frames: usize) {
        let mut stats = self.stats.lock().unwrap();
        stats.count(tally, frames);
        stats.silent_bytes = engine.silent_bytes() as u64;
    }

    pub(super) fn render_failed(&self, err: EngineError) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
        gst::FlowError::Error
    }

    /// Sends rendered buffers to the push thread, in order; the first after a start or a flush
    /// is marked DISCONT. Draining drops the buffers left if sending fails.
    pub(super) fn push_rendered(
        &self,
        buffers: &mut Vec<Result<gst::Buffer, gst::FlowError>>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if buffers.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let discont = self.queue.take_discont();
        for (n, buffer) in buffers.drain(..).enumerate() {
            let mut buffer = buffer?;
            if n == 0 && discont {
                buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
            }
            self.pusher.send(Outgoing::Buffer(buffer))?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// How many of the `rows` frames to infer in a batch starting with `first` there is time
    /// for, when not all: what the predicted cost leaves of the time to the first frame's
    /// `deadline`, or none before the earliest running time downstream QoS asks for. With it,
    /// how late inferring them all would be. `None` when all are in time.
    pub(super) fn shortfall(
        &self,
        live: Option<&LiveClock>,
        deadline: Option<Duration>,
        first: Frame,
        rows: usize,
        costs: &Costs,
    ) -> Option<(usize, Duration)> {
        if let (Some(live), Some(deadline)) = (live, deadline) {
            let now = live.now();
            gst::log!(
                CAT,
                imp = self,
                "Batch from frame {}: {:?} to infer {rows} frames, {:?} to its deadline",
                first.index,
                costs.inferred(rows),
                deadline.saturating_sub(now)
            );
            if let Some(late_by) = live.timing.late_by(now, deadline, costs, rows) {
                let budget = live.timing.affordable(now, deadline, costs, rows);
                return Some((budget, late_by));
            }
        }
        let pts = gst::ClockTime::from_nseconds(first.pts);
        let running_time = self.state.lock().unwrap().segment.to_running_time(pts)?;
        let late_by = self
            .downstream
            .lock()
            .unwrap()
            .qos
            .late_by(duration(running_time))?;
        Some((0, late_by))
    }

    /// Tells the application that of the frames from `first` to `last`, `skipped` were not
    /// inferred, to keep up: they held a neighbour's face, or showed their template.
    pub(super) fn post_qos(
        &self,
        live: Option<&LiveClock>,
        (first, last): (Frame, Frame),
        skipped: u64,
        late_by: Duration,
    ) {
        let pts = gst::ClockTime::from_nseconds(first.pts);
        let (running_time, stream_time) = {
            let state = self.state.lock().unwrap();
            (
                state.segment.to_running_time(pts),
                state.segment.to_stream_time(pts),
            )
        };
        let (processed, dropped) = {
            let stats = self.stats.lock().unwrap();
            (
                stats.frames_out,
                stats.frames_late + stats.frames_held + skipped,
            )
        };
        gst::debug!(
            CAT,
            imp = self,
            "Frames {} to {} would be {} late: {skipped} of them not inferred",
            first.index,
            last.index,
            clock_time(late_by)
        );
        let jitter = late_by.as_nanos().try_into().unwrap_or(i64::MAX);
        let message = gst::message::Qos::builder(live.is_some())
            .running_time(running_time)
            .stream_time(stream_time)
            .timestamp(pts)
            .duration(gst::ClockTime::from_nseconds(
                last.pts + last.duration - first.pts,
            ))
            .values(jitter, 1.0, 1_000_000)
            .stats(
                gst::format::Buffers::from_u64(processed),
                gst::format::Buffers::from_u64(dropped),
            )
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(message);
    }

    /// Converts one rendered frame into a pooled buffer of the negotiated format.
    pub(super) fn output_buffer(
        &self,
        format: &mut OutputFormat,
        frame: &Frame,
        bgr: &[u8],
    ) -> Result<gst::Buffer, gst::FlowError> {
        format.buffer(frame, bgr).map_err(|err| match err {
            BufferError::Pool(flow) => flow,
            BufferError::Convert(err) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                gst::FlowError::Error
            }
        })
    }

    /// Picks the output format with downstream, sends the caps and sets up the buffer pool.
    pub(super) fn negotiate(
        &self,
        renderer: &mut Renderer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // What was rendered in the old format goes first.
        self.pusher.drain()?;
        self.srcpad.check_reconfigure();
        let budget = self.settings.lock().unwrap().template_cache_bytes();
        let Some(avatar) = self
            .resources
            .lock()
            .unwrap()
            .as_ref()
            .map(|resources| resources.avatar.clone())
        else {
            return Err(gst::FlowError::Flushing);
        };
        let (format, split) = output::negotiate(&self.srcpad, &avatar, budget).map_err(|err| {
            if let Some(message) = err.message() {
                self.post_error_message(message);
            }
            err.flow()
        })?;
        gst::debug!(
            CAT,
            imp = self,
            "Negotiated {:?}",
            self.srcpad.current_caps()
        );
        if let Some(engine) = renderer.engine.as_mut() {
            if let Some(Some(region)) = split.regions.first() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "Templates kept as the {}x{} box around the face",
                    region.width(),
                    region.height()
                );
            }
            engine.set_cache(split.decoded, split.regions);
        }
        renderer.format = Some(format);
        Ok(gst::FlowSuccess::Ok)
    }
}
