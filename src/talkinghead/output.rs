//! The source pad's side of negotiation: the caps the avatar can be shown in, the format chosen
//! with downstream, the buffer pool from the ALLOCATION query, the split of the template cache,
//! and the pooled output buffers rendered frames are converted into.

use gst::prelude::*;

use super::convert::{ConvertError, FrameConverter};
use super::timeline::{FPS, Frame};
use crate::avatar::{Avatar, CropBox};

/// Output formats; the first is the one chosen when downstream accepts anything, and I420 is what
/// encoders want (RGB into x264enc would give High 4:4:4).
pub const VIDEO_FORMATS: [gst_video::VideoFormat; 8] = [
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Rgba,
];

/// The source pad template's caps: any size.
pub fn template_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(VIDEO_FORMATS)
        .framerate(gst::Fraction::from_integer(FPS as i32))
        .build()
}

/// The caps `avatar` can be shown in.
pub fn avatar_caps(avatar: &Avatar) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(VIDEO_FORMATS)
        .width(avatar.width as i32)
        .height(avatar.height as i32)
        .framerate(gst::Fraction::from_integer(FPS as i32))
        .pixel_aspect_ratio(gst::Fraction::from_integer(1))
        .build()
}

/// Why the output could not be negotiated.
#[derive(Debug)]
pub enum NegotiationError {
    /// Downstream accepts none of these caps.
    NoCommonCaps(gst::Caps),
    InvalidCaps(gst::Caps, gst::glib::BoolError),
    /// Downstream refused the caps event (or the pad is flushing).
    CapsRefused {
        flushing: bool,
    },
    Converter(ConvertError),
    PoolConfig(gst::Caps),
    PoolActivation(gst::glib::BoolError),
}

impl NegotiationError {
    /// What the task returns.
    pub fn flow(&self) -> gst::FlowError {
        match self {
            NegotiationError::CapsRefused { flushing: true } => gst::FlowError::Flushing,
            NegotiationError::PoolActivation(_) => gst::FlowError::Error,
            _ => gst::FlowError::NotNegotiated,
        }
    }

    /// The element error to post, if any: a refused caps event is downstream's to report.
    pub fn message(&self) -> Option<gst::ErrorMessage> {
        Some(match self {
            NegotiationError::NoCommonCaps(ours) => gst::error_msg!(
                gst::CoreError::Negotiation,
                ("Downstream accepts none of {ours}")
            ),
            NegotiationError::InvalidCaps(caps, err) => {
                gst::error_msg!(gst::CoreError::Negotiation, ("{caps}: {err}"))
            }
            NegotiationError::CapsRefused { .. } => return None,
            NegotiationError::Converter(err) => {
                gst::error_msg!(gst::CoreError::Negotiation, ("{err}"))
            }
            NegotiationError::PoolConfig(caps) => gst::error_msg!(
                gst::ResourceError::Settings,
                ("Cannot configure a buffer pool for {caps}")
            ),
            NegotiationError::PoolActivation(err) => {
                gst::error_msg!(gst::ResourceError::Failed, ("{err}"))
            }
        })
    }
}

/// The negotiated output: the pool and the conversion from the engine's BGR frames.
pub struct OutputFormat {
    pub converter: FrameConverter,
    pool: gst::BufferPool,
}

impl Drop for OutputFormat {
    fn drop(&mut self) {
        let _ = self.pool.set_active(false);
    }
}

/// Why a frame could not become an output buffer.
pub enum BufferError {
    /// The pool gave no buffer: flushing, or an error downstream's pool reported.
    Pool(gst::FlowError),
    Convert(ConvertError),
}

impl OutputFormat {
    /// Converts one rendered frame (packed BGR) into a pooled buffer, stamped.
    pub fn buffer(&mut self, frame: &Frame, bgr: &[u8]) -> Result<gst::Buffer, BufferError> {
        let mut buffer = self.pool.acquire_buffer(None).map_err(BufferError::Pool)?;
        let writable = buffer
            .get_mut()
            .ok_or(BufferError::Pool(gst::FlowError::Error))?;
        writable.set_pts(gst::ClockTime::from_nseconds(frame.pts));
        writable.set_duration(gst::ClockTime::from_nseconds(frame.duration));
        writable.set_offset(frame.index);
        writable.set_offset_end(frame.index + 1);
        self.converter
            .convert(bgr, frame.template, writable)
            .map_err(BufferError::Convert)?;
        Ok(buffer)
    }
}

/// The template cache's memory, once the output format is known: `decoded` bytes for decoded
/// templates, of each only `regions` (see [`crate::synth::FrameSynth::set_cache`]).
pub struct CacheSplit {
    pub decoded: usize,
    pub regions: Vec<Option<CropBox>>,
}

/// Picks the output format with downstream, sends the caps and sets up the buffer pool, with
/// `budget` bytes of template cache to split.
pub fn negotiate(
    srcpad: &gst::Pad,
    avatar: &Avatar,
    budget: usize,
) -> Result<(OutputFormat, CacheSplit), NegotiationError> {
    let ours = avatar_caps(avatar);
    let mut caps = srcpad.peer_query_caps(Some(&ours));
    if caps.is_empty() {
        return Err(NegotiationError::NoCommonCaps(ours));
    }
    caps.fixate();
    let info = gst_video::VideoInfo::from_caps(&caps)
        .map_err(|err| NegotiationError::InvalidCaps(caps.clone(), err))?;
    if !srcpad.push_event(gst::event::Caps::new(&caps)) {
        let flushing = srcpad.pad_flags().contains(gst::PadFlags::FLUSHING);
        return Err(NegotiationError::CapsRefused { flushing });
    }
    let pool = decide_allocation(srcpad, &caps, &info)?;

    // Into YUV, a frame kept converted saves a colour conversion, about three times what a
    // decoded template saves per byte, so converted frames get three quarters; packed RGB is
    // converted by a copy or a swizzle, and keeps none.
    let converted = if info.format_info().is_yuv() {
        budget / 4 * 3
    } else {
        0
    };
    let crops = avatar.frames.iter().map(|template| template.crop).collect();
    let converter = FrameConverter::new((avatar.width, avatar.height), crops, &info, converted)
        .map_err(NegotiationError::Converter)?;
    // Without frames kept converted, every frame is converted whole.
    let regions = match converted {
        0 => vec![None; avatar.frames.len()],
        _ => converter.regions(),
    };
    let split = CacheSplit {
        decoded: budget - converted,
        regions,
    };
    Ok((OutputFormat { converter, pool }, split))
}

/// Takes downstream's buffer pool if it offers one that fits, our own video pool otherwise.
fn decide_allocation(
    srcpad: &gst::Pad,
    caps: &gst::Caps,
    info: &gst_video::VideoInfo,
) -> Result<gst::BufferPool, NegotiationError> {
    let mut query = gst::query::Allocation::new(Some(caps), true);
    let answered = srcpad.peer_query(&mut query);
    let (offered, size, min, max) = if answered {
        query.allocation_pools().next().unwrap_or((None, 0, 0, 0))
    } else {
        (None, 0, 0, 0)
    };
    let size = size.max(info.size() as u32);
    let video_meta = answered
        && query
            .find_allocation_meta::<gst_video::VideoMeta>()
            .is_some();

    let configure = |pool: &gst::BufferPool| -> bool {
        let mut config = pool.config();
        config.set_params(Some(caps), size, min, max);
        if video_meta {
            config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
        }
        pool.set_config(config).is_ok()
            || pool
                .config()
                .validate_params(Some(caps), size, min, max)
                .is_ok()
    };
    let pool = match offered {
        Some(pool) if configure(&pool) => pool,
        _ => {
            let pool = gst_video::VideoBufferPool::new().upcast::<gst::BufferPool>();
            if !configure(&pool) {
                return Err(NegotiationError::PoolConfig(caps.clone()));
            }
            pool
        }
    };
    pool.set_active(true)
        .map_err(NegotiationError::PoolActivation)?;
    Ok(pool)
}
