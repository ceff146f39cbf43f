//! `talkinghead`: speech audio in, video of a talking avatar out.
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! \
//!     talkinghead ! videoconvert ! autovideosink
//! ```
//!
//! The streaming thread only counts audio and queues the frames it completes; a task on the
//! source pad renders them (decode the template, convert into a pooled buffer) and pushes them in
//! order. Frame `n` carries the timestamp `origin + n × frame duration`, where `origin` is the
//! timestamp of the stream's first audio, and exists once the first audio sample of its interval
//! has arrived: a stream of `d` seconds makes exactly `ceil(d × 25)` frames.
//!
//! Lock order, where more than one is held: `settings` → `avatar` → `state` → `output`.
//! `renderer` is taken only by the source pad task and never together with another lock. No lock
//! is held across a push, and `output` is released while waiting on its condition variable.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::clock::FrameClock;
use crate::avatar::{self, Avatar, JpegDecoder, Source};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "talkinghead",
        gst::DebugColorFlags::empty(),
        Some("Talking head renderer"),
    )
});

const DEFAULT_AVATAR: Option<&str> = None;
const DEFAULT_START_FRAME: u32 = 0;

/// The audio rate the SyncTalk_2D mel front-end is defined at.
const SAMPLE_RATE: u32 = 16_000;
/// SyncTalk_2D avatars and their models are made at 25 frames per second.
const FPS: gst::Fraction = gst::Fraction::from_integer(25);
/// Frames queued between the streaming thread and the source pad task. Bounds memory, and makes
/// upstream wait when rendering falls behind instead of buffering without limit.
const MAX_QUEUED_FRAMES: usize = 8;
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: DEFAULT_AVATAR.map(String::from),
            start_frame: DEFAULT_START_FRAME,
        }
    }
}

/// The sink side of one stream: how much audio has arrived and how many frames it made.
struct State {
    avatar: Option<Arc<Avatar>>,
    start_frame: u32,
    bytes_per_sample: Option<usize>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Timestamp of frame 0: the first audio buffer's, or the segment start.
    origin: Option<gst::ClockTime>,
    /// Audio samples since `origin`, GAP events counted as silence.
    samples: u64,
    frames_queued: u64,
}

impl State {
    fn new(avatar: Option<Arc<Avatar>>, start_frame: u32) -> Self {
        Self {
            avatar,
            start_frame,
            bytes_per_sample: None,
            segment: gst::FormattedSegment::new(),
            origin: None,
            samples: 0,
            frames_queued: 0,
        }
    }

    /// Restarts the frame grid, as after a flush; the negotiated format stays.
    fn restart(&mut self) {
        *self = Self {
            bytes_per_sample: self.bytes_per_sample,
            ..Self::new(self.avatar.take(), self.start_frame)
        };
    }

    /// The frames the audio so far completes, or all that remain when `at_eos`.
    fn take_ready_frames(&mut self, clock: &FrameClock) -> Vec<Frame> {
        let (Some(avatar), Some(origin)) = (&self.avatar, self.origin) else {
            return Vec::new();
        };
        let ready = clock.frames_started(self.samples);
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
    Event(gst::Event),
    Frame(Frame),
}

/// The queue between the streaming thread and the source pad task.
struct Output {
    items: VecDeque<Item>,
    frames: usize,
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

/// Everything the source pad task needs to make output buffers for the negotiated caps.
struct Renderer {
    avatar: Arc<Avatar>,
    decoder: JpegDecoder,
    /// The template being shown, decoded as the models see it (packed BGR).
    bgr: gst::Buffer,
    bgr_info: gst_video::VideoInfo,
    out_info: gst_video::VideoInfo,
    converter: gst_video::VideoConverter,
    pool: gst::BufferPool,
}

impl Drop for Renderer {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

pub struct TalkingHead {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    /// The avatar loaded for the current settings, with the settings it was loaded for.
    avatar: Mutex<Option<(Option<String>, Arc<Avatar>)>>,
    state: Mutex<State>,
    output: Mutex<Output>,
    output_changed: Condvar,
    renderer: Mutex<Option<Renderer>>,
}

impl TalkingHead {
    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let frames = {
            let mut state = self.state.lock().unwrap();
            let Some(bytes_per_sample) = state.bytes_per_sample else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("Received audio before caps")
                );
                return Err(gst::FlowError::NotNegotiated);
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
            state.take_ready_frames(&frame_clock())
        };
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
                self.state.lock().unwrap().bytes_per_sample = Some(info.bpf() as usize);
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
                let frames = {
                    let mut state = self.state.lock().unwrap();
                    let origin = *state.origin.get_or_insert(timestamp);
                    let end = timestamp + duration.unwrap_or(gst::ClockTime::ZERO);
                    let covered = frame_clock().samples_in(end.saturating_sub(origin).nseconds());
                    state.samples = state.samples.max(covered);
                    state.take_ready_frames(&frame_clock())
                };
                self.queue_frames(frames).is_ok()
            }
            EventView::Eos(_) => {
                let frames = self.state.lock().unwrap().take_ready_frames(&frame_clock());
                self.queue_frames(frames).is_ok() && self.queue_item(Item::Event(event))
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
                    state.bytes_per_sample.is_some()
                };
                {
                    // A negotiation cut short by the flush left no caps on the source pad.
                    let mut output = self.output.lock().unwrap();
                    output.reset(false);
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
                let caps = match &*self.avatar.lock().unwrap() {
                    Some((_, avatar)) => avatar_caps(avatar),
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
                // A frame is rendered once the audio of its first sample is in: what we add is
                // the time to render it, budgeted at one frame.
                let ours = if live {
                    gst::ClockTime::from_nseconds(frame_clock().duration(0))
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
            while output.frames >= MAX_QUEUED_FRAMES && !output.flushing && output.flow.is_ok() {
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

    /// One iteration of the source pad task: take the next item and send it downstream.
    fn output_loop(&self) {
        let (item, discont) = {
            let mut output = self.output.lock().unwrap();
            loop {
                if output.flushing {
                    drop(output);
                    let _ = self.srcpad.pause_task();
                    return;
                }
                if let Some(item) = output.items.pop_front() {
                    let discont = matches!(item, Item::Frame(_)) && output.discont;
                    if let Item::Frame(_) = item {
                        output.frames -= 1;
                        output.discont = false;
                        self.output_changed.notify_all();
                    }
                    break (item, discont);
                }
                output = self.output_changed.wait(output).unwrap();
            }
        };

        let result = match item {
            Item::Negotiate => self.negotiate(),
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
            Item::Frame(frame) => self.render(frame, discont).and_then(|buffer| {
                gst::trace!(CAT, imp = self, "Pushing {buffer:?}");
                self.srcpad.push(buffer)
            }),
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

    /// Picks the output format with downstream, sends the caps and sets up the buffer pool.
    fn negotiate(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.srcpad.check_reconfigure();
        let Some((_, avatar)) = self.avatar.lock().unwrap().clone() else {
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
        let decoder = JpegDecoder::new().map_err(|err| {
            gst::element_imp_error!(self, gst::LibraryError::Init, ("{err}"));
            gst::FlowError::Error
        })?;
        *self.renderer.lock().unwrap() = Some(Renderer {
            avatar,
            decoder,
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

    /// Makes the output buffer of one frame.
    fn render(&self, frame: Frame, discont: bool) -> Result<gst::Buffer, gst::FlowError> {
        if self.srcpad.check_reconfigure() {
            self.negotiate()?;
        }
        let mut guard = self.renderer.lock().unwrap();
        let renderer = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
        let template = &renderer.avatar.frames[frame.template];
        {
            let size = (renderer.avatar.width, renderer.avatar.height);
            let stride = renderer.bgr_info.stride()[0] as usize;
            let bgr = renderer.bgr.get_mut().ok_or(gst::FlowError::Error)?;
            let mut map = bgr.map_writable().map_err(|_| gst::FlowError::Error)?;
            if let Err(err) = renderer
                .decoder
                .decode_bgr(&template.jpeg, &mut map, size, stride)
            {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Decode,
                    ("{}: {err}", template.file)
                );
                return Err(gst::FlowError::Error);
            }
        }

        let mut buffer = renderer.pool.acquire_buffer(None)?;
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(frame.pts);
            buffer.set_duration(frame.duration);
            buffer.set_offset(frame.index);
            buffer.set_offset_end(frame.index + 1);
            if discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            let source = gst_video::VideoFrameRef::from_buffer_ref_readable(
                &renderer.bgr,
                &renderer.bgr_info,
            )
            .map_err(|_| gst::FlowError::Error)?;
            let mut target =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &renderer.out_info)
                    .map_err(|_| gst::FlowError::Error)?;
            renderer.converter.frame_ref(&source, &mut target);
        }
        Ok(buffer)
    }

    /// The avatar for the current settings, loaded and checked now unless it already is.
    fn load_avatar(&self) -> Result<Arc<Avatar>, gst::ErrorMessage> {
        let wanted = self.settings.lock().unwrap().avatar.clone();
        let mut loaded = self.avatar.lock().unwrap();
        if let Some((path, avatar)) = &*loaded
            && *path == wanted
        {
            return Ok(avatar.clone());
        }
        let source = match &wanted {
            Some(path) => Source::Folder(PathBuf::from(path)),
            None => Source::Builtin(&avatar::DEMO),
        };
        gst::info!(CAT, imp = self, "Loading avatar {}", source.describe(""));
        let avatar = Avatar::load(&source).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Cannot load the avatar: {err}")
            )
        })?;
        for warning in &avatar.warnings {
            gst::warning!(CAT, imp = self, "{warning}");
        }
        gst::info!(
            CAT,
            imp = self,
            "Avatar has {} frames of {}x{} ({:?} layout)",
            avatar.frames.len(),
            avatar.width,
            avatar.height,
            avatar.layout
        );
        let avatar = Arc::new(avatar);
        *loaded = Some((wanted, avatar.clone()));
        Ok(avatar)
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
            avatar: Mutex::new(None),
            state: Mutex::new(State::new(None, DEFAULT_START_FRAME)),
            output: Mutex::new(Output {
                items: VecDeque::new(),
                frames: 0,
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                discont: true,
            }),
            output_changed: Condvar::new(),
            renderer: Mutex::new(None),
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
            "start-frame" => {
                settings.start_frame = value.get().expect("type checked upstream");
            }
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => settings.avatar.to_value(),
            "start-frame" => settings.start_frame.to_value(),
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
            gst::StateChange::NullToReady | gst::StateChange::ReadyToPaused => {
                let avatar = self.load_avatar().map_err(|err| {
                    self.post_error_message(err);
                    gst::StateChangeError
                })?;
                let start_frame = self.settings.lock().unwrap().start_frame;
                *self.state.lock().unwrap() = State::new(Some(avatar), start_frame);
            }
            _ => (),
        }

        let success = self.parent_change_state(transition)?;

        match transition {
            gst::StateChange::PausedToReady => {
                *self.renderer.lock().unwrap() = None;
                self.state.lock().unwrap().restart();
            }
            gst::StateChange::ReadyToNull => {
                *self.avatar.lock().unwrap() = None;
                *self.state.lock().unwrap() = State::new(None, DEFAULT_START_FRAME);
            }
            _ => (),
        }
        Ok(success)
    }
}
