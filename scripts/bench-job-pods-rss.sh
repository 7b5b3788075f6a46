#!/usr/bin/env bash
# Memory of `serve` watching 10,000 job pods on a real kube-apiserver (BENCHMARKS.md).
#
#   scripts/bench-job-pods-rss.sh            # JOB_PODS=N to change the count
#   PROFILE=dev scripts/bench-job-pods-rss.sh   # the debug build (no release build needed)
#
# Needs KUBEBUILDER_ASSETS (etcd, kube-apiserver) as the e2e tests do (docs/e2e.md);
# without it the binaries in ../shared/kube-e2e/bin are unpacked into target/kube-e2e.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  mkdir -p target/kube-e2e
  for b in etcd kube-apiserver kube-scheduler; do
    [ -x "target/kube-e2e/$b" ] || { xz -dc "../shared/kube-e2e/bin/$b.xz" > "target/kube-e2e/$b"; chmod +x "target/kube-e2e/$b"; }
  done
  export KUBEBUILDER_ASSETS=$repo/target/kube-e2e
fi
# benches/job_pods_rss; the bench profile is the release profile.
cargo bench --profile "${PROFILE:-bench}" --bench job_pods_rss
