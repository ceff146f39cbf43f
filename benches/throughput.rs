//! `make bench` (`cargo bench --bench throughput`): how close the element comes to ONNX Runtime
//! running the two models alone, on one machine, in one run.
//!
//! 1. ONNX Runtime alone (encoder + U-Net per frame): thread setups at batch 4, then batch 1-16
//!    with the best setup;
//! 2. the element end to end (`filesrc ! wavparse ! audioconvert ! audioresample ! talkinghead !
//!    fakesink sync=false`) on the 1280x720 bench avatar with the architecture-exact models, at its
//!    defaults and at its best settings; then at its defaults in rounds alternating with sweeps of
//!    ONNX Runtime alone over every batch size, for the ratio that decides (the median over the
//!    rounds of each element run against the best batch's mean of the sweeps either side of it,
//!    so that the machine's drift cancels);
//! 3. a naive baseline: a per-frame loop over the library's modules, batch 1, one session;
//! 4. peak RSS, heap allocations per frame (Rust only: a counting global allocator; ONNX Runtime's
//!    C++ and GLib allocate with `malloc` and are not seen), RSS growth over 5,000 frames;
//! 5. time per stage per frame (from the naive loop);
//! 6. live at real-time pace: the bundled clip looped three times (30 s, 21 s of it speech)
//!    through a live `appsrc` in 20 ms buffers into `talkinghead ! queue ! fakesink sync=true`,
//!    on the built-in 640x360 avatar with the architecture-exact models: the share of speech
//!    frames inferred, held (a nearby frame's face) and late (the template), the output rate, the
//!    most frames ever queued and the latency reported. `--live` runs this row alone;
//! 7. pauses: the bench clip and 10 s of digital silence through the element offline at its
//!    defaults (pause frames show their template's silent face, made once and kept) against every
//!    frame inferred; the silent faces made, their memory, and the time the silent window takes
//!    to compute when the models load.
//!
//! 8. execution providers: the element offline through OpenVINO fp32 and bf16 against the CPU
//!    provider, alternating, each run a process of its own; their quality over the crop boxes;
//! 9. INT8: the generator of `make train-model` against the INT8 one `tools/quantize.py` made of
//!    it: ONNX Runtime alone at batches 1-8; the element offline and live (three live runs each,
//!    alternating), INT8 on the CPU provider and through OpenVINO; and the element's frames INT8
//!    against fp32 over the crop boxes beside the quantizer's held-out PSNR.
//!
//! The element's frames (I420, as the timed runs produce them) are checked bit-identical to the
//! naive baseline's BGR frames converted by the same `GstVideoConverter`.
//!
//! `--smoke`: the same steps on the demo avatar and models and 2 s of audio, in seconds (run by
//! `tests/bench_smoke.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use gsttalkinghead::audio::features::FRAME_WINDOW_LEN;
use gsttalkinghead::audio::stream::FeatureStream;
use gsttalkinghead::avatar::{Avatar, JpegDecoder, Source, pingpong};
use gsttalkinghead::compose::{self, BgrImage, Compositor, FaceCrop, INPUT_LEN, OUTPUT_LEN};
use gsttalkinghead::engine::{self, Batch, Engine, SampleFormat};
use gsttalkinghead::inference::{self, AudioEncoder, Generator, SessionOptions};
use gsttalkinghead::resources::{self, Resources, Wanted};
use gsttalkinghead::timeline::{Frame, Timeline};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The element's settings the bench calls "best", chosen from the measurements in the README;
/// `BENCH_BEST="name=value ..."` tries others. The smoke run uses batch 1: the demo generator's
/// MatMul rounds differently at other batch sizes, so only batch 1 is bit-identical there.
const BEST: &str = "template-cache=512";
const SMOKE_BEST: &str = "batch-size=1";
/// Frames of the memory run: warm-up, then the frames RSS growth is measured over.
const WARM_UP_FRAMES: u64 = 500;
/// Batch sizes ONNX Runtime alone runs at.
const BATCHES: [usize; 5] = [1, 2, 4, 8, 16];
/// Element runs alternating with sweeps of ONNX Runtime alone for the deciding ratio, and the
/// frames each batch size of such a sweep is timed over.
const INTERLEAVED_ROUNDS: usize = 3;
const ROUND_FRAMES: usize = 48;
const LONG_FRAMES: u64 = 5_000;
/// The OpenVINO configuration the providers rows measure.
const OPENVINO_BF16: [&str; 2] = ["execution-provider=openvino", "precision=bf16"];
/// Rounds of the providers' alternating offline runs, and the frames the quality row compares.
const PROVIDER_ROUNDS: usize = 3;
const QUALITY_FRAMES: usize = 50;
/// Rounds of the INT8 rows' alternating runs.
const INT8_ROUNDS: usize = 3;
/// What the INT8 rows run in the element: a name, whether the generator is the INT8 one, and
/// other properties.
const INT8_CONFIGURATIONS: [(&str, bool, &[&str]); 3] = [
    ("fp32 (trained)", false, &[]),
    ("INT8", true, &[]),
    (
        "INT8 through OpenVINO",
        true,
        &["execution-provider=openvino"],
    ),
];

struct Setup {
    avatar: PathBuf,
    encoder: PathBuf,
    generator: PathBuf,
    speech: PathBuf,
    out: PathBuf,
}

impl Setup {
    fn new(smoke: bool) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = root.join("target/bench");
        std::fs::create_dir_all(&out).expect("creating target/bench");
        if smoke {
            let demo = root.join("models/demo");
            let speech = out.join("smoke.wav");
            let samples = read_wav(&demo.join("speech.wav"));
            write_wav(&speech, &samples[..32_000]);
            Setup {
                encoder: demo.join("models/audio_encoder.onnx"),
                generator: demo.join("models/generator.onnx"),
                avatar: demo,
                speech,
                out,
            }
        } else {
            Setup {
                avatar: root.join("target/bench-avatar"),
                encoder: root.join("target/bench-models/audio_encoder.onnx"),
                generator: root.join("target/bench-models/generator.onnx"),
                speech: root.join("models/demo/speech.wav"),
                out,
            }
        }
    }
}

impl Setup {
    /// The element end to end on the bench clip, `talkinghead name=head` into `fakesink
    /// name=sink`.
    fn launch(&self) -> String {
        format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
             talkinghead name=head ! fakesink name=sink sync=false",
            self.speech.display()
        )
    }

    /// The bench avatar and models with every frame through the models from its own audio, as
    /// ONNX Runtime alone and the naive loop run them: at its defaults the element shows a frame
    /// whose audio is silent with its template's silent face, kept (row 7).
    fn every_frame_inferred(&self) -> Vec<(&'static str, String)> {
        vec![
            ("avatar", self.avatar.display().to_string()),
            ("audio-encoder", self.encoder.display().to_string()),
            ("generator", self.generator.display().to_string()),
            ("silence-threshold", "-200".to_string()),
        ]
    }
}

/// 16-bit mono 16 kHz PCM WAV samples as the element sees them after `audioconvert` (F32).
fn read_wav(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if id == b"fmt " {
            let fmt = &bytes[at + 8..];
            let (channels, rate, bits) = (
                u16::from_le_bytes([fmt[2], fmt[3]]),
                u32::from_le_bytes(fmt[4..8].try_into().unwrap()),
                u16::from_le_bytes([fmt[14], fmt[15]]),
            );
            assert_eq!(
                (channels, rate, bits),
                (1, 16_000, 16),
                "{}: needs 16 kHz mono 16-bit PCM",
                path.display()
            );
        }
        if id == b"data" {
            return bytes[at + 8..at + 8 + len]
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("{}: no data chunk", path.display());
}

fn write_wav(path: &Path, samples: &[f32]) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|&s| ((s * 32768.0).round() as i16).to_le_bytes())
        .collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in [16u32, 0x0001_0001, 16_000, 32_000, 0x0010_0002] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

/// FNV-1a over 8-byte words: cheap enough to hash every frame inside a timed run.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        h = (h ^ u64::from_le_bytes(word.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak RSS (VmHWM) to the current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[derive(Default, Clone, Copy)]
struct Stage {
    time: Duration,
    allocations: u64,
}

const STAGES: [&str; 6] = [
    "mel",
    "encoder",
    "pre-processing (decode, crop, pack, window)",
    "U-Net",
    "composition (unpack, paste)",
    "conversion (BGR to I420)",
];

struct Naive {
    frames: usize,
    elapsed: Duration,
    /// Per stage, summed over the frames from `steady_from` on.
    stages: [Stage; 6],
    steady_frames: usize,
    i420: Vec<u64>,
    /// Generator inputs of the first frames, realistic input for the ONNX Runtime run.
    images: Vec<f32>,
    audio: Vec<f32>,
}

/// The element's work written as a plain loop: one frame at a time, batch 1, one session, nothing
/// overlapped, every stage timed.
fn naive(avatar: &Avatar, samples: &[f32], models: &mut Models, keep: usize) -> Naive {
    let (width, height) = (avatar.width as usize, avatar.height as usize);
    let frames = samples.len().div_ceil(640);
    let steady_from = (frames / 5).min(50);
    let mut decoder = JpegDecoder::new().unwrap();
    let mut compositor = Compositor::new();
    let mut crop = FaceCrop::new();
    let mut features = FeatureStream::new(1);
    let mut frame = vec![0u8; 3 * width * height];
    let mut images = vec![0.0f32; INPUT_LEN];
    let mut audio = vec![0.0f32; FRAME_WINDOW_LEN];
    let mut output = vec![0.0f32; OUTPUT_LEN];
    let (bgr_info, i420_info) = video_infos(avatar);
    let converter = gst_video::VideoConverter::new(&bgr_info, &i420_info, None).unwrap();
    let mut bgr_buffer = gst::Buffer::with_size(bgr_info.size()).unwrap();
    let mut i420_buffer = gst::Buffer::with_size(i420_info.size()).unwrap();
    let mut result = Naive {
        frames,
        elapsed: Duration::ZERO,
        stages: [Stage::default(); 6],
        steady_frames: frames - steady_from,
        i420: Vec::with_capacity(frames),
        images: Vec::new(),
        audio: Vec::new(),
    };
    let mut stage = [Stage::default(); 6];
    let timed = |stage: &mut Stage, work: &mut dyn FnMut()| {
        let (start, allocs) = (Instant::now(), allocations());
        work();
        stage.time += start.elapsed();
        stage.allocations += allocations() - allocs;
    };

    let mut timeline = Timeline::new(avatar.frames.len(), 0, true);
    let started = Instant::now();
    let mut next = 0;
    let mut chunks = samples.chunks(640);
    loop {
        let chunk = chunks.next();
        timed(&mut stage[0], &mut || match chunk {
            Some(chunk) => features.push(chunk),
            None => features.finish(),
        });
        timed(&mut stage[1], &mut || {
            features
                .encode(|windows, out| models.encoder.run(windows, out))
                .unwrap()
        });
        if let Some(chunk) = chunk {
            timeline.place_audio(None, 0, chunk.len() as u64);
        }
        for ready in timeline.take_ready(chunk.is_none()) {
            let template = &avatar.frames[ready.template];
            timed(&mut stage[2], &mut || {
                decoder
                    .decode_bgr(
                        &template.jpeg,
                        &mut frame,
                        (avatar.width, avatar.height),
                        3 * width,
                    )
                    .unwrap();
                let image = BgrImage::new(&frame[..], width, height, 3 * width);
                compositor.crop(&image, template.crop, &mut crop);
                compose::pack_input(&crop, &mut images);
                features.write_frame_window(next, &mut audio);
            });
            if next < keep {
                result.images.extend_from_slice(&images);
                result.audio.extend_from_slice(&audio);
            }
            timed(&mut stage[3], &mut || {
                models.generator.run(&images, &audio, &mut output).unwrap()
            });
            timed(&mut stage[4], &mut || {
                compose::unpack_output(&output, &mut crop);
                let mut image = BgrImage::new(&mut frame[..], width, height, 3 * width);
                compositor.paste(&crop, &mut image, template.crop);
            });
            timed(&mut stage[5], &mut || {
                convert(
                    &converter,
                    &frame,
                    &mut bgr_buffer,
                    &bgr_info,
                    &mut i420_buffer,
                    &i420_info,
                )
            });
            result.i420.push(hash(&i420_buffer.map_readable().unwrap()));
            features.release_before(next + 1);
            next += 1;
            if next == steady_from {
                stage = [Stage::default(); 6];
            }
        }
        if chunk.is_none() {
            break;
        }
    }
    result.elapsed = started.elapsed();
    assert_eq!(next, frames, "the naive loop rendered every frame");
    result.stages = stage;
    result
}

/// The element's own engine without GStreamer around it: the timeline decides which frames are
/// ready, as in the element, and the engine renders them in batches as the element's task does
/// offline (batches of speech overlapped with the generator), every frame converted into I420 by
/// `emit` as the element converts whole frames. Timed per stage, allocations counted.
struct EngineRun {
    frames: usize,
    elapsed: Duration,
    /// Time in features (mel, encoder), image work, U-Net, conversion.
    stages: [Duration; 4],
    /// Allocations in the parts of [`ENGINE_PARTS`].
    allocations: [u64; 3],
    steady_frames: usize,
    i420: Vec<u64>,
}

const ENGINE_STAGES: [&str; 4] = [
    "features (mel, encoder)",
    "image work (decode or cache, crop, pack; unpack, paste)",
    "U-Net",
    "conversion (copy, BGR to I420)",
];

/// The parts of the engine's run its allocations are counted in.
const ENGINE_PARTS: [&str; 3] = [
    "audio in (mel)",
    "rendering (encoder, image work, U-Net)",
    "conversion (copy, BGR to I420)",
];

/// Where the engine's frames go: converted into I420 and hashed, the conversion's allocations
/// counted.
struct Converted {
    converter: gst_video::VideoConverter,
    bgr: (gst::Buffer, gst_video::VideoInfo),
    i420: (gst::Buffer, gst_video::VideoInfo),
    hashes: Vec<u64>,
    allocations: u64,
}

impl Converted {
    fn emit(&mut self, _frame: &Frame, bgr: &[u8]) {
        let mark = allocations();
        convert(
            &self.converter,
            bgr,
            &mut self.bgr.0,
            &self.bgr.1,
            &mut self.i420.0,
            &self.i420.1,
        );
        self.hashes.push(hash(&self.i420.0.map_readable().unwrap()));
        self.allocations += allocations() - mark;
    }
}

/// Renders `batch` as the element does offline, every frame inferred; adds its stages to `run`
/// when `counting` (steady state: after the warm-up, before the end of the audio, whose last
/// windows and last batch bind tensors of new sizes).
fn render_batch(
    engine: &mut Engine,
    batch: &mut Batch,
    out: &mut Converted,
    run: &mut EngineRun,
    counting: bool,
) {
    let frames = batch.len();
    let mark = (allocations(), out.allocations);
    engine.plan(batch, -200.0);
    let tally = engine
        .render(batch, false, None, &mut |frame, bgr| out.emit(frame, bgr))
        .unwrap();
    if counting {
        let converting = out.allocations - mark.1;
        run.allocations[1] += allocations() - mark.0 - converting;
        run.allocations[2] += converting;
        let stages = &mut run.stages;
        stages[0] += tally.stages.encoder;
        stages[1] += tally.stages.image;
        stages[2] += tally.stages.generator;
        stages[3] += tally.stages.convert;
        run.steady_frames += frames;
    }
}

fn engine_run(
    resources: &Resources,
    samples: &[f32],
    batch_size: usize,
    cache_budget: usize,
) -> EngineRun {
    let avatar = &resources.avatar;
    let frames = samples.len().div_ceil(640);
    let steady_from = (frames / 3).min(100) as u64;
    let mut timeline = Timeline::new(avatar.frames.len(), 0, true);
    let mut engine = Engine::new(
        avatar.clone(),
        resources.models.clone(),
        batch_size,
        (cache_budget, 0),
        1,
    )
    .unwrap();
    let (bgr_info, i420_info) = video_infos(avatar);
    let mut config = gst_video::VideoConverterConfig::new();
    config.set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as u32);
    let mut out = Converted {
        converter: gst_video::VideoConverter::new(&bgr_info, &i420_info, Some(config)).unwrap(),
        bgr: (gst::Buffer::with_size(bgr_info.size()).unwrap(), bgr_info),
        i420: (gst::Buffer::with_size(i420_info.size()).unwrap(), i420_info),
        hashes: Vec::with_capacity(frames),
        allocations: 0,
    };
    // As `audioconvert` hands them to the element.
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut result = EngineRun {
        frames,
        elapsed: Duration::ZERO,
        stages: [Duration::ZERO; 4],
        allocations: [0; 3],
        steady_frames: 0,
        i420: Vec::new(),
    };
    let mut batch = Batch::default();
    let started = Instant::now();
    let mut chunks = bytes.chunks(640 * 4);
    loop {
        let chunk = chunks.next();
        let mark = (Instant::now(), allocations());
        match chunk {
            Some(chunk) => {
                timeline.place_audio(None, 0, (chunk.len() / 4) as u64);
                engine.push_audio(chunk, SampleFormat::F32);
            }
            None => engine.finish_audio(),
        }
        if chunk.is_some() && timeline.next_frame() >= steady_from {
            result.stages[0] += mark.0.elapsed();
            result.allocations[0] += allocations() - mark.1;
        }
        for frame in timeline.take_ready(chunk.is_none()) {
            batch.push(frame);
            if batch.len() == batch_size {
                let counting = batch.frames()[0].index >= steady_from && chunk.is_some();
                render_batch(&mut engine, &mut batch, &mut out, &mut result, counting);
                batch.clear();
            }
        }
        if chunk.is_none() {
            break;
        }
    }
    if !batch.is_empty() {
        render_batch(&mut engine, &mut batch, &mut out, &mut result, false);
    }
    engine.land(&mut |frame, bgr| out.emit(frame, bgr)).unwrap();
    result.elapsed = started.elapsed();
    result.i420 = out.hashes;
    assert_eq!(result.i420.len(), frames, "the engine rendered every frame");
    result
}

fn video_infos(avatar: &Avatar) -> (gst_video::VideoInfo, gst_video::VideoInfo) {
    let info = |format| {
        gst_video::VideoInfo::builder(format, avatar.width, avatar.height)
            .build()
            .unwrap()
    };
    (
        info(gst_video::VideoFormat::Bgr),
        info(gst_video::VideoFormat::I420),
    )
}

/// Copies a packed BGR frame into `bgr` and converts it into `i420`, as the element does.
fn convert(
    converter: &gst_video::VideoConverter,
    frame: &[u8],
    bgr: &mut gst::Buffer,
    bgr_info: &gst_video::VideoInfo,
    i420: &mut gst::Buffer,
    i420_info: &gst_video::VideoInfo,
) {
    bgr.get_mut()
        .unwrap()
        .map_writable()
        .unwrap()
        .copy_from_slice(frame);
    let source = gst_video::VideoFrameRef::from_buffer_ref_readable(bgr, bgr_info).unwrap();
    let mut target =
        gst_video::VideoFrameRef::from_buffer_ref_writable(i420.get_mut().unwrap(), i420_info)
            .unwrap();
    converter.frame_ref(&source, &mut target);
}

struct Models {
    encoder: AudioEncoder,
    generator: Generator,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Threads {
    intra: usize,
    inter: usize,
    parallel: bool,
}

impl Threads {
    fn describe(&self) -> String {
        let intra = if self.intra == 0 {
            "ORT default".to_string()
        } else {
            self.intra.to_string()
        };
        if self.parallel {
            format!("intra-op {intra}, inter-op {}, parallel", self.inter)
        } else {
            format!("intra-op {intra}, sequential")
        }
    }
}

fn session(path: &Path, threads: Threads) -> Session {
    let env =
        inference::environment(&inference::find_library(None, inference::Provider::Cpu).unwrap())
            .unwrap();
    let mut builder = Session::builder(env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .unwrap();
    if threads.intra > 0 {
        builder = builder.with_intra_threads(threads.intra).unwrap();
    }
    if threads.parallel {
        builder = builder
            .with_parallel_execution(true)
            .unwrap()
            .with_inter_threads(threads.inter)
            .unwrap();
    }
    builder.commit_from_file(path).unwrap()
}

/// ONNX Runtime alone: `batch` mel windows through the encoder and `batch` frames through the
/// U-Net per step, as in the element; frames per second over at least `frames` frames, after
/// one untimed step.
fn ort_alone(
    sessions: &mut (Session, Session),
    batch: usize,
    frames: usize,
    images: &[f32],
    audio: &[f32],
) -> f64 {
    let (encoder, generator) = sessions;
    let kept = images.len() / INPUT_LEN;
    let mut batch_images = Vec::with_capacity(batch * INPUT_LEN);
    let mut batch_audio = Vec::with_capacity(batch * FRAME_WINDOW_LEN);
    for k in 0..batch {
        let k = k % kept;
        batch_images.extend_from_slice(&images[k * INPUT_LEN..][..INPUT_LEN]);
        batch_audio.extend_from_slice(&audio[k * FRAME_WINDOW_LEN..][..FRAME_WINDOW_LEN]);
    }
    let mel: Vec<f32> = (0..batch * 1280)
        .map(|i| 4.0 * (i as f32 * 0.013).sin())
        .collect();
    let mut step = || {
        let mel = TensorRef::from_array_view(([batch, 1, 80, 16], &mel[..])).unwrap();
        let out = encoder.run(ort::inputs!["mel" => mel]).unwrap();
        std::hint::black_box(&out["emb"]);
        drop(out);
        let image = TensorRef::from_array_view(([batch, 6, 320, 320], &batch_images[..])).unwrap();
        let audio = TensorRef::from_array_view(([batch, 32, 16, 16], &batch_audio[..])).unwrap();
        let out = generator
            .run(ort::inputs!["input" => image, "audio" => audio])
            .unwrap();
        std::hint::black_box(&out["output"]);
    };
    step();
    let steps = frames.div_ceil(batch).max(2);
    let started = Instant::now();
    for _ in 0..steps {
        step();
    }
    (steps * batch) as f64 / started.elapsed().as_secs_f64()
}

/// What a timed element run saw at its sink.
#[derive(Default)]
struct Seen {
    i420: Vec<u64>,
    /// Allocation counter at frames `marks`, less the allocations of measuring.
    allocations: Vec<(u64, u64)>,
    /// Allocations made by reading RSS at the marks so far.
    measuring: u64,
    rss: Vec<(u64, u64)>,
}

struct ElementRun {
    frames: u64,
    elapsed: Duration,
    seen: Seen,
    peak_rss_kib: u64,
    stats: gst::Structure,
}

/// Runs `launch` (with a `talkinghead name=head` and a `fakesink name=sink`) to EOS after loading
/// it in READY, timing PLAYING to EOS; records hashes, allocation counts and RSS at `marks`.
fn run_element(
    launch: &str,
    properties: &[(&str, String)],
    marks: &[u64],
    hash_frames: bool,
) -> ElementRun {
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let head = pipeline.by_name("head").unwrap();
    for (name, value) in properties {
        head.set_property_from_str(name, value);
    }
    let seen = Arc::new(Mutex::new(Seen {
        i420: Vec::with_capacity(if hash_frames { 100_000 } else { 0 }),
        allocations: Vec::with_capacity(marks.len()),
        rss: Vec::with_capacity(marks.len()),
        measuring: 0,
    }));
    let frames = Arc::new(AtomicU64::new(0));
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let marks = marks.to_vec();
    {
        let (seen, frames) = (seen.clone(), frames.clone());
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let n = frames.fetch_add(1, Ordering::Relaxed);
            let mut seen = seen.lock().unwrap();
            if marks.contains(&n) {
                // Reading RSS allocates: the counts leave that out.
                let before = allocations();
                let counted = before - seen.measuring;
                seen.allocations.push((n, counted));
                seen.rss.push((n, rss_kib("VmRSS:")));
                seen.measuring += allocations() - before;
            }
            if hash_frames && let Some(buffer) = info.buffer() {
                let map = buffer.map_readable().unwrap();
                seen.i420.push(hash(&map));
            }
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Ready).unwrap();
    reset_peak_rss();
    let started = Instant::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(3600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline finished");
    let elapsed = started.elapsed();
    if let gst::MessageView::Error(err) = message.view() {
        panic!("{launch}: {}", err.error());
    }
    let peak_rss_kib = rss_kib("VmHWM:");
    let stats = head.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    ElementRun {
        frames: frames.load(Ordering::Relaxed),
        elapsed,
        seen,
        peak_rss_kib,
        stats,
    }
}

fn fps(frames: u64, elapsed: Duration) -> f64 {
    frames as f64 / elapsed.as_secs_f64()
}

/// Allocations per frame between the first two marks.
fn allocations_per_frame(seen: &Seen) -> f64 {
    match seen.allocations.as_slice() {
        [(n0, a0), (n1, a1), ..] => (a1 - a0) as f64 / (n1 - n0) as f64,
        _ => f64::NAN,
    }
}

/// Frames the long run goes on for after its last measurement: the end of the stream (a last,
/// smaller batch, with tensors of its own size) is not steady state.
const TAIL_FRAMES: u64 = 50;

/// The long run on the built-in demo avatar and models: RSS at frames `warm_up` and
/// `warm_up + long − 1`, and Rust allocations per frame between them.
fn memory_run(warm_up: u64, long: u64) -> (Vec<(u64, u64)>, f64) {
    let memory = run_element(
        &format!(
            "audiotestsrc wave=sine freq=220 volume=0.3 num-buffers={} samplesperbuffer=640 ! \
             audio/x-raw,format=S16LE,rate=16000,channels=1 ! talkinghead name=head ! \
             fakesink name=sink sync=false",
            warm_up + long + TAIL_FRAMES
        ),
        &[],
        &[warm_up, warm_up + long - 1],
        false,
    );
    (memory.seen.rss.clone(), allocations_per_frame(&memory.seen))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--memory-run") {
        gst::init().unwrap();
        gsttalkinghead::plugin_register_static().expect("registering the plugin");
        let (warm_up, long) = (args[at + 1].parse().unwrap(), args[at + 2].parse().unwrap());
        let (rss, per_frame) = memory_run(warm_up, long);
        println!("{} {} {per_frame}", rss[0].1, rss[1].1);
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    // The runs made in a process of their own: `--live`, `--offline`, `--quality`, each followed
    // by the element's properties as name=value.
    if let Some(mode) = ["--live", "--offline", "--quality", "--int8-quality"]
        .into_iter()
        .find(|mode| args.iter().any(|a| a == mode))
    {
        gst::init().unwrap();
        gsttalkinghead::plugin_register_static().expect("registering the plugin");
        let setup = Setup::new(smoke);
        let extra: Vec<(String, String)> = args
            .iter()
            .filter_map(|a| a.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        match mode {
            "--live" => {
                let mouth = args.iter().any(|a| a == "--mouth");
                let ([what, setting, value], inferred, r) = live_row(&setup, smoke, &extra, mouth);
                println!(
                    "{what} | {setting} | {value} | {inferred} {}",
                    r.unwrap_or(f64::NAN)
                );
            }
            "--offline" => {
                let run = offline_run(&setup, &extra);
                println!("{} {}", run.frames, run.elapsed.as_secs_f64());
            }
            "--int8-quality" => {
                let (psnr, worst) = Trained::new().quality();
                println!("{psnr} {worst}");
            }
            _ => {
                let [fp32, bf16] = quality(&setup);
                println!("{} {} {} {}", fp32.0, fp32.1, bf16.0, bf16.1);
            }
        }
        return;
    }
    let table = run(smoke);
    print!("{table}");
}

/// The middle value (the mean of the middle two of an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let half = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[half - 1] + sorted[half]) / 2.0
    } else {
        sorted[half]
    }
}

/// `name=value, ...`, or `defaults`.
fn describe(properties: &[(String, String)]) -> String {
    if properties.is_empty() {
        return "defaults".into();
    }
    properties
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bench clip offline through the element on the bench avatar, every frame inferred, with
/// `extra` properties (row 8, in a process of its own).
fn offline_run(setup: &Setup, extra: &[(String, String)]) -> ElementRun {
    let mut properties = setup.every_frame_inferred();
    properties.extend(
        extra
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    );
    run_element(&setup.launch(), &properties, &[], false)
}

/// Frames of the bench clip compared over the crop boxes: the first [`QUALITY_FRAMES`] frames
/// through OpenVINO in fp32 and in bf16 against ONNX Runtime's CPU provider of the same build,
/// each as (PSNR in dB, largest difference of a value in 0-255).
fn quality(setup: &Setup) -> [(f64, u8); 2] {
    // The OpenVINO build first, so that the CPU provider's run uses it too.
    let library = inference::find_library(None, inference::Provider::OpenVino).unwrap();
    inference::environment(&library).unwrap();
    let avatar = Avatar::load(&Source::Folder(setup.avatar.clone())).unwrap();
    let models = format!(
        "avatar={} audio-encoder={} generator={}",
        setup.avatar.display(),
        setup.encoder.display(),
        setup.generator.display()
    );
    let frames =
        |extra: &str| first_frames(&setup.speech, &format!("{models} {extra}"), QUALITY_FRAMES);
    let reference = frames("");
    let fp32 = crop_psnr(&avatar, &frames("execution-provider=openvino"), &reference);
    let bf16 = crop_psnr(
        &avatar,
        &frames("execution-provider=openvino precision=bf16"),
        &reference,
    );
    [fp32, bf16]
}

/// The first `count` frames (BGR) of `speech` through the element with `properties`, every frame
/// inferred.
fn first_frames(speech: &Path, properties: &str, count: usize) -> Vec<Vec<u8>> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         talkinghead name=head silence-threshold=-200 {properties} ! videoconvert ! \
         video/x-raw,format=BGR ! appsink name=sink sync=false",
        speech.display(),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let frames = (0..count)
        .map_while(|_| {
            let sample = sink.pull_sample().ok()?;
            Some(sample.buffer().unwrap().map_readable().unwrap().to_vec())
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

/// PSNR in dB over the crop boxes of `avatar`'s templates (in ping-pong order) of `ours` against
/// `reference` (BGR frames), and the largest difference of a value in 0-255.
fn crop_psnr(avatar: &Avatar, ours: &[Vec<u8>], reference: &[Vec<u8>]) -> (f64, u8) {
    assert_eq!(ours.len(), reference.len(), "frames to compare");
    let (mut squares, mut count, mut worst) = (0f64, 0u64, 0u8);
    for (n, (a, b)) in ours.iter().zip(reference).enumerate() {
        let crop = avatar.frames[pingpong(n as u64, avatar.frames.len())].crop;
        let width = avatar.width as usize;
        for y in crop.y0 as usize..crop.y1 as usize {
            let row = 3 * (y * width + crop.x0 as usize)..3 * (y * width + crop.x1 as usize);
            for (x, y) in a[row.clone()].iter().zip(&b[row]) {
                squares += (f64::from(*x) - f64::from(*y)).powi(2);
                count += 1;
                worst = worst.max(x.abs_diff(*y));
            }
        }
    }
    (
        10.0 * (255.0f64.powi(2) / (squares / count as f64)).log10(),
        worst,
    )
}

/// The models of `make train-model` (an architecture-exact generator trained on the demo
/// avatar) and the INT8 generator `tools/quantize.py` made of it, with its report.
struct Trained {
    encoder: PathBuf,
    fp32: PathBuf,
    int8: PathBuf,
    report: PathBuf,
}

impl Trained {
    fn new() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/trained-models");
        Trained {
            encoder: dir.join("audio_encoder.onnx"),
            fp32: dir.join("generator.onnx"),
            int8: dir.join("generator_int8.onnx"),
            report: dir.join("generator_int8.txt"),
        }
    }

    /// The element's properties for the fp32 or the INT8 generator, and `extra` ones.
    fn properties(&self, int8: bool, extra: &[&str]) -> Vec<String> {
        let generator = if int8 { &self.int8 } else { &self.fp32 };
        let mut properties = vec![
            format!("audio-encoder={}", self.encoder.display()),
            format!("generator={}", generator.display()),
        ];
        properties.extend(extra.iter().map(|property| property.to_string()));
        properties
    }

    /// The INT8 generator against the fp32 one over the crop boxes of the demo avatar, every
    /// frame of the bundled clip through the element: (PSNR in dB, largest difference).
    fn quality(&self) -> (f64, u8) {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
        let avatar = Avatar::load(&Source::Folder(demo.clone())).unwrap();
        let speech = demo.join("speech.wav");
        let frames =
            |int8| first_frames(&speech, &self.properties(int8, &[]).join(" "), usize::MAX);
        crop_psnr(&avatar, &frames(true), &frames(false))
    }
}

/// Runs alternating round by round with `baseline`'s: "A frames/s against B (medians); by round
/// r1×, r2×, …", and the median ratio.
fn against_baseline(fps: &[f64], baseline: &[f64]) -> (String, f64) {
    let ratios: Vec<f64> = fps.iter().zip(baseline).map(|(a, b)| a / b).collect();
    let by_round: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
    (
        format!(
            "{:.2} frames/s against {:.2} (medians); by round {}",
            median(fps),
            median(baseline),
            by_round.join(", ")
        ),
        median(&ratios),
    )
}

/// Frames per second of an offline run (`--offline`) in a process of its own, with `properties`.
fn offline_fps(properties: &[&str]) -> f64 {
    let mut args = vec!["--offline"];
    args.extend(properties);
    let text = in_own_process(&args);
    let (frames, seconds) = text.split_once(' ').unwrap();
    frames.parse::<f64>().unwrap() / seconds.parse::<f64>().unwrap()
}

/// Runs this bench binary in a new process with `args`; its standard output.
fn in_own_process(args: &[&str]) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .expect("running a measurement in its own process");
    assert!(output.status.success(), "{args:?} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// What a live run at real-time pace did.
struct LiveRun {
    stats: gst::Structure,
    seconds: f64,
    max_queued_frames: u64,
    /// The most audio ever waiting in the source for the element to take it.
    max_upstream: gst::ClockTime,
    /// Frames that reached the sink after they were due (running time plus the latency the
    /// element reports), and the least time any frame had to spare (negative: late), and its
    /// timestamp.
    late_at_sink: u64,
    least_spare_ms: f64,
    least_spare_at: gst::ClockTime,
}

/// Streams `samples` (16 kHz mono) live through the element with `properties`: a live `appsrc`
/// fed 20 ms buffers at real-time pace, and `queue ! fakesink sync=true` after the element. With
/// `record`, the frames reaching the sink are written there as a Y4M video (I420, the format the
/// element gives `fakesink`).
fn live_run(properties: &[(&str, String)], samples: &[f32], record: Option<&Path>) -> LiveRun {
    let pipeline = gst::parse::launch(
        "appsrc name=src is-live=true do-timestamp=true format=time min-latency=0 \
           caps=audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! \
         talkinghead name=head ! queue ! fakesink name=sink sync=true",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let head = pipeline.by_name("head").unwrap();
    // When each frame reaches the sink against when it is due.
    let spare = Arc::new(Mutex::new((0, f64::INFINITY, gst::ClockTime::ZERO)));
    {
        let (spare, head) = (spare.clone(), head.clone());
        let sink = pipeline.by_name("sink").unwrap();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let element = pad.parent_element().unwrap();
                let (Some(clock), Some(base), Some(buffer)) =
                    (element.clock(), element.base_time(), info.buffer())
                else {
                    return gst::PadProbeReturn::Ok;
                };
                let latency = head
                    .property::<gst::Structure>("stats")
                    .get::<u64>("latency");
                let due = base.nseconds() + buffer.pts().unwrap().nseconds() + latency.unwrap();
                let spare_ms = (due as f64 - clock.time().nseconds() as f64) / 1e6;
                let mut spare = spare.lock().unwrap();
                spare.0 += u64::from(spare_ms < 0.0);
                if spare_ms < spare.1 {
                    (spare.1, spare.2) = (spare_ms, buffer.pts().unwrap());
                }
                gst::PadProbeReturn::Ok
            });
    }
    if let Some(path) = record {
        let file = std::fs::File::create(path).unwrap();
        let video = Mutex::new((std::io::BufWriter::new(file), false));
        let sink = pipeline.by_name("sink").unwrap();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                use std::io::Write;
                let (Some(buffer), Some(caps)) = (info.buffer(), pad.current_caps()) else {
                    return gst::PadProbeReturn::Ok;
                };
                let video_info = gst_video::VideoInfo::from_caps(&caps).unwrap();
                assert_eq!(video_info.format(), gst_video::VideoFormat::I420);
                let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &video_info)
                    .unwrap();
                let mut video = video.lock().unwrap();
                let (out, started) = &mut *video;
                if !*started {
                    let (w, h) = (video_info.width(), video_info.height());
                    writeln!(out, "YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg").unwrap();
                    *started = true;
                }
                out.write_all(b"FRAME\n").unwrap();
                for plane in 0..3 {
                    let (width, height) = (
                        frame.comp_width(plane) as usize,
                        frame.comp_height(plane) as usize,
                    );
                    let stride = frame.plane_stride()[plane as usize] as usize;
                    let data = frame.plane_data(plane).unwrap();
                    for row in 0..height {
                        out.write_all(&data[row * stride..][..width]).unwrap();
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    for (name, value) in properties {
        head.set_property_from_str(name, value);
    }
    let source = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let feeder = {
        let source = source.clone();
        let samples = samples.to_vec();
        std::thread::spawn(move || {
            let mut due = Instant::now();
            for chunk in samples.chunks(320) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                if source.push_buffer(gst::Buffer::from_slice(bytes)).is_err() {
                    return;
                }
                due += Duration::from_secs_f64(chunk.len() as f64 / 16_000.0);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            let _ = source.end_of_stream();
        })
    };
    let (mut max_queued_frames, mut max_upstream) = (0, gst::ClockTime::ZERO);
    loop {
        let stats = head.property::<gst::Structure>("stats");
        max_queued_frames = max_queued_frames.max(stats.get::<u64>("queued-frames").unwrap());
        max_upstream = max_upstream.max(source.current_level_time());
        if let Some(message) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(err) = message.view() {
                panic!("live run: {}", err.error());
            }
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    feeder.join().unwrap();
    let stats = head.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let (late_at_sink, least_spare_ms, least_spare_at) = *spare.lock().unwrap();
    LiveRun {
        stats,
        seconds,
        max_queued_frames,
        max_upstream,
        late_at_sink,
        least_spare_ms,
        least_spare_at,
    }
}

/// Row 6: the live run on the built-in avatar with `setup`'s models and `extra` properties (the
/// smoke run: 2 s). Returns the row, the percentage of speech frames inferred and, with `mouth`,
/// r.
fn live_row(
    setup: &Setup,
    smoke: bool,
    extra: &[(String, String)],
    mouth: bool,
) -> ([String; 3], f64, Option<f64>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = read_wav(&root.join("models/demo/speech.wav"));
    let samples: Vec<f32> = if smoke {
        clip[..32_000].to_vec()
    } else {
        clip.iter().copied().cycle().take(3 * clip.len()).collect()
    };
    let mut properties = vec![
        ("audio-encoder", setup.encoder.display().to_string()),
        ("generator", setup.generator.display().to_string()),
    ];
    properties.extend(
        extra
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    );
    let recording = setup.out.join("live.y4m");
    let run = live_run(&properties, &samples, mouth.then_some(recording.as_path()));
    // How the mouth follows the voice in what reached the sink (tools/measure_mouth.py).
    let mouth_r = mouth.then(|| {
        let speech = setup.out.join("live.wav");
        write_wav(&speech, &samples);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tools/measure_mouth.py"))
            .arg(&recording)
            .arg("--avatar")
            .arg(root.join("models/demo"))
            .arg("--audio")
            .arg(&speech)
            .arg("--json")
            .output()
            .unwrap();
        assert!(output.status.success(), "measure_mouth.py: {output:?}");
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        std::fs::remove_file(&recording).ok();
        result["pearson_r"].as_f64().unwrap()
    });
    let stats = &run.stats;
    eprintln!("live: {stats}");
    let count = |field: &str| stats.get::<u64>(field).unwrap();
    // Silent frames show silent faces (kept, or made now); the others are speech. Held and late
    // frames are counted as speech: a pause only asks for inference while its templates' silent
    // faces are first made.
    let inferred = count("frames-inferred") - count("silent-faces");
    let (held, late) = (count("frames-held"), count("frames-late"));
    let speech = inferred + held + late;
    let share = |n: u64| 100.0 * n as f64 / speech as f64;
    let row = [
        "6. live, real-time pace, built-in 640x360 avatar".into(),
        format!(
            "{:.0} s of audio in 20 ms buffers, {}, `queue ! fakesink sync=true`",
            samples.len() as f64 / 16_000.0,
            describe(extra)
        ),
        format!(
            "{speech} speech frames: {:.1} % inferred, {:.1} % held, {:.1} % late; {} silent \
             faces made, {} frames showed one kept; output {:.2} frames/s ({} frames in {:.1} \
             s); at most {} frames queued, {} of audio waiting upstream; latency {} ms, {} frames \
             at the sink after it (the least spare {:.0} ms, at {:.2} s)",
            share(inferred),
            share(held),
            share(late),
            count("silent-faces"),
            count("frames-silent"),
            count("frames-out") as f64 / run.seconds,
            count("frames-out"),
            run.seconds,
            run.max_queued_frames,
            run.max_upstream,
            count("latency") / 1_000_000,
            run.late_at_sink,
            run.least_spare_ms,
            run.least_spare_at.nseconds() as f64 / 1e9
        ) + &mouth_r.map_or(String::new(), |r| {
            format!("; mouth against the voice r = {r:.2}")
        }),
    ];
    (row, share(inferred), mouth_r)
}

/// Runs every measurement and returns the table (also written to `target/bench/`).
pub fn run(smoke: bool) -> String {
    let setup = Setup::new(smoke);
    gst::init().unwrap();
    gsttalkinghead::plugin_register_static().expect("registering the plugin");
    for path in [&setup.avatar, &setup.encoder, &setup.generator] {
        assert!(
            path.exists(),
            "{} is missing: `make bench` makes it",
            path.display()
        );
    }
    let total = Instant::now();
    let samples = read_wav(&setup.speech);
    let avatar = Avatar::load(&Source::Folder(setup.avatar.clone())).unwrap();
    let library = inference::find_library(None, inference::Provider::Cpu).unwrap();
    let env = inference::environment(&library).unwrap();
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |what: &str, setting: String, value: String, ratio: String| {
        eprintln!("{what} | {setting} | {value} | {ratio}");
        rows.push([what.to_string(), setting, value, ratio]);
    };

    // 2. The element end to end, first: the process has allocated little yet, so its peak RSS
    // is the element's.
    let launch = setup.launch();
    let mut properties = setup.every_frame_inferred();
    let steady = if smoke { [16, 40] } else { [96, 224] };
    let default = run_element(&launch, &properties, &steady, true);
    let default_properties = properties.clone();
    let best_settings = match std::env::var("BENCH_BEST") {
        Ok(settings) if !smoke => settings,
        _ if smoke => SMOKE_BEST.to_string(),
        _ => BEST.to_string(),
    };
    properties.extend(best_settings.split_whitespace().map(|setting| {
        let (name, value) = setting.split_once('=').expect("BENCH_BEST: name=value ...");
        (name, value.to_string())
    }));
    let best = run_element(&launch, &properties, &steady, true);

    // 3. The naive baseline: its frames are the reference, its inputs feed 1.
    let options = SessionOptions::default();
    let mut models = Models {
        encoder: AudioEncoder::load(&setup.encoder, env, &options).unwrap(),
        generator: Generator::load(&setup.generator, env, &options).unwrap(),
    };
    let naive = naive(&avatar, &samples, &mut models, 4);
    let naive_fps = naive.frames as f64 / naive.elapsed.as_secs_f64();
    // The element's engine at the element's defaults.
    let element = gst::ElementFactory::make("talkinghead").build().unwrap();
    let default_batch = element.property::<u32>("batch-size") as usize;
    let default_cache = element.property::<u32>("template-cache") as usize;
    drop(element);
    // The smoke run's 50 frames never show a template twice: a small cache has both hits and
    // misses in them.
    // The demo generator's MatMul rounds differently at other batch sizes, so the smoke run's
    // engine runs batch 1 to be checked frame for frame.
    let engine_cache = if smoke { 8 } else { default_cache };
    let engine_batch = if smoke { 1 } else { default_batch };
    drop(models);
    // Loaded and warmed up as the element loads them.
    let loaded = resources::load(&Wanted {
        avatar: Some(setup.avatar.clone()),
        generator: Some(setup.generator.clone()),
        audio_encoder: Some(setup.encoder.clone()),
        ..Wanted::default()
    })
    .unwrap();
    if let Some(models) = &loaded.models {
        engine::warm_up(&loaded.avatar, models, engine_batch).unwrap();
    }
    // What the models' first silent window takes (row 7).
    let started = Instant::now();
    let silent_window = loaded
        .models
        .as_ref()
        .map(|models| models.silent_window().map(|_| started.elapsed()));
    let engine = engine_run(&loaded, &samples, engine_batch, engine_cache << 20);
    drop(loaded);
    let engine_fps = engine.frames as f64 / engine.elapsed.as_secs_f64();

    // 1. ONNX Runtime alone.
    // Long enough that a moment of a shared machine's speed does not make a batch size "best":
    // at least six runs of the largest batch.
    let (frames_per_setup, frames_per_batch) = if smoke { (8, 8) } else { (32, 96) };
    let setups = [
        Threads {
            intra: 2,
            inter: 1,
            parallel: false,
        },
        Threads {
            intra: 1,
            inter: 1,
            parallel: false,
        },
        Threads {
            intra: 2,
            inter: 2,
            parallel: true,
        },
        Threads {
            intra: 0,
            inter: 1,
            parallel: false,
        },
    ];
    let mut best_setup = (setups[0], 0.0);
    for threads in setups {
        let mut sessions = (
            session(&setup.encoder, threads),
            session(&setup.generator, threads),
        );
        let fps = ort_alone(
            &mut sessions,
            4,
            frames_per_setup,
            &naive.images,
            &naive.audio,
        );
        row(
            "1. ONNX Runtime alone, batch 4",
            threads.describe(),
            format!("{fps:.2} frames/s"),
            String::new(),
        );
        if fps > best_setup.1 {
            best_setup = (threads, fps);
        }
    }
    let mut sessions = (
        session(&setup.encoder, best_setup.0),
        session(&setup.generator, best_setup.0),
    );
    // One run of ONNX Runtime alone at every batch size, each over at least `frames` frames.
    let mut sweep = |frames: usize| {
        BATCHES.map(|batch| {
            ort_alone(
                &mut sessions,
                batch,
                frames.max(2 * batch),
                &naive.images,
                &naive.audio,
            )
        })
    };
    let first_sweep = sweep(frames_per_batch);
    let limit = first_sweep.iter().copied().fold(0.0, f64::max);
    for (batch, fps) in BATCHES.iter().zip(first_sweep) {
        row(
            &format!("1. ONNX Runtime alone, batch {batch}"),
            best_setup.0.describe(),
            format!("{fps:.2} frames/s"),
            format!("{:.0} %", 100.0 * fps / limit),
        );
    }

    // The ratio that decides. A shared machine's speed drifts by tens of percent within minutes,
    // more than the gap being measured, and the best batch size of one sweep is partly chance.
    // So element runs at the defaults alternate with sweeps of ONNX Runtime alone over every
    // batch size: each element run is set against the best batch size's mean over the sweeps
    // just before and after it, and the median over the rounds is the result.
    let round_frames = if smoke { 8 } else { ROUND_FRAMES };
    let mut before = sweep(round_frames);
    let mut rounds = Vec::new();
    for _ in 0..if smoke { 1 } else { INTERLEAVED_ROUNDS } {
        let run = run_element(&launch, &default_properties, &[], false);
        let after = sweep(round_frames);
        let (batch, alone) = BATCHES
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(&batch, (before, after))| (batch, (before + after) / 2.0))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        rounds.push((fps(run.frames, run.elapsed), alone, batch));
        before = after;
    }
    drop(sessions);
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|(element, alone, _)| element / alone)
        .collect();
    let element_vs_alone = median(&ratios);
    row(
        "2. element end to end, default settings, interleaved with 1.",
        format!(
            "frames/s of the element / of ONNX Runtime alone at its best batch around it, per \
             round: {}",
            rounds
                .iter()
                .map(|(element, alone, batch)| {
                    format!("{element:.2} / {alone:.2} (batch {batch})")
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("median {:.1} %", 100.0 * element_vs_alone),
        format!("{:.1} %", 100.0 * element_vs_alone),
    );

    let default_fps = fps(default.frames, default.elapsed);
    row(
        "2. element end to end, default settings",
        "silence-threshold=-200 (every frame inferred from its own audio)".into(),
        format!("{default_fps:.2} frames/s"),
        format!("{:.1} %", 100.0 * default_fps / limit),
    );
    let best_fps = fps(best.frames, best.elapsed);
    row(
        "2. element end to end, best settings",
        best_settings.clone(),
        format!("{best_fps:.2} frames/s"),
        format!("{:.1} %", 100.0 * best_fps / limit),
    );
    row(
        "2. the element's engine alone (no GStreamer)",
        format!("batch {engine_batch}, template cache {engine_cache} MiB"),
        format!("{engine_fps:.2} frames/s"),
        format!("{:.1} %", 100.0 * engine_fps / limit),
    );
    row(
        "3. naive baseline",
        "batch 1, one session, no overlap".into(),
        format!("{naive_fps:.2} frames/s"),
        format!("{:.1} %", 100.0 * naive_fps / limit),
    );
    let mut mismatches = Vec::new();
    for (name, i420) in [
        ("default", &default.seen.i420),
        ("best", &best.seen.i420),
        ("engine", &engine.i420),
    ] {
        let must_match = !smoke || name != "default";
        let differing: Vec<usize> = (0..naive.frames.max(i420.len()))
            .filter(|&n| i420.get(n) != naive.i420.get(n))
            .collect();
        row(
            &format!("   frames identical to the naive baseline: {name}"),
            "every frame, I420 hash".into(),
            format!(
                "{} of {}",
                naive.frames - differing.len().min(naive.frames),
                naive.frames
            ),
            String::new(),
        );
        if must_match && !differing.is_empty() {
            mismatches.push(format!("{name} settings: frames {differing:?}"));
        }
    }
    // 4. Memory and allocations.
    row(
        "4. peak RSS, element end to end",
        "from READY, the process's first runs".into(),
        format!(
            "{} MiB (default), {} MiB (best)",
            default.peak_rss_kib >> 10,
            best.peak_rss_kib >> 10
        ),
        String::new(),
    );
    row(
        "4. heap allocations per frame, element, steady state",
        format!("Rust code, all threads, frames {}-{}", steady[0], steady[1]),
        format!(
            "{:.2} (default), {:.2} (best)",
            allocations_per_frame(&default.seen),
            allocations_per_frame(&best.seen)
        ),
        String::new(),
    );
    // The smoke runs end before steady state: their frames still show templates for the first
    // time, and the template cache allocates for each.
    for (name, run) in [("default", &default), ("best", &best)] {
        let per_frame = allocations_per_frame(&run.seen);
        if per_frame > 0.0 && !smoke {
            mismatches.push(format!(
                "the element allocated {per_frame:.3} times per frame in steady state at its \
                 {name} settings"
            ));
        }
    }
    let per_stage: Vec<String> = STAGES
        .iter()
        .zip(&naive.stages)
        .map(|(name, stage)| {
            let short = name.split(' ').next().unwrap();
            format!(
                "{short} {:.2}",
                stage.allocations as f64 / naive.steady_frames as f64
            )
        })
        .collect();
    row(
        "4. heap allocations per frame, per stage",
        "library calls of the naive loop, steady state".into(),
        per_stage.join(", "),
        String::new(),
    );
    for (name, &allocations) in ENGINE_PARTS.iter().zip(&engine.allocations) {
        if allocations > 0 {
            mismatches.push(format!(
                "the engine's {name} allocated {allocations} times in steady state"
            ));
        }
        row(
            &format!("4. heap allocations per frame, engine: {name}"),
            "steady state".into(),
            format!("{:.3}", allocations as f64 / engine.steady_frames as f64),
            String::new(),
        );
    }
    let (warm_up, long) = if smoke {
        (50, 200)
    } else {
        (WARM_UP_FRAMES, LONG_FRAMES)
    };
    // In a process of its own (but in the smoke test, whose binary is not this one): memory the
    // runs before it freed and the allocator kept would blur the growth.
    let (rss, allocations_per_frame_long) = if smoke {
        memory_run(warm_up, long)
    } else {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--memory-run", &warm_up.to_string(), &long.to_string()])
            .output()
            .expect("running the memory measurement");
        assert!(output.status.success(), "the memory run failed: {output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        let values: Vec<f64> = text
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        (
            vec![
                (warm_up, values[0] as u64),
                (warm_up + long, values[1] as u64),
            ],
            values[2],
        )
    };
    let growth = rss[1].1 as i64 - rss[0].1 as i64;
    row(
        &format!("4. RSS growth over {long} frames after {warm_up}"),
        "built-in demo avatar and models (640x360), defaults".into(),
        format!(
            "{:+.2} MiB ({} to {} KiB)",
            growth as f64 / 1024.0,
            rss[0].1,
            rss[1].1
        ),
        String::new(),
    );
    row(
        "4. heap allocations per frame, same run",
        "Rust code, all threads".into(),
        format!("{allocations_per_frame_long:.3}"),
        String::new(),
    );
    if allocations_per_frame_long > 0.0 && !smoke {
        mismatches.push(format!(
            "the element allocated {allocations_per_frame_long:.3} times per frame over {long} \
             frames"
        ));
    }

    // 5. Stages.
    for (name, stage) in STAGES.iter().zip(&naive.stages) {
        row(
            &format!("5. {name}"),
            "naive loop, per frame".into(),
            format!(
                "{:.2} ms",
                stage.time.as_secs_f64() * 1e3 / naive.steady_frames as f64
            ),
            String::new(),
        );
    }

    for (name, stage) in ENGINE_STAGES.iter().zip(&engine.stages) {
        row(
            &format!("5. {name}"),
            format!("the element's engine, batch {engine_batch}, overlapped, per frame"),
            format!(
                "{:.2} ms",
                stage.as_secs_f64() * 1e3 / engine.steady_frames as f64
            ),
            String::new(),
        );
    }

    // 6. Live, in a process of its own (but in the smoke test, whose binary is not this one):
    // after the runs above, this one's threads and memory are not a fresh element's.
    if smoke {
        let ([what, setting, value], ..) = live_row(&setup, smoke, &[], false);
        row(&what, setting, value, String::new());
    } else {
        for args in [
            &["--live"][..],
            &["--live", OPENVINO_BF16[0], OPENVINO_BF16[1]],
        ] {
            let text = in_own_process(args);
            let fields: Vec<&str> = text.split(" | ").collect();
            row(fields[0], fields[1].into(), fields[2].into(), String::new());
        }
    }

    // 7. Pauses.
    let paused = setup.out.join("pauses.wav");
    let mut with_pause = samples.clone();
    with_pause.extend(std::iter::repeat_n(0.0, 10 * 16_000));
    write_wav(&paused, &with_pause);
    let launch = format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! talkinghead name=head ! \
         fakesink name=sink sync=false",
        paused.display()
    );
    let model_properties = &default_properties[..3];
    let pauses = run_element(&launch, model_properties, &[], false);
    let mut all_inferred = model_properties.to_vec();
    all_inferred.push(("silence-threshold", "-200".to_string()));
    let inferred = run_element(&launch, &all_inferred, &[], false);
    let count = |field: &str| pauses.stats.get::<u64>(field).unwrap();
    let made = count("silent-faces");
    row(
        "7. pauses, silent faces",
        format!(
            "{:.0} s of speech and 10 s of digital silence, offline, defaults",
            samples.len() as f64 / 16_000.0
        ),
        format!(
            "{made} silent faces made ({:.0} KiB each, {:.1} MiB kept), {} frames showed one \
             kept; {:.2} frames/s against {:.2} with every frame inferred; silent window {:.1} ms \
             at load",
            count("silent-bytes") as f64 / made.max(1) as f64 / 1024.0,
            count("silent-bytes") as f64 / (1024.0 * 1024.0),
            count("frames-silent"),
            fps(pauses.frames, pauses.elapsed),
            fps(inferred.frames, inferred.elapsed),
            silent_window
                .and_then(Result::ok)
                .map_or(f64::NAN, |time| time.as_secs_f64() * 1e3)
        ),
        format!(
            "{:.2}×",
            pauses.elapsed.as_secs_f64().recip() / inferred.elapsed.as_secs_f64().recip()
        ),
    );

    // 8. Execution providers: ONNX Runtime loads once per process, so each run has one of its
    // own; the configurations alternate, round after round, so the machine's drift cancels.
    // Not in the smoke run, whose binary is the test's.
    if !smoke {
        let configurations: [&[&str]; 3] = [&[], &OPENVINO_BF16[..1], &OPENVINO_BF16];
        let mut fps_of = vec![Vec::new(); configurations.len()];
        for _ in 0..PROVIDER_ROUNDS {
            for (extra, fps_of) in configurations.iter().zip(&mut fps_of) {
                fps_of.push(offline_fps(extra));
            }
        }
        eprintln!("providers, frames/s by round: {fps_of:?}");
        for (extra, of) in configurations.iter().zip(&fps_of).skip(1) {
            let (result, ratio) = against_baseline(of, &fps_of[0]);
            row(
                &format!("8. execution provider: {}", extra.join(" ")),
                format!(
                    "the element offline as in 2. at its defaults, every frame inferred; \
                     alternating with execution-provider=cpu, {PROVIDER_ROUNDS} rounds, each \
                     run a process of its own"
                ),
                result,
                format!("{ratio:.2}× cpu"),
            );
        }
        let text = in_own_process(&["--quality"]);
        let fields: Vec<&str> = text.split_whitespace().collect();
        row(
            "8. OpenVINO quality",
            format!(
                "the first {QUALITY_FRAMES} frames' crop boxes (BGR) against ONNX Runtime's CPU \
                 provider of the same build"
            ),
            format!(
                "fp32: PSNR {:.1} dB, largest difference {}; bf16: PSNR {:.1} dB, largest \
                 difference {}",
                fields[0].parse::<f64>().unwrap(),
                fields[1],
                fields[2].parse::<f64>().unwrap(),
                fields[3]
            ),
            String::new(),
        );
    }

    // 9. INT8: the trained generator against the INT8 one made of it (not in the smoke run).
    if !smoke {
        let trained = Trained::new();
        let threads = best_setup.0;
        let mut fp32 = (
            session(&trained.encoder, threads),
            session(&trained.fp32, threads),
        );
        let mut int8 = (
            session(&trained.encoder, threads),
            session(&trained.int8, threads),
        );
        let batches = [1, 2, 4, 8];
        let (mut fp32_fps, mut int8_fps) = (vec![Vec::new(); 4], vec![Vec::new(); 4]);
        for _ in 0..INT8_ROUNDS {
            for (k, &batch) in batches.iter().enumerate() {
                let frames = frames_per_batch.max(2 * batch);
                fp32_fps[k].push(ort_alone(
                    &mut fp32,
                    batch,
                    frames,
                    &naive.images,
                    &naive.audio,
                ));
                int8_fps[k].push(ort_alone(
                    &mut int8,
                    batch,
                    frames,
                    &naive.images,
                    &naive.audio,
                ));
            }
        }
        drop((fp32, int8));
        let best = |fps: &[Vec<f64>]| {
            batches
                .iter()
                .zip(fps)
                .map(|(&batch, fps)| (batch, median(fps)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
        };
        let ((fp32_batch, fp32_best), (int8_batch, int8_best)) = (best(&fp32_fps), best(&int8_fps));
        row(
            "9. INT8, ONNX Runtime alone",
            format!(
                "the trained generator (fp32) against its INT8 version, encoder + U-Net, {}; \
                 batches 1, 2, 4, 8 alternating, {INT8_ROUNDS} rounds; medians by batch",
                threads.describe()
            ),
            format!(
                "best: INT8 {int8_best:.2} frames/s (batch {int8_batch}) against fp32 \
                 {fp32_best:.2} (batch {fp32_batch}); by batch (INT8 / fp32) {}",
                batches
                    .iter()
                    .zip(fp32_fps.iter().zip(&int8_fps))
                    .map(|(batch, (a, b))| format!("{batch}: {:.2} / {:.2}", median(b), median(a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("{:.2}× fp32", int8_best / fp32_best),
        );

        // The element offline and live, each run a process of its own, the configurations
        // alternating round after round.
        let properties =
            INT8_CONFIGURATIONS.map(|(_, int8, extra)| trained.properties(int8, extra));
        fn arguments(properties: &[String]) -> Vec<&str> {
            properties.iter().map(String::as_str).collect()
        }
        let mut offline = vec![Vec::new(); INT8_CONFIGURATIONS.len()];
        for _ in 0..INT8_ROUNDS {
            for (properties, fps_of) in properties.iter().zip(&mut offline) {
                fps_of.push(offline_fps(&arguments(properties)));
            }
        }
        for ((name, _, extra), fps) in INT8_CONFIGURATIONS.iter().zip(&offline).skip(1) {
            let (result, ratio) = against_baseline(fps, &offline[0]);
            row(
                &format!("9. {name}, the element offline"),
                format!(
                    "as in 2. at its defaults, every frame inferred, the trained models{}; \
                     alternating with fp32, {INT8_ROUNDS} rounds, each run a process of its own",
                    extra.iter().map(|p| format!(", {p}")).collect::<String>()
                ),
                result,
                format!("{ratio:.2}× fp32"),
            );
        }

        // Live: the share of speech frames inferred and r by run, and the last run's details.
        let mut live = vec![Vec::new(); INT8_CONFIGURATIONS.len()];
        for _ in 0..INT8_ROUNDS {
            for (properties, runs) in properties.iter().zip(&mut live) {
                let mut args = vec!["--live", "--mouth"];
                args.extend(arguments(properties));
                runs.push(in_own_process(&args));
            }
        }
        for ((name, ..), runs) in INT8_CONFIGURATIONS.iter().zip(&live) {
            let fields: Vec<Vec<&str>> = runs
                .iter()
                .map(|text| text.split(" | ").collect())
                .collect();
            let (shares, rs): (Vec<f64>, Vec<f64>) = fields
                .iter()
                .map(|fields| {
                    let (share, r) = fields[3].split_once(' ').unwrap();
                    (share.parse::<f64>().unwrap(), r.parse::<f64>().unwrap())
                })
                .unzip();
            let by_run = |values: &[f64], precision: usize| {
                values
                    .iter()
                    .map(|v| format!("{v:.precision$}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            row(
                &format!("9. {name}, live, real-time pace, built-in 640x360 avatar"),
                format!(
                    "{}; {INT8_ROUNDS} runs alternating with the other live rows of 9.",
                    fields[0][1]
                ),
                format!(
                    "median {:.1} % of speech frames inferred (by run {}), mouth against the \
                     voice r = {:.2} (by run {}); the last run: {}",
                    median(&shares),
                    by_run(&shares, 1),
                    median(&rs),
                    by_run(&rs, 2),
                    fields.last().unwrap()[2]
                ),
                String::new(),
            );
        }

        let text = in_own_process(&["--int8-quality"]);
        let (psnr, worst) = text.split_once(' ').unwrap();
        let report = std::fs::read_to_string(&trained.report).unwrap_or_default();
        let gate = report
            .lines()
            .find(|line| line.starts_with("held-out PSNR"))
            .unwrap_or("(no report)");
        row(
            "9. INT8 quality",
            "the element's frames of the bundled clip on the demo avatar, INT8 against fp32, \
             over the crop boxes (BGR); beside it the quantizer's own gate measure"
                .into(),
            format!(
                "element: PSNR {:.1} dB, largest difference {worst}; tools/quantize.py: {gate}",
                psnr.parse::<f64>().unwrap()
            ),
            String::new(),
        );
    }

    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = String::new();
    let _ = writeln!(
        table,
        "Machine: {machine}, {cores} cores; avatar {} ({}x{}, {} frames); models {} and {}; \
         ONNX Runtime {}; {} frames of speech. Bench took {:.0} s.\n",
        setup.avatar.file_name().unwrap().to_string_lossy(),
        avatar.width,
        avatar.height,
        avatar.frames.len(),
        setup.encoder.display(),
        setup.generator.display(),
        library.file_name().unwrap().to_string_lossy(),
        naive.frames,
        total.elapsed().as_secs_f64()
    );
    let _ = writeln!(table, "| Measure | Setting | Result | vs 1. best |");
    let _ = writeln!(table, "|---|---|---|---|");
    for [what, setting, value, ratio] in &rows {
        let _ = writeln!(table, "| {what} | {setting} | {value} | {ratio} |");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = table.replace(&format!("{}/", root.display()), "");
    let file = setup.out.join(if smoke {
        "throughput-smoke.md"
    } else {
        "throughput.md"
    });
    std::fs::write(&file, &table).unwrap();
    eprintln!("written to {}", file.display());
    assert!(mismatches.is_empty(), "failed checks: {mismatches:?}");
    table
}
