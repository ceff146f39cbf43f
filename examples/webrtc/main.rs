//! The talking head live in a browser over WebRTC.
//!
//! Serves a page on `http://ADDRESS:PORT/` and, for every page that opens it, runs a pipeline of
//! its own, `speech ! talkinghead ! x264enc ! rtph264pay ! webrtcbin` with the speech also through
//! `opusenc ! rtpopuspay` into the same `webrtcbin`, negotiated with the page over a WebSocket on
//! the same port (`/ws`): the publisher offers, the page answers, both trickle ICE candidates.
//!
//! ```text
//! cargo run --release --example webrtc -- [OPTIONS] [PROPERTY=VALUE...]
//!   --file PATH      speech from an audio file (default: the bundled clip), said again and again
//!   --text TEXT      speech from text (espeak), said again and again
//!   --mic            speech from the default audio input, live
//!   --pause SECONDS  silence before each time the file or text is said (default 2)
//!   --address ADDR   address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN)
//!   --port PORT      port to listen on (default 8080; 0 picks a free one)
//!   --stun URL       a STUN server for viewers behind NATs (stun://HOST:PORT); none on a LAN
//!   PROPERTY=VALUE   talkinghead properties, e.g. avatar=DIR generator=FILE
//! ```
//!
//! File and text speech run in real time, as from a live source: 20 ms chunks are pushed as the
//! pipeline clock reaches their end, with silence in between. Each time speech starts, the
//! publisher prints `speech-onset unix-ms=T`: the wall-clock time at which the first 20 ms with
//! sound were captured, so that a viewer's clock can measure the glass-to-glass delay.
//!
//! It prints `listening on http://ADDRESS:PORT/` once it accepts connections.

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gst::glib;
use gst::prelude::*;
use serde_json::{Value, json};

const PAGE: &str = include_str!("index.html");
/// Samples of speech per second: the element's input rate.
const RATE: usize = 16_000;
/// Samples per chunk pushed: 20 ms.
const CHUNK: usize = RATE / 50;
/// RMS over a chunk (of full scale 1) from which it counts as speech: -40 dBFS.
const ONSET_RMS: f64 = 0.01;
const PCM_CAPS: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";

#[derive(Clone)]
enum Speech {
    /// Samples said again and again, each time after `pause` samples of silence.
    Loop {
        samples: Arc<Vec<i16>>,
        pause: usize,
    },
    Microphone,
}

struct Options {
    speech: Speech,
    address: String,
    port: u16,
    stun: Option<String>,
    /// talkinghead's properties to set, checked against its own.
    properties: Vec<(String, String)>,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("webrtc: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    if gst::ElementFactory::find("talkinghead").is_none() {
        gsttalkinghead::plugin_register_static().map_err(|e| e.to_string())?;
    }
    let options = Arc::new(parse_args(std::env::args().skip(1))?);
    let listener = TcpListener::bind((options.address.as_str(), options.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.address, options.port))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{local}/");
    std::io::stdout().flush().ok();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let options = options.clone();
        std::thread::spawn(move || {
            if let Err(err) = serve(stream, &options) {
                eprintln!("webrtc: {err}");
            }
        });
    }
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut source = None;
    let mut pause = 2.0;
    let mut address = "127.0.0.1".to_owned();
    let mut port = 8080;
    let mut stun = None;
    let mut properties = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--file" => source = Some(("file", value("--file")?)),
            "--text" => source = Some(("text", value("--text")?)),
            "--mic" => source = Some(("mic", String::new())),
            "--pause" => {
                pause = value("--pause")?
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=3600.0).contains(p))
                    .ok_or("--pause takes seconds, 0 to 3600")?
            }
            "--address" => address = value("--address")?,
            "--stun" => stun = Some(value("--stun")?),
            "--port" => {
                port = value("--port")?
                    .parse()
                    .map_err(|_| "--port takes a port number")?
            }
            _ => match arg.split_once('=') {
                Some((name, value)) if !name.starts_with('-') => {
                    check_property(name, value)?;
                    properties.push((name.to_owned(), value.to_owned()))
                }
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?} (see the top of the source)"
                    ));
                }
            },
        }
    }
    let pause = (pause * RATE as f64) as usize;
    let speech = match source {
        Some(("mic", _)) => Speech::Microphone,
        Some(("text", text)) => {
            let samples = decode(&format!("espeak text={}", quote(&text)))?;
            Speech::Loop {
                samples: Arc::new(samples),
                pause,
            }
        }
        Some((_, path)) => Speech::Loop {
            samples: Arc::new(decode_file(&path)?),
            pause,
        },
        None => Speech::Loop {
            samples: Arc::new(decode_file(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/demo/speech.wav"
            ))?),
            pause,
        },
    };
    Ok(Options {
        speech,
        address,
        port,
        stun,
        properties,
    })
}

/// Whether talkinghead has a property `name` that `value` is a value of, as gst-launch-1.0
/// reads it.
fn check_property(name: &str, value: &str) -> Result<(), String> {
    let head = gst::ElementFactory::make("talkinghead")
        .build()
        .map_err(|e| e.to_string())?;
    let pspec = head
        .find_property(name)
        .ok_or(format!("talkinghead has no property {name:?}"))?;
    glib::Value::deserialize_with_pspec(value, &pspec)
        .map(drop)
        .map_err(|_| format!("{name}: {value:?} is not a {}", pspec.value_type()))
}

fn decode_file(path: &str) -> Result<Vec<i16>, String> {
    if !std::path::Path::new(path).is_file() {
        return Err(format!("{path}: no such file"));
    }
    decode(&format!("filesrc location={} ! decodebin", quote(path)))
        .map_err(|e| format!("{path}: {e}"))
}

/// A string as one quoted value of a launch line.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// All of a source's audio as 16 kHz mono samples, as fast as it decodes.
fn decode(source: &str) -> Result<Vec<i16>, String> {
    let pipeline = gst::parse::launch(&format!(
        "{source} ! audioconvert ! audioresample ! {PCM_CAPS} ! appsink name=out sync=false"
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("out")
        .and_downcast::<gst_app::AppSink>()
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        samples.extend(
            map.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    let error = pipeline_error(&pipeline);
    pipeline.set_state(gst::State::Null).ok();
    match error {
        Some(error) => Err(error),
        None if samples.is_empty() => Err("no audio in it".into()),
        None => Ok(samples),
    }
}

/// One HTTP request: the page, or the WebSocket that negotiates a stream.
fn serve(stream: TcpStream, options: &Options) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let Some(head) = peek_head(&stream)? else {
        return Ok(()); // closed before it asked for anything, as browsers' spare connections are
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let upgrade = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "upgrade:websocket");
    if upgrade && request_line.starts_with("GET /ws ") {
        let ws = tungstenite::accept(stream).map_err(|e| e.to_string())?;
        return Session::run(ws, options);
    }
    let mut stream = stream;
    let mut reader = std::io::BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    // read the request's head off the socket (the peek left it there)
    let mut line = String::new();
    while reader.read_line(&mut line).map_err(|e| e.to_string())? > 2 {
        line.clear();
    }
    let (status, kind, body) = if request_line.starts_with("GET / ") {
        ("200 OK", "text/html", PAGE)
    } else {
        ("404 Not Found", "text/plain", "not found\n")
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())
}

/// The request's head, left unread on the socket; none if the socket closes first.
fn peek_head(stream: &TcpStream) -> Result<Option<String>, String> {
    let mut buf = vec![0; 8192];
    for _ in 0..500 {
        let n = stream.peek(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        if let Some(end) = head.find("\r\n\r\n") {
            return Ok(Some(head[..end].to_owned()));
        }
        if n == buf.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("an incomplete or oversized HTTP request".into())
}

type WebSocket = tungstenite::WebSocket<TcpStream>;

/// A page's stream: its pipeline, alive as long as its WebSocket.
struct Session {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    stop: Arc<AtomicBool>,
}

impl Session {
    fn run(mut ws: WebSocket, options: &Options) -> Result<(), String> {
        let (to_page, outbox) = mpsc::channel::<Value>();
        let result = ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())
            .and_then(|()| Session::start(options, to_page))
            .and_then(|session| session.exchange(&mut ws, &outbox));
        if let Err(err) = &result {
            ws.send(json!({"type": "error", "message": err}).to_string().into())
                .ok();
        }
        ws.close(None).ok();
        ws.flush().ok();
        result
    }

    fn start(options: &Options, to_page: mpsc::Sender<Value>) -> Result<Session, String> {
        let source = match options.speech {
            Speech::Microphone => "autoaudiosrc ! queue".to_owned(),
            Speech::Loop { .. } => format!(
                "appsrc name=speech is-live=true format=time min-latency=20000000 caps={PCM_CAPS}"
            ),
        };
        let pipeline = gst::parse::launch(&format!(
            "{source} ! audioconvert ! audioresample ! {PCM_CAPS} ! tee name=speech-tee \
             speech-tee. ! queue ! talkinghead name=head ! queue max-size-buffers=3 ! \
               videoconvert ! video/x-raw,format=I420 ! \
               x264enc tune=zerolatency speed-preset=ultrafast key-int-max=50 bitrate=1500 ! \
               video/x-h264,profile=constrained-baseline ! \
               rtph264pay name=face-out config-interval=-1 aggregate-mode=zero-latency pt=96 ! webrtc. \
             speech-tee. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! \
               audioconvert ! audioresample ! opusenc ! clocksync name=voice-delay ! \
               rtpopuspay pt=97 ! \
               webrtc. \
             webrtcbin name=webrtc bundle-policy=max-bundle"
        ))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
        let head = pipeline.by_name("head").ok_or("no talkinghead")?;
        for (name, value) in &options.properties {
            head.set_property_from_str(name, value);
        }
        let webrtc = pipeline.by_name("webrtc").ok_or("no webrtcbin")?;
        // RTCP sender reports map RTP time to when it was captured, not sent: the face is sent
        // before the voice held back for it, and a browser going by send times would show it late
        if let Some(rtpbin) = webrtc
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("rtpbin"))
        {
            rtpbin.set_property("rtcp-sync-send-time", false);
        }
        if let Some(stun) = &options.stun {
            webrtc.set_property("stun-server", stun);
        }
        for pad in webrtc.sink_pads() {
            // one media stream: the browser then plays the voice in sync with the face
            pad.set_property("msid", "talkinghead");
            let transceiver = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            transceiver.set_property(
                "direction",
                gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
            );
        }
        connect_signalling(&webrtc, to_page);
        let stop = Arc::new(AtomicBool::new(false));
        if let Speech::Loop { samples, pause } = &options.speech {
            let appsrc = pipeline
                .by_name("speech")
                .and_downcast::<gst_app::AppSrc>()
                .ok_or("no appsrc")?;
            let (pipeline, samples, pause, stop) =
                (pipeline.clone(), samples.clone(), *pause, stop.clone());
            std::thread::spawn(move || pace(&pipeline, &appsrc, &samples, pause, &stop));
        }
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            pipeline_error(&pipeline).unwrap_or("the pipeline failed to start".into())
        })?;
        Ok(Session {
            pipeline,
            webrtc,
            stop,
        })
    }

    /// Passes signalling both ways until the page leaves or the pipeline fails.
    fn exchange(&self, ws: &mut WebSocket, outbox: &mpsc::Receiver<Value>) -> Result<(), String> {
        loop {
            while let Ok(message) = outbox.try_recv() {
                ws.send(message.to_string().into())
                    .map_err(|e| e.to_string())?;
            }
            self.handle_messages()?;
            match ws.read() {
                Ok(tungstenite::Message::Text(text)) => self.receive(&text)?,
                Ok(tungstenite::Message::Close(_)) => return Ok(()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Fails on an error from the pipeline; aligns the streams when its latency changes.
    fn handle_messages(&self) -> Result<(), String> {
        let bus = self.pipeline.bus().ok_or("no bus")?;
        while let Some(message) = bus.pop() {
            match message.view() {
                gst::MessageView::Error(e) => return Err(describe_error(e)),
                gst::MessageView::Latency(_) => {
                    self.pipeline.recalculate_latency().ok();
                    self.delay_voice();
                }
                gst::MessageView::StateChanged(change)
                    if change.src() == Some(self.pipeline.upcast_ref())
                        && change.current() == gst::State::Playing =>
                {
                    self.delay_voice();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Holds the voice back until its face is ready: webrtcbin sends each packet as it comes, so
    /// the voice would reach the browser the model's look-ahead (and more) before the face, and
    /// browsers take many seconds to bring two streams that far apart in sync.
    fn delay_voice(&self) {
        let upstream = |name: &str| {
            let pad = self.pipeline.by_name(name)?.static_pad("sink")?;
            let mut query = gst::query::Latency::new();
            pad.peer_query(&mut query).then(|| query.result().1)
        };
        let (Some(face), Some(voice)) = (upstream("face-out"), upstream("voice-delay")) else {
            return;
        };
        let delay = face.saturating_sub(voice);
        let clocksync = self.pipeline.by_name("voice-delay").unwrap();
        if clocksync.property::<i64>("ts-offset") != delay.nseconds() as i64 {
            clocksync.set_property("ts-offset", delay.nseconds() as i64);
            eprintln!(
                "webrtc: face latency {} ms; voice held back {} ms",
                face.mseconds(),
                delay.mseconds()
            );
        }
    }

    /// A message from the page: its answer or one of its ICE candidates.
    fn receive(&self, text: &str) -> Result<(), String> {
        let message: Value =
            serde_json::from_str(text).map_err(|e| format!("from the page: {e}"))?;
        match message["type"].as_str() {
            Some("answer") => {
                let sdp = message["sdp"].as_str().ok_or("an answer without sdp")?;
                let sdp = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
                    .map_err(|_| "the page's answer is not SDP")?;
                let answer = gst_webrtc::WebRTCSessionDescription::new(
                    gst_webrtc::WebRTCSDPType::Answer,
                    sdp,
                );
                self.webrtc.emit_by_name::<()>(
                    "set-remote-description",
                    &[&answer, &None::<gst::Promise>],
                );
            }
            Some("ice") => {
                let candidate = message["candidate"].as_str().unwrap_or_default();
                let mline = message["sdpMLineIndex"].as_u64().unwrap_or(0) as u32;
                if !candidate.is_empty() {
                    self.webrtc
                        .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
                }
            }
            _ => return Err(format!("from the page: unexpected message {text}")),
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.pipeline.set_state(gst::State::Null).ok();
    }
}

/// Offers the stream when webrtcbin needs it, and passes its ICE candidates on.
fn connect_signalling(webrtc: &gst::Element, to_page: mpsc::Sender<Value>) {
    let offers = to_page.clone();
    webrtc.connect("on-negotiation-needed", false, move |values| {
        let webrtc = values[0].get::<gst::Element>().expect("webrtcbin");
        let offers = offers.clone();
        let on_offer = webrtc.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = match reply {
                Ok(Some(reply)) => reply.get::<gst_webrtc::WebRTCSessionDescription>("offer"),
                _ => return,
            };
            let Ok(offer) = offer else { return };
            on_offer.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
            if let Ok(sdp) = offer.sdp().as_text() {
                offers.send(json!({"type": "offer", "sdp": sdp})).ok();
            }
        });
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        None
    });
    webrtc.connect("on-ice-candidate", false, move |values| {
        let mline = values[1].get::<u32>().expect("an m-line index");
        let candidate = values[2].get::<String>().expect("a candidate");
        to_page
            .send(json!({"type": "ice", "candidate": candidate, "sdpMLineIndex": mline}))
            .ok();
        None
    });
}

/// The first error on the pipeline's bus, if there is one.
fn pipeline_error(pipeline: &gst::Pipeline) -> Option<String> {
    let message = pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match message.view() {
        gst::MessageView::Error(e) => Some(describe_error(e)),
        _ => None,
    }
}

/// An error message as "element path: error".
fn describe_error(error: &gst::message::Error) -> String {
    let source = error.src().map(|s| s.path_string()).unwrap_or_default();
    format!("{source}: {}", error.error())
}

/// Pushes the speech into `appsrc` in real time: each 20 ms chunk, stamped with its running time,
/// once the pipeline clock has reached its end (as a capture device delivers it), silence between.
fn pace(
    pipeline: &gst::Pipeline,
    appsrc: &gst_app::AppSrc,
    samples: &[i16],
    pause: usize,
    stop: &AtomicBool,
) {
    let onset = onset(samples);
    let period = samples.len() + pause;
    let chunk_time = gst::ClockTime::from_mseconds(20);
    let (clock, base) = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let (Some(clock), Some(base)) = (pipeline.clock(), pipeline.base_time()) {
            if pipeline.current_state() == gst::State::Playing {
                break (clock, base);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // running time of the first chunk: now
    let start = clock.time().saturating_sub(base);
    let mut chunk = [0i16; CHUNK];
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let pts = start + chunk_time * n;
        let end = pts + chunk_time;
        match clock.new_single_shot_id(base + end).wait().0 {
            Ok(_) | Err(gst::ClockError::Early) => {}
            Err(_) => return,
        }
        let first = n as usize * CHUNK;
        for (i, s) in chunk.iter_mut().enumerate() {
            let at = (first + i) % period;
            *s = if at < pause { 0 } else { samples[at - pause] };
        }
        if let Some(onset) = onset {
            let at = (first % period) as isize - (pause + onset) as isize;
            if (0..CHUNK as isize).contains(&at) {
                announce_onset(
                    &clock,
                    base,
                    pts + gst::ClockTime::from_nseconds(at as u64 * 62_500),
                );
            }
        }
        let mut buffer = gst::Buffer::from_slice(
            chunk
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(pts);
            buffer.set_duration(chunk_time);
        }
        if let Err(flow) = appsrc.push_buffer(buffer) {
            if flow != gst::FlowError::Flushing {
                eprintln!("webrtc: the speech stopped: {flow:?}");
            }
            return;
        }
    }
}

/// The first sample of the first 20 ms of `samples` loud enough to be speech.
fn onset(samples: &[i16]) -> Option<usize> {
    samples
        .chunks(CHUNK)
        .position(|c| {
            let energy: f64 = c.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
            (energy / c.len() as f64).sqrt() >= ONSET_RMS
        })
        .map(|i| i * CHUNK)
}

/// Prints the wall-clock time at which the speech sample of running time `at` was captured.
fn announce_onset(clock: &gst::Clock, base: gst::ClockTime, at: gst::ClockTime) {
    let ago = clock.time().saturating_sub(base).saturating_sub(at);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(Duration::from_nanos(ago.nseconds()));
    println!("speech-onset unix-ms={:.1}", wall.as_secs_f64() * 1000.0);
    std::io::stdout().flush().ok();
}
