#!/usr/bin/env bash
# The e2e node's images, made from this host's files (no registry is reachable) as OCI
# archives that `ctr -n k8s.io images import` takes; tests/support/e2e/node/ builds and
# imports them when the node starts (docs/e2e.md, "A real node").
#
#   scripts/node/images.sh OUT_DIR base   # pause, busybox, docker-cli (root and uid 1000)
#   scripts/node/images.sh OUT_DIR dind   # the docker:28.4.0-dind stand-in
#
# Needs Debian's busybox-static, curl and docker.io (for /usr/bin/docker, dockerd and the
# daemon's helpers), iptables and util-linux, and python3.
#
# Recipes after the node prototype's images.sh (../proto/node, FINDINGS.md section 3 and 5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: images.sh OUT_DIR base|dind}
shift
mkdir -p "$out"
mk() { python3 "$here/mkimage.py" "$@"; }

base() {
  # The sandbox ("pause") image containerd's CRI runs first in every pod: a shell that
  # sleeps until it is stopped.
  mk --name localhost/e2e/pause:1 --out "$out/pause.tar" \
    --entrypoint '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait; done"]' --cmd '[]'
  mk --name localhost/e2e/busybox:1 --out "$out/busybox.tar"
  # A build image with a Docker client: Debian's docker CLI (20.10, linked to libc only;
  # not the machine's /usr/local/bin/docker) and curl with its libraries. The variant
  # runs as uid 1000 (USER 1000:1000), as non-root build images do.
  mk --name localhost/e2e/docker-cli:1 --variant localhost/e2e/docker-cli-nonroot:1=1000:1000 \
    --out "$out/docker-cli.tar" --bin /usr/bin/docker --bin /usr/bin/curl \
    --passwd 'ci:x:1000:1000:ci:/tmp:/bin/sh' --group 'ci:x:1000:' --env HOME=/tmp
}

dind() {
  # Stand-in for docker:28.4.0-dind, named like it so that manifests/node-docker applies
  # unchanged (image docker:28.4.0-dind, IfNotPresent). The same paths as the real image:
  # binaries in /usr/local/bin, the legacy iptables farm in /usr/local/sbin/.iptables-legacy,
  # group docker 2375, /certs, ENTRYPOINT dockerd-entrypoint.sh, CMD []. What differs
  # (Debian's docker.io 20.10 instead of 28.4, its containerd and runc, iptables-nft of
  # Debian 12, no TLS certificate generation): docs/e2e.md.
  local x=/usr/lib/x86_64-linux-gnu/xtables
  local args=(--name docker.io/library/docker:28.4.0-dind --out "$out/dind.tar"
    --bin /usr/sbin/dockerd:/usr/local/bin/dockerd --bin /usr/bin/docker:/usr/local/bin/docker
    --bin /usr/bin/containerd:/usr/local/bin/containerd
    --bin /usr/bin/containerd-shim-runc-v2:/usr/local/bin/containerd-shim-runc-v2
    --bin /usr/bin/ctr:/usr/local/bin/ctr --bin /usr/sbin/runc:/usr/local/bin/runc
    --bin /usr/bin/tini-static:/usr/local/bin/docker-init
    --bin /usr/sbin/docker-proxy:/usr/local/bin/docker-proxy
    --bin /usr/sbin/xtables-nft-multi --bin /usr/sbin/xtables-legacy-multi
    --tree "$x:$x" --lib /lib/x86_64-linux-gnu/libnss_files.so.2 --bin /usr/bin/mountpoint
    --text "/etc/os-release:PRETTY_NAME=\"docker:28.4.0-dind stand-in (Debian 12 docker.io)\"\nID=debian\nVERSION_ID=12\n"
    --file "$here/dind/dind:/usr/local/bin/dind:755"
    --file "$here/dind/dockerd-entrypoint.sh:/usr/local/bin/dockerd-entrypoint.sh:755"
    --file "$here/dind/docker-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh:755"
    --text "/usr/local/bin/modprobe:#!/bin/sh\n# stand-in for docker-library's modprobe.sh: nothing to load from a container\nexit 0\n"
    --group docker:x:2375: --dir /certs:1777 --dir /certs/client:1777 --dir /var/lib/docker
    --env DOCKER_VERSION=28.4.0-standin --env DOCKER_TLS_CERTDIR=/certs
    --entrypoint '["dockerd-entrypoint.sh"]' --cmd '[]')
  local n
  for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    args+=(--symlink "/usr/sbin/$n:xtables-nft-multi"
      --symlink "/usr/local/sbin/.iptables-legacy/$n:/usr/sbin/xtables-legacy-multi")
  done
  mk "${args[@]}"
}

for set in "$@"; do
  case $set in
    base) base ;;
    dind) dind ;;
    *) echo "images.sh: unknown image set $set (base, dind)" >&2; exit 2 ;;
  esac
done
