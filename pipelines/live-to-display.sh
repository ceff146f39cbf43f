#!/usr/bin/env bash
# Shows the talking head over a live voice in a window: the default audio input (a microphone;
# autoaudiosrc) through the element to the default video output (autovideosink).
# SRC and SINK replace the source and the sink with other gst-launch-1.0 fragments, e.g.
#   SRC="audiotestsrc is-live=true wave=ticks" SINK="fakesink sync=true" pipelines/live-to-display.sh
# Usage: pipelines/live-to-display.sh [talkinghead properties...]   (Ctrl-C stops it)
# Needs GST_PLUGIN_PATH to reach the plugin (the Makefile sets it to target/release).
set -euo pipefail
set -f  # SRC and SINK are split into words, never globbed
exec gst-launch-1.0 -q -e \
  ${SRC:-autoaudiosrc} ! queue ! audioconvert ! audioresample ! talkinghead "$@" ! \
  videoconvert ! ${SINK:-autovideosink}
