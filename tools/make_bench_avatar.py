#!/usr/bin/env python3
# requires: numpy, pillow (see requirements.txt)
"""Make the 1280x720 benchmark avatar from the built-in demo avatar.

Writes a SyncTalk_2D-style dataset (full_body_img/{0..N-1}.jpg, landmarks/{0..N-1}.lms)
into target/bench-avatar/ (or --out): the demo avatar's 640x360 frames scaled 2x with
LANCZOS, their landmarks scaled with them (so the crop boxes are the demo's, twice the size:
about 230x230 around the mouth), JPEG q90 4:2:0 like the demo.  The demo has 60 frames; frames
60..N-1 repeat them shifted right by 8 px (landmarks shifted too), so all N frames are distinct
files of realistic size.  Deterministic; not committed (about 15 MB).

Usage:  python3 tools/make_bench_avatar.py [--out target/bench-avatar] [--frames 100]
"""

import argparse
import os

import numpy as np
from PIL import Image

SCALE = 2
SHIFT = 8


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default=os.path.join(here, "..", "models", "demo"))
    ap.add_argument("--out", default=os.path.join(here, "..", "target", "bench-avatar"))
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    demo_images = os.path.join(args.demo, "full_body_img")
    count = len([f for f in os.listdir(demo_images) if f.endswith(".jpg")])
    img_dir = os.path.join(args.out, "full_body_img")
    lms_dir = os.path.join(args.out, "landmarks")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lms_dir, exist_ok=True)
    for n in range(args.frames):
        source, shift = n % count, SHIFT * (n // count)
        img = Image.open(os.path.join(demo_images, "%d.jpg" % source)).convert("RGB")
        img = img.resize((img.width * SCALE, img.height * SCALE), Image.LANCZOS)
        pixels = np.asarray(img)
        if shift:
            pixels = np.concatenate([np.repeat(pixels[:, :1], shift, axis=1), pixels[:, :-shift]], axis=1)
        Image.fromarray(pixels).save(os.path.join(img_dir, "%d.jpg" % n), "JPEG", quality=90,
                                     subsampling=2, optimize=False, progressive=False)
        with open(os.path.join(args.demo, "landmarks", "%d.lms" % source)) as fh:
            points = [tuple(float(v) for v in line.split()) for line in fh if line.strip()]
        with open(os.path.join(lms_dir, "%d.lms" % n), "w", newline="\n") as fh:
            for x, y in points:
                fh.write("%d %d\n" % (round(x * SCALE) + shift, round(y * SCALE)))
        if n == 0:
            x0, x1, y0 = points[1][0] * SCALE, points[31][0] * SCALE, points[52][1] * SCALE
            print("%dx%d, crop box of frame 0: x %d..%d, y %d..%d" % (
                pixels.shape[1], pixels.shape[0], x0, x1, y0, y0 + x1 - x0))
    print("%d frames in %s" % (args.frames, args.out))


if __name__ == "__main__":
    main()
