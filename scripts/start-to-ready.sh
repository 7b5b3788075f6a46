#!/usr/bin/env bash
# Start-to-ready time and idle memory of `ci-pod-webhook serve` (BENCHMARKS.md).
#
#   scripts/start-to-ready.sh [RUNS] [BINARY]     # defaults: 10 runs, target/release/ci-pod-webhook
#
# Each run starts the release binary with `--kube off` and a development certificate
# (generated at start, as with no flags), then polls the admin port's /readyz as fast as
# curl can (one request about every 2 ms) and prints the time from just before the
# process was started to the first HTTP 200, then the server's RSS (VmRSS) and peak RSS
# (VmHWM) 1 s after it became ready, with no load. Logs go to /dev/null. Ports $PORT and
# $ADMIN_PORT (default 38443 and 38080) on 127.0.0.1 must be free. Needs bash, curl and a release build
# (`cargo build --release`).
set -euo pipefail

runs=${1:-10}
binary=${2:-target/release/ci-pod-webhook}
port=${PORT:-38443}
admin=${ADMIN_PORT:-38080}
cert_dir=$(mktemp -d)
trap 'rm -rf "$cert_dir"' EXIT

rss() { awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

for run in $(seq "$runs"); do
    start=$(date +%s%N)
    "$binary" serve --kube off --cert-dir "$cert_dir" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >/dev/null 2>&1 &
    pid=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz")" = 200 ]; do
        kill -0 "$pid" 2>/dev/null || { echo "run $run: the server exited" >&2; exit 1; }
    done
    ready=$(date +%s%N)
    sleep 1
    echo "run $run: ready after $(( (ready - start) / 1000000 )) ms; idle RSS $(rss "$pid" VmRSS) MiB, peak $(rss "$pid" VmHWM) MiB"
    kill -TERM "$pid"
    wait "$pid" || true
done
