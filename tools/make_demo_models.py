#!/usr/bin/env python3
# requires: numpy, onnx (onnxruntime only for --check); see requirements.txt
"""Build the demo avatar's lip-sync models: a hand-built ONNX graph, no training.

models/demo/models/audio_encoder.onnx and generator.onnx have exactly the
SyncTalk_2D "ave" tensor contract (shared/spec/synctalk-inference.md, sections
1-3), so the element runs them through the same code path as a trained model:

audio encoder   mel  float32 [batch,1,80,16]  ->  emb  float32 [batch,512] (>= 0)
    The 16 mel columns of the window (12.5 ms apart, each a 50 ms STFT
    frame; column 0 is centred on the video frame's start, or up to 10 ms
    before it) are turned back into linear amplitude,
    exp(K * (mel - 4)) with K = ln(10) / 20 * 12.5 (one mel unit is 12.5 dB),
    and averaged over three mel bands by a Conv with fixed weights:
        emb[ 0:16]  loudness      bins  3..59  (200..3600 Hz), per column
        emb[16:32]  low band      bins  6..24  (270..950 Hz, first formant)
        emb[32:48]  high band     bins 34..58  (1400..3350 Hz, F2/F3)
        emb[48:512] zeros
    scaled by LEVEL_GAIN so that loud speech is about 1.  Silence (mel = -4)
    gives about 2.5e-3.

generator   input float32 [batch,6,320,320] (B,G,R in [0,1]; channels 3-5, the
            masked copy, are not used), audio float32 [batch,32,16,16]
            ->  output float32 [batch,3,320,320] in [0,1]
    1. Openness.  The audio window holds the embeddings of rows i-8..i+7
       around the frame (row r = channels 2r, 2r+1).  Row 9 is the embedding
       whose window starts at this frame's time, so column t of row r lies at
       (r - 9) * 40 ms + t * 12.5 ms from the frame.  Per column, the level
       above the silence threshold, relu(loudness - SILENCE_LEVEL), is
       averaged over columns 0..3 of each row (about the row's own 40 ms) and
       over the rows 7..11 with the weights 0.25, 0.75, 1, 0.4, 0.1
       (normalised; a raised cosine around the frame's own 40 ms, row 9,
       with a shorter future side): a ~100 ms smoothing window, so the mouth
       cannot flicker.  Rows outside the stream are zeros, i.e. silence.
           openness = tanh(relu(level - DEAD_ZONE) * boost * OPEN_GAIN) ** OPEN_POWER
                      * gate
       is in [0, 1), exactly 0 in silence, and saturates for loud speech.
       boost = clip(AGC_REF / loudest row of the window, 1, AGC_MAX) lifts
       quiet speech (up to 12 dB) towards the level of the bundled clip.
       gate = smoothstep of the frame's own loudness (row 9, columns 2..3,
       not smoothed) between GATE_LO and GATE_HI: the smoothing must not
       hold the mouth open into a pause, so the lips shut on the first
       frame whose own audio is silent (they open at most one frame before a
       phrase, from the rows after it).
       SILENCE_LEVEL is about -70 dB below the mel's full scale, roughly a
       40 ms RMS of -40 dBFS for espeak-like speech.
    2. Shape.  The same weights average the two band amplitudes;
           shape = tanh((ln(high / low) - BALANCE_MID) * BALANCE_GAIN)
       is > 0 for bright sounds (i, e, s: a wide, flatter opening) and < 0
       for dark ones (o, u: a narrower, taller, rounded opening with the
       lips drawn in a little).
    3. Drawing, in the 320x320 crop.  The opening is a lens between the
       lips: at column x its height is gap * p(x), p(x) = (1 - u^2)^0.75,
       u = (x - MOUTH_X) / half_width, centred on the lip line.  The upper
       lip and the skin above it move up by 30 % of that and the lower lip
       and the skin down to the chin move down by 70 % (GridSample warp that
       fades out above the upper lip and above the chin), so the lips part
       rather than being painted over.  The space between the lips is a dark
       mouth interior with a soft band of upper teeth at the top and a
       tongue at the bottom; its edge is a smooth ramp over EDGE px of an
       implicit ellipse-like lens.  Everywhere the warp and the interior are
       zero the output is channels 0-2 exactly (the blend weights are exact
       zeros there), so a silent frame is the template itself.
    Output = clip(blend, 0, 1).

The crop geometry constants (MOUTH_* below) were measured from the demo
avatar's landmarks: for each of the 60 frames, the crop box of the element
(xmin = lms[1].x, xmax = lms[31].x, ymin = lms[52].y, side = xmax - xmin) is
mapped to the network's 320 crop as x320 = (x - xmin + 0.5) * 328 / side - 0.5
- 4 (OpenCV's resize to 328, then the inner [4:324]), and the lip landmarks
76..95 are averaged over the frames.  The head's sway moves the box with it,
so in crop space the lips stay within about +-1.7 px (sd 1.2 px) of these.

Everything is numpy constants and ONNX operators (opset 17, IR version 9); no
random numbers, so the files are byte-identical from run to run.

Usage:  python3 tools/make_demo_models.py [--out models/demo/models] [--check]
"""

import argparse
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
SIZE = 320                     # generator crop

# ------------------------------------------------------------- audio features
MEL_K = math.log(10.0) / 20.0 * 12.5   # mel unit -> ln(amplitude)
LEVEL_GAIN = 250.0             # about 48 dB: loud speech -> ~1
BANDS = ((3, 60), (6, 25), (34, 59))   # [lo, hi) mel bins: loudness, low, high
STEPS = 16                     # mel columns per window
FEATURES = 512

# ------------------------------------------------------------- openness
SILENCE_LEVEL = 0.08           # per column, ~ -70 dB re mel full scale (about -40 dBFS RMS)
# raised-cosine-like, centred between rows 8 and 9 (centroid 8.7); the future side
# (rows 10, 11) is shorter than the past so the lips part at most one frame
# before a phrase starts (the gate below shuts them when it ends)
ROW_WEIGHTS = {7: 0.25, 8: 0.75, 9: 1.0, 10: 0.4, 11: 0.1}
ROW_COLUMNS = (0, 1, 2, 3)     # the row's own ~40 ms (+ the STFT half-window)
DEAD_ZONE = 0.10               # smoothed level that still keeps the lips shut
OPEN_GAIN = 2.0                # tanh(2 * level) ...
OPEN_POWER = 1.5               # ... ** 1.5: small levels give small openings; loud speech ~ 0.8
# Quiet speech: the level above DEAD_ZONE is multiplied by clip(AGC_REF / loudest, 1, AGC_MAX), where
# loudest is the highest per-row mean loudness of the 16-row window (~640 ms), so
# speech up to 12 dB quieter than the bundled clip still opens the mouth; normal
# and loud speech (loudest >= AGC_REF) is left as it is.
AGC_REF = 0.8
AGC_MAX = 4.0
# Release gate: the opening is multiplied by a ramp of the frame's own loudness
# (row 9, columns 2..3: from ~10 ms before to ~60 ms after the frame's start),
# 0 below GATE_LO and 1 above GATE_HI, so the lips shut on the first silent
# frame after a phrase instead of trailing the smoothing window into the pause.
GATE_COLUMNS = (2, 3)
GATE_LO, GATE_HI = 0.02, 0.06  # about -45 dBFS .. -38 dBFS of 40 ms RMS for espeak-like speech
BALANCE_MID = 0.0              # ln(high/low): median over speech of the test clips is ~0
BALANCE_GAIN = 1.0             # 5..95 % of speech frames: ln(high/low) in about -1.4 .. +1.4

# ------------------------------------------------------------- mouth geometry (320 crop)
# Averages over the 60 demo frames (see the docstring):
#   corners 76 / 82: x 103.2 / 218.9, y 159.0;  inner lip line 88..95: y 159.0
#   (corners) .. 162.9 (centre, 90/94);  upper lip top 78/80: y 139.9, centre
#   dip 79: y 144.1;  lower lip bottom 85: y 186.2;  chin 16: y 274.8;  nose
#   base 57: y 46.2.  The mouth is symmetric about x = 161.0.
MOUTH_X = 161.0                # centre line
MOUTH_HALF = 57.9              # half the corner-to-corner width
LIP_Y_CORNER = 159.0           # lip line at the corners
LIP_Y_CENTRE = 162.9           # lip line at the centre
UPPER_LIP_TOP = 139.9
LOWER_LIP_BOTTOM = 186.2
CHIN_Y = 274.8

GAP_MAX = 42.0                 # opening height at openness 1 (about 14 px of the 640x360 frame)
UP_SHARE = 0.3                 # the upper lip takes 30 % of the gap, the jaw 70 %
WIDTH = 0.80                   # opening half width / MOUTH_HALF for a neutral shape
WIDTH_SHAPE = 0.12             # + WIDTH_SHAPE * shape
GAP_SHAPE = 0.2                # gap * (1 - GAP_SHAPE * shape)
PUCKER = 0.10                  # horizontal squeeze of the lips for dark sounds
EDGE = 2.5                     # soft edge of the opening, px

# mouth interior colours, B, G, R in [0, 1]
DARK = (0.09, 0.07, 0.23)
DEEP = (0.05, 0.04, 0.12)
TEETH = (0.88, 0.91, 0.94)
TONGUE = (0.38, 0.36, 0.78)


# ------------------------------------------------------------- graph building

class Graph:
    """A tiny expression builder: T objects are tensor names with operators."""

    def __init__(self):
        self.nodes = []
        self.inits = []
        self.consts = {}
        self.count = 0

    def name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, value, kind="c"):
        array = np.ascontiguousarray(np.asarray(value))
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.consts:
            name = self.name(kind)
            self.inits.append(numpy_helper.from_array(array, name))
            self.consts[key] = T(self, name)
        return self.consts[key]

    def op(self, op_type, inputs, out=None, **attrs):
        names = [x.name if isinstance(x, T) else self.const(x).name for x in inputs]
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, names, [out], name=f"n{len(self.nodes)}_{op_type}",
                                           **attrs))
        return T(self, out)

    def model(self, inputs, outputs, name, doc):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="gst-talkinghead make_demo_models.py",
                                  ir_version=IR_VERSION)
        model.doc_string = doc
        onnx.checker.check_model(model, full_check=True)
        return model


class T:
    """A tensor in a Graph; arithmetic builds ONNX nodes (floats become constants)."""

    def __init__(self, graph, name):
        self.g, self.name = graph, name

    def _bin(self, op, other, swap=False):
        other = other if isinstance(other, T) else self.g.const(np.float32(other))
        return self.g.op(op, [other, self] if swap else [self, other])

    def __add__(self, o): return self._bin("Add", o)
    def __radd__(self, o): return self._bin("Add", o, True)
    def __sub__(self, o): return self._bin("Sub", o)
    def __rsub__(self, o): return self._bin("Sub", o, True)
    def __mul__(self, o): return self._bin("Mul", o)
    def __rmul__(self, o): return self._bin("Mul", o, True)
    def __truediv__(self, o): return self._bin("Div", o)
    def __rtruediv__(self, o): return self._bin("Div", o, True)
    def __neg__(self): return self.g.op("Neg", [self])


def relu(x): return x.g.op("Relu", [x])
def tanh(x): return x.g.op("Tanh", [x])
def log(x): return x.g.op("Log", [x])
def absolute(x): return x.g.op("Abs", [x])
def maximum(x, y): return x.g.op("Max", [x, y if isinstance(y, T) else x.g.const(np.float32(y))])


def clip01(x):
    return x.g.op("Clip", [x, x.g.const(np.float32(0.0)), x.g.const(np.float32(1.0))])


def power(x, e):
    return x.g.op("Pow", [x, x.g.const(np.float32(e))])


def smoothstep(x):
    """3t^2 - 2t^3 of clip(t, 0, 1): 0 and 1 stay exact."""
    t = clip01(x)
    return t * t * (3.0 - 2.0 * t)


def reshape(x, shape):
    return x.g.op("Reshape", [x, x.g.const(np.array(shape, np.int64))])


def smoothstep_np(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ------------------------------------------------------------- audio encoder

def band_weights():
    """Conv weights [3,1,80,1]: the band means, times LEVEL_GAIN."""
    w = np.zeros((len(BANDS), 1, 80, 1), np.float32)
    for k, (lo, hi) in enumerate(BANDS):
        w[k, 0, lo:hi, 0] = LEVEL_GAIN / (hi - lo)
    return w


def build_encoder():
    g = Graph()
    mel = T(g, "mel")
    amplitude = g.op("Exp", [(mel - 4.0) * MEL_K])                        # [B,1,80,16]
    bands = g.op("Conv", [amplitude, g.const(band_weights(), "bands")],
                 kernel_shape=[80, 1])                                      # [B,3,1,16]
    flat = reshape(bands, [-1, len(BANDS) * STEPS])                         # [B,48]
    emb = g.op("Pad", [flat, g.const(np.array([0, 0, 0, FEATURES - len(BANDS) * STEPS], np.int64)),
                       g.const(np.float32(0.0))], out="emb", mode="constant")
    return g.model(
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", 1, 80, STEPS])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", FEATURES])],
        "demo_audio_encoder",
        "gst-talkinghead demo audio encoder (hand-built, not trained): per mel column, "
        "linear amplitude averaged over a loudness band, a low band and a high band "
        "(emb[0:48]); emb[48:512] = 0. Made by tools/make_demo_models.py.")


# ------------------------------------------------------------- generator

def window_weights():
    """[16*48, 3] matrix: (level, low, high) of a frame from its 16-row window.

    Input layout per row: 48 values, (feature k, column t) at 16k + t."""
    w = np.zeros((16, len(BANDS), STEPS, 3), np.float64)
    total = sum(ROW_WEIGHTS.values()) * len(ROW_COLUMNS)
    for row, rw in ROW_WEIGHTS.items():
        for t in ROW_COLUMNS:
            for k in range(3):
                w[row, k, t, k] = rw / total
    return w.reshape(16 * len(BANDS) * STEPS, 3).astype(np.float32)


def gate_weights():
    """[16*48, 1]: mean loudness of row 9, columns GATE_COLUMNS (not thresholded)."""
    w = np.zeros((16, len(BANDS), STEPS, 1), np.float64)
    for t in GATE_COLUMNS:
        w[9, 0, t, 0] = 1.0 / len(GATE_COLUMNS)
    return w.reshape(-1, 1).astype(np.float32)


def threshold_vector():
    """Subtracted before the relu: SILENCE_LEVEL on loudness columns, 0 on the bands."""
    v = np.zeros((16, len(BANDS), STEPS), np.float32)
    v[:, 0, :] = SILENCE_LEVEL
    return v.reshape(-1)


def column_constants():
    """Functions of x only, [1,1,1,320]; of y only, [1,1,320,1]."""
    x = np.arange(SIZE, dtype=np.float64)
    y = np.arange(SIZE, dtype=np.float64)
    u = np.clip((x - MOUTH_X) / MOUTH_HALF, -1.0, 1.0)
    lip_y = LIP_Y_CORNER + (LIP_Y_CENTRE - LIP_Y_CORNER) * (1.0 - u * u)
    # vertical reach of the warp: 1 around the lips, fading out above the
    # upper lip (towards the nose) and above the chin
    up_reach = smoothstep_np((y - (UPPER_LIP_TOP - 50.0)) / 45.0)
    down_reach = smoothstep_np(((CHIN_Y - 12.0) - y) / (CHIN_Y - 12.0 - (LOWER_LIP_BOTTOM + 8.0)))
    # region of the horizontal pucker: around the lips, with soft borders
    pucker_x = smoothstep_np((MOUTH_HALF + 30.0 - np.abs(x - MOUTH_X)) / 30.0)
    pucker_y = (smoothstep_np((y - (UPPER_LIP_TOP - 25.0)) / 20.0)
                * smoothstep_np(((LOWER_LIP_BOTTOM + 35.0) - y) / 25.0))
    row = lambda a: a.reshape(1, 1, 1, SIZE).astype(np.float32)
    col = lambda a: a.reshape(1, 1, SIZE, 1).astype(np.float32)
    return {"x": row(x), "y": col(y), "lip_y": row(lip_y), "up_reach": col(up_reach),
            "down_reach": col(down_reach), "pucker_x": row(pucker_x), "pucker_y": col(pucker_y)}


# ------------------------------------------------------------- closed-mouth prior (tests only)
# Region of the 320 crop a trained model redraws for the mouth and jaw, with a soft edge.
PRIOR_X = (MOUTH_X - MOUTH_HALF - 30.0, MOUTH_X + MOUTH_HALF + 30.0)
PRIOR_Y = (UPPER_LIP_TOP - 20.0, CHIN_Y - 10.0)
PRIOR_EDGE = 8.0


def closed_mouth(avatar):
    """Template 0 of `avatar` (SyncTalk_2D layout, mouth closed) in the generator's 320 crop, as
    the element crops it, B, G, R in [0, 1], [3,320,320]: what a trained model has learned the
    person's closed mouth looks like."""
    import cv2
    image = cv2.imread(os.path.join(avatar, "full_body_img", "0.jpg"), cv2.IMREAD_COLOR)
    lms = np.loadtxt(os.path.join(avatar, "landmarks", "0.lms"), dtype=np.float32).astype(np.int32)
    xmin, xmax, ymin = lms[1][0], lms[31][0], lms[52][1]
    crop = image[ymin:ymin + (xmax - xmin), xmin:xmax]
    crop = cv2.resize(crop, (328, 328), interpolation=cv2.INTER_CUBIC)[4:324, 4:324]
    return crop.transpose(2, 0, 1).astype(np.float32) / 255.0


def prior_mask():
    """[1,1,320,320]: 1 inside the mouth and jaw region, 0 outside, a linear ramp between."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    inside_x = np.minimum(xx - PRIOR_X[0], PRIOR_X[1] - xx) / PRIOR_EDGE
    inside_y = np.minimum(yy - PRIOR_Y[0], PRIOR_Y[1] - yy) / PRIOR_EDGE
    return np.clip(np.minimum(inside_x, inside_y), 0.0, 1.0)[None, None]


def build_generator(prior=None):
    g = Graph()
    image, audio = T(g, "input"), T(g, "audio")
    k = column_constants()
    x, y = g.const(k["x"], "x"), g.const(k["y"], "y")
    lip_y = g.const(k["lip_y"], "lip_y")

    # --- audio window -> openness and shape, [B,1,1,1] each
    rows = reshape(audio, [-1, 16, FEATURES])
    feats = g.op("Slice", [rows, g.const(np.array([0], np.int64)),
                           g.const(np.array([len(BANDS) * STEPS], np.int64)),
                           g.const(np.array([2], np.int64))])             # [B,16,48]
    flat = reshape(feats, [-1, 16 * len(BANDS) * STEPS])
    above = relu(flat - g.const(threshold_vector(), "silence"))
    summary = g.op("MatMul", [above, g.const(window_weights(), "window")])  # [B,3]
    own = reshape(g.op("MatMul", [flat, g.const(gate_weights(), "gate")]), [-1, 1, 1, 1])

    def pick(i):
        part = g.op("Slice", [summary, g.const(np.array([i], np.int64)),
                              g.const(np.array([i + 1], np.int64)), g.const(np.array([1], np.int64))])
        return reshape(part, [-1, 1, 1, 1])

    level, low, high = pick(0), pick(1), pick(2)
    loudness = g.op("Slice", [feats, g.const(np.array([0], np.int64)), g.const(np.array([STEPS], np.int64)),
                              g.const(np.array([2], np.int64))])     # [B,16,16]: rows x columns
    loudest = g.op("ReduceMax", [g.op("ReduceMean", [loudness], axes=[2], keepdims=0)], axes=[1], keepdims=1)
    boost = g.op("Clip", [AGC_REF / maximum(reshape(loudest, [-1, 1, 1, 1]), 1e-6),
                          g.const(np.float32(1.0)), g.const(np.float32(AGC_MAX))])
    gate = smoothstep((own - GATE_LO) / (GATE_HI - GATE_LO))
    openness = power(tanh(relu(level - DEAD_ZONE) * boost * OPEN_GAIN), OPEN_POWER) * gate
    shape = tanh((log(high + 1e-4) - log(low + 1e-4) - BALANCE_MID) * BALANCE_GAIN)

    # --- geometry of the opening
    gap = openness * (GAP_MAX * (1.0 - GAP_SHAPE * shape))              # total height
    half_width = (WIDTH + WIDTH_SHAPE * shape) * MOUTH_HALF
    u = (x - MOUTH_X) / half_width                                      # [B,1,1,320]
    profile = power(relu(1.0 - u * u), 0.75)
    local_gap = gap * profile
    top = lip_y - local_gap * UP_SHARE                                  # upper lip's inner edge
    bottom = top + local_gap                                            # lower lip's inner edge

    # --- warp: output (x, y) samples the template at (x_src, y_src)
    below = g.op("Cast", [g.op("GreaterOrEqual", [y, lip_y])], to=TensorProto.FLOAT)  # [1,1,320,320]
    shift_down = local_gap * (1.0 - UP_SHARE) * g.const(k["down_reach"], "down_reach")
    shift_up = local_gap * UP_SHARE * g.const(k["up_reach"], "up_reach")
    dy = below * shift_down - (1.0 - below) * shift_up                  # [B,1,320,320]
    squeeze = relu(-shape) * openness * PUCKER
    dx = (x - MOUTH_X) * (squeeze * g.const(k["pucker_x"], "pucker_x") * g.const(k["pucker_y"], "pucker_y"))
    x_src = x + dx
    y_src = y - dy
    scale = 2.0 / (SIZE - 1)
    grid = g.op("Concat", [x_src * scale - 1.0, y_src * scale - 1.0], axis=1)   # [B,2,320,320]
    grid = g.op("Transpose", [grid], perm=[0, 2, 3, 1])
    rgb = g.op("Slice", [image, g.const(np.array([0], np.int64)), g.const(np.array([3], np.int64)),
                         g.const(np.array([1], np.int64))])
    if prior is not None:
        # Like a trained model, draw the mouth and jaw as learned, not as the template has them.
        rgb = rgb + g.const(prior_mask(), "prior_mask") * (g.const(prior[None], "prior") - rgb)
    warped = g.op("GridSample", [rgb, grid], mode="bilinear", padding_mode="border", align_corners=1)
    moved = clip01((absolute(dy) + absolute(dx)) * 1000.0)             # exactly 0 where nothing moves
    face = rgb + moved * (warped - rgb)

    # --- mouth interior between the parted lips
    centre = (top + bottom) * 0.5
    half = local_gap * 0.5
    alpha = smoothstep((half - absolute(y - centre)) / EDGE)            # lens with a soft edge
    depth = (y - top) / maximum(local_gap, 1e-3)                        # 0 at the upper lip, 1 at the lower
    dark, deep = g.const(np.array(DARK, np.float32).reshape(1, 3, 1, 1), "dark"), \
        g.const(np.array(DEEP, np.float32).reshape(1, 3, 1, 1), "deep")
    shade = smoothstep(1.0 - absolute(depth - 0.45) * 2.2)             # darkest in the middle
    inside = dark + shade * (deep - dark)
    tooth_band = g.op("Min", [local_gap * 0.28, g.const(np.float32(7.0))])  # upper teeth, px
    teeth = (smoothstep((tooth_band - (y - top)) / 2.0)
             * smoothstep(1.0 - absolute((x - MOUTH_X) / (half_width * 0.62))) * 0.85)
    inside = inside + teeth * (g.const(np.array(TEETH, np.float32).reshape(1, 3, 1, 1), "teeth") - inside)
    tongue = (smoothstep((depth - 0.62) / 0.3)
              * smoothstep((1.0 - absolute((x - MOUTH_X) / (half_width * 0.7))) * 2.0)
              * clip01(gap * 0.08 - 0.4) * 0.85)
    inside = inside + tongue * (g.const(np.array(TONGUE, np.float32).reshape(1, 3, 1, 1), "tongue") - inside)
    out = face + alpha * (inside - face)
    g.op("Clip", [out, g.const(np.float32(0.0)), g.const(np.float32(1.0))], out="output")

    return g.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 6, SIZE, SIZE]),
         helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 32, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        "demo_generator",
        "gst-talkinghead demo generator (hand-built, not trained): opens the demo avatar's "
        "mouth by the audio level of the frame's feature window, shaped by its spectral "
        "balance; elsewhere output = input channels 0-2. Made by tools/make_demo_models.py.")


# ------------------------------------------------------------- self-check

def check(enc_path, gen_path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    enc = ort.InferenceSession(enc_path, opts, providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(gen_path, opts, providers=["CPUExecutionProvider"])
    silence = np.full((2, 1, 80, 16), -4.0, np.float32)
    loud = np.full((2, 1, 80, 16), 0.5, np.float32)
    e_sil = enc.run(None, {"mel": silence})[0]
    e_loud = enc.run(None, {"mel": loud})[0]
    assert e_sil.shape == (2, 512) and (e_sil >= 0).all() and (e_loud >= 0).all()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    crop = np.stack([0.3 + 0.4 * xx / SIZE, 0.5 + 0.2 * np.sin(yy / 9.0), 0.6 + 0 * xx]).astype(np.float32)
    crop = np.round(crop * 255) / np.float32(255)
    inp = np.concatenate([crop, crop])[None].repeat(2, 0).astype(np.float32)
    win_sil = np.repeat(e_sil[:1], 16, 0).reshape(1, 32, 16, 16).repeat(2, 0)
    win_loud = np.repeat(e_loud[:1], 16, 0).reshape(1, 32, 16, 16).repeat(2, 0)
    out_sil = gen.run(None, {"input": inp, "audio": win_sil})[0]
    out_zero = gen.run(None, {"input": inp, "audio": np.zeros_like(win_sil)})[0]
    out_loud = gen.run(None, {"input": inp, "audio": win_loud})[0]
    assert out_sil.shape == (2, 3, SIZE, SIZE)
    assert np.array_equal(out_sil, inp[:, :3]) and np.array_equal(out_zero, inp[:, :3]), \
        "silence must reproduce the unmasked crop exactly"
    diff = np.abs(out_loud - inp[:, :3]).max(axis=(0, 1))
    ys, xs = np.nonzero(diff > 1.0 / 255)
    assert len(ys) > 500, "loud audio should open the mouth"
    assert 0.0 <= out_loud.min() and out_loud.max() <= 1.0
    print(f"check: silence -> output == input; loud -> {len(ys)} px changed in "
          f"x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "models", "demo", "models")))
    ap.add_argument("--check", action="store_true", help="run the models once with onnxruntime")
    ap.add_argument("--closed-mouth", metavar="AVATAR",
                    help="(tests) a generator that, like a trained model, draws the mouth and jaw "
                         "as they are closed in AVATAR's template 0, whatever the template shows; "
                         "not byte-identical to the demo's")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    paths = []
    prior = closed_mouth(args.closed_mouth) if args.closed_mouth else None
    for name, build in (("audio_encoder", build_encoder),
                        ("generator", lambda: build_generator(prior))):
        path = os.path.join(args.out, name + ".onnx")
        data = build().SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
        print(f"wrote {path} ({len(data)} bytes)")
    if args.check and prior is None:
        check(*paths)


if __name__ == "__main__":
    main()
