//! gst-talkinghead: a GStreamer element that turns speech into lip-synced video of an avatar.

pub mod audio;
pub mod avatar;
pub mod compose;
pub mod fault;
pub mod inference;
pub mod synth;
mod talkinghead;
mod workers;

pub use talkinghead::{clock, engine, resources, timeline};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), gst::glib::BoolError> {
    if let Some(file) = plugin.filename() {
        inference::set_plugin_file(file);
    }
    talkinghead::register(plugin)
}

gst::plugin_define!(
    talkinghead,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
