//! The tensor contract of the two SyncTalk_2D models, checked against what a model declares.
//!
//! Exports of the same network name their tensors differently (spec §2.1, §3.3), so names are
//! resolved from a list of known spellings, with a fallback by count or by shape. Pure: no ONNX
//! Runtime calls, so the rules are tested without a model.

use std::fmt;

use ort::value::TensorElementType;

// The tensor sizes, each defined once where the data is made: the mel windows and the feature
// windows in `audio::features`, the images and faces in `compose`.
/// Floats in one audio embedding.
pub use crate::audio::features::EMBEDDING_LEN;
/// Floats in one encoder input window: [1, 80, 16] (mel bins × mel frames).
pub use crate::audio::features::ENCODER_INPUT_LEN as MEL_WINDOW_LEN;
/// Floats in one generator audio input: [32, 16, 16] (16 embeddings reshaped).
pub use crate::audio::features::FRAME_WINDOW_LEN as AUDIO_FEATURES_LEN;
/// Floats in one generator image input: [6, 320, 320] (reference crop + masked crop).
pub use crate::compose::INPUT_LEN as IMAGE_LEN;
/// Floats in one generated face: [3, 320, 320].
pub use crate::compose::OUTPUT_LEN as FACE_LEN;

pub(super) const MEL_DIMS: [i64; 3] = [1, 80, 16];
pub(super) const EMBEDDING_DIMS: [i64; 1] = [512];
pub(super) const IMAGE_DIMS: [i64; 3] = [6, 320, 320];
pub(super) const AUDIO_FEATURES_DIMS: [i64; 3] = [32, 16, 16];
pub(super) const FACE_DIMS: [i64; 3] = [3, 320, 320];

const MEL_NAMES: &[&str] = &["mel", "mel_input", "mel_spectrogram"];
const EMBEDDING_NAMES: &[&str] = &["emb", "features", "audio_features"];
const IMAGE_NAMES: &[&str] = &["input", "visual_input"];
const AUDIO_NAMES: &[&str] = &["audio", "audio_input"];
const FACE_NAMES: &[&str] = &["output"];

/// One dimension as a model declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Dim {
    Fixed(i64),
    /// Dynamic, with its symbolic name ("" when the model gives none).
    Dynamic(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(symbol) if symbol.is_empty() => f.write_str("?"),
            Dim::Dynamic(symbol) => f.write_str(symbol),
        }
    }
}

/// A model input or output as declared in the model.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TensorDecl {
    pub name: String,
    /// `None` when the value is not a tensor (a sequence, a map, …).
    pub element: Option<TensorElementType>,
    pub dims: Vec<Dim>,
}

/// Which of a model's inputs and outputs play which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EncoderIo {
    pub mel: String,
    pub embedding: String,
    /// The batch dimension is fixed to 1: the model runs one window at a time.
    pub fixed_batch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GeneratorIo {
    pub image: String,
    pub audio: String,
    pub face: String,
    pub fixed_batch: bool,
}

pub(super) fn encoder_io(
    inputs: &[TensorDecl],
    outputs: &[TensorDecl],
) -> Result<EncoderIo, String> {
    let single_pair = inputs.len() == 1 && outputs.len() == 1;
    let mel = by_name(inputs, MEL_NAMES)
        .or_else(|| single_pair.then_some(0))
        .ok_or_else(|| {
            format!(
                "no input named {}; found {} (another name is accepted only when the model has \
                 exactly one input and one output)",
                alternatives(MEL_NAMES),
                listing(inputs)
            )
        })?;
    let embedding = resolve_output(outputs, EMBEDDING_NAMES)?;
    let mel_batch = check_tensor("input", &inputs[mel], &MEL_DIMS)?;
    let embedding_batch = check_tensor("output", &outputs[embedding], &EMBEDDING_DIMS)?;
    Ok(EncoderIo {
        mel: inputs[mel].name.clone(),
        embedding: outputs[embedding].name.clone(),
        fixed_batch: mel_batch == Batch::One || embedding_batch == Batch::One,
    })
}

pub(super) fn generator_io(
    inputs: &[TensorDecl],
    outputs: &[TensorDecl],
) -> Result<GeneratorIo, String> {
    let (image, audio) = match (by_name(inputs, IMAGE_NAMES), by_name(inputs, AUDIO_NAMES)) {
        (Some(image), Some(audio)) => (image, audio),
        // Names no one maps (e.g. a raw torch export's "x.1"): the channel count tells the two
        // inputs apart, whatever their order.
        _ => by_channels(inputs).ok_or_else(|| {
            format!(
                "cannot tell the image input ({}) from the audio input ({}); found {} and, going \
                 by shape instead, did not find exactly two rank-4 inputs with 6 and 32 channels",
                alternatives(IMAGE_NAMES),
                alternatives(AUDIO_NAMES),
                listing(inputs)
            )
        })?,
    };
    let face = resolve_output(outputs, FACE_NAMES)?;
    let batches = [
        check_tensor("input", &inputs[image], &IMAGE_DIMS)?,
        check_tensor("input", &inputs[audio], &AUDIO_FEATURES_DIMS)?,
        check_tensor("output", &outputs[face], &FACE_DIMS)?,
    ];
    Ok(GeneratorIo {
        image: inputs[image].name.clone(),
        audio: inputs[audio].name.clone(),
        face: outputs[face].name.clone(),
        fixed_batch: batches.contains(&Batch::One),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    Dynamic,
    One,
}

/// Checks a float32 tensor of shape [batch, item_dims…], the batch dynamic or 1.
fn check_tensor(role: &str, decl: &TensorDecl, item_dims: &[i64]) -> Result<Batch, String> {
    let expected = || {
        let dims: Vec<String> = item_dims.iter().map(i64::to_string).collect();
        format!("[batch,{}]", dims.join(","))
    };
    let found = || {
        let dims: Vec<String> = decl.dims.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(","))
    };
    let tensor_error = |what: String| format!("{role} \"{}\": {what}", decl.name);

    let element = decl.element.ok_or_else(|| {
        tensor_error("expected a float32 tensor, found a non-tensor value".into())
    })?;
    if element != TensorElementType::Float32 {
        return Err(tensor_error(format!(
            "expected float32, found {}",
            element_name(element)
        )));
    }
    let Some((batch, rest)) = decl.dims.split_first() else {
        return Err(tensor_error(format!(
            "expected {}, found {}",
            expected(),
            found()
        )));
    };
    let items_match = rest.len() == item_dims.len()
        && rest
            .iter()
            .zip(item_dims)
            .all(|(d, &e)| *d == Dim::Fixed(e));
    if !items_match {
        return Err(tensor_error(format!(
            "expected {}, found {}",
            expected(),
            found()
        )));
    }
    match batch {
        Dim::Dynamic(_) => Ok(Batch::Dynamic),
        Dim::Fixed(1) => Ok(Batch::One),
        Dim::Fixed(n) => Err(tensor_error(format!(
            "expected {} with the batch dynamic or 1, found the batch fixed to {n}",
            expected()
        ))),
    }
}

fn resolve_output(outputs: &[TensorDecl], accepted: &[&str]) -> Result<usize, String> {
    by_name(outputs, accepted)
        .or_else(|| (outputs.len() == 1).then_some(0))
        .ok_or_else(|| {
            format!(
                "no output named {}; found {} (another name is accepted only when the model has \
                 exactly one output)",
                alternatives(accepted),
                listing(outputs)
            )
        })
}

fn by_name(decls: &[TensorDecl], accepted: &[&str]) -> Option<usize> {
    decls
        .iter()
        .position(|d| accepted.contains(&d.name.as_str()))
}

/// (image, audio) positions when there are exactly two rank-4 inputs with 6 and 32 channels.
fn by_channels(inputs: &[TensorDecl]) -> Option<(usize, usize)> {
    let channels = |d: &TensorDecl| match d.dims.as_slice() {
        [_, Dim::Fixed(c), _, _] => Some(*c),
        _ => None,
    };
    match inputs {
        [a, b] => match (channels(a)?, channels(b)?) {
            (6, 32) => Some((0, 1)),
            (32, 6) => Some((1, 0)),
            _ => None,
        },
        _ => None,
    }
}

fn alternatives(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn listing(decls: &[TensorDecl]) -> String {
    if decls.is_empty() {
        return "none".into();
    }
    let quoted: Vec<String> = decls.iter().map(|d| format!("\"{}\"", d.name)).collect();
    quoted.join(", ")
}

/// ONNX's spelling of an element type, as people read it in Netron or onnx.helper.
fn element_name(element: TensorElementType) -> String {
    match element {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float16 => "float16".into(),
        TensorElementType::Float64 => "float64".into(),
        TensorElementType::Bfloat16 => "bfloat16".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, dims: &[i64]) -> TensorDecl {
        TensorDecl {
            name: name.into(),
            element: Some(TensorElementType::Float32),
            dims: dims
                .iter()
                .map(|&d| {
                    if d < 0 {
                        Dim::Dynamic("batch".into())
                    } else {
                        Dim::Fixed(d)
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn encoder_names_resolve_by_spelling_then_by_count() {
        for (input, output) in [
            ("mel", "emb"),
            ("mel_input", "features"),
            ("mel_spectrogram", "audio_features"),
            ("x", "var_242"),
        ] {
            let io = encoder_io(
                &[decl(input, &[-1, 1, 80, 16])],
                &[decl(output, &[-1, 512])],
            )
            .unwrap();
            assert_eq!((io.mel.as_str(), io.embedding.as_str()), (input, output));
            assert!(!io.fixed_batch);
        }
        let io = encoder_io(
            &[decl("mel", &[1, 1, 80, 16])],
            &[decl("other", &[1, 512]), decl("emb", &[1, 512])],
        )
        .unwrap();
        assert_eq!(io.embedding, "emb");
        assert!(io.fixed_batch);
    }

    #[test]
    fn encoder_name_errors_list_found_and_accepted() {
        let err = encoder_io(
            &[decl("x", &[-1, 1, 80, 16])],
            &[decl("a", &[-1, 512]), decl("b", &[-1, 1])],
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "no input named \"mel\", \"mel_input\" or \"mel_spectrogram\"; found \"x\""
            ),
            "{err}"
        );
        let err = encoder_io(
            &[decl("mel", &[-1, 1, 80, 16])],
            &[decl("a", &[-1, 512]), decl("b", &[-1, 1])],
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "no output named \"emb\", \"features\" or \"audio_features\"; found \"a\", \"b\""
            ),
            "{err}"
        );
    }

    #[test]
    fn shape_errors_show_expected_and_found() {
        let outputs = [decl("emb", &[-1, 512])];
        let err = encoder_io(&[decl("mel", &[-1, 1, 80, 32])], &outputs).unwrap_err();
        assert_eq!(
            err,
            "input \"mel\": expected [batch,1,80,16], found [batch,1,80,32]"
        );
        let err = encoder_io(&[decl("mel", &[1, 80, 16])], &outputs).unwrap_err();
        assert_eq!(
            err,
            "input \"mel\": expected [batch,1,80,16], found [1,80,16]"
        );
        let err = encoder_io(&[decl("mel", &[4, 1, 80, 16])], &outputs).unwrap_err();
        assert_eq!(
            err,
            "input \"mel\": expected [batch,1,80,16] with the batch dynamic or 1, found the \
             batch fixed to 4"
        );
        let mut unnamed = decl("mel", &[-1, 1, 80, 16]);
        unnamed.dims[0] = Dim::Dynamic(String::new());
        unnamed.dims[3] = Dim::Fixed(15);
        let err = encoder_io(&[unnamed], &outputs).unwrap_err();
        assert_eq!(
            err,
            "input \"mel\": expected [batch,1,80,16], found [?,1,80,15]"
        );
        let err =
            encoder_io(&[decl("mel", &[-1, 1, 80, 16])], &[decl("emb", &[-1, 256])]).unwrap_err();
        assert_eq!(
            err,
            "output \"emb\": expected [batch,512], found [batch,256]"
        );
    }

    #[test]
    fn element_type_errors_name_both_types() {
        let outputs = [decl("emb", &[-1, 512])];
        for (element, name) in [
            (TensorElementType::Float16, "float16"),
            (TensorElementType::Float64, "float64"),
            (TensorElementType::Uint8, "u8"),
        ] {
            let mut mel = decl("mel", &[-1, 1, 80, 16]);
            mel.element = Some(element);
            let err = encoder_io(&[mel], &outputs).unwrap_err();
            assert_eq!(
                err,
                format!("input \"mel\": expected float32, found {name}")
            );
        }
        let mut mel = decl("mel", &[-1, 1, 80, 16]);
        mel.element = None;
        let err = encoder_io(&[mel], &outputs).unwrap_err();
        assert!(err.contains("non-tensor"), "{err}");
    }

    #[test]
    fn generator_inputs_resolve_by_name_or_by_channels() {
        let image = |name: &str| decl(name, &[-1, 6, 320, 320]);
        let audio = |name: &str| decl(name, &[-1, 32, 16, 16]);
        let face = |name: &str| decl(name, &[-1, 3, 320, 320]);

        let io = generator_io(&[image("input"), audio("audio")], &[face("output")]).unwrap();
        assert_eq!((io.image.as_str(), io.audio.as_str()), ("input", "audio"));
        assert!(!io.fixed_batch);

        let io = generator_io(
            &[audio("audio_input"), image("visual_input")],
            &[face("var_1677")],
        )
        .unwrap();
        assert_eq!(
            (io.image.as_str(), io.audio.as_str(), io.face.as_str()),
            ("visual_input", "audio_input", "var_1677")
        );

        let io = generator_io(&[audio("a.1"), image("x.1")], &[face("y")]).unwrap();
        assert_eq!((io.image.as_str(), io.audio.as_str()), ("x.1", "a.1"));

        let err = generator_io(&[image("a"), image("b")], &[face("y")]).unwrap_err();
        assert!(
            err.starts_with(
                "cannot tell the image input (\"input\" or \"visual_input\") from the audio \
                 input (\"audio\" or \"audio_input\"); found \"a\", \"b\""
            ),
            "{err}"
        );
    }

    #[test]
    fn generator_checks_every_tensor_and_any_fixed_batch_fixes_it() {
        let inputs = [
            decl("input", &[1, 6, 320, 320]),
            decl("audio", &[-1, 32, 16, 16]),
        ];
        let io = generator_io(&inputs, &[decl("output", &[-1, 3, 320, 320])]).unwrap();
        assert!(io.fixed_batch);

        let inputs = [
            decl("input", &[-1, 6, 320, 320]),
            decl("audio", &[-1, 32, 16, 32]),
        ];
        let err = generator_io(&inputs, &[decl("output", &[-1, 3, 320, 320])]).unwrap_err();
        assert_eq!(
            err,
            "input \"audio\": expected [batch,32,16,16], found [batch,32,16,32]"
        );
        let inputs = [
            decl("input", &[-1, 6, 320, 320]),
            decl("audio", &[-1, 32, 16, 16]),
        ];
        let err = generator_io(&inputs, &[decl("output", &[-1, 3, 160, 160])]).unwrap_err();
        assert_eq!(
            err,
            "output \"output\": expected [batch,3,320,320], found [batch,3,160,160]"
        );
    }
}
