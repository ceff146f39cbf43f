#!/usr/bin/env bash
# Publishes the talking head over a speech file to an RTMP server as a live stream: H.264
# (zerolatency, a key frame every 2 s) and AAC at 48 kHz in FLV. The sink syncs to the clock, so
# the server gets the stream at real time, like a live publisher's, with picture and sound muxed
# by their timestamps however fast the talking head renders.
# Usage: pipelines/file-to-rtmp.sh SPEECH_FILE rtmp://HOST[:PORT]/APP/STREAM [talkinghead properties...]
# Needs GST_PLUGIN_PATH to reach the plugin (the Makefile sets it to target/release).
set -euo pipefail
input=$1 url=$2
shift 2
exec gst-launch-1.0 -q \
  filesrc location="$input" ! decodebin ! tee name=audio \
  audio. ! queue ! audioconvert ! audioresample ! talkinghead "$@" ! queue ! videoconvert ! \
    x264enc tune=zerolatency speed-preset=faster key-int-max=50 ! h264parse ! queue ! \
    flvmux name=mux streamable=true ! rtmp2sink location="$url" \
  audio. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! mux.
