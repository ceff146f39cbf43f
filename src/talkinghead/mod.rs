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

glib::wrapper! {
    pub struct TalkingHead(ObjectSubclass<imp::TalkingHead>)
        @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "talkinghead",
        gst::Rank::NONE,
        TalkingHead::static_type(),
    )
}
