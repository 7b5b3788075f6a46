//! Table-driven tests of the core. Every allowed case is also checked to be idempotent:
//! the patch applies cleanly and a second run on the patched pod changes nothing.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

use super::*;
use crate::admission;

mod class;
mod docker;
mod gpu_workloads;
mod limits_env;

/// The default policy without `limitsEnv`, for tests that look at Docker's variables.
static NO_LIMITS_ENV: LazyLock<Policy> = LazyLock::new(|| Policy {
    limits_env: None,
    ..Policy::embedded()
});

pub(super) static DEFAULT: LazyLock<Policy> = LazyLock::new(Policy::embedded);

pub(super) fn policy_from(yaml: &str) -> Policy {
    Policy::parse(yaml, "test-policy.yaml").expect("test policy is valid")
}

/// What the core did, in a form tests can compare.
#[derive(Debug)]
pub(super) enum Out {
    Skip(SkipReason),
    Deny {
        class: String,
        message: String,
    },
    Allow {
        class: String,
        reason: ClassReason,
        pod: Value,
        warnings: Vec<String>,
        ops: usize,
        overrides: Vec<OverrideRecord>,
    },
}

impl Out {
    pub(super) fn pod(&self) -> &Value {
        match self {
            Out::Allow { pod, .. } => pod,
            other => panic!("expected an allowed pod, got {other:?}"),
        }
    }
    pub(super) fn warnings(&self) -> &[String] {
        match self {
            Out::Allow { warnings, .. } => warnings,
            other => panic!("expected an allowed pod, got {other:?}"),
        }
    }
    pub(super) fn class(&self) -> &str {
        match self {
            Out::Allow { class, .. } | Out::Deny { class, .. } => class,
            other => panic!("expected a class, got {other:?}"),
        }
    }
    pub(super) fn denial(&self) -> &str {
        match self {
            Out::Deny { message, .. } => message,
            other => panic!("expected a denial, got {other:?}"),
        }
    }
}

pub(super) struct Req {
    operation: &'static str,
    kind: Value,
    sub_resource: Option<&'static str>,
    namespace: &'static str,
    user: &'static str,
    labels: Option<BTreeMap<String, String>>,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            operation: "CREATE",
            kind: json!({"group": "", "version": "v1", "kind": "Pod"}),
            sub_resource: None,
            namespace: "gitlab",
            user: "system:serviceaccount:gitlab:gitlab-runner",
            labels: None,
        }
    }
}

pub(super) fn opted_in() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([(
        "ci.skao.int/pod-policy".to_string(),
        "enabled".to_string(),
    )]))
}

fn review_bytes(req: &Req, pod: &Value) -> Vec<u8> {
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": req.kind,
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": req.namespace,
        "operation": req.operation,
        "userInfo": {"username": req.user},
        "object": pod,
    });
    if let Some(sub) = req.sub_resource {
        request["subResource"] = json!(sub);
    }
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
        .expect("json")
}

pub(super) fn run_with(policy: &Policy, req: &Req, pod: &Value) -> Out {
    run_with_facts(policy, req, facts_of(req), pod)
}

/// The namespace facts `req` stands for: its labels, or no cluster.
fn facts_of(req: &Req) -> NamespaceFacts<'_> {
    match &req.labels {
        Some(l) => NamespaceFacts::Labels(l),
        None => NamespaceFacts::TrustSelector,
    }
}

/// As [`run_with`], with namespace facts given (ones `Req` cannot express).
pub(super) fn run_with_facts(
    policy: &Policy,
    req: &Req,
    facts: NamespaceFacts<'_>,
    pod: &Value,
) -> Out {
    let out = run_once_with_facts(policy, req, facts, pod);
    if let Out::Allow { pod: patched, .. } = &out {
        // Idempotence: the patched pod needs no further change.
        match run_once_with_facts(policy, req, facts, patched) {
            Out::Allow { ops: 0, .. } => {}
            Out::Allow {
                pod: again, ops, ..
            } => {
                panic!(
                    "second run produced {ops} operations:\nfirst:\n{patched:#}\nsecond:\n{again:#}"
                )
            }
            other => panic!("second run did not allow: {other:?}"),
        }
    }
    out
}

pub(super) fn run_once(policy: &Policy, req: &Req, pod: &Value) -> Out {
    run_once_with_facts(policy, req, facts_of(req), pod)
}

fn run_once_with_facts(policy: &Policy, req: &Req, facts: NamespaceFacts<'_>, pod: &Value) -> Out {
    let body = review_bytes(req, pod);
    let review = admission::parse(&body).expect("valid review");
    match decide(policy, facts, &review.request).expect("readable") {
        Decision::Skip(r) => Out::Skip(r),
        Decision::Deny {
            chosen, message, ..
        } => Out::Deny {
            class: chosen.class.name.clone(),
            message,
        },
        Decision::Allow(m) => {
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &m.patch.operations()).unwrap_or_else(|e| {
                panic!(
                    "patch does not apply: {e}\n{}",
                    String::from_utf8_lossy(&m.patch.to_json())
                )
            });
            Out::Allow {
                class: m.chosen.class.name.clone(),
                reason: m.chosen.reason,
                pod: patched,
                warnings: m.warnings,
                ops: m.patch.len(),
                overrides: m.overrides,
            }
        }
    }
}

pub(super) fn run(pod: &Value) -> Out {
    run_with(&DEFAULT, &Req::default(), pod)
}

/// A GitLab Runner 17.9-style job pod: build, helper, init-permissions, one service.
pub(super) fn job_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "runner-abc-project-1-concurrent-0-xyz",
            "namespace": "gitlab",
            "labels": {"pod": "runner-abc-project-1-concurrent-0"},
            "annotations": {"job.runner.gitlab.com/id": "42"}
        },
        "spec": {
            "initContainers": [{"name": "init-permissions", "image": "helper"}],
            "containers": [
                {"name": "build", "image": "alpine", "env": [{"name": "CI", "value": "true"}]},
                {"name": "helper", "image": "helper"},
                {"name": "svc-0", "image": "postgres"}
            ]
        }
    })
}

pub(super) fn with_runner(mut pod: Value, runner: &str) -> Value {
    pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] = json!(runner);
    pod
}

pub(super) fn annotate(mut pod: Value, pairs: &[(&str, &str)]) -> Value {
    for (k, v) in pairs {
        pod["metadata"]["annotations"][*k] = json!(v);
    }
    pod
}

pub(super) fn container<'v>(pod: &'v Value, name: &str) -> &'v Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .or_else(|| {
            pod["spec"]["initContainers"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == name))
        })
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub(super) fn env<'v>(pod: &'v Value, name: &str) -> Vec<(&'v str, &'v Value)> {
    container(pod, name)["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|v| (v["name"].as_str().unwrap_or(""), v))
                .collect()
        })
        .unwrap_or_default()
}

// ---- skipping ----

#[test]
fn requests_that_are_not_pod_creates_are_skipped() {
    let cases = [
        Req {
            operation: "UPDATE",
            ..Req::default()
        },
        Req {
            operation: "DELETE",
            ..Req::default()
        },
        Req {
            kind: json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
            ..Req::default()
        },
        Req {
            kind: json!({"group": "", "version": "v1", "kind": "Service"}),
            ..Req::default()
        },
        Req {
            sub_resource: Some("ephemeralcontainers"),
            ..Req::default()
        },
    ];
    for req in cases {
        assert!(matches!(
            run_with(&DEFAULT, &req, &job_pod()),
            Out::Skip(SkipReason::NotPodCreate)
        ));
    }
}

#[test]
fn namespaces_without_the_opt_in_label_are_skipped() {
    for labels in [
        BTreeMap::new(),
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "disabled".to_string())]),
        BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "Enabled".to_string())]),
        BTreeMap::from([("other.org/pod-policy".to_string(), "enabled".to_string())]),
    ] {
        let req = Req {
            labels: Some(labels),
            ..Req::default()
        };
        assert!(matches!(
            run_with(&DEFAULT, &req, &job_pod()),
            Out::Skip(SkipReason::NamespaceNotOptedIn)
        ));
    }
    let req = Req {
        labels: opted_in(),
        ..Req::default()
    };
    assert!(matches!(
        run_with(&DEFAULT, &req, &job_pod()),
        Out::Allow { .. }
    ));
}

#[test]
fn pods_that_are_not_job_pods_are_skipped() {
    let cases = [
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}}),
        json!({"metadata": {"name": "half"}, "spec": {"containers": [{"name": "build"}]}}),
        json!({"metadata": {"name": "empty"}, "spec": {}}),
        json!({"metadata": {}, "spec": {"containers": null}}),
    ];
    for pod in cases {
        assert!(
            matches!(run(&pod), Out::Skip(SkipReason::NotJobPod)),
            "{pod}"
        );
    }
}

#[test]
fn the_runner_name_label_alone_marks_a_job_pod() {
    let pod = json!({"metadata": {"labels": {"manager.runner.gitlab.com/name": "k8srunner"}}, "spec": {"containers": [{"name": "main"}]}});
    assert_eq!(run(&pod).class(), "k8srunner");
}

#[test]
fn mirror_pods_are_skipped() {
    let pod = annotate(job_pod(), &[("kubernetes.io/config.mirror", "abc")]);
    assert!(matches!(run(&pod), Out::Skip(SkipReason::MirrorPod)));
}

// ---- class choice ----

#[test]
fn each_runner_name_selects_its_own_class() {
    for class in &DEFAULT.classes {
        let out = run(&with_runner(job_pod(), &class.name));
        assert_eq!(out.class(), class.name);
        match out {
            Out::Allow {
                reason: ClassReason::Matched { facts, .. },
                ..
            } => {
                assert_eq!(
                    facts,
                    [format!(
                        "runner manager.runner.gitlab.com/name={}",
                        class.name
                    )]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_unknown_runner_gets_the_default_class() {
    let out = run(&with_runner(job_pod(), "someone-elses-runner"));
    assert_eq!(out.class(), "k8srunner");
    assert!(matches!(
        out,
        Out::Allow {
            reason: ClassReason::Default,
            ..
        }
    ));
}

#[test]
fn the_namespace_class_label_wins_over_the_runner_label() {
    let mut labels = opted_in().unwrap_or_default();
    labels.insert("ci.skao.int/runner-class".into(), "ska-k8srunner-dp".into());
    let req = Req {
        labels: Some(labels),
        ..Req::default()
    };
    let out = run_with(&DEFAULT, &req, &with_runner(job_pod(), "k8srunner-xlarge"));
    assert_eq!(out.class(), "ska-k8srunner-dp");
    assert!(matches!(
        out,
        Out::Allow {
            reason: ClassReason::NamespaceLabel { .. },
            ..
        }
    ));
}

#[test]
fn a_namespace_label_naming_no_class_falls_back_with_a_warning() {
    let mut labels = opted_in().unwrap_or_default();
    labels.insert("ci.skao.int/runner-class".into(), "no-such-class".into());
    let req = Req {
        labels: Some(labels),
        ..Req::default()
    };
    let out = run_with(&DEFAULT, &req, &with_runner(job_pod(), "k8srunner-large"));
    assert_eq!(out.class(), "k8srunner-large");
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("no-such-class") && w.contains("names no class"))
    );
}

#[test]
fn job_controlled_input_never_chooses_the_class() {
    // Annotations, env and look-alike labels are not trusted facts.
    let mut pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/class", "k8srunner-xlarge"),
            ("ci.skao.int/runner-class", "k8srunner-xlarge"),
        ],
    );
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "CI_RUNNER_TAGS", "value": "k8srunner-xlarge"}]);
    pod["metadata"]["labels"]["manager.runner.gitlab.com/Name"] = json!("k8srunner-xlarge");
    pod["metadata"]["labels"]["ci.skao.int/runner-class"] = json!("k8srunner-xlarge");
    let out = run(&pod);
    // ci.skao.int/runner-class as a pod annotation is an unknown override: denied.
    assert!(out.denial().contains("ci.skao.int/runner-class"));
    let pod = annotate(job_pod(), &[("ci.skao.int/class", "k8srunner-xlarge")]);
    let out = run(&pod);
    assert_eq!(out.class(), "k8srunner");
    assert_eq!(
        out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner",
        "pre-set audit key overwritten"
    );
}

#[test]
fn match_rules_need_every_fact_and_the_first_class_wins() {
    let policy = policy_from(
        "defaultClass: fallback\nclasses:\n  both:\n    match: { runnerNames: [r1], serviceAccounts: [gitlab/runner-one] }\n    max: { cpu: null, memory: null }\n  by-user:\n    match: { serviceAccounts: [gitlab/runner-two] }\n    max: { cpu: null, memory: null }\n  by-namespace:\n    match: { namespaces: [science] }\n    max: { cpu: null, memory: null }\n  by-label:\n    match: { podLabels: { team: astro } }\n    max: { cpu: null, memory: null }\n  fallback: { max: { cpu: null, memory: null } }\n",
    );
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 6] = [
        (
            "r1",
            "system:serviceaccount:gitlab:runner-one",
            "gitlab",
            None,
            "both",
        ),
        (
            "r1",
            "system:serviceaccount:gitlab:other",
            "gitlab",
            None,
            "fallback",
        ),
        (
            "r1",
            "system:serviceaccount:gitlab:runner-two",
            "gitlab",
            None,
            "by-user",
        ),
        (
            "x",
            "system:serviceaccount:gitlab:other",
            "science",
            None,
            "by-namespace",
        ),
        ("x", "u", "gitlab", Some(("team", "astro")), "by-label"),
        ("x", "u", "gitlab", Some(("team", "bio")), "fallback"),
    ];
    for (runner, user, namespace, label, want) in cases {
        let mut pod = with_runner(job_pod(), runner);
        if let Some((k, v)) = label {
            pod["metadata"]["labels"][k] = json!(v);
        }
        let req = Req {
            user,
            namespace,
            ..Req::default()
        };
        assert_eq!(
            run_with(&policy, &req, &pod).class(),
            want,
            "{runner} {user} {namespace} {label:?}"
        );
    }
}

// ---- resources ----

#[test]
fn missing_resources_are_filled_in_per_role() {
    let out = run(&job_pod());
    let pod = out.pod();
    assert_eq!(
        container(pod, "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
    );
    for helper_role in ["helper", "init-permissions", "svc-0"] {
        assert_eq!(
            container(pod, helper_role)["resources"],
            json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
            "{helper_role}"
        );
    }
}

#[test]
fn existing_values_are_kept_within_the_ceiling_and_lowered_above_it() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "7", "memory": "64Gi"}, "requests": {"cpu": "500m", "memory": "20Gi"}});
    let out = run(&pod);
    // cpu 7 ≤ max 8 is kept; memory 64Gi > max 16Gi is lowered, and so is its request.
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "7", "memory": "16Gi"}, "requests": {"cpu": "500m", "memory": "16Gi"}})
    );
    let w = out.warnings().join("\n");
    assert!(
        w.contains("build: limits.memory 64Gi lowered to the ceiling 16Gi of class k8srunner"),
        "{w}"
    );
    assert!(
        w.contains("build: requests.memory 20Gi lowered to the ceiling 16Gi"),
        "{w}"
    );
}

#[test]
fn a_filled_in_limit_lowers_a_larger_existing_request() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "12Gi"}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["requests"]["memory"],
        "10Gi"
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["memory"],
        "10Gi"
    );
}

#[test]
fn an_existing_limit_below_the_class_request_caps_the_filled_request() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Gi"}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
    );
}

#[test]
fn a_null_class_limit_removes_an_existing_limit() {
    let mut pod = with_runner(job_pod(), "k8srunner-large");
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1"}});
    let out = run(&pod);
    let build = &container(out.pod(), "build")["resources"];
    assert_eq!(
        build,
        &json!({"limits": {"memory": "10Gi"}, "requests": {"cpu": "1", "memory": "8Gi"}})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("limits.cpu 5 removed: class k8srunner-large sets no cpu limit"))
    );
}

#[test]
fn quantities_compare_by_value_not_by_text() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "5000m", "memory": "10240Mi"}, "requests": {"cpu": "1000m", "memory": "2048Mi"}});
    match run(&pod) {
        Out::Allow { pod, .. } => assert_eq!(
            container(&pod, "build")["resources"]["limits"]["cpu"],
            "5000m",
            "equal values are not rewritten"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn numbers_as_quantities_are_understood() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": 20, "memory": 1073741824}});
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "8", "memory": 1073741824})
    );
}

#[test]
fn an_invalid_quantity_in_the_pod_is_denied_with_its_path() {
    for bad in [
        json!("NaN"),
        json!("-1"),
        json!("1e"),
        json!(""),
        json!("99 Gi"),
    ] {
        let mut pod = job_pod();
        pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": bad}});
        let message = run(&pod).denial().to_string();
        assert!(
            message.starts_with("spec.containers[build].resources.limits.cpu: "),
            "{message}"
        );
    }
}

#[test]
fn absurd_quantities_in_the_pod_are_lowered_to_the_ceiling() {
    for huge in ["1e400", "99999999999999999999Ei", "9223372036854775807"] {
        let mut pod = job_pod();
        pod["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": huge, "memory": huge}});
        let out = run(&pod);
        assert_eq!(
            container(out.pod(), "build")["resources"]["limits"],
            json!({"cpu": "8", "memory": "16Gi"}),
            "{huge}"
        );
    }
}

// ---- overrides ----

#[test]
fn each_override_applies_to_build_only() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "2"),
            ("ci.skao.int/cpu-limit", "6"),
            ("ci.skao.int/memory-request", "4Gi"),
            ("ci.skao.int/memory-limit", "12Gi"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "6", "memory": "12Gi"}, "requests": {"cpu": "2", "memory": "4Gi"}})
    );
    assert_eq!(
        container(out.pod(), "helper")["resources"]["limits"]["cpu"],
        "3"
    );
    match out {
        Out::Allow { overrides, .. } => {
            assert_eq!(overrides.len(), 4);
            assert!(
                overrides
                    .iter()
                    .all(|o| o.result == OverrideResult::Applied)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_replace_existing_values_including_lower_ones() {
    let mut pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/memory-limit", "2Gi"),
            ("ci.skao.int/cpu-request", "250m"),
        ],
    );
    pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "5", "memory": "10Gi"}, "requests": {"cpu": "1", "memory": "4Gi"}});
    let out = run(&pod);
    // A lowered limit lowers the request too.
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "5", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "2Gi"}})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w == "build: requests.memory 4Gi lowered to its limit 2Gi")
    );
}

#[test]
fn a_request_override_above_the_limit_raises_the_limit_within_the_ceiling() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "7"),
            ("ci.skao.int/memory-request", "64Gi"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"],
        json!({"limits": {"cpu": "7", "memory": "16Gi"}, "requests": {"cpu": "7", "memory": "16Gi"}})
    );
}

#[test]
fn overrides_above_the_ceiling_are_clamped_with_a_warning() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-limit", "64"),
            ("ci.skao.int/memory-limit", "1Ti"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"],
        json!({"cpu": "8", "memory": "16Gi"})
    );
    let w = out.warnings().join("\n");
    assert!(
        w.contains("ci.skao.int/cpu-limit: 64 is above the ceiling of class k8srunner; using 8"),
        "{w}"
    );
    match out {
        Out::Allow { overrides, .. } => {
            assert!(
                overrides
                    .iter()
                    .all(|o| o.result == OverrideResult::Clamped)
            );
            assert!(
                overrides
                    .iter()
                    .any(|o| o.detail == "cpu-limit=8 (asked 64)")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_above_the_ceiling_are_denied_when_the_policy_says_so() {
    let policy = policy_from(
        "defaultClass: a\noverrides: { onExceed: deny }\nclasses:\n  a: { max: { cpu: \"2\", memory: null } }\n",
    );
    let out = run_with(
        &policy,
        &Req::default(),
        &annotate(job_pod(), &[("ci.skao.int/cpu-limit", "3")]),
    );
    assert_eq!(
        out.denial(),
        "annotation ci.skao.int/cpu-limit: 3 is above the ceiling 2 of class a"
    );
    let out = run_with(
        &policy,
        &Req::default(),
        &annotate(job_pod(), &[("ci.skao.int/cpu-limit", "2")]),
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "2"
    );
}

#[test]
fn invalid_overrides_are_denied_naming_annotation_value_and_form() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ci.skao.int/cpu-limit",
            "lots",
            "annotation ci.skao.int/cpu-limit: \"lots\" is not a valid quantity; use a Kubernetes quantity such as 500m or 2",
        ),
        (
            "ci.skao.int/cpu-request",
            "-1",
            "annotation ci.skao.int/cpu-request: \"-1\" must be greater than zero; use a quantity such as 500m or 2",
        ),
        (
            "ci.skao.int/cpu-request",
            "0",
            "annotation ci.skao.int/cpu-request: \"0\" must be greater than zero",
        ),
        (
            "ci.skao.int/memory-limit",
            "4gb",
            "annotation ci.skao.int/memory-limit: \"4gb\" is not a valid quantity; use a Kubernetes quantity such as 512Mi or 4Gi",
        ),
        (
            "ci.skao.int/memory-request",
            "0.5",
            "annotation ci.skao.int/memory-request: \"0.5\" is not a whole number of bytes",
        ),
        (
            "ci.skao.int/memory-limit",
            "NaN",
            "\"NaN\" is not a valid quantity",
        ),
        (
            "ci.skao.int/gpus",
            "0",
            "annotation ci.skao.int/gpus: \"0\" is not a valid GPU count; use a whole number 1 or more",
        ),
        ("ci.skao.int/gpus", "-2", "\"-2\" is not a valid GPU count"),
        (
            "ci.skao.int/gpus",
            "1.5",
            "\"1.5\" is not a valid GPU count",
        ),
        (
            "ci.skao.int/docker",
            "off",
            "annotation ci.skao.int/docker: \"off\" is not accepted; the only accepted value is \"disabled\"",
        ),
        (
            "ci.skao.int/cpu-limits",
            "2",
            "annotation \"ci.skao.int/cpu-limits\" is not a ci-pod-webhook override; the overrides are ci.skao.int/ followed by one of: cpu-request, cpu-limit, memory-request, memory-limit, gpus, docker",
        ),
        (
            "ci.skao.int/CPU-LIMIT",
            "2",
            "(annotation keys are case-sensitive)",
        ),
        (
            "CI.SKAO.INT/cpu-limit",
            "2",
            "\"CI.SKAO.INT/cpu-limit\" is not a ci-pod-webhook override (annotation keys are case-sensitive)",
        ),
        (
            "ci.skao.int/сpu-limit",
            "2",
            "is not a ci-pod-webhook override",
        ),
    ];
    for (key, value, expected) in cases {
        let out = run(&annotate(job_pod(), &[(key, value)]));
        assert!(
            out.denial().contains(expected),
            "{key}={value}: {}",
            out.denial()
        );
    }
}

#[test]
fn several_invalid_overrides_are_all_reported() {
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/cpu-limit", "x"), ("ci.skao.int/gpus", "y")],
    ));
    assert!(
        out.denial().contains("cpu-limit") && out.denial().contains("gpus"),
        "{}",
        out.denial()
    );
}

#[test]
fn a_request_override_above_a_limit_override_is_denied() {
    let out = run(&annotate(
        job_pod(),
        &[
            ("ci.skao.int/cpu-request", "4"),
            ("ci.skao.int/cpu-limit", "2"),
        ],
    ));
    assert_eq!(
        out.denial(),
        "annotations ci.skao.int/cpu-request (4) and ci.skao.int/cpu-limit (2): the request must not exceed the limit"
    );
}

#[test]
fn huge_override_values_are_shortened_in_messages() {
    let big = "9".repeat(1 << 20);
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/docker", big.as_str())],
    ));
    assert!(out.denial().len() < 300, "{}", out.denial().len());
    let out = run(&annotate(
        job_pod(),
        &[("ci.skao.int/cpu-limit", big.as_str())],
    ));
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "8",
        "a huge number is clamped"
    );
}

#[test]
fn thousands_of_bad_override_annotations_are_summarised_in_a_short_denial() {
    // Regression: duplicates were found by scanning the rest of the list for each key
    // (quadratic: 150,000 annotations fit in a 4 MiB body; 20,000 took 2.9 s), and every
    // problem went into the message, so the denial grew with the input (7 MB).
    let mut pod = job_pod();
    let annotations = pod["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations");
    for i in 0..50_000 {
        annotations.insert(format!("ci.skao.int/x{i}"), json!(""));
    }
    let out = run_once(&DEFAULT, &Req::default(), &pod);
    let message = out.denial();
    assert!(message.contains("ci.skao.int/x0"), "{message}");
    assert!(message.ends_with("; and 49992 more"), "{message}");
    assert!(message.len() < 2_000, "{}", message.len());
}

#[test]
fn a_job_pod_with_more_containers_than_the_bound_is_denied() {
    let with_services = |n: usize| {
        let mut pod = job_pod();
        let containers = pod["spec"]["containers"]
            .as_array_mut()
            .expect("containers");
        containers.extend((1..=n).map(|i| json!({"name": format!("svc-{i}")})));
        pod
    };
    // init-permissions + build + helper + svc-0 + n services.
    let at_bound = with_services(MAX_CONTAINERS - 4);
    let out = run(&at_bound);
    assert_eq!(
        container(out.pod(), &format!("svc-{}", MAX_CONTAINERS - 4))["resources"]["limits"]["cpu"],
        "3"
    );
    let message = run(&with_services(5_000)).denial().to_string();
    assert!(
        message.starts_with("the pod has 5004 containers and init containers;"),
        "{message}"
    );
    // A pod that is not a job pod is not ours, however many containers it has.
    let mut other = json!({"spec": {"containers": []}});
    other["spec"]["containers"] = json!(
        (0..5_000)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect::<Vec<_>>()
    );
    assert!(matches!(run(&other), Out::Skip(SkipReason::NotJobPod)));
}

#[test]
fn look_alike_prefixes_are_not_overrides_and_gain_nothing() {
    let pod = annotate(
        job_pod(),
        &[
            ("ci.skao.іnt/cpu-limit", "64"),
            ("ci-skao-int/cpu-limit", "64"),
            ("skao.int/cpu-limit", "64"),
        ],
    );
    let out = run(&pod);
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "5"
    );
}

#[test]
fn the_last_of_duplicate_annotation_keys_counts() {
    // Only hand-made JSON can have duplicates; the API server's decoder keeps the last.
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"gitlab","operation":"CREATE","object":{"metadata":{"annotations":{"ci.skao.int/cpu-limit":"lots","ci.skao.int/cpu-limit":"2"}},"spec":{"containers":[{"name":"build"},{"name":"helper"}]}}}}"#;
    let review = admission::parse(body).expect("parse");
    match decide(&DEFAULT, NamespaceFacts::TrustSelector, &review.request).expect("decide") {
        Decision::Allow(m) => assert!(m.overrides.iter().any(|o| o.detail == "cpu-limit=2")),
        other => panic!("{other:?}"),
    }
}

// ---- GPUs ----

#[test]
fn gpu_classes_get_gpus_placement_and_runtime_class() {
    let out = run(&with_runner(job_pod(), "k8srunner-gpu-v100"));
    let pod = out.pod();
    assert_eq!(
        container(pod, "build")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert!(
        container(pod, "helper")["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"node-role.skatelescope.org/ci-worker": "true", "nvidia.com/gpu": "true"})
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists"}])
    );
}

#[test]
fn the_gpu_override_is_bounded_by_the_class() {
    let a100 = |n: &str| {
        run(&annotate(
            with_runner(job_pod(), "ska-k8srunner-dp-gpu-a100"),
            &[("ci.skao.int/gpus", n)],
        ))
    };
    assert_eq!(
        container(a100("3").pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "3"
    );
    let out = a100("16");
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "4"
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("ci.skao.int/gpus: 16 is above the ceiling"))
    );
    let out = a100("99999999999999999999999");
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["nvidia.com/gpu"],
        "4"
    );
}

#[test]
fn gpus_on_a_non_gpu_class_are_ignored_with_a_warning() {
    let out = run(&annotate(job_pod(), &[("ci.skao.int/gpus", "2")]));
    assert!(
        container(out.pod(), "build")["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );
    assert!(out.pod()["spec"].get("runtimeClassName").is_none());
    assert!(
        out.warnings()
            .iter()
            .any(|w| w == "ci.skao.int/gpus ignored: class k8srunner has no GPUs")
    );
}

#[test]
fn existing_gpu_requests_follow_the_limit_and_excess_is_lowered() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": "4"}});
    let out = run(&pod);
    let r = &container(out.pod(), "build")["resources"];
    assert_eq!(
        (
            &r["limits"]["nvidia.com/gpu"],
            &r["requests"]["nvidia.com/gpu"]
        ),
        (&json!("1"), &json!("1"))
    );
}

#[test]
fn a_different_runtime_class_is_replaced_with_a_warning() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["runtimeClassName"] = json!("gvisor");
    let out = run(&pod);
    assert_eq!(out.pod()["spec"]["runtimeClassName"], "nvidia");
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("runtimeClassName \"gvisor\" replaced by nvidia"))
    );
}

// ---- scheduling ----

#[test]
fn the_policy_node_selector_wins_and_other_keys_stay() {
    let mut pod = job_pod();
    pod["spec"]["nodeSelector"] =
        json!({"node-role.skatelescope.org/ci-worker": "false", "zone": "a"});
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["nodeSelector"],
        json!({"node-role.skatelescope.org/ci-worker": "true", "zone": "a"})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("replaced by node-role.skatelescope.org/ci-worker=true"))
    );
}

#[test]
fn tolerations_are_a_set() {
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "nvidia.com/gpu", "operator": "Exists"}
    ]);
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["tolerations"].as_array().map(Vec::len),
        Some(2)
    );
    // A narrower existing toleration (one effect) does not count as equal.
    let mut pod = with_runner(job_pod(), "k8srunner-gpu-v100");
    pod["spec"]["tolerations"] =
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    assert_eq!(
        run(&pod).pod()["spec"]["tolerations"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

// ---- Docker ----

#[test]
fn socket_mode_mounts_the_daemon_directory_and_sets_docker_host() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] =
        json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "docker", "mountPath": "/var/run/docker.sock"}]);
    let out = run_with(&NO_LIMITS_ENV, &Req::default(), &pod);
    let pod = out.pod();
    assert_eq!(
        pod["spec"]["volumes"],
        json!([
            {"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": ""}},
            {"name": "ci-dind", "hostPath": {"path": "/var/run/ci-dind", "type": "DirectoryOrCreate"}}
        ])
    );
    assert_eq!(
        container(pod, "build")["volumeMounts"],
        json!([
            {"name": "docker", "mountPath": "/var/run/docker.sock"},
            {"name": "ci-dind", "mountPath": "/var/run/ci-dind", "readOnly": true}
        ])
    );
    assert_eq!(
        env(pod, "build").last().map(|(_, v)| (*v).clone()),
        Some(json!({"name": "DOCKER_HOST", "value": "unix:///var/run/ci-dind/docker.sock"}))
    );
    assert!(
        container(pod, "helper").get("env").is_none(),
        "only build gets DOCKER_HOST"
    );
}

#[test]
fn an_existing_docker_host_or_the_opt_out_is_respected() {
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "DOCKER_HOST", "value": "tcp://docker:2375"}]);
    let out = run_with(&NO_LIMITS_ENV, &Req::default(), &pod);
    assert_eq!(env(out.pod(), "build").len(), 1);
    assert!(out.pod()["spec"].get("volumes").is_none());

    let out = run(&annotate(job_pod(), &[("ci.skao.int/docker", "disabled")]));
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert!(out.pod()["spec"].get("volumes").is_none());
}

#[test]
fn an_existing_host_path_volume_for_the_daemon_is_reused() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "dind", "hostPath": {"path": "/var/run/ci-dind/"}}]);
    let out = run(&pod);
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        container(out.pod(), "build")["volumeMounts"][0]["name"],
        "dind"
    );
}

#[test]
fn a_conflicting_volume_name_or_mount_path_skips_docker_with_a_warning() {
    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "ci-dind", "emptyDir": {}}]);
    let out = run(&pod);
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("volume ci-dind already exists"))
    );

    let mut pod = job_pod();
    pod["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": "/var/run/ci-dind"}]);
    let out = run(&pod);
    assert!(
        !env(out.pod(), "build")
            .iter()
            .any(|(n, _)| *n == "DOCKER_HOST")
    );
    assert_eq!(
        out.pod()["spec"]["volumes"].as_array().map(Vec::len),
        Some(1),
        "no unused volume added"
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("/var/run/ci-dind is already mounted from volume \"scratch\""))
    );
}

#[test]
fn tcp_mode_puts_node_ip_before_docker_host() {
    let policy = policy_from(
        "defaultClass: a\ndocker: { mode: tcp, tcp: { port: 2376, tls: { secretName: dind-client } } }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let out = run_with(&policy, &Req::default(), &job_pod());
    let names: Vec<&str> = env(out.pod(), "build").iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "CI",
            "NODE_IP",
            "DOCKER_HOST",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH"
        ]
    );
    let vars = env(out.pod(), "build");
    assert_eq!(
        vars[1].1["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    assert_eq!(vars[2].1["value"], "tcp://$(NODE_IP):2376");
    assert_eq!(vars[4].1["value"], "/certs/client");
    assert_eq!(
        out.pod()["spec"]["volumes"],
        json!([{"name": "ci-dind-certs", "secret": {"secretName": "dind-client"}}])
    );

    // An existing NODE_IP from the host IP is reused; any other NODE_IP blocks DOCKER_HOST.
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]);
    let plain = policy_from(
        "defaultClass: a\ndocker: { mode: tcp }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let names: Vec<String> = env(run_with(&plain, &Req::default(), &pod).pod(), "build")
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["NODE_IP", "DOCKER_HOST"]);
    pod["spec"]["containers"][0]["env"] = json!([{"name": "NODE_IP", "value": "10.0.0.1"}]);
    let out = run_with(&plain, &Req::default(), &pod);
    assert_eq!(env(out.pod(), "build").len(), 1);
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("NODE_IP is already set"))
    );
}

#[test]
fn docker_mode_off_changes_nothing_about_docker() {
    let policy = policy_from(
        "defaultClass: a\ndocker: { mode: off }\nlimitsEnv: { enabled: false }\nclasses:\n  a: { max: { cpu: null, memory: null } }\n",
    );
    let out = run_with(&policy, &Req::default(), &job_pod());
    assert_eq!(env(out.pod(), "build").len(), 1);
}

// ---- the patch ----

#[test]
fn fields_the_view_does_not_know_are_kept() {
    let mut pod = job_pod();
    pod["spec"]["someFutureField"] = json!({"nested": [1, 2, 3]});
    pod["spec"]["containers"][0]["x-vendor-extension"] = json!("keep me");
    pod["spec"]["containers"][0]["resources"] = json!({"claims": [{"name": "gpu-claim"}]});
    pod["status"] = json!({"phase": "Pending"});
    let out = run(&pod);
    let patched = out.pod();
    assert_eq!(
        patched["spec"]["someFutureField"],
        json!({"nested": [1, 2, 3]})
    );
    assert_eq!(container(patched, "build")["x-vendor-extension"], "keep me");
    assert_eq!(
        container(patched, "build")["resources"]["claims"],
        json!([{"name": "gpu-claim"}])
    );
    assert_eq!(patched["status"], json!({"phase": "Pending"}));
}

#[test]
fn null_parents_are_replaced_whole() {
    let mut pod = job_pod();
    pod["metadata"]["annotations"] = Value::Null;
    pod["spec"]["nodeSelector"] = Value::Null;
    pod["spec"]["tolerations"] = Value::Null;
    pod["spec"]["containers"][0]["resources"] = json!({"limits": null, "requests": null});
    pod["spec"]["containers"][0]["env"] = Value::Null;
    let out = run(&with_runner(pod, "k8srunner-gpu-v100"));
    assert_eq!(
        out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
        "k8srunner-gpu-v100"
    );
    assert_eq!(
        container(out.pod(), "build")["resources"]["limits"]["cpu"],
        "5"
    );
}

#[test]
fn a_pod_already_following_the_policy_gets_no_patch() {
    let first = run(&with_runner(job_pod(), "k8srunner-gpu-v100"));
    match run(first.pod()) {
        Out::Allow { ops, .. } => assert_eq!(ops, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn audit_annotations_name_class_and_policy() {
    let out = run(&job_pod());
    let a = &out.pod()["metadata"]["annotations"];
    assert_eq!(a["ci.skao.int/class"], "k8srunner");
    assert_eq!(a["ci.skao.int/policy"], DEFAULT.hash.as_str());
    assert_eq!(
        a["job.runner.gitlab.com/id"], "42",
        "other annotations stay"
    );
}

#[test]
fn an_unreadable_object_is_an_error_not_a_decision() {
    let cases = [
        json!({"spec": {"containers": "not-an-array"}}),
        json!({"spec": {"containers": [{"image": "no-name"}]}}),
        json!({"metadata": {"annotations": {"a": 1}}}),
        json!("a string"),
        // serde reads a struct from an array too; the patch would then target an array.
        json!([null, {"containers": [{"name": "build"}, {"name": "helper"}]}]),
        json!({"metadata": ["name"], "spec": {"containers": [{"name": "build"}, {"name": "helper"}]}}),
        json!({"spec": [[{"name": "build"}, {"name": "helper"}]]}),
        json!({"spec": {"containers": [["build"], ["helper"]]}}),
        json!({"spec": {"containers": [{"name": "build", "resources": [{"cpu": "1"}]}, {"name": "helper"}]}}),
        json!({"spec": {"containers": [{"name": "build", "env": [["DOCKER_HOST"]]}, {"name": "helper"}]}}),
        json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}], "volumes": [["v"]]}}),
        json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}], "tolerations": [["k"]]}}),
    ];
    for object in cases {
        let body = review_bytes(&Req::default(), &object);
        let review = admission::parse(&body).expect("the review itself is readable");
        assert!(
            matches!(
                decide(&DEFAULT, NamespaceFacts::TrustSelector, &review.request),
                Err(ObjectError::Invalid(_))
            ),
            "{object}"
        );
    }
}

// ---- regressions found by fuzzing ----

#[test]
fn a_pod_without_a_spec_is_not_a_job_pod_even_with_the_runner_label() {
    // fuzz/regressions/review/crash-87a8c409…: the ops under /spec had no parent.
    for spec in [None, Some(Value::Null)] {
        let mut pod =
            json!({"metadata": {"labels": {"manager.runner.gitlab.com/name": "k8srunner"}}});
        if let Some(s) = spec {
            pod["spec"] = s;
        }
        assert!(
            matches!(run(&pod), Out::Skip(SkipReason::NotJobPod)),
            "{pod}"
        );
    }
}

#[test]
fn a_pod_without_metadata_gets_its_annotations_added_whole() {
    for metadata in [None, Some(Value::Null)] {
        let mut pod = json!({"spec": {"containers": [{"name": "build"}, {"name": "helper"}]}});
        if let Some(m) = metadata {
            pod["metadata"] = m;
        }
        let out = run(&pod);
        assert_eq!(
            out.pod()["metadata"]["annotations"]["ci.skao.int/class"],
            "k8srunner"
        );
    }
}

#[test]
fn annotation_keys_with_multi_byte_characters_where_the_prefix_ends_are_not_overrides() {
    // fuzz/regressions/review/crash-d96f498a…: slicing the key as a str at the prefix
    // length panicked inside a two-byte character.
    for key in [
        "ci.skao.inҕ/cpu-limit",
        "ci.skao.intҕ/cpu-limit",
        "ҕҕҕҕҕҕ/cpu-limit",
        "ci.skao.int/ҕ",
    ] {
        let out = run(&annotate(job_pod(), &[(key, "64")]));
        match out {
            Out::Allow { .. } => assert_eq!(
                container(out.pod(), "build")["resources"]["limits"]["cpu"],
                "5",
                "{key}"
            ),
            Out::Deny { message, .. } => assert!(
                message.contains("is not a ci-pod-webhook override"),
                "{key}: {message}"
            ),
            Out::Skip(r) => panic!("{key}: skipped {r:?}"),
        }
    }
}
