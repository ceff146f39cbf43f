//! `cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)` for 8-bit BGR images, byte for byte.
//!
//! SyncTalk_2D's inference resizes every crop to 328x328 and back with OpenCV's bicubic filter;
//! to paint the same pixels as the reference we reproduce OpenCV's own code path
//! (imgproc/src/resize.cpp: `resizeGeneric_` with `HResizeCubic`, `VResizeCubic` and its
//! `VResizeCubicVec_32s8u` kernel, OpenCV 4.11) rather than any textbook bicubic:
//!
//! * source position `(d + 0.5) * scale - 0.5` in f64, rounded to f32; `a = -0.75` weights computed
//!   in f32 and rounded to 11-bit fixed point; edge pixels replicated;
//! * the horizontal pass sums `pixel * weight` exactly in i32;
//! * the vertical pass is what OpenCV's x86-64 builds (SSE baseline) run: a vector kernel converts
//!   the rows to f32, multiplies by `weight / 2^22` and rounds half to even, 8 bytes at a time;
//!   only the last `width * 3 % 8` bytes of a row take the scalar fixed-point `(sum + 2^21) >> 22`.
//!   The two differ on ties, so both are kept.
//!
//! The x86-64 opencv-python wheels call Intel IPP instead when it is enabled (the default). IPP
//! filters in floating point and lands within +-1 of this on a few percent of the bytes,
//! differently on SSE4.2 and AVX2 machines; `tools/make_compose_fixtures.py` measures it.

use std::array;

use super::image::{BgrImage, CHANNELS};

/// `INTER_RESIZE_COEF_SCALE`: weights are fixed point with 11 fractional bits.
const WEIGHT_SCALE: f32 = 2048.0;
/// Rounding shift after both passes (11 + 11 fractional bits).
const SHIFT: u32 = 22;
/// Bytes per step of OpenCV's SSE vertical kernel (`v_int16` lanes); the remainder of a row is
/// done in fixed point.
const VECTOR_BYTES: usize = 8;

/// The four source samples (byte offsets) and fixed-point weights for one output sample.
#[derive(Clone, Copy, Debug)]
struct Taps {
    offsets: [usize; 4],
    weights: [i32; 4],
}

/// A bicubic resizer that keeps its tables and row buffers between calls.
///
/// The tables are rebuilt when the source or target size changes; buffers only grow, so a
/// resizer that has seen the largest size it will get no longer allocates.
#[derive(Debug, Default)]
pub struct CubicResize {
    sizes: Option<[usize; 4]>,
    columns: Vec<Taps>,
    lines: Vec<Taps>,
    /// Four horizontally filtered source rows; source row `y` lives in slot `y % 4`.
    rows: Vec<i32>,
}

impl CubicResize {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes all of `src` into all of `dst`.
    pub fn resize<S, D>(&mut self, src: &BgrImage<S>, dst: &mut BgrImage<D>)
    where
        S: AsRef<[u8]>,
        D: AsRef<[u8]> + AsMut<[u8]>,
    {
        self.plan(src.width(), src.height(), dst.width(), dst.height());
        let row_len = dst.width() * CHANNELS;
        let Self {
            columns,
            lines,
            rows,
            ..
        } = self;
        // The (up to) four rows one output row needs are consecutive source rows, so `y % 4`
        // never evicts a row still needed; going down the image each source row is filtered at
        // most once.
        let mut filtered = [usize::MAX; 4];
        for (y, line) in lines.iter().enumerate() {
            for &source in &line.offsets {
                let slot = source % 4;
                if filtered[slot] != source {
                    filter_row(
                        src.row(source),
                        columns,
                        &mut rows[slot * row_len..][..row_len],
                    );
                    filtered[slot] = source;
                }
            }
            let taps = line
                .offsets
                .map(|source| &rows[source % 4 * row_len..][..row_len]);
            blend_rows(taps, line.weights, dst.row_mut(y));
        }
    }

    fn plan(&mut self, src_width: usize, src_height: usize, dst_width: usize, dst_height: usize) {
        let sizes = [src_width, src_height, dst_width, dst_height];
        if self.sizes == Some(sizes) {
            return;
        }
        build_taps(src_width, dst_width, CHANNELS, &mut self.columns);
        build_taps(src_height, dst_height, 1, &mut self.lines);
        self.rows.resize(4 * dst_width * CHANNELS, 0);
        self.sizes = Some(sizes);
    }
}

/// One axis of `cv::hal::resize`'s tables; `step` turns a source index into an offset.
fn build_taps(source_len: usize, target_len: usize, step: usize, taps: &mut Vec<Taps>) {
    // cv::resize stores the inverse scale and inverts it again; 1 / (t / s) is not always s / t.
    let scale = 1.0 / (target_len as f64 / source_len as f64);
    let last = source_len as isize - 1;
    taps.clear();
    taps.extend((0..target_len).map(|target| {
        let position = ((target as f64 + 0.5) * scale - 0.5) as f32;
        let start = position.floor();
        let weights = cubic_weights(position - start);
        let first = start as isize - 1;
        Taps {
            offsets: array::from_fn(|k| (first + k as isize).clamp(0, last) as usize * step),
            // saturate_cast<short>: round half to even (the weights never leave i16).
            weights: weights.map(|w| (w * WEIGHT_SCALE).round_ties_even() as i32),
        }
    }));
}

/// `interpolateCubic`, in f32 and in OpenCV's order of operations.
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

/// `HResizeCubic`: exact integer sums, at most 255 * 2048 * 1.19 in magnitude.
fn filter_row(source: &[u8], columns: &[Taps], out: &mut [i32]) {
    for (taps, out) in columns.iter().zip(out.chunks_exact_mut(CHANNELS)) {
        for (channel, out) in out.iter_mut().enumerate() {
            *out = (0..4)
                .map(|k| i32::from(source[taps.offsets[k] + channel]) * taps.weights[k])
                .sum();
        }
    }
}

/// `VResizeCubic` with `VResizeCubicVec_32s8u`, as the SSE build runs it.
fn blend_rows(rows: [&[i32]; 4], weights: [i32; 4], out: &mut [u8]) {
    let vector_end = out.len() / VECTOR_BYTES * VECTOR_BYTES;
    // Exact: the weights are small integers and the factor is a power of two.
    let scaled = weights.map(|w| w as f32 / (WEIGHT_SCALE * WEIGHT_SCALE));
    for (x, out) in out[..vector_end].iter_mut().enumerate() {
        // v_muladd(S0, b0, v_muladd(S1, b1, v_muladd(S2, b2, S3 * b3))): not fused on SSE, and
        // IEEE addition commutes, so the order of the products is all that matters.
        let mut sum = rows[3][x] as f32 * scaled[3];
        sum += rows[2][x] as f32 * scaled[2];
        sum += rows[1][x] as f32 * scaled[1];
        sum += rows[0][x] as f32 * scaled[0];
        *out = round_half_even(sum).clamp(0.0, 255.0) as u8;
    }
    for (x, out) in out.iter_mut().enumerate().skip(vector_end) {
        // |sum| < 255 * 2048^2 * 1.19^2 < 2^31: no overflow (FixedPtCast<int, uchar, 22>).
        let sum: i32 = (0..4).map(|k| rows[k][x] * weights[k]).sum();
        *out = ((sum + (1 << (SHIFT - 1))) >> SHIFT).clamp(0, 255) as u8;
    }
}

/// `_mm_cvtps_epi32`'s rounding, for |x| < 2^22: adding 1.5 * 2^23 leaves no fraction bits, so the
/// FPU rounds half to even. `f32::round_ties_even` is a library call without SSE4.1.
fn round_half_even(x: f32) -> f32 {
    const SHIFTER: f32 = 12_582_912.0;
    (x + SHIFTER) - SHIFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::fixtures::{fixture, pattern};

    fn resized(source: &[u8], src_size: (usize, usize), dst_size: (usize, usize)) -> Vec<u8> {
        let mut out = vec![0; dst_size.0 * dst_size.1 * CHANNELS];
        let src = BgrImage::new(source, src_size.0, src_size.1, src_size.0 * CHANNELS);
        let mut dst = BgrImage::new(&mut out[..], dst_size.0, dst_size.1, dst_size.0 * CHANNELS);
        CubicResize::new().resize(&src, &mut dst);
        out
    }

    /// Differing bytes and the largest difference.
    fn differences(a: &[u8], b: &[u8]) -> (usize, u8) {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold((0, 0), |(count, max), (&a, &b)| {
            let diff = a.abs_diff(b);
            (count + usize::from(diff > 0), max.max(diff))
        })
    }

    #[test]
    fn matches_opencv_into_the_crop() {
        for (w, h) in [(182, 182), (217, 163), (400, 400)] {
            let ours = resized(&pattern(w, h, w as u64), (w, h), (328, 328));
            let opencv = fixture(&format!("cubic_{w}x{h}_to_328x328"));
            assert_eq!(differences(&ours, &opencv), (0, 0), "{w}x{h} -> 328x328");
        }
    }

    #[test]
    fn matches_opencv_back_to_the_box() {
        for (source, (w, h)) in [
            ("182x182", (182, 182)),
            ("217x163", (217, 163)),
            ("400x400", (150, 150)),
        ] {
            let crop = fixture(&format!("cubic_{source}_to_328x328"));
            let ours = resized(&crop, (328, 328), (w, h));
            let opencv = fixture(&format!("cubic_{source}_to_328x328_to_{w}x{h}"));
            assert_eq!(differences(&ours, &opencv), (0, 0), "328x328 -> {w}x{h}");
        }
    }

    /// What the default x86-64 opencv-python (IPP, AVX2) makes of the same resize: not this, but
    /// never more than one step away (2177 of 67500 bytes when the fixture was made).
    #[test]
    fn stays_within_one_of_opencv_with_ipp() {
        let crop = fixture("cubic_400x400_to_328x328");
        let ours = resized(&crop, (328, 328), (150, 150));
        let (count, max) = differences(&ours, &fixture("ipp_cubic_400x400_to_328x328_to_150x150"));
        assert_eq!(max, 1);
        assert!(count <= ours.len() / 25, "{count} bytes differ");
    }

    #[test]
    fn the_same_size_is_a_copy() {
        let source = pattern(41, 17, 3);
        assert_eq!(resized(&source, (41, 17), (41, 17)), source);
    }

    #[test]
    fn a_resizer_can_be_reused_across_sizes() {
        let mut resize = CubicResize::new();
        for (w, h) in [(182, 182), (217, 163), (182, 182)] {
            let source = pattern(w, h, w as u64);
            let mut out = vec![0; 328 * 328 * CHANNELS];
            resize.resize(
                &BgrImage::new(&source[..], w, h, w * CHANNELS),
                &mut BgrImage::new(&mut out[..], 328, 328, 328 * CHANNELS),
            );
            assert_eq!(out, fixture(&format!("cubic_{w}x{h}_to_328x328")));
        }
    }

    #[test]
    fn rounds_half_to_even() {
        for x in [
            -2.5f32, -0.5, 0.5, 1.5, 2.5, 254.5, 255.49998, 0.49999997, -100.25, 300.75,
        ] {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn weights_match_opencv_tables() {
        // Half-way between two pixels: interpolateCubic(0.5) * 2048.
        assert_eq!(
            cubic_weights(0.5).map(|w| w * WEIGHT_SCALE),
            [-192.0, 1216.0, 1216.0, -192.0]
        );
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        // 182 -> 328, first column: position -0.2226, so the taps start left of the image.
        let mut taps = Vec::new();
        build_taps(182, 328, CHANNELS, &mut taps);
        assert_eq!(taps[0].offsets, [0, 0, 0, 3]);
        assert_eq!(taps[327].offsets, [180 * 3, 181 * 3, 181 * 3, 181 * 3]);
    }
}
