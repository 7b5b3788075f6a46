use serde_json::{Value, json};

use super::*;
use ci_pod_webhook_core::admission;

const REVIEW: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/job-pod-review.json"
));

fn enabled() -> BTreeMap<String, String> {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())])
}

/// The fixture's pod as the API server stored it: the webhook's patch applied, then
/// the fields the API server and its admission plugins add.
fn admitted(policy: &Policy) -> Value {
    let review = admission::parse(REVIEW.as_bytes()).expect("review");
    let labels = enabled();
    let answer =
        admission::respond(policy, NamespaceFacts::Labels(&labels), &review).expect("answer");
    let body: Value = serde_json::from_slice(&answer.body).expect("json");
    let patch = body["response"]["patch"].as_str().expect("a patch");
    let patch =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, patch).expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("json patch");
    let mut pod = unpatched();
    json_patch::patch(&mut pod, &patch).expect("applies");
    stored(pod)
}

fn unpatched() -> Value {
    let review: Value = serde_json::from_str(REVIEW).expect("json");
    review["request"]["object"].clone()
}

/// What the API server adds after admission.
fn stored(mut pod: Value) -> Value {
    let spec = &mut pod["spec"];
    spec["nodeName"] = json!("ci-node-7");
    spec["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "kube-api-access-x7k2p", "projected": {"sources": []}}));
    for container in spec["containers"].as_array_mut().expect("containers") {
        let mounts = container
            .as_object_mut()
            .expect("container")
            .entry("volumeMounts")
            .or_insert_with(|| json!([]));
        mounts.as_array_mut().expect("mounts").push(json!({
            "name": "kube-api-access-x7k2p",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": true
        }));
    }
    let tolerations = spec
        .as_object_mut()
        .expect("spec")
        .entry("tolerations")
        .or_insert_with(|| json!([]));
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        tolerations
            .as_array_mut()
            .expect("tolerations")
            .push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300
            }));
    }
    pod["status"] = json!({"phase": "Running", "hostIP": "10.0.0.7"});
    pod["metadata"]["uid"] = json!("5c1f0e2a-0000-4000-8000-000000000001");
    pod["metadata"]["resourceVersion"] = json!("123456");
    pod
}

fn judged(policy: &Policy, labels: &BTreeMap<String, String>, pod: &Value) -> Judgement {
    judge(policy, "gitlab", labels, &pod.to_string())
        .expect("readable")
        .expect("a job pod")
}

fn warn() -> BTreeMap<String, String> {
    BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "warn".to_string())])
}

#[test]
fn an_admitted_pod_with_the_fields_the_api_server_adds_is_ok() {
    let policy = Policy::embedded();
    let judgement = judged(&policy, &enabled(), &admitted(&policy));
    assert_eq!(judgement.verdicts, [Verdict::Ok], "{judgement:?}");
    assert_eq!(judgement.class, "k8srunner");
    assert!(judgement.details.is_empty(), "{judgement:?}");
    // Chosen by its facts (this runner sets no name label: the default class), never
    // by the annotation it carries.
    assert!(
        judgement.reason.starts_with("defaultClass"),
        "{judgement:?}"
    );
    assert_eq!(judgement.mode, "enforce");
}

#[test]
fn a_job_pod_the_webhook_never_saw_is_unpolicied() {
    let policy = Policy::embedded();
    let judgement = judged(&policy, &enabled(), &stored(unpatched()));
    assert_eq!(judgement.verdicts, [Verdict::Unpolicied]);
    assert_eq!(judgement.class, "k8srunner");
    // It also says what admitting it would have changed.
    assert!(!judgement.details.is_empty());
}

#[test]
fn a_namespace_that_has_not_opted_in_is_judged_as_if_it_had() {
    let policy = Policy::embedded();
    let judgement = judged(&policy, &BTreeMap::new(), &stored(unpatched()));
    assert_eq!(judgement.verdicts, [Verdict::Unpolicied]);
}

#[test]
fn a_lowered_ceiling_turns_an_admitted_pod_into_drift_naming_the_field() {
    let before = Policy::embedded();
    let pod = admitted(&before);
    let yaml = ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML
        .replacen(
            "max:      { cpu: \"8\", memory: 16Gi }",
            "max:      { cpu: \"4\", memory: 16Gi }",
            1,
        )
        .replacen(
            "limits: { cpu: \"5\", memory: 10Gi }",
            "limits: { cpu: \"4\", memory: 10Gi }",
            1,
        );
    assert_ne!(yaml, ci_pod_webhook_core::policy::DEFAULT_POLICY_YAML);
    let after = Policy::parse(&yaml, "lowered.yaml").expect("policy");
    let judgement = judged(&after, &enabled(), &pod);
    assert_eq!(judgement.verdicts, [Verdict::Drift], "{judgement:?}");
    assert!(
        judgement
            .details
            .iter()
            .any(|d| d.contains("[build].resources.limits.cpu: 5 → 4")),
        "{judgement:?}"
    );
}

#[test]
fn an_admitted_pod_todays_policy_refuses_is_drift_and_would_deny() {
    let policy = Policy::embedded();
    let mut pod = admitted(&policy);
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("lots");
    let judgement = judged(&policy, &enabled(), &pod);
    assert_eq!(
        judgement.verdicts,
        [Verdict::Drift, Verdict::WouldDeny],
        "{judgement:?}"
    );
    assert!(judgement.details[0].contains("cpu-limit"), "{judgement:?}");
}

#[test]
fn a_pod_the_webhook_never_saw_and_the_policy_refuses_is_unpolicied_and_would_deny() {
    let policy = Policy::embedded();
    let mut pod = stored(unpatched());
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("lots");
    for labels in [enabled(), BTreeMap::new()] {
        let judgement = judged(&policy, &labels, &pod);
        assert_eq!(
            judgement.verdicts,
            [Verdict::Unpolicied, Verdict::WouldDeny],
            "{judgement:?}"
        );
        assert!(judgement.has(Verdict::WouldDeny));
    }
}

#[test]
fn in_a_warn_namespace_a_pod_left_as_sent_would_mutate_and_is_not_drift() {
    let policy = Policy::embedded();
    let judgement = judged(&policy, &warn(), &stored(unpatched()));
    assert_eq!(judgement.mode, "warn");
    assert_eq!(judgement.verdicts, [Verdict::WouldMutate], "{judgement:?}");
    assert!(!judgement.details.is_empty());
    // One the policy would refuse: would-deny alone.
    let mut pod = stored(unpatched());
    pod["metadata"]["annotations"]["ci.skao.int/cpu-limit"] = json!("lots");
    let judgement = judged(&policy, &warn(), &pod);
    assert_eq!(judgement.verdicts, [Verdict::WouldDeny], "{judgement:?}");
    // One admitted under enforce before the namespace went back to warn: ok, as before.
    let judgement = judged(&policy, &warn(), &admitted(&policy));
    assert_eq!(judgement.verdicts, [Verdict::Ok], "{judgement:?}");
}

#[test]
fn a_class_annotation_a_job_wrote_is_a_claim_not_proof() {
    // Issue 25, point 5: created without the webhook, the job set the xlarge class.
    let policy = Policy::embedded();
    let mut pod = stored(unpatched());
    pod["metadata"]["annotations"]["ci.skao.int/class"] = json!("k8srunner-xlarge");
    let judgement = judged(&policy, &enabled(), &pod);
    assert_eq!(judgement.class, "k8srunner", "judged by its runner's class");
    assert_eq!(judgement.verdicts, [Verdict::Unpolicied], "{judgement:?}");
    assert!(
        judgement.details[0].contains("\"k8srunner-xlarge\" is a claim"),
        "{judgement:?}"
    );
    // The same claim on a pod the webhook admitted as k8srunner (a later overwrite):
    // still judged as k8srunner, and the annotation is a difference.
    let mut pod = admitted(&policy);
    pod["metadata"]["annotations"]["ci.skao.int/class"] = json!("k8srunner-xlarge");
    let judgement = judged(&policy, &enabled(), &pod);
    assert_eq!(judgement.class, "k8srunner");
    assert_eq!(judgement.verdicts, [Verdict::Unpolicied], "{judgement:?}");
    // An admin's pin on the namespace is a fact: it chooses the class.
    let mut pinned = enabled();
    pinned.insert(
        "ci.skao.int/runner-class".to_string(),
        "k8srunner-xlarge".to_string(),
    );
    let judgement = judged(&policy, &pinned, &stored(unpatched()));
    assert_eq!(judgement.class, "k8srunner-xlarge");
}

#[test]
fn only_opted_in_namespaces_are_audited() {
    let policy = Policy::embedded();
    assert!(audited(&policy, &enabled()));
    assert!(audited(&policy, &warn()));
    assert!(!audited(&policy, &BTreeMap::new()));
    let wrong = BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "true".to_string())]);
    assert!(!audited(&policy, &wrong));
}

#[test]
fn pods_that_are_not_job_pods_are_not_judged() {
    let policy = Policy::embedded();
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "nginx"}]}});
    assert_eq!(
        judge(&policy, "gitlab", &enabled(), &pod.to_string()),
        Ok(None)
    );
    assert!(judge(&policy, "gitlab", &enabled(), "[1]").is_err());
}

#[test]
fn an_ephemeral_container_the_policy_refuses_makes_an_admitted_pod_would_deny() {
    let policy = Policy::embedded();
    let mut pod = admitted(&policy);
    // As `kubectl debug` adds one after admission: privileged, with the node's GPUs.
    pod["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger",
        "image": "busybox",
        "securityContext": {"privileged": true},
        "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]
    }]);
    let judgement = judged(&policy, &enabled(), &pod);
    assert_eq!(
        judgement.verdicts,
        [Verdict::Drift, Verdict::WouldDeny],
        "{judgement:?}"
    );
    assert!(
        judgement
            .details
            .iter()
            .any(|d| d.contains("debugger") && d.contains("privileged")),
        "{judgement:?}"
    );

    // A plain debug container is fine under the default `restricted`.
    pod["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);
    assert_eq!(judged(&policy, &enabled(), &pod).verdicts, [Verdict::Ok]);
}
