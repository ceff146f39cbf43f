//! Shared set-up for the integration tests: the plugin registered from this build.
#![allow(dead_code)]

pub mod browser;
pub mod memory;
pub mod parity;
pub mod scripts;

use std::sync::Once;

pub const AUDIO_CAPS: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";
pub const SAMPLE_RATE: u64 = 16_000;
pub const FRAME_NS: u64 = 40_000_000;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gsttalkinghead::plugin_register_static().expect("registering the talkinghead plugin");
    });
}

/// A buffer of `samples` S16LE samples of silence starting at sample `offset` of the stream.
pub fn audio_buffer(offset: u64, samples: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![0u8; 2 * samples as usize]);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_nseconds(
            offset * 1_000_000_000 / SAMPLE_RATE,
        ));
        buffer.set_duration(gst::ClockTime::from_nseconds(
            samples * 1_000_000_000 / SAMPLE_RATE,
        ));
    }
    buffer
}

/// Runs `pipeline` to EOS and returns the first error message, if any.
pub fn run_to_end(pipeline: &gst::Pipeline) -> Result<(), String> {
    use gst::prelude::*;

    let bus = pipeline.bus().unwrap();
    let result = match pipeline.set_state(gst::State::Playing) {
        Err(_) => Err(first_error(&bus).unwrap_or_else(|| "state change failed".into())),
        Ok(_) => {
            let message = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_seconds(120),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                )
                .expect("pipeline neither finished nor failed within 120 s");
            match message.view() {
                gst::MessageView::Error(err) => Err(err.error().to_string()),
                _ => Ok(()),
            }
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

pub fn first_error(bus: &gst::Bus) -> Option<String> {
    bus.iter_timed_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Error])
        .find_map(|message| match message.view() {
            gst::MessageView::Error(err) => Some(err.error().to_string()),
            _ => None,
        })
}

/// Writes a small avatar in a fresh folder under the system temp dir: `count` frames of
/// `width`×`height`, each a gradient with its own bright square so frames tell apart, and
/// landmarks that put the crop box in the middle. `first_image` is 0 (SyncTalk_2D) or 1
/// (digital-clone). `noise` adds texture, to make JPEGs as large as camera frames.
pub fn make_avatar(
    name: &str,
    count: usize,
    (width, height): (usize, usize),
    first_image: usize,
    noise: u8,
) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("talkinghead-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("full_body_img")).unwrap();
    std::fs::create_dir_all(root.join("landmarks")).unwrap();
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_quality(90);
    let mut seed = 0x2545_f491_u32;
    for n in 0..count {
        let mut pixels = vec![0u8; width * height * 3];
        for y in 0..height {
            for x in 0..width {
                let i = 3 * (y * width + x);
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let jitter = if noise > 0 {
                    (seed >> 24) as u8 % noise
                } else {
                    0
                };
                pixels[i] = ((x * 255) / width) as u8 ^ jitter;
                pixels[i + 1] = ((y * 255) / height) as u8 ^ jitter;
                pixels[i + 2] = 96;
            }
        }
        let side = 16;
        let (sx, sy) = (8 + (n * 12) % (width - side - 8), 8);
        for y in sy..sy + side {
            for x in sx..sx + side {
                pixels[3 * (y * width + x)..][..3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let image = turbojpeg::Image {
            pixels: pixels.as_slice(),
            width,
            pitch: 3 * width,
            height,
            format: turbojpeg::PixelFormat::BGR,
        };
        let jpeg = compressor.compress_to_vec(image).unwrap();
        std::fs::write(
            root.join(format!("full_body_img/{}.jpg", n + first_image)),
            jpeg,
        )
        .unwrap();

        let mut points = vec![(width / 2, height / 2); 110];
        points[1] = (width * 2 / 5, height / 3);
        points[31] = (width * 3 / 5, height / 3);
        points[52] = (width / 2, height / 3);
        let text: String = points.iter().map(|(x, y)| format!("{x} {y}\n")).collect();
        std::fs::write(root.join(format!("landmarks/{n}.lms")), text).unwrap();
    }
    root
}

/// Frames as packed BGR rows, with their size.
pub struct Frames {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

/// The pipeline `launch` describes, and its appsink named `sink`.
pub fn with_appsink(launch: &str) -> (gst::Pipeline, gst_app::AppSink) {
    use gst::prelude::*;

    init();
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, sink)
}

/// Runs `launch` (ending in an appsink named `sink` taking BGR) and collects the frames.
pub fn collect_bgr(launch: &str, configure: impl FnOnce(&gst::Pipeline)) -> Frames {
    use gst_video::prelude::*;
    use std::sync::{Arc, Mutex};

    let (pipeline, sink) = with_appsink(launch);
    configure(&pipeline);
    let collected = Arc::new(Mutex::new(Frames {
        width: 0,
        height: 0,
        frames: Vec::new(),
    }));
    let store = collected.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(
                    sample.buffer().unwrap(),
                    &info,
                )
                .unwrap();
                let (width, height) = (info.width() as usize, info.height() as usize);
                let stride = frame.plane_stride()[0] as usize;
                let data = frame.plane_data(0).unwrap();
                let packed = (0..height)
                    .flat_map(|y| data[y * stride..y * stride + 3 * width].iter().copied())
                    .collect();
                let mut store = store.lock().unwrap();
                (store.width, store.height) = (width, height);
                store.frames.push(packed);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    run_to_end(&pipeline).unwrap();
    let mut collected = collected.lock().unwrap();
    Frames {
        width: collected.width,
        height: collected.height,
        frames: std::mem::take(&mut collected.frames),
    }
}

/// The error an element with these properties posts when it is started.
pub fn start_error(properties: &[(&str, String)]) -> String {
    use gst::prelude::*;

    init();
    let pipeline = gst::parse::launch("fakesrc ! talkinghead name=head ! fakesink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let head = pipeline.by_name("head").unwrap();
    for (name, value) in properties {
        head.set_property_from_str(name, value);
    }
    assert!(
        pipeline.set_state(gst::State::Paused).is_err(),
        "{properties:?} was accepted"
    );
    let error = first_error(&pipeline.bus().unwrap()).expect("an error message");
    pipeline.set_state(gst::State::Null).unwrap();
    error
}

/// The samples of a 16-bit PCM WAV file (its `data` chunk), as stored.
pub fn read_wav_s16(path: &std::path::Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF", "{path:?} is not a WAV file");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            return bytes[at + 8..at + 8 + len]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        at += 8 + len + len % 2;
    }
    panic!("{path:?} has no data chunk");
}

/// The folder of the plugin this test run built (`target/release`).
pub fn plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgsttalkinghead.so").exists(),
        "no libgsttalkinghead.so in {dir:?}: build the plugin first (make test does)"
    );
    dir
}

/// Runs `gst-launch-1.0` with `pipeline` (words as the shell would split them) in a child process
/// that loads this build's plugin, without fatal warnings; returns its exit success and its
/// stdout and stderr together.
pub fn gst_launch(pipeline: &str) -> (bool, String) {
    let registry =
        std::env::temp_dir().join(format!("talkinghead-registry-{}.bin", std::process::id()));
    let output = std::process::Command::new("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", registry)
        .env_remove("G_DEBUG")
        .output()
        .expect("gst-launch-1.0 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A harness around `element`, not live (so no frame is ever late and replaced by an idle one),
/// with S16LE 16 kHz mono caps on its input.
pub fn harness_for(element: &gst::Element) -> gst_check::Harness {
    let mut h = gst_check::Harness::with_element(element, Some("sink"), Some("src"));
    h.set_live(false);
    h.set_src_caps_str(AUDIO_CAPS);
    h
}

/// Pulls every buffer up to EOS.
pub fn pull_all(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    let mut buffers = Vec::new();
    while let Some(buffer) = h.pull_until_eos().expect("EOS within the harness timeout") {
        buffers.push(buffer);
    }
    buffers
}

/// Mean absolute difference inside `crop` between two packed BGR frames `width` pixels wide,
/// asserting that they are identical outside it (`what` names the frame in the message).
pub fn face_box_difference(
    frame: &[u8],
    expected: &[u8],
    width: u32,
    crop: gsttalkinghead::avatar::CropBox,
    what: &str,
) -> f64 {
    let (mut sum, mut count) = (0u64, 0u64);
    for (i, (a, b)) in frame.iter().zip(expected).enumerate() {
        let (x, y) = ((i / 3) as u32 % width, (i / 3) as u32 / width);
        if (crop.x0..crop.x1).contains(&x) && (crop.y0..crop.y1).contains(&y) {
            sum += u64::from(a.abs_diff(*b));
            count += 1;
        } else {
            assert_eq!(a, b, "{what}: pixel ({x}, {y}) outside the crop box");
        }
    }
    sum as f64 / count as f64
}
