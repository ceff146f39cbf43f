#!/usr/bin/env python3
# requires: numpy, opencv-python-headless, soundfile; see requirements.txt
"""Make an avatar whose template frames show the mouth open, as a real SyncTalk_2D avatar's do
(its templates are its training video: a person talking).

From frames the element rendered of an avatar speaking (--frames: a folder of images in name
order, output frame i painted on template pingpong(i)) and the audio they were rendered from
(--audio, 16 kHz), each template t of the new avatar is the rendered frame on template t whose
40 ms of audio is loudest (mouth open). Landmarks are copied from --avatar (SyncTalk_2D layout).

Usage: python3 tools/make_talking_avatar.py --frames DIR --audio SPEECH.wav --avatar models/demo
           --out DIR
"""

import argparse
import os
import shutil

import cv2
import numpy as np
import soundfile

from measure_mouth import IMAGE_EXTENSIONS, pingpong


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--avatar", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    names = sorted(n for n in os.listdir(args.frames) if n.lower().endswith(IMAGE_EXTENSIONS))
    audio, rate = soundfile.read(args.audio, dtype="float32", always_2d=True)
    assert rate == 16000, f"{args.audio}: {rate} Hz, not 16 kHz"
    audio = audio.mean(axis=1)
    templates = len(os.listdir(os.path.join(args.avatar, "landmarks")))
    loudest = {}
    for i in range(len(names)):
        window = audio[640 * i:640 * (i + 1)]
        rms = float(np.sqrt(np.mean(window ** 2))) if len(window) else 0.0
        t = pingpong(i, templates)
        if t not in loudest or rms > loudest[t][0]:
            loudest[t] = (rms, i)
    missing = sorted(set(range(templates)) - set(loudest))
    assert not missing, f"templates {missing} have no rendered frame: render more frames"

    os.makedirs(os.path.join(args.out, "full_body_img"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "landmarks"), exist_ok=True)
    for t, (rms, i) in sorted(loudest.items()):
        frame = cv2.imread(os.path.join(args.frames, names[i]), cv2.IMREAD_COLOR)
        cv2.imwrite(os.path.join(args.out, "full_body_img", f"{t}.jpg"), frame,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        shutil.copy(os.path.join(args.avatar, "landmarks", f"{t}.lms"),
                    os.path.join(args.out, "landmarks", f"{t}.lms"))
    quiet = sum(1 for rms, _ in loudest.values() if rms < 0.01)
    print(f"wrote {templates} templates to {args.out} ({quiet} from frames under -40 dBFS)")


if __name__ == "__main__":
    main()
