//! The models' first runs, made when they load rather than in a stream's first batch.

use std::time::{Duration, Instant};

use super::EngineError;
use crate::audio::features::samples_needed_for_frame;
use crate::audio::stream::FeatureStream;
use crate::avatar::Avatar;
use crate::inference::Provider;
use crate::synth::{Face, FrameRequest, FrameSynth, Tensors};
use crate::talkinghead::resources::Models;

/// Runs freshly loaded models on silence over the first template: a frame alone twice, timing
/// the second (what inferring a frame costs, so that a live stream's first batch already knows
/// what it can afford), then a whole batch, so that ONNX Runtime has set up its memory for full
/// batches before the first stream starts rather than in its first batch. A provider other than
/// ONNX Runtime's CPU kernels runs every batch size up to `batch`: OpenVINO compiles the model
/// anew for each input shape it first sees (its first batch of 8 took 547 ms, the next 296 ms),
/// and a live stream's batches take any size.
pub fn warm_up(avatar: &Avatar, models: &Models, batch: usize) -> Result<Duration, EngineError> {
    let batch = batch.max(1);
    let mut synth = FrameSynth::new(avatar, batch, 0)?;
    let mut tensors = Tensors::new(batch);
    let mut features = FeatureStream::new(batch);
    features.push(&vec![0.0; samples_needed_for_frame(batch - 1) as usize]);
    features.finish();
    let mut encoder = models.encoder.lock().unwrap();
    features.encode(|windows, outputs| encoder.run(windows, outputs))?;
    let mut generator = models.generator.lock().unwrap();
    let requests: Vec<_> = (0..batch)
        .map(|frame| FrameRequest {
            frame,
            template: 0,
            whole: true,
            face: Face::Speech { row: frame },
        })
        .collect();
    let weights = vec![1.0; batch];
    let mut run = |frames: usize| {
        synth.render(
            avatar,
            &requests[..frames],
            &weights[..frames],
            &features,
            &mut tensors,
            &[],
            |images, audio, output| {
                generator
                    .run(images, audio, output)
                    .map_err(EngineError::from)
            },
        )
    };
    run(1)?;
    let started = Instant::now();
    run(1)?;
    let cost = started.elapsed();
    if models.acceleration.provider == Provider::Cpu {
        if batch > 1 {
            run(batch)?;
        }
    } else {
        for frames in 2..=batch {
            run(frames)?;
        }
    }
    Ok(cost)
}
