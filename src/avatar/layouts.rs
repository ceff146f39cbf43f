//! Where an avatar's files come from and which of the two dataset layouts they follow.
//!
//! - SyncTalk_2D dataset: `full_body_img/{0..N-1}.jpg` and `landmarks/{0..N-1}.lms`.
//! - digital-clone package: `full_body_img/{1..N}.jpg` (1-based, as ffmpeg extracts them) and
//!   `landmarks/{0..N-1}.lms`, so image `i` goes with landmarks `i - 1`.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

pub const IMAGE_DIR: &str = "full_body_img";
pub const LANDMARK_DIR: &str = "landmarks";

/// A problem with an avatar, naming the file (and line) it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl AvatarError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for AvatarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for AvatarError {}

/// Where the files of an avatar are read from.
#[derive(Clone, Debug)]
pub enum Source {
    Folder(PathBuf),
    Builtin(&'static include_dir::Dir<'static>),
}

impl Source {
    /// How to name `relative` in a message: the full path, or its place in the built-in avatar.
    pub fn describe(&self, relative: &str) -> String {
        match self {
            Source::Folder(root) if relative.is_empty() => root.display().to_string(),
            Source::Folder(root) => root.join(relative).display().to_string(),
            Source::Builtin(_) => format!("<built-in demo avatar>/{relative}"),
        }
    }

    /// File names directly inside the folder `relative`, or `None` if there is no such folder.
    pub fn list(&self, relative: &str) -> Result<Option<Vec<String>>, AvatarError> {
        match self {
            Source::Folder(root) => {
                let dir = root.join(relative);
                if !dir.is_dir() {
                    return Ok(None);
                }
                let entries = std::fs::read_dir(&dir)
                    .map_err(|err| AvatarError::new(self.describe(relative), err.to_string()))?;
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|err| {
                        AvatarError::new(self.describe(relative), err.to_string())
                    })?;
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                Ok(Some(names))
            }
            Source::Builtin(root) => Ok(root.get_dir(relative).map(|dir| {
                dir.files()
                    .filter_map(|file| file.path().file_name())
                    .map(|name| name.to_string_lossy().into_owned())
                    .collect()
            })),
        }
    }

    pub fn read(&self, relative: &str) -> Result<Cow<'static, [u8]>, AvatarError> {
        match self {
            Source::Folder(root) => std::fs::read(root.join(relative))
                .map(Cow::Owned)
                .map_err(|err| AvatarError::new(self.describe(relative), err.to_string())),
            Source::Builtin(root) => root
                .get_file(relative)
                .map(|file| Cow::Borrowed(file.contents()))
                .ok_or_else(|| AvatarError::new(self.describe(relative), "not found")),
        }
    }

    pub fn exists(&self, relative: &str) -> bool {
        match self {
            Source::Folder(root) => root.join(relative).exists(),
            Source::Builtin(root) => root.get_file(relative).is_some(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    SyncTalk2d,
    DigitalClone,
}

impl Layout {
    /// Number of the image file that holds template frame 0.
    pub fn first_image(self) -> usize {
        match self {
            Layout::SyncTalk2d => 0,
            Layout::DigitalClone => 1,
        }
    }
}

/// The files of one template frame, relative to the avatar folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameFiles {
    pub image: String,
    pub landmarks: String,
}

/// Finds the template frames of an avatar and checks that images and landmarks pair up.
pub fn discover(source: &Source) -> Result<(Layout, Vec<FrameFiles>), AvatarError> {
    if let Source::Folder(root) = source
        && !root.is_dir()
    {
        return Err(AvatarError::new(
            source.describe(""),
            "avatar folder does not exist or is not a folder",
        ));
    }
    let images = numbered_files(source, IMAGE_DIR, "jpg")?.ok_or_else(|| {
        AvatarError::new(
            source.describe(IMAGE_DIR),
            "no such folder: an avatar needs full_body_img/ and landmarks/ \
             (a SyncTalk_2D dataset or a digital-clone package)",
        )
    })?;
    let (Some(&first), Some(&last)) = (images.first(), images.last()) else {
        return Err(AvatarError::new(
            source.describe(IMAGE_DIR),
            "no numbered .jpg frames (expected 0.jpg, 1.jpg, ...)",
        ));
    };
    let layout = match first {
        0 => Layout::SyncTalk2d,
        1 => Layout::DigitalClone,
        _ => {
            return Err(AvatarError::new(
                source.describe(&format!("{IMAGE_DIR}/{first}.jpg")),
                "frames must be numbered from 0 (SyncTalk_2D) or 1 (digital-clone)",
            ));
        }
    };
    if let Some(missing) = (first..=last).find(|n| images.binary_search(n).is_err()) {
        return Err(AvatarError::new(
            source.describe(&format!("{IMAGE_DIR}/{missing}.jpg")),
            format!("missing frame: the frames run from {first}.jpg to {last}.jpg"),
        ));
    }
    let count = images.len();

    let landmarks = numbered_files(source, LANDMARK_DIR, "lms")?
        .ok_or_else(|| AvatarError::new(source.describe(LANDMARK_DIR), "no such folder"))?;
    if let Some(missing) = (0..count).find(|n| landmarks.binary_search(n).is_err()) {
        return Err(AvatarError::new(
            source.describe(&format!("{LANDMARK_DIR}/{missing}.lms")),
            format!(
                "missing landmark file for frame {IMAGE_DIR}/{}.jpg",
                missing + layout.first_image()
            ),
        ));
    }
    if let Some(extra) = landmarks.iter().find(|&&n| n >= count) {
        return Err(AvatarError::new(
            source.describe(&format!("{LANDMARK_DIR}/{extra}.lms")),
            format!("landmark file without a frame: the avatar has {count} frames in {IMAGE_DIR}/"),
        ));
    }

    let frames = (0..count)
        .map(|n| FrameFiles {
            image: format!("{IMAGE_DIR}/{}.jpg", n + layout.first_image()),
            landmarks: format!("{LANDMARK_DIR}/{n}.lms"),
        })
        .collect();
    Ok((layout, frames))
}

/// Sorted numbers `n` of the files `n.<extension>` in `dir`; other files are ignored.
fn numbered_files(
    source: &Source,
    dir: &str,
    extension: &str,
) -> Result<Option<Vec<usize>>, AvatarError> {
    let Some(names) = source.list(dir)? else {
        return Ok(None);
    };
    let numbers: BTreeSet<usize> = names
        .iter()
        .filter_map(|name| name.strip_suffix(extension)?.strip_suffix('.'))
        .filter(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|stem| stem.parse().ok())
        .collect();
    Ok(Some(numbers.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn folder(name: &str, images: &[usize], landmarks: &[usize]) -> Source {
        let root =
            std::env::temp_dir().join(format!("talkinghead-layouts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join(IMAGE_DIR)).unwrap();
        fs::create_dir_all(root.join(LANDMARK_DIR)).unwrap();
        for n in images {
            fs::write(root.join(format!("{IMAGE_DIR}/{n}.jpg")), b"").unwrap();
        }
        for n in landmarks {
            fs::write(root.join(format!("{LANDMARK_DIR}/{n}.lms")), b"").unwrap();
        }
        fs::write(root.join(format!("{IMAGE_DIR}/notes.txt")), b"").unwrap();
        Source::Folder(root)
    }

    #[test]
    fn zero_based_frames_are_a_synctalk_dataset() {
        let (layout, frames) = discover(&folder("st2d", &[0, 1, 2], &[0, 1, 2])).unwrap();
        assert_eq!(layout, Layout::SyncTalk2d);
        assert_eq!(frames[2].image, "full_body_img/2.jpg");
        assert_eq!(frames[2].landmarks, "landmarks/2.lms");
    }

    #[test]
    fn one_based_frames_are_a_digital_clone_package() {
        let (layout, frames) = discover(&folder("dc", &[1, 2, 3], &[0, 1, 2])).unwrap();
        assert_eq!(layout, Layout::DigitalClone);
        assert_eq!(frames[0].image, "full_body_img/1.jpg");
        assert_eq!(frames[0].landmarks, "landmarks/0.lms");
    }

    #[test]
    fn mismatched_files_are_named() {
        let err = discover(&folder("gap", &[0, 1, 3], &[0, 1, 2, 3])).unwrap_err();
        assert!(err.file.ends_with("full_body_img/2.jpg"), "{err}");
        let err = discover(&folder("nolms", &[0, 1, 2], &[0, 2])).unwrap_err();
        assert!(err.file.ends_with("landmarks/1.lms"), "{err}");
        assert!(err.message.contains("full_body_img/1.jpg"), "{err}");
        let err = discover(&folder("extra", &[1, 2], &[0, 1, 2])).unwrap_err();
        assert!(err.file.ends_with("landmarks/2.lms"), "{err}");
        let err = discover(&folder("from5", &[5, 6], &[0, 1])).unwrap_err();
        assert!(err.file.ends_with("full_body_img/5.jpg"), "{err}");
        let err = discover(&folder("empty", &[], &[])).unwrap_err();
        assert!(err.message.contains("no numbered .jpg"), "{err}");
        let err = discover(&Source::Folder("/nonexistent/avatar".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/avatar: avatar folder does not exist or is not a folder"
        );
    }
}
