//! Golden cases for `gpuWorkloads`: a Deployment's GPU pod, as the API server stores it
//! after defaulting, through the whole review path in the namespaces a CI job creates.
//! Same scheme as `golden.rs`: `tests/golden/gpu-workload-<case>.json` holds the
//! response (patch decoded) and the patched pod, generated with
//! `UPDATE_GOLDEN=1 cargo test -p ci-pod-webhook-core tests::golden` and reviewed by hand; each
//! case also asserts its key facts in code.

use std::collections::BTreeMap;

use crate::admission::{self, PodReview};
use crate::mutate::NamespaceFacts;
use crate::policy::Policy;
use serde_json::{Value, json};

use super::support;

struct Case {
    name: &'static str,
    namespace: &'static str,
    labels: &'static [(&'static str, &'static str)],
    /// Changes to the fixture pod.
    edit: fn(&mut Value),
    check: fn(&Value, Option<&Value>),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "placed",
            namespace: "ci-ska-sdp-integration-2fa9",
            labels: &[],
            edit: |_| {},
            check: |response, pod| {
                let pod = pod.expect("allowed");
                assert_eq!(response["auditAnnotations"]["class"], "gpu-workloads");
                assert_eq!(
                    pod["spec"]["nodeSelector"],
                    json!({"kubernetes.io/os": "linux", "nvidia.com/gpu": "true"})
                );
                assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(3));
                assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
                let processor = &pod["spec"]["containers"][0]["resources"];
                assert_eq!(processor["requests"]["nvidia.com/gpu"], "1");
                assert_eq!(processor["requests"]["cpu"], "1", "CPU untouched");
                assert_eq!(
                    pod["spec"]["containers"][1]["resources"],
                    json!({"limits": {"cpu": "100m", "memory": "64Mi"}})
                );
                assert!(response.get("warnings").is_none());
            },
        },
        Case {
            name: "label-selected",
            namespace: "sdp-shared",
            labels: &[("ci.skao.int/gpu-workloads", "enabled")],
            edit: |pod| {
                pod["spec"]["runtimeClassName"] = json!("runc");
            },
            check: |response, pod| {
                assert_eq!(pod.expect("allowed")["spec"]["runtimeClassName"], "nvidia");
                assert_eq!(
                    response["warnings"],
                    json!([
                        "runtimeClassName \"runc\" replaced by nvidia (class gpu-workloads needs it for GPUs)"
                    ])
                );
            },
        },
        Case {
            name: "request-differs",
            namespace: "integration-dp-7",
            labels: &[],
            edit: |pod| {
                pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] =
                    json!("2");
            },
            check: |response, pod| {
                assert!(pod.is_none());
                assert_eq!(response["allowed"], false);
                assert!(
                    response["status"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("spec.containers[processor].resources: limits.nvidia.com/gpu is 1 but requests.nvidia.com/gpu is 2")),
                    "{response}"
                );
            },
        },
        Case {
            name: "kube-system",
            namespace: "kube-system",
            labels: &[],
            edit: |_| {},
            check: |response, pod| {
                assert_eq!(response["allowed"], true);
                assert!(response.get("patch (decoded)").is_none());
                assert!(
                    pod.expect("allowed")["spec"]
                        .get("runtimeClassName")
                        .is_none()
                );
            },
        },
    ]
}

fn run(case: &Case, policy: &Policy) -> (Value, Option<Value>) {
    let path = support::root().join("tests/fixtures/gpu-workload-deployment-pod.json");
    let mut pod: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture JSON");
    pod["metadata"]["namespace"] = json!(case.namespace);
    (case.edit)(&mut pod);
    let uid = format!("golden-gpu-{}", case.name);
    let body = PodReview {
        uid: &uid,
        ..PodReview::create(case.namespace, &pod)
            .by("system:serviceaccount:kube-system:replicaset-controller")
    }
    .to_json();
    let parsed = admission::parse(&body).expect("readable review");
    let labels: BTreeMap<String, String> = case
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let answer =
        admission::respond(policy, NamespaceFacts::Labels(&labels), &parsed).expect("answer");
    let out: Value = serde_json::from_slice(&answer.body).expect("response JSON");
    let mut response = out["response"].clone();
    let patched = support::apply_patch(&mut response, pod);
    (response, patched)
}

#[test]
fn gpu_workload_golden_cases_match_their_reviewed_expectations() {
    let policy = Policy::embedded();
    let mut failures = Vec::new();
    for case in cases() {
        let (response, pod) = run(&case, &policy);
        (case.check)(&response, pod.as_ref());
        let actual = json!({"response": response, "pod": pod});
        let file = format!("gpu-workload-{}", case.name);
        failures.extend(support::check(&file, &actual, &policy.hash));
    }
    support::assert_none_failed(&failures);
}
