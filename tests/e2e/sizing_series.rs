//! The evidence `sizing` and the OOM alert read (issue 27, points 1 and 3), on a real
//! kube-apiserver: `ci_pod_webhook_job_pod_info` for job pods in enabled, warn and
//! not-opted-in namespaces, and `ci_pod_webhook_job_container_terminations_total` from
//! pod statuses written through the status subresource, as a kubelet writes them,
//! across a restart of the webhook and with two replicas; a namespace that opts in
//! later has its pods' mode follow.
//!
//! A control plane of its own: the termination counter has no namespace label, so
//! another test's pod statuses would count too. The webhooks started here are not
//! registered: they only watch.

use std::time::{Duration, Instant};

use crate::support::e2e::*;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const V17_9: &str = "gitlab-runner-17.9-job-pod.json";
const PROJECT: &str = "12345678";
const OPT_IN_LABEL: (&str, Option<&str>) = (OPT_IN.0, Some(OPT_IN.1));

fn info(namespace: &str, pod: &str, mode: &str) -> String {
    format!(
        "ci_pod_webhook_job_pod_info{{namespace=\"{namespace}\",pod=\"{pod}\",class=\"k8srunner\",mode=\"{mode}\",project=\"{PROJECT}\"}} 1"
    )
}

fn terminations(role: &str, reason: &str, count: u32) -> String {
    format!(
        "ci_pod_webhook_job_container_terminations_total{{class=\"k8srunner\",role=\"{role}\",reason=\"{reason}\"}} {count}"
    )
}

/// The lines of the webhook's /metrics that are about these namespaces or terminations.
async fn evidence(webhook: &Webhook, namespaces: &[&str]) -> Vec<String> {
    webhook
        .metrics()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("ci_pod_webhook_job_container_terminations_total{")
                || (l.starts_with("ci_pod_webhook_job_pod_info{")
                    && namespaces
                        .iter()
                        .any(|ns| l.contains(&format!("namespace=\"{ns}\""))))
        })
        .map(str::to_string)
        .collect()
}

/// Waits until the webhook's evidence lines are exactly `want` (in any order).
async fn evidence_is(webhook: &Webhook, namespaces: &[&str], want: &[String]) {
    let start = Instant::now();
    let mut want = want.to_vec();
    want.sort();
    loop {
        let mut got = evidence(webhook, namespaces).await;
        got.sort();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "within {PATIENCE:?}, wanted\n{}\ngot\n{}",
            want.join("\n"),
            got.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Now, to the second, as a kubelet writes times.
fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("a time")
        .format(&Rfc3339)
        .expect("RFC 3339")
}

/// Writes a pod's status as the kubelet would: `container` terminated with `reason`.
async fn terminate(cp: &ControlPlane, namespace: &str, pod: &str, container: &str, reason: &str) {
    let finished = now();
    let status = json!({"status": {
        "phase": "Running",
        "containerStatuses": [{
            "name": container,
            "ready": false,
            "restartCount": 0,
            "image": "registry.example/build:1",
            "imageID": "",
            "containerID": format!("containerd://{namespace}-{pod}-{container}"),
            "state": {"terminated": {
                "exitCode": if reason == "Completed" { 0 } else { 137 },
                "reason": reason,
                "startedAt": finished,
                "finishedAt": finished,
                "containerID": format!("containerd://{namespace}-{pod}-{container}"),
            }},
        }],
    }});
    let api = kube::Api::<DynamicObject>::namespaced_with(
        cp.client().await,
        namespace,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    );
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("patch the status of {namespace}/{pod}: {e}"));
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn job_pod_info_and_terminations_across_a_restart_and_two_replicas() {
    let cp = ControlPlane::own("sizing-series", Options::default()).await;
    let enabled = cp.namespace("sizing-enabled", &[OPT_IN]).await;
    let warn = cp
        .namespace("sizing-warn", &[("ci.skao.int/pod-policy", "warn")])
        .await;
    let off = cp.namespace("sizing-off", &[]).await;
    let names = [enabled.name.as_str(), warn.name.as_str(), off.name.as_str()];
    let pod = job_pod(V17_9);
    let name = pod["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    for ns in [&enabled, &warn, &off] {
        ns.create_pod(&pod).await.expect("pod created");
    }
    let mut want = vec![
        info(&enabled.name, &name, "enabled"),
        info(&warn.name, &name, "warn"),
        info(&off.name, &name, "off"),
    ];

    // Every job pod, whatever its namespace's mode, with the class the policy gives.
    let first = cp.start_webhook().await;
    evidence_is(&first, &names, &want).await;

    // The kubelet reports an OOM kill and a job that ended: each counted once, however
    // many times the status is seen.
    terminate(&cp, &enabled.name, &name, "build", "OOMKilled").await;
    terminate(&cp, &off.name, &name, "build", "Completed").await;
    want.push(terminations("build", "OOMKilled", 1));
    want.push(terminations("build", "Completed", 1));
    evidence_is(&first, &names, &want).await;

    // A restart: the new process lists the same pods and their terminations, which its
    // predecessor counted; it counts none of them again.
    first.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = cp.start_webhook().await;
    let listed: Vec<String> = want
        .iter()
        .filter(|l| l.starts_with("ci_pod_webhook_job_pod_info"))
        .cloned()
        .collect();
    evidence_is(&second, &names, &listed).await;
    // Two replicas: both export every job pod.
    let replica = cp.start_webhook().await;
    evidence_is(&replica, &names, &listed).await;

    // A namespace that opts in: its pods' mode follows, on both replicas.
    off.label(&[OPT_IN_LABEL]).await;
    let listed: Vec<String> = listed
        .iter()
        .map(|l| {
            if l.contains(&format!("namespace=\"{}\"", off.name)) {
                info(&off.name, &name, "enabled")
            } else {
                l.clone()
            }
        })
        .collect();
    evidence_is(&second, &names, &listed).await;
    evidence_is(&replica, &names, &listed).await;

    // A kill after both started: each replica counts it once (queries take the max).
    terminate(&cp, &warn.name, &name, "build", "OOMKilled").await;
    let mut after = listed.clone();
    after.push(terminations("build", "OOMKilled", 1));
    evidence_is(&second, &names, &after).await;
    evidence_is(&replica, &names, &after).await;

    // The series goes with the pod.
    let pods =
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(cp.client().await, &warn.name);
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete the pod");
    let gone: Vec<String> = after
        .iter()
        .filter(|l| !l.contains(&format!("namespace=\"{}\"", warn.name)))
        .cloned()
        .collect();
    evidence_is(&second, &names, &gone).await;
}
