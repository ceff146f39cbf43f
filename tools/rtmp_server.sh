#!/usr/bin/env bash
# Runs a local RTMP server in the foreground: Debian's nginx with libnginx-mod-rtmp, all its
# files (configuration, logs, pid, recordings) under DIR, listening on 127.0.0.1:PORT only.
# Publish to rtmp://127.0.0.1:PORT/live/NAME; each stream is recorded to DIR/NAME.flv, complete
# once its publisher disconnects. Stop it with SIGTERM or SIGINT (Ctrl-C).
# Usage: tools/rtmp_server.sh DIR PORT
set -euo pipefail
dir=$(realpath "$1") port=$2
module=${NGINX_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}
[ -f "$module" ] || { echo "$module is missing: install libnginx-mod-rtmp (make deps)" >&2; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is missing: install nginx (make deps)" >&2; exit 1; }
mkdir -p "$dir/rec"
cat > "$dir/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 64; }
rtmp {
    server {
        listen 127.0.0.1:$port;
        chunk_size 4096;
        application live {
            live on;
            record all;
            record_path $dir/rec;
            record_unique off;
        }
    }
}
CONF
exec "$nginx" -p "$dir" -c "$dir/nginx.conf"
