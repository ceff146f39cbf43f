#!/usr/bin/env bash
# Runs a short pipeline through talkinghead (built-in avatar and demo models, so ONNX Runtime,
# the feature stream, the synthesis threads and the buffer pool all run) under
# `valgrind --leak-check=full`, then counts the "definitely lost" blocks whose allocation stack
# passes through our plugin. Prints valgrind's leak summary and that count; fails unless it is 0.
# Needs the plugin built in target/release (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${LEAK_SECONDS:-2}
out=target/leakcheck
mkdir -p "$out"
log=$out/valgrind.log
export GST_PLUGIN_PATH=$PWD/target/release GST_REGISTRY=$PWD/$out/registry.bin
# Plain malloc for GLib, and the registry written before valgrind runs, so the scan is not
# part of the check.
export G_SLICE=always-malloc G_DEBUG=gc-friendly
gst-inspect-1.0 talkinghead >/dev/null
suppressions=()
for supp in /usr/share/glib-2.0/valgrind/glib.supp /usr/share/gstreamer-1.0/valgrind/*.supp; do
    [ -e "$supp" ] && suppressions+=("--suppressions=$supp")
done
start=$(date +%s)
valgrind --leak-check=full --show-leak-kinds=definite --num-callers=50 \
    "${suppressions[@]}" --log-file="$log" \
    gst-launch-1.0 -q audiotestsrc wave=sine freq=220 num-buffers=$((seconds * 10)) \
    samplesperbuffer=1600 ! audio/x-raw,rate=16000,channels=1 ! talkinghead ! \
    videoconvert ! fakesink
end=$(date +%s)
grep -E "definitely lost:|indirectly lost:|possibly lost:|still reachable:|ERROR SUMMARY" "$log" |
    sed 's/^==[0-9]*== *//'
ours=$(awk '
    /are definitely lost in loss record/ { inrec = 1; hit = 0; next }
    inrec && /(gsttalkinghead|libgsttalkinghead)/ { hit = 1 }
    inrec && /^==[0-9]+== *$/ { if (hit) n++; inrec = 0 }
    END { print n + 0 }' "$log")
echo "leakcheck: $seconds s of audio under valgrind in $((end - start)) s; definitely lost from our" \
    "code: $ours loss records (full log: $log)"
[ "$ours" = 0 ]
