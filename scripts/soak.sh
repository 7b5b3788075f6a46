#!/usr/bin/env bash
# Soak test: `ci-pod-webhook serve` (release build) under a steady open-loop rate of
# reviews for a long time, plus a trickle of fresh connections, with the server's RSS
# sampled every few seconds. Memory must not grow beyond noise; every review must be
# answered. BENCHMARKS.md ("Soak") records a run.
#
#   scripts/soak.sh [SECONDS=600] [RATE=500] [CONNECTIONS=8]
#
# Environment:
#   LOADGEN          the load generator binary (default: build examples/loadgen)
#   OUT              where the samples and logs go (default: a new temporary directory)
#   SAMPLE_SECONDS   RSS sampling interval (default 5)
#   CHURN_SECONDS    interval between fresh-connection reviews made with curl (default
#                    0.2; 0 turns the churn off)
#
# Exit status: 0 when every review was answered and RSS did not grow, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-600}
rate=${2:-500}
connections=${3:-8}
interval=${SAMPLE_SECONDS:-5}
churn=${CHURN_SECONDS:-0.2}
out=${OUT:-$(mktemp -d -t ci-pod-webhook-soak.XXXXXX)}
mkdir -p "$out"
review=tests/fixtures/job-pod-review.json

cargo build --release --quiet --bin ci-pod-webhook
loadgen=${LOADGEN:-}
if [[ -z $loadgen ]]; then
  cargo build --release --quiet --example loadgen
  loadgen=target/release/examples/loadgen
fi

# The server, on ephemeral ports, with its development certificate; JSON logs (one
# line per review, as in production) go to a file.
target/release/ci-pod-webhook serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --kube off --cert-dir "$out/certs" --log-format json >"$out/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" "${sampler:-}" "${churner:-}" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q '"listening"' "$out/serve.log" 2>/dev/null && break
  sleep 0.1
done
listening=$(grep -m1 '"listening"' "$out/serve.log")
webhook=$(sed -E 's/.*"webhook":"([^"]+)".*/\1/' <<<"$listening")
admin=$(sed -E 's/.*"admin":"([^"]+)".*/\1/' <<<"$listening")
port=${webhook##*:}
echo "server pid $server, webhook $webhook, admin $admin, output in $out"

# RSS every $interval seconds: elapsed seconds, VmRSS in KiB.
(
  SECONDS=0
  while kill -0 "$server" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || true)
    [[ -n $rss ]] && echo "$SECONDS,$rss"
    sleep "$interval"
  done
) >"$out/rss.csv" &
sampler=$!

# Fresh connections: one review each, new TLS handshake each time.
if [[ $churn != 0 ]]; then
  (
    while kill -0 "$server" 2>/dev/null; do
      code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$out/certs/ca.crt" \
        -H 'content-type: application/json' --data-binary @"$review" \
        "https://localhost:$port/mutate" || echo 000)
      echo "$code"
      sleep "$churn"
    done
  ) >"$out/churn.txt" &
  churner=$!
fi

"$loadgen" --url "https://localhost:$port/mutate" --ca "$out/certs/ca.crt" \
  --review "$review" --rate "$rate" -c "$connections" -d "${duration}s" --warmup 10s \
  --server-pid "$server" --metrics-url "http://$admin/metrics" --json \
  | tee "$out/loadgen.txt" || true

kill "$churner" 2>/dev/null || true
wait "$churner" 2>/dev/null || true
kill -TERM "$server"
wait "$server" || true
wait "$sampler" 2>/dev/null || true

python3 - "$out" "$duration" "$rate" "$connections" <<'EOF'
import json, sys
out, duration, rate, connections = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
samples = [tuple(float(x) for x in line.split(",")) for line in open(f"{out}/rss.csv") if "," in line]
result = json.loads(open(f"{out}/loadgen.txt").read().strip().splitlines()[-1])
churn = open(f"{out}/churn.txt").read().split() if __import__("os").path.exists(f"{out}/churn.txt") else []
churn_errors = sum(1 for c in churn if c != "200")
# The first 15 s are start-up and warm-up; compare the first and last minute after that.
steady = [(t, r) for t, r in samples if t >= 15]
first = [r for t, r in steady if t < 75]
last = [r for t, r in steady if t >= steady[-1][0] - 60]
mean = lambda xs: sum(xs) / len(xs)
peak = max(r for _, r in steady)
growth = mean(last) - mean(first)
print(f"samples: {len(samples)} every few seconds over {samples[-1][0]:.0f} s")
print(f"RSS KiB: start {steady[0][1]:.0f}, peak {peak:.0f}, end {steady[-1][1]:.0f}; "
      f"first-minute mean {mean(first):.0f}, last-minute mean {mean(last):.0f} ({growth:+.0f})")
print(f"loadgen: {result['ok']} answered, {result['errors']} errors, {result['throughput']:.1f}/s "
      f"(asked {rate}/s on {connections} connections), latency p50 {result['latency_us']['p50']} us, "
      f"p99 {result['latency_us']['p99']} us, max {result['latency_us']['max']} us")
print(f"churn: {len(churn)} reviews on fresh connections, {churn_errors} not 200")
# "Beyond noise": the allocator keeps a few MiB of arenas; a leak of even 64 bytes per
# review would add ~19 MiB over 300,000 reviews.
ok = result["errors"] == 0 and churn_errors == 0 and growth < 4096
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
