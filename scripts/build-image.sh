#!/usr/bin/env bash
# Builds the Dockerfile unchanged where Docker Hub and gcr.io cannot be reached, then
# checks the image as manifests/base's Deployment runs it (docs/deploy.md, "Building the
# image without Docker Hub"; docs/development.md says when to run this).
#
#   sudo scripts/build-image.sh                  # stand-ins, build, check; 8-12 min cold
#   KEEP=1 sudo scripts/build-image.sh           # keep the image store for another run
#   ARCHIVE=ci-pod-webhook.tar sudo scripts/build-image.sh
#                 # also save the image, named as the Deployment asks for it
#                 # (docker.io/library/ci-pod-webhook:0.1.0), for `ctr -n k8s.io images
#                 # import` or `kind load image-archive`
#
# Needs root, Debian's podman and mmdebstrap (apt-get install --no-install-recommends
# podman mmdebstrap), kubectl (it renders manifests/base), python3 with PyYAML, curl,
# nsenter, and network to deb.debian.org, static.rust-lang.org and crates.io only.
#
# 1. Stand-ins for the Dockerfile's two base images, named as it names them, so that the
#    Dockerfile is built as it is:
#    - docker.io/library/buildpack-deps:bookworm: mmdebstrap of Debian 12 (minbase) with
#      buildpack-deps' package lists (curl, scm and the full image);
#    - docker.io/library/rust:1.95.0-bookworm: the official recipe on it
#      (scripts/image/rust.Containerfile: rustup-init 1.28.2, minimal profile);
#    - gcr.io/distroless/cc-debian12:nonroot: distroless's package list and nonroot user
#      (scripts/image/distroless-rootfs.sh, scripts/image/distroless.Containerfile).
# 2. podman build --pull=never of the Dockerfile: a base it cannot find locally fails
#    the build instead of reaching for a registry. podman names the image
#    localhost/ci-pod-webhook:0.1.0.
# 3. The image as the Deployment runs it (scripts/image/check-image.sh).
#
# The RUN steps see the host's CA bundle (HOST_CA, default /etc/ssl/certs/ca-certificates.crt;
# HOST_CA= to leave it out), bind-mounted over the image's own for the step only, never
# stored in a layer: on a network whose egress re-signs TLS with its own CA (a company
# proxy; this project's CI machines) nothing else reaches static.rust-lang.org or
# crates.io, and elsewhere the two bundles hold the same certificates.
#
# Everything goes to target/image-build/ (WORK): podman's image store (--root), its
# config, the .deb files, logs. It is removed at the end unless KEEP=1 (the build's log
# is kept as target/image-build.log); the stand-ins are reused when they are already in
# a kept store.
set -euo pipefail
if [ -n "${ARCHIVE:-}" ]; then ARCHIVE=$(realpath -m "$ARCHIVE"); fi
cd "$(dirname "$0")/.."
repo=$PWD
work=${WORK:-$repo/target/image-build}
tag=${TAG:-ci-pod-webhook:0.1.0}
rust_version=1.95.0

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-image.sh: $1 is missing ($2)" >&2; exit 1; }; }
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (podman's store, file owners)" >&2; exit 1; }
need podman "apt-get install --no-install-recommends podman"
need mmdebstrap "apt-get install --no-install-recommends mmdebstrap"
need kubectl "it renders manifests/base"
need python3 "it reads the rendered Deployment"
python3 -c 'import yaml' 2>/dev/null || { echo "build-image.sh: python3 lacks PyYAML (apt-get install python3-yaml)" >&2; exit 1; }
need curl "it calls the running image"
need nsenter "it reaches into the container's network namespace"
grep -qx "channel = \"$rust_version\"" rust-toolchain.toml \
  || { echo "build-image.sh: rust-toolchain.toml is not at $rust_version; update the stand-in (scripts/image/rust.Containerfile) too" >&2; exit 1; }

mkdir -p "$work"
host_ca=${HOST_CA-/etc/ssl/certs/ca-certificates.crt}
ca_mount=()
if [ -n "$host_ca" ]; then ca_mount=(-v "$host_ca:/etc/ssl/certs/ca-certificates.crt:ro"); fi
# This machine lacks CAP_SYS_RESOURCE even as root: a container may not raise its
# open-files and process limits above its runtime's, and podman run asks for more by
# default (runc: "error setting rlimit type 6/7: operation not permitted"). Ours for
# open files; for processes at most 32768, the limit runc is started with here (podman
# lowers its own), whatever the shell's.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" != unlimited ] || nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
cat > "$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
runtime = "runc"
EOF
export CONTAINERS_CONF=$work/containers.conf
# The store of this script alone, never the machine's: check-image.sh uses it too.
export PODMAN="podman --root $work/storage --runroot $work/run --storage-driver overlay"
podman() { command $PODMAN "$@"; }

cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    # Containers of an interrupted build (buildah's, which `podman ps` does not list)
    # keep their layers mounted; unmount what is left under $work, deepest first.
    podman rm -af >/dev/null 2>&1 || true
    podman ps -aq --external 2>/dev/null | xargs -r $PODMAN rm -f >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r -n1 umount >/dev/null 2>&1 || true
    if [ -f "$work/build.log" ]; then cp "$work/build.log" "$work.log"; fi
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }
has() { podman image exists "$1"; }
started=$(date +%s)

step "stand-in docker.io/library/buildpack-deps:bookworm (mmdebstrap, Debian 12)"
if ! has docker.io/library/buildpack-deps:bookworm; then
  # buildpack-deps:bookworm-curl, -scm and bookworm (docker-library/buildpack-deps,
  # debian/bookworm/{curl,scm,}/Dockerfile), on Debian's minbase like debian:bookworm.
  curl_layer=(ca-certificates curl gnupg netbase sq wget)
  scm_layer=(git git-lfs mercurial openssh-client subversion procps)
  main_layer=(autoconf automake bzip2 dpkg-dev file g++ gcc imagemagick libbz2-dev libc6-dev
    libcurl4-openssl-dev libdb-dev libevent-dev libffi-dev libgdbm-dev libglib2.0-dev
    libgmp-dev libjpeg-dev libkrb5-dev liblzma-dev libmagickcore-dev libmagickwand-dev
    libmaxminddb-dev libncurses5-dev libncursesw5-dev libpng-dev libpq-dev libreadline-dev
    libsqlite3-dev libssl-dev libtool libwebp-dev libxml2-dev libxslt-dev libyaml-dev make
    patch unzip xz-utils zlib1g-dev default-libmysqlclient-dev)
  include=$(IFS=,; echo "${curl_layer[*]},${scm_layer[*]},${main_layer[*]}")
  mmdebstrap --variant=minbase --include="$include" --aptopt='Acquire::Retries "3"' \
    bookworm "$work/bookworm.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" \
    > "$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]' "$work/bookworm.tar" docker.io/library/buildpack-deps:bookworm >/dev/null
  rm -f "$work/bookworm.tar"
fi

step "stand-in docker.io/library/rust:$rust_version-bookworm (the official recipe)"
if ! has "docker.io/library/rust:$rust_version-bookworm"; then
  podman build --pull=never --network=host "${ca_mount[@]}" -q -t "docker.io/library/rust:$rust_version-bookworm" \
    -f scripts/image/rust.Containerfile scripts/image > "$work/rust.log" 2>&1 \
    || { tail -30 "$work/rust.log" >&2; exit 1; }
fi

step "stand-in gcr.io/distroless/cc-debian12:nonroot (Debian 12 packages)"
if ! has gcr.io/distroless/cc-debian12:nonroot; then
  scripts/image/distroless-rootfs.sh "$work/distroless/distroless-cc.tar" "$work/debs"
  cp scripts/image/distroless.Containerfile "$work/distroless/Containerfile"
  podman build --pull=never -q -t gcr.io/distroless/cc-debian12:nonroot "$work/distroless" >/dev/null
fi
stand_ins=$(date +%s)

step "podman build of the Dockerfile, unchanged"
podman build --pull=never --network=host "${ca_mount[@]}" -t "$tag" \
  --build-arg VERSION="${tag##*:}" --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || true)" \
  -f Dockerfile . 2>&1 | tee "$work/build.log" \
  | { grep --line-buffered -E 'STEP [0-9]+/|^COMMIT|^Error|^error' || true; } || build_status=$?
if [ "${build_status:-0}" != 0 ]; then
  echo "build-image.sh: the build failed; the end of its log (kept in $work/build.log):" >&2
  tail -40 "$work/build.log" >&2
  KEEP=1
  exit 1
fi
# Hermetic: rustup neither updated itself nor downloaded a toolchain or component
# (steps taken from the layer cache print nothing, so a warm build proves nothing here).
if grep -E "^info: (syncing channel|downloading component|checking for self-update|installing component)" "$work/build.log"; then
  echo "build-image.sh: rustup downloaded during the build (above); the Dockerfile's builder must use the image's toolchain" >&2
  exit 1
fi
image=$(podman image inspect --format '{{.Id}}' "$tag")
built=$(date +%s)
echo "built localhost/$tag ($image): $((built - stand_ins)) s; stand-ins $((stand_ins - started)) s"

step "the image as manifests/base's Deployment runs it"
scripts/image/check-image.sh "localhost/$tag"

if [ -n "${ARCHIVE:-}" ]; then
  step "saved as docker.io/library/$tag in $ARCHIVE"
  podman tag "localhost/$tag" "docker.io/library/$tag"
  podman save --format docker-archive -o "$ARCHIVE" "docker.io/library/$tag"
fi

echo
echo "build-image.sh: localhost/$tag built from the Dockerfile and checked in $(( $(date +%s) - started )) s"
if [ "${KEEP:-0}" = 1 ]; then
  echo "kept: podman --root $work/storage --runroot $work/run --storage-driver overlay images"
fi
