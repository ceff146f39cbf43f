//! Batched frame synthesis: template frames with the lower face repainted by the generator, as
//! SyncTalk_2D's `inference_328.py` computes them, for a batch of frames at a time.
//!
//! All buffers are made once for the avatar and the batch size and reused for every batch; the
//! per-frame image work (decode, crop, pack; unpack, paste) runs on a persistent pool of threads
//! on both sides of the generator call. Decoded templates and their resized crops are kept in a
//! [`TemplateCache`] up to a memory budget, so a template shown again is copied, not decoded.
//! Where the caller reads only a region around the face of a frame (see
//! [`FrameSynth::set_cache`]), only that region of a template is kept, and a frame on a kept
//! template gets only that region.
//!
//! Each frame shows a [`Face`] in its crop box: its own generator output, a neighbour's pasted in
//! its box, its template's silent face (inferred once from the silent window and kept as the
//! box's pixels, up to a budget), or its template as it is.
//!
//! The two sides can also run apart: [`FrameSynth::prepare`] packs a batch into a [`Tensors`]
//! set and [`FrameSynth::compose`] pastes the generator's output back, each batch in one of two
//! banks of slots, so that a caller can prepare and compose other batches while the generator
//! runs on one.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::audio::features::FRAME_WINDOW_LEN;
use crate::audio::stream::FeatureStream;
use crate::avatar::{Avatar, CropBox, JpegDecoder, Template};
use crate::compose::{self, BgrImage, Compositor, FaceCrop, INPUT_LEN, OUTPUT_LEN};
use crate::fault::{self, Site};
use crate::workers::{Disjoint, WorkerPool};

/// Why frames could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthError {
    /// A template frame would not decode.
    Decode { file: String, message: String },
    /// The threads or decoders of the image work could not be made.
    Setup(String),
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynthError::Decode { file, message } => write!(f, "{file}: {message}"),
            SynthError::Setup(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SynthError {}

/// One frame to render: its index in the stream, the template it is painted on and the face
/// painted into the template's crop box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    pub frame: usize,
    pub template: usize,
    /// Whether every pixel of the frame is read; otherwise only the template's region (see
    /// [`FrameSynth::set_cache`]) holds the frame, and the rest is left as it was.
    pub whole: bool,
    pub face: Face,
}

/// What a frame shows inside its template's crop box. `row` is a row of the generator's batch:
/// the rows inferred are numbered from 0, in the order of the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// The template's own pixels.
    Template,
    /// The generator's output for this frame and its audio window, inferred as row `row`.
    Speech { row: usize },
    /// The generator's output for this frame's template and the silent audio window (see
    /// [`FrameSynth::set_silence`]), inferred as row `row` and kept as the template's
    /// silent face.
    NewSilent { row: usize },
    /// The silent face kept for this frame's template.
    Silent,
    /// Row `row`, inferred for a nearby frame, pasted into this frame's own crop box.
    Held { row: usize },
}

impl Face {
    /// The row inferred for this frame, if it is.
    pub fn inferred_row(self) -> Option<usize> {
        match self {
            Face::Speech { row } | Face::NewSilent { row } => Some(row),
            _ => None,
        }
    }

    /// The row of the generator's output this frame shows, if any.
    fn output_row(self) -> Option<usize> {
        match self {
            Face::Speech { row } | Face::NewSilent { row } | Face::Held { row } => Some(row),
            Face::Template | Face::Silent => None,
        }
    }
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

/// One index's place in a [`KeptBytes`].
#[derive(Default)]
struct Entry {
    /// Taken by the first thread to keep the index, so that it is kept once.
    claimed: AtomicBool,
    /// Where its bytes start in the store, once written.
    at: OnceLock<usize>,
}

/// Bytes that threads write at ranges they each reserved, and read once the range is published.
struct Store(Box<[UnsafeCell<u8>]>);

// SAFETY: a range is written by the one thread that reserved it, and read only after it is
// published through a `OnceLock`, which orders the writes before the reads.
unsafe impl Sync for Store {}

impl Store {
    /// `len` zeroed bytes; of a large store, the system maps the pages as they are first written.
    fn new(len: usize) -> Self {
        let bytes = vec![0u8; len].into_boxed_slice();
        // SAFETY: `UnsafeCell<u8>` has the layout of `u8`.
        Store(unsafe { Box::from_raw(Box::into_raw(bytes) as *mut [UnsafeCell<u8>]) })
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// # Safety
    ///
    /// The range must not be read or written elsewhere while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range_mut(&self, at: usize, len: usize) -> &mut [u8] {
        let cells = &self.0[at..][..len];
        // SAFETY: in bounds (sliced above); exclusive (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), len) }
    }

    /// # Safety
    ///
    /// The range must not be written while the slice lives.
    unsafe fn range(&self, at: usize, len: usize) -> &[u8] {
        let cells = &self.0[at..][..len];
        // SAFETY: in bounds (sliced above); not written (the caller's promise).
        unsafe { std::slice::from_raw_parts(UnsafeCell::raw_get(cells.as_ptr()), len) }
    }
}

/// Bytes kept per index (a template), each written once, by the first thread to keep it, while
/// the budget has room, and never dropped. The caller gives each index's length, the same every
/// time.
///
/// The memory for the budget (or for every index, if less) is taken at once, and its pages are
/// mapped as they are first written: keeping never allocates.
struct KeptBytes {
    entries: Vec<Entry>,
    store: Store,
    used: AtomicUsize,
}

impl KeptBytes {
    /// Room for `count` indices, at most `capacity` bytes.
    fn new(count: usize, capacity: usize) -> Self {
        KeptBytes {
            entries: (0..count).map(|_| Entry::default()).collect(),
            store: Store::new(capacity),
            used: AtomicUsize::new(0),
        }
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn contains(&self, index: usize) -> bool {
        self.entries[index].at.get().is_some()
    }

    /// The `len` bytes kept for `index`, if they are.
    fn get(&self, index: usize, len: usize) -> Option<&[u8]> {
        let at = *self.entries[index].at.get()?;
        // SAFETY: a published range is never written again.
        Some(unsafe { self.store.range(at, len) })
    }

    /// Keeps `len` bytes for `index`, written by `fill`, unless it is kept already or the
    /// budget has no room.
    fn keep(&self, index: usize, len: usize, fill: impl FnOnce(&mut [u8])) {
        let entry = &self.entries[index];
        if entry.claimed.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(at) = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + len <= self.store.len()).then_some(used + len)
            })
        else {
            entry.claimed.store(false, Ordering::Relaxed);
            return;
        };
        // SAFETY: the range was reserved above, by this thread alone, and is not yet published.
        fill(unsafe { self.store.range_mut(at, len) });
        assert!(entry.at.set(at).is_ok(), "an index is kept once");
    }
}

/// A kept template: its region's pixels, packed BGR rows of `3 × region width` bytes, and its
/// crop resized to 328x328 ([`FaceCrop::bytes`]).
struct Decoded<'a> {
    region: CropBox,
    pixels: &'a [u8],
    crop: &'a [u8],
}

/// Decoded templates, each kept once it has been decoded while the budget allows.
pub struct TemplateCache {
    kept: KeptBytes,
    /// Per template, the region kept; `None`: the whole frame.
    regions: Vec<Option<CropBox>>,
    frame: CropBox,
    budget: usize,
}

impl TemplateCache {
    /// A cache for `avatar` holding at most `budget` bytes of decoded templates, keeping the
    /// whole frame of templates whose region is `None`; each region holds its template's crop
    /// box (see [`holding_crops`]).
    fn new(avatar: &Avatar, budget: usize, regions: Vec<Option<CropBox>>) -> Self {
        let frame = CropBox::whole(avatar.width, avatar.height);
        let all: usize = regions
            .iter()
            .map(|region| kept_size(region.unwrap_or(frame)))
            .sum();
        TemplateCache {
            kept: KeptBytes::new(avatar.frames.len(), budget.min(all)),
            regions,
            frame,
            budget,
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.kept.used()
    }

    fn region(&self, template: usize) -> CropBox {
        self.regions[template].unwrap_or(self.frame)
    }

    /// Template `template`, if it is kept.
    fn get(&self, template: usize) -> Option<Decoded<'_>> {
        let region = self.region(template);
        let bytes = self.kept.get(template, kept_size(region))?;
        let (pixels, crop) = bytes.split_at(region_len(region));
        Some(Decoded {
            region,
            pixels,
            crop,
        })
    }

    /// Keeps template `template`'s region of `slot`, and its crop, if the budget has room.
    fn keep(&self, template: usize, slot: &Slot) {
        let region = self.region(template);
        let stride = 3 * self.frame.width() as usize;
        self.kept.keep(template, kept_size(region), |bytes| {
            let (pixels, crop) = bytes.split_at_mut(region_len(region));
            copy_region(&slot.frame, stride, region, pixels);
            crop.copy_from_slice(slot.crop.bytes());
        });
    }
}

/// Each template's silent face, as made ([`Face::NewSilent`]) while the budget allows: the
/// pixels of its crop box, packed BGR rows.
struct SilentFaces {
    kept: KeptBytes,
}

impl SilentFaces {
    fn new(avatar: &Avatar, budget: usize) -> Self {
        let all: usize = avatar.frames.iter().map(|t| region_len(t.crop)).sum();
        SilentFaces {
            kept: KeptBytes::new(avatar.frames.len(), budget.min(all)),
        }
    }
}

/// Copies `region` of `frame` (rows of `stride` bytes) into `out`, packed.
fn copy_region(frame: &[u8], stride: usize, region: CropBox, out: &mut [u8]) {
    let row = 3 * region.width() as usize;
    for (y, pixels) in (region.y0 as usize..region.y1 as usize).zip(out.chunks_mut(row)) {
        pixels.copy_from_slice(&frame[y * stride + 3 * region.x0 as usize..][..row]);
    }
}

/// Copies packed `pixels` into `region` of `frame` (rows of `stride` bytes).
fn paste_pixels(pixels: &[u8], region: CropBox, frame: &mut [u8], stride: usize) {
    let row = 3 * region.width() as usize;
    for (y, pixels) in (region.y0 as usize..region.y1 as usize).zip(pixels.chunks(row)) {
        frame[y * stride + 3 * region.x0 as usize..][..row].copy_from_slice(pixels);
    }
}
/// `regions`, less those that do not hold their template's crop box.
fn holding_crops(avatar: &Avatar, regions: Vec<Option<CropBox>>) -> Vec<Option<CropBox>> {
    assert_eq!(regions.len(), avatar.frames.len(), "a region per template");
    regions
        .into_iter()
        .zip(&avatar.frames)
        .map(|(region, template)| {
            let crop = template.crop;
            region.filter(|r| {
                r.x0 <= crop.x0 && r.y0 <= crop.y0 && r.x1 >= crop.x1 && r.y1 >= crop.y1
            })
        })
        .collect()
}

/// Bytes of a region's pixels.
fn region_len(region: CropBox) -> usize {
    3 * region.width() as usize * region.height() as usize
}

/// Bytes a template kept with `region` takes.
fn kept_size(region: CropBox) -> usize {
    region_len(region) + FaceCrop::LEN
}

/// The work done on one slot of a batch: the thread's scratch state, the slot, its request and
/// its index in the batch.
type SlotWork<'a> =
    dyn Fn(&mut Worker, &mut Slot, &FrameRequest, usize) -> Result<(), SynthError> + Sync + 'a;

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
    silent: SilentFaces,
    /// The generator's audio input for silence ([`Face::NewSilent`]); empty until set.
    silent_window: Vec<f32>,
    /// A template frame decoded for cross-fading.
    template: Vec<u8>,
}

impl FrameSynth {
    /// Buffers for batches of up to `batch` frames of `avatar`, keeping up to `cache_budget`
    /// bytes of decoded templates.
    pub fn new(avatar: &Avatar, batch: usize, cache_budget: usize) -> Result<Self, SynthError> {
        let batch = batch.max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batch);
        let frame_len = 3 * avatar.width as usize * avatar.height as usize;
        let work = Workers {
            pool: WorkerPool::new(threads).map_err(|err| {
                SynthError::Setup(format!("cannot start an image worker thread: {err}"))
            })?,
            workers: (0..threads)
                .map(|_| {
                    Ok(Mutex::new(Worker {
                        decoder: JpegDecoder::new().map_err(SynthError::Setup)?,
                        compositor: Compositor::new(),
                    }))
                })
                .collect::<Result<_, SynthError>>()?,
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
            cache: TemplateCache::new(avatar, cache_budget, vec![None; avatar.frames.len()]),
            silent: SilentFaces::new(avatar, 0),
            silent_window: Vec::new(),
            template: vec![0; frame_len],
        })
    }

    pub fn batch_size(&self) -> usize {
        self.work.batch
    }

    /// Bytes of decoded templates kept so far.
    pub fn cached_bytes(&self) -> usize {
        self.cache.used()
    }

    /// Keeps up to `budget` bytes of decoded templates from now on, of each template only the
    /// region around the face that requests not `whole` read (`None`: the whole frame). A region
    /// must hold the template's crop box, or the whole frame is kept. The templates kept so far
    /// are dropped, unless the budget and regions are those already set.
    pub fn set_cache(&mut self, avatar: &Avatar, budget: usize, regions: Vec<Option<CropBox>>) {
        let regions = holding_crops(avatar, regions);
        if (budget, &regions) != (self.cache.budget, &self.cache.regions) {
            self.cache = TemplateCache::new(avatar, budget, regions);
        }
    }

    /// Sets the generator's audio input for silence (the [`FRAME_WINDOW_LEN`] floats of a
    /// window of digital silence) and keeps up to `budget` bytes of silent faces, dropping
    /// those kept so far.
    pub fn set_silence(&mut self, avatar: &Avatar, window: &[f32], budget: usize) {
        assert_eq!(window.len(), FRAME_WINDOW_LEN, "one frame's audio window");
        self.silent_window.clear();
        self.silent_window.extend_from_slice(window);
        self.silent = SilentFaces::new(avatar, budget);
    }

    /// Whether template `template`'s silent face is kept.
    pub fn has_silent_face(&self, template: usize) -> bool {
        self.silent.kept.contains(template)
    }

    /// Bytes of silent faces kept so far.
    pub fn silent_bytes(&self) -> usize {
        self.silent.kept.used()
    }

    /// The frame rendered into slot `slot` of `bank`: packed BGR, `3 × width` bytes a row.
    pub fn frame(&mut self, bank: usize, slot: usize) -> &[u8] {
        &self.work.slots[bank * self.work.batch + slot]
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .frame
    }

    /// Decodes the templates of `requests` (at most the batch size) into their slots: the
    /// picture without a face painted in.
    pub fn render_templates(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
    ) -> Result<(), SynthError> {
        fault::check(Site::Task, first_file(avatar, requests));
        let cache = &self.cache;
        self.work
            .for_each_slot(0, requests, &|worker, slot, request, _| {
                template(worker, slot, cache, avatar, request, false)
            })
    }

    /// Renders `requests` (at most the batch size) into bank 0 with one generator call over the
    /// rows they infer, packed into `tensors`, cross-faded with their templates by `weights` (see
    /// [`FrameSynth::compose`]). Frames held from row 0 when none are inferred take it from
    /// `held`, the output of an earlier call.
    ///
    /// `generator` maps images [n, 6, 320, 320] and audio [n, 32, 16, 16] to [n, 3, 320, 320].
    /// The features must hold every window of a frame with a [`Face::Speech`].
    #[allow(clippy::too_many_arguments)]
    pub fn render<E: From<SynthError>>(
        &mut self,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
        features: &FeatureStream,
        tensors: &mut Tensors,
        held: &[f32],
        generator: impl FnOnce(&[f32], &[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.prepare(0, avatar, requests, features, tensors)?;
        let rows = inferred_rows(requests);
        let output = if rows > 0 {
            let (images, audio, output) = tensors.split(rows);
            generator(images, audio, output)?;
            &tensors.output[..]
        } else {
            held
        };
        Ok(self.compose(0, avatar, requests, weights, output)?)
    }

    /// Puts the templates of `requests` (at most the batch size) into the slots of `bank` and
    /// packs the generator's inputs for the rows they infer into `tensors`. The features must
    /// hold every window of a frame with a [`Face::Speech`].
    pub fn prepare(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        features: &FeatureStream,
        tensors: &mut Tensors,
    ) -> Result<(), SynthError> {
        fault::check(Site::Task, first_file(avatar, requests));
        let images = Disjoint::new(&mut tensors.images);
        let audio = Disjoint::new(&mut tensors.audio);
        let cache = &self.cache;
        let silent_window = &self.silent_window[..];
        self.work
            .for_each_slot(bank, requests, &|worker, slot, request, _| {
                let face = request.face;
                template(
                    worker,
                    slot,
                    cache,
                    avatar,
                    request,
                    face.output_row().is_some(),
                )?;
                let Some(row) = face.inferred_row() else {
                    return Ok(());
                };
                // SAFETY: each row is inferred for one frame, whose task alone writes it.
                let (image, audio) = unsafe {
                    (
                        images.chunk(row, INPUT_LEN),
                        audio.chunk(row, FRAME_WINDOW_LEN),
                    )
                };
                compose::pack_input(&slot.crop, image);
                match face {
                    Face::NewSilent { .. } => audio.copy_from_slice(silent_window),
                    _ => features.write_frame_window(request.frame, audio),
                }
                Ok(())
            })
    }

    /// Paints each face into the slots of `bank` that [`FrameSynth::prepare`] filled for
    /// `requests`: rows of the generator's `output` [n, 3, 320, 320] pasted into the frame's crop
    /// box, or a silent face kept. A new silent face is kept as well, if the budget has room.
    /// Then each slot `i` is cross-faded back towards its template:
    /// `weights[i] · face + (1 − weights[i]) · template` inside the crop box.
    pub fn compose(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
        output: &[f32],
    ) -> Result<(), SynthError> {
        let silent = &self.silent;
        self.work
            .for_each_slot(bank, requests, &|worker, slot, request, _| {
                let (width, height) = (avatar.width as usize, avatar.height as usize);
                let crop_box = avatar.frames[request.template].crop;
                let face = request.face;
                if let Some(row) = face.output_row() {
                    compose::unpack_output(
                        &output[row * OUTPUT_LEN..][..OUTPUT_LEN],
                        &mut slot.crop,
                    );
                    let mut frame = BgrImage::new(&mut slot.frame[..], width, height, 3 * width);
                    worker.compositor.paste(&slot.crop, &mut frame, crop_box);
                }
                let len = region_len(crop_box);
                match face {
                    Face::NewSilent { .. } => silent.kept.keep(request.template, len, |bytes| {
                        copy_region(&slot.frame, 3 * width, crop_box, bytes)
                    }),
                    Face::Silent => {
                        let pixels = silent
                            .kept
                            .get(request.template, len)
                            .expect("a silent face is only asked for once kept");
                        paste_pixels(pixels, crop_box, &mut slot.frame, 3 * width);
                    }
                    _ => {}
                }
                Ok(())
            })?;
        self.fade_to_template(bank, avatar, requests, weights)
    }

    /// Cross-fades the slots of `bank` towards their templates by `weights`; slots with weight 1,
    /// and those that show their template, are left as they are.
    fn fade_to_template(
        &mut self,
        bank: usize,
        avatar: &Avatar,
        requests: &[FrameRequest],
        weights: &[f32],
    ) -> Result<(), SynthError> {
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
            if weight >= 1.0 || request.face == Face::Template {
                continue;
            }
            let slot = slot.get_mut().unwrap_or_else(PoisonError::into_inner);
            let template = &avatar.frames[request.template];
            match cache.get(request.template) {
                Some(decoded) => paste_pixels(decoded.pixels, decoded.region, scratch, stride),
                None => worker
                    .decoder
                    .decode_bgr(
                        &template.jpeg,
                        scratch,
                        (avatar.width, avatar.height),
                        stride,
                    )
                    .map_err(|message| decode_error(template, message))?,
            }
            compose::blend_box(&mut slot.frame, scratch, stride, template.crop, weight);
        }
        Ok(())
    }
}

/// How many rows `requests` infer.
pub fn inferred_rows(requests: &[FrameRequest]) -> usize {
    requests
        .iter()
        .filter(|request| request.face.inferred_row().is_some())
        .count()
}

impl Workers {
    /// Runs `work` on every requested slot of `bank` (with its index), the slots split between
    /// the pool's threads; the first error by slot order is returned.
    fn for_each_slot(
        &self,
        bank: usize,
        requests: &[FrameRequest],
        work: &SlotWork<'_>,
    ) -> Result<(), SynthError> {
        assert!(
            requests.len() <= self.batch,
            "more frames than the batch holds"
        );
        let slots = &self.slots[bank * self.batch..][..self.batch];
        let threads = self.workers.len().min(requests.len());
        let first_error: Mutex<Option<(usize, SynthError)>> = Mutex::new(None);
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
) -> Result<(), SynthError> {
    let index = request.template;
    let template = &avatar.frames[index];
    fault::check(Site::Synth, &template.file);
    let (width, height) = (avatar.width as usize, avatar.height as usize);
    let kept = cache.get(index);
    if let Some(decoded) = &kept
        && (!request.whole || decoded.region == cache.frame)
    {
        paste_pixels(decoded.pixels, decoded.region, &mut slot.frame, 3 * width);
        if with_crop {
            slot.crop.copy_from_bytes(decoded.crop);
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
        .map_err(|message| decode_error(template, message))?;
    if let Some(decoded) = kept {
        slot.crop.copy_from_bytes(decoded.crop);
        return Ok(());
    }
    let frame = BgrImage::new(&slot.frame[..], width, height, 3 * width);
    worker
        .compositor
        .crop(&frame, template.crop, &mut slot.crop);
    cache.keep(index, slot);
    Ok(())
}

fn decode_error(template: &Template, message: String) -> SynthError {
    SynthError::Decode {
        file: template.file.clone(),
        message,
    }
}

/// The template file of a batch's first frame, to name the batch.
fn first_file<'a>(avatar: &'a Avatar, requests: &[FrameRequest]) -> &'a str {
    requests
        .first()
        .map_or("", |request| &avatar.frames[request.template].file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avatar::{DEMO, Source};

    fn requests(templates: &[usize], whole: bool) -> Vec<FrameRequest> {
        templates
            .iter()
            .enumerate()
            .map(|(frame, &template)| FrameRequest {
                frame,
                template,
                whole,
                face: Face::Template,
            })
            .collect()
    }

    /// The frames `synth` renders for `requests` as templates.
    fn rendered(
        synth: &mut FrameSynth,
        avatar: &Avatar,
        requests: &[FrameRequest],
    ) -> Vec<Vec<u8>> {
        synth.render_templates(avatar, requests).unwrap();
        (0..requests.len())
            .map(|k| synth.frame(0, k).to_vec())
            .collect()
    }

    #[test]
    fn templates_kept_within_the_budget_read_back_as_decoded() {
        let avatar = Avatar::load(&Source::Builtin(&DEMO)).unwrap();
        let templates = requests(&[0, 1, 2, 3], true);
        let decoded = rendered(
            &mut FrameSynth::new(&avatar, 4, 0).unwrap(),
            &avatar,
            &templates,
        );
        let whole = kept_size(CropBox::whole(avatar.width, avatar.height));
        let mut synth = FrameSynth::new(&avatar, 4, 2 * whole + whole / 2).unwrap();
        for pass in 0..3 {
            assert_eq!(
                rendered(&mut synth, &avatar, &templates),
                decoded,
                "pass {pass}"
            );
            assert_eq!(synth.cached_bytes(), 2 * whole, "two templates fit");
        }
    }

    #[test]
    fn a_template_twice_in_a_batch_is_kept_once() {
        let avatar = Avatar::load(&Source::Builtin(&DEMO)).unwrap();
        let mut synth = FrameSynth::new(&avatar, 8, usize::MAX).unwrap();
        rendered(&mut synth, &avatar, &requests(&[5; 8], true));
        let region = CropBox::whole(avatar.width, avatar.height);
        assert_eq!(synth.cached_bytes(), kept_size(region));
    }

    #[test]
    fn a_kept_region_gives_the_region_of_the_decoded_frame() {
        let avatar = Avatar::load(&Source::Builtin(&DEMO)).unwrap();
        let boxes: Vec<_> = avatar
            .frames
            .iter()
            .map(|template| {
                let crop = template.crop;
                Some(CropBox {
                    x0: crop.x0.saturating_sub(3),
                    y0: crop.y0.saturating_sub(5),
                    x1: (crop.x1 + 7).min(avatar.width),
                    y1: (crop.y1 + 2).min(avatar.height),
                })
            })
            .collect();
        let decoded = rendered(
            &mut FrameSynth::new(&avatar, 4, 0).unwrap(),
            &avatar,
            &requests(&[7, 8, 9, 10], true),
        );
        let mut synth = FrameSynth::new(&avatar, 4, usize::MAX).unwrap();
        synth.set_cache(&avatar, usize::MAX, boxes.clone());
        rendered(&mut synth, &avatar, &requests(&[7, 8, 9, 10], true));
        // Other templates first, so that the slots hold other pixels outside the regions.
        rendered(&mut synth, &avatar, &requests(&[20, 21, 22, 23], true));
        let regions = rendered(&mut synth, &avatar, &requests(&[7, 8, 9, 10], false));
        let stride = 3 * avatar.width as usize;
        for (k, template) in [7, 8, 9, 10].into_iter().enumerate() {
            let region = boxes[template].unwrap();
            for y in region.y0 as usize..region.y1 as usize {
                let row = y * stride + 3 * region.x0 as usize..y * stride + 3 * region.x1 as usize;
                assert!(
                    regions[k][row.clone()] == decoded[k][row],
                    "template {template}, row {y}"
                );
            }
            assert_ne!(regions[k], decoded[k], "only the region is written");
        }
    }
}
