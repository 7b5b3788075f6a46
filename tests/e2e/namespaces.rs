//! The namespace watcher against the real API server, running as the webhook's own
//! ServiceAccount with nothing but manifests/base's RBAC.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use serde_json::Value;

use crate::support::e2e::*;

/// How soon a label change must reach the running webhook.
const LABEL_DEADLINE: Duration = Duration::from_secs(2);

/// Dry-runs a job pod until its class annotation is `class` (`None`: no annotation),
/// for at most `deadline`; returns how long that took.
async fn until_class(ns: &TestNamespace<'_>, class: Option<&str>, deadline: Duration) -> Duration {
    let pod = job_pod("gitlab-runner-16.5-job-pod.json");
    let start = Instant::now();
    loop {
        let stored = ns.dry_run_pod(&pod).await.expect("dry-run create");
        let seen = annotations(&stored)
            .get("ci.skao.int/class")
            .and_then(Value::as_str)
            .map(str::to_string);
        if seen.as_deref() == class {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "class {class:?} not applied within {deadline:?}; still {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn labelling_a_namespace_reaches_the_running_webhook_within_two_seconds() {
    let cp = ControlPlane::shared().await;
    cp.webhook().await;
    let ns = cp.namespace("labelled-later", &[]).await;
    until_class(&ns, None, LABEL_DEADLINE).await;

    ns.label(&[OPT_IN_SET]).await;
    until_class(&ns, Some("k8srunner"), LABEL_DEADLINE).await;

    ns.label(&[(RUNNER_CLASS, Some("k8srunner-large"))]).await;
    until_class(&ns, Some("k8srunner-large"), LABEL_DEADLINE).await;

    // Opted out again: the class label alone changes nothing.
    ns.label(&[(OPT_IN.0, None)]).await;
    until_class(&ns, None, LABEL_DEADLINE).await;
}

const OPT_IN_SET: (&str, Option<&str>) = (OPT_IN.0, Some(OPT_IN.1));

#[tokio::test]
#[ignore = "e2e: needs KUBEBUILDER_ASSETS and kubectl; see docs/e2e.md"]
async fn the_watcher_runs_as_the_webhook_service_account_with_only_the_base_rbac() {
    let cp = ControlPlane::shared().await;
    let webhook = cp.webhook().await;

    // The server's kubeconfig holds a token of the ServiceAccount, and the API server
    // knows it as that account.
    let kubeconfig = cp.service_account_kubeconfig().await;
    let output = kubectl(
        Some(kubeconfig),
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("system:serviceaccount:{WEBHOOK_NAMESPACE}:{WEBHOOK_ACCOUNT}")
    );

    // Every verb the watcher uses (list, watch, and get for a namespace the mirror has
    // not seen yet) works with that token, and nothing more is granted.
    let client = support_client(kubeconfig).await;
    let namespaces = Api::<Namespace>::all(client.clone());
    let list = namespaces
        .list_metadata(&ListParams::default())
        .await
        .expect("list");
    namespaces.get_metadata("default").await.expect("get");
    let version = list.metadata.resource_version.expect("resourceVersion");
    let mut watch = namespaces
        .watch_metadata(&WatchParams::default().timeout(1), &version)
        .await
        .expect("watch")
        .boxed();
    while let Some(event) = watch.next().await {
        assert!(
            !matches!(event, Ok(WatchEvent::Error(_))),
            "watch: {event:?}"
        );
    }
    // The base ClusterRole reads (namespaces; RuntimeClasses; job pods for the live
    // audit) and writes nothing.
    let account = format!("system:serviceaccount:{WEBHOOK_NAMESPACE}:{WEBHOOK_ACCOUNT}");
    let can = |verb: &str, resource: &str| {
        let output = cp.kubectl(&["auth", "can-i", verb, resource, "--as", &account], None);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    for (verb, resource) in [
        ("list", "pods"),
        ("watch", "pods"),
        ("list", "runtimeclasses.node.k8s.io"),
        ("watch", "runtimeclasses.node.k8s.io"),
    ] {
        assert_eq!(can(verb, resource), "yes", "{verb} {resource}");
    }
    for (verb, resource) in [
        ("get", "pods"),
        ("create", "pods"),
        ("patch", "namespaces"),
        ("list", "secrets"),
        ("list", "nodes"),
    ] {
        assert_eq!(
            can(verb, resource),
            "no",
            "{verb} {resource}: read-only, no more"
        );
    }

    // Every watch synced (readiness waits for the namespace one only) and none ever
    // met a refusal.
    let start = std::time::Instant::now();
    let synced = |lines: &[serde_json::Value], what: &str| {
        lines
            .iter()
            .any(|l| l["message"] == "watch synced" && l["what"] == what)
    };
    for what in ["namespace", "RuntimeClass", "job pod"] {
        while !synced(&webhook.log_lines(), what) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the {what} watch did not sync"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let lines = webhook.log_lines();
    // Not a bare "403": uids and latencies in the review lines contain those digits.
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains("code: 403") && !text.to_lowercase().contains("forbidden"),
            "the webhook met a refusal: {text}"
        );
    }
}

async fn support_client(kubeconfig: &std::path::Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    kube::Client::try_from(config).expect("client")
}
