//! A packed BGR (3 bytes per pixel) image over a byte buffer with a row stride.

use crate::avatar::CropBox;

/// Bytes per pixel of packed BGR.
pub const CHANNELS: usize = 3;

/// A packed BGR image in someone else's buffer: `B` is `&[u8]` to read, `&mut [u8]` to write.
///
/// Row `y` starts at byte `y * stride`; bytes past `width * 3` in a row are padding and are never
/// read or written, so a video frame with an aligned stride can be used in place.
#[derive(Clone, Copy, Debug)]
pub struct BgrImage<B> {
    data: B,
    width: usize,
    height: usize,
    stride: usize,
}

impl<B: AsRef<[u8]>> BgrImage<B> {
    /// # Panics
    ///
    /// If the image is empty, the stride is shorter than a row, or `data` is too short for
    /// `height` rows (the last one needs no padding).
    pub fn new(data: B, width: usize, height: usize, stride: usize) -> Self {
        assert!(width > 0 && height > 0, "empty {width}x{height} image");
        assert!(
            stride >= width * CHANNELS,
            "stride {stride} is shorter than a {width}-pixel BGR row"
        );
        let needed = (height - 1) * stride + width * CHANNELS;
        assert!(
            data.as_ref().len() >= needed,
            "a {width}x{height} BGR image with stride {stride} needs {needed} bytes, found {}",
            data.as_ref().len()
        );
        BgrImage {
            data,
            width,
            height,
            stride,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The `width * 3` bytes of row `y`.
    pub fn row(&self, y: usize) -> &[u8] {
        &self.data.as_ref()[y * self.stride..][..self.width * CHANNELS]
    }

    /// The rectangle `crop` of this image, sharing its buffer (the numpy slice
    /// `img[y0:y1, x0:x1]`).
    ///
    /// # Panics
    ///
    /// If `crop` is empty or not inside the image.
    pub fn region(&self, crop: CropBox) -> BgrImage<&[u8]> {
        let start = self.region_start(crop);
        BgrImage {
            data: &self.data.as_ref()[start..],
            width: crop.width() as usize,
            height: crop.height() as usize,
            stride: self.stride,
        }
    }

    fn region_start(&self, crop: CropBox) -> usize {
        assert!(
            crop.x0 < crop.x1
                && crop.y0 < crop.y1
                && crop.x1 as usize <= self.width
                && crop.y1 as usize <= self.height,
            "crop box {crop:?} is empty or not inside the {}x{} image",
            self.width,
            self.height
        );
        crop.y0 as usize * self.stride + crop.x0 as usize * CHANNELS
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> BgrImage<B> {
    pub fn row_mut(&mut self, y: usize) -> &mut [u8] {
        &mut self.data.as_mut()[y * self.stride..][..self.width * CHANNELS]
    }

    /// Like [`BgrImage::region`], for writing.
    pub fn region_mut(&mut self, crop: CropBox) -> BgrImage<&mut [u8]> {
        let start = self.region_start(crop);
        BgrImage {
            data: &mut self.data.as_mut()[start..],
            width: crop.width() as usize,
            height: crop.height() as usize,
            stride: self.stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_the_stride() {
        let (width, height, stride) = (5, 4, 17);
        let mut data: Vec<u8> = (0..stride * height).map(|i| i as u8).collect();
        let crop = CropBox {
            x0: 1,
            y0: 2,
            x1: 4,
            y1: 4,
        };
        let image = BgrImage::new(&data[..], width, height, stride);
        let region = image.region(crop);
        assert_eq!((region.width(), region.height()), (3, 2));
        assert_eq!(region.row(1), &data[3 * stride + 3..][..9]);

        let mut image = BgrImage::new(&mut data[..], width, height, stride);
        image.region_mut(crop).row_mut(0).fill(0);
        assert!(data[2 * stride + 3..][..9].iter().all(|&b| b == 0));
        assert_eq!(data[2 * stride + 2], (2 * stride + 2) as u8);
        assert_eq!(data[2 * stride + 12], (2 * stride + 12) as u8);
    }

    #[test]
    fn the_last_row_needs_no_padding() {
        BgrImage::new(&[0u8; 2 * 8 + 6][..], 2, 3, 8);
    }

    #[test]
    #[should_panic(expected = "needs 22 bytes")]
    fn a_short_buffer_is_refused() {
        BgrImage::new(&[0u8; 21][..], 2, 3, 8);
    }

    #[test]
    #[should_panic(expected = "not inside")]
    fn a_box_outside_is_refused() {
        let data = [0u8; 4 * 4 * 3];
        let crop = CropBox {
            x0: 2,
            y0: 0,
            x1: 5,
            y1: 2,
        };
        BgrImage::new(&data[..], 4, 4, 12).region(crop);
    }
}
