//! The element's properties: their defaults, their specs and the settings they make.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use super::resources::Wanted;
use super::{ExecutionProvider, PrecisionSetting};
use crate::audio::stream::SILENCE_FLOOR_DB;
use crate::inference::Acceleration;

pub const DEFAULT_AVATAR: Option<&str> = None;
pub const DEFAULT_START_FRAME: u32 = 0;
pub const DEFAULT_GENERATOR: Option<&str> = None;
pub const DEFAULT_AUDIO_ENCODER: Option<&str> = None;
pub const DEFAULT_ORT_LIBRARY: Option<&str> = None;
pub const DEFAULT_BATCH_SIZE: u32 = 8;
pub const DEFAULT_SILENCE_THRESHOLD_DB: f64 = -50.0;
pub const DEFAULT_BLEND_FRAMES: u32 = 4;
pub const DEFAULT_MAX_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(200);
pub const DEFAULT_INFERENCE_THREADS: u32 = 0;
pub const DEFAULT_EXECUTION_PROVIDER: ExecutionProvider = ExecutionProvider::Cpu;
pub const DEFAULT_DEVICE: Option<&str> = None;
pub const DEFAULT_PRECISION: PrecisionSetting = PrecisionSetting::Fp32;
pub const DEFAULT_MODEL_CACHE_DIR: Option<&str> = None;
/// MiB of decoded templates kept: about 40 frames of 1280x720 (a 523-frame 720p avatar stays
/// under 600 MB of RSS, `tests/avatar_memory.rs`).
pub const DEFAULT_TEMPLATE_CACHE: u32 = 128;
/// MiB of silent faces kept: the crop boxes of about 1700 templates of a 1280x720 avatar (a face
/// box of 225x225), or all of a 640x360 one.
pub const DEFAULT_SILENT_CACHE: u32 = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub avatar: Option<String>,
    pub start_frame: u32,
    pub generator: Option<String>,
    pub audio_encoder: Option<String>,
    pub ort_library: Option<String>,
    pub batch_size: u32,
    pub silence_threshold_db: f64,
    pub blend_frames: u32,
    pub max_latency: gst::ClockTime,
    pub inference_threads: u32,
    pub execution_provider: ExecutionProvider,
    pub device: Option<String>,
    pub precision: PrecisionSetting,
    pub model_cache_dir: Option<String>,
    pub template_cache: u32,
    pub silent_cache: u32,
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
            execution_provider: DEFAULT_EXECUTION_PROVIDER,
            device: DEFAULT_DEVICE.map(String::from),
            precision: DEFAULT_PRECISION,
            model_cache_dir: DEFAULT_MODEL_CACHE_DIR.map(String::from),
            template_cache: DEFAULT_TEMPLATE_CACHE,
            silent_cache: DEFAULT_SILENT_CACHE,
        }
    }
}

impl Settings {
    pub fn wanted(&self) -> Wanted {
        Wanted {
            avatar: self.avatar.as_ref().map(PathBuf::from),
            generator: self.generator.as_ref().map(PathBuf::from),
            audio_encoder: self.audio_encoder.as_ref().map(PathBuf::from),
            ort_library: self.ort_library.as_ref().map(PathBuf::from),
            inference_threads: self.inference_threads,
            acceleration: Acceleration {
                provider: self.execution_provider.into(),
                device: self.device.clone(),
                precision: self.precision.into(),
                cache_dir: self.model_cache_dir.as_ref().map(PathBuf::from),
            },
        }
    }

    pub fn template_cache_bytes(&self) -> usize {
        self.template_cache as usize * 1024 * 1024
    }

    pub fn silent_cache_bytes(&self) -> usize {
        self.silent_cache as usize * 1024 * 1024
    }
}

impl Settings {
    /// Sets property `name` (a writable property of [`properties`]) to `value`, type-checked by
    /// GLib.
    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let checked = "type checked upstream";
        match name {
            "avatar" => self.avatar = value.get().expect(checked),
            "start-frame" => self.start_frame = value.get().expect(checked),
            "generator" => self.generator = value.get().expect(checked),
            "audio-encoder" => self.audio_encoder = value.get().expect(checked),
            "ort-library" => self.ort_library = value.get().expect(checked),
            "batch-size" => self.batch_size = value.get().expect(checked),
            "silence-threshold" => self.silence_threshold_db = value.get().expect(checked),
            "blend-frames" => self.blend_frames = value.get().expect(checked),
            "max-latency" => {
                self.max_latency = gst::ClockTime::from_nseconds(value.get().expect(checked))
            }
            "inference-threads" => self.inference_threads = value.get().expect(checked),
            "execution-provider" => self.execution_provider = value.get().expect(checked),
            "device" => self.device = value.get().expect(checked),
            "precision" => self.precision = value.get().expect(checked),
            "model-cache-dir" => self.model_cache_dir = value.get().expect(checked),
            "template-cache" => self.template_cache = value.get().expect(checked),
            "silent-cache" => self.silent_cache = value.get().expect(checked),
            _ => unreachable!("{name} is not a writable property"),
        }
    }

    /// The value of property `name`, but `stats`.
    pub fn value(&self, name: &str) -> glib::Value {
        match name {
            "avatar" => self.avatar.to_value(),
            "start-frame" => self.start_frame.to_value(),
            "generator" => self.generator.to_value(),
            "audio-encoder" => self.audio_encoder.to_value(),
            "ort-library" => self.ort_library.to_value(),
            "batch-size" => self.batch_size.to_value(),
            "silence-threshold" => self.silence_threshold_db.to_value(),
            "blend-frames" => self.blend_frames.to_value(),
            "max-latency" => self.max_latency.nseconds().to_value(),
            "inference-threads" => self.inference_threads.to_value(),
            "execution-provider" => self.execution_provider.to_value(),
            "device" => self.device.to_value(),
            "precision" => self.precision.to_value(),
            "model-cache-dir" => self.model_cache_dir.to_value(),
            "template-cache" => self.template_cache.to_value(),
            "silent-cache" => self.silent_cache.to_value(),
            _ => unreachable!("{name} is not a setting"),
        }
    }
}

/// The element's properties.
pub fn properties() -> Vec<glib::ParamSpec> {
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
                "Path of libonnxruntime.so. Unset: $ORT_DYLIB_PATH; the library this process \
                 already loaded; the build for execution-provider that make install put beside \
                 the plugin (../gst-talkinghead/); the checkout's virtualenvs while the plugin \
                 runs from its build; a Python onnxruntime ($VIRTUAL_ENV, ~/.local, \
                 /usr/local/lib, /usr/lib); the system library path. Loaded once per process",
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
                 frame whose whole audio window is silent shows its template's silent \
                 face (what the generator draws for the template in digital silence, \
                 inferred once per template and kept). -200 infers every frame from its \
                 own audio",
            )
            .minimum(SILENCE_FLOOR_DB.into())
            .maximum(0.0)
            .default_value(DEFAULT_SILENCE_THRESHOLD_DB)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("blend-frames")
            .nick("Blend frames")
            .blurb(
                "Frames over which the face fades back in after a live stream, too late \
                 to infer any face nearby, showed the template (1: a cut)",
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
                 look-ahead. Frames that cannot be inferred within it hold the face of \
                 the nearest frame that is",
            )
            .minimum(gst::ClockTime::from_mseconds(20).nseconds())
            .maximum(gst::ClockTime::from_seconds(10).nseconds())
            .default_value(DEFAULT_MAX_LATENCY.nseconds())
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("inference-threads")
            .nick("Inference threads")
            .blurb(
                "Threads ONNX Runtime (OpenVINO with execution-provider=openvino) runs \
                 each generator operator on; 0 lets it choose (one per physical core). The \
                 audio encoder runs on one",
            )
            .maximum(256)
            .default_value(DEFAULT_INFERENCE_THREADS)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("execution-provider", DEFAULT_EXECUTION_PROVIDER)
            .nick("Execution provider")
            .blurb(
                "Where the generator runs: cpu (ONNX Runtime's own kernels), openvino \
                 (the onnxruntime-openvino build, which make deps installs and the element \
                 finds when ort-library is unset), cuda or tensorrt (an onnxruntime-gpu \
                 build). A provider the library lacks fails the start, never falls back to \
                 the CPU. The audio encoder runs on the CPU provider",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("device")
            .nick("Device")
            .blurb(
                "The execution provider's device: CPU, GPU, GPU.1, NPU... for openvino \
                 (unset: CPU), a CUDA device number for cuda and tensorrt (unset: 0); \
                 unset for cpu",
            )
            .default_value(DEFAULT_DEVICE)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("precision", DEFAULT_PRECISION)
            .nick("Precision")
            .blurb(
                "What the generator computes in: fp32 everywhere; bf16 with openvino on a \
                 CPU with bf16 instructions; fp16 with openvino on a GPU or a CPU with fp16 \
                 instructions, and with tensorrt. Any other pair fails the start",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model-cache-dir")
            .nick("Model cache folder")
            .blurb(
                "Folder where openvino keeps its compiled models and tensorrt its engines \
                 and timing cache, so a second start is faster. Unset: nothing is kept",
            )
            .default_value(DEFAULT_MODEL_CACHE_DIR)
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
        glib::ParamSpecUInt::builder("silent-cache")
            .nick("Silent face cache (MiB)")
            .blurb(
                "Memory for silent faces, the pixels of each template's face box as the \
                 generator draws it in silence, so that a template shown in a pause \
                 again costs no inference; 0 infers every frame of a pause",
            )
            .maximum(1 << 20)
            .default_value(DEFAULT_SILENT_CACHE)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
            .nick("Statistics")
            .blurb(
                "Since the element last started: frames-out, frames-inferred (through \
                 the models), silent-faces (of those, inferred to make a template's \
                 silent face), silent-bytes (memory the silent faces kept take), \
                 frames-silent (showing a silent face kept), frames-held \
                 (showing a nearby frame's face, as inference would have been late), \
                 frames-idle (template frames, without models), frames-late (template \
                 frames, with no face near them in time), batch-size, last-batch, \
                 queued-frames, render-fps (frames per second of rendering time), inference-fps (the same for inferred \
                 frames), output-fps (frames per second since the first frame went \
                 out), latency (nanoseconds the element adds when live), and the mean \
                 milliseconds a frame spends in each stage: encoder-ms, generator-ms \
                 (per inferred frame), image-ms (template decode, crop, paste, fade) and \
                 convert-ms; where the generator runs: execution-provider, device, precision \
                 (none without models); generator-quantized (its graph is 8-bit quantized, \
                 as make quantize writes it)",
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
}
