use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{ObjectMeta, PartialObjectMeta};
use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::cluster::namespace_mirror;

const REVIEW: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/job-pod-review.json"
));

fn namespace(name: &str, opt_in: Option<&str>) -> PartialObjectMeta<Namespace> {
    PartialObjectMeta {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: opt_in
                .map(|v| BTreeMap::from([("ci.skao.int/pod-policy".to_owned(), v.to_owned())])),
            ..ObjectMeta::default()
        },
        ..PartialObjectMeta::default()
    }
}

/// The fixture job pod in `namespace`, GitLab project 42, with `status`.
fn pod(namespace: &str, name: &str, status: Value) -> DynamicObject {
    let review: Value = serde_json::from_str(REVIEW).expect("json");
    let mut pod = review["request"]["object"].clone();
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["labels"][PROJECT_LABEL] = json!("42");
    pod["status"] = status;
    serde_json::from_value(pod).expect("a DynamicObject")
}

fn terminated(container: &str, id: &str, reason: &str, finished: &str) -> Value {
    json!({"name": container, "state": {"terminated": {
        "containerID": id, "reason": reason, "exitCode": 137,
        "startedAt": "2026-05-01T09:00:00Z", "finishedAt": finished}}})
}

const SINCE: &str = "2026-05-01T10:00:00Z";

fn observer() -> (Observer, Registry) {
    let (reader, mut writer) = namespace_mirror::mirror();
    writer.apply(Event::Apply(namespace("ci", Some("enabled"))));
    writer.apply(Event::Apply(namespace("trial", Some("warn"))));
    writer.apply(Event::Apply(namespace("apps", None)));
    let policy = Policy::embedded();
    let info = Family::<JobPodInfoLabels, Gauge>::default();
    let terminations = Family::<TerminationLabels, Counter>::default();
    let mut registry = Registry::with_prefix("ci_pod_webhook");
    registry.register("job_pod_info", "test", info.clone());
    registry.register("job_container_terminations", "test", terminations.clone());
    let series = JobPodSeries {
        classify: Box::new(move |namespace, labels, pod| classify(&policy, namespace, labels, pod)),
        info,
        terminations,
        since: OffsetDateTime::parse(SINCE, &Rfc3339).expect("time"),
    };
    (Observer::new(series, reader), registry)
}

fn text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

/// The info series, sorted (a family encodes in hash order).
fn info_lines(registry: &Registry) -> Vec<String> {
    let mut lines: Vec<String> = text(registry)
        .lines()
        .filter(|l| l.starts_with("ci_pod_webhook_job_pod_info{"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn terminations_of(registry: &Registry, role: &str, reason: &str) -> u64 {
    let prefix = format!(
        "ci_pod_webhook_job_container_terminations_total{{class=\"k8srunner\",role=\"{role}\",reason=\"{reason}\"}} "
    );
    text(registry)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().expect("a count"))
}

#[test]
fn every_job_pod_has_an_info_series_with_its_class_mode_and_project_until_it_goes() {
    let (mut observer, registry) = observer();
    for (namespace, name) in [("ci", "a"), ("trial", "b"), ("apps", "c")] {
        observer.observe(&Event::Apply(pod(namespace, name, json!({}))));
    }
    assert_eq!(
        info_lines(&registry),
        [
            r#"ci_pod_webhook_job_pod_info{namespace="apps",pod="c",class="k8srunner",mode="off",project="42"} 1"#,
            r#"ci_pod_webhook_job_pod_info{namespace="ci",pod="a",class="k8srunner",mode="enabled",project="42"} 1"#,
            r#"ci_pod_webhook_job_pod_info{namespace="trial",pod="b",class="k8srunner",mode="warn",project="42"} 1"#,
        ]
    );
    observer.observe(&Event::Delete(pod("trial", "b", json!({}))));
    assert_eq!(info_lines(&registry).len(), 2);
    // A relist drops what it no longer lists.
    observer.observe(&Event::Init);
    observer.observe(&Event::InitApply(pod("apps", "c", json!({}))));
    observer.observe(&Event::InitDone);
    assert_eq!(info_lines(&registry).len(), 1);
    assert!(info_lines(&registry)[0].contains(r#"pod="c""#));
}

#[test]
fn a_pod_that_is_not_a_job_pod_has_no_series() {
    let (mut observer, registry) = observer();
    let mut other = pod("ci", "web", json!({}));
    other.data["spec"]["containers"] = json!([{"name": "web", "image": "nginx"}]);
    observer.observe(&Event::Apply(other));
    assert!(info_lines(&registry).is_empty());
}

#[test]
fn each_termination_counts_once_and_only_if_it_finished_after_the_start() {
    let (mut observer, registry) = observer();
    let before = terminated(
        "helper",
        "containerd://h1",
        "Completed",
        "2026-05-01T09:59:59Z",
    );
    let oom = terminated(
        "build",
        "containerd://b1",
        "OOMKilled",
        "2026-05-01T10:05:00Z",
    );
    let status = json!({"containerStatuses": [before, oom.clone()]});
    observer.observe(&Event::InitApply(pod("ci", "a", status.clone())));
    // The same termination again (a status update, a relist, the delete): still one.
    observer.observe(&Event::Apply(pod("ci", "a", status.clone())));
    observer.observe(&Event::Init);
    observer.observe(&Event::InitApply(pod("ci", "a", status)));
    observer.observe(&Event::InitDone);
    assert_eq!(terminations_of(&registry, "build", "OOMKilled"), 1);
    assert_eq!(
        terminations_of(&registry, "helper", "Completed"),
        0,
        "finished before the start"
    );
    // The terminated container moves to lastState: the same id, not counted again; a
    // service ends with a reason the runtime made up; an init container completes.
    let moved = json!({
        "containerStatuses": [
            {"name": "build", "state": {"running": {}}, "lastState": oom["state"]},
            terminated("svc-0", "containerd://s1", "Strange", "2026-05-01T10:06:00Z"),
        ],
        "initContainerStatuses": [
            terminated("init-permissions", "containerd://i1", "Completed", "2026-05-01T10:01:00Z"),
        ],
    });
    observer.observe(&Event::Delete(pod("ci", "a", moved)));
    assert_eq!(terminations_of(&registry, "build", "OOMKilled"), 1);
    assert_eq!(terminations_of(&registry, "services", "Other"), 1);
    assert_eq!(terminations_of(&registry, "helper", "Completed"), 1);
    assert!(info_lines(&registry).is_empty());
}

#[test]
fn a_termination_without_a_container_id_is_told_apart_by_name_and_time() {
    let (mut observer, registry) = observer();
    let first = json!({"containerStatuses": [{"name": "build", "state": {"terminated": {
        "reason": "Error", "finishedAt": "2026-05-01T11:00:00Z"}}}]});
    observer.observe(&Event::Apply(pod("ci", "a", first.clone())));
    observer.observe(&Event::Apply(pod("ci", "a", first)));
    assert_eq!(terminations_of(&registry, "build", "Error"), 1);
}

#[test]
fn a_pod_seen_before_its_namespace_gets_its_mode_once_the_namespace_arrives() {
    let (reader, mut writer) = namespace_mirror::mirror();
    let (mut observer, registry) = observer();
    observer.namespaces = reader;
    observer.observe(&Event::Apply(pod("late", "a", json!({}))));
    assert!(info_lines(&registry)[0].contains(r#"mode="off""#));
    writer.apply(Event::Apply(namespace("late", Some("warn"))));
    observer.tick();
    assert_eq!(
        info_lines(&registry),
        [
            r#"ci_pod_webhook_job_pod_info{namespace="late",pod="a",class="k8srunner",mode="warn",project="42"} 1"#
        ]
    );
    assert!(observer.waiting.is_empty());
}
