//! `tools/quantize.py` end to end on the small test models and the demo avatar: it writes an
//! INT8 (QDQ) generator that passes its gate, refuses one under a gate it cannot pass, and the
//! element runs the INT8 generator as any other, frame for frame as the reference does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::parity::{Subject, assert_matches, element_frames_of, models, reference_frames_of};
use common::scripts::{Scratch, python, root};

/// Runs the tool on the test models, writing `out`; its output.
fn quantize(out: &Path, args: &[&str]) -> Output {
    let (encoder, generator) = models();
    Command::new(python())
        .arg(root().join("tools/quantize.py"))
        .arg("--generator")
        .arg(generator)
        .arg("--audio-encoder")
        .arg(encoder)
        .arg("--avatar")
        .arg(root().join("models/demo"))
        .arg("--out")
        .arg(out)
        .args(["--threads", "1", "--speed-rounds", "1"])
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The INT8 generator of the test models, made once.
fn int8_generator(scratch: &Scratch) -> PathBuf {
    let out = scratch.join("generator_int8.onnx");
    let output = quantize(&out, &[]);
    let log = text(&output);
    assert!(output.status.success(), "quantize.py failed:\n{log}");
    assert!(out.is_file(), "no model written:\n{log}");
    // the held-out PSNR it passed by, and the line to use it with
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("held-out PSNR"), "{stdout}");
    assert!(
        stdout.contains(&format!("generator={}", out.display())),
        "no element line:\n{stdout}"
    );
    out
}

#[test]
fn the_gate_refuses_a_model_under_it_and_names_the_costly_layers() {
    let scratch = Scratch::new("quantize-refused");
    let out = scratch.join("refused.onnx");
    // 8-bit steps of the output alone cap the PSNR at about 59 dB
    let output = quantize(&out, &["--gate", "60"]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(!out.exists(), "a model under the gate was written:\n{log}");
    assert!(
        log.contains("is under the gate of 60.00 dB by"),
        "no shortfall in:\n{log}"
    );
    assert!(
        log.contains("layers that cost the most") && log.contains("in float alone"),
        "no layers named in:\n{log}"
    );
}

#[test]
fn the_element_runs_an_int8_generator_as_the_reference_does() {
    let scratch = Scratch::new("quantize-element");
    let generator = int8_generator(&scratch);
    let subject = Subject {
        avatar: root().join("models/demo"),
        models: Some((models().0.clone(), generator)),
    };
    let clip = root().join("models/demo/speech.wav");
    let (ours, stats) = element_frames_of(&clip, &subject, "batch-size=8 silence-threshold=-200");
    assert_eq!(stats.get::<bool>("generator-quantized"), Ok(true));
    assert_eq!(stats.get::<u64>("frames-inferred"), Ok(250));
    let single = element_frames_of(&clip, &subject, "batch-size=1 silence-threshold=-200").0;
    for (n, (a, b)) in single.frames.iter().zip(&ours.frames).enumerate() {
        assert!(a == b, "frame {n} differs between batch 1 and 8");
    }
    let reference = reference_frames_of(&clip, &subject);
    let avatar = gsttalkinghead::avatar::Avatar::load(&gsttalkinghead::avatar::Source::Folder(
        root().join("models/demo"),
    ))
    .unwrap();
    assert_matches(&ours, &reference, &avatar);
}
