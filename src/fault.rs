//! Panics: their messages, and (with the `fault-injection` cargo feature, for the tests only)
//! panics injected on purpose into the rendering threads to prove the element survives them, and
//! a generator slowed down on purpose, as on a slower machine.

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
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::Site;

    /// Nanoseconds each frame through the generator takes at least; 0: as it runs.
    static GENERATOR_FRAME_NS: AtomicU64 = AtomicU64::new(0);

    /// Makes every generator run take at least `per_frame` for each frame it infers, in this
    /// process, from now on (zero: as fast as it runs).
    pub fn slow_generator(per_frame: Duration) {
        GENERATOR_FRAME_NS.store(per_frame.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn pace_generator(frames: usize, started: Instant) {
        let per_frame = Duration::from_nanos(GENERATOR_FRAME_NS.load(Ordering::Relaxed));
        let until = started + per_frame * frames as u32;
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }

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
pub use injection::{arm, slow_generator};

/// Waits, after a generator run of `frames` frames begun at `started`, until a test's
/// [`slow_generator`] time has passed; nothing without the `fault-injection` feature.
#[inline]
pub fn pace_generator(frames: usize, started: std::time::Instant) {
    #[cfg(feature = "fault-injection")]
    injection::pace_generator(frames, started);
    #[cfg(not(feature = "fault-injection"))]
    let _ = (frames, started);
}

/// Panics here if a test armed `site` for this template `file`; nothing without the
/// `fault-injection` feature.
#[inline]
pub fn check(site: Site, file: &str) {
    #[cfg(feature = "fault-injection")]
    injection::check(site, file);
    #[cfg(not(feature = "fault-injection"))]
    let _ = (site, file);
}
