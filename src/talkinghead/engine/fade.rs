//! How much of its face each frame shows against its template. With models every frame shows a
//! face the generator drew (its own, its template's silent face, or one held from a neighbour),
//! at full weight, as the reference does. Only a frame that has no face at all (a live stream too
//! late to infer anything near it) shows its template; the face then fades back in over a few
//! frames, so the picture never jumps back.

/// The fade state of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fade {
    steps: u32,
    level: u32,
}

impl Fade {
    /// A fade that takes `blend_frames` frames to bring a face back after its template was shown
    /// (1: a cut). It starts with the face shown whole.
    pub fn new(blend_frames: u32) -> Self {
        let steps = blend_frames.max(1);
        Self {
            steps,
            level: steps,
        }
    }

    /// The weight of the face in the next frame, 0 (template) to 1, given whether that frame
    /// has a face.
    pub fn next(&mut self, face: bool) -> f32 {
        self.level = if face {
            (self.level + 1).min(self.steps)
        } else {
            0
        };
        self.level as f32 / self.steps as f32
    }

    /// Shows faces whole again, as at the start of a stream.
    pub fn reset(&mut self) {
        self.level = self.steps;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(fade: &mut Fade, faces: &[bool]) -> Vec<f32> {
        faces.iter().map(|&face| fade.next(face)).collect()
    }

    #[test]
    fn faces_are_whole_until_a_template_is_shown_then_fade_back_in() {
        let mut fade = Fade::new(4);
        let faces = [true, true, false, false, true, true, true, true, true];
        assert_eq!(
            weights(&mut fade, &faces),
            [1.0, 1.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
        );
    }

    #[test]
    fn one_blend_frame_is_a_cut_and_reset_shows_faces_whole() {
        let mut fade = Fade::new(1);
        assert_eq!(weights(&mut fade, &[true, false, true]), [1.0, 0.0, 1.0]);
        let mut fade = Fade::new(2);
        assert_eq!(weights(&mut fade, &[false, true]), [0.0, 0.5]);
        fade.reset();
        assert_eq!(fade.next(true), 1.0);
    }
}
