//! The `talkinghead` element.

use gst::glib;
use gst::prelude::*;

pub mod clock;
mod convert;
mod costs;
mod fade;
mod imp;
mod infer;
mod push;
mod resources;

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
