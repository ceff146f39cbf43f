#!/usr/bin/env python3
"""Writes the OpenCV reference outputs that src/compose is tested against (tests/data/compose/).

Run with the versions the fixtures were made with:

    python3 -m venv /tmp/cv-venv
    /tmp/cv-venv/bin/pip install numpy==2.2.6 opencv-python-headless==4.11.0.86
    /tmp/cv-venv/bin/python tools/make_compose_fixtures.py

The inputs are not stored: `pattern()` is a seeded integer-only generator that the Rust tests
reproduce bit for bit (src/compose/fixtures.rs). Files are packed BGR, rows without padding, named
after the chain of sizes that made them: `cubic_182x182_to_328x328.bgr` is pattern(182, 182) resized
to 328x328, `cubic_182x182_to_328x328_to_182x182.bgr` is that file resized back.

The x86-64 opencv-python wheels hand INTER_CUBIC on 8-bit images to Intel IPP, whose float
arithmetic differs from OpenCV's own fixed-point resizeGeneric_ by +-1 on a few percent of the
samples and even between IPP's SSE4.2 and AVX2 builds. The reference fixtures therefore come from
OpenCV's own code path (`cv2.ipp.setUseIPP(False)`), which is also what builds without IPP (ARM,
most distribution packages) run; one IPP output is kept to bound the difference.
"""

import pathlib

import cv2
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "compose"

MASK_RECT = (5, 5, 310, 305)  # inference_328.py: cv2.rectangle(img, (5,5,310,305), (0,0,0), -1)


def splitmix64(index):
    """splitmix64 of a uint64 array, wrapping like Rust's wrapping_* arithmetic."""
    with np.errstate(over="ignore"):
        z = index + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def pattern(width, height, seed):
    """Blocks of smooth gradients, hard 0/255 stripes (cubic overshoot saturates) and noise."""
    y, x, c = np.meshgrid(
        np.arange(height, dtype=np.uint64),
        np.arange(width, dtype=np.uint64),
        np.arange(3, dtype=np.uint64),
        indexing="ij",
    )
    w, h = np.uint64(width), np.uint64(height)
    smooth = (x * np.uint64(255) // (w - np.uint64(1)) * (c + np.uint64(1))
              + y * np.uint64(255) // (h - np.uint64(1)) * (np.uint64(3) - c)) // np.uint64(4)
    stripes = np.uint64(255) * ((x // np.uint64(3) + y // np.uint64(4) + c) % np.uint64(2))
    index = (np.uint64(seed) << np.uint64(32)) + (y * w + x) * np.uint64(3) + c
    noise = splitmix64(index) >> np.uint64(56)
    region = (x * np.uint64(4) // w + y * np.uint64(4) // h) % np.uint64(3)
    image = np.where(region == 0, smooth, np.where(region == 1, stripes, noise))
    return image.astype(np.uint8)


def cubic(image, width, height):
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def size(image):
    h, w = image.shape[:2]
    return f"{w}x{h}"


def save(name, image):
    path = OUT / f"{name}.bgr"
    np.ascontiguousarray(image).tofile(path)
    return path


def compare(label, a, b):
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    print(f"  {label}: {np.count_nonzero(diff)} of {diff.size} bytes differ, max {diff.max()}")


def reference_paste(frame, box):
    """inference_328.py, with the network replaced by channels 0-2 of its own input."""
    xmin, ymin, xmax, ymax = box
    img = frame.copy()
    crop_img = img[ymin:ymax, xmin:xmax]
    h, w = crop_img.shape[:2]
    crop_img = cv2.resize(crop_img, (328, 328), interpolation=cv2.INTER_CUBIC)
    crop_img_ori = crop_img.copy()
    img_real_ex = crop_img[4:324, 4:324].copy()
    img_real_ex_ori = img_real_ex.copy()
    img_masked = cv2.rectangle(img_real_ex_ori, MASK_RECT, (0, 0, 0), -1)
    img_masked = img_masked.transpose(2, 0, 1).astype(np.float32)
    img_real_ex = img_real_ex.transpose(2, 0, 1).astype(np.float32)
    img_concat = np.concatenate([img_real_ex / 255.0, img_masked / 255.0], axis=0)[None]
    assert img_concat.dtype == np.float32
    pred = img_concat[0, :3]
    pred = pred.transpose(1, 2, 0) * 255
    pred = np.array(pred, dtype=np.uint8)
    crop_img_ori[4:324, 4:324] = pred
    crop_img_ori = cv2.resize(crop_img_ori, (w, h), interpolation=cv2.INTER_CUBIC)
    img[ymin:ymax, xmin:xmax] = crop_img_ori
    return img


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}, {cv2.ipp.getIppVersion()}")

    # Seeds are the box width, so the Rust side needs no table.
    to_crop = {}
    for w, h in [(182, 182), (217, 163), (400, 400)]:
        source = pattern(w, h, seed=w)
        cv2.ipp.setUseIPP(False)
        to_crop[(w, h)] = cubic(source, 328, 328)
        path = save(f"cubic_{w}x{h}_to_328x328", to_crop[(w, h)])
        print(path.name, f"<- pattern({w}, {h}, seed={w})")
        cv2.ipp.setUseIPP(True)
        compare("IPP vs generic", cubic(source, 328, 328), to_crop[(w, h)])

    back_to_box = [((182, 182), (182, 182)), ((217, 163), (217, 163)), ((150, 150), (400, 400))]
    for (w, h), source in back_to_box:
        crop = to_crop[source]
        cv2.ipp.setUseIPP(False)
        generic = cubic(crop, w, h)
        name = f"cubic_{source[0]}x{source[1]}_to_328x328_to_{w}x{h}"
        print(save(name, generic).name)
        cv2.ipp.setUseIPP(True)
        ipp = cubic(crop, w, h)
        compare("IPP vs generic", ipp, generic)
        if (w, h) == (150, 150):
            print(save(f"ipp_{name}", ipp).name, "<- the same with IPP")

    cv2.ipp.setUseIPP(False)
    frame = pattern(300, 200, seed=7)
    box = (120, 60, 120 + 217, 60 + 217)  # clipped by the frame like a numpy slice: 180x140
    pasted = reference_paste(frame, box)
    region = pasted[box[1]:box[3], box[0]:box[2]]
    path = save(f"roundtrip_{size(region)}", region)
    print(path.name, f"<- reference_paste(pattern(300, 200, seed=7), {list(box)})")
    outside = np.ones(frame.shape[:2], bool)
    outside[box[1]:box[3], box[0]:box[2]] = False
    assert np.array_equal(pasted[outside], frame[outside])

    total = sum(p.stat().st_size for p in OUT.glob("*.bgr"))
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
