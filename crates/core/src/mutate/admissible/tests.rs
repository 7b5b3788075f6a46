use super::*;
use crate::admission::{self, PodReview};
use crate::mutate::{Decision, Entry, Facts, decide};
use crate::policy::Enforcement;
use serde_json::{Value, json};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn the_enforced_level_is_read_as_pod_security_admission_reads_it() {
    for (value, want) in [
        (Some("privileged"), Some(PodSecurityLevel::Privileged)),
        (Some("baseline"), Some(PodSecurityLevel::Baseline)),
        (Some("restricted"), Some(PodSecurityLevel::Restricted)),
        (Some("Baseline"), Some(PodSecurityLevel::Restricted)),
        (Some(""), Some(PodSecurityLevel::Restricted)),
        (None, None),
    ] {
        let map = value.map_or_else(BTreeMap::new, |v| labels(&[(POD_SECURITY_ENFORCE, v)]));
        assert_eq!(enforced_level(&map), want, "{value:?}");
    }
}

#[test]
fn only_privileged_allows_host_path() {
    assert!(PodSecurityLevel::Privileged.allows_host_path());
    assert!(!PodSecurityLevel::Baseline.allows_host_path());
    assert!(!PodSecurityLevel::Restricted.allows_host_path());
}

const FIXTURE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/gitlab-runner-17.9-job-pod.json"
));

fn review(pod: &Value) -> Vec<u8> {
    PodReview::create("ci", pod)
        .by("system:serviceaccount:ci:runner")
        .to_json()
}

fn namespace(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map = labels(extra);
    map.insert("ci.skao.int/pod-policy".into(), "enabled".into());
    map
}

/// The patched pod, the warnings and the refused changes; panics on a denial.
fn allowed(
    policy: &Policy,
    facts: Facts<'_>,
    pod: &Value,
) -> (Value, Vec<String>, Vec<RefusedChange>) {
    let body = review(pod);
    let parsed = admission::parse(&body).expect("review");
    match decide(policy, facts, &parsed.request).expect("readable") {
        Decision::Allow(m) => {
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &m.patch.operations()).expect("patch applies");
            (patched, m.warnings, m.refused)
        }
        other => panic!("expected an allowed pod, got {other:?}"),
    }
}

fn job_pod() -> Value {
    serde_json::from_str(FIXTURE).expect("fixture")
}

fn build_env(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| e["name"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// hostPath volumes of the node daemon's socket directory (the fixture also mounts
/// the node's /var/run/docker.sock, which is not ours).
fn host_paths(pod: &Value) -> usize {
    pod["spec"]["volumes"].as_array().map_or(0, |v| {
        v.iter()
            .filter(|v| {
                v["hostPath"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/var/run/ci-dind"))
            })
            .count()
    })
}

#[test]
fn a_namespace_enforcing_baseline_or_restricted_gets_no_docker_socket() {
    let policy = Policy::embedded();
    for level in ["baseline", "restricted", "nonsense"] {
        let labels = namespace(&[
            (POD_SECURITY_ENFORCE, level),
            ("pod-security.kubernetes.io/enforce-version", "v1.30"),
        ]);
        let (pod, warnings, refused) =
            allowed(&policy, NamespaceFacts::Labels(&labels).into(), &job_pod());
        assert_eq!(host_paths(&pod), 0, "{level}: {pod:#}");
        assert!(
            !build_env(&pod).contains(&"DOCKER_HOST".to_string()),
            "{level}"
        );
        assert_eq!(refused, [RefusedChange::DockerSocket], "{level}");
        let expected = if level == "baseline" {
            "baseline"
        } else {
            "restricted"
        };
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("Pod Security \"{expected}\""))
                    && w.contains("enforce=privileged")),
            "{level}: {warnings:?}"
        );
        // The rest of the policy still applies.
        assert!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"].is_string(),
            "{level}"
        );
    }
}

#[test]
fn privileged_unlabelled_or_unknown_namespaces_get_the_docker_socket() {
    let policy = Policy::embedded();
    let privileged = namespace(&[(POD_SECURITY_ENFORCE, "privileged")]);
    let unlabelled = namespace(&[]);
    for facts in [
        NamespaceFacts::Labels(&privileged),
        NamespaceFacts::Labels(&unlabelled),
        NamespaceFacts::TrustSelector,
    ] {
        let (pod, _, refused) = allowed(&policy, facts.into(), &job_pod());
        assert_eq!(host_paths(&pod), 1, "{facts:?}");
        assert!(build_env(&pod).contains(&"DOCKER_HOST".to_string()));
        assert!(refused.is_empty());
    }
}

#[test]
fn tcp_mode_needs_no_host_path_and_is_kept_under_baseline() {
    let text = crate::policy::DEFAULT_POLICY_YAML.replace("  mode: socket", "  mode: tcp");
    let policy = Policy::parse(&text, "tcp.yaml").expect("tcp policy");
    let labels = namespace(&[(POD_SECURITY_ENFORCE, "baseline")]);
    let (pod, warnings, refused) =
        allowed(&policy, NamespaceFacts::Labels(&labels).into(), &job_pod());
    assert!(
        build_env(&pod).contains(&"DOCKER_HOST".to_string()),
        "{warnings:?}"
    );
    assert!(refused.is_empty());
}

#[test]
fn a_pod_that_brings_its_own_docker_host_gets_no_warning_under_baseline() {
    let policy = Policy::embedded();
    let labels = namespace(&[(POD_SECURITY_ENFORCE, "baseline")]);
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "DOCKER_HOST", "value": "tcp://docker:2375"}]);
    let (_, warnings, refused) = allowed(&policy, NamespaceFacts::Labels(&labels).into(), &pod);
    assert!(refused.is_empty());
    assert!(
        !warnings.iter().any(|w| w.contains("Pod Security")),
        "{warnings:?}"
    );
}

fn gpu_namespace() -> BTreeMap<String, String> {
    namespace(&[("ci.skao.int/runner-class", "k8srunner-gpu-v100")])
}

#[test]
fn a_gpu_class_whose_runtime_class_is_missing_is_denied_with_the_fix() {
    let policy = Policy::embedded();
    let labels = gpu_namespace();
    let names = BTreeSet::from(["kata".to_string()]);
    let facts = Facts {
        namespace: NamespaceFacts::Labels(&labels),
        runtime_classes: RuntimeClassFacts::Known(&names),
        entry: Entry::OptedIn,
    };
    let body = review(&job_pod());
    let parsed = admission::parse(&body).expect("review");
    let decision = decide(&policy, facts, &parsed.request).expect("readable");
    let Decision::Deny {
        message,
        refused,
        chosen,
        ..
    } = &decision
    else {
        panic!("expected a denial, got {decision:?}");
    };
    assert_eq!(chosen.class.name, "k8srunner-gpu-v100");
    assert_eq!(*refused, Some(RefusedChange::RuntimeClass));
    assert!(
        message.contains("RuntimeClass \"nvidia\"") && message.contains("doctor"),
        "{message}"
    );
    let answer = crate::answer::build(&policy, decision, Enforcement::Enforce);
    assert_eq!(answer.refused(), [RefusedChange::RuntimeClass]);
}

#[test]
fn a_gpu_class_gets_its_runtime_class_when_it_exists_or_nothing_is_known() {
    let policy = Policy::embedded();
    let labels = gpu_namespace();
    let names = BTreeSet::from(["nvidia".to_string()]);
    for runtime_classes in [RuntimeClassFacts::Known(&names), RuntimeClassFacts::Unknown] {
        let facts = Facts {
            namespace: NamespaceFacts::Labels(&labels),
            runtime_classes,
            entry: Entry::OptedIn,
        };
        let (pod, _, refused) = allowed(&policy, facts, &job_pod());
        assert_eq!(
            pod["spec"]["runtimeClassName"], "nvidia",
            "{runtime_classes:?}"
        );
        assert!(refused.is_empty());
    }
}

#[test]
fn a_class_without_a_runtime_class_ignores_the_runtime_classes() {
    let policy = Policy::embedded();
    let labels = namespace(&[]);
    let none = BTreeSet::new();
    let facts = Facts {
        namespace: NamespaceFacts::Labels(&labels),
        runtime_classes: RuntimeClassFacts::Known(&none),
        entry: Entry::OptedIn,
    };
    let (pod, _, refused) = allowed(&policy, facts, &job_pod());
    assert!(pod["spec"].get("runtimeClassName").is_none());
    assert!(refused.is_empty());
}
