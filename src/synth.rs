//! Batched frame synthesis: template frames with the lower face repainted by the generator, as
//! SyncTalk_2D's `inference_328.py` computes them, for a batch of frames at a time.
//!
//! All buffers are made once for the avatar and the batch size and reused for every batch. The
//! per-frame image work (decode, crop, pack; unpack, paste) is spread over the cores, on both sides
//! of the generator call.

use std::panic;
use std::thread;

use crate::audio::features::FRAME_WINDOW_LEN;
use crate::audio::stream::FeatureStream;
use crate::avatar::{Avatar, JpegDecoder};
use crate::compose::{self, BgrImage, Compositor, FaceCrop, INPUT_LEN, OUTPUT_LEN};
use crate::fault::{self, Site};

/// One frame to render: its index in the stream and the template it is painted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    pub frame: usize,
    pub template: usize,
}

/// The scratch state of one thread of image work.
struct Worker {
    decoder: JpegDecoder,
    compositor: Compositor,
}

/// Everything one batch slot owns.
struct Slot {
    crop: FaceCrop,
    /// The full frame, packed BGR rows of `3 × width` bytes.
    frame: Vec<u8>,
}

pub struct FrameSynth {
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    images: Vec<f32>,
    audio: Vec<f32>,
    output: Vec<f32>,
    /// A template frame decoded for cross-fading.
    template: Vec<u8>,
}

impl FrameSynth {
    pub fn new(avatar: &Avatar, batch: usize) -> Result<Self, String> {
        let batch = batch.max(1);
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batch);
        let frame_len = 3 * avatar.width as usize * avatar.height as usize;
        Ok(Self {
            workers: (0..threads)
                .map(|_| {
                    Ok(Worker {
                        decoder: JpegDecoder::new()?,
                        compositor: Compositor::new(),
                    })
                })
                .collect::<Result<_, String>>()?,
            slots: (0..batch)
                .map(|_| Slot {
                    crop: FaceCrop::new(),
                    frame: vec![0; frame_len],
                })
                .collect(),
            images: vec![0.0; batch * INPUT_LEN],
            audio: vec![0.0; batch * FRAME_WINDOW_LEN],
            output: vec![0.0; batch * OUTPUT_LEN],
            template: vec![0; frame_len],
        })
    }

    pub fn batch_size(&self) -> usize {
        self.slots.len()
    }

    /// The frame rendered into batch slot `slot`: packed BGR, `3 × width` bytes a row.
    pub fn frame(&self, slot: usize) -> &[u8] {
        &self.slots[slot].frame
    }

    /// Decodes the templates of `requests` (at most the batch size) into their slots: the idle
    /// picture, as shown during silence.
    pub fn render_templates(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
    ) -> Result<(), String> {
        fault::check(Site::Task, first_file(avatar, requests));
        self.for_each_slot(requests, |worker, slot, request, _| {
            decode(worker, slot, avatar, request)
        })
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
        generator: impl FnOnce(&[f32], &[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        fault::check(Site::Task, first_file(avatar, requests));
        let n = requests.len();
        let mut images = self.images.chunks_exact_mut(INPUT_LEN);
        let mut audio = self.audio.chunks_exact_mut(FRAME_WINDOW_LEN);
        let tensors: Vec<(&mut [f32], &mut [f32])> = (0..n)
            .map(|_| (images.next().unwrap(), audio.next().unwrap()))
            .collect();
        for_each_slot(
            &mut self.workers,
            &mut self.slots,
            requests,
            tensors,
            |worker, slot, request, (image, audio)| {
                decode(worker, slot, avatar, request)?;
                let frame = frame_image(&slot.frame, avatar);
                let crop_box = avatar.frames[request.template].crop;
                worker.compositor.crop(&frame, crop_box, &mut slot.crop);
                compose::pack_input(&slot.crop, image);
                features.write_frame_window(request.frame, audio);
                Ok(())
            },
        )?;
        generator(
            &self.images[..n * INPUT_LEN],
            &self.audio[..n * FRAME_WINDOW_LEN],
            &mut self.output[..n * OUTPUT_LEN],
        )?;
        let outputs: Vec<&[f32]> = self.output.chunks_exact(OUTPUT_LEN).take(n).collect();
        for_each_slot(
            &mut self.workers,
            &mut self.slots,
            requests,
            outputs,
            |worker, slot, request, output| {
                compose::unpack_output(output, &mut slot.crop);
                let (width, height) = (avatar.width as usize, avatar.height as usize);
                let mut frame = BgrImage::new(&mut slot.frame[..], width, height, 3 * width);
                let crop_box = avatar.frames[request.template].crop;
                worker.compositor.paste(&slot.crop, &mut frame, crop_box);
                Ok::<(), String>(())
            },
        )?;
        Ok(())
    }

    /// Cross-fades rendered slots back towards their template: slot `i` becomes
    /// `weights[i] · rendered + (1 − weights[i]) · template` inside the crop box. Slots with
    /// weight 1 are left as they are.
    pub fn fade_to_template(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
    ) -> Result<(), String> {
        let stride = 3 * avatar.width as usize;
        for ((slot, request), &weight) in self.slots.iter_mut().zip(requests).zip(weights) {
            if weight >= 1.0 {
                continue;
            }
            let template = &avatar.frames[request.template];
            self.workers[0]
                .decoder
                .decode_bgr(
                    &template.jpeg,
                    &mut self.template,
                    (avatar.width, avatar.height),
                    stride,
                )
                .map_err(|err| format!("{}: {err}", template.file))?;
            compose::blend_box(
                &mut slot.frame,
                &self.template,
                stride,
                template.crop,
                weight,
            );
        }
        Ok(())
    }

    fn for_each_slot(
        &mut self,
        requests: &[FrameRequest],
        work: impl Fn(&mut Worker, &mut Slot, &FrameRequest, ()) -> Result<(), String> + Sync,
    ) -> Result<(), String> {
        let nothing = vec![(); requests.len()];
        for_each_slot(&mut self.workers, &mut self.slots, requests, nothing, work)
    }
}

/// Runs `work` on every requested slot with its own `extra`, the slots split between the workers.
fn for_each_slot<T: Send, E: Send>(
    workers: &mut [Worker],
    slots: &mut [Slot],
    requests: &[FrameRequest],
    extra: Vec<T>,
    work: impl Fn(&mut Worker, &mut Slot, &FrameRequest, T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    assert!(
        requests.len() <= slots.len(),
        "more frames than the batch holds"
    );
    let per_worker = requests.len().div_ceil(workers.len()).max(1);
    let mut extra = extra.into_iter();
    thread::scope(|scope| {
        let handles: Vec<_> =
            workers
                .iter_mut()
                .zip(slots[..requests.len()].chunks_mut(per_worker))
                .zip(requests.chunks(per_worker))
                .map(|((worker, slots), requests)| {
                    let extra: Vec<T> = extra.by_ref().take(slots.len()).collect();
                    let work = &work;
                    scope.spawn(move || {
                        slots.iter_mut().zip(requests).zip(extra).try_for_each(
                            |((slot, request), extra)| work(worker, slot, request, extra),
                        )
                    })
                })
                .collect();
        handles
            .into_iter()
            // A worker's panic goes on in this thread with its own message, for the element to
            // report.
            .try_for_each(|handle| handle.join().unwrap_or_else(|p| panic::resume_unwind(p)))
    })
}

fn decode(
    worker: &mut Worker,
    slot: &mut Slot,
    avatar: &Avatar,
    request: &FrameRequest,
) -> Result<(), String> {
    let template = &avatar.frames[request.template];
    fault::check(Site::Synth, &template.file);
    worker
        .decoder
        .decode_bgr(
            &template.jpeg,
            &mut slot.frame,
            (avatar.width, avatar.height),
            3 * avatar.width as usize,
        )
        .map_err(|err| format!("{}: {err}", template.file))
}

/// The template file of a batch's first frame, to name the batch.
fn first_file<'a>(avatar: &'a Avatar, requests: &[FrameRequest]) -> &'a str {
    requests
        .first()
        .map_or("", |request| &avatar.frames[request.template].file)
}

fn frame_image<'a>(frame: &'a [u8], avatar: &Avatar) -> BgrImage<&'a [u8]> {
    let (width, height) = (avatar.width as usize, avatar.height as usize);
    BgrImage::new(frame, width, height, 3 * width)
}
