//! SKA's path onto the webhook (docs/ska-migration.md) as the example policies ship it:
//! DP's GPU pods in the namespaces its CI jobs make are placed (`gpuWorkloads` on), a
//! GPU pod the policy does not place is logged for what it is, and an unedited example
//! is never taken for a real policy (its placeholder tokens are warned about).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ci_pod_webhook_core::admission::{self, PodReview};
use ci_pod_webhook_core::answer::{self, Outcome};
use ci_pod_webhook_core::mutate::{Entry, Facts, NamespaceFacts, RuntimeClassFacts};
use ci_pod_webhook_core::policy::Policy;
use serde_json::Value;

fn example(name: &str) -> (PathBuf, Policy) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/policies")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("example policy");
    let policy = Policy::parse(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (path, policy)
}

/// A Deployment's pod asking for one GPU (not a job pod), as the API server sends it.
fn gpu_pod() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gpu-workload-deployment-pod.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON")
}

/// The answer of the GPU workloads entry (`/mutate/gpu-workloads`) for `pod` in the
/// unlabelled namespace `namespace`.
fn on_gpu_entry<'p>(policy: &'p Policy, namespace: &str, pod: &Value) -> answer::Answer<'p> {
    let review = PodReview::create(namespace, pod).to_value();
    let body = serde_json::to_vec(&review).expect("JSON");
    let parsed = admission::parse(&body).expect("a review");
    let labels = BTreeMap::new();
    let facts = Facts {
        namespace: NamespaceFacts::Labels(&labels),
        runtime_classes: RuntimeClassFacts::Unknown,
        entry: Entry::GpuWorkloads,
    };
    answer::decide(policy, facts, &parsed.request).expect("decided")
}

#[test]
fn ska_dp_places_gpu_pods_in_the_namespaces_its_ci_jobs_make() {
    let (_, policy) = example("ska-dp.yaml");
    let answer = on_gpu_entry(&policy, "ci-ska-mid-itf-8d3f2a", &gpu_pod());
    assert_eq!(answer.outcome, Outcome::Mutated, "{answer:?}");
    let described: Vec<String> = answer
        .patch()
        .expect("a patch")
        .changes
        .iter()
        .map(|c| c.describe())
        .collect();
    for wanted in [
        "spec.runtimeClassName: (none) → nvidia",
        "spec.nodeSelector[\"nvidia.com/gpu\"]: (none) → true",
    ] {
        assert!(described.iter().any(|d| d == wanted), "{described:#?}");
    }
    // Never the cluster's own namespaces.
    let answer = on_gpu_entry(&policy, "kube-system", &gpu_pod());
    assert_eq!(answer.outcome, Outcome::Skipped);
}

#[test]
fn a_gpu_pod_the_policy_does_not_place_is_not_blamed_on_the_opt_in_label() {
    // ska-techops.yaml has no gpuWorkloads: the GPU entry has nothing to do.
    let (_, techops) = example("ska-techops.yaml");
    let answer = on_gpu_entry(&techops, "ci-ska-low-5c1e", &gpu_pod());
    let reason = answer.skip_reason().expect("skipped");
    assert!(!reason.as_str().contains("opted in"), "{}", reason.as_str());
    assert!(
        reason.as_str().contains("gpuWorkloads"),
        "{}",
        reason.as_str()
    );
    // ska-dp.yaml has it, for ci-* only.
    let (_, dp) = example("ska-dp.yaml");
    let answer = on_gpu_entry(&dp, "staging", &gpu_pod());
    let reason = answer.skip_reason().expect("skipped");
    assert!(
        reason.as_str().contains("gpuWorkloads"),
        "{}",
        reason.as_str()
    );
    assert!(!reason.as_str().contains("opted in"), "{}", reason.as_str());
}

#[test]
fn check_policy_warns_that_an_unedited_example_holds_placeholder_tokens() {
    for name in ["ska-dp.yaml", "ska-techops.yaml"] {
        let (path, _) = example(name);
        let mut out = Vec::new();
        ci_pod_webhook::cli::check_policy(Some(&path), &mut out).expect("check-policy");
        let out = String::from_utf8(out).expect("UTF-8");
        let warning = out
            .lines()
            .find(|l| l.starts_with("warning: ") && l.contains("placeholder"))
            .unwrap_or_else(|| panic!("{name}: no placeholder warning in\n{out}"));
        assert!(warning.contains("todo0"), "{warning}");
    }
    // A filled-in policy has none.
    let (path, _) = example("ska-dp.yaml");
    let filled = std::fs::read_to_string(path)
        .expect("read")
        .replace("todo0101", "xz3kq9ab")
        .replace("todo0102", "t3yz8bqk");
    let policy = Policy::parse(&filled, "filled.yaml").expect("policy");
    assert!(
        !policy.warnings().iter().any(|w| w.contains("placeholder")),
        "{:?}",
        policy.warnings()
    );
}
