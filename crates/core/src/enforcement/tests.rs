use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::admission;
use crate::answer::Outcome;
use crate::mutate;

const REVIEW: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/job-pod-review.json"
));

fn policy(yaml_extra: &str) -> Policy {
    let yaml = format!(
        "defaultClass: small\n{yaml_extra}classes:\n  small:\n    build: {{ limits: {{ cpu: \"2\" }} }}\n    max: {{ cpu: \"4\", memory: 8Gi }}\n  strict:\n    enforcement: enforce\n    match: {{ namespaces: [strict] }}\n    max: {{ cpu: \"4\", memory: 8Gi }}\n"
    );
    Policy::parse(&yaml, "test.yaml").expect("valid policy")
}

fn labels(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), value.to_string())])
}

/// What a review came to: its outcome and class.
struct Seen {
    outcome: Outcome,
    class: Option<String>,
}

/// The fixture review, answered with the namespace labelled `pod-policy=<value>`.
fn review_in(policy: &Policy, value: &str, review: &str) -> (Seen, Value) {
    let labels = labels(value);
    let parsed = admission::parse(review.as_bytes()).expect("readable review");
    let response =
        admission::respond(policy, NamespaceFacts::Labels(&labels), &parsed).expect("answered");
    let body: Value = serde_json::from_slice(&response.body).expect("json");
    let seen = Seen {
        outcome: response.answer.outcome,
        class: response.answer.class().map(str::to_string),
    };
    (seen, body)
}

fn warnings(body: &Value) -> Vec<String> {
    body.pointer("/response/warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_warn_namespace_is_allowed_unchanged_and_told_what_enforce_would_do() {
    let policy = policy("");
    let (answer, body) = review_in(&policy, "warn", REVIEW);
    assert_eq!(body.pointer("/response/allowed"), Some(&Value::Bool(true)));
    assert!(body.pointer("/response/patch").is_none(), "{body}");
    assert_eq!(answer.outcome, Outcome::WouldMutate);
    assert_eq!(answer.class.as_deref(), Some("small"));
    let warnings = warnings(&body);
    assert!(
        warnings[0].contains("warn mode, class small"),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w == "would set spec.containers[build].resources.limits.cpu: 5 → 4"),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("ci.skao.int/class")),
        "bookkeeping annotations are not worth a warning: {warnings:?}"
    );
    let audit = body.pointer("/response/auditAnnotations").expect("audit");
    assert_eq!(audit["mode"], "warn");
    assert_eq!(audit["class"], "small");
    assert_eq!(audit["would"], "mutate");
}

#[test]
fn warnings_name_containers_when_the_pod_was_read_in_the_same_pass() {
    // The server's parse: the pod is read on the way and no raw object is kept.
    let labels = labels("warn");
    let parsed = admission::parse_with(REVIEW.as_bytes(), |_| true).expect("readable");
    assert!(parsed.request.pod.is_some() && parsed.request.object.is_none());
    let policy = policy("");
    let answer =
        admission::respond(&policy, NamespaceFacts::Labels(&labels), &parsed).expect("answered");
    let body: Value = serde_json::from_slice(&answer.body).expect("json");
    let warnings = warnings(&body);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("would set spec.containers[build]")),
        "{warnings:?}"
    );
}

#[test]
fn the_same_review_in_an_enabled_namespace_is_patched() {
    let (answer, body) = review_in(&policy(""), "enabled", REVIEW);
    assert_eq!(answer.outcome, Outcome::Mutated);
    assert!(body.pointer("/response/patch").is_some());
    assert!(body.pointer("/response/auditAnnotations/mode").is_none());
}

#[test]
fn a_warn_policy_warns_and_a_class_can_insist_on_enforce() {
    let policy = policy("enforcement: warn\n");
    assert_eq!(policy.classes[0].enforcement, Enforcement::Warn);
    assert_eq!(policy.classes[1].enforcement, Enforcement::Enforce);
    let (answer, _) = review_in(&policy, "enabled", REVIEW);
    assert_eq!(answer.outcome, Outcome::WouldMutate);

    let strict = REVIEW.replace("\"namespace\": \"gitlab\"", "\"namespace\": \"strict\"");
    assert_ne!(strict, REVIEW, "the fixture names its namespace");
    let (answer, _) = review_in(&policy, "enabled", &strict);
    assert_eq!(answer.class.as_deref(), Some("strict"));
    assert_eq!(answer.outcome, Outcome::Mutated);
    // The namespace label wins over the class.
    let (answer, _) = review_in(&policy, "warn", &strict);
    assert_eq!(answer.outcome, Outcome::WouldMutate);
}

#[test]
fn a_denial_in_warn_mode_is_allowed_with_the_reason() {
    let review = REVIEW.replace(
        "\"job.runner.gitlab.com/id\"",
        "\"ci.skao.int/cpu-limit\": \"lots\", \"job.runner.gitlab.com/id\"",
    );
    let (enforced, _) = review_in(&policy(""), "enabled", &review);
    assert_eq!(enforced.outcome, Outcome::Denied);
    let (answer, body) = review_in(&policy(""), "warn", &review);
    assert_eq!(answer.outcome, Outcome::WouldDeny);
    assert_eq!(body.pointer("/response/allowed"), Some(&Value::Bool(true)));
    let warnings = warnings(&body);
    assert!(warnings[0].contains("would deny:"), "{warnings:?}");
    assert!(warnings[0].contains("cpu-limit"), "{warnings:?}");
    assert_eq!(body["response"]["auditAnnotations"]["would"], "deny");
}

#[test]
fn skipped_requests_have_no_mode_to_warn_in() {
    let policy = policy("enforcement: warn\n");
    let labels = labels("warn");
    let decision = Decision::Skip(mutate::SkipReason::NotJobPod);
    assert_eq!(
        mode(&policy, NamespaceFacts::Labels(&labels), &decision),
        Enforcement::Enforce
    );
    assert_eq!(would(&policy, &decision), (Would::Nothing, Vec::new()));
}

#[test]
fn warnings_fit_the_api_servers_limits() {
    let long = "x".repeat(300);
    let fitted = fit(vec![long]);
    assert_eq!(fitted[0].chars().count(), MAX_WARNING_CHARS);
    assert!(fitted[0].ends_with('…'));

    let many: Vec<String> = (0..40).map(|i| format!("warning {i}")).collect();
    let fitted = fit(many);
    assert_eq!(fitted.len(), MAX_WARNINGS);
    assert_eq!(fitted.last().map(String::as_str), Some("... and 25 more"));

    let wide: Vec<String> = (0..15).map(|_| "y".repeat(250)).collect();
    let fitted = fit(wide);
    let total: usize = fitted.iter().map(|w| w.chars().count()).sum();
    assert!(total <= WARNINGS_BUDGET, "{total}");
    assert!(fitted.last().is_some_and(|w| w.starts_with("... and ")));

    let few = vec!["a".to_string(), "b".to_string()];
    assert_eq!(fit(few.clone()), few);
    let exactly: Vec<String> = (0..MAX_WARNINGS).map(|i| i.to_string()).collect();
    assert_eq!(fit(exactly.clone()), exactly);
}

#[test]
fn the_cores_own_warnings_are_kept_when_enforce_would_change_nothing() {
    let policy = policy("");
    let mutation = mutate::Mutation {
        chosen: mutate::Chosen {
            class: &policy.classes[0],
            reason: mutate::ClassReason::Default,
        },
        pod: "p".into(),
        patch: mutate::Patch::default(),
        warnings: vec!["gpus ignored: class small has no GPUs".into()],
        overrides: Vec::new(),
        refused: Vec::new(),
    };
    let (would, warnings) = would(&policy, &Decision::Allow(mutation));
    assert_eq!(would, Would::Nothing);
    assert_eq!(warnings, ["gpus would be ignored: class small has no GPUs"]);
}

#[test]
fn warn_mode_words_the_cores_warnings_as_what_enforce_would_do() {
    for (enforced, warned) in [
        (
            "ci.skao.int/cpu-limit: 20 is above the ceiling of class small; using 4",
            "ci.skao.int/cpu-limit: 20 is above the ceiling of class small; would use 4",
        ),
        (
            "build: limits.cpu 12 lowered to the ceiling 4 of class small",
            "build: limits.cpu 12 would be lowered to the ceiling 4 of class small",
        ),
        (
            "build: limits.cpu raised to 3 to match the requested cpu",
            "build: limits.cpu would be raised to 3 to match the requested cpu",
        ),
        (
            "build: env NVIDIA_VISIBLE_DEVICES=\"all\" removed: it would choose the node's GPUs",
            "build: env NVIDIA_VISIBLE_DEVICES=\"all\" would be removed: it would choose the node's GPUs",
        ),
        (
            "nodeSelector a=b replaced by a=c (class small)",
            "nodeSelector a=b would be replaced by a=c (class small)",
        ),
        (
            "build: JOB_CPUS not set: an envFrom source of the container may set it",
            "build: JOB_CPUS would not be set: an envFrom source of the container may set it",
        ),
        (
            "Docker not configured: the namespace enforces Pod Security \"baseline\"",
            "Docker would not be configured: the namespace enforces Pod Security \"baseline\"",
        ),
        // Facts about the class choice hold in both modes.
        (
            "namespace label ci.skao.int/runner-class=x names no class in the policy; choosing by match rules",
            "namespace label ci.skao.int/runner-class=x names no class in the policy; choosing by match rules",
        ),
    ] {
        assert_eq!(conditional(enforced), warned);
    }
}
