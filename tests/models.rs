//! Wrong models and a missing ONNX Runtime library stop the element at the state change, with a
//! message that names the file and what is wrong.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::start_error;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Good and broken test models, made once per run.
fn models() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("talkinghead-models-{}", std::process::id()));
        let python = root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{python:?} is missing: `make test` sets it up"
        );
        for extra in [&[][..], &["--broken", "all"][..]] {
            let status = Command::new(&python)
                .arg(root().join("tools/make_test_models.py"))
                .arg("--out")
                .arg(&dir)
                .arg("--no-check")
                .args(extra)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let onnx = std::fs::read(dir.join("generator.onnx")).unwrap();
        std::fs::write(dir.join("truncated.onnx"), &onnx[..onnx.len() / 2]).unwrap();
        std::fs::write(dir.join("not-onnx.onnx"), "not a model\n").unwrap();
        dir
    })
}

fn with_models(encoder: &str, generator: &str) -> String {
    let dir = models();
    start_error(&[
        ("audio-encoder", dir.join(encoder).display().to_string()),
        ("generator", dir.join(generator).display().to_string()),
    ])
}

fn assert_mentions(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "{part:?} is not in: {error}");
    }
}

#[test]
fn unreadable_models_are_named() {
    let err = with_models("audio_encoder.onnx", "missing.onnx");
    assert_mentions(&err, &["missing.onnx", "No such file"]);
    let err = with_models("audio_encoder.onnx", "truncated.onnx");
    assert_mentions(&err, &["truncated.onnx", "cannot load the model"]);
    let err = with_models("not-onnx.onnx", "generator.onnx");
    assert_mentions(&err, &["not-onnx.onnx", "cannot load the model"]);
}

#[test]
fn models_breaking_the_contract_are_named_with_the_tensor() {
    let err = with_models("broken_input-name.onnx", "generator.onnx");
    assert_mentions(
        &err,
        &["broken_input-name.onnx", "\"spectrogram\"", "\"mel\""],
    );
    let err = with_models("broken_input-dims.onnx", "generator.onnx");
    assert_mentions(
        &err,
        &[
            "broken_input-dims.onnx",
            "[batch,1,80,16]",
            "[batch,1,80,32]",
        ],
    );
    let err = with_models("broken_input-rank.onnx", "generator.onnx");
    assert_mentions(
        &err,
        &[
            "broken_input-rank.onnx",
            "input \"mel\": expected [batch,1,80,16], found [batch,80,16]",
        ],
    );
    let err = with_models("broken_float16.onnx", "generator.onnx");
    assert_mentions(&err, &["broken_float16.onnx", "float32", "float16"]);
    let err = with_models("audio_encoder.onnx", "broken_generator-audio-dims.onnx");
    assert_mentions(&err, &["broken_generator-audio-dims.onnx", "audio"]);
}

#[test]
fn one_model_alone_is_refused() {
    let err = start_error(&[(
        "generator",
        models().join("generator.onnx").display().to_string(),
    )]);
    assert_mentions(&err, &["generator.onnx", "no audio encoder"]);
}

#[test]
fn a_missing_onnx_runtime_library_is_named() {
    let dir = models();
    let err = start_error(&[
        (
            "audio-encoder",
            dir.join("audio_encoder.onnx").display().to_string(),
        ),
        (
            "generator",
            dir.join("generator.onnx").display().to_string(),
        ),
        ("ort-library", "/nonexistent/libonnxruntime.so".into()),
    ]);
    assert_mentions(&err, &["/nonexistent/libonnxruntime.so"]);
}
