//! `talkinghead`: speech audio in, video of a talking avatar out.
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! \
//!     talkinghead ! videoconvert ! autovideosink
//! ```
//!
//! The streaming thread only counts audio and queues it, with the frames it completes, for a task
//! on the source pad. The task computes the audio features, renders frames in batches (template,
//! generator, paste, conversion into pooled buffers) and pushes them in order. Frame `n` carries
//! the timestamp `origin + n × frame duration`, where `origin` is the timestamp of the stream's
//! first audio; a stream of `d` seconds makes exactly `ceil(d × 25)` frames. With models, frame
//! `n` is complete once the audio its feature window reads (about 0.45 s past its start) is in;
//! without, once its first sample is.
//!
//! Lock order, where more than one is held: `settings` → `resources` → `state` → `output`.
//! `renderer` is taken by the source pad task (and by state changes while the task is stopped),
//! never together with another lock; `stats` is only ever taken alone. No lock is held across a push, and `output` is
//! released while waiting on its condition variable.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::clock::FrameClock;
use super::resources::{self, Models, Resources, Wanted};
use crate::audio::features::samples_needed_for_frame;
use crate::audio::stream::FeatureStream;
use crate::avatar::Avatar;
use crate::synth::{FrameRequest, FrameSynth};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "talkinghead",
        gst::DebugColorFlags::empty(),
        Some("Talking head renderer"),
    )
});

const DEFAULT_AVATAR: Option<&str> = None;
const DEFAULT_START_FRAME: u32 = 0;
const DEFAULT_GENERATOR: Option<&str> = None;
const DEFAULT_AUDIO_ENCODER: Option<&str> = None;
const DEFAULT_ORT_LIBRARY: Option<&str> = None;
const DEFAULT_BATCH_SIZE: u32 = 8;

/// The audio rate the SyncTalk_2D mel front-end is defined at.
const SAMPLE_RATE: u32 = 16_000;
/// SyncTalk_2D avatars and their models are made at 25 frames per second.
const FPS: gst::Fraction = gst::Fraction::from_integer(25);
/// Frames queued between the streaming thread and the source pad task, in batches. Bounds memory,
/// and makes upstream wait when rendering falls behind instead of buffering without limit.
const QUEUED_BATCHES: usize = 2;
/// Output formats; the first is the one chosen when downstream accepts anything, and I420 is what
/// encoders want (RGB into x264enc would give High 4:4:4).
const VIDEO_FORMATS: [gst_video::VideoFormat; 8] = [
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Rgba,
];

fn frame_clock() -> FrameClock {
    FrameClock::new(SAMPLE_RATE, FPS.numer() as u32, FPS.denom() as u32)
}

#[derive(Debug, Clone, PartialEq)]
struct Settings {
    avatar: Option<String>,
    start_frame: u32,
    generator: Option<String>,
    audio_encoder: Option<String>,
    ort_library: Option<String>,
    batch_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: DEFAULT_AVATAR.map(String::from),
            start_frame: DEFAULT_START_FRAME,
            generator: DEFAULT_GENERATOR.map(String::from),
            audio_encoder: DEFAULT_AUDIO_ENCODER.map(String::from),
            ort_library: DEFAULT_ORT_LIBRARY.map(String::from),
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl Settings {
    fn wanted(&self) -> Wanted {
        Wanted {
            avatar: self.avatar.as_ref().map(PathBuf::from),
            generator: self.generator.as_ref().map(PathBuf::from),
            audio_encoder: self.audio_encoder.as_ref().map(PathBuf::from),
            ort_library: self.ort_library.as_ref().map(PathBuf::from),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SampleFormat {
    S16,
    F32,
}

/// The sink side of one stream: how much audio has arrived and how many frames it made.
struct State {
    avatar: Option<Arc<Avatar>>,
    start_frame: u32,
    /// Frames wait for the audio their feature window reads (there are models).
    look_ahead: bool,
    format: Option<SampleFormat>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Timestamp of frame 0: the first audio buffer's, or the segment start.
    origin: Option<gst::ClockTime>,
    /// Audio samples since `origin`, GAP events counted as silence.
    samples: u64,
    frames_queued: u64,
}

impl State {
    fn new(avatar: Option<Arc<Avatar>>, start_frame: u32, look_ahead: bool) -> Self {
        Self {
            avatar,
            start_frame,
            look_ahead,
            format: None,
            segment: gst::FormattedSegment::new(),
            origin: None,
            samples: 0,
            frames_queued: 0,
        }
    }

    /// Restarts the frame grid, as after a flush; the negotiated format stays.
    fn restart(&mut self) {
        *self = Self {
            format: self.format,
            ..Self::new(self.avatar.take(), self.start_frame, self.look_ahead)
        };
    }

    /// The frames the audio so far completes, or at the end of the stream (`at_eos`) all the
    /// audio started.
    fn take_ready_frames(&mut self, clock: &FrameClock, at_eos: bool) -> Vec<Frame> {
        let (Some(avatar), Some(origin)) = (&self.avatar, self.origin) else {
            return Vec::new();
        };
        let started = clock.frames_started(self.samples);
        let mut ready = self.frames_queued;
        while ready < started
            && (at_eos
                || !self.look_ahead
                || samples_needed_for_frame(ready as usize) <= self.samples)
        {
            ready += 1;
        }
        let frames = (self.frames_queued..ready)
            .map(|index| Frame {
                index,
                template: avatar.template_index(index, self.start_frame),
                pts: origin + gst::ClockTime::from_nseconds(clock.pts_offset(index)),
                duration: gst::ClockTime::from_nseconds(clock.duration(index)),
            })
            .collect();
        self.frames_queued = ready;
        frames
    }
}

/// One output frame to render.
struct Frame {
    index: u64,
    template: usize,
    pts: gst::ClockTime,
    duration: gst::ClockTime,
}

/// What the streaming thread hands to the source pad task, in stream order.
enum Item {
    /// Upstream caps arrived: negotiate the output before anything that follows.
    Negotiate,
    /// A new stream starts after a flush: forget the audio of the old one.
    Restart,
    Audio(gst::Buffer, SampleFormat),
    /// Samples of silence, for a GAP.
    Silence(u64),
    /// All the audio is in: the last frames' features become final.
    EndOfAudio,
    Event(gst::Event),
    Frame(Frame),
}

/// The queue between the streaming thread and the source pad task.
struct Output {
    items: VecDeque<Item>,
    frames: usize,
    max_frames: usize,
    flushing: bool,
    /// The last flow return downstream gave the task, handed back upstream by the chain.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The next frame starts a new stretch (after start or flush).
    discont: bool,
}

impl Output {
    fn reset(&mut self, flushing: bool) {
        self.items.clear();
        self.frames = 0;
        self.flushing = flushing;
        self.flow = Ok(gst::FlowSuccess::Ok);
        self.discont = true;
    }
}

/// Everything the source pad task needs to render frames; only the task touches it.
#[derive(Default)]
struct Renderer {
    engine: Option<Engine>,
    format: Option<OutputFormat>,
}

/// The per-stream rendering machinery, made when the element starts.
struct Engine {
    avatar: Arc<Avatar>,
    models: Option<Arc<Mutex<Models>>>,
    features: FeatureStream,
    synth: FrameSynth,
    /// Audio converted to f32, reused from buffer to buffer.
    samples: Vec<f32>,
}

impl Engine {
    fn push_audio(&mut self, buffer: &gst::BufferRef, format: SampleFormat) {
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        self.samples.clear();
        match format {
            SampleFormat::S16 => self.samples.extend(
                map.chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
            ),
            SampleFormat::F32 => self.samples.extend(
                map.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .map(|v| if v.is_finite() { v } else { 0.0 }),
            ),
        }
        self.features.push(&self.samples);
    }

    fn push_silence(&mut self, mut samples: u64) {
        const ZEROS: [f32; 1024] = [0.0; 1024];
        while samples > 0 {
            let n = samples.min(ZEROS.len() as u64) as usize;
            self.features.push(&ZEROS[..n]);
            samples -= n as u64;
        }
    }

    /// Renders a batch into the synthesiser's slots.
    fn render(&mut self, requests: &[FrameRequest]) -> Result<(), String> {
        let Some(models) = &self.models else {
            return self.synth.render_templates(&self.avatar, requests);
        };
        let mut models = models.lock().unwrap();
        let Models { encoder, generator } = &mut *models;
        self.features
            .encode(|windows, outputs| encoder.run(windows, outputs))
            .map_err(|err| err.to_string())?;
        self.synth.render_speech(
            &self.avatar,
            requests,
            &self.features,
            |images, audio, output| {
                generator
                    .run(images, audio, output)
                    .map_err(|err| err.to_string())
            },
        )?;
        if let Some(last) = requests.last() {
            self.features.release_before(last.frame + 1);
        }
        Ok(())
    }
}

/// The negotiated output: caps, pool and the conversion from the engine's BGR frames.
struct OutputFormat {
    /// The frame being converted, as the engine renders it (packed BGR).
    bgr: gst::Buffer,
    bgr_info: gst_video::VideoInfo,
    out_info: gst_video::VideoInfo,
    converter: gst_video::VideoConverter,
    pool: gst::BufferPool,
}

impl Drop for OutputFormat {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

/// Counters for the `stats` property.
#[derive(Default)]
struct Stats {
    frames_out: u64,
    frames_inferred: u64,
    frames_template: u64,
    last_batch: u32,
    /// Time spent rendering (features, generator, composition, conversion).
    render_time: std::time::Duration,
    frames_rendered: u64,
    first_output: Option<std::time::Instant>,
}

impl Stats {
    fn to_structure(&self, batch_size: u32) -> gst::Structure {
        let per_second = |frames: u64, seconds: f64| {
            if seconds > 0.0 {
                frames as f64 / seconds
            } else {
                0.0
            }
        };
        let since_first = self
            .first_output
            .map_or(0.0, |first| first.elapsed().as_secs_f64());
        gst::Structure::builder("application/x-talkinghead-stats")
            .field("frames-out", self.frames_out)
            .field("frames-inferred", self.frames_inferred)
            .field("frames-template", self.frames_template)
            .field("batch-size", batch_size)
            .field("last-batch", self.last_batch)
            .field(
                "render-fps",
                per_second(self.frames_rendered, self.render_time.as_secs_f64()),
            )
            .field("output-fps", per_second(self.frames_out, since_first))
            .build()
    }
}

pub struct TalkingHead {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    /// What the current settings load; reloaded when they change.
    resources: Mutex<Option<Resources>>,
    state: Mutex<State>,
    output: Mutex<Output>,
    output_changed: Condvar,
    renderer: Mutex<Renderer>,
    stats: Mutex<Stats>,
}

impl TalkingHead {
    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (format, frames) = {
            let mut state = self.state.lock().unwrap();
            let Some(format) = state.format else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("Received audio before caps")
                );
                return Err(gst::FlowError::NotNegotiated);
            };
            let bytes_per_sample = match format {
                SampleFormat::S16 => 2,
                SampleFormat::F32 => 4,
            };
            if buffer.size() % bytes_per_sample != 0 {
                gst::warning!(
                    CAT,
                    imp = self,
                    "Buffer of {} bytes is not a whole number of samples",
                    buffer.size()
                );
            }
            if state.origin.is_none() {
                state.origin = Some(
                    buffer
                        .pts()
                        .or(state.segment.start())
                        .unwrap_or(gst::ClockTime::ZERO),
                );
            }
            state.samples += (buffer.size() / bytes_per_sample) as u64;
            (format, state.take_ready_frames(&frame_clock(), false))
        };
        if !self.queue_item(Item::Audio(buffer, format)) {
            return Err(gst::FlowError::Flushing);
        }
        self.queue_frames(frames)?;
        self.output.lock().unwrap().flow
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
                self.state.lock().unwrap().format = Some(format);
                self.queue_item(Item::Negotiate)
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
                self.queue_item(Item::Event(event))
            }
            EventView::Gap(gap) => {
                let (timestamp, duration) = gap.get();
                let (silence, frames) = {
                    let mut state = self.state.lock().unwrap();
                    let origin = *state.origin.get_or_insert(timestamp);
                    let end = timestamp + duration.unwrap_or(gst::ClockTime::ZERO);
                    let covered = frame_clock().samples_in(end.saturating_sub(origin).nseconds());
                    let silence = covered.saturating_sub(state.samples);
                    state.samples += silence;
                    (silence, state.take_ready_frames(&frame_clock(), false))
                };
                self.queue_item(Item::Silence(silence)) && self.queue_frames(frames).is_ok()
            }
            EventView::Eos(_) => {
                let frames = self
                    .state
                    .lock()
                    .unwrap()
                    .take_ready_frames(&frame_clock(), true);
                self.queue_item(Item::EndOfAudio)
                    && self.queue_frames(frames).is_ok()
                    && self.queue_item(Item::Event(event))
            }
            EventView::FlushStart(_) => {
                {
                    let mut output = self.output.lock().unwrap();
                    output.reset(true);
                    self.output_changed.notify_all();
                }
                let forwarded = self.srcpad.push_event(event);
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => {
                let has_caps = {
                    let mut state = self.state.lock().unwrap();
                    state.restart();
                    state.format.is_some()
                };
                {
                    let mut output = self.output.lock().unwrap();
                    output.reset(false);
                    output.items.push_back(Item::Restart);
                    // A negotiation cut short by the flush left no caps on the source pad.
                    if has_caps {
                        output.items.push_back(Item::Negotiate);
                    }
                }
                let forwarded = self.srcpad.push_event(event);
                forwarded && self.start_task().is_ok()
            }
            _ if event.is_serialized() => self.queue_item(Item::Event(event)),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;

        match query.view_mut() {
            QueryViewMut::Caps(query) => {
                let caps = match &*self.resources.lock().unwrap() {
                    Some(resources) => avatar_caps(&resources.avatar),
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
    /// (with models), plus one frame as the budget to render it once its audio is in.
    fn added_latency(&self) -> gst::ClockTime {
        let clock = frame_clock();
        let look_ahead = if self.state.lock().unwrap().look_ahead {
            // The window pattern repeats every 5 frames (16 mel frames every 5 video frames).
            (0..5)
                .map(|n| samples_needed_for_frame(n) - clock.first_sample(n as u64))
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        gst::ClockTime::from_nseconds(clock.samples_duration(look_ahead) + clock.duration(0))
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
            self.output.lock().unwrap().reset(false);
            self.start_task()
                .map_err(|err| gst::loggable_error!(CAT, "Failed to start task: {err}"))
        } else {
            {
                let mut output = self.output.lock().unwrap();
                output.reset(true);
                self.output_changed.notify_all();
            }
            self.srcpad
                .stop_task()
                .map_err(|err| gst::loggable_error!(CAT, "Failed to stop task: {err}"))
        }
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let element = self.obj().downgrade();
        let pad = self.srcpad.downgrade();
        self.srcpad.start_task(move || match element.upgrade() {
            Some(element) => element.imp().output_loop(),
            None => {
                if let Some(pad) = pad.upgrade() {
                    let _ = pad.pause_task();
                }
            }
        })
    }

    /// Queues frames for the source pad task, waiting while the queue is full.
    fn queue_frames(&self, frames: Vec<Frame>) -> Result<(), gst::FlowError> {
        let mut output = self.output.lock().unwrap();
        for frame in frames {
            while output.frames >= output.max_frames && !output.flushing && output.flow.is_ok() {
                output = self.output_changed.wait(output).unwrap();
            }
            if output.flushing {
                return Err(gst::FlowError::Flushing);
            }
            output.flow?;
            output.items.push_back(Item::Frame(frame));
            output.frames += 1;
            self.output_changed.notify_all();
        }
        Ok(())
    }

    fn queue_item(&self, item: Item) -> bool {
        let mut output = self.output.lock().unwrap();
        if output.flushing {
            return false;
        }
        output.items.push_back(item);
        self.output_changed.notify_all();
        true
    }

    /// One iteration of the source pad task: the next item, or a batch of frames with the audio
    /// queued among them, sent downstream.
    fn output_loop(&self) {
        let Some(first) = self.next_item(true) else {
            let _ = self.srcpad.pause_task();
            return;
        };
        let result = match first {
            Item::Frame(frame) => self.render_batch(frame),
            Item::Event(event) => {
                let eos = matches!(event.view(), gst::EventView::Eos(_));
                if !self.srcpad.push_event(event) {
                    gst::debug!(CAT, imp = self, "Downstream refused an event");
                }
                // Nothing follows EOS until a flush restarts the task.
                if eos {
                    Err(gst::FlowError::Eos)
                } else {
                    Ok(gst::FlowSuccess::Ok)
                }
            }
            Item::Negotiate => self.negotiate(),
            item => {
                self.apply_audio(item);
                Ok(gst::FlowSuccess::Ok)
            }
        };

        if let Err(err) = result {
            {
                let mut output = self.output.lock().unwrap();
                if !output.flushing {
                    output.flow = Err(err);
                }
                self.output_changed.notify_all();
            }
            match err {
                gst::FlowError::Flushing | gst::FlowError::Eos => {
                    gst::debug!(CAT, imp = self, "Pausing task: {err:?}")
                }
                _ => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ("Internal data stream error"),
                        ["streaming stopped, reason {err:?}"]
                    );
                    self.srcpad.push_event(gst::event::Eos::new());
                }
            }
            let _ = self.srcpad.pause_task();
        }
    }

    /// Takes the next item: waiting for one when `wait`, else only audio or a frame (what a batch
    /// may gather without reordering anything downstream sees). `None` when flushing or, without
    /// `wait`, when there is nothing of that kind.
    fn next_item(&self, wait: bool) -> Option<Item> {
        let mut output = self.output.lock().unwrap();
        loop {
            if output.flushing {
                return None;
            }
            match output.items.front() {
                Some(Item::Event(_) | Item::Negotiate) if !wait => return None,
                Some(_) => {
                    let item = output.items.pop_front();
                    if let Some(Item::Frame(_)) = item {
                        output.frames -= 1;
                        self.output_changed.notify_all();
                    }
                    return item;
                }
                None if !wait => return None,
                None => output = self.output_changed.wait(output).unwrap(),
            }
        }
    }

    fn apply_audio(&self, item: Item) {
        let mut renderer = self.renderer.lock().unwrap();
        let Some(engine) = renderer.engine.as_mut() else {
            return;
        };
        match item {
            Item::Audio(buffer, format) => engine.push_audio(&buffer, format),
            Item::Silence(samples) => engine.push_silence(samples),
            Item::EndOfAudio => engine.features.finish(),
            Item::Restart => engine.features.reset(),
            Item::Frame(_) | Item::Event(_) | Item::Negotiate => unreachable!("not audio"),
        }
    }

    /// Renders `first` and the frames queued right behind it, up to the batch size, and pushes them.
    fn render_batch(&self, first: Frame) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.srcpad.check_reconfigure() {
            self.negotiate()?;
        }
        let batch_size = match &self.renderer.lock().unwrap().engine {
            Some(engine) => engine.synth.batch_size(),
            None => return Err(gst::FlowError::Flushing),
        };
        let mut frames = vec![first];
        while frames.len() < batch_size {
            match self.next_item(false) {
                Some(Item::Frame(frame)) => frames.push(frame),
                Some(audio) => self.apply_audio(audio),
                None => break,
            }
        }

        let started = std::time::Instant::now();
        let (buffers, inferred) = {
            let mut renderer = self.renderer.lock().unwrap();
            let Renderer { engine, format } = &mut *renderer;
            let (Some(engine), Some(format)) = (engine.as_mut(), format.as_mut()) else {
                return Err(gst::FlowError::NotNegotiated);
            };
            let requests: Vec<FrameRequest> = frames
                .iter()
                .map(|frame| FrameRequest {
                    frame: frame.index as usize,
                    template: frame.template,
                })
                .collect();
            if let Err(err) = engine.render(&requests) {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                return Err(gst::FlowError::Error);
            }
            let buffers = frames
                .iter()
                .enumerate()
                .map(|(slot, frame)| self.output_buffer(format, engine.synth.frame(slot), frame))
                .collect::<Result<Vec<_>, _>>()?;
            (buffers, engine.models.is_some())
        };
        {
            let mut stats = self.stats.lock().unwrap();
            let count = buffers.len() as u64;
            stats.render_time += started.elapsed();
            stats.frames_rendered += count;
            stats.last_batch = count as u32;
            if inferred {
                stats.frames_inferred += count;
            } else {
                stats.frames_template += count;
            }
        }
        let discont = std::mem::take(&mut self.output.lock().unwrap().discont);
        for (n, mut buffer) in buffers.into_iter().enumerate() {
            if n == 0 && discont {
                buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
            }
            gst::trace!(CAT, imp = self, "Pushing {buffer:?}");
            self.srcpad.push(buffer)?;
            let mut stats = self.stats.lock().unwrap();
            stats.frames_out += 1;
            stats
                .first_output
                .get_or_insert_with(std::time::Instant::now);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Converts one rendered frame into a pooled buffer of the negotiated format.
    fn output_buffer(
        &self,
        format: &mut OutputFormat,
        bgr: &[u8],
        frame: &Frame,
    ) -> Result<gst::Buffer, gst::FlowError> {
        {
            let source = format.bgr.get_mut().ok_or(gst::FlowError::Error)?;
            let mut map = source.map_writable().map_err(|_| gst::FlowError::Error)?;
            let row = 3 * format.bgr_info.width() as usize;
            let stride = format.bgr_info.stride()[0] as usize;
            for (to, from) in map.chunks_mut(stride).zip(bgr.chunks_exact(row)) {
                to[..row].copy_from_slice(from);
            }
        }
        let mut buffer = format.pool.acquire_buffer(None)?;
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(frame.pts);
            buffer.set_duration(frame.duration);
            buffer.set_offset(frame.index);
            buffer.set_offset_end(frame.index + 1);
            let source =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&format.bgr, &format.bgr_info)
                    .map_err(|_| gst::FlowError::Error)?;
            let mut target =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &format.out_info)
                    .map_err(|_| gst::FlowError::Error)?;
            format.converter.frame_ref(&source, &mut target);
        }
        Ok(buffer)
    }

    /// Picks the output format with downstream, sends the caps and sets up the buffer pool.
    fn negotiate(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.srcpad.check_reconfigure();
        let Some(avatar) = self
            .resources
            .lock()
            .unwrap()
            .as_ref()
            .map(|resources| resources.avatar.clone())
        else {
            return Err(gst::FlowError::Flushing);
        };
        let ours = avatar_caps(&avatar);
        let mut caps = self.srcpad.peer_query_caps(Some(&ours));
        if caps.is_empty() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Downstream accepts none of {ours}")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        caps.fixate();
        let out_info = gst_video::VideoInfo::from_caps(&caps).map_err(|err| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{caps}: {err}"));
            gst::FlowError::NotNegotiated
        })?;
        gst::debug!(CAT, imp = self, "Negotiated {caps}");
        if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
            return Err(
                if self.srcpad.pad_flags().contains(gst::PadFlags::FLUSHING) {
                    gst::FlowError::Flushing
                } else {
                    gst::FlowError::NotNegotiated
                },
            );
        }
        let pool = self.decide_allocation(&caps, &out_info)?;

        let bgr_info =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgr, avatar.width, avatar.height)
                .fps(FPS)
                .build()
                .map_err(|_| gst::FlowError::NotNegotiated)?;
        let converter =
            gst_video::VideoConverter::new(&bgr_info, &out_info, None).map_err(|err| {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{err}"));
                gst::FlowError::NotNegotiated
            })?;
        let bgr = gst::Buffer::with_size(bgr_info.size()).map_err(|_| gst::FlowError::Error)?;
        self.renderer.lock().unwrap().format = Some(OutputFormat {
            bgr,
            bgr_info,
            out_info,
            converter,
            pool,
        });
        Ok(gst::FlowSuccess::Ok)
    }

    /// Takes downstream's buffer pool if it offers one that fits, our own video pool otherwise.
    fn decide_allocation(
        &self,
        caps: &gst::Caps,
        info: &gst_video::VideoInfo,
    ) -> Result<gst::BufferPool, gst::FlowError> {
        let mut query = gst::query::Allocation::new(Some(caps), true);
        let answered = self.srcpad.peer_query(&mut query);
        let (offered, size, min, max) = if answered {
            query.allocation_pools().next().unwrap_or((None, 0, 0, 0))
        } else {
            (None, 0, 0, 0)
        };
        let size = size.max(info.size() as u32);
        let video_meta = answered
            && query
                .find_allocation_meta::<gst_video::VideoMeta>()
                .is_some();

        let configure = |pool: &gst::BufferPool| -> bool {
            let mut config = pool.config();
            config.set_params(Some(caps), size, min, max);
            if video_meta {
                config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
            }
            pool.set_config(config).is_ok()
                || pool
                    .config()
                    .validate_params(Some(caps), size, min, max)
                    .is_ok()
        };
        let pool = match offered {
            Some(pool) if configure(&pool) => pool,
            _ => {
                let pool = gst_video::VideoBufferPool::new().upcast::<gst::BufferPool>();
                if !configure(&pool) {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Settings,
                        ("Cannot configure a buffer pool for {caps}")
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
                pool
            }
        };
        pool.set_active(true).map_err(|err| {
            gst::element_imp_error!(self, gst::ResourceError::Failed, ("{err}"));
            gst::FlowError::Error
        })?;
        Ok(pool)
    }

    /// Loads and checks what the current settings name, unless it already is.
    fn load_resources(&self) -> Result<(), gst::ErrorMessage> {
        let wanted = self.settings.lock().unwrap().wanted();
        let mut loaded = self.resources.lock().unwrap();
        if loaded
            .as_ref()
            .is_none_or(|resources| resources.wanted != wanted)
        {
            *loaded = None;
            let resources = resources::load(&wanted)
                .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
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
        let synth = FrameSynth::new(&avatar, batch_size)
            .map_err(|err| gst::error_msg!(gst::LibraryError::Init, ("{err}")))?;
        *self.state.lock().unwrap() =
            State::new(Some(avatar.clone()), settings.start_frame, models.is_some());
        self.output.lock().unwrap().max_frames = QUEUED_BATCHES * batch_size;
        *self.stats.lock().unwrap() = Stats::default();
        self.renderer.lock().unwrap().engine = Some(Engine {
            avatar,
            models,
            features: FeatureStream::new(batch_size),
            synth,
            samples: Vec::new(),
        });
        Ok(())
    }
}

fn avatar_caps(avatar: &Avatar) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(VIDEO_FORMATS)
        .width(avatar.width as i32)
        .height(avatar.height as i32)
        .framerate(FPS)
        .pixel_aspect_ratio(gst::Fraction::from_integer(1))
        .build()
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
            state: Mutex::new(State::new(None, DEFAULT_START_FRAME, false)),
            output: Mutex::new(Output {
                items: VecDeque::new(),
                frames: 0,
                max_frames: QUEUED_BATCHES * DEFAULT_BATCH_SIZE as usize,
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                discont: true,
            }),
            output_changed: Condvar::new(),
            renderer: Mutex::new(Renderer::default()),
            stats: Mutex::new(Stats::default()),
        }
    }
}

impl ObjectImpl for TalkingHead {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("avatar")
                    .nick("Avatar folder")
                    .blurb(
                        "Folder of the avatar: a SyncTalk_2D dataset (full_body_img/0..N-1.jpg + \
                         landmarks/0..N-1.lms) or a digital-clone package (full_body_img/1..N.jpg \
                         + landmarks/0..N-1.lms). Unset: the built-in demo avatar",
                    )
                    .default_value(DEFAULT_AVATAR)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("generator")
                    .nick("Generator model")
                    .blurb(
                        "SyncTalk_2D U-Net generator (ONNX: input [N,6,320,320] + audio \
                         [N,32,16,16] -> output [N,3,320,320]). Unset: the avatar folder's \
                         models/generator.onnx if there is one",
                    )
                    .default_value(DEFAULT_GENERATOR)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("audio-encoder")
                    .nick("Audio encoder model")
                    .blurb(
                        "SyncTalk_2D audio encoder (ONNX: mel [N,1,80,16] -> [N,512]). Unset: the \
                         avatar folder's models/audio_encoder.onnx if there is one. Without \
                         models the element shows the avatar's template frames",
                    )
                    .default_value(DEFAULT_AUDIO_ENCODER)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb(
                        "Path of libonnxruntime.so. Unset: $ORT_DYLIB_PATH, then the library \
                         installed in the project's .venv by make. Loaded once per process",
                    )
                    .default_value(DEFAULT_ORT_LIBRARY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb(
                        "Frames per generator call (audio windows per encoder call): real tensor \
                         batches when there are enough frames queued",
                    )
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Since the element last started: frames-out, frames-inferred (through \
                         the models), frames-template (the avatar's template alone), batch-size, \
                         last-batch, render-fps (frames per second of rendering time) and \
                         output-fps (frames per second since the first frame went out)",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("start-frame")
                    .nick("Start frame")
                    .blurb(
                        "Steps into the template loop (1, 2, ..., N-1, N-2, ..., 0, 1, ...) at \
                         which the first output frame starts",
                    )
                    .default_value(DEFAULT_START_FRAME)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => {
                settings.avatar = value
                    .get::<Option<String>>()
                    .expect("type checked upstream");
                gst::info!(CAT, imp = self, "avatar set to {:?}", settings.avatar);
            }
            "start-frame" => settings.start_frame = value.get().expect("type checked upstream"),
            "generator" => settings.generator = value.get().expect("type checked upstream"),
            "audio-encoder" => settings.audio_encoder = value.get().expect("type checked upstream"),
            "ort-library" => settings.ort_library = value.get().expect("type checked upstream"),
            "batch-size" => settings.batch_size = value.get().expect("type checked upstream"),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => settings.avatar.to_value(),
            "start-frame" => settings.start_frame.to_value(),
            "generator" => settings.generator.to_value(),
            "audio-encoder" => settings.audio_encoder.to_value(),
            "ort-library" => settings.ort_library.to_value(),
            "batch-size" => settings.batch_size.to_value(),
            "stats" => self
                .stats
                .lock()
                .unwrap()
                .to_structure(settings.batch_size)
                .to_value(),
            _ => unreachable!(),
        }
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
            let src_caps = gst_video::VideoCapsBuilder::new()
                .format_list(VIDEO_FORMATS)
                .framerate(FPS)
                .build();
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
                *self.state.lock().unwrap() = State::new(None, DEFAULT_START_FRAME, false);
            }
            _ => (),
        }
        Ok(success)
    }
}
