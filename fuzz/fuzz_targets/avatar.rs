//! Avatar folders made of arbitrary files: the loader (layout detection, pairing, `.lms`
//! parsing, crop boxes, JPEG decoding, `crop_rectangles.json`) never panics; an error names a
//! file of the avatar, and an avatar it accepts has its crop boxes inside its frames.
//!
//! The input is a list of records `[kind, number, length (2 bytes), content]`; kinds are a
//! `full_body_img/<n>.jpg`, a `landmarks/<n>.lms`, `cache/crop_rectangles.json`, or the built-in
//! demo avatar's first JPEG or `.lms` cut to `length` bytes (valid material to mutate).

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use gsttalkinghead::avatar::{Avatar, DEMO, Source};
use libfuzzer_sys::fuzz_target;

static ROOT: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("talkinghead-fuzz-avatar-{}", std::process::id()))
});

fn demo(file: &str) -> &'static [u8] {
    DEMO.get_file(file).expect("demo avatar file").contents()
}

fuzz_target!(|data: &[u8]| {
    let root = &*ROOT;
    let _ = std::fs::remove_dir_all(root);
    for dir in ["full_body_img", "landmarks", "cache"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let mut rest = data;
    while let Some((&[kind, number, len0, len1], tail)) = rest.split_first_chunk::<4>() {
        let len = usize::from(u16::from_le_bytes([len0, len1]));
        let (content, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let n = number % 6;
        let (file, bytes) = match kind % 5 {
            0 => (format!("full_body_img/{n}.jpg"), content),
            1 => (format!("landmarks/{n}.lms"), content),
            2 => ("cache/crop_rectangles.json".into(), content),
            3 => {
                let jpeg = demo("full_body_img/0.jpg");
                (
                    format!("full_body_img/{n}.jpg"),
                    &jpeg[..len.min(jpeg.len())],
                )
            }
            _ => {
                let lms = demo("landmarks/0.lms");
                (format!("landmarks/{n}.lms"), &lms[..len.min(lms.len())])
            }
        };
        std::fs::write(root.join(file), bytes).unwrap();
    }
    match Avatar::load(&Source::Folder(root.clone())) {
        Ok(avatar) => {
            assert!(!avatar.frames.is_empty());
            for frame in &avatar.frames {
                let b = frame.crop;
                assert!(b.x0 < b.x1 && b.x1 <= avatar.width, "{b:?}");
                assert!(b.y0 < b.y1 && b.y1 <= avatar.height, "{b:?}");
            }
        }
        Err(err) => {
            assert!(
                err.file.starts_with(&*root.to_string_lossy()) || err.file == "libturbojpeg",
                "{err}"
            );
            assert!(!err.message.is_empty());
        }
    }
});
