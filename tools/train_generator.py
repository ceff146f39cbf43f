#!/usr/bin/env python3
# requires: torch, numpy, onnx, onnxruntime, librosa, scipy, opencv-python-headless;
#           see tools/requirements-train.txt (its own virtualenv, .venv-train)
"""Train the SyncTalk_2D unet_328 "ave" generator on the CPU by distillation, export it to ONNX.

The student is the generator of shared/spec/synctalk-inference.md section 4.2 (blocks of 4.1),
layer for layer in PyTorch with BatchNorm: 12,186,935 trainable parameters (asserted).  The
teacher is an ONNX generator with the same tensor contract, by default the demo avatar's
hand-built one (models/demo/models/generator.onnx).  Each training example is what the element
would feed the generator: a template of the avatar cropped, resized and masked as
tools/reference.py does it (channels 0-2 the crop, 3-5 the masked crop) and the audio window
of one video frame of the speech clip (the audio encoder's features, +-8 rows, as
tools/reference.py computes them); the target is the teacher's output for that input.

Data: the templates' crops and the clip's audio windows are computed once up front (a few
MB).  The teacher runs on the fly, a few ms per frame against about a second of training per
frame, so every step draws fresh (template, audio frame) pairs from all combinations instead
of a fixed pool.  Held out from training, for the evaluation: every 6th template and a block
of 1/8 of the clip starting at 55 % of it (plus the 15 frames either side whose 16-row
windows overlap it).

Training: Adam, batches of 4 (the fastest per frame on the CPU), bfloat16 autocast and
channels_last tensors (2.4x faster than float32 on a CPU with AVX512-BF16), learning rate
warmed up then cosine-decayed over the time budget (the schedule follows elapsed time, so the
rate reaches its floor when the time is up), L1 loss weighted --mouth-weight times inside the
region the teacher ever changes (the mouth and jaw, found from a sample of loud frames).
The loop stops early enough for what follows it (timed from one evaluation at the start):
the BatchNorm running statistics are re-estimated over fresh batches with the final weights
(the running averages lag behind weights that moved during training; kept if that scores
better), the model is evaluated in eval mode, exported, and the held-out PSNR against the
teacher is printed (whole 320x320 output and the mouth region), with what merely copying
the input crop would score for comparison.

Quantization-aware ending: the last --qat-minutes (20) of the budget fine-tune for INT8 at
--qat-lr.  The BatchNorms are folded into their convolutions (and frozen as identities that add
the folded bias), and fake 8-bit quantization is inserted where tools/quantize.py quantizes the
exported graph: every convolution's weights (symmetric, per output channel), the audio input,
every unit's output and every residual sum (unsigned, per tensor, ranges a moving average of
the batches' extremes), the logits (range cut to +-8, as tools/quantize.py cuts a Sigmoid's
input).  Gradients pass straight through the rounding.  Trained in float alone, this generator
lost to INT8 mostly in its last block, whose activations reach +-130 while the logits that
matter are a few units (held-out PSNR of INT8 against its own float output 16 dB, 40 dB with
that block in float); this part teaches it weights whose output survives 8-bit steps.  It is
not checkpointed: --resume after it starts it again.

Checkpoints: <out dir>/checkpoint.pt every --checkpoint-minutes, at the end and on Ctrl-C
(model, optimizer, step, training time); --resume continues from it with the time that is
left of --minutes.

Export: the graph of tools/make_synctalk_models.py (the spec's op for op, every node named,
opset 17, dynamic batch, input [batch,6,320,320] + audio [batch,32,16,16] -> output
[batch,3,320,320]) with the trained weights, BatchNorm folded (eval mode).  Checked against
the PyTorch model in eval mode with onnxruntime at batch 1 and 3.  The audio encoder is copied
beside it (audio_encoder.onnx), so the folder works as the element's models.

Usage:  .venv-train/bin/python tools/train_generator.py [--minutes 60] [--threads N]
            [--out target/trained-models/generator.onnx] [--resume] [--batch 4] [--lr 2e-3]
            [--qat-minutes 20] [--qat-lr 1e-4] [--teacher G] [--audio-encoder E]
            [--avatar DIR] [--audio WAV]
"""

import argparse
import functools
import math
import os
import shutil
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

import make_synctalk_models
import reference

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
DEMO = os.path.join(ROOT, "models", "demo")
SIZE = 320
PARAMETERS = 12_186_935             # spec section 4.2, PyTorch count with BN affine
CHANNELS = (32, 64, 128, 256, 512)
HELD_OUT_TEMPLATE_EVERY = 6
HELD_OUT_AUDIO_START = 0.55         # share of the clip where the held-out block begins
HELD_OUT_AUDIO_SHARE = 1 / 8
WINDOW_OVERLAP = 2 * reference.FEATURE_HALF_WINDOW - 1   # frames whose windows share rows
EVAL_FRAMES = 32
MOUTH_SAMPLES = 64                  # loud frames whose teacher output marks the mouth region
MOUTH_DILATE = 9                    # px grown around it
WARMUP = 0.03                       # share of the budget spent warming the rate up
LR_FLOOR = 0.02                     # final rate / peak rate
BN_RECALIBRATION_BATCHES = 16
PROGRESS_SECONDS = 60
MIN_STEPS = 2                       # per run, even when the budget is already spent
EVAL_MINUTES = 10
# tools/quantize.py's range of a Sigmoid's input: beyond +-8 its 8-bit output no longer changes
LOGIT_LIMIT = 8.0
QAT_RANGE_BATCHES = 8               # batches whose ranges start the fake quantization


def log(message):
    print(message, flush=True)


# ------------------------------------------------------------------ model (spec 4.1, 4.2)

class ConvBN(nn.Sequential):
    """Conv2d + BatchNorm2d (+ ReLU): the unit every conv of the generator but outc is."""

    def __init__(self, cin, cout, kernel, stride=1, pad=0, groups=1, bias=False, relu=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias),
                  nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class InvertedResidual(nn.Module):
    """IR(in, out, s, res): 1x1 in->2in, depthwise 3x3 stride s, 1x1 2in->out (no ReLU), +x."""

    def __init__(self, cin, cout, stride=1, res=False):
        super().__init__()
        hidden = 2 * cin
        self.res = res
        self.body = nn.Sequential(
            ConvBN(cin, hidden, 1),
            ConvBN(hidden, hidden, 3, stride, 1, groups=hidden),
            ConvBN(hidden, cout, 1, relu=False))
        if res:   # start as the identity: the branch's last BatchNorm scale is 0
            nn.init.zeros_(self.body[2][1].weight)

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


def dcdw(cin, cout, stride=1):
    return nn.Sequential(InvertedResidual(cin, cout, stride),
                         InvertedResidual(cout, cout, 1, True))


class Up(nn.Module):
    """Bilinear x2 (align_corners), padded to the skip's size, [upsampled, skip], DCDW."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = dcdw(cin, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        if dy or dx:   # never at 320x320 input
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x, skip], dim=1))


class AudioConvAve(nn.Module):
    """Audio branch of mode "ave": [32,16,16] -> [512,10,10]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            InvertedResidual(32, 64), InvertedResidual(64, 128),
            ConvBN(128, 256, 3, 1, 1, bias=True), InvertedResidual(256, 256, 1, True),
            ConvBN(256, 512, 3, 2, 3, bias=True), InvertedResidual(512, 512, 1, True),
            InvertedResidual(512, 512, 1, True))

    def forward(self, audio):
        return self.body(audio)


class Generator(nn.Module):
    """unet_328, mode "ave": input [B,6,320,320] + audio [B,32,16,16] -> sigmoid [B,3,320,320]."""

    def __init__(self):
        super().__init__()
        c = CHANNELS
        self.inc = InvertedResidual(6, c[0])
        self.down = nn.ModuleList([dcdw(c[0], c[0], 2), dcdw(c[0], c[1], 2), dcdw(c[1], c[2], 2),
                                   dcdw(c[2], c[3], 2), dcdw(c[3], c[4], 2)])
        self.audio = AudioConvAve()
        self.fuse = nn.Sequential(dcdw(2 * c[4], c[4]), dcdw(c[4], c[3]))
        self.up = nn.ModuleList([Up(512, 128), Up(256, 64), Up(128, 32), Up(64, 32), Up(64, 16)])
        self.outc = nn.Conv2d(16, 3, 1)

    def forward(self, image, audio):
        skips = [self.inc(image)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = self.fuse(torch.cat([skips.pop(), self.audio(audio)], dim=1))
        for up in self.up:
            x = up(x, skips.pop())
        return torch.sigmoid(self.outc(x))

    def convs(self):
        """(Conv2d, BatchNorm2d or None) in the order tools/make_synctalk_models.py emits them."""
        def units(module):
            return [(unit[0], unit[1]) for unit in module.modules() if isinstance(unit, ConvBN)]
        order = [self.inc, *self.down, self.audio, self.fuse, *self.up]
        return [pair for module in order for pair in units(module)] + [(self.outc, None)]


def parameter_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------ export

def folded(conv, bn):
    """Conv weight and bias with the BatchNorm (running statistics) folded in, float32 numpy."""
    weight = conv.weight.detach().double()
    bias = (conv.bias.detach().double() if conv.bias is not None
            else torch.zeros(weight.shape[0], dtype=torch.float64))
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = bn.bias.detach().double() + (bias - bn.running_mean.double()) * scale
    return weight.float().numpy(), bias.float().numpy()


def export_onnx(model, path):
    """The spec graph of tools/make_synctalk_models.py with this model's folded weights."""
    graph_model, _ = make_synctalk_models.build_generator(np.random.default_rng(0))
    initializers = {t.name: t for t in graph_model.graph.initializer}
    conv_nodes = [node for node in graph_model.graph.node if node.op_type == "Conv"]
    pairs = model.convs()
    if len(conv_nodes) != len(pairs):
        raise RuntimeError(f"graph has {len(conv_nodes)} convs, the model {len(pairs)}")
    for node, (conv, bn) in zip(conv_nodes, pairs):
        for name, array in zip(node.input[1:3], folded(conv, bn)):
            if tuple(initializers[name].dims) != array.shape:
                raise RuntimeError(f"{node.name}: {name} is {tuple(initializers[name].dims)} in "
                                   f"the graph, {array.shape} in the model")
            initializers[name].CopyFrom(numpy_helper.from_array(array, name))
    graph_model.graph.name = "synctalk_unet328_ave_distilled"
    graph_model.producer_name = "gst-talkinghead tools/train_generator.py"
    graph_model.doc_string = ("SyncTalk_2D unet_328 mode ave (spec section 4.2), BN folded, "
                              "trained by distillation (tools/train_generator.py)")
    onnx.checker.check_model(graph_model, full_check=True)
    tmp = path + ".tmp"
    onnx.save(graph_model, tmp)
    os.replace(tmp, path)


def check_export(model, path, images, audio):
    """Max |onnxruntime - PyTorch eval| at batch 1 and 3; raises above 1e-4."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    model.eval()
    worst = 0.0
    for batch in (1, 3):
        with torch.no_grad():
            expected = model(*to_torch(images[:batch], audio[:batch])).numpy()
        found = session.run(["output"], {"input": images[:batch], "audio": audio[:batch]})[0]
        if found.shape != (batch, 3, SIZE, SIZE):
            raise RuntimeError(f"{path}: output shape {found.shape} at batch {batch}")
        worst = max(worst, float(np.abs(found - expected).max()))
    if worst > 1e-4:
        raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {worst:.2e}")
    return worst


# ------------------------------------------------------------------ data

def evenly(items, count):
    if count >= len(items):
        return list(items)
    return [items[round(k * (len(items) - 1) / max(1, count - 1))] for k in range(count)]


class Data:
    """Generator inputs of the avatar and the clip, split into training and held-out parts."""

    def __init__(self, avatar_dir, audio_path, encoder_path, threads):
        avatar = reference.Avatar(avatar_dir)
        # crops as uint8 (37 MB for 60 templates); / 255 per batch gives reference.prepare's values
        self.planes = np.stack([np.round(self.template_planes(avatar, t) * 255).astype(np.uint8)
                                for t in range(avatar.count)])
        encoder = reference.Model(encoder_path, threads)
        windows = reference.encoder_windows(reference.mel_spectrogram(audio_path))
        features = reference.padded_features(
            encoder.run_batched({encoder.inputs[0].name: windows}, reference.ENCODER_CHUNK))
        self.audio = np.stack([reference.frame_audio(features, i) for i in range(len(features))])
        self.split(avatar.count, len(features))

    @staticmethod
    def template_planes(avatar, template):
        frame, box = avatar.load(template)
        return reference.prepare(frame, box)[1]

    def split(self, templates, frames):
        every = HELD_OUT_TEMPLATE_EVERY
        held = [t for t in range(templates) if t % every == every - 1] or [templates - 1]
        self.train_templates = [t for t in range(templates) if t not in held] or held
        start = int(frames * HELD_OUT_AUDIO_START)
        block = range(start, min(frames, start + max(1, int(frames * HELD_OUT_AUDIO_SHARE))))
        self.train_frames = [i for i in range(frames) if i < block.start - WINDOW_OVERLAP
                             or i >= block.stop + WINDOW_OVERLAP]
        if not self.train_frames:
            raise SystemExit(f"the clip is too short to hold audio out: {frames} frames")
        eval_frames = evenly(list(block), EVAL_FRAMES)
        self.eval_pairs = [(held[k % len(held)], i) for k, i in enumerate(eval_frames)]
        self.held_templates, self.held_block = held, block

    def images(self, templates):
        return self.planes[templates].astype(np.float32) / 255.0

    def batch(self, pairs):
        templates, frames = zip(*pairs)
        return self.images(list(templates)), self.audio[list(frames)]

    def sample(self, rng, count):
        return list(zip(rng.choice(self.train_templates, count),
                        rng.choice(self.train_frames, count)))


class Teacher:
    """The ONNX generator whose output the student learns."""

    def __init__(self, path, threads):
        self.model = reference.Model(path, threads)
        self.image = self.model.input_with_channels(6)
        self.audio = self.model.input_with_channels(32)

    def __call__(self, images, audio):
        return self.model.run_batched({self.image: images, self.audio: audio},
                                      reference.GENERATOR_CHUNK)


def mouth_region(data, teacher):
    """[320,320] bool: where the teacher changes the crop on the loudest training frames, grown."""
    loudest = sorted(data.train_frames, key=lambda i: -float(data.audio[i].mean()))[:MOUTH_SAMPLES]
    templates = evenly(data.train_templates, MOUTH_SAMPLES)
    pairs = [(templates[k % len(templates)], i) for k, i in enumerate(loudest)]
    changed = np.zeros((SIZE, SIZE), bool)
    for first in range(0, len(pairs), reference.GENERATOR_CHUNK):
        images, audio = data.batch(pairs[first:first + reference.GENERATOR_CHUNK])
        out = teacher(images, audio)
        changed |= (np.abs(out - images[:, :3]).max(axis=(0, 1)) > 2 / 255)
    kernel = np.ones((2 * MOUTH_DILATE + 1, 2 * MOUTH_DILATE + 1), np.uint8)
    return cv2.dilate(changed.astype(np.uint8), kernel) > 0


# ------------------------------------------------------------------ training

def learning_rate(peak, progress):
    """Linear warm-up, then cosine down to LR_FLOOR * peak, over progress in [0, 1]."""
    if progress < WARMUP:
        return peak * max(progress / WARMUP, 0.01)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP) / (1 - WARMUP))))
    return peak * (LR_FLOOR + (1 - LR_FLOOR) * cosine)


def smooth(average, value, keep):
    return value if average is None else keep * average + (1 - keep) * value


def to_torch(images, audio):
    return (torch.from_numpy(images).contiguous(memory_format=torch.channels_last),
            torch.from_numpy(np.ascontiguousarray(audio)))


def psnr(a, b, region=None):
    diff = (a.astype(np.float64) - b) ** 2
    mse = float(diff[..., region].mean() if region is not None else diff.mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


class Evaluation:
    """Held-out inputs with the teacher's outputs, and PSNR against them."""

    def __init__(self, data, teacher, region):
        self.images, self.audio = data.batch(data.eval_pairs)
        self.target = teacher(self.images, self.audio)
        self.region = region

    def predict_torch(self, model):
        model.eval()
        outputs = []
        with torch.no_grad():
            for first in range(0, len(self.images), reference.GENERATOR_CHUNK):
                part = slice(first, first + reference.GENERATOR_CHUNK)
                outputs.append(model(*to_torch(self.images[part], self.audio[part])).numpy())
        return np.concatenate(outputs)

    def score(self, output):
        return psnr(output, self.target), psnr(output, self.target, self.region)

    def describe(self, output):
        full, mouth = self.score(output)
        return f"{full:.2f} dB (mouth region {mouth:.2f} dB)"


def recalibrate_batchnorm(model, data, rng, batch):
    """Re-estimate every BatchNorm's running statistics with the final weights (fp32)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None          # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(BN_RECALIBRATION_BATCHES):
            model(*to_torch(*data.batch(data.sample(rng, batch))))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def batchnorm_state(model):
    return {name: value.clone() for name, value in model.state_dict().items()
            if "running_" in name or "num_batches" in name}


class Trainer:
    def __init__(self, args, data, teacher, region):
        self.args, self.data, self.teacher = args, data, teacher
        self.model = Generator().to(memory_format=torch.channels_last)
        count = parameter_count(self.model)
        log(f"generator: {count:,} trainable parameters (spec {PARAMETERS:,})")
        assert count == PARAMETERS, f"parameter count {count:,} != spec {PARAMETERS:,}"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        weight = 1.0 + (args.mouth_weight - 1.0) * region.astype(np.float32)
        self.weight = torch.from_numpy(weight / weight.mean())[None, None]
        self.step = self.samples = 0
        self.elapsed = 0.0            # training seconds of earlier runs (resume)
        self.checkpoint_path = os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                            "checkpoint.pt")

    def save(self):
        tmp = self.checkpoint_path + ".tmp"
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "step": self.step, "samples": self.samples, "elapsed": self.elapsed}, tmp)
        os.replace(tmp, self.checkpoint_path)

    def resume(self):
        state = torch.load(self.checkpoint_path, map_location="cpu")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.samples, self.elapsed = state["step"], state["samples"], state["elapsed"]
        log(f"resumed {self.checkpoint_path}: step {self.step}, {self.samples} samples, "
            f"{self.elapsed / 60:.1f} of {self.args.minutes:g} minutes")

    def train_step(self, rng, rate, batchnorm_training=True):
        images, audio = self.data.batch(self.data.sample(rng, self.args.batch))
        target = torch.from_numpy(self.teacher(images, audio))
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.model.train(batchnorm_training)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not self.args.fp32):
            output = self.model(*to_torch(images, audio))
        error = output.float() - target
        loss = (self.weight * error.abs()).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.samples += len(images)
        return loss.item(), error.detach().square().mean().item()

    def run(self, deadline, evaluation):
        """Steps until the wall-clock deadline; Ctrl-C saves a checkpoint and exits."""
        began, before = time.monotonic(), self.elapsed
        budget = before + max(deadline - began, 0.0)   # training seconds the schedule spans
        try:
            self.loop(deadline, budget, evaluation, lambda: before + time.monotonic() - began)
        except KeyboardInterrupt:
            self.elapsed = before + time.monotonic() - began
            self.save()
            log(f"interrupted at step {self.step}; saved {self.checkpoint_path} "
                "(--resume continues)")
            raise SystemExit(130)
        self.elapsed = before + time.monotonic() - began
        self.save()
        log(f"trained {self.step} steps, {self.samples} samples in {self.elapsed / 60:.1f} min; "
            f"checkpoint {self.checkpoint_path}")

    def loop(self, deadline, budget, evaluation, elapsed):
        rng = np.random.default_rng(self.args.seed + self.step)
        last_log = last_checkpoint = last_eval = time.monotonic()
        loss_avg = mse_avg = per_sample = None
        first = self.step
        while time.monotonic() < deadline or self.step < first + MIN_STEPS:
            self.elapsed = elapsed()
            began = time.perf_counter()
            progress = min(1.0, self.elapsed / max(budget, 1e-9))
            loss, mse = self.train_step(rng, learning_rate(self.args.lr, progress))
            seconds = (time.perf_counter() - began) / self.args.batch
            per_sample = smooth(per_sample, seconds, 0.9)
            loss_avg, mse_avg = smooth(loss_avg, loss, 0.95), smooth(mse_avg, mse, 0.95)
            now = time.monotonic()
            if now - last_log >= PROGRESS_SECONDS:
                last_log = now
                log(f"step {self.step}: {self.samples} samples, loss {loss_avg:.4f} "
                    f"(training PSNR {10 * math.log10(1 / mse_avg):.2f} dB), "
                    f"lr {self.optimizer.param_groups[0]['lr']:.2e}, {per_sample:.2f} s/sample, "
                    f"{elapsed() / 60:.1f}/{self.args.minutes:g} min")
            if now - last_eval >= EVAL_MINUTES * 60:
                last_eval = now
                log(f"  held-out PSNR (eval mode): "
                    f"{evaluation.describe(evaluation.predict_torch(self.model))}")
            if now - last_checkpoint >= self.args.checkpoint_minutes * 60:
                last_checkpoint = now
                self.elapsed = elapsed()
                self.save()


# ------------------------------------------------------------------ quantization-aware fine-tuning

def fold_batchnorm(model):
    """Fold every BatchNorm into its convolution, in place; the BatchNorm stays as a frozen
    identity that adds the folded bias (eval mode), so the module tree and export are unchanged.
    The convolution's weights are then the ones the exported graph (and its INT8 version) has."""
    for conv, norm in model.convs():
        if norm is None:
            continue
        weight, bias = folded(conv, norm)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            if conv.bias is not None:
                conv.bias.zero_()
                conv.bias.requires_grad_(False)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
            norm.weight.fill_(1.0)
            norm.weight.requires_grad_(False)
            norm.bias.copy_(torch.from_numpy(bias))


def fake_quantized_weight(weight):
    """Symmetric signed 8-bit per output channel, as tools/quantize.py quantizes weights."""
    scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-12).float()
    zero = torch.zeros(weight.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def fake_quantized_conv(conv, x):
    return conv._conv_forward(x, fake_quantized_weight(conv.weight), conv.bias)


class ActivationRange:
    """Unsigned 8-bit per-tensor fake quantization of one activation, its range (widened to hold
    0, as onnxruntime's is) a moving average of the batches' minima and maxima."""

    MOMENTUM = 0.05

    def __init__(self, limit=None):
        self.low = self.high = None
        self.limit = limit            # the range never goes past +-limit
        self.mode = "widen"           # "widen": the extremes so far; "average"; "fixed"

    def __call__(self, x):
        if self.mode != "fixed":
            low, high = (value.item() for value in torch.aminmax(x.detach()))
            low, high = min(low, 0.0), max(high, 0.0)
            if self.limit is not None:
                low, high = max(low, -self.limit), min(high, self.limit)
            if self.low is None:
                self.low, self.high = low, high
            elif self.mode == "widen":
                self.low, self.high = min(self.low, low), max(self.high, high)
            else:
                self.low += self.MOMENTUM * (low - self.low)
                self.high += self.MOMENTUM * (high - self.high)
        scale = max(self.high - self.low, 1e-8) / 255
        zero = int(round(-self.low / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class QuantizationAware:
    """Fake INT8 in the model where tools/quantize.py quantizes the exported graph: every
    convolution's weights, the audio input, every ConvBN unit's output (after its ReLU), every
    residual sum, the output convolution's logits.  Gradients pass straight through the rounding
    (and are cut where a value is clipped), so training learns weights whose output survives
    8-bit steps."""

    def __init__(self, model):
        self.model = model
        self.ranges = []
        self.handles = []
        for module in model.modules():
            if isinstance(module, ConvBN) or (isinstance(module, InvertedResidual) and module.res):
                self.handles.append(module.register_forward_hook(self.output_hook()))
        self.handles.append(model.outc.register_forward_hook(self.output_hook(LOGIT_LIMIT)))
        audio = self.range()
        self.handles.append(model.register_forward_pre_hook(
            lambda _, inputs: (inputs[0], audio(inputs[1]))))
        self.convs = [conv for conv, _ in model.convs()]
        for conv in self.convs:
            conv.forward = functools.partial(fake_quantized_conv, conv)

    def range(self, limit=None):
        found = ActivationRange(limit)
        self.ranges.append(found)
        return found

    def output_hook(self, limit=None):
        found = self.range(limit)
        return lambda _module, _inputs, output: found(output)

    def track(self, mode):
        for found in self.ranges:
            found.mode = mode

    def remove(self):
        for handle in self.handles:
            handle.remove()
        for conv in self.convs:
            del conv.forward          # back to the class's forward


def fine_tune_quantization_aware(trainer, data, evaluation, minutes):
    """--qat-minutes of quantization-aware fine-tuning at --qat-lr (cosine), BatchNorm folded
    and frozen.  Reports the held-out PSNR before, with fake INT8, and after (plain float)."""
    model = trainer.model
    before = evaluation.describe(evaluation.predict_torch(model))
    fold_batchnorm(model)
    trainer.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                         lr=trainer.args.qat_lr)
    fake = QuantizationAware(model)
    rng = np.random.default_rng(trainer.args.seed + 2)
    with torch.no_grad():                 # the first ranges: the extremes of a few batches
        model.eval()
        for _ in range(QAT_RANGE_BATCHES):
            model(*to_torch(*data.batch(data.sample(rng, trainer.args.batch))))
    fake.track("fixed")
    log(f"quantization-aware fine-tuning, {minutes:g} min: held-out PSNR in float {before}, "
        f"with fake INT8 {evaluation.describe(evaluation.predict_torch(model))}")
    fake.track("average")
    began = last_log = time.monotonic()
    budget = minutes * 60
    steps = 0
    loss_avg = mse_avg = None
    while time.monotonic() - began < budget or steps < MIN_STEPS:
        progress = min(1.0, (time.monotonic() - began) / budget)
        loss, mse = trainer.train_step(rng, learning_rate(trainer.args.qat_lr, progress),
                                       batchnorm_training=False)
        loss_avg, mse_avg = smooth(loss_avg, loss, 0.95), smooth(mse_avg, mse, 0.95)
        steps += 1
        if time.monotonic() - last_log >= PROGRESS_SECONDS:
            last_log = time.monotonic()
            log(f"qat step {steps}: loss {loss_avg:.4f} (training PSNR "
                f"{10 * math.log10(1 / mse_avg):.2f} dB), "
                f"{(last_log - began) / 60:.1f}/{minutes:g} min")
    fake.track("fixed")
    quantized = evaluation.describe(evaluation.predict_torch(model))
    fake.remove()
    log(f"fine-tuned {steps} steps: held-out PSNR with fake INT8 {quantized}, in float "
        f"{evaluation.describe(evaluation.predict_torch(model))}")


# ------------------------------------------------------------------ main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60,
                    help="wall-clock budget in minutes, with --resume including the time already "
                         "trained (60)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (all cores)")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "trained-models",
                                                  "generator.onnx"),
                    help="ONNX to write; checkpoint.pt and audio_encoder.onnx go beside it")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the checkpoint beside --out")
    ap.add_argument("--batch", type=int, default=4, help="frames per step (4: fastest per frame)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (2e-3)")
    ap.add_argument("--mouth-weight", type=float, default=4.0,
                    help="L1 weight inside the region the teacher changes, relative to "
                         "outside (4)")
    ap.add_argument("--fp32", action="store_true",
                    help="train in float32 (default bfloat16 autocast: 2.4x faster on CPUs with "
                         "AVX512-BF16/AMX, slow elsewhere)")
    ap.add_argument("--qat-minutes", type=float, default=20,
                    help="of --minutes, how many end the training quantization-aware: BatchNorm "
                         "folded, fake INT8 as tools/quantize.py quantizes (20; 0: none)")
    ap.add_argument("--qat-lr", type=float, default=1e-4,
                    help="peak Adam learning rate of the quantization-aware part (1e-4)")
    ap.add_argument("--checkpoint-minutes", type=float, default=10,
                    help="checkpoint interval (10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", default=os.path.join(DEMO, "models", "generator.onnx"))
    ap.add_argument("--audio-encoder", default=os.path.join(DEMO, "models", "audio_encoder.onnx"))
    ap.add_argument("--avatar", default=DEMO)
    ap.add_argument("--audio", default=os.path.join(DEMO, "speech.wav"))
    args = ap.parse_args()
    if not 0 <= args.qat_minutes < args.minutes:
        ap.error("--qat-minutes must be at least 0 and under --minutes")
    if args.batch < 2:
        ap.error("--batch must be at least 2 (BatchNorm)")
    return args


def main():
    args = parse_args()
    started = time.monotonic()
    deadline = started + (args.minutes - args.qat_minutes) * 60
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cv2.setNumThreads(1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    data = Data(args.avatar, args.audio, args.audio_encoder, args.threads)
    teacher = Teacher(args.teacher, args.threads)
    region = mouth_region(data, teacher)
    evaluation = Evaluation(data, teacher, region)
    log(f"data: {len(data.planes)} templates ({len(data.train_templates)} for training, "
        f"{data.held_templates} held out), {len(data.audio)} audio frames "
        f"({len(data.train_frames)} for training, {data.held_block.start}.."
        f"{data.held_block.stop - 1} held out); mouth region {region.mean():.1%} of the crop; "
        f"{len(data.eval_pairs)} evaluation frames")
    log(f"copying the input (channels 0-2) would score "
        f"{evaluation.describe(evaluation.images[:, :3])}")

    trainer = Trainer(args, data, teacher, region)
    if args.resume:
        trainer.resume()
        deadline = started + (args.minutes - args.qat_minutes) * 60 - trainer.elapsed
    timer = time.monotonic()
    log(f"held-out PSNR at the start: "
        f"{evaluation.describe(evaluation.predict_torch(trainer.model))}")
    forward = (time.monotonic() - timer) / len(data.eval_pairs)
    # What follows the loop (BatchNorm re-estimation, two evaluations, the export check, the
    # evaluation of the export) is about this many one-frame forward passes.
    # The quantization-aware part adds four evaluations and its first ranges' batches.
    after = BN_RECALIBRATION_BATCHES * args.batch + 3 * len(data.eval_pairs) + 4
    if args.qat_minutes > 0:
        after += 4 * len(data.eval_pairs) + QAT_RANGE_BATCHES * args.batch
    deadline -= after * forward
    log(f"training for {max(0.0, deadline - time.monotonic()) / 60:.1f} min, batch {args.batch}, "
        f"{args.threads} threads, {'fp32' if args.fp32 else 'bf16 autocast'}, channels_last")
    trainer.run(deadline, evaluation)

    settle_batchnorm(trainer.model, data, evaluation, args)
    if args.qat_minutes > 0:
        fine_tune_quantization_aware(trainer, data, evaluation, args.qat_minutes)
    export(trainer.model, args, evaluation)
    log(f"done in {(time.monotonic() - started) / 60:.1f} min")


def settle_batchnorm(model, data, evaluation, args):
    """Eval-mode statistics: the running ones or re-estimated ones, whichever scores better."""
    running = evaluation.score(evaluation.predict_torch(model))
    saved = batchnorm_state(model)
    recalibrate_batchnorm(model, data, np.random.default_rng(args.seed + 1), args.batch)
    recalibrated = evaluation.score(evaluation.predict_torch(model))
    log(f"held-out PSNR with the running BatchNorm statistics {running[0]:.2f} dB, re-estimated "
        f"{recalibrated[0]:.2f} dB")
    if recalibrated[0] < running[0]:
        model.load_state_dict({**model.state_dict(), **saved})
    model.eval()


def export(model, args, evaluation):
    """Write and check the ONNX, copy the audio encoder beside it, report on the export."""
    export_onnx(model, args.out)
    error = check_export(model, args.out, evaluation.images[:3], evaluation.audio[:3])
    encoder_copy = os.path.join(os.path.dirname(os.path.abspath(args.out)), "audio_encoder.onnx")
    if os.path.abspath(args.audio_encoder) != encoder_copy:
        shutil.copyfile(args.audio_encoder, encoder_copy)
    exported = Teacher(args.out, args.threads)(evaluation.images, evaluation.audio)
    log(f"exported {args.out} (onnxruntime vs PyTorch eval at batch 1 and 3: max |diff| "
        f"{error:.1e}), audio encoder copied to {encoder_copy}")
    log(f"held-out PSNR against the teacher over {len(evaluation.images)} frames (unseen "
        f"templates and audio): {evaluation.describe(exported)}")
    log(f"talkinghead generator={os.path.abspath(args.out)} audio-encoder={encoder_copy} "
        f"avatar={os.path.abspath(args.avatar)}")


if __name__ == "__main__":
    main()
