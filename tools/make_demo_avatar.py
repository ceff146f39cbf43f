#!/usr/bin/env python3
# requires: numpy==1.26.4, pillow==10.4.0   (Python >= 3.9; no other dependencies)
# (numpy==2.2.6 + pillow==11.3.0 from requirements.txt give byte-identical output)
"""Draw the synthetic built-in demo avatar of gst-talkinghead.

Writes a SyncTalk_2D-style dataset into models/demo/ (or the directory given
with --out):

    full_body_img/{0..59}.jpg   640x360 RGB, JPEG q90, 4:2:0, baseline (Pillow)
    landmarks/{0..59}.lms       110 lines "x y", integer pixel coordinates

The avatar is a cartoon head-and-shoulders bust rendered with numpy at 4x and
downsampled with LANCZOS.  Over the 60 frames (2.4 s at 25 fps) the head sways
sideways (period 60 frames) and bobs (period 30 frames) by a few pixels, so the
sequence loops seamlessly, and the eyes blink twice (BLINKS below).  The mouth is
always closed (neutral); the lip-sync model generates the mouth.

Everything is deterministic: no random numbers are used, so running the script
twice gives byte-identical files (for a given Pillow/libjpeg build).

Landmark index map (110 points, PFLD/WFLW-style ordering as consumed by
SyncTalk_2D; "left"/"right" mean image left/right):
    0        left temple
    1..15    left jaw contour, from the left cheek at nose height (1, same height
             as 52) down to the chin
    16       chin bottom
    17..31   right jaw contour, mirror of 15..1 (31 = right cheek at nose height)
    32       right temple
    33..37   left eyebrow, upper edge, outer -> inner
    38..41   left eyebrow, lower edge, inner -> outer
    42..46   right eyebrow, upper edge, inner -> outer
    47..50   right eyebrow, lower edge, outer -> inner
    51..54   nose bridge (51, between the eyes) down to the nose tip (54);
             52 is a bit above the tip, at the height of 1 and 31
    55..59   nose base / nostrils, left wing -> right wing
    60..67   left eye: 60 left corner, 61..63 upper lid, 64 right corner,
             65..67 lower lid (right -> left)
    68..75   right eye, same order as the left eye
    76..87   outer lip contour: 76 left corner, 77..81 upper lip (left -> right),
             82 right corner, 83..87 lower lip (right -> left)
    88..95   inner lip contour: 88 left inner corner, 89..91 upper (left -> right),
             92 right inner corner, 93..95 lower (right -> left); the mouth is
             closed, so upper and lower inner points coincide
    96, 97   pupils (left, right)
    98..109  forehead contour (top of the face oval, partly under the fringe)
             from the left temple over the top to the right temple, between
             0 and 32

The consumer crops the lower face with
    xmin = lms[1].x, xmax = lms[31].x, ymin = lms[52].y,
    side = xmax - xmin, ymax = ymin + side
which here spans the cheeks at nose height and runs from the nose to 17-18 px
below the chin, with the mouth centre at half the box height
(frame 0: x 263..377, y 171..285).

Usage:  python3 tools/make_demo_avatar.py [--out models/demo] [--debug-png FILE]
"""

import argparse
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 640, 360          # output frame size
S = 4                    # supersampling factor
N_FRAMES = 60
CX = 320.0               # head centre x (before sway)

# Blink schedule: frame -> eye openness (1 = open, 0 = closed). Unlisted = open.
BLINK_STARTS = (18, 45)
BLINK_SHAPE = (0.55, 0.0, 0.0, 0.5)   # closed on the 2nd and 3rd frame
BLINKS = {}
for _b in BLINK_STARTS:
    for _i, _o in enumerate(BLINK_SHAPE):
        BLINKS[_b + _i] = _o

# ---------------------------------------------------------------- geometry
# All head geometry is in output-pixel units relative to an unswayed head
# centred at x = CX; the per-frame sway (dx, dy) is added when drawing.
FACE_TOP = 74.0       # top of the face oval (under the hair)
FACE_WIDE_Y = 147.0   # widest point of the face (cheekbones)
FACE_HW = 61.0        # half width at the cheekbones
CHIN_Y = 266.0
NOSE_TIP_Y = 182.0    # nose tip (landmark 54)
NOSE_Y52 = NOSE_TIP_Y - 12.0   # landmark 52 height (= crop box top)
TEMPLE_Y = 131.0

EYE_Y = 152.0
EYE_DX = 26.0         # eye centre offset from the face centre line
EYE_HW = 12.5         # eye half width
EYE_UP = 7.4          # upper lid height when open
EYE_LO = 4.6          # lower lid depth
IRIS_R = 6.0

MOUTH_Y = 226.0       # lip line at the centre


def face_half_width(y):
    """Half width of the face oval at height y (vectorised)."""
    y = np.asarray(y, dtype=np.float64)
    up = np.clip((FACE_WIDE_Y - y) / (FACE_WIDE_Y - FACE_TOP), 0.0, 1.0)
    w_up = FACE_HW * np.sqrt(np.clip(1.0 - up ** 2, 0.0, 1.0))
    u = np.clip((y - FACE_WIDE_Y) / (CHIN_Y - FACE_WIDE_Y), 0.0, 1.0)
    w_lo = FACE_HW * (1.0 - 0.36 * u) * np.cbrt(np.clip(1.0 - u ** 3, 0.0, 1.0))
    w = np.where(y < FACE_WIDE_Y, w_up, w_lo)
    return np.where((y < FACE_TOP) | (y > CHIN_Y), 0.0, w)


def catmull_rom(points, samples=16, closed=False):
    """Smooth curve through the given points (list of (x, y))."""
    p = [np.asarray(q, dtype=np.float64) for q in points]
    if closed:
        p = [p[-1]] + p + [p[0], p[1]]
    else:
        p = [2 * p[0] - p[1]] + p + [2 * p[-1] - p[-2]]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for k in range(samples):
            t = k / samples
            t2, t3 = t * t, t * t * t
            out.append(0.5 * ((2 * p1) + (-p0 + p2) * t
                              + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    if not closed:
        out.append(p[-2])
    return [(float(q[0]), float(q[1])) for q in out]


def resample_arc(curve, n):
    """n points evenly spaced by arc length along a polyline (incl. ends)."""
    c = np.asarray(curve, dtype=np.float64)
    seg = np.hypot(*np.diff(c, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, c[:, 0]), np.interp(t, s, c[:, 1])], axis=1)


def face_outline_left(y0, y1, n=400):
    """Left face edge from y0 to y1 as a dense polyline."""
    ys = np.linspace(y0, y1, n)
    return np.stack([CX - face_half_width(ys), ys], axis=1)


def eye_curves(ex, openness, t):
    """Upper and lower lid y for the eye centred at ex, t in [-1, 1]."""
    base = np.clip(1.0 - t * t, 0.0, 1.0)
    # the lid peak sits slightly towards the inner corner
    inner = -1.0 if ex < CX else 1.0
    skew = 1.0 + 0.12 * t * inner
    upper_open = EYE_Y - EYE_UP * base ** 0.75 * skew
    closed = EYE_Y + 1.6 * base ** 0.9
    upper = closed + (upper_open - closed) * openness
    lower = EYE_Y + EYE_LO * base ** 0.9
    return upper, lower


def brow_edges(side):
    """Upper and lower edge polylines of an eyebrow, inner -> outer.

    side = -1 for the image-left brow, +1 for the right one."""
    ts = np.linspace(0.0, 1.0, 41)                    # 0 = inner, 1 = outer
    x = CX + side * (12.0 + 32.0 * ts)
    yc = EYE_Y - 15.0 - 5.5 * np.sin(np.pi * np.clip(ts * 0.85, 0, 1)) + 2.0 * ts
    thick = 5.6 * (1.0 - ts) ** 0.8 + 1.6 * ts
    return (np.stack([x, yc - 0.55 * thick], 1), np.stack([x, yc + 0.45 * thick], 1))


UPPER_LIP = [(-20.0, 0.0), (-13.0, -4.6), (-5.0, -6.6), (0.0, -5.1),
             (5.0, -6.6), (13.0, -4.6), (20.0, 0.0)]
LIP_LINE = [(-20.0, 0.0), (-16.5, 0.3), (-8.0, 0.9), (0.0, 1.3),
            (8.0, 0.9), (16.5, 0.3), (20.0, 0.0)]
LOWER_LIP = [(20.0, 0.0), (13.0, 6.4), (6.0, 8.9), (0.0, 9.4),
             (-6.0, 8.9), (-13.0, 6.4), (-20.0, 0.0)]
UPPER_LIP, LIP_LINE, LOWER_LIP = ([(x, MOUTH_Y + y) for x, y in c]
                                  for c in (UPPER_LIP, LIP_LINE, LOWER_LIP))


def landmarks(dx, dy, openness):
    """The 110 landmarks (float) for a head swayed by (dx, dy)."""
    pts = np.zeros((110, 2), dtype=np.float64)
    # jaw contour
    pts[0] = (CX - face_half_width(TEMPLE_Y), TEMPLE_Y)
    jaw = resample_arc(face_outline_left(NOSE_Y52, CHIN_Y), 16)   # 1..16
    pts[1:17] = jaw
    pts[16] = (CX, CHIN_Y)
    for i in range(1, 16):
        pts[32 - i] = (2 * CX - jaw[i - 1][0], jaw[i - 1][1])
    pts[32] = (CX + face_half_width(TEMPLE_Y), TEMPLE_Y)
    # eyebrows
    for side, base in ((-1, 33), (1, 42)):
        upper, lower = brow_edges(side)
        up_idx = [40, 30, 20, 10, 0]          # outer -> inner
        lo_idx = [5, 15, 25, 35]              # inner -> outer
        if side > 0:
            up_idx = up_idx[::-1]
            lo_idx = lo_idx[::-1]
        for k, j in enumerate(up_idx):
            pts[base + k] = upper[j]
        for k, j in enumerate(lo_idx):
            pts[base + 5 + k] = lower[j]
    # nose
    pts[51] = (CX, EYE_Y + 1.0)
    pts[52] = (CX, NOSE_Y52)
    pts[53] = (CX, NOSE_TIP_Y - 6.0)
    pts[54] = (CX, NOSE_TIP_Y)
    n = NOSE_TIP_Y
    pts[55:60] = [(CX - 10, n + 2), (CX - 5, n + 4), (CX, n + 5),
                  (CX + 5, n + 4), (CX + 10, n + 2)]
    # eyes
    for base, ex in ((60, CX - EYE_DX), (68, CX + EYE_DX)):
        tt = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.5, 0.0, -0.5])
        up, lo = eye_curves(ex, openness, tt)
        ys = [up[0], up[1], up[2], up[3], up[4], lo[5], lo[6], lo[7]]
        for k in range(8):
            pts[base + k] = (ex + EYE_HW * tt[k], ys[k])
    # lips
    outer = ([UPPER_LIP[0]] + UPPER_LIP[1:6] + [UPPER_LIP[6]] + LOWER_LIP[1:6])
    for k, (x, y) in enumerate(outer):
        pts[76 + k] = (CX + x, y)
    inner = [LIP_LINE[1], LIP_LINE[2], LIP_LINE[3], LIP_LINE[4], LIP_LINE[5],
             LIP_LINE[4], LIP_LINE[3], LIP_LINE[2]]
    for k, (x, y) in enumerate(inner):
        pts[88 + k] = (CX + x, y)
    # pupils
    pts[96] = (CX - EYE_DX + 0.5, EYE_Y - 0.5)
    pts[97] = (CX + EYE_DX + 0.5, EYE_Y - 0.5)
    # forehead / hairline contour: 12 points strictly between 0 and 32
    left = face_outline_left(TEMPLE_Y, FACE_TOP)[::-1]       # top -> temple
    right = left[::-1].copy()
    right[:, 0] = 2 * CX - right[:, 0]
    top = np.concatenate([left[::-1], right[1:]])             # temple->top->temple
    pts[98:110] = resample_arc(top, 14)[1:-1]
    pts[:, 0] += dx
    pts[:, 1] += dy
    return pts


# ---------------------------------------------------------------- drawing
class Canvas:
    """A window [x0, x1) x [y0, y1) (output pixels) of the supersampled frame.

    All masks are arrays over this window at S x resolution; X and Y hold the
    output-pixel coordinates of the sample centres, so drawing code is written
    in frame coordinates.  Windows share the pixels of the full frame."""

    def __init__(self, frame, x0=0, y0=0, x1=W, y1=H):
        self.x0, self.y0 = x0, y0
        self.w, self.h = (x1 - x0) * S, (y1 - y0) * S
        xs = (x0 + (np.arange(self.w) + 0.5) / S).astype(np.float32)
        ys = (y0 + (np.arange(self.h) + 0.5) / S).astype(np.float32)
        self.X, self.Y = np.meshgrid(xs, ys)
        self.img = frame[y0 * S:y1 * S, x0 * S:x1 * S]

    def _scaled(self, pts):
        return [((x - self.x0) * S, (y - self.y0) * S) for x, y in pts]

    def poly(self, pts):
        m = Image.new("L", (self.w, self.h), 0)
        ImageDraw.Draw(m).polygon(self._scaled(pts), fill=255)
        return np.asarray(m, dtype=np.float32) / 255.0

    def stroke(self, pts, width):
        m = Image.new("L", (self.w, self.h), 0)
        d = ImageDraw.Draw(m)
        sp = self._scaled(pts)
        lw = max(1, int(round(width * S)))
        d.line(sp, fill=255, width=lw, joint="curve")
        r = lw / 2.0
        for x, y in (sp[0], sp[-1]):
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
        return np.asarray(m, dtype=np.float32) / 255.0

    def ellipse(self, x0, y0, rx, ry):
        return ((((self.X - x0) / rx) ** 2 + ((self.Y - y0) / ry) ** 2) <= 1.0
                ).astype(np.float32)

    def gauss(self, x0, y0, sx, sy):
        g = np.exp(-(((self.X - x0) / sx) ** 2 + ((self.Y - y0) / sy) ** 2))
        g[g < 1.0 / 1024] = 0.0          # keep paint() local; invisible anyway
        return g.astype(np.float32)

    def paint(self, mask, color, alpha=1.0):
        """Blend color (RGB, or an RGB map over the window) in by mask * alpha."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return
        cols = np.flatnonzero(mask.any(axis=0))
        win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        color = np.asarray(color, dtype=np.float32)
        if color.ndim == 3:
            color = color[win]
        a = (mask[win] * alpha)[..., None]
        sub = self.img[win]
        sub += (color - sub) * a


def blur(mask, radius):
    im = Image.fromarray(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8))
    im = im.filter(ImageFilter.GaussianBlur(radius * S))
    return np.asarray(im, dtype=np.float32) / 255.0


def shift(mask, dy):
    """Shift a mask down by dy output pixels."""
    k = int(round(dy * S))
    out = np.zeros_like(mask)
    out[k:] = mask[:-k] if k > 0 else mask
    return out


SKIN = np.array([238, 192, 160], dtype=np.float32)
HAIR = np.array([72, 46, 34], dtype=np.float32)
SHIRT = np.array([64, 104, 150], dtype=np.float32)
LIP_UP = np.array([186, 98, 98], dtype=np.float32)
LIP_LO = np.array([204, 114, 112], dtype=np.float32)


def draw_background(c):
    t = c.Y / H
    top = np.array([226, 232, 240], dtype=np.float32)
    bot = np.array([164, 181, 204], dtype=np.float32)
    c.img[:] = top + (bot - top) * t[..., None]
    glow = c.gauss(CX - 20, 130, 190, 150)
    c.paint(glow, (246, 246, 250), 0.45)


def draw_body(c, neck_top_dx, neck_top_dy):
    # neck (drawn first, the shirt covers its lower end)
    nx0, ny0 = CX + neck_top_dx, 200.0 + neck_top_dy
    neck = c.poly([(nx0 - 27, ny0), (nx0 + 27, ny0), (CX + 29, 280),
                   (CX + 33, 330), (CX - 33, 330), (CX - 29, 280)])
    shading = 0.80 + 0.10 * np.clip((CX - c.X) / 30.0, -1, 1)
    c.paint(neck, SKIN * shading[..., None])
    # shirt with a crew neckline
    left = [(CX - 30, 294), (CX - 75, 303), (CX - 125, 312), (CX - 165, 328),
            (CX - 192, 352), (CX - 200, 370)]
    right = [(2 * CX - x, y) for x, y in left[::-1]]
    neckline = [(CX + 30, 294), (CX + 18, 306), (CX, 310), (CX - 18, 306)]
    outline = catmull_rom(left, 12) + [(CX - 200, 380), (CX + 200, 380)] \
        + catmull_rom(right, 12) + catmull_rom(neckline + [(CX - 30, 294)], 8)[1:]
    shirt = c.poly(outline)
    lx = np.clip((c.X - CX) / 200.0, -1, 1)
    light = 0.78 + 0.22 * np.cos(lx * 1.3) - 0.06 * lx
    light -= 0.12 * np.clip((c.Y - 300) / 60.0, 0, 1)
    c.paint(shirt, SHIRT * light[..., None])
    # collar band and a few fabric folds
    collar = catmull_rom([(CX - 31, 293), (CX - 18, 306), (CX, 310.5),
                          (CX + 18, 306), (CX + 31, 293)], 10)
    c.paint(c.stroke(collar, 4.0), SHIRT * 0.72)
    c.paint(c.stroke([(x, y + 2.2) for x, y in collar], 1.2), SHIRT * 0.55, 0.6)
    for sx in (-1, 1):
        fold = catmull_rom([(CX + sx * 95, 330), (CX + sx * 85, 345),
                            (CX + sx * 80, 362)], 8)
        c.paint(blur(c.stroke(fold, 2.0), 1.5), SHIRT * 0.6, 0.45)
    return neck


def draw_head(c, dx, dy, openness):
    X, Y = c.X, c.Y
    hx = CX + dx
    # --- back hair (behind the face and ears)
    hair_back = c.ellipse(hx, 134 + dy, 77, 88) * (Y < 186 + dy)
    hair_back = np.maximum(hair_back, c.ellipse(hx, 150 + dy, 72, 44))
    hair_shade = 0.75 + 0.35 * c.gauss(hx - 25, 70 + dy, 45, 35)
    c.paint(hair_back, HAIR * hair_shade[..., None])
    # --- ears
    for s in (-1, 1):
        ex, ey = hx + s * 58.5, EYE_Y + 17 + dy
        ear = c.ellipse(ex, ey, 9.5, 17)
        c.paint(ear, SKIN * (0.86 if s < 0 else 0.80))
        inner = c.ellipse(ex + s * 1.5, ey + 1, 5.0, 11)
        c.paint(blur(inner, 0.8), SKIN * 0.62, 0.55)
    # --- face oval with simple ellipsoid shading
    ys = np.arange(int(FACE_TOP) - 2, int(CHIN_Y) + 3, 0.25)
    left = [(hx - face_half_width(y), y + dy) for y in ys]
    right = [(hx + face_half_width(y), y + dy) for y in ys[::-1]]
    face = c.poly(left + right)
    wy = face_half_width(np.clip(Y - dy, FACE_TOP + 0.5, CHIN_Y - 0.5)).astype(np.float32)
    nx = np.clip((X - hx) / np.maximum(wy + 1.0, 1.0), -1, 1)
    ny = np.clip((Y - dy - EYE_Y - 10.0) / 115.0, -1, 1)
    nz = np.sqrt(np.clip(1.0 - 0.8 * nx ** 2 - 0.35 * ny ** 2, 0.0, 1.0))
    # plain Python floats keep the maths in float32 under numpy 1.x and 2.x alike
    norm = math.sqrt(0.35 ** 2 + 0.45 ** 2 + 0.82 ** 2)
    L = (-0.35 / norm, -0.45 / norm, 0.82 / norm)
    diff = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, 1.0)
    light = 0.66 + 0.40 * diff
    c.paint(face, SKIN * light[..., None])
    # cheeks
    for s in (-1, 1):
        c.paint(face * c.gauss(hx + s * 33, NOSE_TIP_Y + 4 + dy, 13, 9), (232, 140, 130), 0.32)
    # --- fringe over the forehead, and a soft shadow under it
    fringe_pts = catmull_rom([(hx - 70, 150 + dy), (hx - 60, 126 + dy),
                              (hx - 42, 110 + dy), (hx - 18, 101 + dy),
                              (hx + 6, 91 + dy), (hx + 26, 98 + dy),
                              (hx + 46, 108 + dy), (hx + 58, 124 + dy),
                              (hx + 68, 150 + dy)], 14)
    cap = [(hx + 80 * math.cos(a), 134 + dy - 90 * math.sin(a))
           for a in np.linspace(0.0, math.pi, 60)]
    fringe = c.poly(fringe_pts + cap) * c.ellipse(hx, 134 + dy, 77, 88)
    fringe = np.maximum(fringe, hair_back * (1.0 - face) * (Y < 160 + dy))
    c.paint(face * blur(shift(fringe, 3.0), 3.0), SKIN * 0.62, 0.45)
    c.paint(fringe, HAIR * hair_shade[..., None])
    # hair sheen and a few soft strands sweeping away from the side parting
    hl = c.stroke(catmull_rom([(hx - 52, 92 + dy), (hx - 30, 70 + dy),
                               (hx - 2, 60 + dy), (hx + 26, 62 + dy)], 10), 6.0)
    c.paint(blur(hl, 3.0) * fringe, (168, 120, 92), 0.6)
    for k in range(7):
        strand = catmull_rom([(hx + 4 - 2 * k, 58 + dy + 1.5 * k),
                              (hx - 8 - 8 * k, 72 + dy + 3 * k),
                              (hx - 14 - 9 * k, 96 + dy + 2 * k)], 8)
        c.paint(blur(c.stroke(strand, 1.0), 0.5) * fringe, HAIR * 0.55, 0.5)
    for k in range(4):
        strand = catmull_rom([(hx + 10 + 3 * k, 58 + dy + 2 * k),
                              (hx + 22 + 9 * k, 74 + dy + 3 * k),
                              (hx + 30 + 10 * k, 100 + dy + 4 * k)], 8)
        c.paint(blur(c.stroke(strand, 1.0), 0.5) * fringe, HAIR * 0.55, 0.5)
    # --- eyebrows
    for side in (-1, 1):
        up, lo = brow_edges(side)
        pts = [(x + dx, y + dy) for x, y in up] + [(x + dx, y + dy) for x, y in lo[::-1]]
        c.paint(c.poly(pts), HAIR * 0.95, 0.92)
    # --- eyes
    for side in (-1, 1):
        ex = CX + side * EYE_DX
        ecx, ecy = ex + dx, EYE_Y + dy
        t = np.clip((X - ecx) / EYE_HW, -1.2, 1.2)
        up, lo = eye_curves(ex, openness, t)
        eye = ((np.abs(X - ecx) < EYE_HW) & (Y > up + dy) & (Y < lo + dy)).astype(np.float32)
        # socket shading / lid crease area
        c.paint(face * c.gauss(ecx, ecy - 5, 15, 7), SKIN * 0.78, 0.35)
        if openness > 0.05:
            sclera = np.array([246, 242, 238], dtype=np.float32)
            c.paint(eye, sclera * (0.86 + 0.14 * np.clip((Y - ecy + 6) / 9, 0, 1))[..., None])
            icx, icy = ecx + 0.5, ecy - 0.5
            r = np.sqrt((X - icx) ** 2 + (Y - icy) ** 2)
            iris = (r <= IRIS_R).astype(np.float32) * eye
            iris_col = np.array([96, 66, 40], dtype=np.float32)
            ring = 0.55 + 0.55 * np.clip(1.0 - r / IRIS_R, 0, 1) ** 0.6
            c.paint(iris, iris_col * ring[..., None])
            c.paint((r <= 2.7).astype(np.float32) * eye, (18, 12, 10))
            c.paint(c.ellipse(icx - 2.0, icy - 2.0, 1.3, 1.3) * eye, (255, 255, 255), 0.95)
            # shadow of the upper lid on the eyeball
            c.paint(eye * np.clip(1.0 - (Y - (up + dy)) / 2.5, 0, 1), (60, 40, 35), 0.35)
            crease_t = np.linspace(-0.85, 0.85, 30)
            cu, _ = eye_curves(ex, 1.0, crease_t)
            crease = [(ecx + EYE_HW * tt, y + dy - 3.6) for tt, y in zip(crease_t, cu)]
            c.paint(c.stroke(crease, 0.9), SKIN * 0.62, 0.6)
        # upper lid line / lashes (also the closed-eye line)
        lt = np.linspace(-1.08, 1.08, 40)
        lu, _ = eye_curves(ex, openness, np.clip(lt, -1, 1))
        lid = [(ecx + EYE_HW * tt, y + dy) for tt, y in zip(lt, lu)]
        outer = side  # outer corner is away from the face centre
        flick = (ecx + outer * EYE_HW * 1.22, lid[-1 if outer > 0 else 0][1] - 1.6)
        lid = lid + [flick] if outer > 0 else [flick] + lid
        c.paint(c.stroke(lid, 1.7), (40, 26, 24))
        if openness > 0.05:
            lt2 = np.linspace(-0.9, 0.9, 30)
            _, ll = eye_curves(ex, openness, lt2)
            low = [(ecx + EYE_HW * tt, y + dy + 0.3) for tt, y in zip(lt2, ll)]
            c.paint(c.stroke(low, 0.7), (120, 75, 65), 0.6)
    # --- nose
    n = NOSE_TIP_Y + dy
    c.paint(face * c.gauss(hx + 7.5, n - 14, 2.6, 13), SKIN * 0.70, 0.35)
    c.paint(face * c.gauss(hx - 1.5, n - 7, 3.5, 4.5), (255, 232, 212), 0.35)
    c.paint(face * c.gauss(hx, n + 7.5, 11, 2.2), SKIN * 0.6, 0.35)
    for s in (-1, 1):
        wing = catmull_rom([(hx + s * 6, n + 5), (hx + s * 10.5, n + 3.5),
                            (hx + s * 10.5, n - 1.5), (hx + s * 8, n - 4.5)], 8)
        c.paint(blur(c.stroke(wing, 1.2), 0.4), SKIN * 0.58, 0.7)
        c.paint(c.ellipse(hx + s * 4.8, n + 3.2, 2.7, 1.4), (120, 68, 58), 0.8)
    # --- mouth (closed, neutral)
    up = catmull_rom([(hx + x, y + dy) for x, y in UPPER_LIP], 10)
    line = catmull_rom([(hx + x, y + dy) for x, y in LIP_LINE], 10)
    lo = catmull_rom([(hx + x, y + dy) for x, y in LOWER_LIP], 10)
    c.paint(face * c.gauss(hx, MOUTH_Y - 9 + dy, 4, 5), SKIN * 0.80, 0.4)      # philtrum
    c.paint(face * c.gauss(hx, MOUTH_Y + 15 + dy, 12, 3.5), SKIN * 0.72, 0.35)   # under lip
    c.paint(c.poly(up + line[::-1]), LIP_UP)
    lower = c.poly(line + lo)
    c.paint(lower, LIP_LO)
    c.paint(lower * c.gauss(hx - 3, MOUTH_Y + 5.5 + dy, 7, 1.8), (236, 168, 160), 0.55)
    c.paint(c.stroke(line, 1.1), (118, 52, 58))
    for s in (-1, 1):
        c.paint(c.gauss(hx + s * 20.5, MOUTH_Y + dy, 1.6, 1.6) * face, (140, 80, 75), 0.55)
    # chin highlight (the jaw shadow on the neck is drawn in render())
    c.paint(face * c.gauss(hx - 2, CHIN_Y - 13 + dy, 10, 6), (255, 225, 200), 0.18)


def sway(f):
    dx = 3.0 * math.sin(2 * math.pi * f / N_FRAMES)
    dy = 1.5 * math.sin(2 * math.pi * f / (N_FRAMES / 2) + 0.6)
    return dx, dy


def render(f):
    dx, dy = sway(f)
    openness = BLINKS.get(f, 1.0)
    frame = np.zeros((H * S, W * S, 3), dtype=np.float32)
    draw_background(Canvas(frame))
    body = Canvas(frame, 110, 190, 530, 360)
    neck = draw_body(body, dx, dy)
    # shadow of the jaw on the neck
    ys = np.arange(int(FACE_TOP) - 2, int(CHIN_Y) + 3, 0.25)
    face = body.poly([(CX + dx - face_half_width(y), y + dy + 7) for y in ys]
                     + [(CX + dx + face_half_width(y), y + dy + 7) for y in ys[::-1]])
    body.paint(blur(face, 3.0) * neck, (130, 85, 70), 0.45)
    draw_head(Canvas(frame, 215, 30, 425, 300), dx, dy, openness)
    img = Image.fromarray(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    img = img.resize((W, H), Image.LANCZOS)
    lms = landmarks(dx, dy, openness)
    lms_int = np.floor(lms + 0.5).astype(np.int64)
    return img, lms_int


def crop_box(lms):
    xmin, xmax, ymin = int(lms[1][0]), int(lms[31][0]), int(lms[52][1])
    side = xmax - xmin
    return xmin, ymin, xmax, ymin + side


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "models", "demo"))
    ap.add_argument("--debug-png", default=None,
                    help="also write frame 0 with landmarks and crop box (not committed)")
    args = ap.parse_args()
    img_dir = os.path.join(args.out, "full_body_img")
    lms_dir = os.path.join(args.out, "landmarks")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lms_dir, exist_ok=True)
    for f in range(N_FRAMES):
        img, lms = render(f)
        img.save(os.path.join(img_dir, "%d.jpg" % f), "JPEG", quality=90,
                 subsampling=2, optimize=False, progressive=False)
        with open(os.path.join(lms_dir, "%d.lms" % f), "w", newline="\n") as fh:
            for x, y in lms:
                fh.write("%d %d\n" % (x, y))
        x0, y0, x1, y1 = crop_box(lms)
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, (f, x0, y0, x1, y1)
        if f == 0 and args.debug_png:
            dbg = img.convert("RGB").resize((W * 2, H * 2), Image.LANCZOS)
            d = ImageDraw.Draw(dbg)
            d.rectangle((x0 * 2, y0 * 2, x1 * 2, y1 * 2), outline=(255, 0, 0), width=2)
            for i, (x, y) in enumerate(lms):
                d.ellipse((x * 2 - 2, y * 2 - 2, x * 2 + 2, y * 2 + 2), fill=(0, 255, 0))
            dbg.save(args.debug_png)
        print("frame %2d  crop box %s%s" % (f, (x0, y0, x1, y1),
              "  blink %.2f" % BLINKS[f] if f in BLINKS else ""))


if __name__ == "__main__":
    main()
