#!/usr/bin/env python3
# requires: numpy, soundfile; see requirements.txt
"""Write a speech file to stdout as raw PCM at real-time pace, like a TTS service.

The samples go out as S16LE, 16 kHz, mono (converted if the file is not), in chunks of
--chunk-ms (default 20 ms), each written when the wall clock reaches its start, so a reader
sees audio arrive as fast as it plays and never faster.

--loops N plays the file N times. Between loops (not after the last) --pause S seconds pass:
by default NOTHING is written during a pause (as a TTS service between utterances); with
--pause-zeros the pause is written as silence (zero samples) at the same pace.

Usage:
  python3 tools/pace_pcm.py SPEECH.wav [--loops N] [--pause S] [--pause-zeros] [--chunk-ms MS]
      | gst-launch-1.0 fdsrc fd=0 do-timestamp=true ! rawaudioparse ... ! ...
  python3 tools/pace_pcm.py SPEECH.wav --loops 2 --raw-out OUT.wav   (writes the timeline the
      reader should see, pauses as zeros, as a WAV, and exits without pacing)
Exit status 0, also when the reader goes away (a broken pipe ends the stream quietly).
"""

import argparse
import os
import sys
import time

import numpy as np
import soundfile

RATE = 16000


def load(path):
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != RATE:
        # linear resampling is enough for a feeder; the element wants 16 kHz mono
        n = int(round(len(samples) * RATE / rate))
        samples = np.interp(np.arange(n) * rate / RATE, np.arange(len(samples)), samples)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")


def timeline(samples, loops, pause):
    """The whole stream as (samples, is_pause) parts, in order."""
    parts = []
    for k in range(loops):
        parts.append((samples, False))
        if k + 1 < loops and pause > 0:
            parts.append((np.zeros(int(round(pause * RATE)), "<i2"), True))
    return parts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("speech", help="speech file (any rate and channels soundfile reads)")
    ap.add_argument("--loops", type=int, default=1, help="times to play the file (default 1)")
    ap.add_argument("--pause", type=float, default=0.0, help="seconds between loops (default 0)")
    ap.add_argument("--pause-zeros", action="store_true",
                    help="write the pauses as zero samples instead of writing nothing")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="chunk length, ms (default 20)")
    ap.add_argument("--raw-out", help="write the stream's timeline as a 16 kHz WAV and exit")
    args = ap.parse_args(argv)
    if args.loops < 1 or args.pause < 0 or args.chunk_ms <= 0:
        ap.error("--loops must be >= 1, --pause >= 0 and --chunk-ms > 0")

    parts = timeline(load(args.speech), args.loops, args.pause)
    if args.raw_out:
        soundfile.write(args.raw_out, np.concatenate([p for p, _ in parts]), RATE, subtype="PCM_16")
        return

    chunk = max(1, int(round(args.chunk_ms * RATE / 1000)))
    out = sys.stdout.buffer
    start = time.monotonic()
    position = 0                      # samples of the timeline already due (written or skipped)
    try:
        for samples, is_pause in parts:
            for at in range(0, len(samples), chunk):
                piece = samples[at:at + chunk]
                due = start + position / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not is_pause or args.pause_zeros:
                    out.write(piece.tobytes())
                    out.flush()
                position += len(piece)
        # the last chunk has been written when it starts playing; let it play out
        delay = start + position / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    except BrokenPipeError:
        # the reader stopped; do not let Python complain while flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
