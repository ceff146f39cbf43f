//! `talkinghead`: speech audio in, video of a talking avatar out.
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! \
//!     talkinghead ! videoconvert ! autovideosink
//! ```
//!
//! The streaming thread counts audio on the frame grid ([`Timeline`]) and queues it, with the
//! frames it completes, for a task on the source pad ([`Queue`]). The task feeds the audio to the
//! [`Engine`], gathers frames into batches, renders them into pooled buffers of the negotiated
//! format ([`output`]) and hands them to the push thread ([`Pusher`]), which pushes them in order.
//! Frame `n` carries the timestamp `origin + n × frame duration`, where `origin` is the timestamp
//! of the stream's first audio; a stream of `d` seconds makes exactly `ceil(d × 25)` frames.
//!
//! # Live streams
//!
//! When upstream is live, frame `n` is due downstream at its running time plus the pipeline
//! latency. The element adds the audio look-ahead plus `max-latency` to the latency and spends the
//! latter waiting to fill a batch and rendering it. A batch that cannot be inferred in time infers
//! the share of its frames that fits, and the others hold the nearest inferred face (none when
//! downstream QoS says it is late: they hold the last face), with a QoS message; when audio stops
//! arriving, the task fills the missing audio with silence as each
//! frame falls due, so frames keep flowing at the frame rate. The rules are in [`schedule`].
//!
//! # Silence
//!
//! A frame whose whole audio window is below `silence-threshold` shows its template's silent face,
//! inferred once per template and kept (see the `engine` module).
//!
//! Lock order: `renderer` is the source pad task's, taken once per step of the task (and by
//! flush-stop and state changes while the task is stopped), before any other; then `settings` →
//! `resources` → `state` → the queue's lock. `stats` and `downstream` are only ever taken last. No
//! lock but `renderer` is held across a push or a wait, and the task waits only for what a flush
//! or a stop releases.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::engine::{self, Engine, SampleFormat};
use super::output;
use super::push::{Outgoing, Pusher};
use super::queue::{Item, Next, Queue};
use super::render::Renderer;
use super::resources::{self, Resources};
use super::schedule::{Live, Qos};
use super::settings::{self, DEFAULT_BATCH_SIZE, DEFAULT_START_FRAME, Settings};
use super::stats::Stats;
use super::timeline::{FRAME_CLOCK, ReadyFrames, Timeline};
use crate::audio::mel::SAMPLE_RATE;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "talkinghead",
        gst::DebugColorFlags::empty(),
        Some("Talking head renderer"),
    )
});

/// ONNX Runtime's own log (`GST_DEBUG=talkinghead-ort:4`).
static ORT_CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "talkinghead-ort",
        gst::DebugColorFlags::empty(),
        Some("ONNX Runtime, as the talkinghead element runs it"),
    )
});

/// Writes one ONNX Runtime log message to `talkinghead-ort`.
pub(super) fn log_onnx_runtime(level: ort::logging::LogLevel, location: &str, message: &str) {
    use ort::logging::LogLevel;
    match level {
        LogLevel::Fatal | LogLevel::Error => gst::error!(ORT_CAT, "{location}: {message}"),
        LogLevel::Warning => gst::warning!(ORT_CAT, "{location}: {message}"),
        LogLevel::Info => gst::info!(ORT_CAT, "{location}: {message}"),
        LogLevel::Verbose => gst::debug!(ORT_CAT, "{location}: {message}"),
    }
}

/// How often the task checks whether the generator is done with a batch in flight while no
/// frames are queued.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);
/// Frames queued between the streaming thread and the source pad task, in batches. Bounds memory,
/// and makes upstream wait when rendering falls behind instead of buffering without limit.
const QUEUED_BATCHES: usize = 2;

pub(super) fn duration(time: gst::ClockTime) -> Duration {
    Duration::from_nanos(time.nseconds())
}

pub(super) fn clock_time(duration: Duration) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(duration.as_nanos().try_into().unwrap_or(u64::MAX))
}

/// The sink side of one stream.
pub(super) struct State {
    pub timeline: Timeline,
    pub format: Option<SampleFormat>,
    /// Upstream is live, with this minimum latency (asked when caps arrive).
    pub live: bool,
    pub upstream_latency: gst::ClockTime,
    pub segment: gst::FormattedSegment<gst::ClockTime>,
}

impl State {
    fn new(timeline: Timeline) -> Self {
        Self {
            timeline,
            format: None,
            live: false,
            upstream_latency: gst::ClockTime::ZERO,
            segment: gst::FormattedSegment::new(),
        }
    }

    /// Restarts the frame grid, as after a flush; the negotiated format and latency stay.
    fn restart(&mut self) {
        self.timeline.restart();
        self.segment = gst::FormattedSegment::new();
    }
}

/// What downstream told the source pad: the pipeline latency, and QoS.
#[derive(Default)]
pub(super) struct Downstream {
    pub latency: Option<gst::ClockTime>,
    pub qos: Qos,
}

/// A live stream's timing for one step of the task: the policy's, with the clock it reads.
pub(super) struct LiveClock {
    clock: gst::Clock,
    pub timing: Live,
    pub segment: gst::FormattedSegment<gst::ClockTime>,
}

impl LiveClock {
    pub fn now(&self) -> Duration {
        duration(self.clock.time())
    }

    /// The clock time by which the frame at `pts` (nanoseconds) must be downstream.
    pub fn deadline(&self, pts: u64) -> Option<Duration> {
        let running_time = self
            .segment
            .to_running_time(gst::ClockTime::from_nseconds(pts))?;
        Some(self.timing.deadline(duration(running_time)))
    }

    /// The moment of this machine's clock the pipeline clock shows `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        Instant::now() + at.saturating_sub(self.now())
    }
}

pub struct TalkingHead {
    pub(super) sinkpad: gst::Pad,
    pub(super) srcpad: gst::Pad,
    pub(super) settings: Mutex<Settings>,
    /// What the current settings load; reloaded when they change.
    pub(super) resources: Mutex<Option<Resources>>,
    pub(super) state: Mutex<State>,
    pub(super) queue: Queue,
    pub(super) renderer: Mutex<Renderer>,
    /// Takes what the source pad task rendered downstream.
    pub(super) pusher: Pusher,
    pub(super) stats: Mutex<Stats>,
    pub(super) downstream: Mutex<Downstream>,
}

impl TalkingHead {
    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        let Some(format) = state.format else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received audio before caps")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        if buffer.size() % format.bytes() != 0 {
            gst::warning!(
                CAT,
                imp = self,
                "Buffer of {} bytes is not a whole number of samples",
                buffer.size()
            );
        }
        let samples = (buffer.size() / format.bytes()) as u64;
        let start = state.segment.start().map_or(0, gst::ClockTime::nseconds);
        let pts = buffer.pts().map(gst::ClockTime::nseconds);
        let placement = state.timeline.place_audio(pts, start, samples);
        if placement.silence > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "Audio resumes {} later than its samples run: filling with silence",
                gst::ClockTime::from_nseconds(FRAME_CLOCK.samples_duration(placement.silence))
            );
        }
        if placement.skip > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "Dropping {} samples of audio over time already covered",
                placement.skip
            );
        }
        let frames = state.timeline.take_ready(false);
        let items = [
            (placement.silence > 0).then_some(Item::Silence(placement.silence)),
            (placement.skip < samples).then_some(Item::Audio {
                buffer,
                format,
                skip: placement.skip as usize,
            }),
        ];
        self.enqueue(state, items, frames, None)
    }

    /// Queues `items`, `frames` and `last` for the source pad task, in that order.
    ///
    /// Live streams queue under the state lock without waiting: the task, which also queues frames
    /// of silence when audio stops coming, keeps the queue short by not inferring late frames,
    /// and upstream must never be held up. Otherwise the streaming thread waits while the queue is
    /// full.
    fn enqueue(
        &self,
        state: MutexGuard<'_, State>,
        items: impl IntoIterator<Item = Option<Item>>,
        frames: ReadyFrames,
        last: Option<Item>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let items = items.into_iter().flatten();
        if state.live {
            return self
                .queue
                .push_now(items.chain(frames.map(Item::Frame)).chain(last));
        }
        drop(state);
        for item in items {
            if !self.queue.push(item) {
                return Err(gst::FlowError::Flushing);
            }
        }
        self.queue.push_frames(frames)?;
        if let Some(item) = last
            && !self.queue.push(item)
        {
            return Err(gst::FlowError::Flushing);
        }
        self.queue.flow()
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;

        gst::log!(CAT, obj = pad, "Handling event {event:?}");
        match event.view() {
            EventView::Caps(caps) => {
                let info = match gst_audio::AudioInfo::from_caps(caps.caps()) {
                    Ok(info) => info,
                    Err(err) => {
                        gst::error!(CAT, obj = pad, "Invalid audio caps: {err}");
                        return false;
                    }
                };
                let format = match info.format() {
                    gst_audio::AudioFormat::S16le => SampleFormat::S16,
                    _ => SampleFormat::F32,
                };
                let mut upstream = gst::query::Latency::new();
                let (live, upstream_latency) = if self.sinkpad.peer_query(&mut upstream) {
                    let (live, min, _) = upstream.result();
                    (live, min)
                } else {
                    (false, gst::ClockTime::ZERO)
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "Upstream live: {live}, latency {upstream_latency}"
                );
                {
                    let mut state = self.state.lock().unwrap();
                    state.format = Some(format);
                    state.live = live;
                    state.upstream_latency = upstream_latency;
                }
                self.queue.push(Item::Negotiate)
            }
            EventView::Segment(segment) => {
                let Ok(segment) = segment.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Only TIME segments are supported, got {:?}",
                            segment.segment()
                        )
                    );
                    return false;
                };
                self.state.lock().unwrap().segment = segment;
                self.queue.push(Item::Event(event))
            }
            EventView::Gap(gap) => {
                let (timestamp, duration) = gap.get();
                let end = timestamp + duration.unwrap_or(gst::ClockTime::ZERO);
                let mut state = self.state.lock().unwrap();
                let silence = state.timeline.gap(timestamp.nseconds(), end.nseconds());
                let frames = state.timeline.take_ready(false);
                let queued = self.enqueue(state, [Some(Item::Silence(silence))], frames, None);
                queued != Err(gst::FlowError::Flushing)
            }
            EventView::Eos(_) => {
                let mut state = self.state.lock().unwrap();
                let frames = state.timeline.take_ready(true);
                let queued = self.enqueue(
                    state,
                    [Some(Item::EndOfAudio)],
                    frames,
                    Some(Item::Event(event)),
                );
                queued != Err(gst::FlowError::Flushing)
            }
            EventView::FlushStart(_) => {
                self.queue.reset(true, []);
                self.pusher.flush_start();
                let forwarded = self.srcpad.push_event(event);
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => {
                // The task is paused: the batch in flight belongs to the flushed stream.
                if let Some(engine) = self.renderer.lock().unwrap().engine.as_mut() {
                    engine.discard_in_flight();
                }
                // Once a push in progress has returned.
                self.pusher.flush_stop();
                let has_caps = {
                    let mut state = self.state.lock().unwrap();
                    state.restart();
                    state.format.is_some()
                };
                self.downstream.lock().unwrap().qos.reset();
                // A stream-start the flush cut short downstream goes again.
                let stream_start = match self.srcpad.sticky_event::<gst::event::StreamStart>(0) {
                    Some(_) => None,
                    None => self.sinkpad.sticky_event::<gst::event::StreamStart>(0),
                };
                let restart = stream_start
                    .map(|event| Item::Event(event.into()))
                    .into_iter()
                    .chain([Item::Restart])
                    // A negotiation cut short by the flush left no caps on the source pad.
                    .chain(has_caps.then_some(Item::Negotiate));
                self.queue.reset(false, restart);
                let forwarded = self.srcpad.push_event(event);
                forwarded && self.start_task().is_ok()
            }
            _ if event.is_serialized() => self.queue.push(Item::Event(event)),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;

        match query.view_mut() {
            QueryViewMut::Caps(query) => {
                let caps = match &*self.resources.lock().unwrap() {
                    Some(resources) => output::avatar_caps(&resources.avatar),
                    None => pad.pad_template_caps(),
                };
                let caps = match query.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                };
                query.set_result(&caps);
                true
            }
            QueryViewMut::Latency(query) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = if live {
                    self.added_latency()
                } else {
                    gst::ClockTime::ZERO
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "Upstream latency {min}/{max:?}, ours {ours}"
                );
                query.set(live, min + ours, max.map(|max| max + ours));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// What the element holds a frame back by: the audio its feature window reads past its start
    /// (with models), plus `max-latency` to fill a batch and render it once its audio is in.
    fn added_latency(&self) -> gst::ClockTime {
        let max_latency = self.settings.lock().unwrap().max_latency;
        let look_ahead = self.state.lock().unwrap().timeline.look_ahead_ns();
        gst::ClockTime::from_nseconds(look_ahead) + max_latency
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;

        match event.view() {
            EventView::Latency(latency) => {
                gst::debug!(CAT, imp = self, "Pipeline latency {}", latency.latency());
                self.downstream.lock().unwrap().latency = Some(latency.latency());
            }
            EventView::Qos(qos) => {
                let (_, proportion, diff, timestamp) = qos.get();
                gst::log!(CAT, imp = self, "QoS: proportion {proportion}, diff {diff}");
                let frame = Duration::from_nanos(FRAME_CLOCK.duration(0));
                self.downstream
                    .lock()
                    .unwrap()
                    .qos
                    .update(timestamp.map(duration), diff, frame);
            }
            _ => (),
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_activate_mode(
        &self,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "Only push mode is supported"));
        }
        if active {
            self.queue.reset(false, []);
            let element = self.obj().downgrade();
            self.pusher
                .start(
                    &format!("{}:push", self.obj().name()),
                    move |item| match element.upgrade() {
                        Some(element) => element.imp().push_downstream(item),
                        None => Err(gst::FlowError::Flushing),
                    },
                )
                .map_err(|err| gst::loggable_error!(CAT, "Failed to start pushing: {err}"))?;
            self.start_task()
                .map_err(|err| gst::loggable_error!(CAT, "Failed to start task: {err}"))
        } else {
            self.queue.reset(true, []);
            self.pusher.flush_start();
            let stopped = self
                .srcpad
                .stop_task()
                .map_err(|err| gst::loggable_error!(CAT, "Failed to stop task: {err}"));
            self.pusher.stop();
            stopped
        }
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let element = self.obj().downgrade();
        let pad = self.srcpad.downgrade();
        self.srcpad.start_task(move || match element.upgrade() {
            Some(element) => {
                let imp = element.imp();
                if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| imp.output_loop())) {
                    imp.task_panicked(&*payload);
                }
            }
            None => {
                if let Some(pad) = pad.upgrade() {
                    let _ = pad.pause_task();
                }
            }
        })
    }

    /// A panic while rendering is an element error, like a failed flow: the chain hands the
    /// error upstream, EOS goes downstream and the task stops. The locks the panic poisoned are
    /// released, so the element can still stop and start again.
    fn task_panicked(&self, payload: &(dyn std::any::Any + Send)) {
        let message = crate::fault::panic_message(payload);
        self.renderer.clear_poison();
        self.stats.clear_poison();
        if let Some(models) = self
            .resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|resources| resources.models.as_ref())
        {
            models.clear_poison();
        }
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Rendering failed: {message}"),
            ["the source pad task panicked; streaming stopped"]
        );
        self.queue.stop(gst::FlowError::Error);
        let _ = self.pusher.send(Outgoing::Event(gst::event::Eos::new()));
        let _ = self.srcpad.pause_task();
    }

    /// One step of the source pad task: the next item, or a batch of frames with the audio
    /// queued among them, sent downstream.
    fn output_loop(&self) {
        let mut renderer = self.renderer.lock().unwrap();
        let live = self.live();
        let in_flight = renderer
            .engine
            .as_ref()
            .is_some_and(|engine| engine.in_flight() > 0);
        // With nothing queued, a batch in flight goes out once the generator is done with it
        // (unless frames to overlap it with come first), and a live stream wakes when the next
        // frame falls due.
        let wake_at = if in_flight {
            Some(Instant::now() + IN_FLIGHT_POLL)
        } else {
            live.as_ref()
                .and_then(|live| Some(live.instant(self.next_frame_due(live)?)))
        };
        let first = match self.queue.next(true, wake_at) {
            Next::Item(item) => item,
            Next::Timeout if in_flight => {
                if renderer
                    .engine
                    .as_mut()
                    .is_none_or(|engine| engine.generator_done())
                {
                    let result = self.flush_in_flight(&mut renderer);
                    self.handle_flow(result);
                }
                return;
            }
            Next::Timeout => {
                if let Some(live) = &live {
                    self.fill_silence(live);
                }
                return;
            }
            Next::Nothing => {
                let _ = self.srcpad.pause_task();
                return;
            }
        };
        let result = match first {
            Item::Frame(frame) => self.render_batch(&mut renderer, frame, live.as_ref()),
            Item::Event(event) => {
                let eos = matches!(event.view(), gst::EventView::Eos(_));
                self.flush_in_flight(&mut renderer).and_then(|_| {
                    match self.pusher.send(Outgoing::Event(event)) {
                        // Nothing follows EOS until a flush restarts the task.
                        Ok(()) if eos => Err(gst::FlowError::Eos),
                        Ok(()) => Ok(gst::FlowSuccess::Ok),
                        Err(err) => Err(err),
                    }
                })
            }
            Item::Negotiate => self
                .flush_in_flight(&mut renderer)
                .and_then(|_| self.negotiate(&mut renderer)),
            item => {
                if let Some(engine) = renderer.engine.as_mut() {
                    self.apply_audio(engine, item);
                }
                Ok(gst::FlowSuccess::Ok)
            }
        };
        self.handle_flow(result);
    }

    /// After a failed step of the task: EOS downstream on an error, and the task paused.
    fn handle_flow(&self, result: Result<gst::FlowSuccess, gst::FlowError>) {
        if let Err(err) = result {
            // A failed push was reported by the push thread.
            if self.pusher.failed().is_none() && self.stream_stopped(err) {
                let _ = self.pusher.send(Outgoing::Event(gst::event::Eos::new()));
            }
            let _ = self.srcpad.pause_task();
        }
    }

    /// Stops the stream on `err`: posts an error unless it is FLUSHING or EOS (before upstream
    /// sees the flow return), and hands `err` to upstream. Returns whether it was an error, after
    /// which EOS must go downstream.
    fn stream_stopped(&self, err: gst::FlowError) -> bool {
        let fatal = !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos);
        if fatal {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error"),
                ["streaming stopped, reason {err:?}"]
            );
        } else {
            gst::debug!(CAT, imp = self, "Stopping: {err:?}");
        }
        self.queue.stop(err);
        fatal
    }

    /// Pushes one rendered buffer or event; runs on the push thread.
    fn push_downstream(&self, item: Outgoing) -> Result<(), gst::FlowError> {
        let buffer = match item {
            Outgoing::Buffer(buffer) => buffer,
            Outgoing::Event(event) => {
                if !self.srcpad.push_event(event) {
                    gst::debug!(CAT, imp = self, "Downstream refused an event");
                }
                return Ok(());
            }
        };
        gst::trace!(CAT, imp = self, "Pushing {buffer:?}");
        if let Err(err) = self.srcpad.push(buffer) {
            if self.stream_stopped(err) {
                self.srcpad.push_event(gst::event::Eos::new());
            }
            return Err(err);
        }
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count_out();
        Ok(())
    }

    /// The timing of a live stream with a running clock; `None` otherwise.
    fn live(&self) -> Option<LiveClock> {
        let (segment, upstream_latency, look_ahead) = {
            let state = self.state.lock().unwrap();
            if !state.live {
                return None;
            }
            let look_ahead = state.timeline.look_ahead_ns();
            (state.segment.clone(), state.upstream_latency, look_ahead)
        };
        let element = self.obj();
        let clock = element.clock()?;
        let base_time = element.base_time()?;
        let max_latency = duration(self.settings.lock().unwrap().max_latency);
        let ours = duration(upstream_latency) + Duration::from_nanos(look_ahead) + max_latency;
        let pipeline = self.downstream.lock().unwrap().latency.map(duration);
        Some(LiveClock {
            clock,
            timing: Live {
                base_time: duration(base_time),
                latency: Live::latency(ours, pipeline, duration(upstream_latency)),
                upstream_latency: duration(upstream_latency),
                max_latency,
            },
            segment,
        })
    }

    /// When the next frame not yet queued must be made without its audio.
    fn next_frame_due(&self, live: &LiveClock) -> Option<Duration> {
        let state = self.state.lock().unwrap();
        let pts = state.timeline.pts(state.timeline.next_frame())?;
        let running_time = live
            .segment
            .to_running_time(gst::ClockTime::from_nseconds(pts))?;
        Some(live.timing.next_frame_due(duration(running_time)))
    }

    /// Live audio stopped coming: counts what should have arrived by now as silence, at least
    /// enough to complete the next frame, and queues the frames that completes.
    fn fill_silence(&self, live: &LiveClock) {
        let captured = clock_time(live.timing.captured(live.now()));
        let mut state = self.state.lock().unwrap();
        if state.timeline.origin().is_none() {
            return;
        }
        let position = state
            .segment
            .position_from_running_time(captured)
            .map(gst::ClockTime::nseconds);
        let next = state.timeline.next_frame();
        let silence = state.timeline.fill_silence(position);
        gst::debug!(
            CAT,
            imp = self,
            "No audio for frame {next} by its deadline: {} of silence",
            gst::ClockTime::from_nseconds(FRAME_CLOCK.samples_duration(silence))
        );
        let frames = state.timeline.take_ready(false);
        let _ = self.enqueue(state, [Some(Item::Silence(silence))], frames, None);
    }

    /// Properties that are mutable in READY only are refused, with a warning, once the element
    /// streams: the running engine would silently keep the old value.
    fn property_writable_now(&self, pspec: &glib::ParamSpec) -> bool {
        let state = self.obj().current_state();
        if state <= gst::State::Ready || !pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY) {
            return true;
        }
        gst::element_imp_warning!(
            self,
            gst::LibraryError::Settings,
            (
                "Property '{}' can only be changed in the NULL or READY state, not in {state:?}: \
                 the change is ignored",
                pspec.name()
            )
        );
        false
    }

    /// Loads and checks what the current settings name, unless it already is, and warms the
    /// models up at the batch size.
    fn load_resources(&self) -> Result<(), gst::ErrorMessage> {
        let (wanted, batch) = {
            let settings = self.settings.lock().unwrap();
            (settings.wanted(), settings.batch_size as usize)
        };
        let mut loaded = self.resources.lock().unwrap();
        if loaded
            .as_ref()
            .is_none_or(|resources| resources.wanted != wanted)
        {
            *loaded = None;
            let resources = resources::load(&wanted)
                .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
            if let Some(models) = &resources.models {
                let cost = engine::warm_up(&resources.avatar, models, batch).map_err(|err| {
                    gst::error_msg!(gst::LibraryError::Init, ("Warming up: {err}"))
                })?;
                models.set_frame_cost(cost);
            }
            for note in &resources.notes {
                gst::info!(CAT, imp = self, "{note}");
            }
            *loaded = Some(resources);
        }
        Ok(())
    }

    /// Makes the per-stream state and the engine for the loaded resources.
    fn start_engine(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let (avatar, models) = {
            let loaded = self.resources.lock().unwrap();
            let resources = loaded
                .as_ref()
                .expect("resources load before the engine starts");
            (resources.avatar.clone(), resources.models.clone())
        };
        let batch_size = settings.batch_size as usize;
        let timeline = Timeline::new(avatar.frames.len(), settings.start_frame, models.is_some());
        let runs_on = models
            .as_ref()
            .map(|models| (models.acceleration.clone(), models.device.clone()));
        let quantized = models
            .as_ref()
            .is_some_and(|models| models.generator.lock().unwrap().quantized());
        let engine = Engine::new(
            avatar,
            models,
            batch_size,
            (
                settings.template_cache_bytes(),
                settings.silent_cache_bytes(),
            ),
            settings.blend_frames,
        )
        .map_err(|err| gst::error_msg!(gst::LibraryError::Init, ("{err}")))?;
        gst::debug!(
            CAT,
            imp = self,
            "Inferring a frame takes {:?}",
            engine.costs().inferred_frame()
        );
        *self.state.lock().unwrap() = State::new(timeline);
        self.queue.set_max_frames(QUEUED_BATCHES * batch_size);
        self.pusher.set_limit(QUEUED_BATCHES * batch_size);
        *self.stats.lock().unwrap() = Stats::new(runs_on, quantized);
        self.renderer.lock().unwrap().engine = Some(engine);
        *self.downstream.lock().unwrap() = Downstream::default();
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TalkingHead {
    const NAME: &'static str = "GstTalkingHead";
    type Type = super::TalkingHead;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                TalkingHead::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                TalkingHead::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .event_function(|pad, parent, event| {
                TalkingHead::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                TalkingHead::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .activatemode_function(|_pad, parent, mode, active| {
                TalkingHead::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "Panic activating src pad")),
                    |this| this.src_activate_mode(mode, active),
                )
            })
            .build();

        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            resources: Mutex::new(None),
            state: Mutex::new(State::new(Timeline::new(0, DEFAULT_START_FRAME, false))),
            queue: Queue::new(QUEUED_BATCHES * DEFAULT_BATCH_SIZE as usize),
            renderer: Mutex::new(Renderer::default()),
            pusher: Pusher::new(QUEUED_BATCHES * DEFAULT_BATCH_SIZE as usize),
            stats: Mutex::new(Stats::default()),
            downstream: Mutex::new(Downstream::default()),
        }
    }
}

impl ObjectImpl for TalkingHead {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if !self.property_writable_now(pspec) {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        let max_latency = settings.max_latency;
        settings.set(pspec.name(), value);
        gst::info!(CAT, imp = self, "{} set to {value:?}", pspec.name());
        if settings.max_latency != max_latency {
            drop(settings);
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            let latency = self.added_latency();
            let batch_size = self.settings.lock().unwrap().batch_size;
            let queued_frames = self.queue.frames();
            let stats = self.stats.lock().unwrap();
            return stats
                .to_structure(batch_size, queued_frames, latency)
                .to_value();
        }
        self.settings.lock().unwrap().value(pspec.name())
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for TalkingHead {}

impl ElementImpl for TalkingHead {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Talking head",
                "Converter/Audio/Video",
                "Turns speech into lip-synced video of an avatar (SyncTalk_2D-compatible)",
                "gst-talkinghead developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format_list([gst_audio::AudioFormat::F32le, gst_audio::AudioFormat::S16le])
                .rate(SAMPLE_RATE as i32)
                .channels(1)
                .build();
            let src_caps = output::template_caps();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "Changing state {transition:?}");
        match transition {
            gst::StateChange::NullToReady => {
                self.load_resources().map_err(|err| {
                    self.post_error_message(err);
                    gst::StateChangeError
                })?;
            }
            // Properties may have changed in READY.
            gst::StateChange::ReadyToPaused => {
                self.load_resources()
                    .and_then(|()| self.start_engine())
                    .map_err(|err| {
                        self.post_error_message(err);
                        gst::StateChangeError
                    })?;
            }
            _ => (),
        }

        let success = self.parent_change_state(transition)?;

        match transition {
            gst::StateChange::PausedToReady => {
                *self.renderer.lock().unwrap() = Renderer::default();
                self.state.lock().unwrap().restart();
            }
            gst::StateChange::ReadyToNull => {
                *self.resources.lock().unwrap() = None;
                *self.state.lock().unwrap() =
                    State::new(Timeline::new(0, DEFAULT_START_FRAME, false));
            }
            _ => (),
        }
        Ok(success)
    }
}
