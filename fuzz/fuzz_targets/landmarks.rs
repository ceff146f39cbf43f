//! `.lms` text and frame sizes: parsing and the crop box never panic, and what they accept is
//! sound (110 points; a box inside the frame, not empty).

#![no_main]

use gsttalkinghead::avatar::{LANDMARK_COUNT, crop_box, parse_landmarks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, text)) = data.split_first_chunk::<4>() else {
        return;
    };
    let width = 1 + u32::from(u16::from_le_bytes([size[0], size[1]])) % 8192;
    let height = 1 + u32::from(u16::from_le_bytes([size[2], size[3]])) % 8192;
    let text = String::from_utf8_lossy(text);
    match parse_landmarks(&text) {
        Ok(points) => {
            assert_eq!(points.len(), LANDMARK_COUNT);
            if let Ok(b) = crop_box(&points, width, height) {
                assert!(b.x0 < b.x1 && b.x1 <= width, "{b:?} in {width}x{height}");
                assert!(b.y0 < b.y1 && b.y1 <= height, "{b:?} in {width}x{height}");
            }
        }
        Err(err) => {
            assert!(err.line <= text.lines().count(), "{err:?}");
            assert!(!err.message.is_empty());
        }
    }
});
