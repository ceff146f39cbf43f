#!/usr/bin/env bash
# Drift check of a long live run: the bundled clip, looped with pauses in which nothing is
# written (tools/pace_pcm.py, real-time pace), through pipelines/tts-to-rtmp.sh into a local
# RTMP server (tools/rtmp_server.sh) that records it; then the A/V offset of the recording's
# first and last 10 s (tools/measure_mouth.py --audio-track) and their difference, the drift.
# Usage: tools/live_drift.sh MINUTES [WORK_DIR] [talkinghead properties...]
# WORK_DIR (default: a new temp dir) keeps the server's files, the recording (rec/drift.flv) and
# the measurements (first.json, last.json); PAUSE (s, default 2) is the pause between loops.
# Needs GST_PLUGIN_PATH to reach the plugin (the Makefile sets it to target/release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=$1
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/live-drift.XXXXXX")}
shift $(( $# < 2 ? $# : 2 ))
pause=${PAUSE:-2}
python=$root/.venv/bin/python
mkdir -p "$work"
work=$(realpath "$work")
clip=$root/models/demo/speech.wav
loops=$("$python" -c "import math, soundfile as sf; i = sf.info('$clip'); \
print(max(1, math.ceil(($minutes * 60 + $pause) / (i.frames / i.samplerate + $pause))))")
port=$("$python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")

"$root/tools/rtmp_server.sh" "$work" "$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
echo "publishing $loops loops of $clip with ${pause} s pauses to rtmp://127.0.0.1:$port/live/drift"
start=$(date +%s)
"$python" "$root/tools/pace_pcm.py" "$clip" --loops "$loops" --pause "$pause" |
  "$root/pipelines/tts-to-rtmp.sh" "rtmp://127.0.0.1:$port/live/drift" "$@"
echo "published in $(( $(date +%s) - start )) s"
sleep 1
kill "$server"
wait "$server" || true
trap - EXIT

rec=$work/rec/drift.flv
# (stream, end of its last packet) and video frames whose timestamp is off the 40 ms grid
ends=$(ffprobe -v error -show_entries packet=stream_index,pts_time,duration_time -of csv=p=0 "$rec" |
  awk -F, '{ e = $2 + $3; if (e > end[$1]) end[$1] = e;
             if ($1 == 0) { f = $2 * 25; if (f - int(f + 0.5) > 0.01 || int(f + 0.5) - f > 0.01) off++; n++ } }
           END { printf "video %.3f s (%d frames, %d off the 40 ms grid), audio %.3f s", end[0], n, off, end[1] }')
echo "recording $rec: $ends"
seconds=$(ffprobe -v error -select_streams v:0 -show_entries packet=pts_time -of csv=p=0 "$rec" | tail -1)
last=$("$python" -c "print(max(0.0, int(($seconds - 10) * 25) / 25))")
measure() {
  "$python" "$root/tools/measure_mouth.py" "$rec" --avatar "$root/models/demo" --audio-track \
    --from "$1" --seconds 10 --json > "$2"
}
measure 0 "$work/first.json"
measure "$last" "$work/last.json"
"$python" - "$work/first.json" "$work/last.json" "$last" <<'PY'
import json, sys
first, last = (json.load(open(p)) for p in sys.argv[1:3])
def show(name, r, at):
    offsets = [o["offset_frames"] for o in r["onsets"]]
    print(f"{name} 10 s (from {at:.2f} s): A/V lag {r['av_lag_frames']} frames "
          f"({r['av_lag_frames_fine']:.2f} between frames, r = {r['av_lag_r']:.3f}), "
          f"onset offsets {offsets} frames")
show("first", first, 0.0)
show("last ", last, float(sys.argv[3]))
drift = (last["av_lag_frames_fine"] - first["av_lag_frames_fine"]) * 40
print(f"drift (last - first lag): {drift:+.0f} ms")
PY
