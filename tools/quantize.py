#!/usr/bin/env python3
# requires: numpy, onnx, onnxruntime, librosa, scipy, opencv-python-headless; see requirements.txt
"""Quantize a generator to INT8 (static QDQ) and refuse it if it is not good enough.

Input: the user's fp32 generator (input [batch,6,320,320] + audio [batch,32,16,16] -> output
[batch,3,320,320]), its audio encoder, and an avatar in the SyncTalk_2D layout
(full_body_img/N.jpg + landmarks/N.lms) with a speech clip (--audio, default the avatar's
aud.wav or speech.wav, else the bundled clip models/demo/speech.wav).  Output: the INT8
generator (--out, default <generator>_int8.onnx beside it), written only if it passes the
quality gate.

Steps:
  1. Nodes without a name get one (op type + index); onnxruntime's quant_pre_process runs
     (symbolic shape inference, graph optimisation).
  2. Frames are made the way tools/reference.py makes them: output frame i pairs template
     pingpong(i) with the audio window of frame i (encoder features of the clip, +-8 rows).
     Templates are split in two: every 4th is held out.  --calibration N frames of the other
     templates calibrate; --held-out M frames of the held-out templates (so their templates
     and audio windows are never seen in calibration) judge the result.  Both are spread
     evenly over the clip.
  3. MinMax calibration of a static QDQ model: per-channel signed 8-bit weights (QInt8),
     unsigned 8-bit activations (QUInt8).  The range of a tensor only Sigmoids read (the
     generator's logits) is cut to +-8, where the 8-bit sigmoid output stops changing.  The
     ranges are computed once and reused for every candidate below.
  4. Gate: PSNR of INT8 against fp32 output over the held-out frames, over the 320x320 output
     (and over the mouth: the lip landmarks 76..95 mapped into the crop, plus a margin).
     Under --gate dB the model is not written (unless --force) and the tool exits 1, saying
     by how much it missed and which layers cost the most.  A layer is the float nodes that
     produce one quantized tensor from the previous quantized tensors (a Conv and the ReLU
     fused into its quantization, say); keeping it in float means keeping those and the
     nodes reading its output, so neither its weights nor its output are quantized.  Layers
     are ranked by the noise they add: the noise to signal power ratio of the INT8 model
     against fp32 at the layer's output minus the largest at its inputs (activations from
     onnxruntime's qdq_loss_debug, one held-out frame).  That does not say how much of the
     noise reaches the output, so for the 8 that add the most, and the 2 nearest the
     output, the held-out PSNR with only that layer in float is measured, and they are
     ranked first, by that gain.
  5. --keep-fp32 N keeps the first N layers of that ranking in float; --keep-fp32 auto keeps
     as few as pass the gate (1, 2, 4, ... then bisection).
  6. Speed, once the model is written: frames/s of fp32 and of the result at batch 4,
     --speed-rounds alternated rounds, medians; then the element line to use.

Progress goes to stderr, results to stdout.  Exit status: 0 written, 1 gate missed.

No INT8 model passes --gate 60 unless its output stays in float: 8-bit steps of the sigmoid
output alone limit the PSNR to about 59 dB.  (The random-weight models of
tools/make_test_models.py give about 50 dB on the demo avatar, the full-size random
unet_328 of tools/make_synctalk_models.py about 36 dB.)

Usage:  python3 tools/quantize.py --generator G --audio-encoder E --avatar DIR
            [--audio WAV] [--out OUT] [--gate 35] [--force] [--calibration 32]
            [--held-out 16] [--keep-fp32 auto|N] [--speed-rounds 3] [--threads N]
"""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QDQQuantizer,
                                      QuantType, create_calibrator, quant_pre_process)
from onnxruntime.quantization import qdq_loss_debug
from onnxruntime.quantization.calibrate import TensorData
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

import reference

SIZE = 320
BUNDLED_SPEECH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "demo",
                              "speech.wav")
HELD_OUT_EVERY = 4            # every 4th template is kept out of calibration
BATCH = 4                     # frames per run (dynamic-batch models)
# Calibration feeds one frame per batch (the augmented model keeps every tensor alive until its
# ReduceMin/ReduceMax at the end of the graph: about 0.7 GB per frame for unet_328), and
# CALIBRATION_CHUNK batches per collect_data call, each of which merges its chunk's ranges.
# CalibMaxIntermediateOutputs stays one above the chunk: onnxruntime 1.23 discards, unmerged,
# the outputs a call has collected when that many pile up, and raises "No data is collected"
# when the call ends right after such a discard (a batch count that is an exact multiple).
CALIBRATION_CHUNK = 4
RANK_FRAMES = 1               # held-out frames of the per-layer comparison (it keeps every tensor)
REPORT_LAYERS = 8
MEASURED_LAYERS = 8           # costliest layers by noise whose gain in float is measured
MOUTH_LANDMARKS = slice(76, 96)
MOUTH_MARGIN = 12             # px of the 320 crop around the lips
SIGMOID_LIMIT = 8.0           # |logit| past which a Sigmoid's 8-bit output no longer changes
OP_TYPES = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def log(message):
    print(f"quantize: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ frames

@dataclass
class Frames:
    """Generator inputs of some output frames, with the mouth box of each in the 320 crop."""
    indices: list
    templates: list
    images: np.ndarray            # [n,6,320,320]
    audio: np.ndarray             # [n,32,16,16]
    mouths: list                  # (x0, y0, x1, y1) or None


def evenly(candidates, count):
    """`count` items spread evenly over `candidates` (all of them if there are fewer)."""
    if count >= len(candidates):
        return list(candidates)
    if count == 1:
        return [candidates[len(candidates) // 2]]
    return [candidates[round(k * (len(candidates) - 1) / (count - 1))] for k in range(count)]


def split_frames(frame_count, template_count, calibration, held_out):
    """Output frame numbers for calibration and for the gate, whose templates are disjoint."""
    if template_count < 2:
        raise SystemExit("the avatar needs at least 2 templates to hold some out of calibration")
    held_templates = {t for t in range(template_count) if t % HELD_OUT_EVERY == HELD_OUT_EVERY - 1}
    held_templates = held_templates or {template_count - 1}
    frames = range(frame_count)
    is_held = [reference.pingpong(i, template_count) in held_templates for i in frames]
    calibration_pool = [i for i in frames if not is_held[i]]
    held_pool = [i for i in frames if is_held[i]]
    if not calibration_pool or not held_pool:
        raise SystemExit(f"the clip is too short: {frame_count} frames")
    return evenly(calibration_pool, calibration), evenly(held_pool, held_out)


def mouth_box(avatar, template, box, size):
    """Bounding box of the lip landmarks in the 320 crop, with a margin; None without them."""
    with open(avatar.landmark_path(template)) as f:
        points = np.array([line.split() for line in f.read().splitlines() if line.strip()],
                          dtype=np.float32).astype(np.int32)
    if len(points) < MOUTH_LANDMARKS.stop:
        return None
    lips = points[MOUTH_LANDMARKS].astype(np.float64)
    xmin, ymin = box[0], box[1]
    width, height = size
    # OpenCV's resize maps x to (x + 0.5) * 328 / width - 0.5; the crop drops 4 px.
    xs = (lips[:, 0] - xmin + 0.5) * reference.CROP / width - 0.5 - 4
    ys = (lips[:, 1] - ymin + 0.5) * reference.CROP / height - 0.5 - 4
    x0, y0 = (max(0, int(v.min()) - MOUTH_MARGIN) for v in (xs, ys))
    x1, y1 = (min(SIZE, int(np.ceil(v.max())) + MOUTH_MARGIN + 1) for v in (xs, ys))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def load_frames(avatar, features, indices):
    templates = [reference.pingpong(i, avatar.count) for i in indices]
    images, mouths = [], []
    for template in templates:
        frame, box = avatar.load(template)
        _, planes, size = reference.prepare(frame, box)
        images.append(planes)
        mouths.append(mouth_box(avatar, template, box, size))
    audio = np.stack([reference.frame_audio(features, i) for i in indices])
    return Frames(list(indices), templates, np.stack(images), audio, mouths)


def clip_features(encoder_path, audio_path, threads):
    """Padded encoder features of the clip, [n+2, 512], as tools/reference.py computes them."""
    encoder = reference.Model(encoder_path, threads)
    windows = reference.encoder_windows(reference.mel_spectrogram(audio_path))
    embeddings = encoder.run_batched({encoder.inputs[0].name: windows}, reference.ENCODER_CHUNK)
    return reference.padded_features(embeddings)


# ------------------------------------------------------------------ models

def name_nodes(model):
    """Give every unnamed node a unique name; returns how many were named."""
    taken = {node.name for node in model.graph.node if node.name}
    named = 0
    for k, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{k}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named


def preprocess(generator_path, work):
    model = onnx.load(generator_path)
    named = name_nodes(model)
    if named:
        log(f"named {named} unnamed nodes")
    named_path = os.path.join(work, "named.onnx")
    onnx.save(model, named_path)
    path = os.path.join(work, "preprocessed.onnx")
    # In `work`: a failed symbolic shape inference saves its model, with external data, into
    # the current directory.  Each attempt loads its own copy of the model.
    with contextlib.chdir(work):
        try:
            # auto_merge: a dynamic batch meets fixed sizes in Resize/Concat shape arithmetic
            quant_pre_process(named_path, path, auto_merge=True)
        except Exception as error:  # onnxruntime raises a bare Exception here
            log(f"symbolic shape inference failed ({error}); using ONNX shape inference only")
            quant_pre_process(named_path, path, skip_symbolic_shape=True)
    return path


class Generator:
    """A generator session, batched when the model's batch axis is dynamic."""

    def __init__(self, path, threads):
        self.model = reference.Model(path, threads)
        self.image = self.model.input_with_channels(6)
        self.audio = self.model.input_with_channels(32)
        self.batch = BATCH if self.model.dynamic_batch else 1

    def feeds(self, images, audio):
        return {self.image: images, self.audio: audio}

    def run(self, frames):
        return self.model.run_batched(self.feeds(frames.images, frames.audio), self.batch)

    def batches(self, frames, size):
        for k in range(0, len(frames.indices), size):
            yield self.feeds(frames.images[k:k + size], frames.audio[k:k + size])


class FeedReader(CalibrationDataReader):
    """Hands a list of feed dicts to onnxruntime's calibration and debugging tools."""

    def __init__(self, feeds):
        self.items = iter(feeds)

    def get_next(self):
        return next(self.items, None)


def session_options(threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def calibrate(model_path, generator, frames, work, threads):
    """MinMax ranges of every tensor the quantizer needs, over `frames`."""
    calibrator = create_calibrator(
        Path(model_path), OP_TYPES, augmented_model_path=os.path.join(work, "augmented.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"max_intermediate_outputs": CALIBRATION_CHUNK + 1})
    # The calibrator's own session takes every core; honour --threads.
    calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path,
                                                    session_options(threads),
                                                    providers=["CPUExecutionProvider"])
    batches = list(generator.batches(frames, 1))
    began = time.monotonic()
    for first in range(0, len(batches), CALIBRATION_CHUNK):
        calibrator.collect_data(FeedReader(batches[first:first + CALIBRATION_CHUNK]))
        done = min(len(batches), first + CALIBRATION_CHUNK)
        log(f"calibration {done}/{len(frames.indices)} frames ({time.monotonic() - began:.0f} s)")
    return limit_sigmoid_inputs(model_path, calibrator.compute_data())


def limit_sigmoid_inputs(model_path, ranges):
    """The ranges with those of tensors only Sigmoids read cut to +-SIGMOID_LIMIT.

    A generator's logits can reach hundreds below zero where its output is black; an 8-bit
    range stretched over them leaves steps of more than 1 in the logits that matter, and the
    sigmoid's slope of 1/4 turns that into errors of a tenth of the output range.  Past
    +-SIGMOID_LIMIT the sigmoid rounds to the same 8-bit output (255 * sigmoid(-6.2) < 0.5),
    so clipping there changes nothing visible and gives the remaining logits finer steps (25
    times finer where the logits reached -387).
    """
    graph = onnx.load(model_path).graph
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    for name, ops in readers.items():
        if ops == {"Sigmoid"} and name in ranges:
            low, high = ranges[name].range_value
            ranges[name] = TensorData(lowest=np.maximum(low, -SIGMOID_LIMIT).astype(low.dtype),
                                      highest=np.minimum(high, SIGMOID_LIMIT).astype(high.dtype))
    return ranges


def quantize(model_path, ranges, exclude):
    """The static QDQ model (per-channel s8 weights, u8 activations), `exclude` left in float."""
    model = load_model_with_shape_infer(Path(model_path))
    quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QUInt8, ranges,
                             [], sorted(exclude), OP_TYPES, {})
    quantizer.quantize_model()
    return quantizer.model.model


# ------------------------------------------------------------------ quality

def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def mouth_psnr(a, b, frames):
    """PSNR over the mouth boxes of the frames that have one; None if none has."""
    boxes = [(k, box) for k, box in enumerate(frames.mouths) if box]
    crops = [(a[k, :, y0:y1, x0:x1].ravel(), b[k, :, y0:y1, x0:x1].ravel())
             for k, (x0, y0, x1, y1) in boxes]
    if not crops:
        return None
    return psnr(np.concatenate([p for p, _ in crops]), np.concatenate([q for _, q in crops]))


@dataclass
class Quality:
    full: float
    mouth: float
    worst_frame: float

    def __str__(self):
        mouth = "" if self.mouth is None else f", mouth {self.mouth:.2f} dB"
        return f"{self.full:.2f} dB{mouth} (worst frame {self.worst_frame:.2f} dB)"


def quality(reference_out, candidate_out, frames):
    worst = min(psnr(candidate_out[k], reference_out[k]) for k in range(len(frames.indices)))
    return Quality(psnr(candidate_out, reference_out),
                   mouth_psnr(candidate_out, reference_out, frames), worst)


# ------------------------------------------------------------------ layer ranking

@dataclass
class Layer:
    """The float nodes between quantized tensors that produce one quantized tensor."""
    nodes: list                   # names, in graph order
    op_types: list
    output: str                   # the quantized tensor they produce
    added_noise: float            # noise power / signal power added by this layer
    sqnr: float                   # dB, INT8 model against fp32 at `output`
    weight_sqnr: float            # dB, worst quantized weight among the nodes, None without
    exclude: set                  # nodes to keep in float so that neither is quantized
    position: int                 # of its last node in the graph
    gain: float = None            # dB of held-out PSNR it alone gains in float, where measured

    @property
    def name(self):
        return "+".join(self.nodes)

    def __str__(self):
        gain = "" if self.gain is None else f"in float alone {self.gain:+.2f} dB; "
        added = (f"adds noise at {-10 * np.log10(self.added_noise):.1f} dB" if self.added_noise > 0
                 else "adds no noise")
        weights = "" if self.weight_sqnr is None else f", weights {self.weight_sqnr:.1f} dB"
        return (f"{self.name} ({'+'.join(self.op_types)}): {gain}{added}; {self.output} at "
                f"{self.sqnr:.1f} dB{weights}")


def collect(model_path, feeds, work, label, threads):
    augmented = os.path.join(work, f"debug_{label}.onnx")
    qdq_loss_debug.modify_model_output_intermediate_tensors(model_path, augmented)
    return qdq_loss_debug.collect_activations(augmented, FeedReader(feeds),
                                              session_options(threads))


def tensor_sqnr(float_path, qdq_path, feeds, work, threads):
    """SQNR (dB) of every quantized activation of the INT8 model against the fp32 model."""
    float_acts = collect(float_path, feeds, work, "float", threads)
    qdq_acts = collect(qdq_path, feeds, work, "qdq", threads)
    matching = qdq_loss_debug.create_activation_matching(qdq_acts, float_acts)
    return {name: err["xmodel_err"]
            for name, err in qdq_loss_debug.compute_activation_error(matching).items()
            if "xmodel_err" in err}


def rank_layers(float_path, qdq_path, generator, frames, work, threads):
    """Layers of the float model, the ones that add the most quantization noise first.

    A layer ends at a quantized tensor T and reaches back through the unquantized tensors
    (a Conv whose ReLU is fused into the quantization, say) to the quantized tensors it reads.
    Its cost is the noise to signal ratio at T minus the largest at its inputs.
    """
    feeds = [generator.feeds(frames.images[:RANK_FRAMES], frames.audio[:RANK_FRAMES])]
    sqnr = tensor_sqnr(float_path, qdq_path, feeds, work, threads)
    weight = qdq_loss_debug.compute_weight_error(
        qdq_loss_debug.create_weight_matching(float_path, qdq_path))
    graph = onnx.load(float_path).graph
    constants = {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    order = {node.name: k for k, node in enumerate(graph.node)}

    def noise(name):
        return 10 ** (-sqnr[name] / 10)

    layers = []
    for output, level in sqnr.items():
        if output not in producer:
            continue          # a graph input
        nodes, inputs, pending = [], set(), [producer[output]]
        while pending:
            node = pending.pop()
            if node in nodes:
                continue
            nodes.append(node)
            for name in node.input:
                if not name or name in constants:
                    continue
                if name in sqnr or name not in producer:
                    inputs.add(name)
                else:
                    pending.append(producer[name])
        nodes.sort(key=lambda node: order[node.name])
        weights = [weight[name] for node in nodes for name in node.input if name in weight]
        added = noise(output) - max((noise(name) for name in inputs if name in sqnr), default=0.0)
        exclude = {node.name for node in nodes} | set(readers.get(output, []))
        layers.append(Layer([n.name for n in nodes], [n.op_type for n in nodes], output, added,
                            level, min(weights) if weights else None, exclude,
                            order[nodes[-1].name]))
    return sorted(layers, key=lambda layer: -layer.added_noise)


def measure_gains(candidates, layers, plain):
    """`layers` reordered by what each alone gains in float, measured for the costliest by
    noise and the two nearest the output (their noise reaches it unfiltered); then the rest."""
    costliest = layers[:MEASURED_LAYERS]
    nearest_output = sorted(layers, key=lambda layer: layer.position)[-2:]
    measured = costliest + [layer for layer in nearest_output if layer not in costliest]
    for layer in measured:
        layer.gain = candidates.measure(layer.exclude, f"{layer.name} in float").full - plain.full
    measured.sort(key=lambda layer: -layer.gain)
    return measured + [layer for layer in layers if layer not in measured]


# ------------------------------------------------------------------ search

class Candidates:
    """Quantizes with a given set of float nodes and measures each result, once."""

    def __init__(self, model_path, ranges, fp32_out, frames, work, threads):
        self.model_path, self.ranges, self.fp32_out = model_path, ranges, fp32_out
        self.frames, self.work, self.threads = frames, work, threads
        self.results = {}             # frozenset of float nodes -> (path, Quality)

    def path(self, exclude):
        return self.results[frozenset(exclude)][0]

    def measure(self, exclude, label):
        key = frozenset(exclude)
        if key not in self.results:
            path = os.path.join(self.work, f"int8_{len(self.results)}.onnx")
            onnx.save(quantize(self.model_path, self.ranges, exclude), path)
            out = Generator(path, self.threads).run(self.frames)
            self.results[key] = path, quality(self.fp32_out, out, self.frames)
            log(f"{label} ({len(exclude)} float nodes): held-out PSNR {self.results[key][1]}")
        return self.results[key][1]


def kept_nodes(layers, kept):
    return set().union(*(layer.exclude for layer in layers[:kept]))


def measure_kept(candidates, layers, kept):
    return candidates.measure(kept_nodes(layers, kept), f"{kept} layer(s) in float")


def search_kept(candidates, layers, gate):
    """Fewest of the first layers to keep in float for the gate: doubling, then bisection."""
    passing = None
    failing = 0
    kept = 1
    while kept <= len(layers):
        if measure_kept(candidates, layers, kept).full >= gate:
            passing = kept
            break
        failing = kept
        kept = len(layers) if kept * 2 > len(layers) > kept else kept * 2
    if passing is None:
        return None
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if measure_kept(candidates, layers, middle).full >= gate:
            passing = middle
        else:
            failing = middle
    return passing


# ------------------------------------------------------------------ speed

def frames_per_second(paths, frames, rounds, threads):
    """Median frames/s of each model at batch 4 (1 for fixed-batch models), rounds alternated."""
    generators = {label: Generator(path, threads) for label, path in paths.items()}
    repeat = -(-BATCH // len(frames.indices))
    images = np.concatenate([frames.images] * repeat)
    audio = np.concatenate([frames.audio] * repeat)
    rates = {label: [] for label in paths}
    feeds = {label: generator.feeds(images[:generator.batch], audio[:generator.batch])
             for label, generator in generators.items()}
    for label, generator in generators.items():
        generator.model.session.run(None, feeds[label])     # warm-up
    for _ in range(rounds):
        for label, generator in generators.items():
            began = time.perf_counter()
            generator.model.session.run(None, feeds[label])
            rates[label].append(generator.batch / (time.perf_counter() - began))
    return {label: (statistics.median(values), generators[label].batch)
            for label, values in rates.items()}


# ------------------------------------------------------------------ main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", required=True, help="fp32 generator ONNX")
    ap.add_argument("--audio-encoder", required=True, help="audio encoder ONNX")
    ap.add_argument("--avatar", required=True, help="avatar folder (full_body_img/, landmarks/)")
    ap.add_argument("--audio", help="speech clip (default: the avatar's aud.wav or speech.wav, "
                                    "else the bundled clip)")
    ap.add_argument("--out", help="INT8 generator to write (default: <generator>_int8.onnx)")
    ap.add_argument("--gate", type=float, default=35.0, help="minimum held-out PSNR in dB (35)")
    ap.add_argument("--force", action="store_true", help="write the model even under the gate")
    ap.add_argument("--calibration", type=int, default=32, help="calibration frames (32)")
    ap.add_argument("--held-out", type=int, default=16, help="held-out frames for the gate (16)")
    ap.add_argument("--keep-fp32", default="0",
                    help="keep the N costliest layers in float, or 'auto': as few as pass the "
                         "gate (0)")
    ap.add_argument("--speed-rounds", type=int, default=3,
                    help="alternated timing rounds at batch 4 (3; 0: no timing)")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all cores)")
    args = ap.parse_args()
    if args.keep_fp32 != "auto" and not (args.keep_fp32.isdigit()):
        ap.error("--keep-fp32 takes a number or 'auto'")
    if args.calibration < 1 or args.held_out < 1:
        ap.error("--calibration and --held-out need at least 1 frame")
    if args.audio is None:
        found = [p for p in (os.path.join(args.avatar, name) for name in ("aud.wav", "speech.wav"))
                 if os.path.isfile(p)]
        args.audio = found[0] if found else BUNDLED_SPEECH
    if args.out is None:
        args.out = os.path.splitext(args.generator)[0] + "_int8.onnx"
    return args


def explain_failure(result, gate, layers):
    print(f"held-out PSNR {result.full:.2f} dB is under the gate of {gate:.2f} dB "
          f"by {gate - result.full:.2f} dB")
    print(f"layers that cost the most, of {len(layers)} (held-out PSNR gained with only that "
          f"layer in float; noise it adds; SQNR at its output and of its weights):")
    for k, layer in enumerate(layers[:REPORT_LAYERS], 1):
        print(f"  {k:2d}. {layer}")


def held_out_frames(args):
    """(calibration frames, held-out frames) of the avatar and the clip."""
    avatar = reference.Avatar(args.avatar)
    features = clip_features(args.audio_encoder, args.audio, args.threads)
    calibration_ids, held_ids = split_frames(len(features), avatar.count, args.calibration,
                                             args.held_out)
    calibration = load_frames(avatar, features, calibration_ids)
    held = load_frames(avatar, features, held_ids)
    log(f"{avatar.count} templates, {len(features)} frames of {args.audio}: "
        f"{len(calibration_ids)} calibration frames, {len(held_ids)} held-out frames (templates "
        f"{sorted(set(held.templates))})")
    return calibration, held


def choose_kept(args, candidates, plain, float_path, float_generator, held, work):
    """(ranked layers, how many of them to keep in float) for --keep-fp32 and the gate."""
    if plain.full >= args.gate and args.keep_fp32 in ("0", "auto"):
        return [], 0
    log("ranking layers")
    layers = rank_layers(float_path, candidates.path(set()), float_generator, held, work,
                         args.threads)
    layers = measure_gains(candidates, layers, plain)
    if args.keep_fp32 != "auto":
        return layers, min(int(args.keep_fp32), len(layers))
    return layers, search_kept(candidates, layers, args.gate) or len(layers)


def print_speed(float_path, int8_path, held, args):
    log("timing")
    speeds = frames_per_second({"fp32": float_path, "int8": int8_path}, held,
                               args.speed_rounds, args.threads)
    (fp32, batch), (int8, _) = speeds["fp32"], speeds["int8"]
    print(f"speed at batch {batch}, median of {args.speed_rounds} alternated rounds: "
          f"fp32 {fp32:.2f} frames/s, int8 {int8:.2f} frames/s ({int8 / fp32:.2f}x)")


def run(args, work):
    """Quantizes, judges, writes and reports; returns whether the gate passed."""
    calibration, held = held_out_frames(args)
    float_path = preprocess(args.generator, work)
    float_generator = Generator(float_path, args.threads)
    fp32_out = float_generator.run(held)
    ranges = calibrate(float_path, float_generator, calibration, work, args.threads)
    candidates = Candidates(float_path, ranges, fp32_out, held, work, args.threads)
    plain = candidates.measure(set(), "all quantized")
    layers, kept = choose_kept(args, candidates, plain, float_path, float_generator, held, work)
    result = measure_kept(candidates, layers, kept)
    int8_path = candidates.path(kept_nodes(layers, kept))

    print(f"held-out PSNR INT8 vs fp32 over {len(held.indices)} frames: {result}")
    if kept:
        print(f"kept in float ({kept}): " + ", ".join(layer.name for layer in layers[:kept]))
    if kept and kept == len(layers):
        print("every layer is kept in float: nothing is left quantized")
    passed = result.full >= args.gate
    if not passed:
        explain_failure(result, args.gate, layers)
    if passed or args.force:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        shutil.copyfile(int8_path, args.out)
        print(f"wrote {args.out}" + ("" if passed else " (under the gate, --force)"))
        if args.speed_rounds > 0:
            print_speed(float_path, int8_path, held, args)
    else:
        print(f"refused: {args.out} not written (--keep-fp32 auto keeps the costliest layers "
              f"in float, --force writes it anyway)")
    return passed, result


def main():
    args = parse_args()
    if args.threads > 0:
        reference.cv2.setNumThreads(args.threads)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="quantize.") as work:
        passed, result = run(args, work)
    log(f"done in {time.monotonic() - began:.0f} s")
    if not passed and not args.force:
        sys.exit(f"quantize: refused: held-out PSNR {result.full:.2f} dB is under the gate of "
                 f"{args.gate:.2f} dB by {args.gate - result.full:.2f} dB")
    print(f"talkinghead generator={os.path.abspath(args.out)} "
          f"audio-encoder={os.path.abspath(args.audio_encoder)} "
          f"avatar={os.path.abspath(args.avatar)}")


if __name__ == "__main__":
    main()
