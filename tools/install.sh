#!/bin/bash
# Installs or uninstalls the plugin (`make install`, `make uninstall`).
#
#   tools/install.sh install PLUGIN_DIR [DESTDIR]
#   tools/install.sh uninstall PLUGIN_DIR [DESTDIR]
#
# install puts target/release/libgsttalkinghead.so into PLUGIN_DIR, and the ONNX Runtime builds
# of the project's virtualenvs (.venv: onnxruntime; .venv-openvino: onnxruntime-openvino; .venv-gpu
# if there is one) into PLUGIN_DIR/../gst-talkinghead/<build>/, where the plugin looks for them:
# outside PLUGIN_DIR, which GStreamer scans for plugins. It records every file and folder it
# made in PLUGIN_DIR/../gst-talkinghead/installed, and uninstall removes exactly those. PLUGIN_DIR
# includes DESTDIR, if any; the record leaves it out, so that it holds for the files once they are
# copied into place.
set -euo pipefail

action=${1:?install or uninstall}
plugins=${2:?the plugin folder}
destdir=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
data="$(dirname "$plugins")/gst-talkinghead"
manifest="$data/installed"

# Makes folder $1 and its missing parents, recording each one made.
make_folder() {
    local missing=() folder=$1
    while [ ! -d "$folder" ]; do
        missing=("$folder" "${missing[@]}")
        folder=$(dirname "$folder")
    done
    for folder in "${missing[@]}"; do
        mkdir "$folder"
        made+=("$folder/")
    done
}

# Copies file $1 to $2 (a path), recording it.
put() {
    make_folder "$(dirname "$2")"
    cp "$1" "$2"
    made+=("$2")
}

case "$action" in
install)
    if [ -f "$manifest" ]; then
        "$0" uninstall "$plugins"
    fi
    made=()
    # DESTDIR is the caller's: made if need be, never recorded.
    [ -z "$destdir" ] || mkdir -p "$destdir"
    put "$root/target/release/libgsttalkinghead.so" "$plugins/libgsttalkinghead.so"
    for pair in .venv:onnxruntime .venv-openvino:onnxruntime-openvino .venv-gpu:onnxruntime-gpu; do
        venv=${pair%%:*} build=${pair#*:}
        for capi in "$root/$venv"/lib/python3*/site-packages/onnxruntime/capi; do
            [ -d "$capi" ] || continue
            for library in "$capi"/lib*.so*; do
                put "$library" "$data/$build/$(basename "$library")"
            done
            echo "ONNX Runtime from $venv: $data/$build"
        done
    done
    make_folder "$data"
    printf '%s\n' "${made[@]#"$destdir"}" >"$manifest"
    echo "Installed $plugins/libgsttalkinghead.so"
    ;;
uninstall)
    if [ ! -f "$manifest" ]; then
        echo "Nothing installed in $plugins ($manifest is missing)"
        exit 0
    fi
    mapfile -t made <"$manifest"
    made=("${made[@]/#/$destdir}")
    rm -f "$manifest"
    # Files first, then folders, deepest first, each only if nothing else is in it.
    for entry in "${made[@]}"; do
        [[ "$entry" == */ ]] || rm -f "$entry"
    done
    for ((i = ${#made[@]} - 1; i >= 0; i--)); do
        entry=${made[$i]}
        [[ "$entry" == */ ]] && rmdir "$entry" 2>/dev/null || true
    done
    echo "Uninstalled from $plugins"
    ;;
*)
    echo "usage: $0 install|uninstall PLUGIN_DIR" >&2
    exit 2
    ;;
esac
