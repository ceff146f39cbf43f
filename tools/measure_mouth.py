#!/usr/bin/env python3
# requires: numpy, opencv-python-headless, librosa; see requirements.txt
"""Measure how a rendered talking head's mouth follows the audio.

Inputs: the rendered frames (a video file OpenCV can read, e.g. the MP4 of
`make demo`, or a folder of images, taken in name order), the avatar folder
they were rendered from (SyncTalk_2D layout: full_body_img/, landmarks/) and
the audio WAV they were rendered with (any rate/channels; read with librosa at
16 kHz mono).

Per output frame i (25 fps; in a video, the frame shown at i x 40 ms):
  template   t(i) = 1, 2, ..., N-1, N-2, ..., 1, 0, 1, ...  (the ping-pong order
             of the reference and the element; --start-frame K shifts it to
             t(i + K))
  mouth box  the bounding box of landmarks 76..95 of template t(i) (its outer
             and inner lip contours), widened by 25 % of the mouth width on
             each side, 20 % above and 60 % below (room for the lower lip and
             jaw to move down)
  opening    mean absolute difference (0..255, over B, G, R) between the
             rendered frame and the closed-mouth template frame t(i) in
             that box.  Two things make it robust to lossy video (an MP4 of
             `make demo`): the difference image is smoothed with a 5x5
             Gaussian (sigma 1 px) against coding noise, and its per-channel
             median over the box is subtracted first, since the YUV round
             trip shifts the whole image by a level or two (most of the box
             is unchanged even with the mouth wide open, so the median is
             that shift).  On lossless frames both change almost nothing.
  rms        RMS of the frame's 40 ms of audio, samples [640 i, 640 (i+1))
             at 16 kHz (full scale = 1)

Reported:
  pearson_r        Pearson correlation of opening and rms over all frames
  closed_threshold opening below which a frame counts as "mouth closed"
                   (--closed-threshold; default 3.0: well above what an
                   unchanged template measures, about 0.05 for lossless
                   frames of the element and 0.5 for its H.264 MP4, and
                   below a visible parting of the lips, about 1 px; a wide
                   open mouth of the demo avatar measures 12..15)
  pauses           runs of >= --min-pause seconds (default 0.5) of frames
                   whose rms is below --silence-dbfs (default -40 dBFS),
                   each with its closed share (fraction of its frames with
                   opening < closed_threshold)
  silence_jitter   mean |opening(i) - opening(i-1)| over consecutive frames
                   both in steady silence: inside a pause and at least
                   --guard seconds (default 0.2) away from its ends
  av_lag_frames    the A/V offset: the lag L (frames, within +-8) that maximises
                   the Pearson correlation of opening(i) and rms(i - L); L > 0:
                   the mouth moves after the sound (video late), L < 0: before
                   it; av_lag_ms is L x 40 ms, av_lag_frames_fine the maximum
                   refined between frames by a parabola through its neighbours
  onsets           each audio onset (the first frame at or above the silence
                   level after >= --onset-pause seconds (default 0.3) below
                   it) with the mouth onset: the first frame from 8 frames
                   before it (but not before the quiet run began) to 8 after
                   whose opening reaches closed_threshold; offset_frames =
                   mouth onset - audio onset (null: the mouth did not open);
                   onset_offset_max_abs is the largest |offset_frames|

  frames_off_time  40 ms ticks at which a player shows another frame than the
                   element's frame of that tick (a muxer re-stamped frames that
                   reached it late, or frames are missing): every measurement is
                   on what is shown at each tick, so these count against sync

Recordings: --audio-track takes the audio from FRAMES' own audio track
(decoded with ffmpeg to 16 kHz mono) instead of --audio, placed by its packet
timestamps (aresample=async=1: gaps filled with silence, overlaps dropped) and
against the video by the streams' start times (ffprobe), so the offsets
measured are the ones a player that follows timestamps shows.  --from S and --seconds S measure a window of the video
(template phases stay those of the whole stream).

Usage:
  python3 tools/measure_mouth.py FRAMES --avatar models/demo --audio models/demo/speech.wav
      [--png OUT.png] [--json] [--start-frame K] [--closed-threshold X]
      [--silence-dbfs DB] [--min-pause S] [--guard S] [--csv OUT.csv]
      [--onset-pause S] [--from S] [--seconds S]
  python3 tools/measure_mouth.py RECORDING.flv --avatar models/demo --audio-track [...]
FRAMES is a video file or a directory of images (e.g. frame_00000.png ...).
Exit status 0 unless the inputs cannot be read.
"""

import argparse
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np

FPS = 25
SAMPLE_RATE = 16000
HOP = SAMPLE_RATE // FPS            # 640 samples per frame
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


# ------------------------------------------------------------------ inputs

def read_frames(source, first=0, count=None):
    """Yield (n, BGR uint8 frame) for each 40 ms tick k = first, first + 1, ... (at most
    `count` ticks): the frame a player shows at time k x 40 ms, i.e. the last frame whose
    timestamp (relative to the first frame's) is at or before it, and its place n in the stream.
    Images of a folder, taken in name order, are frame n at n x 40 ms, so there n == k; in a
    video n differs from k where frames were re-stamped, repeated or left out."""
    end = None if count is None else first + count
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise SystemExit(f"{source}: no images")
        for n, name in enumerate(names[first:end], first):
            frame = cv2.imread(os.path.join(source, name), cv2.IMREAD_COLOR)
            if frame is None:
                raise SystemExit(f"cannot read {os.path.join(source, name)}")
            yield n, frame
        return
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise SystemExit(f"{source}: OpenCV cannot open it")
    tick = first
    shown = None                    # (n, frame) of the latest frame at or before the tick
    origin = None
    n = 0
    # frames are decoded from 2 s before the first tick on (a frame shown at a tick is almost
    # always less than that older than it); earlier ones are only parsed
    decode_from = first / FPS - 2.0
    while (end is None or tick < end) and capture.grab():
        at = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        origin = at if origin is None else origin
        at -= origin
        while shown is not None and tick / FPS + 0.001 < at and (end is None or tick < end):
            if shown[1] is None:
                raise SystemExit(f"{source}: frame {shown[0]} is shown at {tick / FPS:.2f} s, "
                                 "more than 2 s after its timestamp")
            yield shown
            tick += 1
        frame = None
        if at >= decode_from:
            ok, frame = capture.retrieve()
            if not ok:
                break
        shown = (n, frame)
        n += 1
        last_at = at
    # the last frame lasts one frame
    while shown is not None and shown[1] is not None and tick / FPS + 0.001 < last_at + 1.0 / FPS \
            and (end is None or tick < end):
        yield shown
        tick += 1
    capture.release()


def pingpong(k, templates):
    if templates == 1:
        return 0
    period = 2 * (templates - 1)
    phase = (k + 1) % period
    return phase if phase <= templates - 1 else period - phase


class Avatar:
    def __init__(self, root):
        self.image_dir = os.path.join(root, "full_body_img")
        self.lms_dir = os.path.join(root, "landmarks")
        if not os.path.isdir(self.image_dir):
            raise SystemExit(f"{root}: no full_body_img/")
        numbers = sorted(int(n[:-4]) for n in os.listdir(self.image_dir)
                         if n.endswith(".jpg") and n[:-4].isdigit())
        if not numbers:
            raise SystemExit(f"{self.image_dir}: no numbered .jpg frames")
        self.first = numbers[0]          # 0: SyncTalk_2D layout, 1: digital-clone
        self.count = len(numbers)
        self.cache = {}

    def template(self, t):
        """(BGR image, mouth box (x0, y0, x1, y1), exclusive ends) of template t."""
        if t not in self.cache:
            image = cv2.imread(os.path.join(self.image_dir, f"{t + self.first}.jpg"), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"cannot read template {t}")
            with open(os.path.join(self.lms_dir, f"{t}.lms")) as f:
                points = np.array([line.split() for line in f if line.strip()], dtype=np.float64)
            lips = points[76:96]
            x0, y0 = lips.min(axis=0)
            x1, y1 = lips.max(axis=0)
            width = x1 - x0
            box = (int(math.floor(x0 - 0.25 * width)), int(math.floor(y0 - 0.20 * width)),
                   int(math.ceil(x1 + 0.25 * width)) + 1, int(math.ceil(y1 + 0.60 * width)) + 1)
            h, w = image.shape[:2]
            box = (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))
            self.cache[t] = (image, box)
        return self.cache[t]


def load_audio(audio_path):
    import librosa
    wav, _ = librosa.load(audio_path, sr=SAMPLE_RATE, mono=True)
    return wav


def stream_start(path, selector):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", selector,
                          "-show_entries", "stream=start_time", "-of", "csv=p=0", path],
                         capture_output=True, text=True)
    value = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    if out.returncode != 0 or not value or value == "N/A":
        raise SystemExit(f"{path}: ffprobe finds no start time of stream {selector}: "
                         f"{out.stderr.strip()}")
    return float(value)


def audio_track(path):
    """The audio track of a recording at 16 kHz mono, placed by its timestamps, sample 0 at the
    video's first frame."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1",
                          "-af", "aresample=async=1",
                          "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"], capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"{path}: ffmpeg cannot decode its audio track: "
                         f"{out.stderr.decode(errors='replace').strip()}")
    wav = np.frombuffer(out.stdout, "<f4")
    shift = int(round((stream_start(path, "a:0") - stream_start(path, "v:0")) * SAMPLE_RATE))
    return np.concatenate([np.zeros(shift, "<f4"), wav]) if shift >= 0 else wav[-shift:]


def frame_rms(wav, first, frames):
    """RMS of the 40 ms of audio of frames first .. first + frames - 1, and the audio's length."""
    rms = np.zeros(frames)
    for i in range(frames):
        part = wav[(first + i) * HOP:(first + i + 1) * HOP].astype(np.float64)
        rms[i] = math.sqrt(float(np.mean(part * part))) if len(part) else 0.0
    return rms, len(wav) / SAMPLE_RATE


# ------------------------------------------------------------------ analysis

def pearson(a, b):
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else float("nan")


def find_pauses(quiet, min_frames):
    """[start, end) runs of True of at least min_frames."""
    runs, start = [], None
    for i, q in enumerate(list(quiet) + [False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if i - start >= min_frames:
                runs.append((start, i))
            start = None
    return runs


def av_lag(opening, rms, max_lag):
    """(lag, refined lag, r at lag): the L maximising r(opening[i], rms[i - L])."""
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        a = opening[max(lag, 0):len(opening) + min(lag, 0)]
        b = rms[max(-lag, 0):len(rms) - max(lag, 0)]
        n = min(len(a), len(b))
        if n > 2 * max_lag:
            scores[lag] = pearson(a[:n], b[:n])
    scores = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not scores:
        return float("nan"), float("nan"), float("nan")
    best = max(scores, key=scores.get)
    fine = float(best)
    if best - 1 in scores and best + 1 in scores:
        left, mid, right = scores[best - 1], scores[best], scores[best + 1]
        den = left - 2 * mid + right
        if den < 0:
            fine = best + 0.5 * (left - right) / den
    return best, fine, scores[best]


def onsets(opening, quiet, min_quiet, closed_threshold, reach=8):
    """Audio onsets after >= min_quiet quiet frames, each with the mouth's onset near it."""
    found = []
    run = 0
    for i, q in enumerate(quiet):
        if q:
            run += 1
            continue
        if run >= min_quiet:
            start = max(i - run, i - reach)
            mouth = next((k for k in range(start, min(i + reach + 1, len(opening)))
                          if opening[k] >= closed_threshold), None)
            found.append({"audio_frame": i, "mouth_frame": mouth,
                          "offset_frames": None if mouth is None else mouth - i})
        run = 0
    return found


def measure(args):
    avatar = Avatar(args.avatar)
    first = int(round(args.start * FPS))
    count = None if args.seconds is None else int(round(args.seconds * FPS))
    openings = []
    shown = []
    for i, frame in read_frames(args.frames, first, count):
        shown.append(i)
        if len(shown) > 1 and shown[-2] == i:
            openings.append(openings[-1])
            continue
        image, box = avatar.template(pingpong(i + args.start_frame, avatar.count))
        if frame.shape != image.shape:
            raise SystemExit(f"frame {i}: size {frame.shape[1]}x{frame.shape[0]} differs from the "
                             f"avatar's {image.shape[1]}x{image.shape[0]}")
        x0, y0, x1, y1 = box
        diff = frame[y0:y1, x0:x1].astype(np.float32) - image[y0:y1, x0:x1].astype(np.float32)
        diff = cv2.GaussianBlur(diff, (5, 5), 1.0)
        diff -= np.median(diff.reshape(-1, 3), axis=0)
        openings.append(float(np.abs(diff).mean()))
    if not openings:
        raise SystemExit(f"{args.frames}: no frames")
    opening = np.array(openings)
    wav = audio_track(args.frames) if args.audio_track else load_audio(args.audio)
    rms, duration = frame_rms(wav, first, len(opening))
    # frames past the end of the audio (the element's last frames) are not compared
    usable = max(0, min(len(opening), int(math.ceil(duration * FPS)) - first))
    opening_u, rms_u = opening[:usable], rms[:usable]

    silence_rms = 10.0 ** (args.silence_dbfs / 20.0)
    quiet = rms_u < silence_rms
    min_frames = int(math.ceil(args.min_pause * FPS - 1e-9))
    guard = int(round(args.guard * FPS))
    pauses = []
    steady = np.zeros(usable, bool)
    for start, end in find_pauses(quiet, min_frames):
        closed = opening_u[start:end] < args.closed_threshold
        pauses.append({"start_s": (first + start) / FPS, "end_s": (first + end) / FPS,
                       "frames": end - start,
                       "closed_share": float(closed.mean()),
                       "max_opening": float(opening_u[start:end].max())})
        steady[start + guard:max(end - guard, start + guard)] = True
    pairs = steady[1:] & steady[:-1]
    jitter = float(np.mean(np.abs(np.diff(opening_u))[pairs])) if pairs.any() else float("nan")
    speech = rms_u >= silence_rms
    lag, lag_fine, lag_r = av_lag(opening_u, rms_u, 8)
    onset_list = onsets(opening_u, quiet, int(math.ceil(args.onset_pause * FPS - 1e-9)),
                        args.closed_threshold)
    for onset in onset_list:
        onset["audio_s"] = (first + onset["audio_frame"]) / FPS
        onset["audio_frame"] += first
        if onset["mouth_frame"] is not None:
            onset["mouth_frame"] += first
    offsets = [abs(o["offset_frames"]) for o in onset_list if o["offset_frames"] is not None]
    result = {
        "first_frame": first,
        "frames": int(len(opening)),
        "frames_off_time": sum(n != k for k, n in enumerate(shown, first)),
        "frames_compared": int(usable),
        "audio_seconds": duration,
        "pearson_r": pearson(opening_u, rms_u),
        "closed_threshold": args.closed_threshold,
        "silence_dbfs": args.silence_dbfs,
        "min_pause_s": args.min_pause,
        "pauses": pauses,
        "min_pause_closed_share": min((p["closed_share"] for p in pauses), default=float("nan")),
        "silence_jitter": jitter,
        "steady_silence_frames": int(steady.sum()),
        "opening_mean_speech": float(opening_u[speech].mean()) if speech.any() else float("nan"),
        "opening_mean_silence": float(opening_u[~speech].mean()) if (~speech).any() else float("nan"),
        "opening_max": float(opening_u.max()),
        "open_share_speech": float((opening_u[speech] >= args.closed_threshold).mean())
        if speech.any() else float("nan"),
        "av_lag_frames": lag,
        "av_lag_ms": lag * 1000.0 / FPS,
        "av_lag_frames_fine": lag_fine,
        "av_lag_r": lag_r,
        "onset_pause_s": args.onset_pause,
        "onsets": onset_list,
        "onsets_missed": sum(o["offset_frames"] is None for o in onset_list),
        "onset_offset_max_abs": max(offsets) if offsets else None,
    }
    return result, opening_u, rms_u, pauses


# ------------------------------------------------------------------ plot

def plot(path, opening, rms, pauses, closed_threshold, title, first=0):
    """RMS envelope and mouth opening over time (frames first, first + 1, ...), drawn with
    OpenCV."""
    n = len(opening)
    width, height = 1400, 460
    left, right, top, bottom = 70, 70, 50, 60
    pw, ph = width - left - right, height - top - bottom
    img = np.full((height, width, 3), 255, np.uint8)

    def px(i):
        return left + (i / max(n - 1, 1)) * pw

    for p in pauses:                                   # pauses: light grey bands
        cv2.rectangle(img, (int(px(p["start_s"] * FPS - first)), top),
                      (int(px(p["end_s"] * FPS - first - 1)), top + ph), (232, 232, 232), -1)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for s in range(int(math.ceil(first / FPS)), int((first + n) / FPS) + 1):
        x = int(px(s * FPS - first))
        cv2.line(img, (x, top + ph), (x, top + ph + 6), (0, 0, 0), 1)
        cv2.putText(img, f"{s}", (x - 5, top + ph + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(img, "time (s)", (left + pw // 2 - 30, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    rms_max = max(float(rms.max()), 1e-9)
    open_max = max(float(opening.max()), closed_threshold * 2, 1e-9)

    def curve(values, vmax, color):
        pts = np.array([[px(i), top + ph - (v / vmax) * ph] for i, v in enumerate(values)], np.float64)
        cv2.polylines(img, [np.round(pts * 4).astype(np.int32)], False, color, 2, cv2.LINE_AA, shift=2)

    ty = int(top + ph - closed_threshold / open_max * ph)
    for x in range(left, left + pw, 12):                # closed threshold: dashed
        cv2.line(img, (x, ty), (min(x + 6, left + pw), ty), (80, 160, 80), 1)
    curve(rms, rms_max, (200, 120, 30))                 # blue: audio RMS
    curve(opening, open_max, (30, 30, 210))             # red: mouth opening
    for k in range(5):
        v = k / 4
        y = int(top + ph - v * ph)
        cv2.putText(img, f"{v * rms_max:.3f}", (6, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (200, 120, 30), 1, cv2.LINE_AA)
        cv2.putText(img, f"{v * open_max:.1f}", (left + pw + 6, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (30, 30, 210), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "audio RMS (left axis)", (left, 42), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (200, 120, 30), 1, cv2.LINE_AA)
    cv2.putText(img, "mouth opening, mean |frame - template| (right axis)", (left + 220, 42),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 210), 1, cv2.LINE_AA)
    cv2.putText(img, "closed threshold / pauses (grey)", (left + 720, 42),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (80, 160, 80), 1, cv2.LINE_AA)
    if not cv2.imwrite(path, img):
        raise SystemExit(f"cannot write {path}")


# ------------------------------------------------------------------ main

def _no_nan(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("Per output frame"):__doc__.index("Usage:")])
    ap.add_argument("frames", help="video file or directory of frame images")
    ap.add_argument("--avatar", required=True, help="avatar directory (full_body_img/, landmarks/)")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="the speech file the frames were rendered from")
    source.add_argument("--audio-track", action="store_true",
                        help="use FRAMES' own audio track (a recording), aligned by start times")
    ap.add_argument("--start-frame", type=int, default=0, help="ping-pong phase shift used to render")
    ap.add_argument("--closed-threshold", type=float, default=3.0,
                    help="opening below this counts as closed (default 3.0)")
    ap.add_argument("--silence-dbfs", type=float, default=-40.0,
                    help="frame RMS below this is silence (default -40)")
    ap.add_argument("--min-pause", type=float, default=0.5, help="shortest pause, s (default 0.5)")
    ap.add_argument("--guard", type=float, default=0.2,
                    help="steady silence starts this far inside a pause, s (default 0.2)")
    ap.add_argument("--onset-pause", type=float, default=0.3,
                    help="quiet before an audio onset, s (default 0.3)")
    ap.add_argument("--from", dest="start", type=float, default=0.0,
                    help="measure from this time of the video, s (default 0)")
    ap.add_argument("--seconds", type=float, help="measure this long, s (default: to the end)")
    ap.add_argument("--png", help="write a plot of RMS and opening over time")
    ap.add_argument("--csv", help="write per-frame time, rms, opening")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    result, opening, rms, pauses = measure(args)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("frame,time_s,rms,opening\n")
            for i, (r, o) in enumerate(zip(rms, opening), result["first_frame"]):
                f.write(f"{i},{i / FPS:.2f},{r:.6f},{o:.4f}\n")
    if args.png:
        plot(args.png, opening, rms, pauses, args.closed_threshold,
             f"{os.path.basename(args.frames.rstrip('/'))} / "
             f"{'its audio' if args.audio_track else os.path.basename(args.audio)}: "
             f"r = {result['pearson_r']:.3f}, silence jitter = {result['silence_jitter']:.3f}",
             result["first_frame"])
    if args.json:
        # NaN (no pauses, no steady silence) is written as null, which strict JSON parsers accept
        json.dump(_no_nan(result), sys.stdout, indent=2, allow_nan=False)
        print()
        return
    print(f"frames {result['frames']} ({result['frames_compared']} compared, "
          f"audio {result['audio_seconds']:.2f} s; {result['frames_off_time']} shown off time)")
    print(f"pearson r (opening vs 40 ms rms)  {result['pearson_r']:.3f}")
    print(f"closed threshold                  {result['closed_threshold']:.2f} (mean |diff|, 0..255)")
    print(f"mean opening: speech {result['opening_mean_speech']:.2f}, silence "
          f"{result['opening_mean_silence']:.2f}, max {result['opening_max']:.2f}; open in "
          f"{100 * result['open_share_speech']:.0f} % of speech frames")
    print(f"pauses (rms < {result['silence_dbfs']:.0f} dBFS for >= {result['min_pause_s']} s):")
    for p in pauses:
        print(f"  {p['start_s']:6.2f} .. {p['end_s']:6.2f} s  {p['frames']:3d} frames  closed "
              f"{100 * p['closed_share']:5.1f} %  max opening {p['max_opening']:.2f}")
    if not pauses:
        print("  none")
    print(f"silence jitter                    {result['silence_jitter']:.3f} "
          f"({result['steady_silence_frames']} steady-silence frames)")
    print(f"A/V lag (mouth after sound > 0)   {result['av_lag_frames']} frames "
          f"({result['av_lag_ms']:.0f} ms; {result['av_lag_frames_fine']:.2f} between frames, "
          f"r = {result['av_lag_r']:.3f})")
    print(f"onsets after >= {result['onset_pause_s']} s quiet (mouth - audio, frames):")
    for o in result["onsets"]:
        offset = "mouth stays closed" if o["offset_frames"] is None else f"{o['offset_frames']:+d}"
        print(f"  {o['audio_s']:7.2f} s  {offset}")
    if not result["onsets"]:
        print("  none")


if __name__ == "__main__":
    main()
