//! Raw audio buffers to the samples the mel front-end reads: f32 in [−1, 1], never NaN or ±∞.

/// Appends the S16LE samples of `bytes` to `out`, scaled to [−1, 1). A trailing odd byte is
/// ignored.
pub fn extend_from_s16le(out: &mut Vec<f32>, bytes: &[u8]) {
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
    );
}

/// Appends the F32LE samples of `bytes` to `out`, NaN and ±∞ replaced by silence (0), and
/// returns how many were replaced. Trailing bytes short of a sample are ignored.
pub fn extend_from_f32le(out: &mut Vec<f32>, bytes: &[u8]) -> usize {
    let mut replaced = 0;
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|v| {
                if v.is_finite() {
                    v
                } else {
                    replaced += 1;
                    0.0
                }
            }),
    );
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16_is_scaled_and_f32_sanitised() {
        let mut out = Vec::new();
        extend_from_s16le(&mut out, &[0x00, 0x80, 0xff, 0x7f, 0x01]);
        assert_eq!(out, [-1.0, 32767.0 / 32768.0]);
        out.clear();
        let bytes: Vec<u8> = [0.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.25]
            .iter()
            .flat_map(|v: &f32| v.to_le_bytes())
            .collect();
        assert_eq!(extend_from_f32le(&mut out, &bytes), 3);
        assert_eq!(out, [0.5, 0.0, 0.0, 0.0, -0.25]);
    }
}
