//! The two instruments of a rollout, read the way an admin reads them: `ci-pod-webhook
//! audit -o json` (a process, as the cluster admin) and the webhook's live gauge
//! `ci_pod_webhook_job_pods{class,verdict}` from its `/metrics`; and the wait until they
//! agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ControlPlane, PATIENCE, Webhook};

/// Counts per (class, verdict), zeros left out.
pub type Counts = BTreeMap<(String, String), u64>;

/// `ci-pod-webhook audit -o json --policy POLICY ARGS…` as the cluster admin: its exit
/// code and report.
pub fn audit(cp: &ControlPlane, policy: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ci-pod-webhook"))
        .arg("audit")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .arg("--policy")
        .arg(policy)
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("run ci-pod-webhook audit");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

/// The pod `name` of an audit report.
pub fn audited<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["pod"] == name))
        .unwrap_or_else(|| panic!("{name} is not in the report: {report:#}"))
}

/// The verdicts of pod `name` in an audit report.
pub fn verdicts(report: &Value, name: &str) -> Vec<String> {
    let pod = audited(report, name);
    pod["verdicts"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no list of verdicts: {pod:#}"))
        .iter()
        .map(|v| v.as_str().expect("a verdict is a string").to_string())
        .collect()
}

/// The summary of an audit report as counts per (class, verdict); `pods` (the total per
/// class) is not a verdict.
pub fn audit_counts(report: &Value) -> Counts {
    let mut counts = Counts::new();
    for (class, verdicts) in report["summary"].as_object().into_iter().flatten() {
        for (verdict, count) in verdicts.as_object().into_iter().flatten() {
            let count = count.as_u64().expect("a count");
            if verdict != "pods" && count > 0 {
                counts.insert((class.clone(), verdict.clone()), count);
            }
        }
    }
    counts
}

/// The webhook's `ci_pod_webhook_job_pods` series, zeros left out.
pub async fn gauge_counts(webhook: &Webhook) -> Counts {
    let text = webhook.metrics().await;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ci_pod_webhook_job_pods{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("a series and a value");
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no {name} label in {line}"))
                .to_string()
        };
        let value: u64 = value.trim().parse().expect("a whole count");
        if value > 0 {
            counts.insert((label("class"), label("verdict")), value);
        }
    }
    counts
}

/// Waits until the gauge of `webhook` says what `audit -o json` (every opted-in
/// namespace, by `policy`) says, and returns how long that took; panics with both after
/// [`PATIENCE`]. `step` names the event in the message.
pub async fn gauge_agrees_with_audit(
    cp: &ControlPlane,
    webhook: &Webhook,
    policy: &Path,
    step: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let (code, report) = audit(cp, policy, &[]);
        assert_eq!(code, Some(0), "audit after {step}: {report:#}");
        let audit = audit_counts(&report);
        let gauge = gauge_counts(webhook).await;
        if audit == gauge {
            let took = start.elapsed();
            eprintln!("gauge agrees with audit after {step} in {took:?}: {gauge:?}");
            return took;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "after {step}, the gauge still disagrees with audit after {PATIENCE:?}:\n\
             audit: {audit:?}\ngauge: {gauge:?}\nreport: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
