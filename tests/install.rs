//! `make install` and `make uninstall`, as a user would run them: for the user (a temporary
//! `HOME`) and with `DESTDIR`. The installed plugin is used from another folder with no
//! `GST_PLUGIN_PATH` or `ORT_DYLIB_PATH`: GStreamer finds it, and it finds the ONNX Runtime
//! installed beside it, never the checkout's. Uninstalling leaves the folders as they were.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scripts::{Scratch, root, run};

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            paths.push(entry.path());
        }
    }
    paths.sort();
    paths
}

/// `make TARGET` in the checkout, with `home` as `HOME` (the toolchain stays where it is).
fn make(target: &str, home: &Path, extra: &[&str]) {
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let toolchain = |variable: &str, default: &str| {
        std::env::var_os(variable).unwrap_or_else(|| real_home.join(default).into_os_string())
    };
    run(Command::new("make")
        .arg("--no-print-directory")
        .arg(target)
        .args(extra)
        .current_dir(root())
        .env("HOME", home)
        .env("RUSTUP_HOME", toolchain("RUSTUP_HOME", ".rustup"))
        .env("CARGO_HOME", toolchain("CARGO_HOME", ".cargo"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("GST_PLUGIN_PATH")
        .env_remove("GST_REGISTRY"));
}

/// A GStreamer tool run from `cwd` as a user of the installed plugin: `HOME` is `home`, no
/// `GST_PLUGIN_PATH` unless given, no `ORT_DYLIB_PATH`, the registry made afresh in `cwd`.
fn gst(tool: &str, args: &[&str], cwd: &Path, home: &Path, plugin_path: Option<&Path>) -> String {
    let mut command = Command::new(tool);
    command
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("GST_REGISTRY", cwd.join("registry.bin"))
        .env("GST_DEBUG", "talkinghead:4")
        .env("GST_DEBUG_NO_COLOR", "1")
        .env_remove("GST_PLUGIN_PATH")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("VIRTUAL_ENV")
        .env_remove("XDG_DATA_HOME");
    if let Some(path) = plugin_path {
        command.env("GST_PLUGIN_PATH", path);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{tool} {args:?}: {text}");
    text
}

/// Renders the bundled speech to an MP4 with the installed plugin; its log line naming the ONNX
/// Runtime library.
fn render(cwd: &Path, home: &Path, plugin_path: Option<&Path>) -> String {
    std::fs::copy(
        root().join("models/demo/speech.wav"),
        cwd.join("speech.wav"),
    )
    .unwrap();
    let log = gst(
        "gst-launch-1.0",
        &[
            "-q",
            "filesrc",
            "location=speech.wav",
            "!",
            "wavparse",
            "!",
            "audioconvert",
            "!",
            "audioresample",
            "!",
            "talkinghead",
            "!",
            "videoconvert",
            "!",
            "x264enc",
            "speed-preset=ultrafast",
            "!",
            "mp4mux",
            "!",
            "filesink",
            "location=out.mp4",
        ],
        cwd,
        home,
        plugin_path,
    );
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(cwd.join("out.mp4"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&frames.stdout).trim(),
        "250",
        "frames in the MP4"
    );
    log.lines()
        .find_map(|line| line.split_once(" on ONNX Runtime ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no models loaded: {log}"))
        .to_owned()
}

#[test]
fn a_user_install_runs_without_the_checkout_and_uninstalls_cleanly() {
    let home = Scratch::new("install-home");
    let elsewhere = Scratch::new("install-elsewhere");
    let before = tree(&home.0);
    make("install", &home.0, &[]);
    let plugins = home.join(".local/share/gstreamer-1.0/plugins");
    assert!(plugins.join("libgsttalkinghead.so").is_file());

    let inspect = gst(
        "gst-inspect-1.0",
        &["talkinghead"],
        &elsewhere.0,
        &home.0,
        None,
    );
    assert!(inspect.contains("Talking head"), "{inspect}");
    let library = render(&elsewhere.0, &home.0, None);
    assert_eq!(
        Path::new(&library).parent().unwrap(),
        home.join(".local/share/gstreamer-1.0/gst-talkinghead/onnxruntime"),
        "the ONNX Runtime installed beside the plugin"
    );

    make("uninstall", &home.0, &[]);
    assert_eq!(tree(&home.0), before, "what uninstall left");
}

#[test]
fn a_destdir_install_goes_where_pkg_config_says() {
    let home = Scratch::new("install-destdir-home");
    let destdir = Scratch::new("install-destdir");
    let elsewhere = Scratch::new("install-destdir-elsewhere");
    let output = Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gstreamer-1.0"])
        .output()
        .unwrap();
    let system = String::from_utf8(output.stdout).unwrap();
    let plugins = destdir.0.join(system.trim().trim_start_matches('/'));
    let before = tree(&destdir.0);
    make(
        "install",
        &home.0,
        &[&format!("DESTDIR={}", destdir.0.display())],
    );
    assert!(plugins.join("libgsttalkinghead.so").is_file());
    // Where the system would scan it once the files are in place.
    let library = render(&elsewhere.0, &home.0, Some(&plugins));
    assert_eq!(
        Path::new(&library).parent().unwrap(),
        plugins
            .parent()
            .unwrap()
            .join("gst-talkinghead/onnxruntime")
    );
    make(
        "uninstall",
        &home.0,
        &[&format!("DESTDIR={}", destdir.0.display())],
    );
    assert_eq!(tree(&destdir.0), before);
}
