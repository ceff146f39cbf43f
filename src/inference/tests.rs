//! Tests against the real ONNX Runtime (from the project's virtualenv, or `ORT_DYLIB_PATH`) and
//! the small random-weight models `tools/make_test_models.py` writes.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;

use super::*;

const PROJECT: &str = env!("CARGO_MANIFEST_DIR");
/// Set in a child process that runs one test alone (see [`in_fresh_process`]).
const FRESH_PROCESS: &str = "GST_TALKINGHEAD_INFERENCE_FRESH_PROCESS";

/// An empty directory private to this test process, removed when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gst-talkinghead-inference-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory holding every test model (`--all --broken all`), written on first use. It is
/// keyed by a hash of the script, so a changed script writes a new set and runs share the rest.
fn models() -> &'static Path {
    static MODELS: OnceLock<PathBuf> = OnceLock::new();
    MODELS.get_or_init(|| {
        let script = Path::new(PROJECT).join("tools/make_test_models.py");
        let mut hasher = DefaultHasher::new();
        std::fs::read(&script).unwrap().hash(&mut hasher);
        let dir = std::env::temp_dir().join(format!(
            "gst-talkinghead-test-models-{:016x}",
            hasher.finish()
        ));
        let complete = dir.join(".complete");
        if complete.exists() {
            return dir;
        }
        // Written aside and renamed, so a concurrent test process never sees half a set.
        let partial = dir.with_extension(format!("partial-{}", std::process::id()));
        let python = Path::new(PROJECT).join(".venv/bin/python");
        let output = Command::new(&python)
            .arg(&script)
            .args(["--all", "--broken", "all", "--no-check", "--out"])
            .arg(&partial)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (run `make deps`)", python.display()));
        assert!(
            output.status.success(),
            "make_test_models.py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(partial.join(".complete"), b"").unwrap();
        if std::fs::rename(&partial, &dir).is_err() {
            // Another process finished first; its set is the same.
            let _ = std::fs::remove_dir_all(&partial);
            assert!(complete.exists(), "{} is incomplete", dir.display());
        }
        dir
    })
}

/// The element moves sessions into worker threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<AudioEncoder>();
    send::<Generator>();
};

fn model(name: &str) -> PathBuf {
    models().join(format!("{name}.onnx"))
}

fn env() -> &'static Environment {
    let library = find_library(None, Provider::Cpu).unwrap();
    environment(&library).unwrap_or_else(|e| panic!("{e}"))
}

fn one_thread() -> SessionOptions {
    SessionOptions {
        intra_threads: 1,
        ..SessionOptions::default()
    }
}

fn encoder(name: &str, options: &SessionOptions) -> AudioEncoder {
    AudioEncoder::load(&model(name), env(), options).unwrap_or_else(|e| panic!("{e}"))
}

fn generator(name: &str, options: &SessionOptions) -> Generator {
    Generator::load(&model(name), env(), options).unwrap_or_else(|e| panic!("{e}"))
}

/// Reproducible values in [lo, hi) (a 64-bit LCG; the top bits are well mixed).
fn values(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (hi - lo) * (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn mel_windows(n: usize) -> Vec<f32> {
    values(n * MEL_WINDOW_LEN, 1, -4.0, 4.0)
}

fn generator_inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    (
        values(n * IMAGE_LEN, 2, 0.0, 1.0),
        values(n * AUDIO_FEATURES_LEN, 3, 0.0, 10.0),
    )
}

fn run_encoder(encoder: &mut AudioEncoder, windows: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; windows.len() / MEL_WINDOW_LEN * EMBEDDING_LEN];
    encoder
        .run(windows, &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    out
}

fn run_generator(generator: &mut Generator, images: &[f32], audio: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; images.len() / IMAGE_LEN * FACE_LEN];
    generator
        .run(images, audio, &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Runs each item alone and concatenates the results.
fn encoder_one_by_one(encoder: &mut AudioEncoder, windows: &[f32]) -> Vec<f32> {
    windows
        .chunks(MEL_WINDOW_LEN)
        .flat_map(|window| run_encoder(encoder, window))
        .collect()
}

fn generator_one_by_one(generator: &mut Generator, images: &[f32], audio: &[f32]) -> Vec<f32> {
    images
        .chunks(IMAGE_LEN)
        .zip(audio.chunks(AUDIO_FEATURES_LEN))
        .flat_map(|(image, audio)| run_generator(generator, image, audio))
        .collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Batches of 16 and of 4 give each item the bits it gets alone, and a rerun gives the same
/// bits again: the element may batch however it likes without changing a frame. Checked with
/// 1, 2 and 4 intra-op threads, since the thread split could also reorder sums; all three give
/// the same bits, so the element's one encoder thread gives the features any other count would.
#[test]
fn encoder_batches_of_16_and_4_match_single_runs_bit_for_bit() {
    let windows = mel_windows(16);
    let mut first: Option<Vec<f32>> = None;
    for intra_threads in [1, 2, 4] {
        let mut encoder = encoder(
            "audio_encoder",
            &SessionOptions {
                intra_threads,
                ..SessionOptions::default()
            },
        );
        assert!(!encoder.fixed_batch());
        let single = encoder_one_by_one(&mut encoder, &windows);
        let first = first.get_or_insert_with(|| single.clone());
        assert_eq!(
            bits(&single),
            bits(first),
            "{intra_threads} threads against 1: max |difference| = {}",
            max_abs_diff(&single, first)
        );
        assert!(single.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(single.iter().any(|v| *v > 0.0));
        for batch in [16, 4] {
            let batched: Vec<f32> = windows
                .chunks(batch * MEL_WINDOW_LEN)
                .flat_map(|windows| run_encoder(&mut encoder, windows))
                .collect();
            assert_eq!(
                bits(&batched),
                bits(&single),
                "{intra_threads} threads: max |batch {batch} - batch 1| = {}",
                max_abs_diff(&batched, &single)
            );
        }
        assert_eq!(
            bits(&encoder_one_by_one(&mut encoder, &windows)),
            bits(&single)
        );
    }
}

#[test]
fn generator_batches_of_16_and_4_match_single_runs_bit_for_bit() {
    let (images, audio) = generator_inputs(16);
    for intra_threads in [1, 2, 4] {
        let mut generator = generator(
            "generator",
            &SessionOptions {
                intra_threads,
                ..SessionOptions::default()
            },
        );
        assert!(!generator.fixed_batch());
        let single = generator_one_by_one(&mut generator, &images, &audio);
        assert!(single.iter().all(|v| *v > 0.0 && *v < 1.0));
        for batch in [16, 4] {
            let batched: Vec<f32> = images
                .chunks(batch * IMAGE_LEN)
                .zip(audio.chunks(batch * AUDIO_FEATURES_LEN))
                .flat_map(|(images, audio)| run_generator(&mut generator, images, audio))
                .collect();
            assert_eq!(
                bits(&batched),
                bits(&single),
                "{intra_threads} threads: max |batch {batch} - batch 1| = {}",
                max_abs_diff(&batched, &single)
            );
        }
        assert_eq!(
            bits(&generator_one_by_one(&mut generator, &images, &audio)),
            bits(&single)
        );
    }
}

/// The variants share their weights, so a correctly resolved one computes the same bits; the
/// Core ML-style generator lists audio first and the unnamed one is resolved by shape alone,
/// so a swap would show.
#[test]
fn every_name_variant_resolves_and_computes_the_same() {
    let windows = mel_windows(2);
    let expected = run_encoder(&mut encoder("audio_encoder", &one_thread()), &windows);
    for name in [
        "audio_encoder_dc",
        "audio_encoder_wct",
        "audio_encoder_coreml",
    ] {
        let found = run_encoder(&mut encoder(name, &one_thread()), &windows);
        assert_eq!(bits(&found), bits(&expected), "{name}");
    }

    let (images, audio) = generator_inputs(2);
    let expected = run_generator(&mut generator("generator", &one_thread()), &images, &audio);
    for name in ["generator_coreml", "broken_generator-unnamed"] {
        let found = run_generator(&mut generator(name, &one_thread()), &images, &audio);
        assert_eq!(bits(&found), bits(&expected), "{name}");
    }
}

/// Models with the batch fixed to 1 run n = 3 item by item and match the dynamic model.
#[test]
fn fixed_batch_models_loop_over_the_items() {
    let windows = mel_windows(3);
    let mut dynamic = encoder("audio_encoder", &one_thread());
    let expected = encoder_one_by_one(&mut dynamic, &windows);
    for name in ["audio_encoder_b1", "audio_encoder_coreml_b1"] {
        let mut fixed = encoder(name, &one_thread());
        assert!(fixed.fixed_batch(), "{name}");
        let found = run_encoder(&mut fixed, &windows);
        assert_eq!(bits(&found), bits(&expected), "{name}");
    }

    let (images, audio) = generator_inputs(3);
    let mut dynamic = generator("generator", &one_thread());
    let expected = generator_one_by_one(&mut dynamic, &images, &audio);
    for name in ["generator_b1", "generator_coreml_b1"] {
        let mut fixed = generator(name, &one_thread());
        assert!(fixed.fixed_batch(), "{name}");
        let found = run_generator(&mut fixed, &images, &audio);
        assert_eq!(bits(&found), bits(&expected), "{name}");
    }
}

fn encoder_error(path: &Path) -> InferenceError {
    AudioEncoder::load(path, env(), &one_thread()).expect_err("the model should be refused")
}

fn generator_error(path: &Path) -> InferenceError {
    Generator::load(path, env(), &one_thread()).expect_err("the model should be refused")
}

#[test]
fn unreadable_models_are_refused_naming_the_file_and_the_cause() {
    let dir = Scratch::new("unreadable-models");

    let missing = dir.join("missing.onnx");
    let err = encoder_error(&missing);
    assert_eq!(err.file, missing.display().to_string());
    assert!(err.message.contains("No such file"), "{err}");
    assert_eq!(err.to_string(), format!("{}: {}", err.file, err.message));
    assert!(generator_error(&missing).message.contains("No such file"));

    let err = encoder_error(&dir);
    assert!(err.message.contains("not a regular file"), "{err}");

    let truncated = dir.join("truncated.onnx");
    let bytes = std::fs::read(model("audio_encoder")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = encoder_error(&truncated);
    assert_eq!(err.file, truncated.display().to_string());
    assert!(
        err.message
            .starts_with("cannot load the model with ONNX Runtime: "),
        "{err}"
    );

    let text = dir.join("notes.onnx");
    std::fs::write(&text, "not a model\n").unwrap();
    let err = generator_error(&text);
    assert!(
        err.message
            .starts_with("cannot load the model with ONNX Runtime: "),
        "{err}"
    );
}

#[test]
fn models_breaking_the_contract_are_refused_naming_tensor_expected_and_found() {
    let cases = [
        (
            "broken_input-name",
            "no input named \"mel\", \"mel_input\" or \"mel_spectrogram\"; found \
             \"spectrogram\" (another name is accepted only when the model has exactly one \
             input and one output)",
        ),
        (
            "broken_input-dims",
            "input \"mel\": expected [batch,1,80,16], found [batch,1,80,32]",
        ),
        (
            "broken_float16",
            "input \"mel\": expected float32, found float16",
        ),
        (
            "broken_float64",
            "input \"mel\": expected float32, found float64",
        ),
        (
            "broken_output-dims",
            "output \"emb\": expected [batch,512], found [batch,256]",
        ),
        (
            "broken_batch2",
            "input \"mel\": expected [batch,1,80,16] with the batch dynamic or 1, found the \
             batch fixed to 2",
        ),
    ];
    for (name, message) in cases {
        let path = model(name);
        let err = encoder_error(&path);
        assert_eq!(err.file, path.display().to_string());
        assert_eq!(err.message, message, "{name}");
    }
    let err = generator_error(&model("broken_generator-audio-dims"));
    assert_eq!(
        err.message,
        "input \"audio\": expected [batch,32,16,16], found [batch,32,16,32]"
    );
    // Each model is refused in the other role too, by name or by shape.
    let err = generator_error(&model("audio_encoder"));
    assert!(
        err.message.starts_with("cannot tell the image input"),
        "{err}"
    );
    let err = encoder_error(&model("generator"));
    assert!(
        err.message
            .starts_with("no input named \"mel\", \"mel_input\" or \"mel_spectrogram\"; found \"input\", \"audio\""),
        "{err}"
    );
}

#[test]
fn runs_with_wrong_buffer_lengths_are_refused() {
    let mut encoder = encoder("audio_encoder", &one_thread());
    let windows = mel_windows(2);
    let mut out = vec![0.0; 2 * EMBEDDING_LEN];
    let err = encoder.run(&windows[1..], &mut out).unwrap_err();
    assert!(err.message.starts_with("windows: 2559 floats"), "{err}");
    let err = encoder.run(&[], &mut []).unwrap_err();
    assert!(err.message.starts_with("windows: 0 floats"), "{err}");
    let err = encoder.run(&windows, &mut out[1..]).unwrap_err();
    assert_eq!(
        err.message,
        "out: 1023 floats, expected 1024 (2 items of 512)"
    );

    let mut generator = generator("generator", &one_thread());
    let (images, audio) = generator_inputs(1);
    let mut out = vec![0.0; FACE_LEN];
    let err = generator.run(&images, &audio[1..], &mut out).unwrap_err();
    assert_eq!(
        err.message,
        "audio: 8191 floats for 1 images, expected 8192"
    );
    let err = generator.run(&images, &audio, &mut out[1..]).unwrap_err();
    assert!(err.message.starts_with("out: 307199 floats"), "{err}");
}

/// In this process other tests may already have loaded the runtime: whatever the order, the
/// same library gives the same environment, and any other file is refused by name.
#[test]
fn environment_is_shared_and_refuses_a_second_library() {
    let library = find_library(None, Provider::Cpu).unwrap();
    let first = environment(&library).unwrap();
    assert!(std::ptr::eq(first, environment(&library).unwrap()));

    let dir = Scratch::new("second-library");
    let link = dir.join("libonnxruntime.so");
    std::os::unix::fs::symlink(std::fs::canonicalize(&library).unwrap(), &link).unwrap();
    assert!(std::ptr::eq(first, environment(&link).unwrap()));

    let other = dir.join("libother.so");
    std::fs::write(&other, "not a library\n").unwrap();
    let err = environment(&other).unwrap_err();
    assert_eq!(err.file, other.display().to_string());
    assert!(
        err.message
            .starts_with("ONNX Runtime is already loaded in this process from "),
        "{err}"
    );

    let missing = dir.join("missing.so");
    let err = environment(&missing).unwrap_err();
    assert!(err.message.contains("No such file"), "{err}");
}

/// Runs the calling test alone in a new process of this test binary, where nothing has loaded
/// ONNX Runtime yet. Returns true inside that process; in the parent, waits for it and fails if
/// it failed.
fn in_fresh_process(test: &str) -> bool {
    if std::env::var_os(FRESH_PROCESS).is_some() {
        return true;
    }
    let module = module_path!().split_once("::").unwrap().1;
    let name = format!("{module}::{test}");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([&name, "--exact", "--nocapture", "--test-threads=1"])
        .env(FRESH_PROCESS, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a fresh process:\n{stdout}\n{stderr}"
    );
    false
}

/// First loads that fail (no file, not a library, a library without the ONNX Runtime API) leave
/// the process free to load the real one; after that, only the real one is accepted.
#[test]
fn failed_library_loads_leave_the_process_free_to_load_one() {
    if !in_fresh_process("failed_library_loads_leave_the_process_free_to_load_one") {
        return;
    }
    let dir = Scratch::new("fresh-process");
    let library = find_library(None, Provider::Cpu).unwrap();

    let missing = dir.join("libonnxruntime.so.1.99.0");
    let err = environment(&missing).unwrap_err();
    assert_eq!(err.file, missing.display().to_string());
    assert!(err.message.contains("No such file"), "{err}");

    let text = dir.join("libonnxruntime.so");
    std::fs::write(&text, "not a library\n").unwrap();
    let err = environment(&text).unwrap_err();
    assert_eq!(err.file, text.display().to_string());
    assert!(
        err.message
            .starts_with("cannot load the ONNX Runtime library: "),
        "{err}"
    );

    let sibling = library.with_file_name("libonnxruntime_providers_shared.so");
    if sibling.exists() {
        let err = environment(&sibling).unwrap_err();
        assert_eq!(
            err.message,
            "not an ONNX Runtime library: it does not export OrtGetApiBase"
        );
    }

    let env = environment(&library).unwrap_or_else(|e| panic!("{e}"));
    assert!(std::ptr::eq(env, environment(&library).unwrap()));
    let err = environment(&text).unwrap_err();
    assert!(err.message.contains("already loaded"), "{err}");
    let mut encoder = AudioEncoder::load(&model("audio_encoder"), env, &one_thread()).unwrap();
    run_encoder(&mut encoder, &mel_windows(1));
}
