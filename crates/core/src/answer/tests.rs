use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::admission::{self, PodReview};
use crate::mutate::NamespaceFacts;

fn job_pod(annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": "runner-abc-project-1-concurrent-0-x", "annotations": annotations},
        "spec": {"containers": [{"name": "build"}, {"name": "helper"}]}
    })
}

/// The answer to a CREATE of `pod` in namespace `gitlab`, labelled `pod-policy=<mode>`.
fn answer_in<'p>(policy: &'p Policy, mode: &str, pod: &serde_json::Value) -> Answer<'p> {
    let labels = BTreeMap::from([("ci.skao.int/pod-policy".to_string(), mode.to_string())]);
    let body = PodReview::create("gitlab", pod).to_json();
    let review = admission::parse(&body).expect("readable");
    decide(policy, NamespaceFacts::Labels(&labels), &review.request).expect("a pod")
}

#[test]
fn an_enforced_change_is_the_patch_with_the_class_in_the_audit_annotations() {
    let policy = Policy::embedded();
    let answer = answer_in(&policy, "enabled", &job_pod(json!({})));
    assert_eq!(answer.outcome, Outcome::Mutated);
    assert!(answer.allowed && answer.status.is_none());
    let patch = answer.patch().expect("a patch");
    assert_eq!(answer.patch_operations(), patch.len());
    assert!(
        patch.len() > 2,
        "resources for build and helper, annotations"
    );
    assert_eq!(answer.class(), Some("k8srunner"));
    assert_eq!(answer.audit_annotations["class"], "k8srunner");
    assert_eq!(answer.audit_annotations["policy"], policy.hash);
    assert_eq!(answer.pod(), "runner-abc-project-1-concurrent-0-x");
}

#[test]
fn warn_mode_applies_nothing_and_says_what_enforce_would_do() {
    let policy = Policy::embedded();
    let answer = answer_in(
        &policy,
        "warn",
        &job_pod(json!({"ci.skao.int/cpu-limit": "2"})),
    );
    assert_eq!(answer.outcome, Outcome::WouldMutate);
    assert!(answer.allowed);
    assert!(answer.patch().is_none(), "nothing is applied in warn mode");
    assert_eq!(answer.patch_operations(), 0);
    let would = answer.changes().expect("the changes enforce would make");
    assert!(!would.is_empty());
    assert!(
        answer.overrides().is_empty() && answer.refused().is_empty(),
        "warn mode applies no override and refuses nothing"
    );
    assert!(
        answer.warnings[0].contains("warn mode"),
        "{:?}",
        answer.warnings
    );
    assert!(
        answer
            .warnings
            .iter()
            .any(|w| w.starts_with("would set spec.containers[build].resources")),
        "changes name their container: {:?}",
        answer.warnings
    );
    assert_eq!(answer.audit_annotations["mode"], "warn");
    assert_eq!(answer.audit_annotations["would"], "mutate");
}

#[test]
fn a_denial_is_forbidden_with_the_reason_and_allowed_in_warn_mode() {
    let policy = Policy::embedded();
    let pod = job_pod(json!({"ci.skao.int/cpu-limit": "lots"}));
    let denied = answer_in(&policy, "enabled", &pod);
    assert_eq!(denied.outcome, Outcome::Denied);
    assert!(!denied.allowed);
    let status = denied.status.as_ref().expect("a status");
    assert_eq!((status.code, status.reason), (403, "Forbidden"));
    assert!(status.message.starts_with("ci-pod-webhook: "), "{status:?}");
    assert!(status.message.contains("cpu-limit"), "{status:?}");
    assert_eq!(Some(&status.message[16..]), denied.denial());
    assert!(denied.patch().is_none() && denied.changes().is_none());

    let warned = answer_in(&policy, "warn", &pod);
    assert_eq!(warned.outcome, Outcome::WouldDeny);
    assert!(warned.allowed && warned.status.is_none());
    assert_eq!(warned.audit_annotations["would"], "deny");
    assert_eq!(
        warned
            .audit_annotations
            .get("wouldDeny")
            .map(String::as_str),
        denied.denial()
    );
}

#[test]
fn a_skipped_request_is_allowed_with_nothing_else() {
    let policy = Policy::embedded();
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}});
    let answer = answer_in(&policy, "enabled", &pod);
    assert_eq!(answer.outcome, Outcome::Skipped);
    assert_eq!(answer.skip_reason(), Some(SkipReason::NotJobPod));
    assert!(answer.allowed && answer.warnings.is_empty());
    assert!(answer.audit_annotations.is_empty() && answer.status.is_none());
    assert_eq!((answer.class(), answer.pod()), (None, ""));
}
