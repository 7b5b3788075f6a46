//! The four reviews issue 5 names, and issue 15's large skips, built once and
//! shared by the criterion bench (`benches/core.rs`) and the instruction-count runner
//! (`examples/core_profile.rs`).
//!
//! Each is compact JSON, the way the API server sends it: (a) the GitLab Runner 16.5 job
//! pod wrapped in a CREATE review (about 20 KB), mutated; (b) the same review for a
//! namespace that is not opted in; (c) a small pod that is not a job pod; (d) a
//! GPU-class pod with overrides; (e) the 16.5 pod with its containers renamed, so it is
//! not a job pod, in an opted-in namespace (as large as (a), skipped); (f) the review of
//! (a) as an UPDATE (not a pod CREATE: skipped before its object is read, as (b) is).

use std::collections::BTreeMap;

use ci_pod_webhook_core::admission::{self, PodReview, Review};
use ci_pod_webhook_core::answer::Outcome;
use ci_pod_webhook_core::mutate::{self, NamespaceFacts};
use ci_pod_webhook_core::policy::Policy;
use serde_json::{Value, json};

pub struct Case {
    pub name: &'static str,
    pub body: Vec<u8>,
    pub opted_in: bool,
    /// What the review must come to, checked once before it is measured.
    pub outcome: Outcome,
}

pub struct Cases {
    pub policy: Policy,
    opted_in: BTreeMap<String, String>,
    not_opted_in: BTreeMap<String, String>,
    pub cases: Vec<Case>,
}

/// A review of `pod` in namespace `gitlab` from the runner's service account, as the
/// API server writes it (its field order is what the single pass relies on to read the
/// pod on the way).
fn review(pod: &Value, operation: &str) -> Vec<u8> {
    PodReview {
        uid: "c7a5b2b4-7d0e-4f3c-9a39-2d4c7f0b8e11",
        operation,
        user_uid: Some("0b8d3c1a-6f6e-4c5e-8a8e-1f9a4f0d2c33"),
        groups: &[
            "system:serviceaccounts",
            "system:serviceaccounts:gitlab",
            "system:authenticated",
        ],
        ..PodReview::create("gitlab", pod).by("system:serviceaccount:gitlab:gitlab-runner")
    }
    .to_json()
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

impl Cases {
    pub fn new() -> Cases {
        let job_pod = fixture("gitlab-runner-16.5-job-pod.json");
        let job = review(&job_pod, "CREATE");
        let mut gpu_pod = fixture("gitlab-runner-17.9-job-pod.json");
        gpu_pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] =
            json!("ska-k8srunner-dp-gpu-a100");
        for (k, v) in [
            ("ci.skao.int/gpus", "2"),
            ("ci.skao.int/cpu-limit", "16"),
            ("ci.skao.int/memory-request", "6Gi"),
        ] {
            gpu_pod["metadata"]["annotations"][k] = json!(v);
        }
        let mut not_a_job = fixture("gitlab-runner-16.5-job-pod.json");
        for (index, name) in [(0, "app"), (1, "sidecar")] {
            not_a_job["spec"]["containers"][index]["name"] = json!(name);
        }
        let update = review(&job_pod, "UPDATE");
        let small = review(
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-5d4f8", "namespace": "gitlab", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
            }),
            "CREATE",
        );
        let case = |name, body, opted_in, outcome| Case {
            name,
            body,
            opted_in,
            outcome,
        };
        Cases {
            policy: Policy::embedded(),
            opted_in: BTreeMap::from([(
                "ci.skao.int/pod-policy".to_string(),
                "enabled".to_string(),
            )]),
            not_opted_in: BTreeMap::from([("team".to_string(), "astro".to_string())]),
            cases: vec![
                case(
                    "a_job_pod_16.5_mutated",
                    job.clone(),
                    true,
                    Outcome::Mutated,
                ),
                case("b_job_pod_not_opted_in", job, false, Outcome::Skipped),
                case("c_small_non_job_pod", small, true, Outcome::Skipped),
                case(
                    "d_gpu_pod_with_overrides",
                    review(&gpu_pod, "CREATE"),
                    true,
                    Outcome::Mutated,
                ),
                case(
                    "e_large_non_job_pod",
                    review(&not_a_job, "CREATE"),
                    true,
                    Outcome::Skipped,
                ),
                case("f_job_pod_update", update, true, Outcome::Skipped),
            ],
        }
    }

    pub fn facts(&self, case: &Case) -> NamespaceFacts<'_> {
        NamespaceFacts::Labels(if case.opted_in {
            &self.opted_in
        } else {
            &self.not_opted_in
        })
    }

    /// Panics unless every case comes to the outcome it is named for, so that a change
    /// that turns a case into something else is not measured as a speed-up.
    pub fn check(&self) {
        for case in &self.cases {
            let review = admission::parse(&case.body).expect("readable");
            let response =
                admission::respond(&self.policy, self.facts(case), &review).expect("answer");
            assert_eq!(response.answer.outcome, case.outcome, "{}", case.name);
            let single = self.respond(case, &case.body);
            assert_eq!(
                single, response.body,
                "{}: the single pass answers otherwise",
                case.name
            );
        }
    }

    /// The whole request path the server runs: parse (reading the pod in the same pass
    /// when the namespace is in scope, stopping before it when it is not), decide, patch,
    /// encode.
    pub fn respond(&self, case: &Case, body: &[u8]) -> Vec<u8> {
        let review = self.read(case, body);
        self.decide_and_encode(case, &review)
    }

    /// The first half of [`Cases::respond`]: the single pass over the body.
    pub fn read<'b>(&self, case: &Case, body: &'b [u8]) -> Review<'b> {
        admission::parse_with(body, |namespace| {
            mutate::in_scope(&self.policy, namespace, self.facts(case))
        })
        .expect("readable")
    }

    /// The second half of [`Cases::respond`]: decide, patch and encode the answer.
    pub fn decide_and_encode(&self, case: &Case, review: &Review<'_>) -> Vec<u8> {
        admission::respond(&self.policy, self.facts(case), review)
            .expect("answer")
            .body
    }
}
