#!/usr/bin/env python3
# requires: numpy, librosa, scipy, opencv-python-headless, onnxruntime; see requirements.txt
"""Reference SyncTalk_2D inference ("ave" audio, 328 crop) with ONNX models.

Our own implementation of what SyncTalk_2D's inference_328.py computes, written
from shared/spec/synctalk-inference.md (sections 1-3), so the element's output
can be compared with it frame by frame.  PyTorch is replaced by onnxruntime;
everything else follows the reference numerics:

audio   librosa.load(sr=16000, mono) -> pre-emphasis lfilter([1,-0.97],[1])
        -> |librosa.stft(n_fft=800, hop=200, win=800)| (library defaults:
        periodic Hann, center=True, zero padding with librosa >= 0.10)
        -> Slaney mel basis (80 bins, 55..7600 Hz) -> 20*log10(max(1e-5, x))
        - 20 dB -> clip(8*(S+100)/100 - 4, -4, 4) -> mel [T,80] (float64, as
        librosa computes it; cast to float32 per encoder window).
        Encoder windows j = 0..n-1, n = int((T-16)/80.*25.)+2 (float
        arithmetic, as the reference): mel[start:start+16].T, start =
        int(80.*(j/25.)), slid back to end at T -> E [n,512].
        P = [E0, E0..E(n-1), E(n-1)] (n+2 rows); output frame i gets the rows
        P[i-8 .. i+7], zero rows outside P, reshaped row-major to [32,16,16].
image   crop img[ymin:ymax, xmin:xmax] with xmin=lms[1].x, xmax=lms[31].x,
        ymin=lms[52].y, ymax=ymin+(xmax-xmin) (lms parsed as float32, then cast
        to int32) -> cubic resize to 328x328 -> inner [4:324,4:324] and a copy
        with cv2.rectangle((5,5,310,305)) filled black -> CHW float32 /255,
        [unmasked, masked] -> generator -> output*255 truncated to uint8 ->
        written into the 328 crop's inner 320 -> cubic resize back to the box
        -> hard paste.  Images stay BGR throughout.

Template order: the reference ping-pong sequence over N templates is
    pingpong(k) = 1, 2, ..., N-1, N-2, ..., 1, 0, 1, 2, ...   (k = 0, 1, ...)
(its first output frame uses template 1, not 0).  --start-frame K follows the
gst-talkinghead definition: a shift of the ping-pong phase,
    template(i) = pingpong(i + K),
which equals the reference for K = 0.  (inference_328.py's --start_frame
instead adds K to the file index, which runs past the last template unless the
dataset has K spare frames at the end.)  With a single template every frame
uses it (the reference would index template 1 and fail).

Avatar layouts (--avatar DIR):
    SyncTalk_2D     full_body_img/{0..N-1}.jpg, landmarks/{0..N-1}.lms
                    (template t = image t = landmarks t)
    digital-clone   full_body_img/{1..N}.jpg,   landmarks/{0..N-1}.lms
                    (template t = image t+1 = landmarks t)
The layout is chosen by whether full_body_img/0.jpg exists.

Batching: the encoder runs on chunks of 64 windows (the reference DataLoader
size) when its batch axis is dynamic, the generator on chunks of 8 frames;
models with a fixed batch of 1 run one item at a time.  Tensor names are read
from the models: the generator's image and audio inputs are told apart by
their channel count (6 and 32), so SyncTalk_2D, digital-clone, webcodectest
and Core ML-style names all work.

Outputs (--out DIR): frame_00000.png, frame_00001.png, ... (0-based output
frame index, lossless PNG of the full BGR frame as cv2 writes it), n+2 frames.
--mel-out writes the mel as raw little-endian float32 [T,80]; --features-out
writes P as raw little-endian float32 [n+2,512].

Usage:  python3 tools/reference.py --avatar models/demo --audio speech.wav
            --encoder models/test/audio_encoder.onnx
            --generator models/test/generator.onnx --out /tmp/ref-out
            [--start-frame K] [--mel-out FILE] [--features-out FILE]
            [--threads N]
"""

import argparse
import os
import time

import cv2
import librosa
import numpy as np
import onnxruntime as ort
from scipy import signal

SAMPLE_RATE = 16000
FPS = 25.0
MEL_FPS = 80.0            # SAMPLE_RATE / hop
MEL_WINDOW = 16           # mel frames per encoder window
FEATURE_HALF_WINDOW = 8   # feature rows before the current frame (and 8 after, exclusive)
CROP = 328
INNER = slice(4, 324)
MASK_RECT = (5, 5, 310, 305)   # (x, y, w, h): fills columns 5..314, rows 5..309
ENCODER_CHUNK = 64
GENERATOR_CHUNK = 8


# ------------------------------------------------------------------ audio

def mel_spectrogram(wav_path):
    """SyncTalk "ave" mel of a sound file: float64 [T, 80] in [-4, 4]."""
    wav, _ = librosa.load(wav_path, sr=SAMPLE_RATE)
    emphasised = signal.lfilter([1, -0.97], [1], wav)
    magnitude = np.abs(librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800))
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    # The reference spells the floor exp(-5 ln 10) rather than 1e-5; keep its value.
    floor = np.exp(-5 * np.log(10))
    db = 20 * np.log10(np.maximum(floor, basis @ magnitude)) - 20
    return np.clip(8.0 * ((db + 100) / 100) - 4.0, -4.0, 4.0).T


def encoder_windows(mel):
    """Mel windows for every video frame: float32 [n, 1, 80, 16]."""
    frames = mel.shape[0]
    if frames < MEL_WINDOW:
        raise SystemExit(f"audio too short: {frames} mel frames, need at least {MEL_WINDOW}")
    count = int((frames - MEL_WINDOW) / MEL_FPS * FPS) + 2
    windows = np.empty((count, 1, 80, MEL_WINDOW), np.float32)
    for j in range(count):
        start = int(MEL_FPS * (j / FPS))
        end = start + MEL_WINDOW
        if end > frames:
            end = frames
            start = frames - MEL_WINDOW
        windows[j, 0] = mel[start:end].T
    return windows


def padded_features(embeddings):
    """Repeat the first and last embedding: [n, 512] -> [n+2, 512]."""
    return np.concatenate([embeddings[:1], embeddings, embeddings[-1:]]).astype(np.float32)


def frame_audio(features, i):
    """The generator's audio input for output frame i: [32, 16, 16]."""
    window = np.zeros((2 * FEATURE_HALF_WINDOW, features.shape[1]), np.float32)
    lo, hi = i - FEATURE_HALF_WINDOW, i + FEATURE_HALF_WINDOW
    src_lo, src_hi = max(lo, 0), min(hi, features.shape[0])
    window[src_lo - lo:src_hi - lo] = features[src_lo:src_hi]
    return window.reshape(32, 16, 16)


# ------------------------------------------------------------------ models

class Model:
    """An onnxruntime session with its batch policy and resolved tensor names."""

    def __init__(self, path, threads):
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.output = self.session.get_outputs()[0].name
        self.dynamic_batch = not isinstance(self.inputs[0].shape[0], int)

    def input_with_channels(self, channels):
        for tensor in self.inputs:
            if len(tensor.shape) == 4 and tensor.shape[1] == channels:
                return tensor.name
        found = ", ".join(f"{t.name} {t.shape}" for t in self.inputs)
        raise SystemExit(f"{self.path}: no input with {channels} channels (found {found})")

    def run_batched(self, feeds, chunk):
        """Run over the leading axis of every feed, chunk rows at a time."""
        step = chunk if self.dynamic_batch else 1
        total = len(next(iter(feeds.values())))
        parts = [self.session.run([self.output],
                                  {name: array[k:k + step] for name, array in feeds.items()})[0]
                 for k in range(0, total, step)]
        return np.concatenate(parts)


# ------------------------------------------------------------------ avatar

def pingpong(k, templates):
    """k-th template of the reference order 1, 2, ..., N-1, N-2, ..., 0, 1, ..."""
    if templates == 1:
        return 0
    period = 2 * (templates - 1)
    phase = (k + 1) % period
    return phase if phase <= templates - 1 else period - phase


class Avatar:
    """Template frames and landmarks of a SyncTalk_2D or digital-clone dataset."""

    def __init__(self, root):
        self.image_dir = os.path.join(root, "full_body_img")
        self.landmark_dir = os.path.join(root, "landmarks")
        numbers = sorted(int(name[:-4]) for name in os.listdir(self.image_dir)
                         if name.endswith(".jpg") and name[:-4].isdigit())
        if not numbers:
            raise SystemExit(f"{self.image_dir}: no numbered .jpg frames")
        self.first_image = numbers[0]
        if self.first_image not in (0, 1) or numbers != list(range(self.first_image,
                                                                   self.first_image + len(numbers))):
            raise SystemExit(f"{self.image_dir}: frames must be numbered 0..N-1 or 1..N")
        self.count = len(numbers)
        self.layout = "SyncTalk_2D" if self.first_image == 0 else "digital-clone"
        for t in range(self.count):
            if not os.path.isfile(self.landmark_path(t)):
                raise SystemExit(f"missing {self.landmark_path(t)}")

    def image_path(self, t):
        return os.path.join(self.image_dir, f"{t + self.first_image}.jpg")

    def landmark_path(self, t):
        return os.path.join(self.landmark_dir, f"{t}.lms")

    def load(self, t):
        """(BGR frame, crop box (xmin, ymin, xmax, ymax)) of template t."""
        frame = cv2.imread(self.image_path(t), cv2.IMREAD_COLOR)
        if frame is None:
            raise SystemExit(f"cannot decode {self.image_path(t)}")
        with open(self.landmark_path(t)) as f:
            points = np.array([line.split() for line in f.read().splitlines() if line.strip()],
                              dtype=np.float32).astype(np.int32)
        xmin, xmax, ymin = points[1][0], points[31][0], points[52][1]
        return frame, (xmin, ymin, xmax, ymin + (xmax - xmin))


# ------------------------------------------------------------------ image path

def prepare(frame, box):
    """(328 crop kept for the paste, generator input [6,320,320], box size (w, h))."""
    xmin, ymin, xmax, ymax = box
    face = frame[ymin:ymax, xmin:xmax]
    height, width = face.shape[:2]
    crop = cv2.resize(face, (CROP, CROP), interpolation=cv2.INTER_CUBIC)
    real = crop[INNER, INNER].copy()
    masked = cv2.rectangle(real.copy(), MASK_RECT, (0, 0, 0), -1)
    planes = np.concatenate([real.transpose(2, 0, 1), masked.transpose(2, 0, 1)])
    return crop, planes.astype(np.float32) / 255.0, (width, height)


def compose(frame, box, crop, size, prediction):
    """Paste the generated [3,320,320] crop back into the frame, in place."""
    xmin, ymin, xmax, ymax = box
    crop[INNER, INNER] = (prediction.transpose(1, 2, 0) * 255).astype(np.uint8)
    frame[ymin:ymax, xmin:xmax] = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--avatar", required=True, help="dataset directory (full_body_img/, landmarks/)")
    ap.add_argument("--audio", required=True, help="speech file (any rate; resampled to 16 kHz)")
    ap.add_argument("--encoder", required=True, help="audio encoder ONNX")
    ap.add_argument("--generator", required=True, help="U-Net generator ONNX")
    ap.add_argument("--start-frame", type=int, default=0,
                    help="ping-pong phase shift: frame i uses template pingpong(i + K)")
    ap.add_argument("--out", required=True, help="directory for frame_%%05d.png")
    ap.add_argument("--mel-out", help="write the mel as raw float32 [T,80]")
    ap.add_argument("--features-out", help="write the padded features as raw float32 [n+2,512]")
    ap.add_argument("--threads", type=int, default=0,
                    help="onnxruntime/OpenCV threads (0: library default)")
    args = ap.parse_args()
    if args.start_frame < 0:
        raise SystemExit("--start-frame must be >= 0")
    if args.threads > 0:
        cv2.setNumThreads(args.threads)

    began = time.monotonic()
    avatar = Avatar(args.avatar)
    encoder = Model(args.encoder, args.threads)
    generator = Model(args.generator, args.threads)
    image_input = generator.input_with_channels(6)
    audio_input = generator.input_with_channels(32)

    mel = mel_spectrogram(args.audio)
    windows = encoder_windows(mel)
    embeddings = encoder.run_batched({encoder.inputs[0].name: windows}, ENCODER_CHUNK)
    features = padded_features(embeddings)
    if args.mel_out:
        mel.astype("<f4").tofile(args.mel_out)
    if args.features_out:
        features.astype("<f4").tofile(args.features_out)
    print(f"avatar {args.avatar}: {avatar.layout} layout, {avatar.count} templates")
    print(f"audio {args.audio}: {mel.shape[0]} mel frames, {len(windows)} encoder windows, "
          f"{len(features)} output frames")

    os.makedirs(args.out, exist_ok=True)
    chunk = GENERATOR_CHUNK if generator.dynamic_batch else 1
    for first in range(0, len(features), chunk):
        indices = range(first, min(first + chunk, len(features)))
        jobs = []
        for i in indices:
            frame, box = avatar.load(pingpong(i + args.start_frame, avatar.count))
            crop, planes, size = prepare(frame, box)
            jobs.append((frame, box, crop, size, planes))
        predictions = generator.session.run([generator.output], {
            image_input: np.stack([job[4] for job in jobs]),
            audio_input: np.stack([frame_audio(features, i) for i in indices]),
        })[0]
        for i, (frame, box, crop, size, _), prediction in zip(indices, jobs, predictions):
            compose(frame, box, crop, size, prediction)
            cv2.imwrite(os.path.join(args.out, f"frame_{i:05d}.png"), frame)
    elapsed = time.monotonic() - began
    print(f"wrote {len(features)} frames to {args.out} in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
