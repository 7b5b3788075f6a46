#!/usr/bin/env bash
# Stop the e2e tests' node and leave the host as it was before it started.
#
#   scripts/node/node-down.sh baseline STATE   # before the node starts: what the host has
#   scripts/node/node-down.sh down STATE       # stop everything, remove what the run made
#
# The e2e harness (tests/support/e2e/node/) runs `baseline` before it starts anything, and
# its watchdog runs `down` when the test binary ends, however it ends (passed, panicked,
# killed), while holding the host-wide node lock, so the next node waits for it. Run it by
# hand only on a state directory whose test binary is gone.
#
# STATE holds what the harness wrote: pid files (kubelet.pid, containerd.pid,
# dockerd-*.pid), node.env (cgroup root, bridge, pod network), baseline/ (below) and the
# containerd and kubelet directories. Processes are stopped by their recorded pid (the
# executable checked), never by name; paths outside STATE are removed only when the
# baseline says they did not exist before the run, or when they were made during it.
#
# Adapted from ../shared/kube-e2e/node/node-down.sh, with what the node prototype found it
# leaves (../proto/node/FINDINGS.md section 8: the kubelet's iptables chains,
# net.ipv4.ip_forward, /run/containerd, /var/lib/cni, /var/lib/kubelet/device-plugins,
# the Docker DaemonSet's host directories, the runner's /var/run/docker.sock directory, the
# host dockerd's socket and cgroups).
set -uo pipefail

mode=${1:?usage: node-down.sh baseline|down STATE}
state=${2:?usage: node-down.sh baseline|down STATE}
log() { echo "node-down: $*" >&2; }
case "$state" in "" | / | /tmp | /var | /run) log "refusing STATE=$state"; exit 2 ;; esac

# Host paths a run may create, and whether they existed before it.
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /run/containerd /run/netns /var/run/ci-dind
  /var/lib/ci-dind /var/run/docker.sock /var/run/docker-for-gitlab.sock /etc/docker/key.json
  /var/log/containers /var/log/pods)
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)
KUBELET_CHAINS=(KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT)

chains() {  # every "TABLE/CHAIN" of iptables and ip6tables
  local ipt t
  for ipt in iptables ip6tables; do
    for t in filter nat mangle; do
      $ipt -w -t "$t" -S 2>/dev/null | awk -v p="$ipt/$t/" '$1 == "-N" { print p $2 }'
    done
  done
}

if [ "$mode" = baseline ]; then
  mkdir -p "$state/baseline"
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done > "$state/baseline/paths"
  for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done > "$state/baseline/sysctl"
  ls /run/netns 2>/dev/null > "$state/baseline/netns"
  chains > "$state/baseline/chains"
  touch "$state/baseline/started"
  exit 0
fi
[ "$mode" = down ] || { log "unknown mode $mode"; exit 2; }
[ -f "$state/baseline/started" ] || { log "$state has no baseline: not a node state directory"; exit 0; }
existed() { grep -qxF "$1" "$state/baseline/paths"; }
t0=${EPOCHREALTIME/./}

# shellcheck disable=SC1091
[ -f "$state/node.env" ] && . "$state/node.env"
cgroot=${CGROUP_ROOT:-}
bridge=${BRIDGE:-}

# The process of a pid file, if it still runs the executable named in it.
pid_of() {  # FILE EXE_BASENAME
  [ -f "$1" ] || return 1
  local pid exe
  pid=$(cat "$1")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  case "$exe" in */"$2" | */"$2 (deleted)") echo "$pid" ;; *) return 1 ;; esac
}
stop() {  # FILE EXE_BASENAME SIGNAL SECONDS
  local pid
  pid=$(pid_of "$1" "$2") || { rm -f "$1"; return 0; }
  kill -"$3" "$pid" 2>/dev/null
  local i
  for ((i = 0; i < $4 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "$2 ($pid) still alive: KILL"; kill -KILL "$pid"; sleep 0.2; }
  rm -f "$1"
  log "$2 stopped ($pid)"
}

# 1. The kubelet first, so that it restarts nothing.
stop "$state/kubelet.pid" kubelet KILL 2

# 2. Every process of every pod (below our cgroup root), and the network namespaces they
#    hold. The namespaces' files are CNI's (/run/netns/cni-*): the ones that are new since
#    the baseline are this run's.
cgroup_dirs() {
  [ -n "$cgroot" ] || return 0
  local d
  for d in /sys/fs/cgroup/*"$cgroot" /sys/fs/cgroup"$cgroot"; do [ -d "$d" ] && echo "$d"; done
}
pod_pids() {
  local d
  for d in $(cgroup_dirs); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u
}
for _ in 1 2 3 4 5 6 7 8 9 10; do
  pids=$(pod_pids)
  [ -z "$pids" ] && break
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  sleep 0.3
done
[ -n "$(pod_pids)" ] && log "processes left in the pod cgroups: $(pod_pids | tr '\n' ' ')"
for n in $(ls /run/netns 2>/dev/null); do
  case "$n" in cni-*) ;; *) continue ;; esac
  grep -qxF "$n" "$state/baseline/netns" && continue
  umount "/run/netns/$n" 2>/dev/null
  rm -f "/run/netns/$n" && log "removed network namespace $n"
done

# 3. The containerd shims (each waits for its container, now dead), then containerd. A shim
#    names our containerd's socket on its command line.
csock="$state/containerd/containerd.sock"
for c in /proc/[0-9]*/cmdline; do
  pid=${c#/proc/}
  pid=${pid%/cmdline}
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in */containerd-shim-runc-v2*) ;; *) continue ;; esac
  tr '\0' ' ' < "$c" 2>/dev/null | grep -qF -- "-address $csock " && kill -KILL "$pid"
done
stop "$state/containerd.pid" containerd TERM 3

# 4. Host Docker daemons the tests started (docker-for-gitlab), their sockets and cgroups.
for f in "$state"/dockerd-*.pid; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .pid)
  name=${name#dockerd-}
  stop "$f" dockerd TERM 10
  # shellcheck disable=SC1090
  [ -f "$state/$name.env" ] && . "$state/$name.env"
  for m in $(awk -v p="${DOCKER_EXEC_ROOT:-/nonexistent}/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m"
  done
  [ -n "${DOCKER_SOCKET:-}" ] && ! existed "$DOCKER_SOCKET" && rm -f "$DOCKER_SOCKET"
  [ -n "${DOCKER_EXEC_ROOT:-}" ] && rm -rf "$DOCKER_EXEC_ROOT"
  if [ -n "${DOCKER_CGROUP_PARENT:-}" ]; then
    for d in /sys/fs/cgroup/*"$DOCKER_CGROUP_PARENT" /sys/fs/cgroup"$DOCKER_CGROUP_PARENT"; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
  fi
done

# 5. Mounts under the state directory (container root file systems, shm, the kubelet's
#    volumes), deepest first.
for _ in 1 2 3; do
  mounts=$(awk -v p="$state/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

# 6. The bridge and the host ends of the pods' veths.
if [ -n "$bridge" ] && ip link show "$bridge" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null
  done
  ip link del "$bridge" && log "removed bridge $bridge"
fi

# 7. The pod cgroups, deepest first.
for d in $(cgroup_dirs); do
  for _ in 1 2 3 4 5; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$d" ] || break
    sleep 0.3
  done
  [ -d "$d" ] && log "cgroup $d not removed"
done

# 8. Host sysctls the kubelet (and the CNI bridge plugin: ip_forward) changed.
while IFS='=' read -r k v; do
  [ -n "$k" ] && [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ] && sysctl -q -w "$k=$v" && log "restored $k=$v"
done < "$state/baseline/sysctl"

# 9. The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT):
#    the jumps to them, then the chains, unless they were there before.
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do
    for c in "${KUBELET_CHAINS[@]}"; do
      grep -qxF "$ipt/$t/$c" "$state/baseline/chains" && continue
      $ipt -w -t "$t" -S "$c" >/dev/null 2>&1 || continue
      $ipt -w -t "$t" -S | grep '^-A' | grep -E -- "-j $c( |\$)" | sed 's/^-A/-D/' \
        | while read -r rule; do eval "$ipt -w -t $t $rule"; done
      $ipt -w -t "$t" -F "$c" && $ipt -w -t "$t" -X "$c" && log "removed $ipt $t/$c"
    done
  done
done

# 10. Host paths with hard-coded places: containerd's shim sockets (/run/containerd), the
#     libcni cache (/var/lib/cni), the kubelet's device-plugin socket (/var/lib/kubelet)
#     and log links (/var/log/containers), the node Docker DaemonSet's host directories,
#     Docker 20.10's trust key, and the empty directory the kubelet makes for the
#     runner's hostPath /var/run/docker.sock. What the run made is newer than the
#     baseline's mark.
newer() { find "$1" -mindepth 1 -maxdepth "$2" -newer "$state/baseline/started" 2>/dev/null; }
for d in /run/containerd/s /run/containerd/runc/k8s.io /var/lib/cni/results; do
  [ -d "$d" ] && newer "$d" 1 | xargs -r rm -rf
done
for p in /run/containerd /var/lib/cni /var/lib/kubelet; do
  existed "$p" && continue
  [ -e "$p" ] && rm -rf "$p" && log "removed $p"
done
for p in /var/run/ci-dind /var/lib/ci-dind /etc/docker/key.json; do
  existed "$p" || { [ -e "$p" ] && rm -rf "$p" && log "removed $p"; }
done
for p in /run/netns /var/log/containers /var/log/pods; do
  existed "$p" || { [ -d "$p" ] && rmdir "$p" 2>/dev/null && log "removed $p"; }
done
rm -f /var/run/ci-pod-webhook-e2e-decoy.sock  # tests/e2e/node/docker_host.rs's
if ! existed /var/run/docker.sock && [ -d /var/run/docker.sock ] && [ ! -L /var/run/docker.sock ]; then
  rmdir /var/run/docker.sock && log "removed the empty directory /var/run/docker.sock"
fi
for l in /var/log/containers/*.log; do
  [ -L "$l" ] && case "$(readlink "$l")" in "$state"/*) rm -f "$l" ;; esac
done

# 11. The state directory, unless a test failed (then its logs stay, the rest goes).
left=$(awk -v p="$state/" 'index($2, p) == 1' /proc/mounts)
if [ -n "$left" ]; then
  log "mounts left under $state, not removing it: $left"
elif [ -e "$state/KEEP" ]; then
  rm -rf "$state/containerd" "$state/kubelet" "$state/images" "$state"/dockerd-*-data
  log "kept the logs in $state"
else
  rm -rf "$state"
fi
log "done in $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
exit 0
