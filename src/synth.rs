//! Batched frame synthesis: template frames with the lower face repainted by the generator, as
//! SyncTalk_2D's `inference_328.py` computes them, for a batch of frames at a time.
//!
//! All buffers are made once for the avatar and the batch size and reused for every batch; the
//! per-frame image work (decode, crop, pack; unpack, paste) runs on a persistent pool of threads
//! on both sides of the generator call. Decoded templates and their resized crops are kept in a
//! [`TemplateCache`] up to a memory budget, so a template shown again is copied, not decoded.
//! Where the caller reads only a region around the face of a frame (see
//! [`FrameSynth::set_regions`]), only that region of a template is kept, and a frame on a kept
//! template gets only that region.
//!
//! The two sides can also run apart: [`FrameSynth::prepare`] packs a batch into a [`Tensors`]
//! set and [`FrameSynth::compose`] pastes the generator's output back, each batch in one of two
//! banks of slots, so that a caller can prepare and compose other batches while the generator
//! runs on one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::audio::features::FRAME_WINDOW_LEN;
use crate::audio::stream::FeatureStream;
use crate::avatar::{Avatar, CropBox, JpegDecoder};
use crate::compose::{self, BgrImage, Compositor, FaceCrop, INPUT_LEN, OUTPUT_LEN};
use crate::fault::{self, Site};
use crate::pool::{Disjoint, WorkerPool};

/// One frame to render: its index in the stream and the template it is painted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    pub frame: usize,
    pub template: usize,
    /// Whether every pixel of the frame is read; otherwise only the template's region (see
    /// [`FrameSynth::set_regions`]) holds the frame, and the rest is left as it was.
    pub whole: bool,
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

/// A decoded template's region, and its crop resized to 328x328.
struct Decoded {
    region: CropBox,
    /// The region's pixels, packed BGR rows of `3 × region width` bytes.
    pixels: Box<[u8]>,
    crop: FaceCrop,
}

/// Decoded templates, each kept once it has been decoded while the budget allows.
pub struct TemplateCache {
    entries: Vec<OnceLock<Decoded>>,
    /// Per template, the region kept; `None`: the whole frame.
    regions: Vec<Option<CropBox>>,
    frame: CropBox,
    budget: usize,
    used: AtomicUsize,
}

impl TemplateCache {
    /// A cache for `avatar` holding at most `budget` bytes of decoded templates.
    pub fn new(avatar: &Avatar, budget: usize) -> Self {
        TemplateCache {
            entries: (0..avatar.frames.len()).map(|_| OnceLock::new()).collect(),
            regions: vec![None; avatar.frames.len()],
            frame: CropBox {
                x0: 0,
                y0: 0,
                x1: avatar.width,
                y1: avatar.height,
            },
            budget,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Keeps template `template`'s region of `slot`, and its crop, if the budget has room.
    fn keep(&self, template: usize, slot: &Slot) {
        let region = self.regions[template].unwrap_or(self.frame);
        let row = 3 * region.width() as usize;
        let size = row * region.height() as usize + compose::CROP_SIZE.pow(2) * 3;
        let reserved = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + size <= self.budget).then_some(used + size)
            })
            .is_ok();
        if !reserved {
            return;
        }
        let stride = 3 * self.frame.width() as usize;
        let mut pixels = Vec::with_capacity(row * region.height() as usize);
        for y in region.y0 as usize..region.y1 as usize {
            pixels.extend_from_slice(&slot.frame[y * stride + 3 * region.x0 as usize..][..row]);
        }
        let decoded = Decoded {
            region,
            pixels: pixels.into_boxed_slice(),
            crop: slot.crop.clone(),
        };
        if self.entries[template].set(decoded).is_err() {
            self.used.fetch_sub(size, Ordering::Relaxed);
        }
    }
}

/// The work done on one slot of a batch: the thread's scratch state, the slot, its request and
/// its index in the batch.
type SlotWork<'a> =
    dyn Fn(&mut Worker, &mut Slot, &FrameRequest, usize) -> Result<(), String> + Sync + 'a;

/// The pool, the per-thread scratch state and the batch slots.
struct Workers {
    pool: WorkerPool,
    workers: Vec<Mutex<Worker>>,
    /// Two banks of `batch` slots each; bank 1 is only touched (and only takes memory) when
    /// batches overlap.
    slots: Vec<Mutex<Slot>>,
    batch: usize,
}

/// The generator's tensors for one batch: its inputs, images [n, 6, 320, 320] and audio
/// [n, 32, 16, 16], and its output [n, 3, 320, 320], for up to the batch size `n`.
pub struct Tensors {
    pub images: Vec<f32>,
    pub audio: Vec<f32>,
    pub output: Vec<f32>,
}

impl Tensors {
    pub fn new(batch: usize) -> Self {
        Tensors {
            images: vec![0.0; batch * INPUT_LEN],
            audio: vec![0.0; batch * FRAME_WINDOW_LEN],
            output: vec![0.0; batch * OUTPUT_LEN],
        }
    }

    /// The inputs and the output for the first `n` frames.
    pub fn split(&mut self, n: usize) -> (&[f32], &[f32], &mut [f32]) {
        (
            &self.images[..n * INPUT_LEN],
            &self.audio[..n * FRAME_WINDOW_LEN],
            &mut self.output[..n * OUTPUT_LEN],
        )
    }
}

pub struct FrameSynth {
    work: Workers,
    cache: TemplateCache,
    /// A template frame decoded for cross-fading.
    template: Vec<u8>,
}

impl FrameSynth {
    /// Buffers for batches of up to `batch` frames of `avatar`, keeping up to `cache_budget`
    /// bytes of decoded templates.
    pub fn new(avatar: &Avatar, batch: usize, cache_budget: usize) -> Result<Self, String> {
        let batch = batch.max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batch);
        let frame_len = 3 * avatar.width as usize * avatar.height as usize;
        let work = Workers {
            pool: WorkerPool::new(threads)?,
            workers: (0..threads)
                .map(|_| {
                    Ok(Mutex::new(Worker {
                        decoder: JpegDecoder::new()?,
                        compositor: Compositor::new(),
                    }))
                })
                .collect::<Result<_, String>>()?,
            // Zeroed memory is only mapped once written: bank 1 costs nothing until used.
            slots: (0..2 * batch)
                .map(|_| {
                    Mutex::new(Slot {
                        crop: FaceCrop::new(),
                        frame: vec![0; frame_len],
                    })
                })
                .collect(),
            batch,
        };
        Ok(Self {
            work,
            cache: TemplateCache::new(avatar, cache_budget),
            template: vec![0; frame_len],
        })
    }

    pub fn batch_size(&self) -> usize {
        self.work.batch
    }

    /// Keeps no more decoded templates once `budget` bytes are in use; those kept stay.
    pub fn set_cache_budget(&mut self, budget: usize) {
        self.cache.budget = budget;
    }

    /// Bytes of decoded templates kept so far.
    pub fn cached_bytes(&self) -> usize {
        self.cache.used()
    }

    /// Sets, per template, the region around the face that requests not `whole` read (`None`:
    /// the whole frame); templates kept from now on keep only that region. A region must hold
    /// the template's crop box, or the whole frame is kept.
    pub fn set_regions(&mut self, avatar: &Avatar, regions: Vec<Option<CropBox>>) {
        assert_eq!(regions.len(), avatar.frames.len(), "a region per template");
        self.cache.regions = regions
            .into_iter()
            .zip(&avatar.frames)
            .map(|(region, template)| {
                let crop = template.crop;
                region.filter(|r| {
                    r.x0 <= crop.x0 && r.y0 <= crop.y0 && r.x1 >= crop.x1 && r.y1 >= crop.y1
                })
            })
            .collect();
    }

    /// The frame rendered into slot `slot` of `bank`: packed BGR, `3 × width` bytes a row.
    pub fn frame(&mut self, bank: usize, slot: usize) -> &[u8] {
        &self.work.slots[bank * self.work.batch + slot]
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .frame
    }

    /// Decodes the templates of `requests` (at most the batch size) into their slots: the idle
    /// picture, as shown during silence.
    pub fn render_templates(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
    ) -> Result<(), String> {
        fault::check(Site::Task, first_file(avatar, requests));
        let cache = &self.cache;
        self.work
            .for_each_slot(0, requests, &|worker, slot, request, _| {
                template(worker, slot, cache, avatar, request, false)
            })
    }

    /// Renders `requests` (at most the batch size) into bank 0 with one generator call over the
    /// batch in `tensors`, cross-faded with their templates by `weights` (see
    /// [`FrameSynth::compose`]).
    ///
    /// `generator` maps images [n, 6, 320, 320] and audio [n, 32, 16, 16] to [n, 3, 320, 320].
    /// The features must hold every requested frame's window.
    pub fn render_speech<E: From<String>>(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
        features: &FeatureStream,
        tensors: &mut Tensors,
        generator: impl FnOnce(&[f32], &[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.prepare(0, avatar, requests, features, tensors)?;
        let (images, audio, output) = tensors.split(requests.len());
        generator(images, audio, output)?;
        Ok(self.compose(0, avatar, requests, weights, tensors)?)
    }

    /// Puts the templates of `requests` (at most the batch size) into the slots of `bank` and
    /// packs the generator's inputs for them into `tensors`. The features must hold every
    /// requested frame's window.
    pub fn prepare(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        features: &FeatureStream,
        tensors: &mut Tensors,
    ) -> Result<(), String> {
        fault::check(Site::Task, first_file(avatar, requests));
        let images = Disjoint::new(&mut tensors.images);
        let audio = Disjoint::new(&mut tensors.audio);
        let cache = &self.cache;
        self.work
            .for_each_slot(bank, requests, &|worker, slot, request, k| {
                template(worker, slot, cache, avatar, request, true)?;
                // SAFETY: slot k's tensor chunks are written by slot k's task only.
                let (image, audio) =
                    unsafe { (images.chunk(k, INPUT_LEN), audio.chunk(k, FRAME_WINDOW_LEN)) };
                compose::pack_input(&slot.crop, image);
                features.write_frame_window(request.frame, audio);
                Ok(())
            })
    }

    /// Pastes the generator's output in `tensors` into the slots of `bank` that
    /// [`FrameSynth::prepare`] filled for `requests`, then cross-fades each slot `i` back towards
    /// its template: `weights[i] · rendered + (1 − weights[i]) · template` inside the crop box.
    pub fn compose(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
        tensors: &Tensors,
    ) -> Result<(), String> {
        let output = &tensors.output;
        self.work
            .for_each_slot(bank, requests, &|worker, slot, request, k| {
                compose::unpack_output(&output[k * OUTPUT_LEN..][..OUTPUT_LEN], &mut slot.crop);
                let (width, height) = (avatar.width as usize, avatar.height as usize);
                let mut frame = BgrImage::new(&mut slot.frame[..], width, height, 3 * width);
                let crop_box = avatar.frames[request.template].crop;
                worker.compositor.paste(&slot.crop, &mut frame, crop_box);
                Ok(())
            })?;
        self.fade_to_template(bank, avatar, requests, weights)
    }

    /// Cross-fades the slots of `bank` towards their templates by `weights`; slots with weight 1
    /// are left as they are.
    fn fade_to_template(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
    ) -> Result<(), String> {
        let stride = 3 * avatar.width as usize;
        let Self {
            work,
            cache,
            template: scratch,
            ..
        } = self;
        let Workers {
            workers,
            slots,
            batch,
            ..
        } = work;
        let worker = workers[0].get_mut().unwrap_or_else(PoisonError::into_inner);
        let bank = &mut slots[bank * *batch..][..*batch];
        for ((slot, request), &weight) in bank.iter_mut().zip(requests).zip(weights) {
            if weight >= 1.0 {
                continue;
            }
            let slot = slot.get_mut().unwrap_or_else(PoisonError::into_inner);
            let template = &avatar.frames[request.template];
            let pixels: &[u8] = match cache.entries[request.template].get() {
                Some(decoded) => {
                    paste_region(decoded, scratch, stride);
                    scratch
                }
                None => {
                    worker
                        .decoder
                        .decode_bgr(
                            &template.jpeg,
                            scratch,
                            (avatar.width, avatar.height),
                            stride,
                        )
                        .map_err(|err| format!("{}: {err}", template.file))?;
                    scratch
                }
            };
            compose::blend_box(&mut slot.frame, pixels, stride, template.crop, weight);
        }
        Ok(())
    }
}

impl Workers {
    /// Runs `work` on every requested slot of `bank` (with its index), the slots split between
    /// the pool's threads; the first error by slot order is returned.
    fn for_each_slot(
        &self,
        bank: usize,
        requests: &[FrameRequest],
        work: &SlotWork<'_>,
    ) -> Result<(), String> {
        assert!(
            requests.len() <= self.batch,
            "more frames than the batch holds"
        );
        let slots = &self.slots[bank * self.batch..][..self.batch];
        let threads = self.workers.len().min(requests.len());
        let first_error: Mutex<Option<(usize, String)>> = Mutex::new(None);
        self.pool.run(threads, &|task| {
            let mut worker = self.workers[task]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for k in (task..requests.len()).step_by(threads) {
                let mut slot = slots[k].lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(err) = work(&mut worker, &mut slot, &requests[k], k) {
                    let mut first = first_error.lock().unwrap_or_else(PoisonError::into_inner);
                    if first.as_ref().is_none_or(|(at, _)| k < *at) {
                        *first = Some((k, err));
                    }
                }
            }
        });
        match first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((_, err)) => Err(err),
            None => Ok(()),
        }
    }
}

/// Puts the template of `request` into `slot` (its region only, when the request is not whole
/// and the cache has it): from the cache, or decoded, its crop resized, and kept in the cache if
/// it has room. The crop goes into the slot as well when `with_crop`.
fn template(
    worker: &mut Worker,
    slot: &mut Slot,
    cache: &TemplateCache,
    avatar: &Avatar,
    request: &FrameRequest,
    with_crop: bool,
) -> Result<(), String> {
    let index = request.template;
    let template = &avatar.frames[index];
    fault::check(Site::Synth, &template.file);
    let (width, height) = (avatar.width as usize, avatar.height as usize);
    let kept = cache.entries[index].get();
    if let Some(decoded) = kept
        && (!request.whole || decoded.region == cache.frame)
    {
        paste_region(decoded, &mut slot.frame, 3 * width);
        if with_crop {
            slot.crop.copy_from(&decoded.crop);
        }
        return Ok(());
    }
    worker
        .decoder
        .decode_bgr(
            &template.jpeg,
            &mut slot.frame,
            (avatar.width, avatar.height),
            3 * width,
        )
        .map_err(|err| format!("{}: {err}", template.file))?;
    if let Some(decoded) = kept {
        slot.crop.copy_from(&decoded.crop);
        return Ok(());
    }
    let frame = BgrImage::new(&slot.frame[..], width, height, 3 * width);
    worker
        .compositor
        .crop(&frame, template.crop, &mut slot.crop);
    cache.keep(index, slot);
    Ok(())
}

/// Copies a kept region back into its place in `frame` (rows of `stride` bytes).
fn paste_region(decoded: &Decoded, frame: &mut [u8], stride: usize) {
    let region = decoded.region;
    let row = 3 * region.width() as usize;
    for (y, pixels) in (region.y0 as usize..region.y1 as usize).zip(decoded.pixels.chunks(row)) {
        frame[y * stride + 3 * region.x0 as usize..][..row].copy_from_slice(pixels);
    }
}

/// The template file of a batch's first frame, to name the batch.
fn first_file<'a>(avatar: &'a Avatar, requests: &[FrameRequest]) -> &'a str {
    requests
        .first()
        .map_or("", |request| &avatar.frames[request.template].file)
}
