#!/usr/bin/env bash
# How fast the request path is when the core costs next to nothing (BENCHMARKS.md,
# "What the targets need").
#
#   scripts/bench-ceiling.sh [DURATION_SECONDS] [ROUNDS]     # default 10 s, 2 rounds
#
# Starts `ci-pod-webhook serve --kube off` as scripts/bench-e2e.sh does (ports $PORT,
# $ADMIN_PORT: 28443, 28080) and runs `h2load --h1 -c 32` (Debian's nghttp2-client)
# against it with three bodies, in turn, ROUNDS times:
#  a       the ~20 KB job pod review of bench-e2e.sh, mutated (the core's case a);
#  update  the same review as an UPDATE: skipped before its object is read (the core's
#          case f, ~1 µs), so the same bytes cross TLS and HTTP but the core does nothing;
#  small   the same review with a one-container pod (0.9 KB), skipped.
# Prints reviews/s (h2load's measured window) and the server's CPU per review (from
# /proc/PID/stat over warm-up and window, divided by reviews/s times their length).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-server.sh
. scripts/bench-server.sh

seconds=${1:-10}
rounds=${2:-2}
port=${PORT:-28443}
admin=${ADMIN_PORT:-28080}
target=${CARGO_TARGET_DIR:-target}
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet --bin ci-pod-webhook
work=$(mktemp -d)
pid=''
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

start_server "$work"
python3 - "$work" <<'PY'
import copy, json, sys
work = sys.argv[1]
review = json.load(open("tests/fixtures/job-pod-review.json"))
def write(obj, name):
    with open(f"{work}/{name}.json", "w") as f:
        f.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
write(review, "a")
update = copy.deepcopy(review)
update["request"]["operation"] = "UPDATE"
write(update, "update")
small = copy.deepcopy(review)
small["request"]["object"] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "small"},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
write(small, "small")
PY

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
    for body in a update small; do
        before=$(ticks)
        h2load --h1 -c 32 -D "$seconds" --warm-up-time 2 -H 'content-type: application/json' \
            -d "$work/$body.json" "https://127.0.0.1:$port/mutate" >"$work/out"
        after=$(ticks)
        awk -v body="$body" -v round="$round" -v bytes="$(stat -c %s "$work/$body.json")" \
            -v ticks=$((after - before)) -v hz="$hz" -v secs=$((seconds + 2)) \
            -v load="$(cut -d' ' -f1 /proc/loadavg)" '
            /finished in/ { r = $4 } /^requests:/ { n = $2 } /status codes:/ { ok = $3 }
            END {
                printf "round %s %-6s %6d bytes: %6.0f reviews/s, %d of %d 2xx, server CPU %3.0f µs per review, load %s\n",
                    round, body, bytes, r, ok, n, ticks / hz * 1e6 / (r * secs), load
            }' "$work/out"
    done
done
