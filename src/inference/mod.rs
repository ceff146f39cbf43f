//! ONNX Runtime sessions for the SyncTalk_2D audio encoder and generator.
//!
//! [`find_library`] and [`environment`] load ONNX Runtime once per process; [`AudioEncoder`] and
//! [`Generator`] load a model, check it against the tensor contract (spec §2.1, §3.3) and run it
//! on caller-owned float buffers. No GStreamer types: the element wraps these in its workers.

mod contract;
pub mod graph;
mod models;
mod provider;
mod runtime;
mod search;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use contract::{AUDIO_FEATURES_LEN, EMBEDDING_LEN, FACE_LEN, IMAGE_LEN, MEL_WINDOW_LEN};
pub use models::{AudioEncoder, Generator, ModelSource};
pub use provider::{Acceleration, CpuFeatures, Device, Precision, Provider};
pub use runtime::{
    LogSink, environment, find_library, require_provider, send_log_to, set_plugin_file,
};

/// A problem with a model or the runtime, naming the file and (where it applies) the tensor.
#[derive(Debug, Clone)]
pub struct InferenceError {
    pub file: String,
    pub message: String,
}

impl InferenceError {
    fn new(file: &Path, message: String) -> Self {
        InferenceError {
            file: file.display().to_string(),
            message,
        }
    }
}

impl fmt::Display for InferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for InferenceError {}

/// How sessions are set up.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Threads inside one operator; 0 leaves the choice to ONNX Runtime (one per physical core).
    pub intra_threads: usize,
    /// The execution provider, its device and the precision.
    pub acceleration: Acceleration,
}
