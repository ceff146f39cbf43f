//! Avatars through the element: template order in real pipelines, and bad avatars refused with
//! a message that names the file.

mod common;

use std::path::Path;

use common::{collect_bgr, make_avatar, start_error};
use gst::prelude::*;
use gsttalkinghead::avatar::{self, Avatar, JpegDecoder, Source};

/// Renders `frames` frames of silence as BGR and returns them, tightly packed.
fn render_bgr(avatar: Option<&Path>, start_frame: u32, frames: u32) -> Vec<Vec<u8>> {
    let launch = format!(
        "audiotestsrc wave=silence num-buffers={frames} samplesperbuffer=640 ! \
         audio/x-raw,rate=16000,channels=1,format=F32LE ! talkinghead name=head start-frame={start_frame} ! \
         video/x-raw,format=BGR ! appsink name=sink sync=false"
    );
    collect_bgr(&launch, |pipeline| {
        if let Some(path) = avatar {
            pipeline
                .by_name("head")
                .unwrap()
                .set_property("avatar", path.to_str().unwrap());
        }
    })
    .frames
}

fn decoded_templates(avatar: &Avatar) -> Vec<Vec<u8>> {
    let mut decoder = JpegDecoder::new().unwrap();
    let stride = 3 * avatar.width as usize;
    avatar
        .frames
        .iter()
        .map(|frame| {
            let mut bgr = vec![0; stride * avatar.height as usize];
            decoder
                .decode_bgr(&frame.jpeg, &mut bgr, (avatar.width, avatar.height), stride)
                .unwrap();
            bgr
        })
        .collect()
}

fn assert_pingpong(frames: &[Vec<u8>], templates: &[Vec<u8>], start_frame: u32) {
    for (n, frame) in frames.iter().enumerate() {
        let expected = avatar::pingpong(n as u64 + u64::from(start_frame), templates.len());
        assert!(
            frame == &templates[expected],
            "output frame {n} is not template {expected}"
        );
    }
}

#[test]
fn frames_are_the_templates_in_pingpong_order() {
    let root = make_avatar("pingpong", 5, (96, 64), 0, 0);
    let avatar = Avatar::load(&Source::Folder(root.clone())).unwrap();
    let frames = render_bgr(Some(&root), 0, 20);
    assert_eq!(frames.len(), 20);
    assert_pingpong(&frames, &decoded_templates(&avatar), 0);
}

#[test]
fn digital_clone_packages_play_from_their_start_frame() {
    let root = make_avatar("dc-start", 4, (96, 64), 1, 0);
    let avatar = Avatar::load(&Source::Folder(root.clone())).unwrap();
    assert_eq!(avatar.layout, avatar::Layout::DigitalClone);
    let frames = render_bgr(Some(&root), 3, 14);
    assert_pingpong(&frames, &decoded_templates(&avatar), 3);
}

#[test]
fn the_builtin_avatar_plays_without_configuration() {
    let avatar = Avatar::load(&Source::Builtin(&avatar::DEMO)).unwrap();
    let count = 2 * avatar.frames.len() as u32 + 4;
    let frames = render_bgr(None, 0, count);
    assert_eq!(frames.len(), count as usize);
    // Silence: each template's silent face, which the demo generator draws as the template itself,
    // mouth closed: identical outside the face box, and inside it but for the crop's resizing
    // there and back.
    let templates = decoded_templates(&avatar);
    for (n, frame) in frames.iter().enumerate() {
        let t = avatar::pingpong(n as u64, templates.len());
        let crop = avatar.frames[t].crop;
        let what = format!("output frame {n} on template {t}");
        let mean = common::face_box_difference(frame, &templates[t], avatar.width, crop, &what);
        assert!(
            mean < 1.0,
            "output frame {n}: {mean:.2} from template {t} in its face box"
        );
    }
}

/// The error an element with `avatar` posts when it is started.
fn load_error(avatar: &Path) -> String {
    start_error(&[("avatar", avatar.display().to_string())])
}

#[test]
fn bad_avatars_fail_with_the_file_named() {
    let missing = std::env::temp_dir().join("talkinghead-no-such-avatar");
    let err = load_error(&missing);
    assert!(
        err.contains("talkinghead-no-such-avatar") && err.contains("does not exist"),
        "{err}"
    );

    let root = make_avatar("no-lms", 3, (64, 64), 0, 0);
    std::fs::remove_file(root.join("landmarks/1.lms")).unwrap();
    let err = load_error(&root);
    assert!(
        err.contains("landmarks/1.lms") && err.contains("missing"),
        "{err}"
    );

    let root = make_avatar("extra-lms", 3, (64, 64), 0, 0);
    std::fs::copy(root.join("landmarks/0.lms"), root.join("landmarks/3.lms")).unwrap();
    let err = load_error(&root);
    assert!(
        err.contains("landmarks/3.lms") && err.contains("without a frame"),
        "{err}"
    );

    let root = make_avatar("bad-line", 3, (64, 64), 0, 0);
    let path = root.join("landmarks/2.lms");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("32 32", "32 x2", 1);
    std::fs::write(&path, text).unwrap();
    let err = load_error(&root);
    assert!(
        err.contains("landmarks/2.lms:1:") && err.contains("\"x2\""),
        "{err}"
    );

    let root = make_avatar("truncated", 3, (64, 64), 0, 0);
    let path = root.join("full_body_img/1.jpg");
    let jpeg = std::fs::read(&path).unwrap();
    std::fs::write(&path, &jpeg[..jpeg.len() / 2]).unwrap();
    let err = load_error(&root);
    assert!(
        err.contains("full_body_img/1.jpg") && err.contains("JPEG"),
        "{err}"
    );

    let root = make_avatar("not-jpeg", 3, (64, 64), 0, 0);
    std::fs::write(root.join("full_body_img/2.jpg"), b"GIF89a not a jpeg").unwrap();
    let err = load_error(&root);
    assert!(
        err.contains("full_body_img/2.jpg") && err.contains("JPEG"),
        "{err}"
    );
}
