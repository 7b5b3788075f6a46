//! Property tests for `gpuWorkloads`: varied pods that are not job pods (GPU counts in
//! limits, requests, both or neither, as strings or numbers, odd values, under each of
//! the default policy's GPU names: whole GPUs, MIG profiles, AMD; CPU and memory;
//! existing placement) in an unlabelled `ci-…` namespace. For every pod: skipped only
//! when no container asks for a GPU; denied only when a container's GPU request and
//! limit differ or a count is not a whole number; otherwise the patch applies cleanly,
//! a second run changes nothing, every container's GPU request equals its limit, CPU
//! and memory are as sent, the pod carries the placement, and no NVIDIA toolkit
//! variable is left but CUDA's driver capabilities.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::admission::{self, PodReview};
use crate::mutate::{Decision, NamespaceFacts, SkipReason};
use crate::policy::Policy;
use crate::quantity::Quantity;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::embedded);
/// The GPU resources of the default policy's gpuWorkloads (one of them per container).
const GPUS: [&str; 3] = ["nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "amd.com/gpu"];

fn gpu_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        2 => (0u32..4).prop_map(|n| Some(json!(n.to_string()))),
        1 => (0u32..4).prop_map(|n| Some(json!(n))),
        1 => prop_oneof![Just("1.5"), Just("500m"), Just("-1"), Just("1e0"), Just("2k")]
            .prop_map(|s| Some(json!(s))),
    ]
}

fn section(gpu_key: &'static str) -> impl Strategy<Value = Option<Value>> {
    (gpu_value(), prop::option::of(Just("1")), any::<bool>()).prop_map(
        move |(gpu, cpu, present)| {
            let mut map = Map::new();
            if let Some(g) = gpu {
                map.insert(gpu_key.to_string(), g);
            }
            if let Some(c) = cpu {
                map.insert("cpu".to_string(), json!(c));
            }
            (present || !map.is_empty()).then_some(Value::Object(map))
        },
    )
}

/// A container's env: the NVIDIA toolkit's variables among others, or none.
fn env() -> impl Strategy<Value = Option<Value>> {
    let var = prop_oneof![
        Just(json!({"name": "MODEL", "value": "x"})),
        Just(json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"})),
        Just(json!({"name": "NVIDIA_IMEX_CHANNELS", "value": "0"})),
        Just(json!({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"})),
        Just(json!({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"})),
    ];
    prop::option::of(prop::collection::vec(var, 0..4).prop_map(Value::Array))
}

fn container(name: String) -> impl Strategy<Value = Value> {
    prop::sample::select(&GPUS[..])
        .prop_flat_map(|key| (section(key), section(key), any::<bool>(), env()))
        .prop_map(move |(limits, requests, null, env)| {
            let mut c = json!({"name": name, "image": "x", "x-unknown": [1]});
            if let Some(e) = env {
                c["env"] = e;
            }
            let mut r = Map::new();
            if let Some(l) = limits {
                r.insert("limits".into(), l);
            }
            if let Some(q) = requests {
                r.insert("requests".into(), q);
            }
            if !r.is_empty() {
                c["resources"] = Value::Object(r);
            } else if null {
                c["resources"] = Value::Null;
            }
            c
        })
}

fn pod() -> impl Strategy<Value = Value> {
    let containers = prop::collection::vec(0..1000u32, 1..4).prop_flat_map(|ids| {
        ids.into_iter()
            .enumerate()
            .map(|(i, _)| container(format!("c{i}")))
            .collect::<Vec<_>>()
    });
    let init = prop::collection::vec(0..1000u32, 0..2).prop_flat_map(|ids| {
        ids.into_iter()
            .enumerate()
            .map(|(i, _)| container(format!("i{i}")))
            .collect::<Vec<_>>()
    });
    let node_selector = prop_oneof![
        Just(None),
        Just(Some(json!({"nvidia.com/gpu": "false"}))),
        Just(Some(json!({"zone": "a"}))),
    ];
    let tolerations = prop_oneof![
        Just(None),
        Just(Some(
            json!([{"key": "nvidia.com/gpu", "operator": "Exists"}])
        )),
        Just(Some(
            json!([{"key": "other", "operator": "Exists", "effect": "NoSchedule"}])
        )),
    ];
    let runtime = prop_oneof![Just(None), Just(Some("runc")), Just(Some("nvidia"))];
    (containers, init, node_selector, tolerations, runtime).prop_map(
        |(containers, init, node_selector, tolerations, runtime)| {
            let mut spec = json!({"containers": containers});
            if !init.is_empty() {
                spec["initContainers"] = json!(init);
            }
            if let Some(n) = node_selector {
                spec["nodeSelector"] = n;
            }
            if let Some(t) = tolerations {
                spec["tolerations"] = t;
            }
            if let Some(r) = runtime {
                spec["runtimeClassName"] = json!(r);
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "w-"}, "spec": spec})
        },
    )
}

enum Out {
    Skip(SkipReason),
    Deny(String),
    Allow { patched: Value, operations: usize },
}

fn run(pod: &Value) -> Out {
    let body = PodReview::create("ci-ska-1", pod)
        .by("system:serviceaccount:kube-system:replicaset-controller")
        .to_json();
    let parsed = admission::parse(&body).expect("readable");
    let labels = BTreeMap::new();
    match crate::mutate::decide(&POLICY, NamespaceFacts::Labels(&labels), &parsed.request)
        .expect("decide")
    {
        Decision::Skip(r) => Out::Skip(r),
        Decision::Deny { message, .. } => Out::Deny(message),
        Decision::Allow(m) => {
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &m.patch.operations()).expect("the patch applies");
            Out::Allow {
                patched,
                operations: m.patch.len(),
            }
        }
    }
}

/// One container's GPU limit and request.
type Counts = (Option<Quantity>, Option<Quantity>);

/// Every container's GPU (limit, request), parsed; `Err` for a value that is not a whole
/// non-negative number.
fn gpus(pod: &Value) -> Vec<Result<Counts, ()>> {
    let read = |v: &Value| -> Result<Option<Quantity>, ()> {
        let text = match v {
            Value::Null => return Ok(None),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match Quantity::parse(&text) {
            Ok(q) if !q.is_negative() && q.as_whole_units().is_some() => Ok(Some(q)),
            _ => Err(()),
        }
    };
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let r = &c["resources"];
            let key = GPUS
                .iter()
                .find(|k| !r["limits"][**k].is_null() || !r["requests"][**k].is_null())
                .unwrap_or(&GPUS[0]);
            Ok((read(&r["limits"][*key])?, read(&r["requests"][*key])?))
        })
        .collect()
}

fn cpu(pod: &Value) -> Vec<(Value, Value)> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["resources"]["limits"]["cpu"].clone(),
                c["resources"]["requests"]["cpu"].clone(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gpu_workloads_are_placed_idempotently_with_requests_equal_to_limits(pod in pod()) {
        let before = gpus(&pod);
        let invalid = before.iter().any(Result::is_err);
        let asks = before.iter().flatten().any(|(l, r)| {
            [l, r].into_iter().flatten().any(|q| q.is_positive())
        });
        let differ = before.iter().flatten().any(|(l, r)| matches!((l, r), (Some(l), Some(r)) if l != r));
        match run(&pod) {
            Out::Skip(reason) => {
                prop_assert_eq!(reason, SkipReason::NoGpuRequest);
                prop_assert!(!asks && !invalid, "skipped a pod asking for a GPU");
            }
            Out::Deny(message) => {
                prop_assert!(invalid || differ, "denied a pod with equal or one-sided counts: {}", message);
            }
            Out::Allow { patched, operations } => {
                prop_assert!(asks && !invalid && !differ);
                prop_assert!(operations > 0);
                for (i, c) in gpus(&patched).into_iter().enumerate() {
                    let (l, r) = c.expect("valid after the patch");
                    prop_assert_eq!(l, r, "container {}: GPU request != limit", i);
                }
                prop_assert_eq!(cpu(&patched), cpu(&pod), "CPU changed");
                prop_assert_eq!(&patched["spec"]["nodeSelector"]["nvidia.com/gpu"], "true");
                prop_assert_eq!(&patched["spec"]["runtimeClassName"], "nvidia");
                let wanted = json!({"key": "nvidia.com/gpu", "operator": "Exists"});
                let count = patched["spec"]["tolerations"].as_array().map_or(0, |t| t.iter().filter(|t| **t == wanted).count());
                prop_assert_eq!(count, 1);
                prop_assert_eq!(&patched["spec"]["containers"][0]["x-unknown"], &json!([1]));
                for c in ["initContainers", "containers"].iter().flat_map(|l| patched["spec"][l].as_array().cloned().unwrap_or_default()) {
                    for var in c["env"].as_array().into_iter().flatten() {
                        let name = var["name"].as_str().unwrap_or_default();
                        prop_assert!(
                            !name.starts_with("NVIDIA_") || (name == "NVIDIA_DRIVER_CAPABILITIES" && var["value"] == "compute,utility"),
                            "{} left", var
                        );
                    }
                }
                match run(&patched) {
                    Out::Allow { operations: 0, .. } => {}
                    Out::Allow { operations, .. } => prop_assert!(false, "second run: {} operations", operations),
                    _ => prop_assert!(false, "second run did not allow"),
                }
            }
        }
    }
}
