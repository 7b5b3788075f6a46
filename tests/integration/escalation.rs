//! No escalation: every way a job author might try to get more than the class allows,
//! through the public API (`admission::parse` + `admission::respond`, as the server
//! calls them) and, for a few, over HTTPS. None gains anything beyond the class
//! ceiling; each is clamped or denied as DESIGN.md says; pods outside opted-in
//! namespaces are never patched.
//!
//! What job authors control: pod annotations (through `KUBERNETES_POD_ANNOTATIONS_*`),
//! possibly pod labels (`KUBERNETES_POD_LABELS_*`, except under `runner.gitlab.com`,
//! which GitLab Runner refuses), env variables, services (more `svc-N` containers).
//! What they do not control: the namespace and its labels, the requesting service
//! account, the runner name label. The unit tests in `crates/core/src/mutate/tests/` cover each
//! rule once; this suite goes through every class and every override.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::support::*;
use ci_pod_webhook::cluster::Cluster;
use ci_pod_webhook_core::admission;
use ci_pod_webhook_core::mutate::NamespaceFacts;
use ci_pod_webhook_core::policy::{DEFAULT_POLICY_YAML, Policy, ResourceName, RunnerClass};
use ci_pod_webhook_core::quantity::Quantity;
use serde_json::{Value, json};

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);
const OPT_IN: &str = "ci.skao.int/pod-policy";
const CLASS_LABEL: &str = "ci.skao.int/runner-class";
const RUNNER_LABEL: &str = "manager.runner.gitlab.com/name";
const ID_SHORT_LABEL: &str = "manager.runner.gitlab.com/id-short";

#[derive(Debug)]
enum Verdict {
    Skipped,
    Denied(String),
    Allowed {
        class: String,
        pod: Value,
        warnings: Vec<String>,
    },
}

impl Verdict {
    fn pod(&self) -> &Value {
        match self {
            Verdict::Allowed { pod, .. } => pod,
            other => panic!("expected an allowed pod, got {other:?}"),
        }
    }

    fn class(&self) -> &str {
        match self {
            Verdict::Allowed { class, .. } => class,
            other => panic!("expected an allowed pod, got {other:?}"),
        }
    }

    fn denial(&self) -> &str {
        match self {
            Verdict::Denied(message) => message,
            other => panic!("expected a denial, got {other:?}"),
        }
    }
}

/// The answer to `review`, with the patch applied to the review's pod.
fn judge(policy: &Policy, namespace: Option<&BTreeMap<String, String>>, review: &Value) -> Verdict {
    let bytes = serde_json::to_vec(review).expect("json");
    let parsed = admission::parse(&bytes).expect("a readable review");
    let facts = namespace.map_or(NamespaceFacts::TrustSelector, NamespaceFacts::Labels);
    let answer = admission::respond(policy, facts, &parsed).expect("a readable pod");
    let reply: Value = serde_json::from_slice(&answer.body).expect("json");
    let response = &reply["response"];
    if response["allowed"] == false {
        return Verdict::Denied(
            response["status"]["message"]
                .as_str()
                .expect("message")
                .into(),
        );
    }
    let Some(class) = response["auditAnnotations"]["class"].as_str() else {
        assert!(response.get("patch").is_none(), "{response}");
        return Verdict::Skipped;
    };
    let pod = patched_pod(review, &reply);
    let warnings = response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Verdict::Allowed {
        class: class.to_string(),
        pod,
        warnings,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The job pod as runner `runner` (GitLab Runner 17.9+) labels it: its name, and the
/// short token in the pod's name as `manager.runner.gitlab.com/id-short`.
fn with_runner(runner: &str) -> Value {
    let mut pod = job_pod();
    pod["metadata"]["labels"][RUNNER_LABEL] = json!(runner);
    pod["metadata"]["labels"][ID_SHORT_LABEL] = json!("xz3kq9ab");
    pod
}

fn annotate(mut pod: Value, key: &str, value: &str) -> Value {
    pod["metadata"]["annotations"][key] = json!(value);
    pod
}

fn review(pod: Value) -> Value {
    pod_review("escalation", "gitlab", pod)
}

fn run(pod: Value) -> Verdict {
    judge(&POLICY, None, &review(pod))
}

fn quantity(v: &Value) -> Quantity {
    match v {
        Value::String(s) => Quantity::parse(s).expect("a quantity"),
        other => Quantity::parse(&other.to_string()).expect("a quantity"),
    }
}

fn class(name: &str) -> &'static RunnerClass {
    POLICY.class(name).expect("a class").1
}

/// Everything a job pod may hold under `class`: every container of a role within the
/// ceiling, request ≤ limit, GPUs only on GPU classes and within their maximum.
fn assert_within(class: &RunnerClass, pod: &Value, what: &str) {
    let lists = ["containers", "initContainers"];
    for container in lists
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
    {
        let name = container["name"].as_str().unwrap_or_default();
        let resources = &container["resources"];
        for r in ResourceName::ALL {
            let key = r.as_str();
            let limit = resources["limits"].get(key).map(quantity);
            let request = resources["requests"].get(key).map(quantity);
            if let Some(max) = class.max.get(&r) {
                for v in [limit, request].into_iter().flatten() {
                    assert!(
                        v <= *max,
                        "{what}: {name} {key} {v} above {max} ({})",
                        class.name
                    );
                }
            }
            if let (Some(l), Some(q)) = (limit, request) {
                assert!(q <= l, "{what}: {name} {key} request {q} above limit {l}");
            }
        }
        let gpus = resources["limits"].get("nvidia.com/gpu").map(quantity);
        match (&class.gpu, gpus) {
            (None, Some(n)) => panic!("{what}: {name} has {n} GPUs on class {}", class.name),
            (Some(gpu), Some(n)) => assert!(
                n <= Quantity::from_units(i64::from(gpu.max)),
                "{what}: {n} GPUs"
            ),
            _ => {}
        }
    }
    if class.gpu.is_none() {
        assert!(pod["spec"].get("runtimeClassName").is_none(), "{what}");
        let selector = pod["spec"]["nodeSelector"].as_object();
        assert!(
            selector.is_none_or(|s| !s.contains_key("nvidia.com/gpu")),
            "{what}"
        );
    }
}

fn build(pod: &Value) -> &Value {
    container(pod, "build")
}

const OVERRIDES: [&str; 4] = ["cpu-request", "cpu-limit", "memory-request", "memory-limit"];

/// Values a job might try, valid ones of every size and shape.
const ASKED: [&str; 12] = [
    "1",
    "64",
    "1000000",
    "99999999999999999999Ei",
    "1e400",
    "1e18",
    "1Ei",
    "9223372036854775807",
    "128Gi",
    "64000m",
    "1.5e3",
    "0.000001Ei",
];

#[test]
fn overrides_above_the_ceiling_are_clamped_in_every_class() {
    for class in &POLICY.classes {
        for key in OVERRIDES {
            for asked in ASKED {
                let what = format!("{}: ci.skao.int/{key}={asked}", class.name);
                let pod = annotate(
                    with_runner(&class.name),
                    &format!("ci.skao.int/{key}"),
                    asked,
                );
                let verdict = run(pod);
                if let Verdict::Denied(message) = &verdict {
                    // Only memory below a whole byte is refused among these values.
                    assert!(
                        message.contains("whole number of bytes"),
                        "{what}: {message}"
                    );
                    continue;
                }
                assert_eq!(verdict.class(), class.name, "{what}");
                assert_within(class, verdict.pod(), &what);
            }
        }
    }
}

#[test]
fn gpu_overrides_are_bounded_by_the_class_and_ignored_without_gpus() {
    for class in &POLICY.classes {
        for asked in [
            "1",
            "2",
            "4",
            "5",
            "64",
            "4294967296",
            "99999999999999999999999",
        ] {
            let what = format!("{}: gpus={asked}", class.name);
            let verdict = run(annotate(
                with_runner(&class.name),
                "ci.skao.int/gpus",
                asked,
            ));
            assert_within(class, verdict.pod(), &what);
            let Verdict::Allowed { pod, warnings, .. } = &verdict else {
                unreachable!()
            };
            match &class.gpu {
                None => assert!(
                    warnings
                        .iter()
                        .any(|w| w.contains("ignored") && w.contains("no GPUs")),
                    "{what}: {warnings:?}"
                ),
                Some(gpu) => {
                    let n: u32 = asked.parse().unwrap_or(u32::MAX);
                    let want = n.min(gpu.max).to_string();
                    assert_eq!(
                        build(pod)["resources"]["limits"]["nvidia.com/gpu"],
                        json!(want),
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn with_on_exceed_deny_every_override_above_the_ceiling_is_denied() {
    let strict = Policy::parse(
        &DEFAULT_POLICY_YAML.replace("onExceed: clamp", "onExceed: deny"),
        "strict.yaml",
    )
    .expect("valid");
    for class in &strict.classes {
        for (key, asked) in [
            ("cpu-limit", "31"),
            ("memory-request", "129Gi"),
            ("gpus", "5"),
        ] {
            if key == "gpus" && class.gpu.is_none() {
                continue;
            }
            // `max.cpu: null` (the large classes) is knowingly unlimited: no ceiling.
            if key == "cpu-limit" && !class.max.contains_key(&ResourceName::Cpu) {
                continue;
            }
            let pod = annotate(
                with_runner(&class.name),
                &format!("ci.skao.int/{key}"),
                asked,
            );
            let verdict = judge(&strict, None, &review(pod));
            assert!(
                verdict.denial().contains("is above the ceiling"),
                "{}: {key}={asked}: {verdict:?}",
                class.name
            );
        }
    }
}

#[test]
fn zero_negative_and_malformed_overrides_are_denied() {
    let bad = [
        ("cpu-limit", "0"),
        ("cpu-limit", "0m"),
        ("cpu-limit", "-1"),
        ("cpu-request", "-500m"),
        ("memory-limit", "-1Gi"),
        ("memory-request", "0"),
        ("memory-limit", "0.5"),
        ("memory-limit", "1m"),
        ("cpu-limit", "NaN"),
        ("cpu-limit", "Infinity"),
        ("cpu-limit", "0x10"),
        ("cpu-limit", "1e"),
        ("gpus", "0"),
        ("gpus", "-1"),
        ("gpus", "+2"),
        ("gpus", "1.5"),
        ("gpus", "２"), // a fullwidth digit
        ("docker", "enabled"),
    ];
    for class in ["k8srunner", "ska-k8srunner-dp-gpu-a100"] {
        for (key, value) in bad {
            let pod = annotate(with_runner(class), &format!("ci.skao.int/{key}"), value);
            let message = run(pod).denial().to_string();
            assert!(
                message.contains(&format!("ci.skao.int/{key}")),
                "{class}: {key}={value:?}: {message}"
            );
        }
    }
}

#[test]
fn a_request_above_a_limit_never_lifts_anything_past_the_ceiling() {
    // A request override raises the limit with it, within the ceiling.
    let verdict = run(annotate(job_pod(), "ci.skao.int/cpu-request", "100"));
    let limits = &build(verdict.pod())["resources"];
    assert_eq!(limits["requests"]["cpu"], "8");
    assert_eq!(limits["limits"]["cpu"], "8");
    assert_within(class("k8srunner"), verdict.pod(), "cpu-request=100");
    // Both asked, the request above the limit: denied.
    let pod = annotate(
        annotate(job_pod(), "ci.skao.int/memory-request", "12Gi"),
        "ci.skao.int/memory-limit",
        "4Gi",
    );
    assert!(
        run(pod)
            .denial()
            .contains("the request must not exceed the limit")
    );
    // Requests above limits already in the pod (from the runner's config) are lowered.
    let mut pod = job_pod();
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "30", "memory": "100Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}});
    pod["spec"]["containers"][2]["resources"] = json!({"requests": {"cpu": "64"}});
    let verdict = run(pod);
    assert_eq!(
        build(verdict.pod())["resources"]["requests"],
        json!({"cpu": "2", "memory": "4Gi"})
    );
    assert_within(class("k8srunner"), verdict.pod(), "requests above limits");
}

/// The same pod with and without a trick: the trick must change nothing but, at most,
/// turn the answer into a denial.
fn gains_nothing(trick: &str, pod: Value, plain: Value) {
    let baseline = run(plain);
    match run(pod) {
        Verdict::Denied(_) => {}
        Verdict::Allowed { class, pod, .. } => {
            assert_eq!(class, baseline.class(), "{trick}");
            for key in ["containers", "initContainers"] {
                let resources = |p: &Value| -> Vec<Value> {
                    p["spec"][key]
                        .as_array()
                        .map(|cs| cs.iter().map(|c| c["resources"].clone()).collect())
                        .unwrap_or_default()
                };
                assert_eq!(resources(&pod), resources(baseline.pod()), "{trick}");
            }
            assert_eq!(
                pod["spec"]["nodeSelector"],
                baseline.pod()["spec"]["nodeSelector"],
                "{trick}"
            );
            assert_eq!(
                pod["spec"]["tolerations"],
                baseline.pod()["spec"]["tolerations"],
                "{trick}"
            );
            assert_eq!(
                pod["spec"].get("runtimeClassName"),
                baseline.pod()["spec"].get("runtimeClassName"),
                "{trick}"
            );
        }
        Verdict::Skipped => panic!("{trick}: a job pod was skipped"),
    }
}

#[test]
fn annotation_keys_in_other_cases_or_with_look_alike_characters_gain_nothing() {
    let keys = [
        "CI.SKAO.INT/cpu-limit",
        "ci.skao.int/CPU-LIMIT",
        "Ci.Skao.Int/Cpu-Limit",
        "ci.skao.int/cpu-limit ",
        " ci.skao.int/cpu-limit",
        "ci.skao.int/cpu_limit",
        "ci.skao.int/cpu-limits",
        "ci.skao.int//cpu-limit",
        "ci.skao.int/cpu\u{200b}-limit", // zero-width space
        "ci.skao.\u{0456}nt/cpu-limit",  // Cyrillic i
        "ci.s\u{212a}ao.int/cpu-limit",  // Kelvin sign, which lower-cases to k
        "ci.skao.int\u{ff0f}cpu-limit",  // fullwidth solidus
        "ci.skao.int\u{2215}cpu-limit",  // division slash
        "\u{ff43}i.skao.int/cpu-limit",  // fullwidth c
        "ci.skao.int/cpu-lim\u{0456}t",  // Cyrillic i in the name
        "ci.skao.int/cpu-limit\u{0}",
        "skao.int/cpu-limit",
        "ci-skao-int/cpu-limit",
        "cpu-limit",
    ];
    for key in keys {
        for class in ["k8srunner", "ska-k8srunner-dp"] {
            let pod = annotate(with_runner(class), key, "30");
            gains_nothing(&format!("{class}: {key:?}=30"), pod, with_runner(class));
        }
    }
    // Keys under the prefix that are not overrides are refused, with a hint on case.
    let message = run(annotate(job_pod(), "ci.skao.int/CPU-LIMIT", "30"))
        .denial()
        .to_string();
    assert!(message.contains("case-sensitive"), "{message}");
    let message = run(annotate(job_pod(), "CI.SKAO.INT/cpu-limit", "30"))
        .denial()
        .to_string();
    assert!(
        message.contains("not a ci-pod-webhook override"),
        "{message}"
    );
}

#[test]
fn a_class_name_in_an_annotation_label_or_env_does_not_choose_the_class() {
    let xl = "k8srunner-xlarge";
    let tricks: Vec<(&str, Value)> = vec![
        (
            "the audit annotation ci.skao.int/class",
            annotate(job_pod(), "ci.skao.int/class", xl),
        ),
        (
            "the audit annotation ci.skao.int/policy",
            annotate(job_pod(), "ci.skao.int/policy", "0000"),
        ),
        (
            "annotation ci.skao.int/runner-class",
            annotate(job_pod(), CLASS_LABEL, xl),
        ),
        ("pod label ci.skao.int/runner-class", {
            let mut pod = job_pod();
            pod["metadata"]["labels"][CLASS_LABEL] = json!(xl);
            pod
        }),
        ("pod label ci.skao.int/class", {
            let mut pod = job_pod();
            pod["metadata"]["labels"]["ci.skao.int/class"] = json!(xl);
            pod
        }),
        ("pod label ci.skao.int/pod-policy", {
            let mut pod = job_pod();
            pod["metadata"]["labels"][OPT_IN] = json!("enabled");
            pod
        }),
        ("env CI_RUNNER_TAGS", {
            let mut pod = job_pod();
            let env = pod["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env");
            env.push(json!({"name": "CI_RUNNER_TAGS", "value": format!("[\"{xl}\"]")}));
            env.push(json!({"name": "CI_RUNNER_DESCRIPTION", "value": xl}));
            pod
        }),
        ("a look-alike runner label key", {
            let mut pod = job_pod();
            pod["metadata"]["labels"]["Manager.runner.gitlab.com/name"] = json!(xl);
            pod["metadata"]["labels"]["manager.runner.gitlab.com/Name"] = json!(xl);
            pod["metadata"]["labels"]["manager.runner.gitlab.com/name "] = json!(xl);
            pod["metadata"]["labels"]["runner.gitlab.com/name"] = json!(xl);
            pod
        }),
        (
            "the runner name as an annotation",
            annotate(job_pod(), RUNNER_LABEL, xl),
        ),
    ];
    for (trick, pod) in tricks {
        let verdict = run(pod);
        match &verdict {
            Verdict::Denied(message) => {
                assert!(message.contains("runner-class"), "{trick}: {message}")
            }
            Verdict::Allowed {
                class: chosen, pod, ..
            } => {
                assert_eq!(chosen, "k8srunner", "{trick}");
                assert_eq!(
                    pod["metadata"]["annotations"]["ci.skao.int/class"], "k8srunner",
                    "{trick}"
                );
                assert_eq!(
                    pod["metadata"]["annotations"]["ci.skao.int/policy"],
                    POLICY.hash.as_str(),
                    "{trick}"
                );
                assert_within(class("k8srunner"), pod, trick);
            }
            Verdict::Skipped => panic!("{trick}: skipped"),
        }
    }
}

#[test]
fn the_runner_name_label_is_trusted_but_an_admin_namespace_label_overrides_it() {
    // GitLab Runner 17.9+ refuses job-set labels under runner.gitlab.com, so the runner
    // name label is a trusted fact beside an id-short that agrees with the pod's name
    // (docs/matching.md): a pod carrying both gets that runner's class.
    let forged = with_runner("k8srunner-xlarge");
    assert_eq!(run(forged.clone()).class(), "k8srunner-xlarge");
    // Before 17.9 a job may set the label (issue 25, point 4): alone, or beside an
    // id-short that is not the pod name's token, it chooses nothing.
    let mut alone = forged.clone();
    alone["metadata"]["labels"]
        .as_object_mut()
        .map(|l| l.remove(ID_SHORT_LABEL));
    assert_eq!(run(alone).class(), "k8srunner");
    let mut guessed = forged.clone();
    guessed["metadata"]["labels"][ID_SHORT_LABEL] = json!("t3YZ8bQk");
    assert_eq!(run(guessed).class(), "k8srunner");
    // Administrators who cannot rely on that pin the namespace's class; it wins.
    let pinned = labels(&[(OPT_IN, "enabled"), (CLASS_LABEL, "k8srunner")]);
    let verdict = judge(&POLICY, Some(&pinned), &review(forged));
    assert_eq!(verdict.class(), "k8srunner");
    assert_within(class("k8srunner"), verdict.pod(), "pinned namespace");
    // An unknown runner name gets the default class, not something bigger.
    assert_eq!(run(with_runner("k8srunner-xxxlarge")).class(), "k8srunner");
    assert_eq!(run(with_runner("K8SRUNNER-XLARGE")).class(), "k8srunner");
}

#[test]
fn the_request_namespace_decides_not_the_object_namespace() {
    let namespaces = |ns: &str| -> Option<BTreeMap<String, String>> {
        match ns {
            "ci" => Some(labels(&[(OPT_IN, "enabled")])),
            "ci-xl" => Some(labels(&[
                (OPT_IN, "enabled"),
                (CLASS_LABEL, "k8srunner-xlarge"),
            ])),
            _ => Some(BTreeMap::new()),
        }
    };
    let review_in = |request_ns: &str, object_ns: &str| {
        let mut pod = job_pod();
        pod["metadata"]["namespace"] = json!(object_ns);
        pod_review("ns", request_ns, pod)
    };
    // Opted in by the object's namespace only: not patched.
    let r = review_in("apps", "ci");
    assert!(matches!(
        judge(&POLICY, namespaces("apps").as_ref(), &r),
        Verdict::Skipped
    ));
    // A bigger class through the object's namespace: not taken.
    let r = review_in("ci", "ci-xl");
    assert_eq!(
        judge(&POLICY, namespaces("ci").as_ref(), &r).class(),
        "k8srunner"
    );
    // The request's namespace is the one that counts, both ways.
    let r = review_in("ci-xl", "ci");
    assert_eq!(
        judge(&POLICY, namespaces("ci-xl").as_ref(), &r).class(),
        "k8srunner-xlarge"
    );
    // Match rules on namespaces read the request's too.
    let by_namespace = Policy::parse(
        "defaultClass: small\nclasses:\n  big:\n    match: { namespaces: [science] }\n    max: { cpu: \"32\", memory: null }\n  small:\n    max: { cpu: \"2\", memory: null }\n",
        "ns.yaml",
    )
    .expect("valid");
    let mut pod = annotate(job_pod(), "ci.skao.int/cpu-limit", "32");
    pod["metadata"]["namespace"] = json!("science");
    let verdict = judge(&by_namespace, None, &pod_review("ns", "gitlab", pod));
    assert_eq!(verdict.class(), "small");
    assert_eq!(build(verdict.pod())["resources"]["limits"]["cpu"], "2");
}

#[test]
fn services_and_other_containers_cannot_carry_more_than_the_class() {
    // Job authors add services (svc-N); each is held to the class, whatever it asks.
    let mut pod = job_pod();
    let containers = pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    for i in 1..=20 {
        containers.push(json!({"name": format!("svc-{i}"), "resources": {"limits": {"cpu": "64", "memory": "1Ti"}, "requests": {"cpu": "64", "memory": "1Ti"}}}));
    }
    let verdict = run(pod);
    assert_within(class("k8srunner"), verdict.pod(), "20 greedy services");
    // Overrides reach build only.
    let verdict = run(annotate(job_pod(), "ci.skao.int/memory-limit", "16Gi"));
    assert_eq!(
        container(verdict.pod(), "svc-0")["resources"]["limits"]["memory"],
        "1Gi"
    );
    assert_eq!(
        container(verdict.pod(), "helper")["resources"]["limits"]["memory"],
        "1Gi"
    );
    // More services than the bound: denied, not let through unchanged.
    let mut pod = job_pod();
    let containers = pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    containers.extend((1..=1_000).map(|i| json!({"name": format!("svc-{i}")})));
    assert!(run(pod).denial().contains("at most 1000"));
}

#[test]
fn pods_outside_opted_in_namespaces_are_never_patched() {
    let not_opted_in = [
        labels(&[]),
        labels(&[(OPT_IN, "disabled")]),
        labels(&[(OPT_IN, "Enabled")]),
        labels(&[(OPT_IN, "enabled ")]),
        labels(&[(OPT_IN, "true")]),
        labels(&[("CI.SKAO.INT/pod-policy", "enabled")]),
        labels(&[("ci.skao.int/pod-policy ", "enabled")]),
        labels(&[(CLASS_LABEL, "k8srunner-xlarge")]),
    ];
    // Every trick at once, and a pod that asks to be opted in itself.
    let mut pod = annotate(
        with_runner("k8srunner-xlarge"),
        "ci.skao.int/cpu-limit",
        "64",
    );
    pod["metadata"]["labels"][OPT_IN] = json!("enabled");
    pod["metadata"]["annotations"][OPT_IN] = json!("enabled");
    for namespace in &not_opted_in {
        let verdict = judge(&POLICY, Some(namespace), &review(pod.clone()));
        assert!(
            matches!(verdict, Verdict::Skipped),
            "{namespace:?}: {verdict:?}"
        );
    }
}

#[tokio::test]
async fn over_https_outside_opted_in_namespaces_nothing_is_patched_and_inside_nothing_escapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = Running::with(dir.path(), |s| {
        s.cluster = Cluster::fixed([
            ("ci", &[(OPT_IN, "enabled")][..]),
            ("apps", &[(OPT_IN, "disabled")][..]),
            (
                "pinned",
                &[(OPT_IN, "enabled"), (CLASS_LABEL, "ska-k8srunner-dp")][..],
            ),
        ]);
    })
    .await;
    let mut conn = client
        .connect(server.webhook, Protocol::Http1)
        .await
        .expect("connect");
    let greedy = |ns: &str| {
        let mut pod = annotate(
            with_runner("k8srunner-xlarge"),
            "ci.skao.int/memory-limit",
            "1Ti",
        );
        pod["metadata"]["namespace"] = json!("ci");
        pod["metadata"]["labels"][OPT_IN] = json!("enabled");
        pod_review("https", ns, pod)
    };
    for ns in ["apps", "unknown", ""] {
        let reply = conn.review(&greedy(ns)).await.json();
        assert_eq!(reply["response"]["allowed"], true, "{ns}: {reply}");
        assert!(reply["response"].get("patch").is_none(), "{ns}: {reply}");
    }
    let review = greedy("pinned");
    let reply = conn.review(&review).await.json();
    assert_eq!(
        reply["response"]["auditAnnotations"]["class"],
        "ska-k8srunner-dp"
    );
    let pod = patched_pod(&review, &reply);
    assert_eq!(build(&pod)["resources"]["limits"]["memory"], "4Gi");
    assert_within(class("ska-k8srunner-dp"), &pod, "pinned over HTTPS");

    let review = pod_review(
        "look-alike",
        "ci",
        annotate(job_pod(), "ci.skao.\u{0456}nt/cpu-limit", "64"),
    );
    let reply = conn.review(&review).await.json();
    let pod = patched_pod(&review, &reply);
    assert_eq!(build(&pod)["resources"]["limits"]["cpu"], "5");
}
