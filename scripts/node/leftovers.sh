#!/usr/bin/env bash
# What the e2e tests' node left on this host, against a snapshot taken before the run.
#
#   scripts/node/leftovers.sh snapshot DIR   # before the e2e tests
#   scripts/node/leftovers.sh check DIR      # after: waits for the node's clean-up, then
#                                            # lists what differs; exit 1 if anything does
#
# The node's clean-up (scripts/node/node-down.sh) runs after the test binary has exited,
# holding the node lock: `check` takes the lock first, so it sees the host afterwards.
# .ci/run runs both around the e2e tests. After ../proto/node/check-leftovers.sh.
set -uo pipefail
mode=${1:?usage: leftovers.sh snapshot|check DIR}
dir=${2:?usage: leftovers.sh snapshot|check DIR}
lock=/run/lock/ci-pod-webhook-e2e-node.lock

# Counters and per-interface entries that change by themselves, or with the interfaces
# that come and go.
skip='^(fs\.(dentry|inode|file-nr|aio-nr|quota)|kernel\.(random|ns_last_pid|pty\.nr|sched_domain)|net\.netfilter\.nf_conntrack_count|vm\.stat|fs\.binfmt|net\.ipv[46]\.(conf|neigh)\.(veth|docker|cipodwebhook|cni))'
snap() {
  local d=$1
  mkdir -p "$d"
  sysctl -a 2>/dev/null | grep -vE "$skip" | sort > "$d/sysctl"
  ip -o link show | awk -F': ' '{ print $2 }' | cut -d@ -f1 | sort > "$d/links"
  { iptables-save; ip6tables-save; } 2>/dev/null | grep -E '^[:*]' | sed 's/ \[.*//' | sort > "$d/chains"
  { iptables-save; ip6tables-save; } 2>/dev/null | grep -c '^-A' > "$d/rules"
  ls -A /run /var/lib /etc /etc/docker /var/log 2>/dev/null | sort > "$d/paths"
  ls -A /run/netns 2>/dev/null | sort > "$d/netns"
  grep -vE ' /(proc|sys)/' /proc/mounts | awk '{ print $2 }' | sort > "$d/mounts"
  ls -d /sys/fs/cgroup/*/ /sys/fs/cgroup/*/*/ 2>/dev/null | sort > "$d/cgroups"
  # The node's daemons, and anything run from KUBEBUILDER_ASSETS (the control plane).
  local e x
  for e in /proc/[0-9]*/exe; do
    x=$(readlink "$e" 2>/dev/null) || continue
    case "$x" in
      */containerd | */containerd-shim* | */dockerd | */kubelet) echo "$x" ;;
      "${KUBEBUILDER_ASSETS:-/nonexistent}"/*) echo "$x" ;;
    esac
  done | sort > "$d/processes"
}

case $mode in
  snapshot) snap "$dir/before"; exit 0 ;;
  check) ;;
  *) echo "leftovers.sh: unknown mode $mode" >&2; exit 2 ;;
esac
[ -d "$dir/before" ] || { echo "leftovers.sh: no snapshot in $dir (run snapshot first)" >&2; exit 2; }
# Wait for the clean-up of the last node (it holds the lock while it runs).
exec 9>>"$lock"
flock -w 300 9 || { echo "leftovers.sh: the node lock is still held after 300 s" >&2; exit 1; }
snap "$dir/after"
exec 9>&-
left=0
for k in sysctl links chains rules paths netns mounts cgroups processes; do
  d=$(diff "$dir/before/$k" "$dir/after/$k" | grep '^[<>]')
  if [ -n "$d" ]; then
    echo "$d" | sed "s/^</LEFT $k, gone: /; s/^>/LEFT $k, new: /"
    left=1
  fi
done
if [ $left = 0 ]; then echo "leftovers.sh: the host is as it was before the e2e tests"; fi
exit $left
