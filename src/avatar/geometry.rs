//! Landmarks and the lower-face crop box (SyncTalk_2D `inference_328.py`).

/// Number of points in a SyncTalk_2D `.lms` file.
pub const LANDMARK_COUNT: usize = 110;

/// A problem in a `.lms` file, with the 1-based line it was found on (0 for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandmarkError {
    pub line: usize,
    pub message: String,
}

/// Parses a `.lms` file: 110 lines of "x y" in full-frame pixels.
///
/// The reference parses each value as float32 and then casts the array to int32, so fractional
/// coordinates are truncated toward zero; so are ours.
pub fn parse_landmarks(text: &str) -> Result<Vec<(i32, i32)>, LandmarkError> {
    let mut points = Vec::with_capacity(LANDMARK_COUNT);
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if points.len() == LANDMARK_COUNT {
            return Err(LandmarkError {
                line: line_no,
                message: format!("more than {LANDMARK_COUNT} points"),
            });
        }
        let mut fields = line.split_whitespace();
        let mut coordinate = |axis: &str| -> Result<i32, LandmarkError> {
            let field = fields.next().ok_or_else(|| LandmarkError {
                line: line_no,
                message: format!("expected \"x y\", found {line:?} (no {axis})"),
            })?;
            match field.parse::<f32>() {
                Ok(value) if value.is_finite() && value.abs() < 1e9 => Ok(value as i32),
                _ => Err(LandmarkError {
                    line: line_no,
                    message: format!("{axis} is not a number: {field:?}"),
                }),
            }
        };
        let point = (coordinate("x")?, coordinate("y")?);
        if let Some(extra) = fields.next() {
            return Err(LandmarkError {
                line: line_no,
                message: format!("expected \"x y\", found an extra field {extra:?}"),
            });
        }
        points.push(point);
    }
    if points.len() < LANDMARK_COUNT {
        return Err(LandmarkError {
            line: 0,
            message: format!("has {} points, expected {LANDMARK_COUNT}", points.len()),
        });
    }
    Ok(points)
}

/// A rectangle of the full frame: columns `x0..x1`, rows `y0..y1` (end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl CropBox {
    /// The box of a whole `width` × `height` frame.
    pub fn whole(width: u32, height: u32) -> Self {
        CropBox {
            x0: 0,
            y0: 0,
            x1: width,
            y1: height,
        }
    }

    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
}

/// The reference crop: a square from the nose (point 52) down, as wide as points 1 to 31.
///
/// The reference takes it as the numpy slice `img[ymin:ymax, xmin:xmax]`, which silently clips at
/// the bottom and right border; we do the same. A box that starts outside the frame or is empty
/// after clipping is an error (numpy would wrap negative starts around, which is never intended).
pub fn crop_box(points: &[(i32, i32)], width: u32, height: u32) -> Result<CropBox, String> {
    let (xmin, _) = points[1];
    let (xmax, _) = points[31];
    let (_, ymin) = points[52];
    let side = xmax - xmin;
    let ymax = ymin.saturating_add(side);
    if side <= 0 {
        return Err(format!(
            "empty crop box: point 31 (x={xmax}) is not right of point 1 (x={xmin})"
        ));
    }
    if xmin < 0 || ymin < 0 || xmin >= width as i32 || ymin >= height as i32 {
        return Err(format!(
            "crop box [{xmin}, {ymin}, {xmax}, {ymax}] starts outside the {width}x{height} frame"
        ));
    }
    Ok(CropBox {
        x0: xmin as u32,
        y0: ymin as u32,
        x1: (xmax as u32).min(width),
        y1: (ymax as u32).min(height),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lms_with(p1: (i32, i32), p31: (i32, i32), p52: (i32, i32)) -> Vec<(i32, i32)> {
        let mut points = vec![(0, 0); LANDMARK_COUNT];
        points[1] = p1;
        points[31] = p31;
        points[52] = p52;
        points
    }

    #[test]
    fn crop_box_matches_the_reference_rectangle() {
        // Frame 0 of the digital-clone "sanders" package: crop_rectangles.json says [532,210,714,392].
        let points = lms_with((532, 197), (714, 194), (616, 210));
        let b = crop_box(&points, 1280, 720).unwrap();
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (532, 210, 714, 392));
        assert_eq!((b.width(), b.height()), (182, 182));
    }

    #[test]
    fn crop_box_is_clipped_like_a_numpy_slice() {
        let points = lms_with((500, 0), (700, 0), (600, 650));
        let b = crop_box(&points, 680, 720).unwrap();
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (500, 650, 680, 720));
    }

    #[test]
    fn empty_or_outside_boxes_are_errors() {
        let flipped = lms_with((700, 0), (500, 0), (600, 100));
        assert!(
            crop_box(&flipped, 1280, 720)
                .unwrap_err()
                .contains("empty crop box")
        );
        let below = lms_with((500, 0), (700, 0), (600, 720));
        assert!(crop_box(&below, 1280, 720).unwrap_err().contains("outside"));
        let left = lms_with((-5, 0), (700, 0), (600, 100));
        assert!(crop_box(&left, 1280, 720).unwrap_err().contains("outside"));
    }

    #[test]
    fn parses_integer_and_fractional_points() {
        let mut text = String::new();
        for i in 0..LANDMARK_COUNT {
            text.push_str(&format!("{} {}.75\n", i, i * 2));
        }
        let points = parse_landmarks(&text).unwrap();
        assert_eq!(points.len(), LANDMARK_COUNT);
        assert_eq!(points[52], (52, 104));
    }

    #[test]
    fn reports_the_line_of_a_bad_point() {
        let mut lines: Vec<String> = (0..LANDMARK_COUNT).map(|i| format!("{i} {i}")).collect();
        lines[6] = "12 abc".into();
        let err = parse_landmarks(&lines.join("\n")).unwrap_err();
        assert_eq!(err.line, 7);
        assert!(err.message.contains("\"abc\""), "{}", err.message);

        lines[6] = "12".into();
        assert_eq!(parse_landmarks(&lines.join("\n")).unwrap_err().line, 7);
        lines[6] = "1 2 3".into();
        assert_eq!(parse_landmarks(&lines.join("\n")).unwrap_err().line, 7);
    }

    #[test]
    fn short_and_long_files_are_errors() {
        let short: String = (0..52).map(|i| format!("{i} {i}\n")).collect();
        assert!(
            parse_landmarks(&short)
                .unwrap_err()
                .message
                .contains("52 points")
        );
        let long: String = (0..111).map(|i| format!("{i} {i}\n")).collect();
        assert_eq!(parse_landmarks(&long).unwrap_err().line, 111);
    }
}
