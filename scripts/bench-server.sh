# Sourced by scripts/bench-e2e.sh and scripts/bench-ceiling.sh, not run.
#
# start_server WORK: starts `$target/release/ci-pod-webhook serve --kube off` with a
# development certificate written to WORK (its CA in WORK/ca.crt), logs to /dev/null, on
# 127.0.0.1:$port (admin 127.0.0.1:$admin), sets $pid, and returns once it is ready.
start_server() {
    "$target/release/ci-pod-webhook" serve --kube off --cert-dir "$1" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >/dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "the server exited (ports $port, $admin in use?)" >&2; exit 1; }
        sleep 0.05
    done
}
