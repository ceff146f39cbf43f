//! The `talkinghead` element.
//!
//! `imp.rs` is the GStreamer glue: pads, events, queries, state changes and the source pad task's
//! dispatch; `render.rs` is the task's rendering of a batch. The rest has no element in it:
//! `timeline.rs` (the frame grid), `queue.rs` (streaming thread → task), `schedule.rs` (the live
//! policy), `engine/` (rendering), `output.rs` (negotiation and output buffers), `stats.rs`,
//! `settings.rs` (properties), `push.rs` (the push thread), `convert.rs`, `clock.rs` and
//! `resources.rs`.

use gst::glib;
use gst::prelude::*;

use crate::inference::{Precision, Provider};

pub mod clock;
mod convert;
pub mod engine;
mod imp;
mod output;
mod push;
mod queue;
mod render;
pub mod resources;
mod schedule;
mod settings;
mod stats;
pub mod timeline;

/// The element's `execution-provider` property: where the generator runs.
#[derive(Debug, Eq, PartialEq, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTalkingHeadExecutionProvider")]
pub enum ExecutionProvider {
    #[default]
    #[enum_value(name = "ONNX Runtime's CPU provider", nick = "cpu")]
    Cpu,
    #[enum_value(name = "OpenVINO (onnxruntime-openvino)", nick = "openvino")]
    OpenVino,
    #[enum_value(name = "CUDA (onnxruntime-gpu)", nick = "cuda")]
    Cuda,
    #[enum_value(name = "TensorRT (onnxruntime-gpu)", nick = "tensorrt")]
    TensorRt,
}

impl From<ExecutionProvider> for Provider {
    fn from(provider: ExecutionProvider) -> Self {
        match provider {
            ExecutionProvider::Cpu => Provider::Cpu,
            ExecutionProvider::OpenVino => Provider::OpenVino,
            ExecutionProvider::Cuda => Provider::Cuda,
            ExecutionProvider::TensorRt => Provider::TensorRt,
        }
    }
}

/// The element's `precision` property: what the generator computes in.
#[derive(Debug, Eq, PartialEq, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTalkingHeadPrecision")]
pub enum PrecisionSetting {
    #[default]
    #[enum_value(name = "32-bit float", nick = "fp32")]
    Fp32,
    #[enum_value(name = "bfloat16", nick = "bf16")]
    Bf16,
    #[enum_value(name = "16-bit float", nick = "fp16")]
    Fp16,
}

impl From<PrecisionSetting> for Precision {
    fn from(precision: PrecisionSetting) -> Self {
        match precision {
            PrecisionSetting::Fp32 => Precision::Fp32,
            PrecisionSetting::Bf16 => Precision::Bf16,
            PrecisionSetting::Fp16 => Precision::Fp16,
        }
    }
}

glib::wrapper! {
    pub struct TalkingHead(ObjectSubclass<imp::TalkingHead>)
        @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    PrecisionSetting::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::inference::send_log_to(imp::log_onnx_runtime);
    gst::Element::register(
        Some(plugin),
        "talkinghead",
        gst::Rank::NONE,
        TalkingHead::static_type(),
    )
}
