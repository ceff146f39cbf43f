//! JPEG decoding with libjpeg-turbo's defaults (accurate integer IDCT, fancy upsampling): the
//! decoder OpenCV's `cv2.imread` uses, so template pixels match the reference exactly.

/// A reusable decoder into packed BGR, the pixel order the SyncTalk_2D models were trained on.
pub struct JpegDecoder {
    inner: turbojpeg::Decompressor,
}

impl JpegDecoder {
    pub fn new() -> Result<Self, String> {
        turbojpeg::Decompressor::new()
            .map(|inner| Self { inner })
            .map_err(|err| format!("cannot create a JPEG decoder: {err}"))
    }

    /// Width and height from the JPEG header.
    pub fn dimensions(&mut self, jpeg: &[u8]) -> Result<(u32, u32), String> {
        let header = self.inner.read_header(jpeg).map_err(describe)?;
        Ok((header.width as u32, header.height as u32))
    }

    /// Decodes an image of exactly `width` × `height` into `bgr` (rows of `stride` bytes).
    ///
    /// Warnings such as truncated or corrupt data are errors: a damaged template must not reach
    /// the output unnoticed.
    pub fn decode_bgr(
        &mut self,
        jpeg: &[u8],
        bgr: &mut [u8],
        (width, height): (u32, u32),
        stride: usize,
    ) -> Result<(), String> {
        let found = self.dimensions(jpeg)?;
        if found != (width, height) {
            return Err(format!(
                "is {}x{}, but the avatar's frames are {width}x{height}",
                found.0, found.1
            ));
        }
        let needed = stride * (height as usize - 1) + 3 * width as usize;
        assert!(
            stride >= 3 * width as usize && bgr.len() >= needed,
            "BGR buffer too small"
        );
        let image = turbojpeg::Image {
            pixels: bgr,
            width: width as usize,
            pitch: stride,
            height: height as usize,
            format: turbojpeg::PixelFormat::BGR,
        };
        self.inner.decompress(jpeg, image).map_err(describe)
    }
}

fn describe(err: turbojpeg::Error) -> String {
    format!("not a valid JPEG image ({err})")
}
