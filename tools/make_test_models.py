#!/usr/bin/env python3
# requires: numpy, onnx (onnxruntime only for the self-check); see requirements.txt
"""Write small random-weight ONNX models with the SyncTalk_2D tensor contract.

They stand in for the real audio encoder and U-Net generator in tests: same
input/output names, shapes, dtypes and value ranges, a few hundred kB instead
of 57 MB, and no training.  Built with onnx.helper and seeded numpy only, so
the files are byte-identical from run to run.

audio encoder   mel  float32 [N,1,80,16]  ->  emb    float32 [N,512]  (>= 0)
    Conv 1->16  k(5,3) s(4,1) p1 + Relu    16 x 20 x 16
    Conv 16->16 k3 s2 p1 + Relu            16 x 10 x  8
    Conv 16->16 k3 s2 p1 + Relu            16 x  5 x  4
    Conv 16->64 k(5,4) + Relu              64 x  1 x  1   (covers what is left)
    Conv 64->512 k1, Flatten, Relu         512
  Every mel bin and time step of the window reaches the embedding.

generator   input float32 [N,6,320,320], audio float32 [N,32,16,16]
            ->  output float32 [N,3,320,320]  (Sigmoid, in (0,1))
    identity   Conv 1x1 with fixed weights: 6 * (input[:, 0:3] - 0.5)
    visual     Conv 6->8 k3 s2 + Relu (160), Conv 8->8 k3 s2 + Relu (80)
    audio      Conv 32->16 k3 + Relu, Conv 16->8 k1 (16x16),
               bilinear Resize x5 to 80x80, added to the visual features
    fuse       Relu, Conv 8->3 k3 (80), minus its per-image spatial mean
               (no colour cast), bilinear Resize x4 to 320
    output     Sigmoid(identity + fused)
  The identity term makes the output look like the unmasked crop (channels
  0-2, contrast slightly changed); the fused term depends on both the masked
  crop and the audio features, as soft blocky colour shifts.

Files written into --out (default models/test/):
    audio_encoder[_<names>][_b1].onnx
    generator[_<names>][_b1].onnx
  _b1 marks --fixed-batch (batch dim fixed to 1 instead of the dynamic "batch");
  _<names> marks a tensor-name set other than the SyncTalk_2D one:
    synctalk  mel -> emb;               input, audio -> output   (no suffix)
    dc        mel_input -> features;    generator as synctalk
    wct       mel_spectrogram -> audio_features; generator as synctalk
    coreml    mel_spectrogram -> var_242;
              audio_input, visual_input -> var_1677 (audio declared FIRST,
              so a consumer must resolve the inputs by shape, not by order)
  A generator whose names equal the synctalk ones gets no suffix and is the
  same file for every name set.  All variants share the same weights, so they
  compute the same numbers.

With --broken KIND (repeatable, or "all") the script writes, instead of the
pair above (unless --all is given too), models that break the contract in one
way each, for the loaders' error tests:
    broken_<kind>.onnx
  input-name            encoder whose input is "spectrogram" and which has a
                        second output "emb_mean" (so no single-input fallback)
  input-dims            encoder input "mel" [batch,1,80,32] (sliced to 16 inside)
  input-rank            encoder input "mel" of rank 3, [batch,80,16] (unsqueezed inside)
  float16, float64      encoder input "mel" of that type (cast to float inside)
  output-dims           encoder output "emb" [batch,256]
  batch2                encoder with the batch fixed to 2
  generator-audio-dims  generator input "audio" [batch,32,16,32]
  generator-unnamed     NOT broken: a generator whose tensors carry names no
                        consumer knows ("a.1" audio first, "x.1" image, "y"),
                        so only the channel counts (32 vs 6) tell them apart
  Every broken model is still a valid ONNX graph that onnxruntime can load.

Opset 17, IR version 9 (loads in onnxruntime >= 1.15).

Usage:  python3 tools/make_test_models.py [--out DIR] [--fixed-batch]
            [--names synctalk|dc|wct|coreml] [--all] [--no-check]
            [--broken KIND|all ...]
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
SEED = 20240917

NAME_SETS = {
    "synctalk": {"mel": "mel", "emb": "emb",
                 "input": "input", "audio": "audio", "output": "output"},
    "dc": {"mel": "mel_input", "emb": "features",
           "input": "input", "audio": "audio", "output": "output"},
    "wct": {"mel": "mel_spectrogram", "emb": "audio_features",
            "input": "input", "audio": "audio", "output": "output"},
    "coreml": {"mel": "mel_spectrogram", "emb": "var_242",
               "input": "visual_input", "audio": "audio_input",
               "output": "var_1677"},
}


class GraphBuilder:
    """Collects nodes and initializers; every tensor gets a stable name."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.count = 0

    def _name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, array, kind="const"):
        name = self._name(kind)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out],
                                           name=f"{op_type}_{self.count}", **attrs))
        return out

    def conv(self, x, cin, cout, kernel, stride=(1, 1), pad=(0, 0),
             gain=2.0, bias_mean=0.0, out=None):
        """Conv with He-style random weights (std = sqrt(gain / fan_in))."""
        kh, kw = kernel
        std = np.sqrt(gain / (cin * kh * kw))
        w = (self.rng.standard_normal((cout, cin, kh, kw)) * std).astype(np.float32)
        b = (bias_mean + 0.05 * self.rng.standard_normal(cout)).astype(np.float32)
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], out=out,
                       kernel_shape=[kh, kw], strides=list(stride),
                       pads=[pad[0], pad[1], pad[0], pad[1]])

    def resize_bilinear(self, x, factor):
        roi = self.const(np.zeros(0, np.float32), "roi")
        scales = self.const(np.array([1, 1, factor, factor], np.float32), "scales")
        return self.op("Resize", [x, roi, scales], mode="linear",
                       coordinate_transformation_mode="half_pixel")


def _model(builder, inputs, outputs, name):
    graph = helper.make_graph(builder.nodes, name, inputs, outputs, builder.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gst-talkinghead make_test_models.py",
                              ir_version=IR_VERSION)
    model.doc_string = ("Random-weight test model with the SyncTalk_2D tensor contract; "
                        "not trained, for tests only.")
    return model


def build_encoder(names, fixed_batch):
    b = GraphBuilder(np.random.default_rng(SEED))
    batch = 1 if fixed_batch else "batch"
    x = names["mel"]
    # Strides and pads chosen so that the windows tile each axis completely.
    x = b.op("Relu", [b.conv(x, 1, 16, (5, 3), (4, 1), (1, 1), bias_mean=0.1)])
    x = b.op("Relu", [b.conv(x, 16, 16, (3, 3), (2, 2), (1, 1), bias_mean=0.1)])
    x = b.op("Relu", [b.conv(x, 16, 16, (3, 3), (2, 2), (1, 1), bias_mean=0.1)])
    x = b.op("Relu", [b.conv(x, 16, 64, (5, 4), bias_mean=0.1)])
    x = b.conv(x, 64, 512, (1, 1), bias_mean=0.3)
    x = b.op("Flatten", [x], axis=1)
    b.op("Relu", [x], out=names["emb"])
    inputs = [helper.make_tensor_value_info(names["mel"], TensorProto.FLOAT,
                                            [batch, 1, 80, 16])]
    outputs = [helper.make_tensor_value_info(names["emb"], TensorProto.FLOAT,
                                             [batch, 512])]
    return _model(b, inputs, outputs, "test_audio_encoder")


def build_generator(names, fixed_batch, audio_first):
    b = GraphBuilder(np.random.default_rng(SEED + 1))
    batch = 1 if fixed_batch else "batch"
    img, aud = names["input"], names["audio"]

    # 6 * (reference - 0.5): Sigmoid of this is the reference crop with a mild
    # contrast change, so the generated mouth region looks like the template.
    ident_w = np.zeros((3, 6, 1, 1), np.float32)
    for c in range(3):
        ident_w[c, c, 0, 0] = 6.0
    identity = b.op("Conv", [img, b.const(ident_w, "w"),
                             b.const(np.full(3, -3.0, np.float32), "b")],
                    kernel_shape=[1, 1])

    v = b.op("Relu", [b.conv(img, 6, 8, (3, 3), (2, 2), (1, 1))])
    v = b.op("Relu", [b.conv(v, 8, 8, (3, 3), (2, 2), (1, 1))])

    # Audio features are O(1..10); scale so the audio term is O(1) in logits.
    a = b.op("Relu", [b.conv(aud, 32, 16, (3, 3), pad=(1, 1), gain=0.5)])
    a = b.conv(a, 16, 8, (1, 1), gain=1.0)
    a = b.resize_bilinear(a, 5.0)

    f = b.op("Relu", [b.op("Add", [v, a])])
    f = b.conv(f, 8, 3, (3, 3), pad=(1, 1), gain=0.25)
    # Centre each colour plane per image: no overall colour cast, only local
    # (content- and audio-dependent) shading.
    f = b.op("Sub", [f, b.op("ReduceMean", [f], axes=[2, 3], keepdims=1)])
    f = b.resize_bilinear(f, 4.0)
    b.op("Sigmoid", [b.op("Add", [identity, f])], out=names["output"])

    img_info = helper.make_tensor_value_info(img, TensorProto.FLOAT, [batch, 6, 320, 320])
    aud_info = helper.make_tensor_value_info(aud, TensorProto.FLOAT, [batch, 32, 16, 16])
    inputs = [aud_info, img_info] if audio_first else [img_info, aud_info]
    outputs = [helper.make_tensor_value_info(names["output"], TensorProto.FLOAT,
                                             [batch, 3, 320, 320])]
    return _model(b, inputs, outputs, "test_generator")


def write_variant(out_dir, names_key, fixed_batch):
    """Write one encoder/generator pair; returns the paths written."""
    names = NAME_SETS[names_key]
    b1 = "_b1" if fixed_batch else ""
    enc_suffix = "" if names_key == "synctalk" else f"_{names_key}"
    gen_is_standard = all(names[k] == NAME_SETS["synctalk"][k]
                          for k in ("input", "audio", "output"))
    gen_suffix = "" if gen_is_standard else f"_{names_key}"
    written = []
    for model, stem in ((build_encoder(names, fixed_batch), f"audio_encoder{enc_suffix}{b1}"),
                        (build_generator(names, fixed_batch, not gen_is_standard),
                         f"generator{gen_suffix}{b1}")):
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(out_dir, stem + ".onnx")
        onnx.save(model, path)
        written.append(path)
    return written


def _reroute_input(model, name, elem_type, dims, adapt):
    """Give graph input `name` a new type/shape; `adapt(raw, out)` returns the
    nodes that turn the new input `raw` back into what the graph consumed."""
    graph = model.graph
    inner = name + "_adapted"
    for node in graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    index = next(i for i, v in enumerate(graph.input) if v.name == name)
    graph.input[index].CopyFrom(helper.make_tensor_value_info(name, elem_type, dims))
    for node in reversed(adapt(name, inner)):
        graph.node.insert(0, node)


def _reroute_output(model, name, dims, adapt):
    """Like _reroute_input, for a float32 graph output."""
    graph = model.graph
    inner = name + "_raw"
    for node in graph.node:
        node.output[:] = [inner if o == name else o for o in node.output]
    index = next(i for i, v in enumerate(graph.output) if v.name == name)
    graph.output[index].CopyFrom(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    graph.node.extend(adapt(inner, name))


def _slice_last_axis(model, length):
    """Returns adapt(raw, out) for _reroute_*: keep the first `length` entries
    of the last axis, with the bounds stored as initializers in `model`."""
    def adapt(raw, out):
        bounds = []
        for stem, value in (("starts", 0), ("ends", length), ("axes", -1)):
            tensor = numpy_helper.from_array(np.array([value], np.int64), f"{out}_{stem}")
            model.graph.initializer.append(tensor)
            bounds.append(tensor.name)
        return [helper.make_node("Slice", [raw] + bounds, [out], name=f"Slice_{out}")]
    return adapt


def _unsqueeze_axis(model, axis):
    """Returns adapt(raw, out) for _reroute_input: insert a unit axis at `axis`."""
    def adapt(raw, out):
        tensor = numpy_helper.from_array(np.array([axis], np.int64), f"{out}_axes")
        model.graph.initializer.append(tensor)
        return [helper.make_node("Unsqueeze", [raw, tensor.name], [out], name=f"Unsqueeze_{out}")]
    return adapt


def _cast_to_float(raw, out):
    return [helper.make_node("Cast", [raw], [out], name=f"Cast_{out}", to=TensorProto.FLOAT)]


def build_broken(kind):
    names = NAME_SETS["synctalk"]
    if kind.startswith("generator-"):
        if kind == "generator-unnamed":
            odd = dict(names, input="x.1", audio="a.1", output="y")
            return build_generator(odd, False, True)
        model = build_generator(names, False, False)
        _reroute_input(model, "audio", TensorProto.FLOAT, ["batch", 32, 16, 32],
                       _slice_last_axis(model, 16))
        return model

    if kind == "input-name":
        model = build_encoder(dict(names, mel="spectrogram"), False)
        model.graph.node.append(helper.make_node("ReduceMean", ["emb"], ["emb_mean"],
                                                 name="ReduceMean_emb_mean",
                                                 axes=[1], keepdims=1))
        model.graph.output.append(
            helper.make_tensor_value_info("emb_mean", TensorProto.FLOAT, ["batch", 1]))
        return model
    model = build_encoder(names, False)
    if kind == "input-dims":
        _reroute_input(model, "mel", TensorProto.FLOAT, ["batch", 1, 80, 32],
                       _slice_last_axis(model, 16))
    elif kind == "input-rank":
        _reroute_input(model, "mel", TensorProto.FLOAT, ["batch", 80, 16],
                       _unsqueeze_axis(model, 1))
    elif kind in ("float16", "float64"):
        elem = TensorProto.FLOAT16 if kind == "float16" else TensorProto.DOUBLE
        _reroute_input(model, "mel", elem, ["batch", 1, 80, 16], _cast_to_float)
    elif kind == "output-dims":
        _reroute_output(model, "emb", ["batch", 256], _slice_last_axis(model, 256))
    elif kind == "batch2":
        for value in (model.graph.input[0], model.graph.output[0]):
            value.type.tensor_type.shape.dim[0].dim_value = 2
    return model


BROKEN_KINDS = ("input-name", "input-dims", "input-rank", "float16", "float64", "output-dims",
                "batch2", "generator-audio-dims", "generator-unnamed")


def write_broken(out_dir, kind):
    model = build_broken(kind)
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out_dir, f"broken_{kind}.onnx")
    onnx.save(model, path)
    return path


def _stats(name, x):
    return (f"{name} {list(x.shape)} min {x.min():.4f} max {x.max():.4f} "
            f"mean {x.mean():.4f} std {x.std():.4f}")


def _io_names(session):
    return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]


def self_check(encoder_path, generator_path, fixed_batch):
    """Run the pair in onnxruntime on random-ish data and print output stats."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    enc = ort.InferenceSession(encoder_path, opts, providers=["CPUExecutionProvider"])
    gen = ort.InferenceSession(generator_path, opts, providers=["CPUExecutionProvider"])
    (mel_name,), (emb_name,) = _io_names(enc)
    gen_inputs = {i.name: i.shape for i in gen.get_inputs()}
    img_name = next(n for n, s in gen_inputs.items() if s[1] == 6)
    aud_name = next(n for n, s in gen_inputs.items() if s[1] == 32)

    rng = np.random.default_rng(1)
    for batch in ((1,) if fixed_batch else (1, 4)):
        # Mel in the normalised [-4, 4] range, louder at low bins like speech.
        mel = np.clip(rng.normal(-1.0, 1.5, (batch * 16, 1, 80, 16))
                      + np.linspace(1.5, -1.5, 80)[None, None, :, None], -4, 4)
        mel = mel.astype(np.float32)
        if fixed_batch:
            emb = np.concatenate([enc.run(None, {mel_name: mel[i:i + 1]})[0]
                                  for i in range(len(mel))])
        else:
            emb = enc.run(None, {mel_name: mel})[0]
        audio = emb.reshape(batch, 16, 512).reshape(batch, 32, 16, 16)
        # Smooth image-like content: low-frequency noise upsampled, in [0, 1].
        coarse = rng.uniform(0.15, 0.85, (batch, 3, 10, 10))
        crop = np.kron(coarse, np.ones((32, 32)))
        crop = np.clip(crop + rng.normal(0, 0.03, crop.shape), 0, 1)
        masked = crop.copy()
        masked[:, :, 5:310, 5:315] = 0
        visual = np.concatenate([crop, masked], axis=1).astype(np.float32)
        out = gen.run(None, {img_name: visual, aud_name: audio.astype(np.float32)})[0]
        silent = gen.run(None, {img_name: visual,
                                aud_name: np.zeros_like(audio, np.float32)})[0]
        print(f"  batch {batch}:")
        print("    encoder   " + _stats(emb_name, emb))
        print("    generator " + _stats(gen.get_outputs()[0].name, out))
        print(f"    |output - reference crop| mean {np.abs(out - crop).mean():.4f}; "
              f"|output(audio) - output(zero audio)| mean "
              f"{np.abs(out - silent).mean():.4f} max {np.abs(out - silent).max():.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/test/", help="output directory")
    ap.add_argument("--fixed-batch", action="store_true",
                    help="fix the batch dimension to 1 (files get the _b1 suffix)")
    ap.add_argument("--names", choices=sorted(NAME_SETS), default="synctalk",
                    help="tensor-name set (files get a _<names> suffix unless synctalk)")
    ap.add_argument("--all", action="store_true",
                    help="write every name set, each with dynamic and fixed batch")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the onnxruntime self-check")
    ap.add_argument("--broken", action="append", choices=BROKEN_KINDS + ("all",),
                    metavar="KIND",
                    help="write broken_<KIND>.onnx, a model that breaks the contract "
                         "(see the module doc); repeatable; 'all' for every kind")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    broken = BROKEN_KINDS if "all" in (args.broken or []) else (args.broken or [])
    for kind in broken:
        path = write_broken(args.out, kind)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    if broken and not args.all:
        return
    variants = ([(n, fb) for n in NAME_SETS for fb in (False, True)] if args.all
                else [(args.names, args.fixed_batch)])
    reported = set()
    for names_key, fixed_batch in variants:
        enc_path, gen_path = write_variant(args.out, names_key, fixed_batch)
        for path in (enc_path, gen_path):
            if path not in reported:
                reported.add(path)
                print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        if not args.no_check:
            self_check(enc_path, gen_path, fixed_batch)


if __name__ == "__main__":
    main()
