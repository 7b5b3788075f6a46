//! `ci-pod-webhook sizing` on what a real kubelet reports (docs/sizing.md): a real
//! Prometheus scrapes the node's cAdvisor (`/metrics/cadvisor`) and the webhook's
//! `ci_pod_webhook_job_pod_info`, as a cluster's monitoring does, while two job pods of
//! one class run with a known use: one holds 40 MiB and burns CPU, one holds 8 MiB and
//! sleeps. `sizing` then finds both pods and peaks in the ranges those uses give, under
//! the class's limits: the labels, metric names and joins its queries assume are those
//! of the real thing, not only of the synthetic series of tests/integration/sizing.rs.

use std::time::Duration;

use serde_json::Value;

use super::{SIZING, build_pod, ska};
use crate::support::e2e::*;
use crate::support::prometheus::TestPrometheus;
use ci_pod_webhook_core::quantity::Quantity;

const MIB: i64 = 1 << 20;
/// `sizing --cpu-rate`: the range of its `rate(container_cpu_usage_seconds_total[…])`.
const CPU_RATE: &str = "40s";

/// Holds `mib` MiB in the pod's shared memory (charged to the build container's
/// cgroup) for 50 s, burning a CPU for the first 45 s when `burn`. The kubelet's
/// cAdvisor collects a container's figures every 10 to 15 s and stamps them with that
/// time, so Prometheus holds a new sample only that often: a rate over [`CPU_RATE`] needs
/// two of them inside it, and the burn lasts three such windows' worth of collections
/// even when a loaded machine delays one (a 30 s burn under a 30 s rate gave no CPU
/// figure in one CI run).
fn script(mib: u32, burn: bool) -> String {
    let burn = if burn {
        "end=$(($(date +%s) + 45)); while [ \"$(date +%s)\" -lt \"$end\" ]; do :; done"
    } else {
        "sleep 45"
    };
    format!("head -c {mib}m /dev/zero > /dev/shm/held && {burn} && sleep 5 && rm /dev/shm/held")
}

/// A quantity of the report, in bytes or millicores.
fn units(value: &Value, milli: bool) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a quantity: {value}"));
    let quantity = Quantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    if milli {
        quantity.milli_value_ceil()
    } else {
        quantity.value_ceil()
    }
}

#[tokio::test]
#[ignore = "e2e on a real node: needs root, KUBEBUILDER_ASSETS with kubelet and kube-controller-manager, Debian's prometheus, and the packages docs/e2e.md lists"]
async fn sizing_reads_the_real_kubelets_cadvisor_and_the_webhooks_info_series() {
    let node = Node::take_turn().await;
    let host = node.host_docker().await;
    let policy = ska(host.gid);
    let webhook = node.webhook("ska", &policy).await;
    let ns = node
        .namespace("node-sizing", "ska", &[(RUNNER_CLASS, SIZING)])
        .await;
    let prometheus = TestPrometheus::scraping(
        "node-sizing",
        &format!(
            "  - job_name: kubelet-cadvisor\n    scheme: https\n    metrics_path: /metrics/cadvisor\n    tls_config: {{insecure_skip_verify: true}}\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: ci-pod-webhook\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            node.kubelet_port, webhook.admin_port
        ),
    )
    .await;

    for (name, mib, burn) in [("holds-40m", 40, true), ("holds-8m", 8, false)] {
        let stored = ns
            .create_pod(&build_pod(name, BUSYBOX, &script(mib, burn)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            container(&stored, "build")["resources"]["limits"]["memory"],
            "96Mi",
            "{name}: the class's limit"
        );
    }
    for name in ["holds-40m", "holds-8m"] {
        let done = ns.finished(name).await;
        assert_eq!(
            done["status"]["phase"], "Succeeded",
            "{name}: {:#}",
            done["status"]
        );
    }
    // The last figures of the finished containers reach Prometheus within a scrape or two.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let policy_file = node.state.join("policy-ska.yaml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .args(["sizing", "--prometheus", &prometheus.url, "--since", "10m"])
        .args(["--cpu-rate", CPU_RATE, "-o", "json", "--policy"])
        .arg(&policy_file)
        .output()
        .expect("run sizing");
    assert!(
        output.status.success(),
        "sizing: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        prometheus.log_tail()
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("sizing -o json");
    let port: u16 = prometheus
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("Prometheus' port");
    // What Prometheus held of the pods, for the reader of a failing assertion.
    let mut seen = String::new();
    for query in [
        "up",
        "count%20by%20(namespace,pod,container)(container_memory_working_set_bytes%7Bnamespace=%22node-sizing%22%7D)",
        "count%20by%20(namespace,pod,class)(ci_pod_webhook_job_pod_info%7Bnamespace=%22node-sizing%22%7D)",
    ] {
        let answer = process::http_get(port, &format!("/api/v1/query?query={query}")).await;
        seen.push_str(&format!("{query}: {answer:?}\n"));
    }

    let build = report["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .find(|e| e["class"] == SIZING && e["container"] == "build")
        .unwrap_or_else(|| panic!("no build entry of {SIZING}: {report:#}\n{seen}"));
    let build = &{
        let mut build = build.clone();
        build["prometheus_held"] = Value::String(seen);
        build
    };
    eprintln!("{build:#}");
    assert_eq!(build["jobs"], 2, "{build:#}");
    let memory = &build["memory"];
    assert_eq!(memory["limit"], "96Mi", "{build:#}");
    // 40 MiB held, plus the shell's own few hundred KiB, below the 96Mi limit.
    let max = units(&memory["max"], false);
    assert!(
        (40 * MIB..96 * MIB).contains(&max),
        "memory max {max}: {build:#}"
    );
    // The smaller pod's peak is the lower one: 8 MiB and the shell.
    let p50 = units(&memory["p50"], false);
    assert!(
        (8 * MIB..40 * MIB).contains(&p50),
        "memory p50 {p50}: {build:#}"
    );
    assert_eq!(memory["over_limit"], 0, "{build:#}");
    let cpu = &build["cpu"];
    assert_eq!(cpu["limit"], "500m", "{build:#}");
    // A busy loop under a 500m quota: some of it, never above it (the rate's
    // extrapolation can add a little).
    let cpu_max = units(&cpu["max"], true);
    assert!(
        (100..=600).contains(&cpu_max),
        "cpu max {cpu_max}m: {build:#}"
    );
    assert_eq!(build["over"], serde_json::json!([]), "{build:#}");
}
