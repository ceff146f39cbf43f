#!/usr/bin/env bash
# make_speech_clip.sh - make the bundled demo speech clip models/demo/speech.wav
#
# Three English phrases spoken by espeak-ng (voice en-us, 150 wpm), each
# resampled from espeak-ng's 22050 Hz to 16 kHz with GStreamer's audioresample,
# trimmed of espeak-ng's own leading/trailing silence and joined as
#
#   0.300 s silence | phrase 1 | 0.800 s silence | phrase 2 | 0.800 s silence |
#   phrase 3 | silence up to exactly 10.000 s
#
# Output: 16 kHz, mono, 16-bit PCM WAV, exactly 160000 samples (320044 bytes).
# At the end it prints the speech segments and the pauses (>= 0.5 s, found with
# a 20 ms RMS threshold of -40 dBFS).  The inserted silence is digital zero and
# no randomness is involved, so reruns give a byte-identical file for the same
# espeak-ng and GStreamer versions (made with espeak-ng 1.51, GStreamer 1.22).
#
# requires: espeak-ng, gst-launch-1.0 (gstreamer1.0-tools, -plugins-base,
#           -plugins-good), python3 (standard library only)
# usage:    tools/make_speech_clip.sh [OUTPUT.wav [PHRASE...]]   (default models/demo/speech.wav
#           and the three phrases below); VOICE=<espeak-ng voice> picks another voice, e.g.
#           VOICE=de tools/make_speech_clip.sh tests/data/other_voice.wav "Guten Tag." "Wie geht es?"
#           makes the clip the tests check the demo models on (a voice and language the demo
#           models were not tuned on).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-models/demo/speech.wav}
shift || true
VOICE=${VOICE:-en-us}
RATE=150

PHRASES=(
  "Hello, I am the demo avatar of talking head."
  "I turn your speech into a lip synced video."
  "Thanks for watching!"
)
if [ $# -gt 0 ]; then
  PHRASES=("$@")
fi

for tool in espeak-ng gst-launch-1.0 python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

parts=()
for i in "${!PHRASES[@]}"; do
  espeak-ng -v "$VOICE" -s "$RATE" -w "$tmp/raw$i.wav" "${PHRASES[$i]}"
  gst-launch-1.0 -q filesrc location="$tmp/raw$i.wav" ! wavparse ! audioconvert \
    ! audioresample ! audio/x-raw,rate=16000,channels=1,format=S16LE \
    ! wavenc ! filesink location="$tmp/p$i.wav"
  parts+=("$tmp/p$i.wav")
done

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "${parts[@]}" <<'EOF'
import array, math, sys, wave

RATE = 16000
TOTAL = 10 * RATE          # exactly 10.000 s
LEAD = int(0.3 * RATE)     # silence before the first phrase
GAP = int(0.8 * RATE)      # silence between phrases
TRIM_THRESH = 64           # |sample| below this counts as silence when trimming
KEEP = int(0.02 * RATE)    # keep 20 ms around the trimmed speech

out_path, parts = sys.argv[1], sys.argv[2:]

def read(path):
    with wave.open(path, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2), path
        a = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        a.byteswap()
    return a

def trim(a):
    loud = [i for i, v in enumerate(a) if abs(v) >= TRIM_THRESH]
    return a[max(0, loud[0] - KEEP):min(len(a), loud[-1] + 1 + KEEP)]

pcm = array.array("h", bytes(2 * LEAD))
for k, p in enumerate(parts):
    if k:
        pcm.extend(array.array("h", bytes(2 * GAP)))
    pcm.extend(trim(read(p)))
if len(pcm) > TOTAL:
    sys.exit("error: speech is %.3f s, longer than 10 s; raise RATE" % (len(pcm) / RATE))
pcm.extend(array.array("h", bytes(2 * (TOTAL - len(pcm)))))
assert len(pcm) == TOTAL

data = pcm[:]
if sys.byteorder == "big":
    data.byteswap()
with wave.open(out_path, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    w.writeframes(data.tobytes())

# segment into speech / silence with a 20 ms RMS threshold
WIN = int(0.02 * RATE)
THRESH = 32768 * 10 ** (-40 / 20)
flags = []
for s in range(0, TOTAL, WIN):
    blk = pcm[s:s + WIN]
    flags.append(math.sqrt(sum(v * v for v in blk) / len(blk)) >= THRESH)
segs, start = [], 0
for i in range(1, len(flags) + 1):
    if i == len(flags) or flags[i] != flags[start]:
        segs.append((flags[start], start * WIN / RATE, i * WIN / RATE))
        start = i
# short silences inside a phrase (< 0.5 s, not at the clip ends) count as speech
for k, (loud, a, b) in enumerate(segs):
    if not loud and 0 < k < len(segs) - 1 and b - a < 0.5:
        segs[k] = (True, a, b)
merged = []
for loud, a, b in segs:
    if merged and merged[-1][0] == loud:
        merged[-1] = (loud, merged[-1][1], b)
    else:
        merged.append((loud, a, b))
print("%s: %d samples, %.3f s, 16 kHz mono S16LE" % (out_path, TOTAL, TOTAL / RATE))
for loud, a, b in merged:
    kind = "speech" if loud else ("pause " if b - a >= 0.5 else "silence")
    print("  %s %6.3f - %6.3f s  (%.3f s)" % (kind, a, b, b - a))
EOF
