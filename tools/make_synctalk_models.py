#!/usr/bin/env python3
# requires: numpy, onnx (onnxruntime only for --check); see requirements.txt
"""Build full-size SyncTalk_2D models (unet_328 "ave" + AudioEncoder) with random weights.

The two graphs follow the architectures of section 4 of the inference spec
(shared/spec/synctalk-inference.md: 4.1 building blocks, 4.2 unet_328 mode
"ave", 4.3 AudioEncoder; itself read from SyncTalk_2D unet_328.py/utils.py)
layer for layer, with BatchNorm folded into the convolutions, and the tensor
contract of its sections 2.1 and 3.3:

  audio_encoder.onnx  mel    float32 [batch,1,80,16]  ->  emb    float32 [batch,512]  (>= 0)
  generator.onnx      input  float32 [batch,6,320,320],
                      audio  float32 [batch,32,16,16] ->  output float32 [batch,3,320,320]
                                                          (Sigmoid, in (0,1))

"batch" is a dynamic axis (dim_param).  Opset 17, IR version 9, checked with
onnx.checker.  Built with onnx.helper and seeded numpy only, so the files are
byte-identical from run to run for the same --seed.

THE WEIGHTS ARE RANDOM.  The models cost exactly what the real ones cost
(same operators, shapes, parameter count and MACs; the generator is ~49 MB
like the 46 MB Sanders generator.onnx), so they are for benchmarks, batching
and stress tests, not for pictures: the output is coloured noise.  The
initialisation is He-style (variance-preserving per layer, residual branches
scaled down, the first layers scaled to the nominal input magnitudes), so the
activations stay in a healthy range and the sigmoid output is not saturated
(mean near 0.5, std ~0.1-0.3 on image-like input; --check prints it).

What the script prints, per model, computed by walking the graph it built:
  * parameters: the elements of the Conv weight/bias initializers (BN folded;
    the 4-float Resize scales constant is not a parameter), plus the PyTorch
    unfolded count reconstructed from the same graph (every BN adds gamma and
    beta per channel, see the notes below);
  * MACs per frame: sum over Conv nodes of out_elems * (in_ch/group) * kh * kw
    (shapes from onnx shape inference at batch 1);
  * the op histogram.
Spec numbers (section 4.2 / 4.3): generator 12,153,887 params folded
(12,186,935 unfolded), 93 Conv, 4,885,839,872 MAC (visual 4.404 G, audio
branch 0.482 G), ops Conv 93 / Relu 62 / Add 15 / Concat 6 / Resize 5 /
Sigmoid 1; encoder 2,808,256 params folded (2,812,672 unfolded), 13 Conv,
93.1 M MAC.  The script asserts that the built graphs reproduce these
(exactly for params/Conv count/generator MACs).

--check runs onnxruntime (single thread) on a synthetic but realistic input
(a smooth image-like crop in [0,1] with the section 3.2 mask in channels 3-5;
non-negative audio features in 0..10) at batch 1 and 2, checks the output
shapes, prints the output mean/std/saturated fraction, how much the output
moves when only the audio changes, and the time per frame.

Reading of the spec where it is not explicit (each choice is the one that
reproduces the spec's parameter/MAC/op counts):
  * IR with in != out is never residual (PyTorch would not even add the
    tensors); in the audio branch IR(32->64) and IR(64->128) are plain, and
    IR(256->256) and the two IR(512->512) are residual.  That gives 15 Adds.
  * The two plain Conv3x3+BN+ReLU of the audio branch (128->256 s1 p1 and
    256->512 s2 p3) have bias=True in PyTorch (nn.Conv2d default): the
    unfolded count 12,186,935 minus the folded 12,153,887 = 33,048 =
    32,280 BN channels (gamma+beta replace the folded bias) + 256 + 512 conv
    biases.  After folding there is one bias per conv either way.
  * Every folded conv gets a bias (BN shift), including the bias-less 1x1
    and depthwise convs of the IR blocks; outc keeps its own bias.
  * Up's "pad to the skip size" is a no-op at 320x320 (10->20->...->320
    match the skips exactly), so no Pad node is emitted (the Core ML graph
    has none either).  Concat order is [upsampled, skip].
  * Resize: mode "linear", coordinate_transformation_mode "align_corners",
    scales [1,1,2,2] (= PyTorch Upsample(scale_factor=2, bilinear,
    align_corners=True)).
  * Encoder: every layer is Conv(bias)+BN+ReLU; "res" adds the layer input
    before the ReLU (layers 2,3,5,6,8,9,11); the final [B,512,1,1] becomes
    [B,512] with Flatten(axis=1) (= squeeze(2).squeeze(2) at these shapes).

Files written into --out (default target/bench-models/, not committed):
    generator.onnx      (~49 MB)
    audio_encoder.onnx  (~11 MB)
The names match an avatar package's models/ folder, so --out can be used as
the generator / audio-encoder properties' targets directly.
"""

import argparse
import os
import sys
import time
from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

OPSET = 17
IR_VERSION = 9

# Nominal mean-square of the model inputs, used to scale the first layers so
# that their pre-activations have unit variance (He init assumes unit-scale
# inputs).  image: crop in [0,1] (mean ~0.45) with the masked half mostly 0;
# audio: encoder embeddings, non-negative, about 0..10; mel: the SyncTalk
# normalised log-mel in [-4,4].
IMAGE_MS = 0.15
AUDIO_MS = 8.0
MEL_MS = 4.0
# Residual branches are scaled by this (std) so that stacked "+x" do not
# blow the variance up (each residual block grows it by 1 + RES_GAIN**2).
RES_GAIN = 0.5
# Std of the folded BN shifts (biases), relative to unit-scale activations.
BIAS_STD = 0.1

SPEC = {
    "generator": dict(params=12_153_887, params_unfolded=12_186_935, convs=93,
                      macs=4_885_839_872,
                      ops={"Conv": 93, "Relu": 62, "Add": 15, "Concat": 6,
                           "Resize": 5, "Sigmoid": 1}),
    "audio_encoder": dict(params=2_808_256, params_unfolded=2_812_672, convs=13,
                          macs=93_100_000, macs_rounded=True),
}


class Graph:
    """Accumulates nodes/initializers; conv() emits one BN-folded Conv."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.n = Counter()
        # conv output name -> (has BN in the PyTorch model, had its own bias)
        self.conv_meta = {}

    def name(self, prefix):
        self.n[prefix] += 1
        return f"{prefix}_{self.n[prefix]}"

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def conv(self, x, cin, cout, k, stride=1, pad=0, group=1, gain=2.0,
             bn=True, torch_bias=False, bias_std=BIAS_STD, scope="conv"):
        """Conv with He-style weights N(0, gain/fan_in) and a bias.

        gain=2 keeps the output variance equal to the input's when the input
        is post-ReLU, gain=1 when it is zero-mean; gain can also fold the
        input magnitude (first layers) or a residual scale.  bn/torch_bias
        only record what the PyTorch layer had, for the unfolded count.
        """
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        fan_in = (cin // group) * kh * kw
        w = self.rng.standard_normal((cout, cin // group, kh, kw)).astype(np.float32)
        w *= np.float32(np.sqrt(gain / fan_in))
        b = (self.rng.standard_normal(cout) * bias_std).astype(np.float32)
        name = self.name(scope)
        wn = self.init(name + ".weight", w)
        bn_ = self.init(name + ".bias", b)
        out = name + "_out"
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn_], [out], name=name,
            kernel_shape=[kh, kw], strides=[sh, sw], pads=[pad, pad, pad, pad],
            group=group, dilations=[1, 1]))
        self.conv_meta[name] = (bn, torch_bias)
        return out

    def op(self, op_type, inputs, scope=None, **attrs):
        name = self.name(scope or op_type.lower())
        out = name + "_out"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def relu(self, x):
        return self.op("Relu", [x])

    def add(self, a, b):
        return self.op("Add", [a, b])


# ---------------------------------------------------------------- generator
# Section 4.1 blocks.  `post_relu` says whether the block input is a ReLU
# output (gain 2) or zero-mean (gain 1); `in_gain` overrides the expansion
# conv's gain (first layer: folds the input magnitude).

def inverted_residual(g, x, cin, cout, stride, res, in_gain=1.0, scope="ir"):
    """IR(in,out,s,res): 1x1 in->2in +BN+ReLU; dw3x3 s p1 +BN+ReLU;
    1x1 2in->out +BN; +x if res (needs in == out)."""
    assert not res or (cin == cout and stride == 1)
    hid = 2 * cin
    h = g.relu(g.conv(x, cin, hid, 1, gain=in_gain, scope=scope + "_exp"))
    h = g.relu(g.conv(h, hid, hid, 3, stride=stride, pad=1, group=hid, gain=2.0,
                      scope=scope + "_dw"))
    # projection: input is post-ReLU -> gain 2 keeps the variance; residual
    # branches are scaled by RES_GAIN so the sum stays ~unit.
    h = g.conv(h, hid, cout, 1, gain=2.0 * (RES_GAIN ** 2 if res else 1.0),
               scope=scope + "_proj")
    return g.add(x, h) if res else h


def dcdw(g, x, cin, cout, stride, in_gain=1.0, scope="dcdw"):
    """DCDW(in,out,s) = IR(in->out, s, no res) then IR(out->out, 1, res)."""
    x = inverted_residual(g, x, cin, cout, stride, False, in_gain, scope + "a")
    return inverted_residual(g, x, cout, cout, 1, True, 1.0, scope + "b")


def up(g, x, skip, cin, cout, scales, scope="up"):
    """Up(in,out): bilinear x2 (align_corners) -> [pad: no-op here] ->
    Concat[upsampled, skip] -> DCDW(in->out, stride 1)."""
    u = g.op("Resize", [x, "", scales], scope=scope + "_resize", mode="linear",
             coordinate_transformation_mode="align_corners")
    c = g.op("Concat", [u, skip], scope=scope + "_cat", axis=1)
    return dcdw(g, c, cin, cout, 1, scope=scope)


def build_generator(rng):
    g = Graph(rng)
    scales = g.init("up_scales", np.array([1.0, 1.0, 2.0, 2.0], np.float32))
    ch = [32, 64, 128, 256, 512]

    # visual encoder (section 4.2)
    x1 = inverted_residual(g, "input", 6, ch[0], 1, False,
                           in_gain=1.0 / IMAGE_MS, scope="inc")      # 32x320
    x2 = dcdw(g, x1, ch[0], ch[0], 2, scope="down1")                 # 32x160
    x3 = dcdw(g, x2, ch[0], ch[1], 2, scope="down2")                 # 64x80
    x4 = dcdw(g, x3, ch[1], ch[2], 2, scope="down3")                 # 128x40
    x5 = dcdw(g, x4, ch[2], ch[3], 2, scope="down4")                 # 256x20
    x6 = dcdw(g, x5, ch[3], ch[4], 2, scope="down5")                 # 512x10

    # audio branch, AudioConvAve: 32x16x16 -> 512x10x10
    a = inverted_residual(g, "audio", 32, 64, 1, False,
                          in_gain=1.0 / AUDIO_MS, scope="aud1")      # 64x16
    a = inverted_residual(g, a, 64, 128, 1, False, scope="aud2")     # 128x16
    a = g.relu(g.conv(a, 128, 256, 3, stride=1, pad=1, gain=1.0,
                      torch_bias=True, scope="aud3"))                # 256x16
    a = inverted_residual(g, a, 256, 256, 1, True, in_gain=2.0, scope="aud4")
    a = g.relu(g.conv(a, 256, 512, 3, stride=2, pad=3, gain=2.0,
                      torch_bias=True, scope="aud5"))                # 512x10
    a = inverted_residual(g, a, 512, 512, 1, True, in_gain=2.0, scope="aud6")
    a = inverted_residual(g, a, 512, 512, 1, True, scope="aud7")

    # fuse: concat(x6, audio) = 1024 -> DCDW(1024->512) -> DCDW(512->256)
    f = g.op("Concat", [x6, a], scope="fuse_cat", axis=1)
    f = dcdw(g, f, 2 * ch[4], ch[4], 1, scope="fuse1")
    f = dcdw(g, f, ch[4], ch[3], 1, scope="fuse2")                   # 256x10

    # decoder
    y = up(g, f, x5, 512, 128, scales, scope="up1")                  # 128x20
    y = up(g, y, x4, 256, 64, scales, scope="up2")                   # 64x40
    y = up(g, y, x3, 128, 32, scales, scope="up3")                   # 32x80
    y = up(g, y, x2, 64, 32, scales, scope="up4")                    # 32x160
    y = up(g, y, x1, 64, 16, scales, scope="up5")                    # 16x320
    # outc: Conv1x1 16->3 with bias, no BN.  Its input has rms ~0.75; gain 2
    # gives logits of std ~0.7 -> sigmoid std ~0.15.  Bias 0 -> mean ~0.5.
    logits = g.conv(y, 16, 3, 1, gain=2.0, bn=False, torch_bias=True,
                    bias_std=0.0, scope="outc")
    g.nodes.append(helper.make_node("Sigmoid", [logits], ["output"], name="sigmoid"))

    graph = helper.make_graph(
        g.nodes, "synctalk_unet328_ave_random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 6, 320, 320]),
         helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 32, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 320, 320])],
        g.inits)
    return finish(graph, "SyncTalk_2D unet_328 mode ave (section 4.2), BN folded, "
                  "RANDOM weights (benchmark/stress model)"), g.conv_meta


# ------------------------------------------------------------ audio encoder
# (cin, cout, k, stride, pad, res) per section 4.3.
ENCODER_LAYERS = [
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
]
# Gain of the last encoder layer.  The stacked "+x" before each ReLU let the
# (non-negative) activations grow to rms ~2.5 by layer 12; this gain, tuned
# once on the --check mel, puts the embedding at mean ~1.3, max ~10, about
# half zeros (the real encoder's observed range is 0..10, section 2.1).
EMB_GAIN = 1.6


def build_audio_encoder(rng):
    g = Graph(rng)
    x = "mel"
    for i, (cin, cout, k, s, p, res) in enumerate(ENCODER_LAYERS):
        if i == 0:
            gain = 1.0 / MEL_MS
        elif res:
            gain = 2.0 * RES_GAIN ** 2
        else:
            gain = 2.0
        if i == len(ENCODER_LAYERS) - 1:
            gain = EMB_GAIN
        y = g.conv(x, cin, cout, k, stride=s, pad=p, gain=gain, torch_bias=True,
                   scope=f"enc{i + 1}")
        if res:
            y = g.add(y, x)
        x = g.relu(y)
    g.nodes.append(helper.make_node("Flatten", [x], ["emb"], name="flatten", axis=1))
    graph = helper.make_graph(
        g.nodes, "synctalk_audio_encoder_ave_random",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", 1, 80, 16])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 512])],
        g.inits)
    return finish(graph, "SyncTalk_2D AudioEncoder ave (section 4.3), BN folded, "
                  "RANDOM weights (benchmark/stress model)"), g.conv_meta


def finish(graph, doc):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gst-talkinghead tools/make_synctalk_models.py",
                              ir_version=IR_VERSION, doc_string=doc)
    onnx.checker.check_model(model, full_check=True)
    return model


# ----------------------------------------------------------------- counting

def count(model, conv_meta):
    """Params (folded + PyTorch unfolded), Conv count, MACs at batch 1, op histogram."""
    inits = {t.name: t for t in model.graph.initializer}
    # fix the batch to 1 for shape inference
    m1 = onnx.ModelProto()
    m1.CopyFrom(model)
    for vi in list(m1.graph.input) + list(m1.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    inferred = shape_inference.infer_shapes(m1, strict_mode=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]

    params = unfolded = macs = audio_macs = 0
    convs = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        convs += 1
        w = inits[node.input[1]]
        cout, cin_g, kh, kw = w.dims
        p = int(np.prod(w.dims)) + int(np.prod(inits[node.input[2]].dims))
        params += p
        bn, torch_bias = conv_meta[node.name]
        # unfolded PyTorch: weight [+ own bias] [+ BN gamma, beta]
        unfolded += int(np.prod(w.dims)) + (cout if torch_bias else 0) + (2 * cout if bn else 0)
        out = shapes[node.output[0]]
        assert all(d > 0 for d in out), (node.name, out)
        m = int(np.prod(out)) * cin_g * kh * kw
        macs += m
        if node.name.startswith("aud"):
            audio_macs += m
    ops = Counter(n.op_type for n in model.graph.node)
    return dict(params=params, params_unfolded=unfolded, convs=convs, macs=macs,
                audio_macs=audio_macs, ops=dict(ops), shapes=shapes)


def report(label, c, spec):
    def cmp(got, want, tol=0, rounded=False):
        if rounded:  # the spec gives "93.1 M" only
            ok = abs(got - want) <= 0.0005 * want
            return f"  (spec {want / 1e6:.1f} M, rounded: {'equal' if ok else 'MISMATCH'})"
        d = got - want
        if d == 0:
            return "  (spec: equal)"
        rel = d / want
        return f"  (spec {want:,}: {d:+,}, {rel:+.3%}{'' if abs(rel) <= tol else '  MISMATCH'})"
    print(f"{label}:")
    print(f"  parameters (BN folded)   {c['params']:>14,}{cmp(c['params'], spec['params'])}")
    print(f"  parameters (PyTorch)     {c['params_unfolded']:>14,}"
          f"{cmp(c['params_unfolded'], spec['params_unfolded'])}")
    print(f"  Conv nodes               {c['convs']:>14,}{cmp(c['convs'], spec['convs'])}")
    print(f"  MAC / frame              {c['macs']:>14,}  = {c['macs'] / 1e9:.4f} G"
          f"{cmp(c['macs'], spec['macs'], rounded=spec.get('macs_rounded', False))}")
    print("  ops                      " + ", ".join(f"{k} {v}" for k, v in sorted(c["ops"].items())))


# ------------------------------------------------------------------- check

def realistic_inputs(batch, seed):
    """Image-like 6x320x320 crops (smooth shading + blobs + mild texture, in
    [0,1], channels 3-5 masked per section 3.2) and non-negative audio
    features in 0..10 (ReLU of Gaussian, ~35% zeros), one per batch item."""
    rng = np.random.default_rng(seed + 1000)
    yy, xx = np.mgrid[0:320, 0:320].astype(np.float32) / 320.0
    imgs = np.empty((batch, 6, 320, 320), np.float32)
    aud = np.empty((batch, 32, 16, 16), np.float32)
    for b in range(batch):
        base = rng.uniform(0.3, 0.7, 3).astype(np.float32)
        img = np.empty((3, 320, 320), np.float32)
        field = 0.15 * (xx - 0.5) * rng.uniform(-1, 1) + 0.15 * (yy - 0.5) * rng.uniform(-1, 1)
        for _ in range(6):
            cy, cx = rng.uniform(0.1, 0.9, 2)
            r = rng.uniform(0.05, 0.25)
            field = field + rng.uniform(-0.25, 0.25) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        for c in range(3):
            tex = 0.03 * rng.standard_normal((320, 320)).astype(np.float32)
            img[c] = base[c] + field * rng.uniform(0.8, 1.2) + tex
        img = np.clip(img, 0.0, 1.0)
        masked = img.copy()
        masked[:, 5:310, 5:315] = 0.0  # cv2.rectangle(img,(5,5,310,305),0,-1)
        imgs[b, :3] = img
        imgs[b, 3:] = masked
        aud[b] = np.clip(np.maximum(rng.normal(1.2, 2.5, (32, 16, 16)), 0.0), 0.0, 10.0)
    return imgs, aud


def check(out_dir, seed):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    prov = ["CPUExecutionProvider"]
    gen = ort.InferenceSession(os.path.join(out_dir, "generator.onnx"), so, providers=prov)
    enc = ort.InferenceSession(os.path.join(out_dir, "audio_encoder.onnx"), so, providers=prov)
    rng = np.random.default_rng(seed + 2000)

    print("check (onnxruntime %s, CPU, 1 thread):" % ort.__version__)
    first = None
    for batch, reps in ((1, 3), (2, 2)):
        mel = np.clip(rng.normal(-1.5, 1.5, (batch, 1, 80, 16)), -4, 4).astype(np.float32)
        enc.run(None, {"mel": mel})  # warm-up
        t = time.perf_counter()
        for _ in range(5):
            (emb,) = enc.run(None, {"mel": mel})
        te = (time.perf_counter() - t) / 5 / batch
        assert emb.shape == (batch, 512) and emb.dtype == np.float32, emb.shape
        assert (emb >= 0).all()

        img, aud = realistic_inputs(batch, seed)
        if batch == 2:
            img[1] = img[0]  # same picture, different audio
        gen.run(None, {"input": img, "audio": aud})  # warm-up
        t = time.perf_counter()
        for _ in range(reps):
            (out,) = gen.run(None, {"input": img, "audio": aud})
        tg = (time.perf_counter() - t) / reps / batch
        assert out.shape == (batch, 3, 320, 320) and out.dtype == np.float32, out.shape
        assert np.isfinite(out).all()
        sat = float(np.mean((out < 0.01) | (out > 0.99)))
        print(f"  batch {batch}: emb {emb.shape} min {emb.min():.3f} mean {emb.mean():.3f} "
              f"max {emb.max():.3f} zeros {np.mean(emb == 0):.1%}; {te * 1e3:.2f} ms/frame")
        print(f"           output {out.shape} mean {out.mean():.4f} std {out.std():.4f} "
              f"min {out.min():.4f} max {out.max():.4f} saturated(<.01|>.99) {sat:.2%}; "
              f"{tg * 1e3:.0f} ms/frame")
        per_img_std = out.reshape(batch, -1).std(axis=1)
        if batch == 1:
            first = out[0]
        else:
            # item 0 has the same inputs as the batch-1 run
            err = float(np.abs(out[0] - first).max())
            assert err < 1e-4, f"batch 2 item 0 differs from batch 1 by {err}"
            d = np.abs(out[0] - out[1])
            print(f"           same image, other audio: mean |diff| {d.mean():.4f}, max {d.max():.4f}")
        if not (out.std() > 0.01 and 0.05 < out.mean() < 0.95 and per_img_std.min() > 0.01):
            sys.exit("check: generator output is saturated or constant")
    print("check: OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="target/bench-models/",
                    help="output folder (default target/bench-models/)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ap.add_argument("--check", action="store_true",
                    help="run onnxruntime at batch 1 and 2: shapes, output stats, ms/frame")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    results = {}
    for label, build in (("audio_encoder", build_audio_encoder), ("generator", build_generator)):
        model, meta = build(rng)
        c = count(model, meta)
        report(label, c, SPEC[label])
        spec = SPEC[label]
        assert c["params"] == spec["params"], "parameter count differs from the spec"
        assert c["params_unfolded"] == spec["params_unfolded"]
        assert c["convs"] == spec["convs"]
        if spec.get("macs_rounded"):
            assert abs(c["macs"] - spec["macs"]) <= 0.0005 * spec["macs"]
        else:
            assert c["macs"] == spec["macs"]
        if "ops" in spec:
            assert all(c["ops"].get(k) == v for k, v in spec["ops"].items()), c["ops"]
        path = os.path.join(args.out, label + ".onnx")
        onnx.save(model, path)
        results[label] = c
        print(f"  wrote {path} ({os.path.getsize(path):,} bytes)")
    g = results["generator"]
    print(f"generator MAC split: visual {g['macs'] - g['audio_macs']:,} "
          f"({(g['macs'] - g['audio_macs']) / 1e9:.3f} G, spec 4.404 G), audio branch "
          f"{g['audio_macs']:,} ({g['audio_macs'] / 1e9:.3f} G, spec 0.482 G)")
    if args.check:
        check(args.out, args.seed)


if __name__ == "__main__":
    main()
