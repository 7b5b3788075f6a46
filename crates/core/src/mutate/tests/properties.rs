//! Property tests: varied job pods (with and without resources, env, volumes,
//! tolerations, nodeSelector, services, odd but valid values, overrides) through the
//! core. For every pod: the patch applies cleanly with the `json-patch` crate; a second
//! run changes nothing; request ≤ limit everywhere; nothing above the class ceiling, and
//! under a ceiling a limit on every container (or a pod-level limit); GPUs only on
//! `build`, at most the class max; other devices and hugepages only on `build` when the
//! class grants them, at most its maximum, and admissible (request = limit, whole
//! devices, hugepages beside cpu or memory), with a policy that grants some and one
//! that grants none; no NVIDIA toolkit variable left in any env but CUDA's driver
//! capabilities;
//! pod-level resources consistent as the API server requires; nothing outside the pod's
//! own spec and annotations touched.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::admission::{self, PodReview};
use crate::mutate::{Decision, NamespaceFacts};
use crate::policy::{Policy, ResourceName};
use crate::quantity::Quantity;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::pod_level_rules::{
    assert_extended_resources_admissible, assert_pod_level_resources_accepted, containers,
    quantity as q,
};

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);

/// The default policy with a class that grants devices and hugepages to `build`.
static GRANTS: LazyLock<Policy> = LazyLock::new(|| {
    let text = crate::policy::DEFAULT_POLICY_YAML.replacen(
        "    description: techops default runner, 5 CPU / 10Gi\n",
        "    description: techops default runner, 5 CPU / 10Gi\n    extendedResources: { habana.ai/gaudi: 2, hugepages-2Mi: 1Gi }\n",
        1,
    );
    let policy = Policy::parse(&text, "grants.yaml").expect("valid");
    assert!(!policy.classes[0].extended_resources.is_empty());
    policy
});

fn quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..64_000).prop_map(|m| format!("{m}m")),
        (1u32..64).prop_map(|n| n.to_string()),
        (1u32..2048).prop_map(|n| format!("{n}Mi")),
        (1u32..256).prop_map(|n| format!("{n}Gi")),
        (1u32..64).prop_map(|n| format!("{n}G")),
        (1u32..9).prop_map(|n| format!("{n}.5")),
        (1u32..9).prop_map(|n| format!("{n}e3")),
        Just("0".to_string()),
        Just("1Ti".to_string()),
        Just("99999999999999999999Ei".to_string()),
        Just(".5Gi".to_string()),
    ]
}

fn resource_map() -> BoxedStrategy<Option<Value>> {
    let entry = prop_oneof![Just("cpu"), Just("memory"), Just("ephemeral-storage")];
    let gpu = prop_oneof![
        Just("nvidia.com/gpu"),
        Just("amd.com/gpu"),
        Just("nvidia.com/mig-1g.5gb")
    ];
    // Other devices and hugepages, with values the API server accepts (whole devices,
    // whole pages): the allow-list keeps or lowers them, or removes them.
    let device = prop_oneof![
        (1u32..9).prop_map(|n| ("habana.ai/gaudi", n.to_string())),
        (1u32..9).prop_map(|n| ("example.com/fpga", n.to_string())),
        (1u32..2048).prop_map(|n| ("hugepages-2Mi", format!("{}Mi", 2 * n))),
        (1u32..64).prop_map(|n| ("hugepages-1Gi", format!("{n}Gi"))),
    ]
    .boxed();
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => (
            prop::collection::btree_map(entry, quantity(), 0..3),
            prop::option::of((gpu, 1u32..9)),
            prop::option::of(device),
        )
            .prop_map(|(m, gpu, device)| {
                let mut m: Map<String, Value> = m.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                if let Some((key, n)) = gpu {
                    m.insert(key.to_string(), json!(n.to_string()));
                }
                if let Some((key, v)) = device {
                    m.insert(key.to_string(), json!(v));
                }
                Some(Value::Object(m))
            }),
    ]
    .boxed()
}

/// A `resources` object with the `limits` and `requests` given.
fn limits_and_requests(limits: Option<Value>, requests: Option<Value>) -> Value {
    let mut r = Map::new();
    if let Some(l) = limits {
        r.insert("limits".into(), l);
    }
    if let Some(q) = requests {
        r.insert("requests".into(), q);
    }
    Value::Object(r)
}

/// Pod-level `spec.resources`: cpu and memory, and hugepages no class grants at pod
/// level (`hugepages-1Gi`).
fn pod_resources() -> impl Strategy<Value = Option<Value>> {
    let map = || {
        let key = prop_oneof![3 => Just("cpu"), 3 => Just("memory"), 1 => Just("hugepages-1Gi")];
        prop::collection::btree_map(key, quantity(), 0..3).prop_map(|m| {
            Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect(),
            )
        })
    };
    prop_oneof![
        2 => Just(None),
        1 => (prop::option::of(map()), prop::option::of(map()))
            .prop_map(|(limits, requests)| Some(limits_and_requests(limits, requests))),
    ]
}

fn resources() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => (resource_map(), resource_map())
            .prop_map(|(limits, requests)| Some(limits_and_requests(limits, requests))),
    ]
}

fn env() -> impl Strategy<Value = Option<Value>> {
    let var = prop_oneof![
        Just(json!({"name": "CI", "value": "true"})),
        Just(json!({"name": "DOCKER_HOST", "value": "tcp://docker:2375"})),
        Just(json!({"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})),
        Just(json!({"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})),
        Just(json!({"name": "EMPTY", "value": ""})),
        Just(json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"})),
        Just(json!({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"})),
        Just(json!({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"})),
        Just(json!({"name": "NVIDIA_IMEX_CHANNELS", "value": "all"})),
        Just(
            json!({"name": "NVIDIA_DISABLE_REQUIRE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}})
        ),
    ];
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        3 => prop::collection::vec(var, 0..4).prop_map(|v| Some(Value::Array(v))),
    ]
}

fn container(name: String) -> impl Strategy<Value = Value> {
    (resources(), env(), any::<bool>()).prop_map(move |(resources, env, dind_mount)| {
        let mut c = json!({"name": name, "image": "alpine:3", "x-unknown-field": {"kept": true}});
        if let Some(r) = resources {
            c["resources"] = r;
        }
        if let Some(e) = env {
            c["env"] = e;
        }
        if dind_mount {
            c["volumeMounts"] = json!([{"name": "docker", "mountPath": "/var/run/docker.sock"}]);
        }
        c
    })
}

fn tolerations() -> impl Strategy<Value = Option<Value>> {
    let t = prop_oneof![
        Just(json!({"key": "nvidia.com/gpu", "operator": "Exists"})),
        Just(json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})),
        Just(
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        ),
        Just(json!({"key": "dedicated", "value": "ci", "effect": "NoSchedule"})),
    ];
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        prop::collection::vec(t, 0..3).prop_map(|v| Some(Value::Array(v)))
    ]
}

fn node_selector() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(
            json!({"node-role.skatelescope.org/ci-worker": "false"})
        )),
        Just(Some(json!({"zone": "a", "nvidia.com/gpu": "true"}))),
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys = vec![
        "ci.skao.int/cpu-request",
        "ci.skao.int/cpu-limit",
        "ci.skao.int/memory-request",
        "ci.skao.int/memory-limit",
        "ci.skao.int/gpus",
        "ci.skao.int/docker",
        "ci.skao.int/class",
        "job.runner.gitlab.com/id",
    ];
    prop::sample::subsequence(keys, 0..=4)
        .prop_flat_map(|keys| {
            keys.into_iter()
                .map(|k| quantity_or_value(k).prop_map(move |v| (k.to_string(), v)))
                .collect::<Vec<_>>()
        })
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn quantity_or_value(key: &str) -> BoxedStrategy<String> {
    match key {
        "ci.skao.int/cpu-request" | "ci.skao.int/cpu-limit" => {
            quantity().prop_filter("positive", |q| q != "0").boxed()
        }
        "ci.skao.int/memory-request" | "ci.skao.int/memory-limit" => {
            (1u32..256).prop_map(|n| format!("{n}Gi")).boxed()
        }
        "ci.skao.int/gpus" => (1u32..9).prop_map(|n| n.to_string()).boxed(),
        "ci.skao.int/docker" => Just("disabled".to_string()).boxed(),
        "ci.skao.int/class" => Just("k8srunner-xlarge".to_string()).boxed(),
        _ => Just("42".to_string()).boxed(),
    }
}

fn job_pod() -> impl Strategy<Value = Value> {
    let runner = prop_oneof![
        Just(None),
        Just(Some("k8srunner")),
        Just(Some("k8srunner-large")),
        Just(Some("k8srunner-xlarge")),
        Just(Some("k8srunner-gpu-v100")),
        Just(Some("ska-k8srunner-dp")),
        Just(Some("ska-k8srunner-dp-gpu-a100")),
        Just(Some("unknown-runner")),
    ];
    // With the runner's id-short (17.9+), or without (a job's label: not trusted).
    let runner = (runner, any::<bool>());
    let services = prop::collection::vec(container(String::new()), 0..3);
    (
        container("build".into()),
        container("helper".into()),
        prop::option::of(container("init-permissions".into())),
        services,
        // A service named after its alias (GitLab Runner 17.9+), and the init container
        // that runs the job's image.
        prop::option::of(container("db".into())),
        (runner, annotations(), tolerations(), node_selector()),
        (
            any::<bool>(),
            prop::option::of(Just("gvisor")),
            any::<bool>(),
            prop::option::of(container("init-build-uid-gid-collector".into())),
            pod_resources(),
        ),
    )
        .prop_map(
            |(
                build,
                helper,
                init,
                services,
                sidecar,
                (runner, annotations, tolerations, selector),
                (volumes, runtime, generate, collector, pod_resources),
            )| {
                let mut containers = vec![build, helper];
                for (i, mut s) in services.into_iter().enumerate() {
                    s["name"] = json!(format!("svc-{i}"));
                    containers.push(s);
                }
                containers.extend(sidecar);
                let mut pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"labels": {"pod": "runner-x"}, "annotations": annotations},
                    "spec": {"containers": containers, "someFutureField": [1, {"a": null}]},
                    "status": {"phase": "Pending"}
                });
                if generate {
                    pod["metadata"]["generateName"] = json!("runner-x-");
                } else {
                    pod["metadata"]["name"] = json!("runner-x-1");
                }
                if let (Some(r), id_short) = runner {
                    pod["metadata"]["labels"]["manager.runner.gitlab.com/name"] = json!(r);
                    if id_short {
                        pod["metadata"]["labels"]["manager.runner.gitlab.com/id-short"] =
                            json!("x");
                    }
                }
                let inits: Vec<Value> = init.into_iter().chain(collector).collect();
                if !inits.is_empty() {
                    pod["spec"]["initContainers"] = json!(inits);
                }
                if let Some(r) = pod_resources {
                    pod["spec"]["resources"] = r;
                }
                if let Some(t) = tolerations {
                    pod["spec"]["tolerations"] = t;
                }
                if let Some(s) = selector {
                    pod["spec"]["nodeSelector"] = s;
                }
                if volumes {
                    pod["spec"]["volumes"] =
                        json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]);
                }
                if let Some(r) = runtime {
                    pod["spec"]["runtimeClassName"] = json!(r);
                }
                pod
            },
        )
}

enum Run {
    Denied(String),
    Allowed {
        patched: Value,
        operations: usize,
        class: String,
    },
}

fn run(policy: &Policy, pod: &Value) -> Run {
    let body = PodReview::create("gitlab", pod)
        .by("system:serviceaccount:gitlab:runner")
        .to_json();
    let parsed = admission::parse(&body).expect("readable");
    match crate::mutate::decide(policy, NamespaceFacts::TrustSelector, &parsed.request)
        .expect("decide")
    {
        Decision::Skip(r) => panic!("a job pod was skipped: {r:?}"),
        Decision::Deny { message, .. } => Run::Denied(message),
        Decision::Allow(m) => {
            for change in &m.patch.changes {
                let path = match &change.op {
                    json_patch::PatchOperation::Add(o) => o.path.to_string(),
                    json_patch::PatchOperation::Replace(o) => o.path.to_string(),
                    json_patch::PatchOperation::Remove(o) => o.path.to_string(),
                    other => panic!("unexpected operation {other:?}"),
                };
                assert!(
                    path.starts_with("/spec/") || path.starts_with("/metadata/annotations"),
                    "operation outside the pod's spec and annotations: {path}"
                );
            }
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &m.patch.operations())
                .expect("the patch applies cleanly");
            Run::Allowed {
                patched,
                operations: m.patch.len(),
                class: m.chosen.class.name.clone(),
            }
        }
    }
}

fn check_invariants(policy: &Policy, original: &Value, patched: &Value, class_name: &str) {
    let (_, class) = policy.class(class_name).expect("class");
    for list in ["containers", "initContainers"] {
        let before = containers(original, list);
        let after = containers(patched, list);
        assert_eq!(
            before.len(),
            after.len(),
            "containers are never added or removed"
        );
        for (b, a) in before.iter().zip(&after) {
            let name = a["name"].as_str().expect("name");
            assert_eq!(
                a["x-unknown-field"],
                json!({"kept": true}),
                "unknown fields kept"
            );
            let _ = b;
            let limits = &a["resources"]["limits"];
            let requests = &a["resources"]["requests"];
            for r in ResourceName::ALL {
                let (limit, request) = (q(&limits[r.as_str()]), q(&requests[r.as_str()]));
                if let (Some(l), Some(req)) = (limit, request) {
                    assert!(req <= l, "{name}: request {req} > limit {l} for {r}");
                }
                if let Some(max) = class.max.get(&r) {
                    for v in [limit, request].into_iter().flatten() {
                        assert!(v <= *max, "{name}: {r} {v} above the ceiling {max}");
                    }
                    let pod_limit = q(&patched["spec"]["resources"]["limits"][r.as_str()]);
                    match (limit, pod_limit) {
                        (_, Some(p)) => assert!(p <= *max, "pod-level {r} {p} above {max}"),
                        (Some(_), None) => {}
                        (None, None) => panic!("{name}: no {r} limit under the ceiling {max}"),
                    }
                }
            }
            let is_build = list == "containers" && name == "build";
            for (key, value) in limits
                .as_object()
                .into_iter()
                .chain(requests.as_object())
                .flatten()
            {
                if crate::policy::is_standard(key) {
                    continue;
                }
                let gpu = class.gpu.as_ref().is_some_and(|g| g.resource == *key);
                let max = class.extended_resources.get(key.as_str());
                assert!(is_build && (gpu || max.is_some()), "{name}: {key} left");
                if let (Some(max), Some(v)) = (max, q(value)) {
                    assert!(v <= *max, "{name}: {key} {v} above the class maximum {max}");
                }
            }
            if let Some(gpu) = &class.gpu
                && let Some(n) = q(&limits[gpu.resource.as_str()])
            {
                assert!(
                    n <= Quantity::from_units(i64::from(gpu.max)),
                    "{name}: {n} GPUs above the class max"
                );
            }
            for var in a["env"].as_array().into_iter().flatten() {
                let var_name = var["name"].as_str().unwrap_or_default();
                assert!(
                    !var_name.starts_with("NVIDIA_")
                        || (var_name == "NVIDIA_DRIVER_CAPABILITIES"
                            && var["value"] == "compute,utility"),
                    "{name}: {var}"
                );
            }
        }
    }
    assert_pod_level_resources_accepted(patched);
    assert_extended_resources_admissible(patched);
    for section in ["limits", "requests"] {
        for (key, _) in patched["spec"]["resources"][section]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert!(
                matches!(key.as_str(), "cpu" | "memory"),
                "pod-level {key} left"
            );
        }
    }
    // Nothing outside the spec and the annotations changes.
    let strip = |pod: &Value| {
        let mut p = pod.clone();
        p["spec"] = Value::Null;
        p["metadata"]["annotations"] = Value::Null;
        p
    };
    assert_eq!(strip(original), strip(patched));
    assert_eq!(patched["spec"]["someFutureField"], json!([1, {"a": null}]));
    // Only the webhook's own keys change among the annotations.
    let a_before = original["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let a_after = patched["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in &a_before {
        if k != "ci.skao.int/class" && k != "ci.skao.int/policy" {
            assert_eq!(a_after.get(k), Some(v), "annotation {k} kept");
        }
    }
    assert_eq!(a_after["ci.skao.int/class"], class_name);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_job_pod_is_patched_safely_and_idempotently(pod in job_pod(), grants in any::<bool>()) {
        let policy: &Policy = if grants { &GRANTS } else { &POLICY };
        match run(policy, &pod) {
            Run::Denied(message) => {
                // Only a request override above a limit override is refused here.
                let a = &pod["metadata"]["annotations"];
                prop_assert!(a.get("ci.skao.int/cpu-request").is_some() || a.get("ci.skao.int/memory-request").is_some());
                prop_assert!(message.contains("the request must not exceed the limit"), "{}", message);
            }
            Run::Allowed { patched, class, .. } => {
                check_invariants(policy, &pod, &patched, &class);
                match run(policy, &patched) {
                    Run::Allowed { operations, patched: again, .. } => {
                        prop_assert_eq!(operations, 0, "second run changed the pod:\n{:#}\n→\n{:#}", patched, again);
                    }
                    Run::Denied(message) => prop_assert!(false, "the patched pod was denied: {}", message),
                }
            }
        }
    }
}
