//! Image side of the SyncTalk_2D engine: crop, resize, mask, tensor packing and paste.
//!
//! It follows `inference_328.py` step by step for one frame:
//!
//! 1. [`Compositor::crop`]: the crop box of the template frame, bicubic-resized to 328x328
//!    (`crop_img_ori`, kept in a [`FaceCrop`] until the network has answered);
//! 2. [`pack_input`]: its inner 320x320 as the 6-channel network input, unmasked then masked;
//! 3. [`unpack_output`]: the network's 320x320 written back inside the crop's 4-pixel ring;
//! 4. [`Compositor::paste`]: the whole 328x328 crop resized back to the box and pasted over it.
//!
//! The resizes are OpenCV's to the byte (see [`CubicResize`]); the float steps are done in f32 like
//! the numpy reference, so the truncations land where the reference's do.

mod blend;
mod image;
mod resize;

#[cfg(test)]
mod fixtures;

use std::ops::RangeInclusive;

use crate::avatar::CropBox;

pub use blend::blend_box;
pub use image::{BgrImage, CHANNELS};
pub use resize::CubicResize;

/// Side of the resized crop (`crop_img_ori`).
pub const CROP_SIZE: usize = 328;
/// Width of the ring of the crop around the network's square; the ring keeps the resized template.
pub const RING: usize = 4;
/// Side of the square the network sees and paints (`crop_img[4:324, 4:324]`).
pub const INNER_SIZE: usize = CROP_SIZE - 2 * RING;

/// Columns of the 320x320 square blacked out in the masked half of the input.
///
/// The reference calls `cv2.rectangle(img, (5, 5, 310, 305), 0, -1)`: a Rect (x, y, w, h), filled
/// up to x + w - 1 and y + h - 1.
pub const MASK_COLUMNS: RangeInclusive<usize> = 5..=314;
/// Rows of the 320x320 square blacked out in the masked half of the input (see [`MASK_COLUMNS`]).
pub const MASK_ROWS: RangeInclusive<usize> = 5..=309;

/// Values per frame of the generator input `[N, 6, 320, 320]`.
pub const INPUT_LEN: usize = 6 * PLANE;
/// Values per frame of the generator output `[N, 3, 320, 320]`.
pub const OUTPUT_LEN: usize = 3 * PLANE;

const PLANE: usize = INNER_SIZE * INNER_SIZE;
const CROP_ROW: usize = CROP_SIZE * CHANNELS;

/// `u8 as f32 / 255` in f32, as numpy divides a float32 array by 255.0.
static UNIT: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut value = 0;
    while value < 256 {
        table[value] = value as f32 / 255.0;
        value += 1;
    }
    table
};

/// A crop box resized to 328x328 (`crop_img_ori`), packed BGR without padding.
///
/// One is needed per frame in flight: it is filled before inference and completed after it.
#[derive(Clone)]
pub struct FaceCrop {
    pixels: Box<[u8]>,
}

impl FaceCrop {
    /// Bytes in a crop.
    pub const LEN: usize = CROP_SIZE * CROP_ROW;

    pub fn new() -> Self {
        FaceCrop {
            pixels: vec![0; Self::LEN].into_boxed_slice(),
        }
    }

    /// The crop's bytes: [`FaceCrop::LEN`] of them, 328 rows of packed BGR.
    pub fn bytes(&self) -> &[u8] {
        &self.pixels
    }

    /// Makes this crop a copy of the crop whose [`FaceCrop::bytes`] are `bytes`, without
    /// allocating.
    pub fn copy_from_bytes(&mut self, bytes: &[u8]) {
        self.pixels.copy_from_slice(bytes);
    }

    pub fn image(&self) -> BgrImage<&[u8]> {
        BgrImage::new(&self.pixels[..], CROP_SIZE, CROP_SIZE, CROP_ROW)
    }

    fn image_mut(&mut self) -> BgrImage<&mut [u8]> {
        BgrImage::new(&mut self.pixels[..], CROP_SIZE, CROP_SIZE, CROP_ROW)
    }

    /// The bytes of inner row `y` (0..320): pixels 4..324 of crop row 4 + y.
    fn inner_row(&self, y: usize) -> &[u8] {
        &self.pixels[(RING + y) * CROP_ROW + RING * CHANNELS..][..INNER_SIZE * CHANNELS]
    }

    fn inner_row_mut(&mut self, y: usize) -> &mut [u8] {
        &mut self.pixels[(RING + y) * CROP_ROW + RING * CHANNELS..][..INNER_SIZE * CHANNELS]
    }
}

impl Default for FaceCrop {
    fn default() -> Self {
        Self::new()
    }
}

/// The resize tables and row buffers for cropping and pasting; one per worker thread.
///
/// Crop boxes follow the landmarks and change size from frame to frame; the tables are rebuilt
/// then, but the buffers only grow.
#[derive(Debug, Default)]
pub struct Compositor {
    to_crop: CubicResize,
    to_box: CubicResize,
}

impl Compositor {
    pub fn new() -> Self {
        Self::default()
    }

    /// `cv2.resize(frame[y0:y1, x0:x1], (328, 328), interpolation=cv2.INTER_CUBIC)` into `crop`.
    ///
    /// # Panics
    ///
    /// If `crop_box` is empty or not inside `frame`.
    pub fn crop<B: AsRef<[u8]>>(
        &mut self,
        frame: &BgrImage<B>,
        crop_box: CropBox,
        crop: &mut FaceCrop,
    ) {
        self.to_crop
            .resize(&frame.region(crop_box), &mut crop.image_mut());
    }

    /// Resizes the whole crop back to the box and overwrites the box in `frame` with it: a hard
    /// paste, no blending, nothing outside the box (or in the stride padding) touched.
    ///
    /// # Panics
    ///
    /// If `crop_box` is empty or not inside `frame`.
    pub fn paste<B>(&mut self, crop: &FaceCrop, frame: &mut BgrImage<B>, crop_box: CropBox)
    where
        B: AsRef<[u8]> + AsMut<[u8]>,
    {
        self.to_box
            .resize(&crop.image(), &mut frame.region_mut(crop_box));
    }
}

/// Writes one frame's generator input: `input` is its `[6, 320, 320]` slot of the batch tensor,
/// `batch[k * INPUT_LEN..][..INPUT_LEN]` for frame k.
///
/// Planes 0-2 are the inner 320x320 of the crop as B, G, R over 255; planes 3-5 are the same with
/// [`MASK_ROWS`] x [`MASK_COLUMNS`] set to 0.
///
/// # Panics
///
/// If `input` is not `INPUT_LEN` long.
pub fn pack_input(crop: &FaceCrop, input: &mut [f32]) {
    assert_eq!(input.len(), INPUT_LEN, "one frame of [N, 6, 320, 320]");
    let (unmasked, masked) = input.split_at_mut(3 * PLANE);
    for y in 0..INNER_SIZE {
        let row = crop.inner_row(y);
        for channel in 0..3 {
            let plane_row = channel * PLANE + y * INNER_SIZE;
            let unmasked = &mut unmasked[plane_row..][..INNER_SIZE];
            for (x, value) in unmasked.iter_mut().enumerate() {
                *value = UNIT[usize::from(row[x * CHANNELS + channel])];
            }
            let masked = &mut masked[plane_row..][..INNER_SIZE];
            masked.copy_from_slice(unmasked);
            if MASK_ROWS.contains(&y) {
                masked[MASK_COLUMNS].fill(0.0);
            }
        }
    }
}

/// Writes one frame's generator output (`[3, 320, 320]`, B, G, R in [0, 1]) into the inner
/// 320x320 of the crop, leaving its ring alone.
///
/// Like the reference's `(pred * 255).astype(np.uint8)` this truncates, in f32. Values the sigmoid
/// cannot produce are clamped to 0..=255 and NaN becomes 0, where numpy's cast is undefined.
///
/// # Panics
///
/// If `output` is not `OUTPUT_LEN` long.
pub fn unpack_output(output: &[f32], crop: &mut FaceCrop) {
    assert_eq!(output.len(), OUTPUT_LEN, "one frame of [N, 3, 320, 320]");
    for y in 0..INNER_SIZE {
        let row = crop.inner_row_mut(y);
        for channel in 0..3 {
            let plane_row = &output[channel * PLANE + y * INNER_SIZE..][..INNER_SIZE];
            for (x, &value) in plane_row.iter().enumerate() {
                // `as` saturates and maps NaN to 0.
                row[x * CHANNELS + channel] = (value * 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{fixture, pattern};
    use super::*;

    fn crop_of_pattern(seed: u64) -> FaceCrop {
        let source = pattern(182, 182, seed);
        let mut crop = FaceCrop::new();
        Compositor::new().crop(
            &BgrImage::new(&source[..], 182, 182, 182 * CHANNELS),
            CropBox {
                x0: 0,
                y0: 0,
                x1: 182,
                y1: 182,
            },
            &mut crop,
        );
        crop
    }

    #[test]
    fn the_mask_is_opencv_rect_5_5_310_305() {
        assert_eq!((INNER_SIZE, RING), (320, 4));
        assert_eq!(MASK_COLUMNS, 5..=314);
        assert_eq!(MASK_ROWS, 5..=309);
        // Rect(x, y, w, h) covers x..x + w and y..y + h, end exclusive.
        assert_eq!(MASK_COLUMNS.count(), 310);
        assert_eq!(MASK_ROWS.count(), 305);
    }

    #[test]
    fn packs_unmasked_then_masked_planes() {
        let crop = crop_of_pattern(182);
        let mut input = vec![f32::NAN; INPUT_LEN];
        pack_input(&crop, &mut input);
        let pixels = crop.image();
        for channel in 0..3 {
            for y in 0..INNER_SIZE {
                for x in 0..INNER_SIZE {
                    let byte = pixels.row(RING + y)[(RING + x) * CHANNELS + channel];
                    let unmasked = input[channel * PLANE + y * INNER_SIZE + x];
                    let masked = input[(3 + channel) * PLANE + y * INNER_SIZE + x];
                    assert_eq!(unmasked, f32::from(byte) / 255.0);
                    if MASK_ROWS.contains(&y) && MASK_COLUMNS.contains(&x) {
                        assert_eq!(masked, 0.0, "({x}, {y})");
                    } else {
                        assert_eq!(masked, unmasked, "({x}, {y})");
                    }
                }
            }
        }
        // The pattern has no zero bytes at the mask's edges, so the edges are really ours.
        let at = |plane: usize, x: usize, y: usize| input[plane * PLANE + y * INNER_SIZE + x];
        for (x, y) in [(4, 5), (315, 5), (5, 4), (5, 310), (319, 319)] {
            assert_eq!(at(3, x, y), at(0, x, y));
        }
    }

    #[test]
    fn unpacking_truncates_like_numpy() {
        let mut output = vec![0.0; OUTPUT_LEN];
        let values = [
            0.0,
            0.5,
            0.999,
            1.0,
            254.9 / 255.0,
            -0.1,
            1.5,
            f32::NAN,
            f32::INFINITY,
        ];
        output[..values.len()].copy_from_slice(&values);
        let mut crop = FaceCrop::new();
        unpack_output(&output, &mut crop);
        let bytes: Vec<u8> = (0..values.len())
            .map(|x| crop.image().row(RING)[(RING + x) * CHANNELS])
            .collect();
        assert_eq!(bytes, [0, 127, 254, 255, 254, 0, 255, 0, 255]);
        // Every byte survives /255 then *255 in f32, as in the reference.
        for byte in 0..=255u8 {
            assert_eq!((UNIT[usize::from(byte)] * 255.0) as u8, byte);
        }
    }

    #[test]
    fn unpacking_keeps_the_ring() {
        let mut crop = crop_of_pattern(5);
        let before = crop.clone();
        unpack_output(&vec![0.5; OUTPUT_LEN], &mut crop);
        let (after, before) = (crop.image(), before.image());
        for y in 0..CROP_SIZE {
            for x in 0..CROP_SIZE {
                let pixel = |image: &BgrImage<&[u8]>| image.row(y)[x * CHANNELS..][..3].to_vec();
                let inner =
                    (RING..CROP_SIZE - RING).contains(&x) && (RING..CROP_SIZE - RING).contains(&y);
                if inner {
                    assert_eq!(pixel(&after), [127; 3], "({x}, {y})");
                } else {
                    assert_eq!(pixel(&after), pixel(&before), "({x}, {y})");
                }
            }
        }
    }

    /// The reference with the network replaced by the unmasked half of its own input, on a box
    /// clipped by the frame border, in a frame with row padding.
    #[test]
    fn round_trip_matches_the_reference() {
        let (width, height, stride) = (300, 200, 300 * CHANNELS + 16);
        let template = pattern(width, height, 7);
        let mut frame = vec![0xA5; stride * height];
        for y in 0..height {
            frame[y * stride..][..width * CHANNELS]
                .copy_from_slice(&template[y * width * CHANNELS..][..width * CHANNELS]);
        }
        let original = frame.clone();
        // crop_box() of landmarks giving [120, 60, 337, 277], clipped to the 300x200 frame.
        let crop_box = CropBox {
            x0: 120,
            y0: 60,
            x1: 300,
            y1: 200,
        };

        let mut compositor = Compositor::new();
        let mut crop = FaceCrop::new();
        let mut input = vec![0.0; 2 * INPUT_LEN];
        compositor.crop(
            &BgrImage::new(&frame[..], width, height, stride),
            crop_box,
            &mut crop,
        );
        pack_input(&crop, &mut input[INPUT_LEN..]);
        unpack_output(&input[INPUT_LEN..][..OUTPUT_LEN], &mut crop);
        compositor.paste(
            &crop,
            &mut BgrImage::new(&mut frame[..], width, height, stride),
            crop_box,
        );

        let expected = fixture("roundtrip_180x140");
        for y in 0..height {
            let row = &frame[y * stride..][..stride];
            let before = &original[y * stride..][..stride];
            if (60..200).contains(&y) {
                let pasted = &row[120 * CHANNELS..width * CHANNELS];
                assert_eq!(
                    pasted,
                    &expected[(y - 60) * 180 * CHANNELS..][..180 * CHANNELS],
                    "row {y}"
                );
                assert_eq!(row[..120 * CHANNELS], before[..120 * CHANNELS], "row {y}");
                assert_eq!(
                    row[width * CHANNELS..],
                    before[width * CHANNELS..],
                    "row {y} padding"
                );
            } else {
                assert_eq!(row, before, "row {y}");
            }
        }
    }
}
