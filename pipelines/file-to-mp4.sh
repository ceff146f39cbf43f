#!/usr/bin/env bash
# Renders the talking head over a speech file into an MP4 (H.264 4:2:0 + AAC), reporting progress
# every second.
# Usage: pipelines/file-to-mp4.sh SPEECH_FILE OUTPUT.mp4 [talkinghead properties...]
# Needs GST_PLUGIN_PATH to reach the plugin (the Makefile sets it to target/release).
set -euo pipefail
input=$1 output=$2
shift 2
exec gst-launch-1.0 -q \
  filesrc location="$input" ! decodebin ! tee name=audio \
  audio. ! queue ! audioconvert ! audioresample ! talkinghead "$@" ! progressreport update-freq=1 ! videoconvert ! \
    x264enc speed-preset=faster ! h264parse ! queue ! mp4mux name=mux ! filesink location="$output" \
  audio. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! queue ! mux.
