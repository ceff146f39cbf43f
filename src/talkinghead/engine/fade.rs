//! How much of the generated face each frame shows: all of it while there is speech, none of it
//! (the template frame alone, no inference) in silence, and a linear cross-fade over a few frames
//! between the two, so the picture never jumps when speech starts or stops.

/// The cross-fade state of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fade {
    steps: u32,
    level: u32,
}

impl Fade {
    /// A fade that takes `blend_frames` frames to go from idle to speaking or back (1: a cut).
    pub fn new(blend_frames: u32) -> Self {
        Self {
            steps: blend_frames.max(1),
            level: 0,
        }
    }

    /// The weight of the generated face in the next frame, 0 (template) to 1 (generated), given
    /// whether that frame's audio window holds speech.
    pub fn next(&mut self, speaking: bool) -> f32 {
        self.level = if speaking {
            (self.level + 1).min(self.steps)
        } else {
            self.level.saturating_sub(1)
        };
        self.weight()
    }

    /// Drops straight to idle, as for a frame that cannot be inferred in time; speech fades back
    /// in from there.
    pub fn cut(&mut self) -> f32 {
        self.level = 0;
        self.weight()
    }

    fn weight(&self) -> f32 {
        self.level as f32 / self.steps as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(fade: &mut Fade, speaking: &[bool]) -> Vec<f32> {
        speaking.iter().map(|&s| fade.next(s)).collect()
    }

    #[test]
    fn fades_in_and_out_over_the_blend_frames() {
        let mut fade = Fade::new(4);
        let speech = [
            false, true, true, true, true, true, false, false, false, false, false,
        ];
        assert_eq!(
            weights(&mut fade, &speech),
            [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
        );
    }

    #[test]
    fn a_short_pause_dips_without_reaching_idle() {
        let mut fade = Fade::new(4);
        let speech = [true, true, true, true, false, false, true, true];
        assert_eq!(
            weights(&mut fade, &speech),
            [0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.75, 1.0]
        );
    }

    #[test]
    fn one_blend_frame_is_a_cut_and_cut_restarts_the_fade() {
        let mut fade = Fade::new(1);
        assert_eq!(weights(&mut fade, &[true, false, true]), [1.0, 0.0, 1.0]);
        let mut fade = Fade::new(2);
        assert_eq!(weights(&mut fade, &[true, true]), [0.5, 1.0]);
        assert_eq!(fade.cut(), 0.0);
        assert_eq!(fade.next(true), 0.5);
    }
}
