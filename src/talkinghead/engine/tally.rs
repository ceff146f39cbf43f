//! What rendering took, stage by stage, for the `stats` and the bench.

use std::time::Duration;

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
    /// Frames that went through the generator.
    pub inferred: u64,
    /// Frames rendered idle, `late` of them because inferring them would have made them late.
    pub idle: u64,
    pub late: u64,
    /// Time spent on the inferred frames, all stages.
    pub inference_time: Duration,
    /// Time the call took.
    pub time: Duration,
}
