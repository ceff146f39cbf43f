//! Cross-fading the repainted face with the template frame.

use crate::avatar::CropBox;

/// Mixes `template` into `frame` inside `crop_box`: `weight · frame + (1 − weight) · template`,
/// rounded, per byte. Both are packed 3-byte pixels with rows of `stride` bytes; outside the box
/// the two are the same picture and nothing is touched.
pub fn blend_box(frame: &mut [u8], template: &[u8], stride: usize, crop_box: CropBox, weight: f32) {
    let weight = weight.clamp(0.0, 1.0);
    let columns = 3 * crop_box.x0 as usize..3 * crop_box.x1 as usize;
    for y in crop_box.y0 as usize..crop_box.y1 as usize {
        let row = y * stride;
        let to = &mut frame[row + columns.start..row + columns.end];
        let from = &template[row + columns.start..row + columns.end];
        for (to, &from) in to.iter_mut().zip(from) {
            let mixed = weight * f32::from(*to) + (1.0 - weight) * f32::from(from);
            *to = mixed.round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_inside_the_box_only() {
        let (width, height) = (6, 4);
        let stride = 3 * width;
        let mut frame = vec![200u8; stride * height];
        let template = vec![100u8; stride * height];
        let crop_box = CropBox {
            x0: 1,
            y0: 1,
            x1: 4,
            y1: 3,
        };
        blend_box(&mut frame, &template, stride, crop_box, 0.25);
        for y in 0..height {
            for x in 0..width {
                let inside = (1..4).contains(&x) && (1..3).contains(&y);
                let expected = if inside { 125 } else { 200 };
                assert_eq!(
                    &frame[y * stride + 3 * x..][..3],
                    [expected; 3],
                    "({x}, {y})"
                );
            }
        }
        blend_box(&mut frame, &template, stride, crop_box, 0.0);
        assert_eq!(frame[stride + 3], 100);
    }
}
