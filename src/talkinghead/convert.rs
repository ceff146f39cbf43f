//! Output frames in the negotiated format, from the synthesiser's packed BGR frames.
//!
//! A rendered frame differs from its template frame only inside the template's crop box. So a
//! frame converted whole is kept for its template (within a memory budget, the first ones to
//! come), and the next frame on that template is the kept one copied, with only a box around the
//! crop box converted again. `GstVideoConverter`'s chroma filters reach a few pixels, and its
//! chroma and dither patterns follow the pixel position, so the box is converted on the same
//! 16-pixel grid as the whole frame with a margin, and only its inside, which covers the crop box
//! and the pixels it reaches, is copied. The result is the bytes converting the whole frame gives
//! (tested below for every output format, and frame by frame against the naive loop by
//! `make bench`).

use gst_video::prelude::*;

use crate::avatar::CropBox;

/// Why a frame could not be converted.
#[derive(Debug)]
pub enum ConvertError {
    /// GStreamer refused a converter, an allocation or a copy.
    Glib(gst::glib::BoolError),
    /// A frame could not be mapped: which one.
    Map(&'static str),
    /// A buffer that must be written is shared: which one.
    Shared(&'static str),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Glib(err) => err.fmt(f),
            ConvertError::Map(what) => write!(f, "cannot map {what}"),
            ConvertError::Shared(what) => write!(f, "{what} is shared"),
        }
    }
}

impl std::error::Error for ConvertError {}

impl From<gst::glib::BoolError> for ConvertError {
    fn from(err: gst::glib::BoolError) -> Self {
        ConvertError::Glib(err)
    }
}

/// Box corners lie on this grid (chroma subsampling and dither patterns repeat within it).
const GRID: u32 = 16;
/// How far outside the crop box a changed pixel can change the converted frame.
const REACH: u32 = 8;
/// Converted pixels kept from the edge of a box that is not the frame's edge.
const MARGIN: u32 = 16;

/// Converts frames of one avatar into one output format.
pub struct FrameConverter {
    bgr_info: gst_video::VideoInfo,
    out_info: gst_video::VideoInfo,
    whole: gst_video::VideoConverter,
    /// The frame being converted whole, as the engine renders it.
    bgr: gst::Buffer,
    part: Option<Part>,
    /// Per template, where its box goes (`None`: converted whole) and a frame on it converted
    /// whole.
    placements: Vec<Option<Placement>>,
    kept: Vec<Option<gst::Buffer>>,
    /// Buffers for frames still to keep, allocated with the converter, so that keeping a frame
    /// never allocates: as many as the budget holds, or as templates have a box, if fewer.
    spare: Vec<gst::Buffer>,
    /// Frames converted whole so far.
    whole_frames: u64,
}

/// Converting a box of fixed size, placed around each frame's crop box.
struct Part {
    bgr_info: gst_video::VideoInfo,
    out_info: gst_video::VideoInfo,
    converter: gst_video::VideoConverter,
    bgr: gst::Buffer,
    out: gst::Buffer,
}

/// Where one frame's box goes: the box converted, and its inside copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    converted: CropBox,
    copied: CropBox,
}

impl FrameConverter {
    /// A converter from frames of `frame` size, on templates with crop boxes `crops`, to
    /// `out_info`, keeping up to `budget` bytes of converted frames.
    pub fn new(
        frame: (u32, u32),
        crops: Vec<CropBox>,
        out_info: &gst_video::VideoInfo,
        budget: usize,
    ) -> Result<Self, ConvertError> {
        let bgr_info = packed_bgr_info(frame.0, frame.1, out_info)?;
        let whole = gst_video::VideoConverter::new(&bgr_info, out_info, Some(threads()))?;
        let bgr = gst::Buffer::with_size(bgr_info.size())?;
        let (width, height) = box_size(frame, &crops);
        let part = if width < frame.0 || height < frame.1 {
            // The box's colours are the whole frame's: its size alone would choose others
            // (BT.601 below 720 lines, BT.709 from there).
            let bgr_info = gst_video::VideoInfo::builder(bgr_info.format(), width, height)
                .fps(bgr_info.fps())
                .colorimetry(&bgr_info.colorimetry())
                .build()?;
            let out_info = gst_video::VideoInfo::builder(out_info.format(), width, height)
                .fps(out_info.fps())
                .colorimetry(&out_info.colorimetry())
                .chroma_site(out_info.chroma_site())
                .build()?;
            let converter = gst_video::VideoConverter::new(&bgr_info, &out_info, None)?;
            Some(Part {
                bgr: gst::Buffer::with_size(bgr_info.size())?,
                out: gst::Buffer::with_size(out_info.size())?,
                bgr_info,
                out_info,
                converter,
            })
        } else {
            None
        };
        // A box the size of the frame is no box: every frame is converted whole.
        let placements: Vec<_> = crops
            .iter()
            .map(|&crop| {
                part.as_ref()
                    .and_then(|_| place(crop, (width, height), frame))
            })
            .collect();
        let placed = placements.iter().filter(|p| p.is_some()).count();
        let spare = (0..placed.min(budget / out_info.size()))
            .map(|_| gst::Buffer::with_size(out_info.size()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            bgr_info,
            out_info: out_info.clone(),
            whole,
            bgr,
            part,
            kept: vec![None; crops.len()],
            spare,
            placements,
            whole_frames: 0,
        })
    }

    /// Per template, the part of a frame that [`FrameConverter::convert`] reads once a frame on
    /// it is kept converted; `None` where it always reads the whole frame.
    pub fn regions(&self) -> Vec<Option<CropBox>> {
        self.placements
            .iter()
            .map(|placement| placement.map(|placement| placement.converted))
            .collect()
    }

    /// Whether the next frame on `template` is converted whole (every pixel read), not only its
    /// region.
    pub fn converts_whole(&self, template: usize) -> bool {
        self.placements[template].is_none() || self.kept[template].is_none()
    }

    /// Converts `bgr` (packed, `3 × width` bytes a row), a frame on template `template` that
    /// differs from the template only inside its crop box, into `target`. Where a frame on the
    /// template is kept, only the template's region of `bgr` is read.
    pub fn convert(
        &mut self,
        bgr: &[u8],
        template: usize,
        target: &mut gst::BufferRef,
    ) -> Result<(), ConvertError> {
        let mut target = gst_video::VideoFrameRef::from_buffer_ref_writable(target, &self.out_info)
            .map_err(|_| ConvertError::Map("an output buffer"))?;
        match (
            self.placements[template],
            &self.kept[template],
            &mut self.part,
        ) {
            (Some(placement), Some(kept), Some(part)) => {
                let kept = gst_video::VideoFrameRef::from_buffer_ref_readable(kept, &self.out_info)
                    .map_err(|_| ConvertError::Map("a kept frame"))?;
                kept.copy(&mut target)?;
                part.convert(bgr, self.bgr_info.width(), placement, &mut target)
            }
            _ => {
                let (width, height) = (self.bgr_info.width(), self.bgr_info.height());
                copy_region(
                    bgr,
                    width,
                    CropBox::whole(width, height),
                    self.bgr
                        .get_mut()
                        .ok_or(ConvertError::Shared("the BGR frame"))?,
                    self.bgr_info.stride()[0] as usize,
                );
                let source =
                    gst_video::VideoFrameRef::from_buffer_ref_readable(&self.bgr, &self.bgr_info)
                        .map_err(|_| ConvertError::Map("the BGR frame"))?;
                self.whole.frame_ref(&source, &mut target);
                self.whole_frames += 1;
                drop(source);
                self.keep(template, &target)
            }
        }
    }

    /// Keeps a copy of `frame` for `template`, if the budget has room.
    fn keep(
        &mut self,
        template: usize,
        frame: &gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<(), ConvertError> {
        if self.placements[template].is_none() || self.kept[template].is_some() {
            return Ok(());
        }
        let Some(mut kept) = self.spare.pop() else {
            return Ok(());
        };
        {
            let kept = kept.get_mut().expect("a spare buffer is not shared");
            let mut copy = gst_video::VideoFrameRef::from_buffer_ref_writable(kept, &self.out_info)
                .map_err(|_| ConvertError::Map("a kept frame"))?;
            frame.copy(&mut copy)?;
        }
        self.kept[template] = Some(kept);
        Ok(())
    }
}

impl Part {
    /// Converts `placement.converted` of `bgr` (a frame `width` pixels wide) and copies its
    /// `placement.copied` part into `target`.
    fn convert(
        &mut self,
        bgr: &[u8],
        width: u32,
        placement: Placement,
        target: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<(), ConvertError> {
        let Placement { converted, copied } = placement;
        copy_region(
            bgr,
            width,
            converted,
            self.bgr
                .get_mut()
                .ok_or(ConvertError::Shared("the BGR box"))?,
            self.bgr_info.stride()[0] as usize,
        );
        let source = gst_video::VideoFrameRef::from_buffer_ref_readable(&self.bgr, &self.bgr_info)
            .map_err(|_| ConvertError::Map("the BGR box"))?;
        let out = self
            .out
            .get_mut()
            .ok_or(ConvertError::Shared("the converted box"))?;
        let mut out = gst_video::VideoFrameRef::from_buffer_ref_writable(out, &self.out_info)
            .map_err(|_| ConvertError::Map("the converted box"))?;
        self.converter.frame_ref(&source, &mut out);

        let format = self.out_info.format_info();
        for plane in 0..format.n_planes() {
            let component = (0..format.n_components() as usize)
                .find(|&c| format.plane()[c] == plane)
                .expect("every plane holds a component");
            let (w_sub, h_sub) = (format.w_sub()[component], format.h_sub()[component]);
            let pixel = format.pixel_stride()[component] as usize;
            // Box corners are on the grid, so these divide exactly but at the frame's far edges.
            let columns = |from: u32, to: u32| {
                let start = (from >> w_sub) as usize * pixel;
                (start, (to.div_ceil(1 << w_sub) as usize) * pixel - start)
            };
            let (x, len) = columns(copied.x0, copied.x1);
            let (box_x, _) = columns(copied.x0 - converted.x0, 0);
            let rows = (copied.y0 >> h_sub)..copied.y1.div_ceil(1 << h_sub);
            let box_row = rows.start - ((copied.y0 - converted.y0) >> h_sub);
            let (from_stride, to_stride) = (
                out.plane_stride()[plane as usize] as usize,
                target.plane_stride()[plane as usize] as usize,
            );
            let from = out.plane_data(plane)?;
            let to = target.plane_data_mut(plane)?;
            for y in rows {
                let from = &from[(y - box_row) as usize * from_stride + box_x..][..len];
                to[y as usize * to_stride + x..][..len].copy_from_slice(from);
            }
        }
        Ok(())
    }
}

/// Threads splitting a whole frame into bands: a frame's conversion stays a small part of its
/// time.
fn threads() -> gst_video::VideoConverterConfig {
    let mut config = gst_video::VideoConverterConfig::new();
    config.set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as u32);
    config
}

/// Packed BGR frames of `width` × `height` at the frame rate of `like`.
fn packed_bgr_info(
    width: u32,
    height: u32,
    like: &gst_video::VideoInfo,
) -> Result<gst_video::VideoInfo, ConvertError> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgr, width, height)
        .fps(like.fps())
        .build()?;
    Ok(info)
}

/// Copies `region` of `bgr` (packed, `width` pixels a row) into `buffer`'s rows of `stride`
/// bytes.
fn copy_region(
    bgr: &[u8],
    width: u32,
    region: CropBox,
    buffer: &mut gst::BufferRef,
    stride: usize,
) {
    let mut map = buffer.map_writable().expect("a writable buffer");
    let row = 3 * region.width() as usize;
    for (y, to) in (region.y0..region.y1).zip(map.chunks_mut(stride)) {
        let from = 3 * (y as usize * width as usize + region.x0 as usize);
        to[..row].copy_from_slice(&bgr[from..][..row]);
    }
}

/// The part of the frame a change inside `crop` can reach, on the grid and inside the frame.
fn reached(crop: CropBox, (width, height): (u32, u32)) -> CropBox {
    CropBox {
        x0: crop.x0.saturating_sub(REACH) / GRID * GRID,
        y0: crop.y0.saturating_sub(REACH) / GRID * GRID,
        x1: (crop.x1 + REACH).next_multiple_of(GRID).min(width),
        y1: (crop.y1 + REACH).next_multiple_of(GRID).min(height),
    }
}

/// The size of the box converted for every frame: what the largest of `crops` reaches, with a
/// margin around it, at most the frame, and grown so that a box against the frame's far edge
/// starts on the grid.
fn box_size(frame: (u32, u32), crops: &[CropBox]) -> (u32, u32) {
    let (width, height) = crops
        .iter()
        .map(|&crop| reached(crop, frame))
        .fold((0, 0), |(w, h), area| {
            (w.max(area.width()), h.max(area.height()))
        });
    let fit = |needed: u32, frame: u32| frame - frame.saturating_sub(needed) / GRID * GRID;
    (
        fit(width + 2 * MARGIN, frame.0),
        fit(height + 2 * MARGIN, frame.1),
    )
}

/// Places a box of `size` around what `crop` reaches in a frame of `frame`: on the grid, and
/// `MARGIN` pixels from the copied part on every side that is not the frame's edge. `None` where
/// it cannot be (a box pushed off the grid by the frame's far edge, which `box_size` avoids); the
/// frame is then converted whole.
fn place(crop: CropBox, size: (u32, u32), frame: (u32, u32)) -> Option<Placement> {
    let copied = reached(crop, frame);
    let axis = |from: u32, to: u32, size: u32, frame: u32| -> Option<(u32, u32)> {
        let start = from.saturating_sub(MARGIN).min(frame.checked_sub(size)?);
        let end = start + size;
        let near = start == 0 || from - start >= MARGIN;
        let far = end == frame || end >= to + MARGIN;
        (start % GRID == 0 && start <= from && end >= to && near && far).then_some((start, end))
    };
    let (x0, x1) = axis(copied.x0, copied.x1, size.0, frame.0)?;
    let (y0, y1) = axis(copied.y0, copied.y1, size.1, frame.1)?;
    Some(Placement {
        converted: CropBox { x0, y0, x1, y1 },
        copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talkinghead::output::VIDEO_FORMATS;

    /// Deterministic noise, so that any misplaced or filtered pixel shows.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect()
    }

    fn converted_whole(
        bgr: &[u8],
        (width, height): (u32, u32),
        out_info: &gst_video::VideoInfo,
    ) -> Vec<u8> {
        let info = packed_bgr_info(width, height, out_info).unwrap();
        let mut source = gst::Buffer::with_size(info.size()).unwrap();
        copy_region(
            bgr,
            width,
            CropBox::whole(width, height),
            source.get_mut().unwrap(),
            info.stride()[0] as usize,
        );
        let mut target = gst::Buffer::from_mut_slice(vec![0; out_info.size()]);
        {
            let source =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&source, &info).unwrap();
            let mut target = gst_video::VideoFrameRef::from_buffer_ref_writable(
                target.get_mut().unwrap(),
                out_info,
            )
            .unwrap();
            gst_video::VideoConverter::new(&info, out_info, Some(threads()))
                .unwrap()
                .frame_ref(&source, &mut target);
        }
        target.map_readable().unwrap().to_vec()
    }

    /// Frames on templates with crop boxes in the middle, at every edge and in the corners of
    /// frames with sizes on and off the grid convert to the bytes of a whole conversion, in every
    /// output format, after the first frame on each template was converted whole.
    #[test]
    fn frames_converted_around_the_crop_box_are_the_frames_converted_whole() {
        gst::init().unwrap();
        // 720 lines and more take BT.709 colours by default, fewer BT.601.
        for frame in [(1280, 720), (640, 360), (333, 251)] {
            let (width, height) = frame;
            let crops = [
                CropBox {
                    x0: 200,
                    y0: 100,
                    x1: 330,
                    y1: 230,
                },
                CropBox {
                    x0: 0,
                    y0: 0,
                    x1: 97,
                    y1: 97,
                },
                CropBox {
                    x0: width - 101,
                    y0: height - 99,
                    x1: width,
                    y1: height,
                },
                CropBox {
                    x0: 7,
                    y0: height - 120,
                    x1: 125,
                    y1: height - 3,
                },
                CropBox {
                    x0: width - 130,
                    y0: 3,
                    x1: width - 1,
                    y1: 131,
                },
            ];
            for format in VIDEO_FORMATS {
                let out_info = gst_video::VideoInfo::builder(format, width, height)
                    .fps(gst::Fraction::new(25, 1))
                    .build()
                    .unwrap();
                let mut converter =
                    FrameConverter::new(frame, crops.to_vec(), &out_info, usize::MAX).unwrap();
                let template = noise((3 * width * height) as usize, 1);
                for (n, &crop) in crops.iter().enumerate() {
                    // The first frame on the template is converted whole and kept; the second
                    // changes inside the crop box only.
                    for seed in [2, 3] {
                        let mut bgr = template.clone();
                        let changed = noise((3 * width * height) as usize, seed * 10 + n as u64);
                        for y in crop.y0..crop.y1 {
                            let row = 3 * (y * width) as usize;
                            bgr[row + 3 * crop.x0 as usize..row + 3 * crop.x1 as usize]
                                .copy_from_slice(
                                    &changed
                                        [row + 3 * crop.x0 as usize..row + 3 * crop.x1 as usize],
                                );
                        }
                        let mut target = gst::Buffer::from_mut_slice(vec![0; out_info.size()]);
                        converter
                            .convert(&bgr, n, target.get_mut().unwrap())
                            .unwrap();
                        let expected = converted_whole(&bgr, frame, &out_info);
                        assert!(
                            *target.map_readable().unwrap() == *expected,
                            "{format:?}, {frame:?}, crop {crop:?}, frame {seed}"
                        );
                    }
                }
                // Only the first frame on each template was converted whole.
                assert_eq!(converter.whole_frames, crops.len() as u64, "{format:?}");
            }
        }
    }

    #[test]
    fn boxes_sit_on_the_grid_with_a_margin_or_at_the_frame_edge() {
        let frame = (1280, 720);
        let size = (320, 320);
        let placed = place(
            CropBox {
                x0: 500,
                y0: 300,
                x1: 730,
                y1: 530,
            },
            size,
            frame,
        )
        .unwrap();
        assert_eq!(
            placed.copied,
            CropBox {
                x0: 480,
                y0: 288,
                x1: 752,
                y1: 544
            }
        );
        assert_eq!(
            placed.converted,
            CropBox {
                x0: 464,
                y0: 272,
                x1: 784,
                y1: 592
            }
        );
        let corner = place(
            CropBox {
                x0: 1100,
                y0: 600,
                x1: 1280,
                y1: 720,
            },
            size,
            frame,
        )
        .unwrap();
        assert_eq!(
            corner.converted,
            CropBox {
                x0: 960,
                y0: 400,
                x1: 1280,
                y1: 720
            }
        );
        // 1000 - 320 = 680 is off the grid: converted whole.
        assert_eq!(
            place(
                CropBox {
                    x0: 900,
                    y0: 10,
                    x1: 1000,
                    y1: 100
                },
                size,
                (1000, 720)
            ),
            None
        );
        // Which is why boxes are sized so that they are not.
        let crop = CropBox {
            x0: 900,
            y0: 10,
            x1: 1000,
            y1: 100,
        };
        let size = box_size((1000, 1080), &[crop]);
        assert_eq!(size, (152, 152));
        let placed = place(crop, size, (1000, 1080)).unwrap();
        assert_eq!(
            placed.converted,
            CropBox {
                x0: 848,
                y0: 0,
                x1: 1000,
                y1: 152
            }
        );
    }
}
