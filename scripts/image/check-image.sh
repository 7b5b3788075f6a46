#!/usr/bin/env bash
# shellcheck disable=SC2154  # the Deployment's values are assigned by the eval below
# Checks an image of ci-pod-webhook as manifests/base's Deployment runs it, with podman.
# What the Deployment asks is read from the rendered manifests (`kubectl kustomize
# manifests/base`), not copied here: its container's environment (the namespace from
# its fieldRef), user, group and fsGroup, read-only root (no tmpfs either), dropped
# capabilities, no privilege escalation, memory limit, volume mounts with their
# defaultMode, probes, ports and the grace period its preStop sleep leaves. Each
# container gets a network namespace of its own (--network none: loopback only), so it
# listens where the Deployment says (0.0.0.0:8443 and :8080) and the checks reach it
# through nsenter. The Secret and ConfigMap volumes are laid out as the kubelet writes
# them (a `..data` symlink to a timestamped directory, each key a symlink through it,
# files owned by root and the fsGroup).
#
# Checked: the image config (numeric user, entrypoint `serve`, the Deployment's ports
# exposed, no command in the Deployment overriding it); Ready on the readiness probe,
# live on the liveness probe; /mutate over TLS with a CA from `certs`; a policy change
# and an invalid policy through a `..data` swap (the last good kept); a certificate swap;
# SIGTERM (drained, exit 0 within terminationGracePeriodSeconds less the preStop sleep);
# and one more container with the variables the kubelet sets in a pod but no
# ServiceAccount token: not Ready, saying why.
#
#   scripts/image/check-image.sh IMAGE
#
# scripts/build-image.sh runs it with its own image store; alone it uses podman's
# default one (PODMAN="podman --root …" to choose). Needs root, kubectl, python3 with
# PyYAML, curl and nsenter.
set -euo pipefail
image=${1:?usage: check-image.sh IMAGE}
repo=$(cd "$(dirname "$0")/../.." && pwd)
pm() { ${PODMAN:-podman} "$@"; }
names=()
fail() {
  echo "  ✘ $*" >&2
  # What the container said last, when there is one.
  if [ ${#names[@]} -gt 0 ]; then pm logs --tail 8 "${names[-1]}" 2>&1 | sed 's/^/    | /' >&2; fi
  exit 1
}
ok() { echo "  ✔ $*"; }

work=$(mktemp -d)
main=ci-pod-webhook-check pod=ci-pod-webhook-check-in-pod
cleanup() {
  for n in "${names[@]}"; do pm rm -f "$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- what the Deployment asks, as shell variables
kubectl kustomize "$repo/manifests/base" > "$work/base.yaml"
eval "$(python3 - "$work/base.yaml" "$work/vol" <<'PY'
import shlex, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
vol_root = sys.argv[2]
dep = next(d for d in docs if d["kind"] == "Deployment")
spec = dep["spec"]["template"]["spec"]
(c,) = spec["containers"]
pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
def die(msg):
    sys.exit(f"  ✘ manifests/base's Deployment: {msg}")
if c.get("command") or c.get("args"):
    die("sets command/args; this check runs the image's entrypoint")
uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
fs_group = pod_sc.get("fsGroup", gid)
args = ["--user", f"{uid}:{gid}", "--group-add", str(fs_group)]
if sc.get("readOnlyRootFilesystem"):
    args += ["--read-only", "--read-only-tmpfs=false"]
for cap in sc.get("capabilities", {}).get("drop", []):
    args += ["--cap-drop", cap]
if sc.get("allowPrivilegeEscalation") is False:
    args += ["--security-opt", "no-new-privileges"]
# seccompProfile RuntimeDefault: podman applies its default profile unless told not to.
memory = c.get("resources", {}).get("limits", {}).get("memory")
if memory:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    args += ["--memory", next((memory[:-2] + u for s, u in units.items() if memory.endswith(s)), memory)]
env = {}
for e in c.get("env", []):
    if "value" in e:
        env[e["name"]] = e["value"]
    elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
        env[e["name"]] = dep["metadata"]["namespace"]
    else:
        die(f"env {e['name']}: no value this check knows how to give")
for k, v in env.items():
    args += ["-e", f"{k}={v}"]
volumes = {v["name"]: v for v in spec.get("volumes", [])}
out = {}
for m in c.get("volumeMounts", []):
    v = volumes[m["name"]]
    if not m.get("readOnly") or m.get("subPath"):
        die(f"volume {m['name']}: expected a whole-directory read-only mount")
    args += ["-v", f"{vol_root}/{m['name']}:{m['mountPath']}:ro"]
    kind = "secret" if "secret" in v else "configMap" if "configMap" in v else die(f"volume {m['name']}")
    out[f"{kind}_vol"] = m["name"]
    out[f"{kind}_mount"] = m["mountPath"]
    out[f"{kind}_mode"] = "%o" % v[kind].get("defaultMode", 0o644)
def file_in(var, kind):
    path = env[var]
    if path.rsplit("/", 1)[0] != out[f"{kind}_mount"]:
        die(f"{var}={path} is not in the {kind} volume mounted at {out[kind + '_mount']}")
    return path.rsplit("/", 1)[1]
out["cert_key"] = file_in("CI_POD_WEBHOOK_TLS_CERT", "secret")
out["key_key"] = file_in("CI_POD_WEBHOOK_TLS_KEY", "secret")
out["policy_key"] = file_in("CI_POD_WEBHOOK_POLICY", "configMap")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
out["container_ports"] = " ".join(f"{p}/tcp" for p in sorted(ports.values()))
out["https_port"] = ports["https"]
out["admin_port"] = ports["admin"]
for probe in ("readiness", "liveness"):
    get = c[f"{probe}Probe"]["httpGet"]
    out[f"{probe}_path"] = get["path"]
    out[f"{probe}_port"] = ports.get(get["port"], get["port"])
pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
out["stop_timeout"] = spec.get("terminationGracePeriodSeconds", 30) - pre_stop
out["deployment_image"] = c["image"]
out["fs_group"] = fs_group
out["run_as"] = f"{uid}:{gid}"
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
print("run_args=(" + " ".join(shlex.quote(a) for a in args) + ")")
PY
)"

# ---- the image's config
config=$(pm image inspect --format json "$image")
python3 - "$config" "$run_as" "$container_ports" <<'PY' || exit 1
import json, sys
c = json.loads(sys.argv[1])[0]["Config"]
run_as, ports = sys.argv[2], sys.argv[3].split()
want = {"User": run_as, "Entrypoint": ["/ci-pod-webhook", "serve"]}
bad = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
missing = [p for p in ports if p not in c.get("ExposedPorts", {})]
if bad or missing:
    sys.exit(f"  ✘ image config {bad}, ports {missing} not exposed; expected {want}, ports {ports}")
print(f"  ✔ config: user {c['User']}, entrypoint {c['Entrypoint']}, ports {sorted(c['ExposedPorts'])}, "
      f"version label {c.get('Labels', {}).get('org.opencontainers.image.version')}")
PY
size=$(pm image inspect --format '{{.Size}}' "$image")
ok "size $((size / 1024 / 1024)) MiB ($size bytes, uncompressed)"
echo "    (the Deployment asks for $deployment_image: docs/deploy.md says how to name it)"

cli() { # the image's own binary, as root, with $work mounted at /w
  pm run --rm --network none --user 0:0 --entrypoint /ci-pod-webhook -v "$work:/w" "$image" "$@"
}

# A Secret or ConfigMap volume as the kubelet writes it. project DIR MODE KEY=FILE…
project() {
  local dir=$1 mode=$2; shift 2
  local stamp
  stamp="..$(date +%Y_%m_%d_%H_%M_%S.%N)"
  mkdir -p "$dir/$stamp"
  local kv
  for kv in "$@"; do install -m "$mode" -o 0 -g "$fs_group" "${kv#*=}" "$dir/$stamp/${kv%%=*}"; done
  local old
  old=$(readlink "$dir/..data" 2>/dev/null || true)
  ln -sfn "$stamp" "$dir/..data_tmp"
  mv -T "$dir/..data_tmp" "$dir/..data"
  for kv in "$@"; do [ -L "$dir/${kv%%=*}" ] || ln -s "..data/${kv%%=*}" "$dir/${kv%%=*}"; done
  if [ -n "$old" ]; then rm -rf "${dir:?}/$old"; fi
}
tls() { # tls CERTS_DIR: the Secret's keys, as cert-manager and the self-managed overlay write them
  project "$work/vol/$secret_vol" "$secret_mode" \
    "$cert_key=$1/tls.crt" "$key_key=$1/tls.key" ca.crt="$1/ca.crt"
}
policy() { project "$work/vol/$configMap_vol" "$configMap_mode" "$policy_key=$work/src/$1"; }

mkdir -p "$work/certs" "$work/certs2" "$work/src"
cli certs --out /w/certs --ip 127.0.0.1 >/dev/null
cli certs --out /w/certs2 --ip 127.0.0.1 >/dev/null
cp "$repo/manifests/base/policy.yaml" "$work/src/policy.yaml"
# A valid change: another hash, nothing else.
{ cat "$repo/manifests/base/policy.yaml"; echo "# changed by check-image.sh"; } > "$work/src/changed.yaml"
printf 'prefix: [\n' > "$work/src/invalid.yaml"
hash_of() { cli check-policy "/w/src/$1" | sed -n 's/.*OK (hash \([0-9a-f]*\),.*/\1/p'; }
first=$(hash_of policy.yaml)
changed=$(hash_of changed.yaml)
[ -n "$first" ] && [ -n "$changed" ] && [ "$first" != "$changed" ] || fail "check-policy hashes: '$first' '$changed'"
tls "$work/certs"
policy policy.yaml

run() { # run NAME [podman args…]: the Deployment's container
  local name=$1; shift
  names+=("$name")
  pm run -d --name "$name" --network none "${run_args[@]}" "$@" "$image" >/dev/null
}
# inside NAME COMMAND…: run on the host in NAME's network namespace (where its ports are).
inside() {
  local name=$1; shift
  nsenter --net="/proc/$(pm inspect --format '{{.State.Pid}}' "$name")/ns/net" "$@"
}
wait_for() { # wait_for SECONDS COMMAND…: until it succeeds
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
status() { inside "$1" curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2$3" || true; }
metric() { inside "$1" curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
review() { # review CA: the policy hash the webhook annotates a job pod with
  inside "$main" curl -s --fail --cacert "$1" -H 'content-type: application/json' \
    --data-binary @"$repo/tests/fixtures/job-pod-review.json" "https://127.0.0.1:$https_port/mutate" \
    | python3 -c '
import base64, json, sys
r = json.load(sys.stdin)["response"]
assert r["allowed"] and r["patchType"] == "JSONPatch", r
ops = json.loads(base64.b64decode(r["patch"]))
hashes = [o["value"] for o in ops if o["path"] == "/metadata/annotations/ci.skao.int~1policy"]
hashes += [o["value"].get("ci.skao.int/policy") for o in ops if o["path"] == "/metadata/annotations" and isinstance(o["value"], dict)]
print(next(h for h in hashes if h))'
}
# The conditions wait_for retries: functions, so that each try looks again.
ready() { [ "$(status "$1" "$readiness_port" "$readiness_path")" = 200 ]; }
live() { [ "$(status "$1" "$liveness_port" "$liveness_path")" = 200 ]; }
counted() { [ "$(metric "$main" "$1")" = "$2" ]; } # counted SERIES VALUE

t0=$(date +%s.%N)
run "$main"
wait_for 20 ready "$main" || { pm logs "$main" | tail -20; fail "not Ready within 20 s"; }
flags=$(printf '%s ' "${run_args[@]}" | sed 's/ -[ev] [^ ]*//g')
ok "Ready ($readiness_path) $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s after podman run $flags(+ the Deployment's env, kubelet-style volumes)"
live "$main" || fail "liveness probe $liveness_path"
served=$(review "$work/certs/ca.crt") || fail "/mutate over TLS"
[ "$served" = "$first" ] || fail "served policy $served, expected $first"
ok "/mutate over TLS on :$https_port (CA from \`certs\`): job pod patched, policy $served"
[ -n "$(inside "$main" curl -s "http://127.0.0.1:$admin_port/metrics" | grep '^ci_pod_webhook_build_info')" ] || fail "no build_info metric"

# In a pod without its ServiceAccount token: not Ready, and why.
run "$pod" -e KUBERNETES_SERVICE_HOST=127.0.0.1 -e KUBERNETES_SERVICE_PORT=1
wait_for 20 live "$pod" || fail "the in-pod container is not live"
sleep 2
body=$(inside "$pod" curl -s "http://127.0.0.1:$readiness_port$readiness_path")
case $body in
  "not ready: no cluster access in a pod"*) ok "in a pod without a token: $readiness_path 503 \"${body:0:60}…\"" ;;
  *) fail "in a pod without a token: $readiness_path says '$body'" ;;
esac

policy changed.yaml
wait_for 15 counted 'ci_pod_webhook_policy_reloads_total{result="success"}' 1 || fail "policy change not reloaded"
[ "$(review "$work/certs/ca.crt")" = "$changed" ] || fail "the changed policy is not served"
ok "policy change through a ..data swap: reloaded, served (hash $changed)"

policy invalid.yaml
wait_for 15 counted 'ci_pod_webhook_policy_reloads_total{result="failure"}' 1 || fail "invalid policy not refused"
[ "$(review "$work/certs/ca.crt")" = "$changed" ] || fail "the last good policy is not kept"
ready "$main" || fail "not Ready after an invalid policy"
ok "invalid policy: refused (reloads_total{result=\"failure\"} 1), last good kept, still Ready"

tls "$work/certs2"
wait_for 15 counted 'ci_pod_webhook_certificate_reloads_total{result="success"}' 1 || fail "certificate swap not reloaded"
review "$work/certs2/ca.crt" >/dev/null || fail "the new certificate is not served"
ok "certificate swap through a ..data swap: reloaded, served"

t0=$(date +%s.%N)
pm stop -t "$stop_timeout" "$main" >/dev/null
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
code=$(pm inspect --format '{{.State.ExitCode}}' "$main")
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
pm logs "$main" 2>&1 | grep -q '"message":"stopped"' || fail "no 'stopped' line"
python3 -c "import sys; sys.exit(not $took < $stop_timeout)" || fail "SIGTERM: took $took s, the grace period leaves $stop_timeout s"
ok "SIGTERM: drained and exited 0 in $took s (the grace period leaves $stop_timeout s)"
echo "check-image: $image runs as manifests/base's Deployment runs it"
