use k8s_openapi::api::core::v1::Namespace;
use kube::core::{ObjectMeta, PartialObjectMeta};
use serde_json::{Value, json};

use std::sync::Arc;

use super::*;
use crate::cluster::namespace_mirror;
use crate::cluster::watcher::Tick;
use ci_pod_webhook_core::policy::Policy;

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

/// The server's judge, on the embedded policy.
fn judge() -> Judge {
    let policy: Arc<dyn InForce> = Arc::new(Policy::embedded());
    Judge::new(move || policy.clone())
}

fn pod(namespace: &str, name: &str, class_annotation: bool) -> DynamicObject {
    let review: Value = serde_json::from_str(REVIEW).expect("json");
    let mut pod = review["request"]["object"].clone();
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["name"] = json!(name);
    if class_annotation {
        pod["metadata"]["annotations"]["ci.skao.int/class"] = json!("k8srunner");
    }
    serde_json::from_value(pod).expect("a DynamicObject")
}

fn store() -> (PodVerdicts, Family<JobPodLabels, Gauge>) {
    let (reader, mut writer) = namespace_mirror::mirror();
    writer.apply(Event::Apply(namespace("ci", Some("enabled"))));
    writer.apply(Event::Apply(namespace("apps", None)));
    let gauge = Family::<JobPodLabels, Gauge>::default();
    (PodVerdicts::new(reader, judge(), gauge.clone()), gauge)
}

fn count(gauge: &Family<JobPodLabels, Gauge>, verdict: Verdict) -> i64 {
    gauge
        .get_or_create(&JobPodLabels {
            class: "k8srunner".into(),
            verdict: verdict.as_str(),
        })
        .get()
}

#[test]
fn a_listed_job_pod_without_a_class_counts_as_unpolicied_only_in_opted_in_namespaces() {
    let (mut store, gauge) = store();
    store.apply(Event::Init);
    store.apply(Event::InitApply(pod("ci", "a", false)));
    store.apply(Event::InitApply(pod("apps", "b", false)));
    assert_eq!(
        count(&gauge, Verdict::Unpolicied),
        0,
        "only a whole list is counted"
    );
    assert_eq!(store.apply(Event::InitDone), Applied::Listed);
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
    assert_eq!(
        store.held(),
        1,
        "the pod outside opted-in namespaces is not kept"
    );
}

#[test]
fn updates_move_a_pod_between_verdicts_and_deletes_forget_it() {
    let (mut store, gauge) = store();
    store.apply(Event::Apply(pod("ci", "a", false)));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
    // Only the class annotation: the rest of the policy is still missing.
    store.apply(Event::Apply(pod("ci", "a", true)));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 0);
    assert_eq!(count(&gauge, Verdict::Drift), 1);
    store.apply(Event::Delete(pod("ci", "a", true)));
    assert_eq!(count(&gauge, Verdict::Drift), 0);
    assert_eq!(store.held(), 0);
}

#[test]
fn a_relist_replaces_the_counts_and_drops_series_of_pods_gone() {
    let (mut store, gauge) = store();
    store.apply(Event::Apply(pod("ci", "a", false)));
    store.apply(Event::Apply(pod("ci", "b", false)));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 2);
    store.apply(Event::Init);
    store.apply(Event::InitApply(pod("ci", "b", true)));
    store.apply(Event::InitDone);
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("job_pods", "test", gauge.clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(!text.contains("unpolicied"), "{text}");
    assert!(
        text.contains(r#"job_pods{class="k8srunner",verdict="drift"} 1"#),
        "{text}"
    );
}

#[test]
fn a_pod_seen_before_its_namespace_is_judged_once_the_namespace_arrives() {
    let (reader, mut namespaces) = namespace_mirror::mirror();
    let gauge = Family::<JobPodLabels, Gauge>::default();
    let mut store = PodVerdicts::new(reader, judge(), gauge.clone());
    store.apply(Event::Init);
    store.apply(Event::InitDone);

    // The pod's watch event comes first: nothing to judge it by yet.
    store.apply(Event::Apply(pod("new", "a", false)));
    assert_eq!(store.tick(), Tick::Idle);
    assert_eq!(count(&gauge, Verdict::Unpolicied), 0);
    assert_eq!(store.held(), 0);

    namespaces.apply(Event::Apply(namespace("new", Some("enabled"))));
    store.tick();
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
    assert_eq!(store.held(), 1);

    // A pod deleted while it waits is not counted later.
    store.apply(Event::Apply(pod("newer", "b", false)));
    store.apply(Event::Delete(pod("newer", "b", false)));
    namespaces.apply(Event::Apply(namespace("newer", Some("enabled"))));
    store.tick();
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
}

#[test]
fn a_pod_waiting_for_a_namespace_that_never_opts_in_is_dropped_uncounted() {
    let (reader, mut namespaces) = namespace_mirror::mirror();
    let gauge = Family::<JobPodLabels, Gauge>::default();
    let mut store = PodVerdicts::new(reader, judge(), gauge.clone());
    store.apply(Event::Apply(pod("apps", "a", false)));
    namespaces.apply(Event::Apply(namespace("apps", None)));
    store.tick();
    assert_eq!(store.held(), 0);
    assert!(store.waiting.is_empty());
}

fn gauge_text(gauge: &Family<JobPodLabels, Gauge>) -> String {
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("job_pods", "test", gauge.clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

#[test]
fn a_pod_with_two_verdicts_counts_under_both() {
    let (mut store, gauge) = store();
    let mut refused = pod("ci", "a", false);
    refused
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("ci.skao.int/cpu-limit".into(), "lots".into());
    store.apply(Event::Apply(refused.clone()));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
    assert_eq!(count(&gauge, Verdict::WouldDeny), 1);
    store.apply(Event::Delete(refused));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 0);
    assert_eq!(count(&gauge, Verdict::WouldDeny), 0);
}

#[test]
fn a_namespace_that_opts_in_changes_mode_or_out_asks_for_every_pod_again() {
    let (reader, mut namespaces) = namespace_mirror::mirror();
    namespaces.apply(Event::Apply(namespace("ci", None)));
    namespaces.apply(Event::Apply(namespace("apps", None)));
    let gauge = Family::<JobPodLabels, Gauge>::default();
    let mut store = PodVerdicts::new(reader, judge(), gauge.clone());
    store.apply(Event::Init);
    store.apply(Event::InitApply(pod("ci", "a", false)));
    store.apply(Event::InitDone);
    assert_eq!(store.held(), 0, "not opted in: nothing kept");
    assert_eq!(
        store.tick(),
        Tick::Idle,
        "a namespace that appears is no change"
    );

    // A label the policy does not read, on a namespace that is not audited: nothing.
    let mut team = namespace("apps", None);
    team.metadata.labels = Some(BTreeMap::from([("team".into(), "x".into())]));
    namespaces.apply(Event::Apply(team));
    assert_eq!(store.tick(), Tick::Idle);

    for (opt_in, why) in [
        (Some("enabled"), "opts in"),
        (Some("warn"), "changes mode"),
        (None, "opts out"),
    ] {
        namespaces.apply(Event::Apply(namespace("ci", opt_in)));
        assert_eq!(store.tick(), Tick::Relist, "the namespace {why}");
        assert_eq!(store.tick(), Tick::Idle, "once per change");
    }
}

#[test]
fn a_namespace_gone_takes_its_pods_records_with_it() {
    let (reader, mut namespaces) = namespace_mirror::mirror();
    namespaces.apply(Event::Apply(namespace("ci", Some("enabled"))));
    let gauge = Family::<JobPodLabels, Gauge>::default();
    let mut store = PodVerdicts::new(reader, judge(), gauge.clone());
    store.apply(Event::Apply(pod("ci", "a", false)));
    assert_eq!(count(&gauge, Verdict::Unpolicied), 1);
    namespaces.apply(Event::Delete(namespace("ci", Some("enabled"))));
    assert_eq!(store.tick(), Tick::Idle, "no relist: the records go");
    assert_eq!(store.held(), 0);
    assert!(gauge_text(&gauge).contains(r#"verdict="unpolicied"} 0"#));
}

#[test]
fn changes_made_while_the_namespace_watch_was_away_are_seen_at_its_relist() {
    let (reader, mut namespaces) = namespace_mirror::mirror();
    namespaces.apply(Event::Init);
    namespaces.apply(Event::InitApply(namespace("ci", None)));
    namespaces.apply(Event::InitDone);
    let gauge = Family::<JobPodLabels, Gauge>::default();
    let mut store = PodVerdicts::new(reader, judge(), gauge);
    assert_eq!(store.tick(), Tick::Idle);
    // The watch restarts: its relist finds the namespace opted in meanwhile.
    namespaces.apply(Event::Init);
    namespaces.apply(Event::InitApply(namespace("ci", Some("enabled"))));
    namespaces.apply(Event::InitDone);
    assert_eq!(store.tick(), Tick::Relist);
}
