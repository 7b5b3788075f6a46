//! The whole request path without the network: the bytes of an AdmissionReview in, the
//! bytes of the response out (parse, decide, patch, serialise), as the server runs it.
//!
//! Cases: (a) the GitLab Runner 16.5 job pod wrapped in a CREATE review as compact JSON,
//! mutated; (b) the same review for a namespace that is not opted in; (c) a small pod
//! that is not a job pod; (d) a GPU-class pod with overrides.

use std::collections::BTreeMap;
use std::hint::black_box;

use ci_pod_webhook::admission;
use ci_pod_webhook::mutate::NamespaceFacts;
use ci_pod_webhook::policy::Policy;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

fn review(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "c7a5b2b4-7d0e-4f3c-9a39-2d4c7f0b8e11",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "gitlab",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:gitlab:gitlab-runner",
                "uid": "0b8d3c1a-6f6e-4c5e-8a8e-1f9a4f0d2c33",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:gitlab", "system:authenticated"]
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .expect("json")
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

fn respond(policy: &Policy, facts: NamespaceFacts<'_>, body: &[u8]) -> Vec<u8> {
    let review = admission::parse(body).expect("readable");
    admission::answer(policy, facts, &review)
        .expect("answer")
        .body
}

fn benches(c: &mut Criterion) {
    let policy = Policy::embedded();
    let opted_in = BTreeMap::from([("ci.skao.int/pod-policy".to_string(), "enabled".to_string())]);
    let not_opted_in = BTreeMap::from([("team".to_string(), "astro".to_string())]);

    let job = review(fixture("gitlab-runner-16.5-job-pod.json"));
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
    let gpu = review(gpu_pod);
    let small = review(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d4f8", "namespace": "gitlab", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    }));

    let cases: [(&str, &[u8], NamespaceFacts<'_>); 4] = [
        (
            "a_job_pod_16.5_mutated",
            &job,
            NamespaceFacts::Labels(&opted_in),
        ),
        (
            "b_job_pod_not_opted_in",
            &job,
            NamespaceFacts::Labels(&not_opted_in),
        ),
        (
            "c_small_non_job_pod",
            &small,
            NamespaceFacts::Labels(&opted_in),
        ),
        (
            "d_gpu_pod_with_overrides",
            &gpu,
            NamespaceFacts::Labels(&opted_in),
        ),
    ];
    let mut group = c.benchmark_group("review");
    for (name, body, facts) in cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| respond(&policy, facts, black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
