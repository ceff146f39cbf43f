//! Avatars: the template frames a talking head is painted on, with their lower-face crop boxes.
//!
//! Frames stay JPEG-compressed in memory and are decoded when they are shown, so memory grows
//! with the size of the files, not with N × a decoded frame.

mod decode;
mod geometry;
mod layouts;

use std::borrow::Cow;
use std::thread;

pub use decode::JpegDecoder;
pub use geometry::{CropBox, LANDMARK_COUNT, LandmarkError, crop_box, parse_landmarks};
pub use layouts::{AvatarError, Layout, Source};

/// The built-in demo avatar (drawn by `tools/make_demo_avatar.py`), used when no avatar is set.
pub static DEMO: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/models/demo");

const CROP_RECTANGLES: &str = "cache/crop_rectangles.json";
/// Largest frame width and height: 8K video fits; a corrupt header claiming 65535×65535 (12 GB
/// decoded) is refused before anything is allocated.
pub const MAX_SIDE: u32 = 8192;

/// One template frame.
pub struct Template {
    pub jpeg: Cow<'static, [u8]>,
    pub crop: CropBox,
    /// The image file, as messages name it.
    pub file: String,
}

pub struct Avatar {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub frames: Vec<Template>,
    /// Things worth a warning that do not stop the avatar from working.
    pub warnings: Vec<String>,
}

impl Avatar {
    /// Reads and checks every file: the pairing of images and landmarks, every landmark line, the
    /// crop boxes, and a full decode of every frame (all of the same size).
    pub fn load(source: &Source) -> Result<Self, AvatarError> {
        let (layout, files) = layouts::discover(source)?;
        let mut frames = Vec::with_capacity(files.len());
        let mut landmarks = Vec::with_capacity(files.len());
        for file in &files {
            let text = source.read(&file.landmarks)?;
            let text = std::str::from_utf8(&text).map_err(|_| {
                AvatarError::new(source.describe(&file.landmarks), "is not a text file")
            })?;
            landmarks.push(parse_landmarks(text).map_err(|err| AvatarError {
                file: source.describe(&file.landmarks),
                line: (err.line > 0).then_some(err.line),
                message: err.message,
            })?);
            frames.push((source.read(&file.image)?, source.describe(&file.image)));
        }

        let (width, height) = JpegDecoder::new()
            .and_then(|mut decoder| decoder.dimensions(&frames[0].0))
            .map_err(|err| AvatarError::new(frames[0].1.clone(), err))?;
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(AvatarError::new(
                frames[0].1.clone(),
                format!("is {width}x{height}: frames up to {MAX_SIDE} pixels a side are supported"),
            ));
        }
        check_all_decode(&frames, (width, height))?;

        let frames = frames
            .into_iter()
            .zip(&landmarks)
            .zip(&files)
            .map(|(((jpeg, file), points), files)| {
                let crop = crop_box(points, width, height)
                    .map_err(|err| AvatarError::new(source.describe(&files.landmarks), err))?;
                Ok(Template { jpeg, crop, file })
            })
            .collect::<Result<Vec<_>, AvatarError>>()?;

        let mut avatar = Avatar {
            layout,
            width,
            height,
            frames,
            warnings: Vec::new(),
        };
        if source.exists(CROP_RECTANGLES) {
            avatar.warnings = avatar.compare_crop_rectangles(source)?;
        }
        Ok(avatar)
    }

    /// Template frame shown for output frame `n`, with the reference ping-pong order shifted by
    /// `start_frame` steps.
    pub fn template_index(&self, n: u64, start_frame: u32) -> usize {
        pingpong(n + u64::from(start_frame), self.frames.len())
    }

    /// digital-clone packages carry precomputed crop boxes; ours come from the landmarks as the
    /// reference computes them. Differences are reported, not fatal.
    fn compare_crop_rectangles(&self, source: &Source) -> Result<Vec<String>, AvatarError> {
        let text = source.read(CROP_RECTANGLES)?;
        let parsed: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|err| AvatarError::new(source.describe(CROP_RECTANGLES), err.to_string()))?;
        let mut warnings = Vec::new();
        for (n, frame) in self.frames.iter().enumerate() {
            let entry = &parsed[n.to_string()];
            let rect = entry.get("rect").unwrap_or(entry);
            let values: Option<Vec<u64>> = rect
                .as_array()
                .map(|values| values.iter().filter_map(|v| v.as_u64()).collect());
            let ours = frame.crop;
            let ours = [ours.x0, ours.y0, ours.x1, ours.y1].map(u64::from);
            if values.as_deref() != Some(ours.as_slice()) {
                warnings.push(format!(
                    "{}: frame {n} is {rect} there, the landmarks give {ours:?} (using the landmarks)",
                    source.describe(CROP_RECTANGLES)
                ));
            }
        }
        Ok(warnings)
    }
}

/// The reference template order: 1, 2, …, N−1, N−2, …, 1, 0, 1, … (period 2(N−1)).
pub fn pingpong(k: u64, count: usize) -> usize {
    if count < 2 {
        return 0;
    }
    let last = count as u64 - 1;
    let phase = k % (2 * last);
    if phase < last {
        (phase + 1) as usize
    } else {
        (2 * last - phase - 1) as usize
    }
}

/// Decodes every frame once, on all cores, and reports the first bad one.
fn check_all_decode(
    frames: &[(Cow<'static, [u8]>, String)],
    size: (u32, u32),
) -> Result<(), AvatarError> {
    let workers = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(frames.len());
    let stride = 3 * size.0 as usize;
    let errors: Vec<(usize, AvatarError)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                scope.spawn(move || {
                    let mut decoder = match JpegDecoder::new() {
                        Ok(decoder) => decoder,
                        Err(err) => return Some((0, AvatarError::new("libturbojpeg", err))),
                    };
                    let mut bgr = vec![0u8; stride * size.1 as usize];
                    frames
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(workers)
                        .find_map(|(n, (jpeg, file))| {
                            decoder
                                .decode_bgr(jpeg, &mut bgr, size, stride)
                                .err()
                                .map(|err| (n, AvatarError::new(file.clone(), err)))
                        })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().expect("JPEG check thread panicked"))
            .collect()
    });
    match errors.into_iter().min_by_key(|(n, _)| *n) {
        Some((_, err)) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingpong_follows_the_reference_loop() {
        // SyncTalk_2D inference_328.py: step flips at the ends, index moves before use.
        for count in 1..7usize {
            let len_img = count as i64 - 1;
            let (mut idx, mut step) = (0i64, 0i64);
            for k in 0..40u64 {
                if idx > len_img - 1 {
                    step = -1;
                }
                if idx < 1 {
                    step = 1;
                }
                idx += step;
                let expected = if count == 1 { 0 } else { idx as usize };
                assert_eq!(pingpong(k, count), expected, "count {count}, k {k}");
            }
        }
        assert_eq!(
            (0..8).map(|k| pingpong(k, 4)).collect::<Vec<_>>(),
            [1, 2, 3, 2, 1, 0, 1, 2]
        );
    }

    #[test]
    fn the_demo_avatar_loads() {
        let avatar = Avatar::load(&Source::Builtin(&DEMO)).unwrap();
        assert!(avatar.frames.len() >= 50);
        assert_eq!(avatar.layout, Layout::SyncTalk2d);
        for frame in &avatar.frames {
            assert!(frame.crop.x1 <= avatar.width && frame.crop.y1 <= avatar.height);
            assert_eq!(frame.crop.width(), frame.crop.height(), "{}", frame.file);
        }
    }
}
