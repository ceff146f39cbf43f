//! What rendering took, stage by stage, for the `stats` and the bench.

use std::time::Duration;

use crate::synth::{Face, FrameRequest};

/// Time spent in each stage of rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stages {
    /// The audio encoder.
    pub encoder: Duration,
    /// The U-Net.
    pub generator: Duration,
    /// Decoding, cropping and packing templates; unpacking, pasting and fading the faces.
    pub image: Duration,
    /// Conversion into the output format (the caller's `emit`).
    pub convert: Duration,
}

impl Stages {
    pub fn add(&mut self, other: &Stages) {
        self.encoder += other.encoder;
        self.generator += other.generator;
        self.image += other.image;
        self.convert += other.convert;
    }

    pub fn total(&self) -> Duration {
        self.encoder + self.generator + self.image + self.convert
    }
}

/// What one call of the engine rendered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub stages: Stages,
    /// Frames that went through the generator, `silent_faces` of them with the silent window.
    pub inferred: u64,
    pub silent_faces: u64,
    /// Frames that showed their template's silent face, kept from before.
    pub silent: u64,
    /// Frames that held the face inferred for a nearby frame.
    pub held: u64,
    /// Frames that showed their template: without models (`idle`), or because no face near
    /// them could be inferred in time (`late`).
    pub idle: u64,
    pub late: u64,
    /// Time spent on the inferred frames, all stages.
    pub inference_time: Duration,
    /// Time the call took.
    pub time: Duration,
}

impl Tally {
    /// Counts the faces of frames rendered for `requests`; a template shown with `models` was
    /// late.
    pub fn count(&mut self, requests: &[FrameRequest], models: bool) {
        for request in requests {
            let count = match request.face {
                Face::Speech { .. } => &mut self.inferred,
                Face::NewSilent { .. } => {
                    self.silent_faces += 1;
                    &mut self.inferred
                }
                Face::Silent => &mut self.silent,
                Face::Held { .. } => &mut self.held,
                Face::Template if models => &mut self.late,
                Face::Template => &mut self.idle,
            };
            *count += 1;
        }
    }
}
