//! ONNX Runtime sessions for the audio encoder and the U-Net generator.

use std::fs;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions};
use ort::value::{DynValue, Outlet, Tensor, TensorRef, ValueType};

use super::contract::{
    self, AUDIO_FEATURES_LEN, Dim, EMBEDDING_LEN, EncoderIo, FACE_LEN, GeneratorIo, IMAGE_LEN,
    MEL_WINDOW_LEN, TensorDecl,
};
use super::{CpuFeatures, InferenceError, SessionOptions, graph, runtime};

/// Whether the ONNX model in `bytes` is quantized; a file ONNX Runtime loads but this cannot
/// read counts as not.
fn is_quantized(bytes: &[u8]) -> bool {
    graph::is_quantized(bytes).unwrap_or(false)
}

/// Where a model is read from: a file, or bytes in memory (the built-in demo's models).
pub enum ModelSource<'a> {
    File(&'a Path),
    Memory { name: &'a str, bytes: &'a [u8] },
}

impl<'a> From<&'a Path> for ModelSource<'a> {
    fn from(path: &'a Path) -> Self {
        ModelSource::File(path)
    }
}

impl<'a> From<&'a PathBuf> for ModelSource<'a> {
    fn from(path: &'a PathBuf) -> Self {
        ModelSource::File(path)
    }
}

/// The audio encoder: [N,1,80,16] f32 mel windows → [N,512] f32 embeddings.
#[derive(Debug)]
pub struct AudioEncoder {
    model: Model,
    io: EncoderIo,
}

impl AudioEncoder {
    /// Loads and checks the model. Input names accepted: `mel`, `mel_input`, `mel_spectrogram`
    /// (or any name when the model has exactly one input and one output); output names: `emb`,
    /// `features`, `audio_features` (or the single output). Shapes [batch,1,80,16] →
    /// [batch,512], float32, the batch dynamic or fixed to 1.
    pub fn load<'a>(
        source: impl Into<ModelSource<'a>>,
        env: &Environment,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        let mut model = Model::open(source.into(), env, options)?;
        model.max_bound = ENCODER_BOUND;
        let io = contract::encoder_io(&model.inputs(), &model.outputs())
            .map_err(|message| model.error(message))?;
        Ok(AudioEncoder { model, io })
    }

    /// The model's batch is fixed to 1: [`run`](Self::run) then runs one window at a time.
    pub fn fixed_batch(&self) -> bool {
        self.io.fixed_batch
    }

    /// `windows`: n×1280 floats (n windows of [1,80,16]); `out`: n×512. n ≥ 1.
    pub fn run(&mut self, windows: &[f32], out: &mut [f32]) -> Result<(), InferenceError> {
        let n = self
            .model
            .batch_len("windows", windows.len(), MEL_WINDOW_LEN)?;
        self.model
            .check_out_len(out.len(), n * EMBEDDING_LEN, EMBEDDING_LEN)?;
        let step = if self.io.fixed_batch { 1 } else { n };
        for (windows, out) in windows
            .chunks(step * MEL_WINDOW_LEN)
            .zip(out.chunks_mut(step * EMBEDDING_LEN))
        {
            self.run_batch(windows, out)
                .map_err(|message| self.model.error(message))?;
        }
        Ok(())
    }

    fn run_batch(&mut self, windows: &[f32], out: &mut [f32]) -> Result<(), String> {
        let n = windows.len() / MEL_WINDOW_LEN;
        self.model.run_bound(
            &[(self.io.mel.as_str(), windows, &[n, 1, 80, 16])],
            (self.io.embedding.as_str(), &[n, EMBEDDING_LEN]),
            out,
        )
    }
}

/// The U-Net generator: image [N,6,320,320] + audio [N,32,16,16] → face [N,3,320,320], all f32.
#[derive(Debug)]
pub struct Generator {
    model: Model,
    io: GeneratorIo,
    quantized: bool,
}

impl Generator {
    /// Loads and checks the model. Image input `input` or `visual_input`, audio input `audio` or
    /// `audio_input`, output `output` (or the single output); when the input names are not
    /// known, the two inputs are told apart by their channel count (6 vs 32), in either order.
    /// Float32, the batch dynamic or fixed to 1.
    pub fn load<'a>(
        source: impl Into<ModelSource<'a>>,
        env: &Environment,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        let source = source.into();
        let quantized = match &source {
            ModelSource::File(path) => fs::read(path).is_ok_and(|bytes| is_quantized(&bytes)),
            ModelSource::Memory { bytes, .. } => is_quantized(bytes),
        };
        let mut model = Model::open(source, env, options)?;
        model.max_bound = GENERATOR_BOUND;
        let io = contract::generator_io(&model.inputs(), &model.outputs())
            .map_err(|message| model.error(message))?;
        Ok(Generator {
            model,
            io,
            quantized,
        })
    }

    /// The model's graph is 8-bit quantized (QDQ or integer operators).
    pub fn quantized(&self) -> bool {
        self.quantized
    }

    /// The model's batch is fixed to 1: [`run`](Self::run) then runs one item at a time.
    pub fn fixed_batch(&self) -> bool {
        self.io.fixed_batch
    }

    /// `images`: n×614400 floats ([6,320,320] each), `audio`: n×8192 ([32,16,16] each),
    /// `out`: n×307200 ([3,320,320] each). n ≥ 1.
    pub fn run(
        &mut self,
        images: &[f32],
        audio: &[f32],
        out: &mut [f32],
    ) -> Result<(), InferenceError> {
        let n = self.model.batch_len("images", images.len(), IMAGE_LEN)?;
        if audio.len() != n * AUDIO_FEATURES_LEN {
            return Err(self.model.error(format!(
                "audio: {} floats for {n} images, expected {}",
                audio.len(),
                n * AUDIO_FEATURES_LEN
            )));
        }
        self.model
            .check_out_len(out.len(), n * FACE_LEN, FACE_LEN)?;
        let started = std::time::Instant::now();
        let step = if self.io.fixed_batch { 1 } else { n };
        for ((images, audio), out) in images
            .chunks(step * IMAGE_LEN)
            .zip(audio.chunks(step * AUDIO_FEATURES_LEN))
            .zip(out.chunks_mut(step * FACE_LEN))
        {
            self.run_batch(images, audio, out)
                .map_err(|message| self.model.error(message))?;
        }
        crate::fault::pace_generator(n, started);
        Ok(())
    }

    fn run_batch(&mut self, images: &[f32], audio: &[f32], out: &mut [f32]) -> Result<(), String> {
        let n = images.len() / IMAGE_LEN;
        self.model.run_bound(
            &[
                (self.io.image.as_str(), images, &[n, 6, 320, 320]),
                (self.io.audio.as_str(), audio, &[n, 32, 16, 16]),
            ],
            (self.io.face.as_str(), &[n, 3, 320, 320]),
            out,
        )
    }
}

/// Batch sizes whose tensors the generator keeps bound (each with an output tensor of the batch):
/// a stream's full batches and its last one.
const GENERATOR_BOUND: usize = 2;
/// The encoder's batches vary with the audio that arrived; its tensors are small, so every
/// batch size gets its own.
const ENCODER_BOUND: usize = 64;

/// The tensors of runs at one batch size: views of the caller's input buffers and an output
/// tensor the session writes into. Once bound, a run allocates nothing on the Rust side.
struct Bound {
    /// The caller's input buffers the views read (address and length), in the order given.
    buffers: Vec<(usize, usize)>,
    /// One view per session input, in the session's order.
    ///
    /// The `'static` is a lie told only to store them: a view is used only by a run whose
    /// caller lends the very buffer it was made over (same address, same length), for the
    /// length of that run.
    views: Vec<TensorRef<'static, f32>>,
    options: RunOptions<HasSelectedOutputs>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("buffers", &self.buffers)
            .finish_non_exhaustive()
    }
}

fn buffer_key(inputs: &[(&str, &[f32], &[usize])]) -> impl Iterator<Item = (usize, usize)> {
    inputs
        .iter()
        .map(|(_, data, _)| (data.as_ptr() as usize, data.len()))
}

/// A session and the file it came from, for error messages.
#[derive(Debug)]
struct Model {
    session: Session,
    file: String,
    /// Most recently used first.
    bound: Vec<Bound>,
    max_bound: usize,
}

impl Model {
    fn open(
        source: ModelSource<'_>,
        env: &Environment,
        options: &SessionOptions,
    ) -> Result<Self, InferenceError> {
        let file = match &source {
            ModelSource::File(path) => {
                let error = |message: String| InferenceError::new(path, message);
                // ONNX Runtime's own message for a missing file is a bare "Load model failed";
                // say why.
                let metadata =
                    fs::metadata(path).map_err(|e| error(format!("cannot open the model: {e}")))?;
                if !metadata.is_file() {
                    return Err(error("cannot open the model: not a regular file".into()));
                }
                path.display().to_string()
            }
            ModelSource::Memory { name, .. } => (*name).to_owned(),
        };
        runtime::take_logged_error();
        let session = session_builder(env, options).and_then(|mut builder| match source {
            ModelSource::File(path) => builder.commit_from_file(path),
            ModelSource::Memory { bytes, .. } => builder.commit_from_memory(bytes),
        });
        let session = session.map_err(|e| {
            let mut message = format!("cannot load the model with ONNX Runtime: {e}");
            // The returned error can be generic ("Failed to load provider ..."); the reason is
            // in ONNX Runtime's log.
            if let Some(logged) = runtime::take_logged_error() {
                // Past the C++ source location and function ONNX Runtime starts it with.
                let reason = logged.rsplit_once("[ERROR] ").map_or(&*logged, |(_, r)| r);
                let reason = reason.trim();
                if !message.contains(reason) {
                    message = format!("{message} ({reason})");
                }
            }
            InferenceError {
                file: file.clone(),
                message,
            }
        })?;
        Ok(Model {
            session,
            file,
            bound: Vec::new(),
            max_bound: 1,
        })
    }

    /// Runs the session on `inputs` (name, data, shape) and copies output `output` (name,
    /// shape) into `out`, through tensors bound on the first run with these buffers.
    fn run_bound(
        &mut self,
        inputs: &[(&str, &[f32], &[usize])],
        output: (&str, &[usize]),
        out: &mut [f32],
    ) -> Result<(), String> {
        let found = self
            .bound
            .iter()
            .position(|bound| bound.buffers.iter().copied().eq(buffer_key(inputs)));
        match found {
            Some(at) => self.bound[..=at].rotate_right(1),
            None => {
                let bound = self.bind(inputs, output)?;
                self.bound.truncate(self.max_bound - 1);
                self.bound.insert(0, bound);
            }
        }
        let bound = &self.bound[0];
        let outputs = match bound.views.as_slice() {
            [one] => self
                .session
                .run_with_options(ort::inputs![&**one], &bound.options),
            [one, two] => self
                .session
                .run_with_options(ort::inputs![&**one, &**two], &bound.options),
            views => {
                return Err(format!(
                    "{} inputs bound, the models have one or two",
                    views.len()
                ));
            }
        }
        .map_err(|e| format!("inference failed: {e}"))?;
        copy_output(&outputs, output.0, output.1, out)
    }

    /// Makes the views of `inputs` in the session's input order and the output tensor.
    fn bind(
        &self,
        inputs: &[(&str, &[f32], &[usize])],
        (output, output_shape): (&str, &[usize]),
    ) -> Result<Bound, String> {
        let views = self
            .session
            .inputs()
            .iter()
            .map(|declared| {
                let (name, data, shape) = inputs
                    .iter()
                    .find(|(name, ..)| *name == declared.name())
                    .ok_or_else(|| format!("input \"{}\" has no data", declared.name()))?;
                let view = TensorRef::from_array_view((shape.to_vec(), *data))
                    .map_err(|e| format!("input \"{name}\": {e}"))?;
                // SAFETY: only the lifetime changes; see `Bound::views` for how it is kept.
                Ok(unsafe {
                    std::mem::transmute::<TensorRef<'_, f32>, TensorRef<'static, f32>>(view)
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let tensor = Tensor::<f32>::new(&Allocator::default(), output_shape.to_vec())
            .map_err(|e| format!("output \"{output}\": {e}"))?;
        let options = RunOptions::new()
            .map_err(|e| format!("run options: {e}"))?
            .with_outputs(
                OutputSelector::no_default()
                    .with(output)
                    .preallocate(output, tensor),
            );
        Ok(Bound {
            buffers: buffer_key(inputs).collect(),
            views,
            options,
        })
    }

    fn inputs(&self) -> Vec<TensorDecl> {
        self.session.inputs().iter().map(declared).collect()
    }

    fn outputs(&self) -> Vec<TensorDecl> {
        self.session.outputs().iter().map(declared).collect()
    }

    fn error(&self, message: String) -> InferenceError {
        InferenceError {
            file: self.file.clone(),
            message,
        }
    }

    /// The number of items in `len` floats of `item_len` each; at least one, no remainder.
    fn batch_len(&self, what: &str, len: usize, item_len: usize) -> Result<usize, InferenceError> {
        if len == 0 || len % item_len != 0 {
            return Err(self.error(format!(
                "{what}: {len} floats is not a positive multiple of {item_len}"
            )));
        }
        Ok(len / item_len)
    }

    fn check_out_len(
        &self,
        len: usize,
        expected: usize,
        item_len: usize,
    ) -> Result<(), InferenceError> {
        if len != expected {
            return Err(self.error(format!(
                "out: {len} floats, expected {expected} ({} items of {item_len})",
                expected / item_len
            )));
        }
        Ok(())
    }
}

/// `Level3` is ONNX Runtime's layout level (NCHWc convolutions on x86); all that `All` adds on
/// top (ONNX Runtime ≥ 1.22) is folding float16 weights into float32 for the CPU, which float32
/// models never have.
fn session_builder(env: &Environment, options: &SessionOptions) -> ort::Result<SessionBuilder> {
    let acceleration = &options.acceleration;
    let device = acceleration
        .check(CpuFeatures::detect())
        .map_err(ort::Error::new)?;
    let mut builder =
        Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3)?;
    if options.intra_threads > 0 {
        builder = builder.with_intra_threads(options.intra_threads)?;
    }
    acceleration.register(builder, &device, options.intra_threads)
}

fn declared(outlet: &Outlet) -> TensorDecl {
    let (element, dims) = match outlet.dtype() {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => {
            let dims = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d < 0 {
                        Dim::Dynamic(dimension_symbols.get(i).cloned().unwrap_or_default())
                    } else {
                        Dim::Fixed(d)
                    }
                })
                .collect();
            (Some(*ty), dims)
        }
        _ => (None, Vec::new()),
    };
    TensorDecl {
        name: outlet.name().to_owned(),
        element,
        dims,
    }
}

/// Copies output `name` into `out` after checking it has exactly `shape`.
fn copy_output(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    shape: &[usize],
    out: &mut [f32],
) -> Result<(), String> {
    let value: &DynValue = outputs
        .get(name)
        .ok_or_else(|| format!("output \"{name}\" missing from the results"))?;
    let (found, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| format!("output \"{name}\": {e}"))?;
    let shape_matches = found.len() == shape.len()
        && found
            .iter()
            .zip(shape)
            .all(|(&f, &e)| usize::try_from(f) == Ok(e));
    if !shape_matches || data.len() != out.len() {
        let expected: Vec<String> = shape.iter().map(usize::to_string).collect();
        return Err(format!(
            "output \"{name}\": expected shape [{}], the model returned {found}",
            expected.join(",")
        ));
    }
    out.copy_from_slice(data);
    Ok(())
}
