//! What the element loads and checks before it streams: the avatar and, where there are any, its
//! two models with the ONNX Runtime library that runs them.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::audio::features::{FRAME_WINDOW_LEN, samples_needed_for_frame};
use crate::audio::stream::FeatureStream;
use crate::avatar::{self, Avatar, AvatarError, Source};
use crate::inference::{
    self, Acceleration, AudioEncoder, CpuFeatures, Device, Generator, InferenceError, ModelSource,
    SessionOptions,
};

/// Where the models are looked for in an avatar folder when not set explicitly.
pub const GENERATOR_IN_AVATAR: &str = "models/generator.onnx";
pub const AUDIO_ENCODER_IN_AVATAR: &str = "models/audio_encoder.onnx";

/// The settings that decide what is loaded; a change reloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub avatar: Option<PathBuf>,
    pub generator: Option<PathBuf>,
    pub audio_encoder: Option<PathBuf>,
    pub ort_library: Option<PathBuf>,
    /// Threads inside one ONNX Runtime operator; 0 lets ONNX Runtime choose.
    pub inference_threads: u32,
    /// Where and how the generator runs.
    pub acceleration: Acceleration,
}

/// Each model behind its own lock: the encoder runs for one batch while the generator runs for
/// the one before it.
pub struct Models {
    pub encoder: Mutex<AudioEncoder>,
    pub generator: Mutex<Generator>,
    /// What inferring one frame took when the element first warmed the models up.
    frame_cost: Mutex<Option<Duration>>,
    /// The generator's audio input for digital silence, made when first asked for.
    silent_window: OnceLock<Vec<f32>>,
    /// What the generator runs on (the encoder runs on ONNX Runtime's CPU provider).
    pub acceleration: Acceleration,
    pub device: Device,
    /// The ONNX Runtime library they run on.
    pub library: PathBuf,
}

impl Models {
    /// The generator's audio input ([`FRAME_WINDOW_LEN`] floats) for a frame whose window is
    /// digital silence: that of the first frame whose window reads no padding (frame 8) in a
    /// stream of silence, computed as the stream computes it.
    pub fn silent_window(&self) -> Result<&[f32], InferenceError> {
        if let Some(window) = self.silent_window.get() {
            return Ok(window);
        }
        const FRAME: usize = 8;
        let mut features = FeatureStream::new(64);
        features.push(&vec![0.0; samples_needed_for_frame(FRAME) as usize]);
        let mut encoder = self.encoder.lock().unwrap();
        features.encode(|windows, outputs| encoder.run(windows, outputs))?;
        let mut window = vec![0.0; FRAME_WINDOW_LEN];
        features.write_frame_window(FRAME, &mut window);
        Ok(self.silent_window.get_or_init(|| window))
    }

    pub fn frame_cost(&self) -> Option<Duration> {
        *self.frame_cost.lock().unwrap()
    }

    pub fn set_frame_cost(&self, cost: Duration) {
        *self.frame_cost.lock().unwrap() = Some(cost);
    }

    /// Makes the locks usable again after a panic while one was held.
    pub fn clear_poison(&self) {
        self.encoder.clear_poison();
        self.generator.clear_poison();
        self.frame_cost.clear_poison();
    }
}

pub struct Resources {
    pub wanted: Wanted,
    pub avatar: Arc<Avatar>,
    /// `None`: no models, the element shows the avatar's templates.
    pub models: Option<Arc<Models>>,
    /// What was loaded from where, for the log.
    pub notes: Vec<String>,
}

/// Why loading failed.
#[derive(Debug)]
pub enum LoadError {
    Avatar(AvatarError),
    Models(InferenceError),
    /// The provider cannot run the models as the settings ask.
    Acceleration(String),
    /// One model is set and the other is not: the message names the one set.
    OneModel(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Avatar(err) => write!(f, "Cannot load the avatar: {err}"),
            LoadError::Models(err) => write!(f, "Cannot load the models: {err}"),
            LoadError::Acceleration(message) => write!(f, "Cannot run the models: {message}"),
            LoadError::OneModel(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LoadError {}

pub fn load(wanted: &Wanted) -> Result<Resources, LoadError> {
    let source = match &wanted.avatar {
        Some(path) => Source::Folder(path.clone()),
        None => Source::Builtin(&avatar::DEMO),
    };
    let avatar = Avatar::load(&source).map_err(LoadError::Avatar)?;
    let mut notes = vec![format!(
        "avatar {}: {} frames of {}x{} ({:?} layout)",
        source.describe(""),
        avatar.frames.len(),
        avatar.width,
        avatar.height,
        avatar.layout
    )];
    notes.extend(avatar.warnings.iter().cloned());

    // The demo models drive the demo avatar only as a pair: never next to a model of the user's.
    let neither_set = wanted.generator.is_none() && wanted.audio_encoder.is_none();
    let in_avatar = |relative: &'static str| match &wanted.avatar {
        Some(root) => Some(root.join(relative))
            .filter(|path| path.exists())
            .map(ModelFile::Path),
        None if neither_set => avatar::DEMO
            .get_file(relative)
            .map(|file| ModelFile::Builtin(relative, file.contents())),
        None => None,
    };
    let generator = wanted
        .generator
        .clone()
        .map(ModelFile::Path)
        .or_else(|| in_avatar(GENERATOR_IN_AVATAR));
    let encoder = wanted
        .audio_encoder
        .clone()
        .map(ModelFile::Path)
        .or_else(|| in_avatar(AUDIO_ENCODER_IN_AVATAR));
    let models = match (encoder, generator) {
        (None, None) => {
            notes.push("no models: showing the avatar's template frames".into());
            None
        }
        (Some(encoder), Some(generator)) => {
            let models = load_models(&encoder, &generator, wanted)?;
            notes.push(format!(
                "models {} and {} on ONNX Runtime {}, the generator on {} device {} in {}{}",
                encoder.describe(),
                generator.describe(),
                models.library.display(),
                models.acceleration.provider,
                models.device,
                models.acceleration.precision,
                if models.encoder.lock().unwrap().fixed_batch()
                    || models.generator.lock().unwrap().fixed_batch()
                {
                    " (batch fixed to 1 in the model: frames run one at a time)"
                } else {
                    ""
                }
            ));
            Some(Arc::new(models))
        }
        (Some(encoder), None) => {
            return Err(LoadError::OneModel(format!(
                "An audio encoder is set ({}) but no generator: set both or neither",
                encoder.describe()
            )));
        }
        (None, Some(generator)) => {
            return Err(LoadError::OneModel(format!(
                "A generator is set ({}) but no audio encoder: set both or neither",
                generator.describe()
            )));
        }
    };
    Ok(Resources {
        wanted: wanted.clone(),
        avatar: Arc::new(avatar),
        models,
        notes,
    })
}

/// A model file, or one compiled into the plugin with the demo avatar.
enum ModelFile {
    Path(PathBuf),
    Builtin(&'static str, &'static [u8]),
}

impl ModelFile {
    fn describe(&self) -> String {
        match self {
            ModelFile::Path(path) => path.display().to_string(),
            ModelFile::Builtin(name, _) => format!("<built-in demo avatar>/{name}"),
        }
    }

    /// Where ONNX Runtime reads it from; `name` names it in messages.
    fn source<'a>(&'a self, name: &'a str) -> ModelSource<'a> {
        match self {
            ModelFile::Path(path) => ModelSource::File(path),
            ModelFile::Builtin(_, bytes) => ModelSource::Memory { name, bytes },
        }
    }
}

/// The audio encoder's intra-op threads. It is about 2 % of the work, and runs beside the
/// generator: with its own pool of a thread per core, the two pools' threads fight for the
/// cores, and the bench pipeline took longer (in 8 of 10 alternated pairs, by a median 2.2 s of
/// 38 s).
const ENCODER_THREADS: usize = 1;

/// Loads both models. The generator runs as `wanted.acceleration` asks, checked before anything
/// loads; the encoder always runs on ONNX Runtime's CPU provider in fp32: through OpenVINO in
/// fp32 it took as long (15.7 against 15.1 ms a batch of 8 on one thread), and its features are
/// every frame's input, so they stay exact.
fn load_models(
    encoder: &ModelFile,
    generator: &ModelFile,
    wanted: &Wanted,
) -> Result<Models, LoadError> {
    let acceleration = wanted.acceleration.clone();
    let device = acceleration
        .check(CpuFeatures::detect())
        .map_err(LoadError::Acceleration)?;
    let fail = LoadError::Models;
    let library = inference::find_library(wanted.ort_library.as_deref(), acceleration.provider)
        .map_err(fail)?;
    let env = inference::environment(&library).map_err(fail)?;
    inference::require_provider(&library, acceleration.provider).map_err(fail)?;
    let (encoder_name, generator_name) = (encoder.describe(), generator.describe());
    let encoder = AudioEncoder::load(
        encoder.source(&encoder_name),
        env,
        &SessionOptions {
            intra_threads: ENCODER_THREADS,
            acceleration: Acceleration::default(),
        },
    );
    let generator = Generator::load(
        generator.source(&generator_name),
        env,
        &SessionOptions {
            intra_threads: wanted.inference_threads as usize,
            acceleration: acceleration.clone(),
        },
    );
    Ok(Models {
        frame_cost: Mutex::new(None),
        silent_window: OnceLock::new(),
        encoder: Mutex::new(encoder.map_err(fail)?),
        generator: Mutex::new(generator.map_err(fail)?),
        acceleration,
        device,
        library,
    })
}
