#!/usr/bin/env bash
# Renders the talking head speaking TEXT into an MP4 (H.264 4:2:0 + AAC): espeak (Debian's
# gstreamer1.0-espeak) makes the voice, the element the video.
# Usage: pipelines/text-to-mp4.sh "TEXT" OUTPUT.mp4 [talkinghead properties...]
# Needs GST_PLUGIN_PATH to reach the plugin unless it is installed (make install).
set -euo pipefail
text=$1 output=$2
shift 2
exec gst-launch-1.0 -q \
  espeak text="$text" ! tee name=audio \
  audio. ! queue ! audioconvert ! audioresample ! talkinghead "$@" ! videoconvert ! \
    x264enc speed-preset=faster ! h264parse ! queue ! mp4mux name=mux ! filesink location="$output" \
  audio. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! queue ! mux.
