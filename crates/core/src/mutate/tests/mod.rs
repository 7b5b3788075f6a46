//! Table-driven tests of the core. Every allowed case is also checked to be idempotent:
//! the patch applies cleanly and a second run on the patched pod changes nothing.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

use super::*;
use crate::admission::{self, PodReview};

mod class;
mod docker;
mod ephemeral_containers;
mod escapes;
mod extended_resources;
mod fuzz_regressions;
mod gpu_workloads;
mod gpus;
mod limits_env;
mod overrides;
mod patch;
mod pod_level_rules;
mod properties;
mod properties_gpu_workloads;
mod resize;
mod resources;
mod scheduling;
mod skipping;

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
    let mut review = PodReview {
        uid: "705ab4f5-6393-11e8-b7cc-42010a800002",
        operation: req.operation,
        sub_resource: req.sub_resource,
        ..PodReview::create(req.namespace, pod).by(req.user)
    }
    .to_value();
    // Requests for other kinds than Pod, for the tests of what is skipped.
    review["request"]["kind"] = req.kind.clone();
    serde_json::to_vec(&review).expect("json")
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

/// `pod` as runner `runner` (GitLab Runner 17.9+) labels it: its name, and its short
/// token as `manager.runner.gitlab.com/id-short` (the one in the pod's name).
pub(super) fn with_runner(mut pod: Value, runner: &str) -> Value {
    let token = pod["metadata"]["name"]
        .as_str()
        .and_then(|n| n.strip_prefix("runner-"))
        .and_then(|n| n.split_once("-project-"))
        .map(|(token, _)| token.to_string())
        .expect("a pod named runner-<token>-project-…");
    pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] = json!(runner);
    pod["metadata"]["labels"]["manager.runner.gitlab.com/id-short"] = json!(token);
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
