# Set-up, build and checks for gst-talkinghead. `make demo` and `make test` install whatever is
# missing first (Debian packages, the Python tools' virtualenv), so each works on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := demo

APT_PACKAGES := pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	gstreamer1.0-plugins-base-apps libturbojpeg0-dev python3-venv ffmpeg \
	nginx libnginx-mod-rtmp gstreamer1.0-espeak \
	gstreamer1.0-nice libgstreamer-plugins-bad1.0-dev chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

VENV := .venv
# ONNX Runtime with OpenVINO (execution-provider=openvino): a virtualenv of its own, as the
# onnxruntime and onnxruntime-openvino packages are both the Python module `onnxruntime`. Only its
# shared libraries are used, so its Python dependencies are left out.
OPENVINO_VENV := .venv-openvino
ORT_OPENVINO_VERSION := 1.24.1
# An ONNX Runtime older than the bindings need (>= 1.23), for the test that refuses it by name.
ORT_OLD_VERSION := 1.20.1
ORT_OLD := target/ort-old/libonnxruntime.so.$(ORT_OLD_VERSION)
# Our own registry, so a stale or blacklisted entry from another build can never hide the plugin.
export GST_PLUGIN_PATH := $(CURDIR)/target/release
export GST_REGISTRY := $(CURDIR)/target/gst-registry.bin

.PHONY: demo test bench deps build lint clean live-drift fuzz fuzz-tool leakcheck soak install uninstall \
	webrtc train-model quantize

# `make install`: for this user, into ~/.local/share/gstreamer-1.0/plugins (or under
# $XDG_DATA_HOME); with PREFIX or DESTDIR set, into the plugin folder pkg-config names for PREFIX
# (default /usr), under DESTDIR. ONNX Runtime goes beside it, into ../gst-talkinghead/
# (tools/install.sh).
ifeq ($(origin PREFIX)$(origin DESTDIR),undefinedundefined)
PLUGIN_DIR ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/gstreamer-1.0/plugins
else
PREFIX ?= /usr
PLUGIN_DIR ?= $(DESTDIR)$(shell pkg-config --define-variable=prefix=$(PREFIX) --variable=pluginsdir gstreamer-1.0)
endif

FUZZ_SECONDS ?= 60
# Seconds each fuzz target runs in `make test`.
FUZZ_SMOKE_SECONDS ?= 5
SOAK_MINUTES ?= 60

demo: deps build
	@mkdir -p out
	@start=$$(date +%s.%N); \
	pipelines/file-to-mp4.sh models/demo/speech.wav out/demo.mp4; \
	end=$$(date +%s.%N); \
	ffprobe -v error -select_streams v:0 -count_frames \
		-show_entries stream=duration,nb_read_frames -of csv=p=0 out/demo.mp4 | \
	awk -F, -v start=$$start -v end=$$end -v file=$(CURDIR)/out/demo.mp4 '{ t = end - start; \
		printf "%s: %d frames, %.2f s, rendered in %.1f s (%.1fx real time)\n", file, $$2, $$1, t, $$1 / t }'

# A/V drift of a long live run (see README, Live streaming): MINUTES of the bundled clip, looped
# with pauses, at real time through pipelines/tts-to-rtmp.sh into a local RTMP server.
MINUTES ?= 20
live-drift: deps build
	tools/live_drift.sh $(MINUTES) out/live-drift

test: deps build fuzz-tool
	G_DEBUG=fatal_warnings cargo test --release --quiet --features fault-injection
	tools/fuzz.sh $(FUZZ_SMOKE_SECONDS)
	$(MAKE) --no-print-directory lint

# Each fuzz target for FUZZ_SECONDS seconds (see fuzz/).
fuzz: deps fuzz-tool
	tools/fuzz.sh $(FUZZ_SECONDS)

fuzz-tool:
	@command -v cargo-fuzz >/dev/null || { \
		echo "Installing cargo-fuzz (about a minute)"; cargo install cargo-fuzz --locked --quiet; }

# A short pipeline under valgrind: no definite leak from our code.
leakcheck: deps build
	@command -v valgrind >/dev/null || $(SUDO) apt-get install -y -qq --no-install-recommends valgrind
	tools/leakcheck.sh

# An architecture-exact SyncTalk_2D generator (unet_328 "ave"), trained on this CPU by distilling
# the demo generator on the demo avatar, its last 20 minutes quantization-aware
# (tools/train_generator.py; TRAIN_MINUTES, TRAIN_ARGS, e.g. --resume), into
# target/trained-models/ with the audio encoder beside it: a real-weight model to measure INT8 on.
# PyTorch comes from PyPI into its own virtualenv (several GB with its CUDA wheels).
TRAIN_VENV := .venv-train
TRAINED := target/trained-models
TRAIN_MINUTES ?= 60
train-model: $(TRAIN_VENV)/.done
	$(TRAIN_VENV)/bin/python tools/train_generator.py --minutes $(TRAIN_MINUTES) \
		--out $(TRAINED)/generator.onnx $(TRAIN_ARGS)

$(TRAIN_VENV)/.done: tools/requirements-train.txt | target/.apt-done
	@echo "Setting up PyTorch in $(TRAIN_VENV) (several GB)"
	@python3 -m venv $(TRAIN_VENV)
	@$(TRAIN_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-train.txt
	@touch $@

$(TRAINED)/generator.onnx: | $(TRAIN_VENV)/.done
	$(MAKE) --no-print-directory train-model

# The INT8 version of the trained generator, with the quantizer's report beside it: as few
# layers kept in float as pass the gate.
$(TRAINED)/generator_int8.onnx: $(TRAINED)/generator.onnx | $(VENV)/.done
	$(VENV)/bin/python tools/quantize.py --generator $< \
		--audio-encoder $(TRAINED)/audio_encoder.onnx --avatar models/demo --out $@ \
		--keep-fp32 auto | tee $(TRAINED)/generator_int8.txt

# An INT8 generator made from yours (tools/quantize.py), refused under the quality gate:
#   make quantize GENERATOR=… AUDIO_ENCODER=… AVATAR=… [AUDIO=…] [OUT=…] [QUANTIZE_ARGS=…]
# QUANTIZE_ARGS: --gate DB (35), --keep-fp32 auto|N, --force, ... Without GENERATOR: the model of
# make train-model, on the demo avatar.
GENERATOR ?= $(TRAINED)/generator.onnx
AUDIO_ENCODER ?= $(TRAINED)/audio_encoder.onnx
AVATAR ?= models/demo
quantize: $(VENV)/.done
	$(VENV)/bin/python tools/quantize.py --generator "$(GENERATOR)" \
		--audio-encoder "$(AUDIO_ENCODER)" --avatar "$(AVATAR)" \
		$(if $(AUDIO),--audio "$(AUDIO)") $(if $(OUT),--out "$(OUT)") $(QUANTIZE_ARGS)

# The talking head live in a browser (examples/webrtc): open the address it prints. ARGS: its
# options and talkinghead properties, e.g. ARGS='--text "Hello" --address 0.0.0.0'.
webrtc: deps
	cargo run --release --quiet --example webrtc -- $(ARGS)

# SOAK_MINUTES of speech through the element; RSS every minute of audio into target/soak/rss.tsv.
soak: deps
	SOAK_MINUTES=$(SOAK_MINUTES) cargo run --release --quiet --example soak

# Throughput table (README, *Performance*): prints it and writes target/bench/throughput.md. Its
# INT8 rows need the trained model (made once: an hour) and the INT8 one made of it.
bench: deps build $(TRAINED)/generator_int8.onnx
	@test -f target/bench-models/generator.onnx || $(VENV)/bin/python tools/make_synctalk_models.py
	@test -f target/bench-avatar/landmarks/99.lms || $(VENV)/bin/python tools/make_bench_avatar.py
	cargo bench --quiet --bench throughput

install: deps build
	tools/install.sh install "$(PLUGIN_DIR)" "$(DESTDIR)"

uninstall:
	tools/install.sh uninstall "$(PLUGIN_DIR)" "$(DESTDIR)"

lint:
	cargo fmt --all -- --check
	cargo clippy --release --quiet --all-targets --features fault-injection -- -D warnings

build:
	@cargo build --release --quiet

deps: target/.apt-done $(VENV)/.done $(OPENVINO_VENV)/.done $(ORT_OLD)

target/.apt-done: Makefile
	@command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p target && touch $@

$(VENV)/.done: requirements.txt | target/.apt-done
	@echo "Setting up the Python virtualenv in $(VENV)"
	@python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(OPENVINO_VENV)/.done: Makefile | target/.apt-done
	@echo "Setting up ONNX Runtime with OpenVINO in $(OPENVINO_VENV)"
	@python3 -m venv $(OPENVINO_VENV)
	@$(OPENVINO_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps \
		onnxruntime-openvino==$(ORT_OPENVINO_VERSION)
	@touch $@

$(ORT_OLD): | $(VENV)/.done
	@echo "Fetching onnxruntime $(ORT_OLD_VERSION) for the too-old-library test"
	@rm -rf target/ort-old.tmp && mkdir -p target/ort-old.tmp target/ort-old
	@$(VENV)/bin/pip download --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: onnxruntime==$(ORT_OLD_VERSION) -d target/ort-old.tmp
	@$(VENV)/bin/python -c 'import glob, sys, zipfile; \
		wheel = zipfile.ZipFile(glob.glob("target/ort-old.tmp/*.whl")[0]); \
		open(sys.argv[1], "wb").write(wheel.read("onnxruntime/capi/" + sys.argv[1].split("/")[-1]))' $@
	@rm -rf target/ort-old.tmp

clean:
	cargo clean
	rm -rf out $(VENV) $(OPENVINO_VENV) $(TRAIN_VENV) fuzz/target
