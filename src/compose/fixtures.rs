//! The inputs and reference outputs of `tools/make_compose_fixtures.py`.

use std::path::Path;

/// splitmix64, the noise source of the fixture patterns.
fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `pattern()` of the fixture script: packed BGR blocks of gradients, 0/255 stripes and noise.
pub fn pattern(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let (w, h) = (width as u64, height as u64);
    let mut image = Vec::with_capacity(width * height * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let value = match (x * 4 / w + y * 4 / h) % 3 {
                    0 => (x * 255 / (w - 1) * (c + 1) + y * 255 / (h - 1) * (3 - c)) / 4,
                    1 => 255 * ((x / 3 + y / 4 + c) % 2),
                    _ => splitmix64((seed << 32) + (y * w + x) * 3 + c) >> 56,
                };
                image.push(value as u8);
            }
        }
    }
    image
}

/// The contents of `tests/data/compose/<name>.bgr`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/compose")
        .join(format!("{name}.bgr"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}
