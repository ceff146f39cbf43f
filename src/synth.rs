//! Batched frame synthesis: template frames with the lower face repainted by the generator, as
//! SyncTalk_2D's `inference_328.py` computes them, for a batch of frames at a time.
//!
//! All buffers are made once for the avatar and the batch size and reused for every batch.

use crate::audio::features::FRAME_WINDOW_LEN;
use crate::audio::stream::FeatureStream;
use crate::avatar::{Avatar, JpegDecoder};
use crate::compose::{self, BgrImage, Compositor, FaceCrop, INPUT_LEN, OUTPUT_LEN};

/// One frame to render: its index in the stream and the template it is painted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    pub frame: usize,
    pub template: usize,
}

pub struct FrameSynth {
    batch: usize,
    decoder: JpegDecoder,
    compositor: Compositor,
    crops: Vec<FaceCrop>,
    /// Full frames, packed BGR rows of `3 × width` bytes, one per batch slot.
    frames: Vec<Vec<u8>>,
    images: Vec<f32>,
    audio: Vec<f32>,
    output: Vec<f32>,
    width: usize,
    height: usize,
}

impl FrameSynth {
    pub fn new(avatar: &Avatar, batch: usize) -> Result<Self, String> {
        let batch = batch.max(1);
        let (width, height) = (avatar.width as usize, avatar.height as usize);
        Ok(Self {
            batch,
            decoder: JpegDecoder::new()?,
            compositor: Compositor::new(),
            crops: (0..batch).map(|_| FaceCrop::new()).collect(),
            frames: vec![vec![0; 3 * width * height]; batch],
            images: vec![0.0; batch * INPUT_LEN],
            audio: vec![0.0; batch * FRAME_WINDOW_LEN],
            output: vec![0.0; batch * OUTPUT_LEN],
            width,
            height,
        })
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The frame rendered into batch slot `slot`: packed BGR, `3 × width` bytes a row.
    pub fn frame(&self, slot: usize) -> &[u8] {
        &self.frames[slot]
    }

    /// Decodes the templates of `requests` (at most the batch size) into their slots: the idle
    /// picture, as shown during silence.
    pub fn render_templates(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
    ) -> Result<(), String> {
        assert!(
            requests.len() <= self.batch,
            "more frames than the batch holds"
        );
        let size = (avatar.width, avatar.height);
        for (request, frame) in requests.iter().zip(&mut self.frames) {
            let template = &avatar.frames[request.template];
            self.decoder
                .decode_bgr(&template.jpeg, frame, size, 3 * self.width)
                .map_err(|err| format!("{}: {err}", template.file))?;
        }
        Ok(())
    }

    /// Renders `requests` (at most the batch size) with one generator call over the batch.
    ///
    /// `generator` maps images [n, 6, 320, 320] and audio [n, 32, 16, 16] to [n, 3, 320, 320].
    /// The features must hold every requested frame's window.
    pub fn render_speech<E: From<String>>(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
        features: &FeatureStream,
        mut generator: impl FnMut(&[f32], &[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.render_templates(avatar, requests)?;
        let n = requests.len();
        let stride = 3 * self.width;
        for (slot, request) in requests.iter().enumerate() {
            let crop_box = avatar.frames[request.template].crop;
            let frame = BgrImage::new(&self.frames[slot][..], self.width, self.height, stride);
            self.compositor
                .crop(&frame, crop_box, &mut self.crops[slot]);
            compose::pack_input(
                &self.crops[slot],
                &mut self.images[slot * INPUT_LEN..(slot + 1) * INPUT_LEN],
            );
            features.write_frame_window(
                request.frame,
                &mut self.audio[slot * FRAME_WINDOW_LEN..(slot + 1) * FRAME_WINDOW_LEN],
            );
        }
        generator(
            &self.images[..n * INPUT_LEN],
            &self.audio[..n * FRAME_WINDOW_LEN],
            &mut self.output[..n * OUTPUT_LEN],
        )?;
        for (slot, request) in requests.iter().enumerate() {
            let crop_box = avatar.frames[request.template].crop;
            compose::unpack_output(
                &self.output[slot * OUTPUT_LEN..(slot + 1) * OUTPUT_LEN],
                &mut self.crops[slot],
            );
            let mut frame =
                BgrImage::new(&mut self.frames[slot][..], self.width, self.height, stride);
            self.compositor
                .paste(&self.crops[slot], &mut frame, crop_box);
        }
        Ok(())
    }
}
