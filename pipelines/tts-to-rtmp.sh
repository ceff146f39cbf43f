#!/usr/bin/env bash
# Publishes the talking head over a TTS-style live voice to an RTMP server: raw S16LE 16 kHz
# mono PCM arrives on stdin at real-time pace, with pauses in which nothing arrives at all (as
# from a TTS service between utterances; tools/pace_pcm.py feeds a file that way). Buffers are
# timestamped on arrival and mixed onto a live silent track, so the stream runs on at 25 fps
# with the avatar idle through the pauses. Video H.264 (zerolatency, a key frame every 2 s),
# audio AAC at 48 kHz, in FLV. When stdin ends, the stream ends cleanly (EOS).
# Usage: tools/pace_pcm.py SPEECH.wav --loops 3 --pause 2 | \
#          pipelines/tts-to-rtmp.sh rtmp://HOST[:PORT]/APP/STREAM [talkinghead properties...]
# Once the pipeline plays it says "tts-to-rtmp: playing, reading stdin" on stderr; what arrives
# on stdin before that is taken in a burst, and a burst loses all but its last chunk (see JITTER).
# JITTER (ns, default 200000000) is how late a chunk may arrive and still be mixed in place.
# MARGIN (ns, default 1000000000) is how much later than the latency the pipeline reports a video
# frame may reach the muxer and keep its timestamp (a late one is re-stamped, out of sync):
# headroom for rendering slower than planned on a loaded machine.
# Needs GST_PLUGIN_PATH to reach the plugin (the Makefile sets it to target/release).
set -euo pipefail
url=$1
shift
pcm="audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved"
fifo=$(mktemp -u "${TMPDIR:-/tmp}/tts-to-rtmp.XXXXXX")
log=$fifo.log
mkfifo "$fifo"
trap 'rm -f "$fifo" "$log"' EXIT
# the fifo is opened read-write, so the pipeline starts without waiting for a writer
gst-launch-1.0 -e \
  audiotestsrc is-live=true wave=silence samplesperbuffer=320 ! $pcm ! mix. \
  fdsrc fd=3 do-timestamp=true blocksize=640 ! \
    rawaudioparse use-sink-caps=false format=pcm pcm-format=s16le sample-rate=16000 num-channels=1 ! \
    queue ! mix. \
  audiomixer name=mix latency="${JITTER:-200000000}" output-buffer-duration=20000000 ! $pcm ! tee name=audio \
  audio. ! queue ! talkinghead "$@" ! queue ! videoconvert ! \
    x264enc tune=zerolatency speed-preset=faster key-int-max=50 ! h264parse ! queue ! \
    flvmux name=mux streamable=true latency="${MARGIN:-1000000000}" ! rtmp2sink location="$url" \
  audio. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! mux. \
  3<>"$fifo" >"$log" &
gst=$!
# audio is let in once the pipeline plays: chunks read before have no arrival time to go by
for _ in $(seq 300); do
  grep -q PLAYING "$log" 2>/dev/null && break
  kill -0 "$gst" 2>/dev/null || break
  sleep 0.05
done
echo "tts-to-rtmp: playing, reading stdin" >&2
# when stdin ends (or the pipeline stops reading), SIGINT makes gst-launch-1.0 -e send EOS, so
# the muxer and the server close the stream properly
cat >"$fifo" || true
kill -INT "$gst" 2>/dev/null || true
status=0
wait "$gst" || status=$?
grep -v -i -E '^(setting pipeline|pipeline is|redistribute latency|new clock|got eos|execution ended|freeing pipeline|handling interrupt|interrupt:|eos on shutdown|eos received|waiting for eos)' "$log" >&2 || true
exit "$status"
