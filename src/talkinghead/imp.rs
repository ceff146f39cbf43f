//! `talkinghead`: speech audio in, video of a talking avatar out.
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! wavparse ! audioconvert ! audioresample ! \
//!     talkinghead ! videoconvert ! autovideosink
//! ```
//!
//! The streaming thread only counts audio and queues it, with the frames it completes, for a task
//! on the source pad. The task computes the audio features, renders frames in batches (template,
//! generator, paste, conversion into pooled buffers) and pushes them in order. Offline, the
//! generator runs on its own thread for one batch while the task composes and converts the batch
//! before it and prepares the next. Frame `n` carries
//! the timestamp `origin + n × frame duration`, where `origin` is the timestamp of the stream's
//! first audio; a stream of `d` seconds makes exactly `ceil(d × 25)` frames. With models, frame
//! `n` is complete once the audio its feature window reads (about 0.45 s past its start) is in;
//! without, once its first sample is.
//!
//! # Live streams
//!
//! When upstream is live, frame `n` is due downstream at its running time plus the pipeline
//! latency. The element adds the audio look-ahead plus `max-latency` to the latency and spends the
//! latter waiting to fill a batch and rendering it. A batch that cannot be inferred in time, or
//! that downstream QoS says is late, is rendered as idle frames (the template loop) instead, with a
//! QoS message; when audio stops arriving, the task fills the missing audio with silence as each
//! frame falls due, so frames keep flowing at the frame rate. Audio timestamps keep the grid: a gap
//! becomes silence and audio overlapping what was already counted is dropped.
//!
//! # Silence
//!
//! A frame whose whole audio window is below `silence-threshold` shows its template frame without
//! inference; the generated face fades in and out over `blend-frames` frames around speech.
//!
//! Lock order, where more than one is held: `settings` → `resources` → `state` → `output`.
//! `renderer` is taken by the source pad task (and by state changes while the task is stopped),
//! never together with another lock; `stats` and `downstream` are only ever taken alone. No lock
//! is held across a push, and `output` is released while waiting on its condition variable.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::clock::FrameClock;
use super::convert::FrameConverter;
use super::costs::Costs;
use super::fade::Fade;
use super::infer::InferenceThread;
use super::push::{Outgoing, Pusher};
use super::resources::{self, Models, Resources, Wanted};
use crate::audio::features::samples_needed_for_frame;
use crate::audio::samples;
use crate::audio::stream::{FeatureStream, SILENCE_FLOOR_DB};
use crate::avatar::Avatar;
use crate::synth::{FrameRequest, FrameSynth, Tensors};

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
const DEFAULT_SILENCE_THRESHOLD_DB: f64 = -50.0;
const DEFAULT_BLEND_FRAMES: u32 = 4;
const DEFAULT_MAX_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(200);
/// Audio timestamps further than this from the samples counted so far move the grid: a gap is
/// filled with silence, an overlap dropped. Jitter below it is ignored, as audio sinks do.
const RESYNC_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(40);
/// How often the task checks whether the generator is done with a batch in flight while no
/// frames are queued.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);
/// Slack kept between a live batch's expected end and its deadline.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);
const DEFAULT_INFERENCE_THREADS: u32 = 0;
/// MiB of decoded templates kept: about 40 frames of 1280x720 (a 523-frame 720p avatar stays
/// under 600 MB of RSS, `tests/avatar_memory.rs`).
const DEFAULT_TEMPLATE_CACHE: u32 = 128;

/// The audio rate the SyncTalk_2D mel front-end is defined at.
const SAMPLE_RATE: u32 = 16_000;
/// SyncTalk_2D avatars and their models are made at 25 frames per second.
const FPS: gst::Fraction = gst::Fraction::from_integer(25);
/// Frames queued between the streaming thread and the source pad task, in batches. Bounds memory,
/// and makes upstream wait when rendering falls behind instead of buffering without limit.
const QUEUED_BATCHES: usize = 2;
/// Output formats; the first is the one chosen when downstream accepts anything, and I420 is what
/// encoders want (RGB into x264enc would give High 4:4:4).
pub(super) const VIDEO_FORMATS: [gst_video::VideoFormat; 8] = [
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Rgba,
];

fn clock_time(duration: Duration) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(duration.as_nanos().try_into().unwrap_or(u64::MAX))
}

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
    silence_threshold_db: f64,
    blend_frames: u32,
    max_latency: gst::ClockTime,
    inference_threads: u32,
    template_cache: u32,
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
            silence_threshold_db: DEFAULT_SILENCE_THRESHOLD_DB,
            blend_frames: DEFAULT_BLEND_FRAMES,
            max_latency: DEFAULT_MAX_LATENCY,
            inference_threads: DEFAULT_INFERENCE_THREADS,
            template_cache: DEFAULT_TEMPLATE_CACHE,
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
            inference_threads: self.inference_threads,
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
    /// Upstream is live, with this minimum latency (asked when caps arrive).
    live: bool,
    upstream_latency: gst::ClockTime,
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
            live: false,
            upstream_latency: gst::ClockTime::ZERO,
            segment: gst::FormattedSegment::new(),
            origin: None,
            samples: 0,
            frames_queued: 0,
        }
    }

    /// Restarts the frame grid, as after a flush; the negotiated format and latency stay.
    fn restart(&mut self) {
        *self = Self {
            format: self.format,
            live: self.live,
            upstream_latency: self.upstream_latency,
            ..Self::new(self.avatar.take(), self.start_frame, self.look_ahead)
        };
    }

    /// Samples the stream must have before frame `n` can be rendered.
    fn samples_for_frame(&self, clock: &FrameClock, n: u64) -> u64 {
        if self.look_ahead {
            samples_needed_for_frame(n as usize)
        } else {
            clock.first_sample(n) + 1
        }
    }

    /// The frames the audio so far completes, or at the end of the stream (`at_eos`) all the
    /// audio started.
    fn take_ready_frames(&mut self, clock: &FrameClock, at_eos: bool) -> ReadyFrames {
        let (Some(avatar), Some(origin)) = (&self.avatar, self.origin) else {
            return ReadyFrames::default();
        };
        let started = clock.frames_started(self.samples);
        let mut ready = self.frames_queued;
        while ready < started && (at_eos || self.samples_for_frame(clock, ready) <= self.samples) {
            ready += 1;
        }
        let frames = ReadyFrames {
            indices: self.frames_queued..ready,
            avatar: Some(avatar.clone()),
            start_frame: self.start_frame,
            origin,
            clock: *clock,
        };
        self.frames_queued = ready;
        frames
    }
}

/// Frames ready to render, placed on the grid one by one as they are queued (no list per audio
/// buffer). Empty without an avatar.
struct ReadyFrames {
    indices: std::ops::Range<u64>,
    avatar: Option<Arc<Avatar>>,
    start_frame: u32,
    origin: gst::ClockTime,
    clock: FrameClock,
}

impl Default for ReadyFrames {
    fn default() -> Self {
        Self {
            indices: 0..0,
            avatar: None,
            start_frame: 0,
            origin: gst::ClockTime::ZERO,
            clock: frame_clock(),
        }
    }
}

impl Iterator for ReadyFrames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let index = self.indices.next()?;
        let avatar = self.avatar.as_ref()?;
        Some(Frame {
            index,
            template: avatar.template_index(index, self.start_frame),
            pts: self.origin + gst::ClockTime::from_nseconds(self.clock.pts_offset(index)),
            duration: gst::ClockTime::from_nseconds(self.clock.duration(index)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for ReadyFrames {}

/// The lists a batch is gathered and rendered into, kept from batch to batch.
#[derive(Default)]
struct Batch {
    frames: Vec<Frame>,
    requests: Vec<FrameRequest>,
    weights: Vec<f32>,
    buffers: Vec<Result<gst::Buffer, gst::FlowError>>,
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
    /// Audio, without its first `skip` samples.
    Audio {
        buffer: gst::Buffer,
        format: SampleFormat,
        skip: usize,
    },
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
    models: Option<Arc<Models>>,
    features: FeatureStream,
    synth: FrameSynth,
    fade: Fade,
    /// Audio converted to f32, reused from buffer to buffer.
    samples: Vec<f32>,
    /// What frames cost to render, for live deadlines.
    costs: Costs,
    /// Generator tensors not in use: at most two sets exist, made when first needed.
    spare: Vec<Tensors>,
    /// The thread that runs the generator for a batch in flight; started with the first one.
    generator_thread: Option<InferenceThread>,
    /// The batch whose generator runs while the task prepares the next one.
    in_flight: InFlight,
}

/// A batch handed to the generator thread (when `active`), with the lists it was gathered into;
/// the lists are swapped with the task's, never reallocated.
#[derive(Default)]
struct InFlight {
    active: bool,
    bank: usize,
    frames: Vec<Frame>,
    requests: Vec<FrameRequest>,
    weights: Vec<f32>,
    /// The encoder's and the image work's time so far.
    stages: Stages,
}

impl Engine {
    /// Feeds a buffer's samples after the first `skip`; returns how many were NaN or infinite
    /// and were replaced by silence.
    fn push_audio(&mut self, buffer: &gst::BufferRef, format: SampleFormat, skip: usize) -> usize {
        let Ok(map) = buffer.map_readable() else {
            return 0;
        };
        self.samples.clear();
        // `skip` leading samples overlap audio already counted.
        let non_finite = match format {
            SampleFormat::S16 => {
                samples::extend_from_s16le(&mut self.samples, map.get(2 * skip..).unwrap_or(&[]));
                0
            }
            SampleFormat::F32 => {
                samples::extend_from_f32le(&mut self.samples, map.get(4 * skip..).unwrap_or(&[]))
            }
        };
        self.features.push(&self.samples);
        non_finite
    }

    fn push_silence(&mut self, mut samples: u64) {
        const ZEROS: [f32; 1024] = [0.0; 1024];
        while samples > 0 {
            let n = samples.min(ZEROS.len() as u64) as usize;
            self.features.push(&ZEROS[..n]);
            samples -= n as u64;
        }
    }

    /// Runs the audio encoder on every window the audio so far completes.
    fn encode(&mut self) -> Result<(), String> {
        let Some(models) = &self.models else {
            return Ok(());
        };
        let mut encoder = models.encoder.lock().unwrap();
        self.features
            .encode(|windows, outputs| encoder.run(windows, outputs))
            .map_err(|err| err.to_string())
    }

    /// The generated face's weight in each frame, without changing the fade: 0 (idle) without
    /// models and for frames whose audio window is silent, fading to 1 through speech. Returns
    /// the fade as it would be after these frames.
    fn weights(&self, frames: &[Frame], threshold_db: f32, weights: &mut Vec<f32>) -> Fade {
        let mut fade = self.fade.clone();
        weights.clear();
        weights.extend(frames.iter().map(|frame| {
            if self.models.is_none() {
                return 0.0;
            }
            let level = self.features.window_level_db(frame.index as usize);
            fade.next(level >= threshold_db)
        }));
        fade
    }

    /// Renders a run of frames into the synthesiser's slots of bank 0: through the generator,
    /// cross-faded with the template by `weights`, or the templates alone when `weights` are all
    /// 0. Returns the time the generator took. No batch may be in flight.
    fn render(&mut self, requests: &[FrameRequest], weights: &[f32]) -> Result<Duration, String> {
        debug_assert!(!self.in_flight.active, "a batch is in flight");
        let inferred = weights.iter().any(|&weight| weight > 0.0);
        let Some(models) = self.models.as_ref().filter(|_| inferred) else {
            self.synth.render_templates(&self.avatar, requests)?;
            return Ok(Duration::ZERO);
        };
        let mut generator = models.generator.lock().unwrap();
        let mut generator_time = Duration::ZERO;
        let batch = self.synth.batch_size();
        let mut tensors = self.spare.pop().unwrap_or_else(|| Tensors::new(batch));
        let result = self.synth.render_speech(
            &self.avatar,
            requests,
            weights,
            &self.features,
            &mut tensors,
            |images, audio, output| {
                let started = Instant::now();
                let result = generator
                    .run(images, audio, output)
                    .map_err(|err| err.to_string());
                generator_time = started.elapsed();
                result
            },
        );
        self.spare.push(tensors);
        result.map(|()| generator_time)
    }

    /// Prepares `requests` (frames all inferred) in the bank the batch in flight does not use,
    /// and hands them to the generator thread. The batch in flight, if any, stays so until
    /// [`Engine::land`]. Returns the time the preparation took.
    fn launch(&mut self, requests: &[FrameRequest], bank: usize) -> Result<Duration, String> {
        let started = Instant::now();
        let thread = match &mut self.generator_thread {
            Some(thread) => thread,
            empty => {
                let models = self.models.clone().expect("inferred frames have models");
                empty.insert(InferenceThread::new(models)?)
            }
        };
        let batch = self.synth.batch_size();
        let mut tensors = self.spare.pop().unwrap_or_else(|| Tensors::new(batch));
        match self
            .synth
            .prepare(bank, &self.avatar, requests, &self.features, &mut tensors)
        {
            Ok(()) => thread.submit(tensors, requests.len()),
            Err(err) => {
                self.spare.push(tensors);
                return Err(err);
            }
        }
        Ok(started.elapsed())
    }

    /// Waits for the batch in flight and composes it into its bank; returns the generator's time
    /// and the composition's. Without a batch in flight, does nothing.
    fn land(&mut self) -> Result<(Duration, Duration), String> {
        if !std::mem::take(&mut self.in_flight.active) {
            return Ok((Duration::ZERO, Duration::ZERO));
        }
        let done = self
            .generator_thread
            .as_mut()
            .expect("a batch in flight has a generator thread")
            .wait();
        let started = Instant::now();
        let InFlight {
            bank,
            requests,
            weights,
            ..
        } = &self.in_flight;
        let result = done.result.and_then(|generator_time| {
            self.synth
                .compose(*bank, &self.avatar, requests, weights, &done.tensors)?;
            Ok((generator_time, started.elapsed()))
        });
        self.spare.push(done.tensors);
        result
    }

    /// Drops the batch in flight (after a flush), once the generator is done with it.
    fn discard_in_flight(&mut self) {
        if std::mem::take(&mut self.in_flight.active)
            && let Some(thread) = &mut self.generator_thread
        {
            self.spare.push(thread.wait().tensors);
        }
    }
}

/// The negotiated output: caps, pool and the conversion from the engine's BGR frames.
struct OutputFormat {
    converter: FrameConverter,
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
    /// Template frames shown for silence (or for want of models).
    frames_idle: u64,
    /// Template frames shown because inferring them would have made them late.
    frames_late: u64,
    /// NaN or infinite audio samples replaced by silence.
    samples_non_finite: u64,
    last_batch: u32,
    /// Time spent rendering (features, generator, composition, conversion), and on the frames that
    /// went through the generator.
    render_time: Duration,
    inference_time: Duration,
    stages: Stages,
    first_output: Option<Instant>,
}

/// What rendering a batch did, for the stats.
#[derive(Default)]
struct Tally {
    stages: Stages,
    inferred: u64,
    /// Frames rendered idle, `late` of them because inferring them would have made them late.
    idle: u64,
    late: u64,
    inference_time: Duration,
}

/// Time spent in each stage of rendering.
#[derive(Clone, Copy, Default)]
struct Stages {
    /// The audio encoder.
    encoder: Duration,
    /// The U-Net.
    generator: Duration,
    /// Decoding, cropping and packing templates; unpacking, pasting and fading the faces.
    image: Duration,
    /// Conversion into the negotiated format.
    convert: Duration,
}

impl Stages {
    fn add(&mut self, other: &Stages) {
        self.encoder += other.encoder;
        self.generator += other.generator;
        self.image += other.image;
        self.convert += other.convert;
    }
}

impl Stats {
    fn to_structure(
        &self,
        batch_size: u32,
        queued_frames: usize,
        latency: gst::ClockTime,
    ) -> gst::Structure {
        let per_second = |frames: u64, time: Duration| {
            let seconds = time.as_secs_f64();
            if seconds > 0.0 {
                frames as f64 / seconds
            } else {
                0.0
            }
        };
        let rendered = self.frames_inferred + self.frames_idle + self.frames_late;
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
            .build()
    }
}

/// What downstream told the source pad: the pipeline latency, and from QoS the running time
/// before which frames arrive too late.
#[derive(Default)]
struct Downstream {
    latency: Option<gst::ClockTime>,
    earliest: Option<gst::ClockTime>,
}

/// A live stream's timing, as the source pad task sees it for one step.
struct Live {
    clock: gst::Clock,
    base_time: gst::ClockTime,
    /// Frames are due at base time + running time + latency.
    latency: gst::ClockTime,
    upstream_latency: gst::ClockTime,
    segment: gst::FormattedSegment<gst::ClockTime>,
}

impl Live {
    fn now(&self) -> gst::ClockTime {
        self.clock.time()
    }

    /// The clock time by which the frame at `pts` must be downstream.
    fn deadline(&self, pts: gst::ClockTime) -> Option<gst::ClockTime> {
        let running_time = self.segment.to_running_time(pts)?;
        Some(self.base_time + running_time + self.latency)
    }

    /// The moment of this machine's clock the pipeline clock shows `at`.
    fn instant(&self, at: gst::ClockTime) -> Instant {
        let wait = at.saturating_sub(self.now());
        Instant::now() + Duration::from_nanos(wait.nseconds())
    }
}

/// What `next_item` found.
enum Next {
    Item(Item),
    /// The wait ran out with nothing queued.
    Timeout,
    /// Flushing, or (when only audio and frames were asked for) something else is next.
    Nothing,
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
    /// Used by the source pad task alone.
    batch: Mutex<Batch>,
    /// Takes what the source pad task rendered downstream.
    pusher: Pusher,
    stats: Mutex<Stats>,
    downstream: Mutex<Downstream>,
}

impl TalkingHead {
    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let clock = frame_clock();
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
        let samples = (buffer.size() / bytes_per_sample) as u64;
        let start = state.segment.start();
        let origin = *state
            .origin
            .get_or_insert(buffer.pts().or(start).unwrap_or(gst::ClockTime::ZERO));

        // The timestamps keep the grid: a gap is silence, and audio over samples already counted
        // (late audio the task already filled with silence, or overlapping buffers) is dropped.
        let (mut silence, mut skip) = (0, 0);
        if let Some(pts) = buffer.pts() {
            let at = clock.samples_in(pts.saturating_sub(origin).nseconds());
            let threshold = clock.samples_in(RESYNC_THRESHOLD.nseconds());
            if at > state.samples + threshold {
                silence = at - state.samples;
                gst::debug!(
                    CAT,
                    imp = self,
                    "Audio resumes {} later than its samples run: filling with silence",
                    gst::ClockTime::from_nseconds(clock.samples_duration(silence))
                );
            } else if at + threshold < state.samples {
                skip = (state.samples - at).min(samples);
                gst::debug!(
                    CAT,
                    imp = self,
                    "Dropping {skip} samples of audio over time already covered"
                );
            }
        }
        state.samples += silence + samples - skip;
        let frames = state.take_ready_frames(&clock, false);
        let items = [
            (silence > 0).then_some(Item::Silence(silence)),
            (skip < samples).then_some(Item::Audio {
                buffer,
                format,
                skip: skip as usize,
            }),
        ];
        self.enqueue(state, items, frames, None)
    }

    /// Queues `items`, `frames` and `last` for the source pad task, in that order.
    ///
    /// Live streams queue under the state lock without waiting: the task, which also queues frames
    /// of silence when audio stops coming, keeps the queue short by rendering late frames idle,
    /// and upstream must never be held up. Otherwise the streaming thread waits while the queue is
    /// full.
    fn enqueue(
        &self,
        state: MutexGuard<'_, State>,
        items: impl IntoIterator<Item = Option<Item>>,
        frames: ReadyFrames,
        last: Option<Item>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if state.live {
            let mut output = self.output.lock().unwrap();
            if output.flushing {
                return Err(gst::FlowError::Flushing);
            }
            output.items.extend(items.into_iter().flatten());
            output.frames += frames.len();
            output.items.extend(frames.map(Item::Frame));
            output.items.extend(last);
            self.output_changed.notify_all();
            return output.flow;
        }
        drop(state);
        for item in items.into_iter().flatten() {
            if !self.queue_item(item) {
                return Err(gst::FlowError::Flushing);
            }
        }
        self.queue_frames(frames)?;
        if let Some(item) = last {
            if !self.queue_item(item) {
                return Err(gst::FlowError::Flushing);
            }
        }
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
                let mut state = self.state.lock().unwrap();
                let origin = *state.origin.get_or_insert(timestamp);
                let end = timestamp + duration.unwrap_or(gst::ClockTime::ZERO);
                let covered = frame_clock().samples_in(end.saturating_sub(origin).nseconds());
                let silence = covered.saturating_sub(state.samples);
                state.samples += silence;
                let frames = state.take_ready_frames(&frame_clock(), false);
                let queued = self.enqueue(state, [Some(Item::Silence(silence))], frames, None);
                queued != Err(gst::FlowError::Flushing)
            }
            EventView::Eos(_) => {
                let mut state = self.state.lock().unwrap();
                let frames = state.take_ready_frames(&frame_clock(), true);
                let queued = self.enqueue(
                    state,
                    [Some(Item::EndOfAudio)],
                    frames,
                    Some(Item::Event(event)),
                );
                queued != Err(gst::FlowError::Flushing)
            }
            EventView::FlushStart(_) => {
                {
                    let mut output = self.output.lock().unwrap();
                    output.reset(true);
                    self.output_changed.notify_all();
                }
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
                self.downstream.lock().unwrap().earliest = None;
                // A stream-start the flush cut short downstream goes again.
                let stream_start = match self.srcpad.sticky_event::<gst::event::StreamStart>(0) {
                    Some(_) => None,
                    None => self.sinkpad.sticky_event::<gst::event::StreamStart>(0),
                };
                {
                    let mut output = self.output.lock().unwrap();
                    output.reset(false);
                    output
                        .items
                        .extend(stream_start.map(|event| Item::Event(event.into())));
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
    /// (with models), plus `max-latency` to fill a batch and render it once its audio is in.
    fn added_latency(&self) -> gst::ClockTime {
        let max_latency = self.settings.lock().unwrap().max_latency;
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
        gst::ClockTime::from_nseconds(clock.samples_duration(look_ahead)) + max_latency
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
                // As GstVideoDecoder does: a frame late by `diff` means the next ones would be too
                // until twice that has been made up.
                let earliest = timestamp.map(|timestamp| {
                    if diff > 0 {
                        timestamp
                            + gst::ClockTime::from_nseconds(2 * diff as u64)
                            + gst::ClockTime::from_nseconds(frame_clock().duration(0))
                    } else {
                        timestamp.saturating_sub(gst::ClockTime::from_nseconds(diff.unsigned_abs()))
                    }
                });
                gst::log!(CAT, imp = self, "QoS: proportion {proportion}, diff {diff}");
                self.downstream.lock().unwrap().earliest = earliest;
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
            self.output.lock().unwrap().reset(false);
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
            {
                let mut output = self.output.lock().unwrap();
                output.reset(true);
                self.output_changed.notify_all();
            }
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
        self.batch.clear_poison();
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
        {
            let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
            if !output.flushing {
                output.flow = Err(gst::FlowError::Error);
            }
            self.output_changed.notify_all();
        }
        let _ = self.pusher.send(Outgoing::Event(gst::event::Eos::new()));
        let _ = self.srcpad.pause_task();
    }

    /// Queues frames for the source pad task, waiting while the queue is full.
    fn queue_frames(&self, frames: ReadyFrames) -> Result<(), gst::FlowError> {
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
        let live = self.live();
        let in_flight = self.in_flight();
        // With nothing queued, a batch in flight goes out once the generator is done with it
        // (unless frames to overlap it with come first), and a live stream wakes when the next
        // frame falls due.
        let wake_at = if in_flight {
            Some(Instant::now() + IN_FLIGHT_POLL)
        } else {
            live.as_ref()
                .and_then(|live| Some(live.instant(self.next_frame_due(live)?)))
        };
        let first = match self.next_item(true, wake_at) {
            Next::Item(item) => item,
            Next::Timeout if in_flight => {
                if self.generator_done() {
                    let result = self.flush_in_flight();
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
            Item::Frame(frame) => self.render_batch(frame, live.as_ref()),
            Item::Event(event) => {
                let eos = matches!(event.view(), gst::EventView::Eos(_));
                self.flush_in_flight().and_then(|_| {
                    match self.pusher.send(Outgoing::Event(event)) {
                        // Nothing follows EOS until a flush restarts the task.
                        Ok(()) if eos => Err(gst::FlowError::Eos),
                        Ok(()) => Ok(gst::FlowSuccess::Ok),
                        Err(err) => Err(err),
                    }
                })
            }
            Item::Negotiate => self.flush_in_flight().and_then(|_| self.negotiate()),
            item => {
                self.apply_audio(item);
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
        let mut output = self.output.lock().unwrap();
        if !output.flushing {
            output.flow = Err(err);
        }
        self.output_changed.notify_all();
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
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.frames_out += 1;
        stats.first_output.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The timing of a live stream with a running clock; `None` otherwise.
    fn live(&self) -> Option<Live> {
        let (segment, upstream_latency) = {
            let state = self.state.lock().unwrap();
            if !state.live {
                return None;
            }
            (state.segment.clone(), state.upstream_latency)
        };
        let element = self.obj();
        let clock = element.clock()?;
        let base_time = element.base_time()?;
        // Frames are due once upstream's latency and ours have passed: the rest of the pipeline
        // latency belongs to the elements downstream (a sink's processing deadline, say).
        let ours = upstream_latency + self.added_latency();
        let latency = self.downstream.lock().unwrap().latency;
        let latency = latency.map_or(ours, |latency| latency.min(ours));
        Some(Live {
            clock,
            base_time,
            latency,
            upstream_latency,
            segment,
        })
    }

    /// When the next frame not yet queued must be made without its audio: half of `max-latency`
    /// before its deadline, keeping the other half to render it.
    fn next_frame_due(&self, live: &Live) -> Option<gst::ClockTime> {
        let max_latency = self.settings.lock().unwrap().max_latency;
        let state = self.state.lock().unwrap();
        let origin = state.origin?;
        let pts =
            origin + gst::ClockTime::from_nseconds(frame_clock().pts_offset(state.frames_queued));
        let deadline = live.deadline(pts)?;
        Some(deadline.saturating_sub(max_latency / 2))
    }

    /// Live audio stopped coming: counts what should have arrived by now as silence, at least
    /// enough to complete the next frame, and queues the frames that completes.
    fn fill_silence(&self, live: &Live) {
        let clock = frame_clock();
        let captured = live
            .now()
            .saturating_sub(live.base_time)
            .saturating_sub(live.upstream_latency);
        let mut state = self.state.lock().unwrap();
        let Some(origin) = state.origin else {
            return;
        };
        let until = state
            .segment
            .position_from_running_time(captured)
            .map_or(0, |position| {
                clock.samples_in(position.saturating_sub(origin).nseconds())
            });
        let next = state.frames_queued;
        let target = until.max(state.samples_for_frame(&clock, next));
        let silence = target.saturating_sub(state.samples);
        gst::debug!(
            CAT,
            imp = self,
            "No audio for frame {next} by its deadline: {} of silence",
            gst::ClockTime::from_nseconds(clock.samples_duration(silence))
        );
        state.samples += silence;
        let frames = state.take_ready_frames(&clock, false);
        let _ = self.enqueue(state, [Some(Item::Silence(silence))], frames, None);
    }

    /// Takes the next item: any item when `any`, else only audio or a frame (what a batch may
    /// gather without reordering anything downstream sees). With nothing queued, waits until
    /// `until` (forever for `None` when `any`, not at all for `None` otherwise).
    fn next_item(&self, any: bool, until: Option<Instant>) -> Next {
        let mut output = self.output.lock().unwrap();
        loop {
            // After downstream failed a push, the task waits for a flush or a restart.
            if output.flushing || output.flow.is_err() {
                return Next::Nothing;
            }
            match output.items.front() {
                Some(Item::Event(_) | Item::Negotiate) if !any => return Next::Nothing,
                Some(_) => {
                    let item = output.items.pop_front().expect("an item");
                    if let Item::Frame(_) = item {
                        output.frames -= 1;
                        self.output_changed.notify_all();
                    }
                    return Next::Item(item);
                }
                None => match until {
                    None if any => output = self.output_changed.wait(output).unwrap(),
                    None => return Next::Nothing,
                    Some(until) => {
                        let now = Instant::now();
                        if now >= until {
                            return Next::Timeout;
                        }
                        output = self
                            .output_changed
                            .wait_timeout(output, until - now)
                            .unwrap()
                            .0;
                    }
                },
            }
        }
    }

    fn apply_audio(&self, item: Item) {
        let mut renderer = self.renderer.lock().unwrap();
        let Some(engine) = renderer.engine.as_mut() else {
            return;
        };
        match item {
            Item::Audio {
                buffer,
                format,
                skip,
            } => {
                let non_finite = engine.push_audio(&buffer, format, skip) as u64;
                drop(renderer);
                if non_finite > 0 {
                    self.report_non_finite(&buffer, non_finite);
                }
            }
            Item::Silence(samples) => engine.push_silence(samples),
            Item::EndOfAudio => engine.features.finish(),
            Item::Restart => {
                engine.features.reset();
                engine.fade.cut();
            }
            Item::Frame(_) | Item::Event(_) | Item::Negotiate => unreachable!("not audio"),
        }
    }

    /// Counts samples that were NaN or infinite, and warns about the first buffer of a run that
    /// has any.
    fn report_non_finite(&self, buffer: &gst::BufferRef, samples: u64) {
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
    /// them. Live, it waits for more frames while the first one's deadline allows, and renders
    /// the batch idle if inferring it would miss that deadline or downstream QoS says it is late.
    fn render_batch(
        &self,
        first: Frame,
        live: Option<&Live>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.srcpad.check_reconfigure() {
            self.flush_in_flight()?;
            self.negotiate()?;
        }
        let threshold_db = self.settings.lock().unwrap().silence_threshold_db as f32;
        let (batch_size, costs) = match &self.renderer.lock().unwrap().engine {
            Some(engine) => (engine.synth.batch_size(), engine.costs),
            None => return Err(gst::FlowError::Flushing),
        };
        let deadline = live.and_then(|live| live.deadline(first.pts));
        let mut batch = self.batch.lock().unwrap();
        let Batch {
            frames,
            requests,
            weights,
            buffers,
        } = &mut *batch;
        frames.clear();
        frames.push(first);
        while frames.len() < batch_size {
            let gather_until = live.zip(deadline).map(|(live, deadline)| {
                let render = costs.inferred(frames.len() + 1) + DEADLINE_MARGIN;
                live.instant(deadline.saturating_sub(clock_time(render)))
            });
            // Live, a batch takes no more frames, queued or not, than can be inferred by the
            // first one's deadline; the rest start the next batch instead of all going idle.
            if gather_until.is_some_and(|until| Instant::now() >= until) {
                break;
            }
            match self.next_item(false, gather_until) {
                Next::Item(Item::Frame(frame)) => frames.push(frame),
                Next::Item(audio) => self.apply_audio(audio),
                Next::Timeout | Next::Nothing => break,
            }
        }

        requests.clear();
        requests.extend(frames.iter().map(|frame| FrameRequest {
            frame: frame.index as usize,
            template: frame.template,
            whole: true,
        }));

        // Which frames have speech to infer, and whether inferring them would be late.
        let fade = match &self.renderer.lock().unwrap().engine {
            Some(engine) => engine.weights(frames, threshold_db, weights),
            None => return Err(gst::FlowError::Flushing),
        };
        let to_infer = weights.iter().filter(|&&weight| weight > 0.0).count();
        let late_by = if to_infer > 0 {
            self.late_by(live, deadline, frames, &costs)
        } else {
            None
        };
        let late_frames = if late_by.is_some() { to_infer } else { 0 };

        let started = Instant::now();
        buffers.clear();
        let mut tally = Tally::default();
        // Offline, a batch of speech goes to the generator thread, and the batch before it is
        // composed and converted while the generator runs.
        let overlap = live.is_none() && late_by.is_none() && to_infer == frames.len();
        // An overlapped batch's lists are swapped for those of the batch before it.
        let (batch_len, last) = (frames.len(), frames.last().map(|frame| frame.index));
        {
            let mut renderer = self.renderer.lock().unwrap();
            let Renderer { engine, format } = &mut *renderer;
            let (Some(engine), Some(format)) = (engine.as_mut(), format.as_mut()) else {
                return Err(gst::FlowError::NotNegotiated);
            };
            if late_by.is_some() {
                // Speech fades back in once frames are in time again.
                weights.fill(0.0);
                engine.fade.cut();
            } else {
                engine.fade = fade;
            }
            // A frame on a template kept converted needs only the template's region: the batch
            // in flight, converted before this one, can only add to what is kept.
            for request in requests.iter_mut() {
                request.whole = format.converter.converts_whole(request.template);
            }
            let rendered = if overlap {
                self.render_overlapped(
                    engine, format, frames, requests, weights, buffers, &mut tally,
                )
            } else {
                self.land_in_flight(engine, format, buffers, &mut tally)
                    .and_then(|()| {
                        self.render_now(
                            engine, format, frames, requests, weights, buffers, &mut tally,
                        )
                    })
            };
            if let Err(err) = rendered {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                return Err(gst::FlowError::Error);
            }
            if let Some(last) = last {
                engine.features.release_before(last as usize + 1);
            }
        }
        if let Some(jitter) = late_by {
            self.post_qos(live, frames, late_frames, jitter);
        }
        tally.late = late_frames as u64;
        self.count(&tally, started.elapsed(), batch_len);
        self.push_rendered(buffers)
    }

    /// Renders a batch right away: runs of frames through the generator, and of idle frames,
    /// each converted into `buffers`. No batch may be in flight.
    #[allow(clippy::too_many_arguments)]
    fn render_now(
        &self,
        engine: &mut Engine,
        format: &mut OutputFormat,
        frames: &[Frame],
        requests: &[FrameRequest],
        weights: &[f32],
        buffers: &mut Vec<Result<gst::Buffer, gst::FlowError>>,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let encode_started = Instant::now();
        engine.encode()?;
        tally.stages.encoder += encode_started.elapsed();
        let mut start = 0;
        while start < frames.len() {
            let inferred = weights[start] > 0.0;
            let len = weights[start..]
                .iter()
                .take_while(|&&weight| (weight > 0.0) == inferred)
                .count();
            let run = start..start + len;
            let run_started = Instant::now();
            let generator = engine.render(&requests[run.clone()], &weights[run.clone()])?;
            tally.stages.generator += generator;
            tally.stages.image += run_started.elapsed().saturating_sub(generator);
            let convert_started = Instant::now();
            for (slot, frame) in frames[run].iter().enumerate() {
                buffers.push(self.output_buffer(format, engine.synth.frame(0, slot), frame));
            }
            tally.stages.convert += convert_started.elapsed();
            let cost = run_started.elapsed();
            if inferred {
                engine.costs.add_inferred(cost, len);
                tally.inference_time += cost;
                tally.inferred += len as u64;
            } else {
                engine.costs.add_idle(cost, len);
                tally.idle += len as u64;
            }
            start += len;
        }
        Ok(())
    }

    /// Hands a batch of speech to the generator thread, then lands the batch in flight before
    /// it into `buffers` while the generator runs; the new batch is in flight after, its lists
    /// swapped into the engine's.
    #[allow(clippy::too_many_arguments)]
    fn render_overlapped(
        &self,
        engine: &mut Engine,
        format: &mut OutputFormat,
        frames: &mut Vec<Frame>,
        requests: &mut Vec<FrameRequest>,
        weights: &mut Vec<f32>,
        buffers: &mut Vec<Result<gst::Buffer, gst::FlowError>>,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let bank = if engine.in_flight.active {
            1 - engine.in_flight.bank
        } else {
            0
        };
        let encode_started = Instant::now();
        engine.encode()?;
        let encoder = encode_started.elapsed();
        let image = engine.launch(requests, bank)?;
        let landed = self.land_in_flight(engine, format, buffers, tally);
        let in_flight = &mut engine.in_flight;
        std::mem::swap(&mut in_flight.frames, frames);
        std::mem::swap(&mut in_flight.requests, requests);
        std::mem::swap(&mut in_flight.weights, weights);
        in_flight.bank = bank;
        in_flight.stages = Stages {
            encoder,
            image,
            ..Stages::default()
        };
        in_flight.active = true;
        landed
    }

    /// Waits for the batch in flight, if any, composes it and converts its frames into
    /// `buffers`.
    fn land_in_flight(
        &self,
        engine: &mut Engine,
        format: &mut OutputFormat,
        buffers: &mut Vec<Result<gst::Buffer, gst::FlowError>>,
        tally: &mut Tally,
    ) -> Result<(), String> {
        if !engine.in_flight.active {
            return Ok(());
        }
        let (generator, compose) = engine.land()?;
        let convert_started = Instant::now();
        let Engine {
            synth, in_flight, ..
        } = engine;
        for (slot, frame) in in_flight.frames.iter().enumerate() {
            buffers.push(self.output_buffer(format, synth.frame(in_flight.bank, slot), frame));
        }
        let convert = convert_started.elapsed();
        let stages = Stages {
            encoder: in_flight.stages.encoder,
            generator,
            image: in_flight.stages.image + compose,
            convert,
        };
        tally.stages.add(&stages);
        tally.inferred += in_flight.frames.len() as u64;
        tally.inference_time += stages.encoder + stages.image + stages.generator + stages.convert;
        Ok(())
    }

    /// Lands the batch in flight, if any, and pushes its frames: before anything else goes
    /// downstream, and when no more frames are queued to overlap it with.
    fn flush_in_flight(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let started = Instant::now();
        let mut batch = self.batch.lock().unwrap();
        let buffers = &mut batch.buffers;
        buffers.clear();
        let mut tally = Tally::default();
        let landed = {
            let mut renderer = self.renderer.lock().unwrap();
            let Renderer { engine, format } = &mut *renderer;
            let (Some(engine), Some(format)) = (engine.as_mut(), format.as_mut()) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if !engine.in_flight.active {
                return Ok(gst::FlowSuccess::Ok);
            }
            let frames = engine.in_flight.frames.len();
            self.land_in_flight(engine, format, buffers, &mut tally)
                .map(|()| frames)
        };
        match landed {
            Ok(frames) => {
                self.count(&tally, started.elapsed(), frames);
                self.push_rendered(buffers)
            }
            Err(err) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Whether the generator is done with the batch in flight (or none is).
    fn generator_done(&self) -> bool {
        let mut renderer = self.renderer.lock().unwrap();
        let Some(engine) = renderer.engine.as_mut() else {
            return true;
        };
        !engine.in_flight.active
            || engine
                .generator_thread
                .as_mut()
                .is_none_or(|thread| thread.done())
    }

    /// Whether a batch is in flight.
    fn in_flight(&self) -> bool {
        self.renderer
            .lock()
            .unwrap()
            .engine
            .as_ref()
            .is_some_and(|engine| engine.in_flight.active)
    }

    /// Adds what rendering a batch of `frames` frames took to the stats.
    fn count(&self, tally: &Tally, render_time: Duration, frames: usize) {
        let mut stats = self.stats.lock().unwrap();
        stats.render_time += render_time;
        stats.stages.add(&tally.stages);
        stats.inference_time += tally.inference_time;
        stats.last_batch = frames as u32;
        stats.frames_inferred += tally.inferred;
        stats.frames_late += tally.late;
        stats.frames_idle += tally.idle - tally.late;
    }

    /// Sends rendered buffers to the push thread, in order; the first after a start or a flush
    /// is marked DISCONT. Draining drops the buffers left if sending fails.
    fn push_rendered(
        &self,
        buffers: &mut Vec<Result<gst::Buffer, gst::FlowError>>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if buffers.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let discont = std::mem::take(&mut self.output.lock().unwrap().discont);
        for (n, buffer) in buffers.drain(..).enumerate() {
            let mut buffer = buffer?;
            if n == 0 && discont {
                buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
            }
            self.pusher.send(Outgoing::Buffer(buffer))?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// How late the batch `frames` would be if inferred: past the first frame's `deadline` once
    /// rendered at the predicted cost, or before the earliest running time downstream QoS asks
    /// for.
    /// `None` when it is in time.
    fn late_by(
        &self,
        live: Option<&Live>,
        deadline: Option<gst::ClockTime>,
        frames: &[Frame],
        costs: &Costs,
    ) -> Option<i64> {
        let first = frames.first()?;
        if let (Some(live), Some(deadline)) = (live, deadline) {
            let done = live.now() + clock_time(costs.inferred(frames.len()) + DEADLINE_MARGIN);
            gst::log!(
                CAT,
                imp = self,
                "Batch of {} from frame {}: {:?} to infer, {} to its deadline",
                frames.len(),
                first.index,
                costs.inferred(frames.len()),
                deadline.saturating_sub(live.now())
            );
            if done > deadline {
                return Some((done - deadline).nseconds() as i64);
            }
        }
        let earliest = self.downstream.lock().unwrap().earliest?;
        let running_time = self
            .state
            .lock()
            .unwrap()
            .segment
            .to_running_time(first.pts)?;
        (running_time < earliest).then(|| (earliest - running_time).nseconds() as i64)
    }

    /// Tells the application that `frames` were rendered idle to keep up.
    fn post_qos(&self, live: Option<&Live>, frames: &[Frame], late: usize, jitter: i64) {
        let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
            return;
        };
        let (running_time, stream_time) = {
            let state = self.state.lock().unwrap();
            (
                state.segment.to_running_time(first.pts),
                state.segment.to_stream_time(first.pts),
            )
        };
        let (processed, dropped) = {
            let stats = self.stats.lock().unwrap();
            (stats.frames_out, stats.frames_late + late as u64)
        };
        gst::debug!(
            CAT,
            imp = self,
            "Frames {} to {} would be {} late: rendering them idle",
            first.index,
            last.index,
            gst::ClockTime::from_nseconds(jitter.max(0) as u64)
        );
        let message = gst::message::Qos::builder(live.is_some())
            .running_time(running_time)
            .stream_time(stream_time)
            .timestamp(first.pts)
            .duration(last.pts + last.duration - first.pts)
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
    fn output_buffer(
        &self,
        format: &mut OutputFormat,
        bgr: &[u8],
        frame: &Frame,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let mut buffer = format.pool.acquire_buffer(None)?;
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(frame.pts);
            buffer.set_duration(frame.duration);
            buffer.set_offset(frame.index);
            buffer.set_offset_end(frame.index + 1);
            format
                .converter
                .convert(bgr, frame.template, buffer)
                .map_err(|err| {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                    gst::FlowError::Error
                })?;
        }
        Ok(buffer)
    }

    /// Picks the output format with downstream, sends the caps and sets up the buffer pool.
    fn negotiate(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        // What was rendered in the old format goes first.
        self.pusher.drain()?;
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

        // The template cache's memory, split: into YUV, a frame kept converted saves a colour
        // conversion, about three times what a decoded template saves per byte, so converted
        // frames get three quarters; packed RGB is converted by a copy or a swizzle, and keeps none.
        let budget = self.settings.lock().unwrap().template_cache as usize * 1024 * 1024;
        let converted = if out_info.format_info().is_yuv() {
            budget / 4 * 3
        } else {
            0
        };
        let crops = avatar.frames.iter().map(|template| template.crop).collect();
        let converter =
            FrameConverter::new((avatar.width, avatar.height), crops, &out_info, converted)
                .map_err(|err| {
                    gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{err}"));
                    gst::FlowError::NotNegotiated
                })?;
        let mut renderer = self.renderer.lock().unwrap();
        if let Some(engine) = renderer.engine.as_mut() {
            // Without frames kept converted, every frame is converted whole.
            let regions = match converted {
                0 => vec![None; avatar.frames.len()],
                _ => converter.regions(),
            };
            if let Some(Some(region)) = regions.first() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "Templates kept as the {}x{} box around the face",
                    region.width(),
                    region.height()
                );
            }
            engine.synth.set_cache(&avatar, budget - converted, regions);
        }
        renderer.format = Some(OutputFormat { converter, pool });
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
            if let Some(models) = &resources.models {
                let batch = self.settings.lock().unwrap().batch_size as usize;
                let cost = warm_up(&resources.avatar, models, batch).map_err(|err| {
                    gst::error_msg!(gst::LibraryError::Init, ("Warming up: {err}"))
                })?;
                *models.frame_cost.lock().unwrap() = Some(cost);
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
        let cache = settings.template_cache as usize * 1024 * 1024;
        let synth = FrameSynth::new(&avatar, batch_size, cache)
            .map_err(|err| gst::error_msg!(gst::LibraryError::Init, ("{err}")))?;
        *self.state.lock().unwrap() =
            State::new(Some(avatar.clone()), settings.start_frame, models.is_some());
        self.output.lock().unwrap().max_frames = QUEUED_BATCHES * batch_size;
        self.pusher.set_limit(QUEUED_BATCHES * batch_size);
        *self.stats.lock().unwrap() = Stats::default();
        let mut engine = Engine {
            avatar,
            models,
            features: FeatureStream::new(batch_size),
            synth,
            fade: Fade::new(settings.blend_frames),
            samples: Vec::new(),
            costs: Costs::default(),
            spare: Vec::with_capacity(2),
            generator_thread: None,
            in_flight: InFlight::default(),
        };
        let frame_cost = engine
            .models
            .as_ref()
            .and_then(|models| *models.frame_cost.lock().unwrap());
        if let Some(cost) = frame_cost {
            engine.costs.add_inferred(cost, 1);
        }
        gst::debug!(
            CAT,
            imp = self,
            "Inferring a frame takes {:?}",
            engine.costs.inferred_frame()
        );
        self.renderer.lock().unwrap().engine = Some(engine);
        *self.downstream.lock().unwrap() = Downstream::default();
        Ok(())
    }
}

/// Runs freshly loaded models on silence over the first template: a frame alone twice, timing
/// the second (what inferring a frame costs, so that a live stream's first batch already knows
/// what it can afford), then a whole batch, so that ONNX Runtime has set up its memory for full
/// batches before the first stream starts rather than in its first batch.
fn warm_up(avatar: &Avatar, models: &Models, batch: usize) -> Result<Duration, String> {
    let batch = batch.max(1);
    let mut synth = FrameSynth::new(avatar, batch, 0)?;
    let mut tensors = Tensors::new(batch);
    let mut features = FeatureStream::new(batch);
    features.push(&vec![0.0; samples_needed_for_frame(batch - 1) as usize]);
    features.finish();
    let mut encoder = models.encoder.lock().unwrap();
    features
        .encode(|windows, outputs| encoder.run(windows, outputs))
        .map_err(|err| err.to_string())?;
    let mut generator = models.generator.lock().unwrap();
    let requests: Vec<_> = (0..batch)
        .map(|frame| FrameRequest {
            frame,
            template: 0,
            whole: true,
        })
        .collect();
    let weights = vec![1.0; batch];
    let mut run = |frames: usize| {
        synth.render_speech(
            avatar,
            &requests[..frames],
            &weights[..frames],
            &features,
            &mut tensors,
            |images, audio, output| {
                generator
                    .run(images, audio, output)
                    .map_err(|err| err.to_string())
            },
        )
    };
    run(1)?;
    let started = Instant::now();
    run(1)?;
    let cost = started.elapsed();
    if batch > 1 {
        run(batch)?;
    }
    Ok(cost)
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
            batch: Mutex::new(Batch::default()),
            pusher: Pusher::new(QUEUED_BATCHES * DEFAULT_BATCH_SIZE as usize),
            stats: Mutex::new(Stats::default()),
            downstream: Mutex::new(Downstream::default()),
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
                glib::ParamSpecDouble::builder("silence-threshold")
                    .nick("Silence threshold")
                    .blurb(
                        "Level in dBFS (RMS over 12.5 ms) below which audio counts as silence: a \
                         frame whose whole audio window is silent shows its template frame \
                         without inference. -200 infers every frame",
                    )
                    .minimum(SILENCE_FLOOR_DB.into())
                    .maximum(0.0)
                    .default_value(DEFAULT_SILENCE_THRESHOLD_DB)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("blend-frames")
                    .nick("Blend frames")
                    .blurb(
                        "Frames over which the generated face fades in when speech starts and out \
                         when it stops (1: a cut)",
                    )
                    .minimum(1)
                    .maximum(50)
                    .default_value(DEFAULT_BLEND_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-latency")
                    .nick("Maximum latency")
                    .blurb(
                        "Live streams: nanoseconds a frame may take, once its audio is in, to \
                         fill a batch and render; added to the latency with the audio \
                         look-ahead. Frames that cannot be inferred within it are shown idle",
                    )
                    .minimum(gst::ClockTime::from_mseconds(20).nseconds())
                    .maximum(gst::ClockTime::from_seconds(10).nseconds())
                    .default_value(DEFAULT_MAX_LATENCY.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-threads")
                    .nick("Inference threads")
                    .blurb(
                        "Threads ONNX Runtime runs each generator operator on; 0 lets ONNX \
                         Runtime choose (one per physical core). The audio encoder runs on one",
                    )
                    .maximum(256)
                    .default_value(DEFAULT_INFERENCE_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("template-cache")
                    .nick("Template cache (MiB)")
                    .blurb(
                        "Memory for decoded template frames and their face crops, kept so a \
                         template shown again is not decoded again (1280x720 takes about 3 MiB \
                         a frame); 0 decodes every frame",
                    )
                    .maximum(1 << 20)
                    .default_value(DEFAULT_TEMPLATE_CACHE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Since the element last started: frames-out, frames-inferred (through \
                         the models), frames-idle (template frames for silence, or without \
                         models), frames-late (template frames because inference would have \
                         been late), batch-size, last-batch, queued-frames, render-fps (frames \
                         per second of rendering time), inference-fps (the same for inferred \
                         frames), output-fps (frames per second since the first frame went \
                         out), latency (nanoseconds the element adds when live), and the mean \
                         milliseconds a frame spends in each stage: encoder-ms, generator-ms \
                         (per inferred frame), image-ms (template decode, crop, paste, fade) and \
                         convert-ms",
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
        if !self.property_writable_now(pspec) {
            return;
        }
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
            "silence-threshold" => {
                settings.silence_threshold_db = value.get().expect("type checked upstream")
            }
            "blend-frames" => settings.blend_frames = value.get().expect("type checked upstream"),
            "max-latency" => {
                let max_latency =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
                if max_latency != settings.max_latency {
                    settings.max_latency = max_latency;
                    drop(settings);
                    gst::info!(CAT, imp = self, "max-latency set to {max_latency}");
                    let _ = self
                        .obj()
                        .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
                }
            }
            "inference-threads" => {
                settings.inference_threads = value.get().expect("type checked upstream")
            }
            "template-cache" => {
                settings.template_cache = value.get().expect("type checked upstream")
            }
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            let latency = self.added_latency();
            let batch_size = self.settings.lock().unwrap().batch_size;
            let queued_frames = self.output.lock().unwrap().frames;
            let stats = self.stats.lock().unwrap();
            return stats
                .to_structure(batch_size, queued_frames, latency)
                .to_value();
        }
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => settings.avatar.to_value(),
            "start-frame" => settings.start_frame.to_value(),
            "generator" => settings.generator.to_value(),
            "audio-encoder" => settings.audio_encoder.to_value(),
            "ort-library" => settings.ort_library.to_value(),
            "batch-size" => settings.batch_size.to_value(),
            "silence-threshold" => settings.silence_threshold_db.to_value(),
            "blend-frames" => settings.blend_frames.to_value(),
            "max-latency" => settings.max_latency.nseconds().to_value(),
            "inference-threads" => settings.inference_threads.to_value(),
            "template-cache" => settings.template_cache.to_value(),
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
