//! Execution providers with the default ONNX Runtime build, the CPU-only `onnxruntime` package:
//! what it cannot run is refused by name when the element starts, never run on the CPU instead,
//! and `stats` says where the generator runs.

mod common;

use std::path::PathBuf;

use common::{init, start_error};
use gst::prelude::*;
use gsttalkinghead::inference::{self, CpuFeatures, Provider};

/// The CPU-only library, loaded in this process before the test goes on: a process loads one.
fn cpu_library() -> PathBuf {
    let library = inference::find_library(None, Provider::Cpu).unwrap();
    inference::environment(&library).unwrap_or_else(|e| panic!("{e}"));
    library
}

fn assert_mentions(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "{part:?} is not in: {error}");
    }
}

fn error_with(properties: &[(&str, &str)]) -> String {
    let properties: Vec<(&str, String)> = properties
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect();
    start_error(&properties)
}

#[test]
fn cuda_is_refused_by_name_on_this_machine() {
    let library = cpu_library();
    let err = error_with(&[("execution-provider", "cuda")]);
    assert_mentions(
        &err,
        &[
            "Cannot load the models",
            &library.display().to_string(),
            "execution-provider=cuda",
            "has no CUDAExecutionProvider (it has cpu)",
            "onnxruntime-gpu",
        ],
    );
}

#[test]
fn tensorrt_is_refused_by_the_cpu_only_library() {
    let library = cpu_library();
    let err = error_with(&[
        ("execution-provider", "tensorrt"),
        ("ort-library", library.to_str().unwrap()),
    ]);
    assert_mentions(
        &err,
        &[
            &library.display().to_string(),
            "execution-provider=tensorrt",
            "has no TensorrtExecutionProvider",
            "onnxruntime-gpu",
        ],
    );
}

#[test]
fn openvino_is_refused_without_its_library() {
    cpu_library();
    let missing = std::env::temp_dir().join(format!(
        "talkinghead-no-openvino-{}/libonnxruntime.so.1.24.1",
        std::process::id()
    ));
    let err = error_with(&[
        ("execution-provider", "openvino"),
        ("ort-library", missing.to_str().unwrap()),
    ]);
    assert_mentions(
        &err,
        &[
            &missing.display().to_string(),
            "cannot open the ONNX Runtime library",
        ],
    );

    // Unset, the library this process already loaded is the one: it has no OpenVINO.
    let err = error_with(&[("execution-provider", "openvino")]);
    assert_mentions(
        &err,
        &[
            "execution-provider=openvino",
            "has no OpenVINOExecutionProvider",
            "onnxruntime-openvino",
            "loaded once per process",
        ],
    );
}

#[test]
fn precisions_and_devices_a_provider_cannot_honour_are_refused() {
    type Properties<'a> = &'a [(&'a str, &'a str)];
    let refused: &[(Properties, &[&str])] = &[
        (
            &[("precision", "bf16")],
            &["precision=bf16 on execution-provider=cpu:"],
        ),
        (
            &[("precision", "fp16")],
            &["precision=fp16 on execution-provider=cpu:"],
        ),
        (
            &[("execution-provider", "cuda"), ("precision", "fp16")],
            &["precision=fp16 on execution-provider=cuda:", "tensorrt"],
        ),
        (
            &[("execution-provider", "tensorrt"), ("precision", "bf16")],
            &["precision=bf16 on execution-provider=tensorrt:"],
        ),
        (
            &[
                ("execution-provider", "openvino"),
                ("device", "GPU"),
                ("precision", "bf16"),
            ],
            &["precision=bf16 on execution-provider=openvino device=GPU:"],
        ),
        (
            &[("device", "GPU")],
            &["device=GPU: execution-provider=cpu", "unset it"],
        ),
        (
            &[("execution-provider", "cuda"), ("device", "GPU")],
            &["device=GPU: execution-provider=cuda takes a CUDA device number"],
        ),
    ];
    for (properties, parts) in refused {
        let err = error_with(properties);
        assert_mentions(&err, &["Cannot run the models"]);
        assert_mentions(&err, parts);
    }
    // fp16 through OpenVINO on a CPU: refused where the CPU has no fp16 instructions, as on the
    // machines this project is measured on.
    if !CpuFeatures::detect().fp16 {
        let err = error_with(&[("execution-provider", "openvino"), ("precision", "fp16")]);
        assert_mentions(
            &err,
            &[
                "precision=fp16 on execution-provider=openvino:",
                "no fp16 instructions",
            ],
        );
    }
}

#[test]
fn stats_say_where_the_generator_runs() {
    init();
    let pipeline = gst::parse::launch(
        "audiotestsrc num-buffers=4 ! talkinghead name=head ! fakesink name=sink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let head = pipeline.by_name("head").unwrap();
    let runs_on = |head: &gst::Element| {
        let stats = head.property::<gst::Structure>("stats");
        ["execution-provider", "device", "precision"]
            .map(|field| stats.get::<String>(field).unwrap())
    };
    assert_eq!(runs_on(&head), ["none", "none", "none"]);
    // The built-in demo avatar's models; the stats stay after the stop.
    common::run_to_end(&pipeline).unwrap();
    assert_eq!(runs_on(&head), ["cpu", "CPU", "fp32"]);
    let stats = head.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<bool>("generator-quantized"), Ok(false));
}
