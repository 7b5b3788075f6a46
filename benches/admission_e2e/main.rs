//! What ci-pod-webhook costs a pod creation, seen through a real kube-apiserver.
//!
//! `KUBEBUILDER_ASSETS=DIR cargo bench --bench admission_e2e` (BENCHMARKS.md) starts the
//! e2e control plane (tests/support/e2e), the real `serve` process registered with
//! manifests/base's configuration, and a minimal webhook of our own that answers every
//! pod with a one-operation patch. It then creates the 17.9 job pod (20 KB) N times
//! (`BENCH_PODS`, default 300) in each of these namespaces, interleaved, one create at a
//! time:
//!
//! - phase 1: `none` (no webhook is called), `ours` (ci-pod-webhook),
//!   `minimal` (the one-operation webhook), `minimal-ourpatch` (the minimal server answering
//!   with ci-pod-webhook's patch: the API server's cost of our patch's shape);
//! - phase 2: `none` again and `ours-nopatch`: the stored, already-patched pod sent again,
//!   so ci-pod-webhook is called and answers without a patch.
//!
//! It prints, per way, the create latency (p50/p90/p99) and what it adds over `none`,
//! and where the time goes: the API server's
//! `apiserver_admission_webhook_admission_duration_seconds` per webhook (the call plus
//! applying its patch) and our server's own `ci_pod_webhook_request_duration_seconds`,
//! both as means over the measured creates. The API server calls webhooks over HTTP/1.1
//! as in a cluster; `BENCH_HTTP2=1` lets it use HTTP/2.

// The e2e tests' harness; the bench uses part of it.
#[allow(dead_code)]
#[path = "../../tests/support/e2e/mod.rs"]
mod support;

mod minimal;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

const FIXTURE: &str = "gitlab-runner-17.9-job-pod.json";
const MINIMAL_HOOK: &str = "minimal.bench.e2e";
const SHAPE_HOOK: &str = "ours-shape.bench.e2e";
const OUR_HOOK: &str = "pods.ci-pod-webhook.ci.skao.int";
const WARM_UP: usize = 20;

fn main() {
    let pods: usize = std::env::var("BENCH_PODS")
        .ok()
        .map(|n| n.parse().expect("BENCH_PODS is a number of pods"))
        .unwrap_or(300);
    let http2 = std::env::var("BENCH_HTTP2").is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(pods, http2));
}

/// One way of creating pods: a namespace and the pod body sent to it.
struct Way {
    name: &'static str,
    namespace: String,
    pod: Value,
    latencies: Vec<Duration>,
}

async fn run(pods: usize, http2: bool) {
    let cp = &ControlPlane::own(
        "bench",
        Options {
            webhook_http2: http2,
            ..Options::default()
        },
    )
    .await;
    let ours = cp.webhook().await;
    let minimal = minimal::start(our_patch(&job_pod(FIXTURE))).await;
    register_minimal(cp, &minimal).await;
    let client = cp.client().await;
    let pod = job_pod(FIXTURE);

    let none = cp.namespace("bench-none", &[]).await;
    let mutated = cp.namespace("bench-ours", &[OPT_IN]).await;
    let floor = cp
        .namespace("bench-minimal", &[("bench.e2e/minimal", "true")])
        .await;
    let shaped = cp
        .namespace(
            "bench-minimal-ourpatch",
            &[("bench.e2e/ours-shape", "true")],
        )
        .await;
    wait_until_minimal_called(&floor, &pod, "bench.e2e/minimal").await;
    wait_until_minimal_called(&shaped, &pod, "ci.skao.int/class").await;
    let stored = mutated
        .create_pod(&renamed(&pod, "template"))
        .await
        .expect("template");
    let patched = resend(&stored);

    let way = |name, ns: &TestNamespace, pod: &Value| Way {
        name,
        namespace: ns.name.clone(),
        pod: pod.clone(),
        latencies: Vec::new(),
    };
    println!(
        "admission_e2e: {pods} creates per way, webhooks over {}",
        if http2 { "HTTP/2" } else { "HTTP/1.1" }
    );

    let mut phase1 = [
        way("none", &none, &pod),
        way("ours", &mutated, &pod),
        way("minimal", &floor, &pod),
        way("minimal-ourpatch", &shaped, &pod),
    ];
    let (api1, our1) = measure(&client, ours, &mut phase1, pods, "p1").await;
    let mut phase2 = [
        way("none", &none, &pod),
        way("ours-nopatch", &mutated, &patched),
    ];
    let (api2, our2) = measure(&client, ours, &mut phase2, pods, "p2").await;

    report(&phase1, &api1, &our1);
    report(&phase2, &api2, &our2);
    stages(&ours.reviews_in(&mutated.name));
}

/// Our server's time per review from its own log lines (every review in the `ours`
/// namespace, warm-up included): the whole request, and the part spent waiting for the
/// body to arrive (the client's pace, not our work).
fn stages(lines: &[Value]) {
    let field = |name: &str| {
        let mut values: Vec<u64> = lines.iter().filter_map(|l| l[name].as_u64()).collect();
        values.sort_unstable();
        values
    };
    let (total, body) = (field("latency_us"), field("body_us"));
    if total.is_empty() || body.is_empty() {
        return;
    }
    let at = |v: &[u64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "ci-pod-webhook's log, {} reviews: whole request p50 {} µs / p90 {} µs, of which until the body was in p50 {} µs / p90 {} µs",
        total.len(),
        at(&total, 0.5),
        at(&total, 0.9),
        at(&body, 0.5),
        at(&body, 0.9)
    );
}

/// The JSONPatch ci-pod-webhook answers for `pod` in an opted-in namespace, with the
/// policy of manifests/base (what the `serve` under test runs).
fn our_patch(pod: &Value) -> String {
    use ci_pod_webhook_core::admission::{self, PodReview};
    use ci_pod_webhook_core::{mutate::NamespaceFacts, policy::Policy};
    let path = repo_file("manifests/base/policy.yaml");
    let text = std::fs::read_to_string(&path).expect("manifests/base/policy.yaml");
    let policy = Policy::parse(&text, &path.display().to_string()).expect("valid policy");
    let body = PodReview {
        uid: "bench",
        ..PodReview::create("bench-ours", pod).by("bench")
    }
    .to_json();
    let parsed = admission::parse(&body).expect("a review");
    let labels = BTreeMap::from([(OPT_IN.0.to_string(), OPT_IN.1.to_string())]);
    let answer =
        admission::respond(&policy, NamespaceFacts::Labels(&labels), &parsed).expect("answered");
    let response: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let patch = response["response"]["patch"].as_str().expect("a patch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    String::from_utf8(patch).expect("UTF-8")
}

/// The stored pod as a client would send it again.
fn resend(stored: &Value) -> Value {
    let mut pod = stored.clone();
    pod.as_object_mut().expect("pod").remove("status");
    let metadata = pod["metadata"].as_object_mut().expect("metadata");
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
        "namespace",
    ] {
        metadata.remove(field);
    }
    pod
}

/// Warms up, then creates `pods` pods per way, the ways interleaved (rotating which goes
/// first); returns the metric deltas over the measured creates.
async fn measure(
    client: &kube::Client,
    ours: &Webhook,
    ways: &mut [Way],
    pods: usize,
    tag: &str,
) -> (BTreeMap<String, (f64, f64)>, BTreeMap<String, (f64, f64)>) {
    let mut before = (BTreeMap::new(), BTreeMap::new());
    for round in 0..WARM_UP + pods {
        if round == WARM_UP {
            before = (api_webhook_times(client).await, our_times(ours).await);
        }
        for k in 0..ways.len() {
            let way = &mut ways[(round + k) % ways.len()];
            let mut pod = way.pod.clone();
            pod["metadata"]["name"] = json!(format!("{tag}-{}-{round}", way.name));
            let body = serde_json::to_vec(&pod).expect("JSON");
            let request =
                hyper::Request::post(format!("/api/v1/namespaces/{}/pods", way.namespace))
                    .header("content-type", "application/json")
                    .body(body)
                    .expect("request");
            let start = Instant::now();
            let created: Value = client.request(request).await.expect("create");
            let took = start.elapsed();
            assert!(created["metadata"]["uid"].is_string());
            if round >= WARM_UP {
                way.latencies.push(took);
            }
        }
    }
    let after = (api_webhook_times(client).await, our_times(ours).await);
    (delta(&before.0, &after.0), delta(&before.1, &after.1))
}

fn delta(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> BTreeMap<String, (f64, f64)> {
    after
        .iter()
        .map(|(k, (sum, count))| {
            let (s0, c0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), (sum - s0, count - c0))
        })
        .collect()
}

/// `(sum seconds, count)` of the API server's webhook admission histogram, per webhook.
async fn api_webhook_times(client: &kube::Client) -> BTreeMap<String, (f64, f64)> {
    let request = hyper::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("API server /metrics");
    sums_and_counts(
        &text,
        "apiserver_admission_webhook_admission_duration_seconds",
        |labels| {
            labels
                .contains(r#"type="admit""#)
                .then(|| label(labels, "name"))
                .flatten()
        },
    )
}

/// `(sum seconds, count)` of our server's own latency histogram, per outcome.
async fn our_times(ours: &Webhook) -> BTreeMap<String, (f64, f64)> {
    let text = ours.metrics().await;
    sums_and_counts(&text, "ci_pod_webhook_request_duration_seconds", |labels| {
        label(labels, "outcome")
    })
}

fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(labels[start..end].to_string())
}

fn sums_and_counts(
    text: &str,
    metric: &str,
    key: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        for (suffix, slot) in [("_sum{", 0), ("_count{", 1)] {
            let Some(rest) = line.strip_prefix(&format!("{metric}{suffix}")) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let (Some(key), Ok(value)) = (key(labels), value.trim().parse::<f64>()) else {
                continue;
            };
            let entry = out.entry(key).or_default();
            if slot == 0 {
                entry.0 += value
            } else {
                entry.1 += value
            }
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(ways: &[Way], api: &BTreeMap<String, (f64, f64)>, ours: &BTreeMap<String, (f64, f64)>) {
    let stats = |way: &Way| {
        let mut sorted = way.latencies.clone();
        sorted.sort();
        [0.5, 0.9, 0.99].map(|p| percentile(&sorted, p))
    };
    let base = stats(&ways[0]);
    println!("\n| way | creates | p50 ms | p90 ms | p99 ms | added p50 | added p90 | added p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for way in ways {
        let s = stats(way);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:+.2} | {:+.2} | {:+.2} |",
            way.name,
            way.latencies.len(),
            s[0],
            s[1],
            s[2],
            s[0] - base[0],
            s[1] - base[1],
            s[2] - base[2]
        );
    }
    let mean = |map: &BTreeMap<String, (f64, f64)>, key: &str| {
        map.get(key)
            .filter(|(_, count)| *count > 0.0)
            .map(|(sum, count)| (sum / count * 1000.0, *count))
    };
    for hook in [OUR_HOOK, MINIMAL_HOOK, SHAPE_HOOK] {
        if let Some((ms, count)) = mean(api, hook) {
            println!(
                "API server, webhook {hook}: mean {ms:.3} ms over {count} calls (call + patch)"
            );
        }
    }
    for outcome in ["mutated", "unchanged"] {
        if let Some((ms, count)) = mean(ours, outcome) {
            println!("ci-pod-webhook's own time, {outcome}: mean {ms:.3} ms over {count} reviews");
        }
    }
}

/// A second MutatingWebhookConfiguration for the minimal webhook, for namespaces labelled
/// `bench.e2e/minimal=true` only.
async fn register_minimal(cp: &ControlPlane, minimal: &minimal::Minimal) {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&minimal.ca_pem);
    let hook = |name: &str, path: &str, label: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("https://127.0.0.1:{}{path}", minimal.port), "caBundle": ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {label: "true"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 3,
        })
    };
    let configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "bench-minimal"},
        "webhooks": [
            hook(MINIMAL_HOOK, "/mutate", "bench.e2e/minimal"),
            hook(SHAPE_HOOK, "/ours-shape", "bench.e2e/ours-shape"),
        ],
    }))
    .expect("configuration");
    Api::<MutatingWebhookConfiguration>::all(cp.client().await)
        .create(&PostParams::default(), &configuration)
        .await
        .expect("register the minimal webhook");
}

async fn wait_until_minimal_called(ns: &TestNamespace<'_>, pod: &Value, annotation: &str) {
    let start = Instant::now();
    loop {
        if let Ok(stored) = ns.dry_run_pod(pod).await
            && annotations(&stored).contains_key(annotation)
        {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the minimal webhook is never called"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
