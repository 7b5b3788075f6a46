#!/usr/bin/env bash
# End-to-end figures of BENCHMARKS.md, in one go, on this machine.
#
#   scripts/bench-e2e.sh [DURATION_SECONDS]      # default 10 (the open loop always runs 30 s)
#
# Builds the release binary and the load generator (in $CARGO_TARGET_DIR, default
# target/) and, for step 5, the kube-rs example, then starts `ci-pod-webhook serve
# --kube off` with a development certificate (logs to /dev/null) on 127.0.0.1:$PORT
# (default 28443; admin port $ADMIN_PORT, default 28080), and runs against it, printing the 1-minute load average before each:
#  1. loadgen, closed loop, 32 HTTP/1.1 TLS keep-alive connections, the ~20 KB review;
#  2. h2load --h1 (Debian's nghttp2-client), the same, if installed;
#  3. loadgen, HTTP/2, 4 connections x 8 streams, closed loop;
#  4. loadgen, open loop at 2,000 reviews/s for 30 s, with the server's RSS and its
#     /metrics latency histogram next to the load generator's;
#  5. for comparison, the kube-rs admission controller example as published
#     (scripts/kube-rs-example/, built in $CARGO_TARGET_DIR/kube-rs-example) on
#     127.0.0.1:$KUBE_RS_PORT (default 28444) with the same certificate, logs to /dev/null:
#     one review checked with curl (allowed, with its label patch), then step 2's h2load
#     command against it; prints both reviews/s (2xx answers per second) and the ratio.
#     Only if h2load is installed; KUBE_RS=0 skips it (and its build).
# The load generator shares the machine's cores with the server: with 2 cores, each
# figure is the throughput of the pair, not of the server alone.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-server.sh
. scripts/bench-server.sh

seconds=${1:-10}
port=${PORT:-28443}
admin=${ADMIN_PORT:-28080}
kube_rs_port=${KUBE_RS_PORT:-28444}
target=${CARGO_TARGET_DIR:-target}
kube_rs=${KUBE_RS:-1}
command -v h2load >/dev/null || kube_rs=0
cargo build --release --quiet --bin ci-pod-webhook --example loadgen
if [ "$kube_rs" != 0 ]; then
    cargo build --release --quiet --manifest-path scripts/kube-rs-example/Cargo.toml \
        --target-dir "$target/kube-rs-example"
fi
work=$(mktemp -d)
pid='' kube_rs_pid=''
trap 'kill $pid $kube_rs_pid 2>/dev/null || true; rm -rf "$work"' EXIT

start_server "$work"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"), ensure_ascii=False), end="")' \
    tests/fixtures/job-pod-review.json >"$work/review.json"

loadgen() {
    "$target/release/examples/loadgen" --url "https://127.0.0.1:$port/mutate" --ca "$work/ca.crt" "$@"
}
load() { echo; echo "== $1 ($(cut -d' ' -f1-3 /proc/loadavg) load average, $(nproc) cores)"; }
# h2load_run URL OUT: the h2load run of steps 2 and 5; its summary is kept in OUT.
h2load_run() {
    h2load --h1 -c 32 -D "$seconds" --warm-up-time 2 -H 'content-type: application/json' \
        -d "$work/review.json" "$1" | grep -E 'finished in|requests:|status codes|time for request' | tee "$2"
}
# Reviews answered 2xx per second in an h2load summary: its req/s (measured window only;
# "finished in" counts the warm-up too) times the share of 2xx answers.
per_second() {
    awk '/finished in/ { r = $4 } /^requests:/ { n = $2 } /status codes:/ { ok = $3 }
        END { printf "%.0f", n ? r * ok / n : 0 }' "$1"
}

load "loadgen: closed loop, 32 HTTP/1.1 connections"
loadgen -c 32 -d "${seconds}s" --server-pid "$pid"

if command -v h2load >/dev/null; then
    load "h2load --h1: closed loop, 32 HTTP/1.1 connections"
    h2load_run "https://127.0.0.1:$port/mutate" "$work/h2load-ours.txt"
fi

load "loadgen: closed loop, HTTP/2, 4 connections x 8 streams"
loadgen --http2 -c 4 --streams 8 -d "${seconds}s"

load "loadgen: open loop, 2,000 reviews/s for 30 s"
loadgen -c 32 --rate 2000 -d 30s --server-pid "$pid" --metrics-url "http://127.0.0.1:$admin/metrics"

if [ "$kube_rs" != 0 ]; then
    ADMISSION_PRIVATE_IP=127.0.0.1 ADMISSION_PORT=$kube_rs_port \
        ADMISSION_TLS_CRT="$work/tls.crt" ADMISSION_TLS_KEY="$work/tls.key" \
        "$target/kube-rs-example/release/kube-rs-admission-example" >/dev/null 2>&1 &
    kube_rs_pid=$!
    # It has no readiness endpoint: the first review it answers is the check.
    while :; do
        status=0
        answer=$(curl -s --http1.1 --cacert "$work/ca.crt" -H 'content-type: application/json' \
            --data-binary "@$work/review.json" "https://127.0.0.1:$kube_rs_port/mutate") || status=$?
        [ "$status" = 7 ] || break # 7: not listening yet
        kill -0 "$kube_rs_pid" 2>/dev/null || { echo "the kube-rs example exited (port $kube_rs_port in use?)" >&2; exit 1; }
        sleep 0.05
    done
    [ "$status" = 0 ] || { echo "curl could not get a review answered by the kube-rs example (curl exit $status)" >&2; exit 1; }
    # Allowed, the review's uid, and upstream's one patch: its label, the pod having labels.
    # kube-core writes the patch bytes as a JSON array of numbers (a Vec<u8> through serde;
    # kube-rs issue #1781), not base64 as ours; Go's JSON decoding reads both into a []byte.
    python3 -c '
import base64, json, sys
try:
    review, response = json.load(open(sys.argv[1])), json.loads(sys.argv[2])["response"]
    raw = response["patch"]
    patch = json.loads(bytes(raw) if isinstance(raw, list) else base64.b64decode(raw))
    want = [{"op": "add", "path": "/metadata/labels/admission", "value": "modified-by-admission-controller"}]
    ok = response["uid"] == review["request"]["uid"] and response["allowed"] is True and patch == want
except (ValueError, KeyError, TypeError):
    ok = False
if not ok:
    sys.exit("the kube-rs example answered the review wrongly: " + sys.argv[2][:500])
' "$work/review.json" "$answer"

    load "kube-rs admission example, h2load --h1: the same as step 2"
    h2load_run "https://127.0.0.1:$kube_rs_port/mutate" "$work/h2load-kube-rs.txt"
    ours=$(per_second "$work/h2load-ours.txt")
    theirs=$(per_second "$work/h2load-kube-rs.txt")
    echo
    echo "h2load --h1 -c 32, the same review: ci-pod-webhook $ours reviews/s (step 2)," \
        "kube-rs example $theirs reviews/s: $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.1f", a / b }')x"
fi
