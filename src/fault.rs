//! Panics: their messages, and (with the `fault-injection` cargo feature, for the tests only)
//! panics injected on purpose into the rendering threads to prove the element survives them.

use std::any::Any;

/// The text a panic was raised with, for an error message.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Where a panic can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The source pad task, before it renders a batch.
    Task,
    /// A frame-synthesis thread, while it decodes a template.
    Synth,
}

#[cfg(feature = "fault-injection")]
mod injection {
    use std::sync::Mutex;

    use super::Site;

    static ARMED: Mutex<Vec<(Site, String)>> = Mutex::new(Vec::new());

    /// Makes the next render at `site` of an avatar whose template file names contain `marker`
    /// panic, once.
    pub fn arm(site: Site, marker: &str) {
        ARMED.lock().unwrap().push((site, marker.to_owned()));
    }

    pub fn check(site: Site, file: &str) {
        let fire = {
            let mut armed = ARMED.lock().unwrap();
            let hit = armed
                .iter()
                .position(|(at, marker)| *at == site && file.contains(marker.as_str()));
            hit.map(|n| armed.remove(n))
        };
        if let Some((site, _)) = fire {
            panic!("injected panic ({site:?}) at {file}");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use injection::arm;

/// Panics here if a test armed `site` for this template `file`; nothing without the
/// `fault-injection` feature.
#[inline]
pub fn check(site: Site, file: &str) {
    #[cfg(feature = "fault-injection")]
    injection::check(site, file);
    #[cfg(not(feature = "fault-injection"))]
    let _ = (site, file);
}
