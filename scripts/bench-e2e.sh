#!/usr/bin/env bash
# End-to-end figures of BENCHMARKS.md, in one go, on this machine.
#
#   scripts/bench-e2e.sh [DURATION_SECONDS]      # default 10 (the open loop always runs 30 s)
#
# Builds the release binary and the load generator, starts `ci-pod-webhook serve
# --kube off` with a development certificate (logs to /dev/null) on 127.0.0.1:$PORT
# (default 28443; admin port $ADMIN_PORT, default 28080), and runs against it, printing the 1-minute load average before each:
#  1. loadgen, closed loop, 32 HTTP/1.1 TLS keep-alive connections, the ~20 KB review;
#  2. h2load --h1 (Debian's nghttp2-client), the same, if installed;
#  3. loadgen, HTTP/2, 4 connections x 8 streams, closed loop;
#  4. loadgen, open loop at 2,000 reviews/s for 30 s, with the server's RSS and its
#     /metrics latency histogram next to the load generator's.
# The load generator shares the machine's cores with the server: with 2 cores, each
# figure is the throughput of the pair, not of the server alone.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
port=${PORT:-28443}
admin=${ADMIN_PORT:-28080}
cargo build --release --quiet --bin ci-pod-webhook --example loadgen
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

target/release/ci-pod-webhook serve --kube off --cert-dir "$work" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >/dev/null 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "the server exited (ports $port, $admin in use?)" >&2; exit 1; }
    sleep 0.05
done
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"), ensure_ascii=False), end="")' \
    tests/fixtures/job-pod-review.json >"$work/review.json"

loadgen() {
    target/release/examples/loadgen --url "https://127.0.0.1:$port/mutate" --ca "$work/ca.crt" "$@"
}
load() { echo; echo "== $1 ($(cut -d' ' -f1-3 /proc/loadavg) load average, $(nproc) cores)"; }

load "loadgen: closed loop, 32 HTTP/1.1 connections"
loadgen -c 32 -d "${seconds}s" --server-pid "$pid"

if command -v h2load >/dev/null; then
    load "h2load --h1: closed loop, 32 HTTP/1.1 connections"
    h2load --h1 -c 32 -D "$seconds" --warm-up-time 2 -H 'content-type: application/json' \
        -d "$work/review.json" "https://127.0.0.1:$port/mutate" | grep -E 'finished in|requests:|status codes|time for request'
fi

load "loadgen: closed loop, HTTP/2, 4 connections x 8 streams"
loadgen --http2 -c 4 --streams 8 -d "${seconds}s"

load "loadgen: open loop, 2,000 reviews/s for 30 s"
loadgen -c 32 --rate 2000 -d 30s --server-pid "$pid" --metrics-url "http://127.0.0.1:$admin/metrics"
