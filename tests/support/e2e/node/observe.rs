//! What the tests read of an install: the API server's and the webhook pods' metrics
//! (Prometheus text), a counter going up on every replica, and the certificate a replica
//! serves.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::ControlPlane;
use super::JOB_POD_WEBHOOK;

/// The longest docs/deploy.md promises from an apply to the last replica serving the
/// new policy or certificate: the kubelet's next sync of the pod, 60–90 s after its last
/// (its 60 s `syncFrequency` plus up to half of it as jitter), a moment to write the
/// files, and the server's 5 s reload interval.
pub const PROPAGATION: Duration = Duration::from_secs(100);

/// The API server's `/metrics`, one (series, value) per line.
pub fn apiserver_metrics(cp: &ControlPlane) -> Vec<(String, f64)> {
    let output = cp.kubectl(&["get", "--raw", "/metrics"], None);
    assert!(output.status.success(), "the API server's /metrics");
    parse_metrics(&String::from_utf8_lossy(&output.stdout))
}

/// The API server's counters that a lost or refused review moves, for the job-pod entry.
pub fn failure_counters(cp: &ControlPlane) -> (f64, f64) {
    let metrics = apiserver_metrics(cp);
    let name = format!(r#"name="{JOB_POD_WEBHOOK}""#);
    (
        metric_sum(
            &metrics,
            "apiserver_admission_webhook_rejection_count",
            &[&name],
        ),
        metric_sum(
            &metrics,
            "apiserver_admission_webhook_fail_open_count",
            &[&name],
        ),
    )
}

/// Prometheus text as (series, value), comments left out.
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the series named `name` whose labels contain every one of `labels`
/// (`key="value"`).
pub fn metric_sum(metrics: &[(String, f64)], name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The `/metrics` of a webhook pod, from its admin port on the pod network (the host
/// reaches pod addresses over the bridge).
pub async fn pod_metrics(pod: &Value) -> Option<Vec<(String, f64)>> {
    let ip = pod["status"]["podIP"].as_str()?;
    let url = format!("http://{ip}:8080/metrics");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "3", &url])
            .output()
    })
    .await
    .ok()?
    .ok()?;
    output
        .status
        .success()
        .then(|| parse_metrics(&String::from_utf8_lossy(&output.stdout)))
}

/// A counter of one webhook pod's `/metrics` (0 when it does not answer).
pub async fn pod_counter(pod: &Value, name: &str, labels: &[&str]) -> f64 {
    pod_metrics(pod)
        .await
        .map_or(0.0, |m| metric_sum(&m, name, labels))
}

/// Waits until counter `name` went up on every pod of `pods`, and holds the time each
/// took since `since` (an apply) to [`PROPAGATION`]; returns those times.
pub async fn until_each_counts(
    pods: &[Value],
    name: &str,
    labels: &[&str],
    since: Instant,
) -> Vec<Duration> {
    let mut before = Vec::new();
    for pod in pods {
        let metrics = pod_metrics(pod).await.expect("a replica's /metrics");
        before.push(metric_sum(&metrics, name, labels));
    }
    let mut took: Vec<Option<Duration>> = vec![None; pods.len()];
    while took.iter().any(Option::is_none) {
        for (i, pod) in pods.iter().enumerate() {
            if took[i].is_none() && pod_counter(pod, name, labels).await > before[i] {
                took[i] = Some(since.elapsed());
            }
        }
        assert!(
            since.elapsed() < PROPAGATION + Duration::from_secs(30),
            "{name}{labels:?} did not go up on every replica within {PROPAGATION:?} and a margin: {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took: Vec<Duration> = took.into_iter().flatten().collect();
    assert!(
        took.iter().all(|t| *t <= PROPAGATION),
        "{name}{labels:?} went up on the replicas {took:?} after the apply: not within the \
         {PROPAGATION:?} docs/deploy.md promises"
    );
    took
}

/// The SHA-256 fingerprint of the certificate a webhook pod serves on 8443.
pub fn served_fingerprint(pod: &Value) -> String {
    let ip = pod["status"]["podIP"].as_str().expect("a pod IP");
    let script = format!(
        "openssl s_client -connect {ip}:8443 -servername ci-pod-webhook.ci-pod-webhook.svc \
         </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn file_fingerprint(path: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
