//! Benchmark, not a check CI runs: the memory of `ci-pod-webhook serve` watching many
//! job pods on a real kube-apiserver (issue 13: "state the RSS with 10,000 job pods
//! watched"). Run it with scripts/bench-job-pods-rss.sh
//! (`KUBEBUILDER_ASSETS=DIR cargo bench --bench job_pods_rss`); the figures go to
//! BENCHMARKS.md. It runs on the e2e tests' harness (tests/support/e2e).
//!
//! Creates `JOB_PODS` (default 10,000) 17.9 job pods in an opted-in namespace, 32 at a
//! time, with no webhook registered (so all are `unpolicied`: each keeps the same small
//! record whatever its verdict), then reads the watching server's VmRSS and VmHWM from
//! /proc: once after it has seen every pod arrive by watch events, and for a server
//! started afterwards, whose first list brings all of them at once.

// The e2e tests' harness; the bench uses part of it.
#[allow(dead_code)]
#[path = "../../tests/support/e2e/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use support::*;

const V17_9: &str = "gitlab-runner-17.9-job-pod.json";

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The sum of `ci_pod_webhook_job_pods` over every series.
async fn watched(webhook: &Webhook) -> u64 {
    webhook
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("ci_pod_webhook_job_pods{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn wait_watched(webhook: &Webhook, pods: u64, patience: Duration) {
    let start = Instant::now();
    while watched(webhook).await < pods {
        assert!(
            start.elapsed() < patience,
            "the webhook saw {} of {pods} pods",
            watched(webhook).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn main() {
    let pods: u64 = std::env::var("JOB_PODS")
        .ok()
        .map(|v| v.parse().expect("JOB_PODS is a number of pods"))
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve_memory_with_many_job_pods_watched(pods));
}

async fn serve_memory_with_many_job_pods_watched(pods: u64) {
    let cp = ControlPlane::own("rss", Options::default()).await;
    let ns = cp.namespace("rss", &[OPT_IN]).await;
    let first = cp.start_webhook().await;
    let (rss, hwm) = memory(first.process.pid());
    println!("no job pods: VmRSS {rss} KiB, VmHWM {hwm} KiB");

    let template = job_pod(V17_9);
    let started = Instant::now();
    let created = futures::stream::iter(0..pods)
        .map(|i| {
            let pod = renamed(&template, &format!("job-{i:05}"));
            let ns = &ns;
            async move { ns.create_pod(&pod).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(created as u64, pods, "every pod created");
    println!(
        "created {pods} job pods in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    wait_watched(&first, pods, Duration::from_secs(300)).await;
    let (rss, hwm) = memory(first.process.pid());
    println!("{pods} job pods, seen by watch events: VmRSS {rss} KiB, VmHWM {hwm} KiB");

    let second = cp.start_webhook().await;
    wait_watched(&second, pods, Duration::from_secs(300)).await;
    let (rss2, hwm2) = memory(second.process.pid());
    println!("{pods} job pods, seen by the first list: VmRSS {rss2} KiB, VmHWM {hwm2} KiB");
    // manifests/base gives the container 128 MiB.
    assert!(
        hwm.max(hwm2) < 128 * 1024,
        "peak above the Deployment's 128 MiB limit"
    );
}
