//! `gpuWorkloads` in the core: a pod that is not a job pod, in a selected namespace,
//! asking for the GPU resource, gets the GPU placement (nodeSelector, tolerations,
//! runtime class: the same code that places GPU jobs), its GPU requests made equal
//! to its limits, and loses the NVIDIA toolkit's variables (`nvidia`). Its CPU and
//! memory are never touched.
//!
//! Kubernetes requires an extended resource's request to equal its limit (a missing
//! request defaults to the limit; a request without a limit is refused). The missing
//! side is filled in from the other; two different values are denied, because which
//! one the author meant cannot be known.

use serde_json::{Map, Value};

use super::admissible::{self, RuntimeClassFacts};
use super::patch::{Patch, pointer};
use super::view::{Container, Pod, QuantityMap, Resources};
use super::{
    Chosen, ClassReason, Decision, MAX_CONTAINERS, Mutation, NamespaceFacts, RefusedChange,
    SkipReason, pod_name,
};
use crate::policy::{GpuWorkloads, NameGlob, Policy};
use crate::quantity::Quantity;

/// Why a namespace is selected by `gpuWorkloads`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Selected<'p> {
    Name(&'p NameGlob),
    Labels,
}

/// Whether `gpuWorkloads` selects the namespace: by name (known from the request even
/// without cluster access), or by labels (only when the labels are known).
pub(super) fn selects<'p>(
    policy: &'p Policy,
    namespace: &str,
    facts: NamespaceFacts<'_>,
) -> Option<(&'p GpuWorkloads, Selected<'p>)> {
    let g = policy.gpu_workloads.as_ref()?;
    if let Some(glob) = g.name_match(namespace) {
        return Some((g, Selected::Name(glob)));
    }
    let by_labels = g.labels_may_select(namespace)
        && g.labels
            .iter()
            .all(|(k, v)| facts.label(k) == Some(v.as_str()));
    by_labels.then_some((g, Selected::Labels))
}

/// The decision for a pod that is not a job pod, in a namespace `g` selects.
pub(super) fn decide<'p>(
    g: &'p GpuWorkloads,
    selected: Selected<'p>,
    namespace: &str,
    pod: &Pod<'_>,
    runtime_classes: RuntimeClassFacts<'_>,
) -> Decision<'p> {
    let chosen = || {
        let fact = match selected {
            Selected::Name(glob) => format!("namespace {namespace} matches {}", glob.as_str()),
            Selected::Labels => {
                let labels: Vec<String> =
                    g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("namespace labels {}", labels.join(","))
            }
        };
        Chosen {
            class: &g.placement,
            reason: ClassReason::GpuWorkloads { fact },
        }
    };
    let refuse = |message: String, refused: Option<RefusedChange>| Decision::Deny {
        chosen: chosen(),
        pod: pod_name(pod),
        message,
        overrides: Vec::new(),
        refused,
    };
    let deny = |message: String| refuse(message, None);
    let asks = match asks(g, pod) {
        Ok(asks) => asks,
        Err(message) => return deny(message),
    };
    if asks.is_empty() {
        return Decision::Skip(SkipReason::NoGpuRequest);
    }
    let spec = pod.spec();
    let containers = spec.containers.as_ref().map_or(0, Vec::len)
        + spec.init_containers.as_ref().map_or(0, Vec::len);
    if containers > MAX_CONTAINERS {
        return deny(format!(
            "the pod has {containers} containers and init containers; ci-pod-webhook places pods of at most {MAX_CONTAINERS}"
        ));
    }
    // As for a GPU class: the API server would refuse the placed pod.
    if let Some(name) = admissible::missing_runtime_class(&g.placement, runtime_classes) {
        return refuse(
            admissible::missing_runtime_class_message(&g.placement, name),
            Some(RefusedChange::RuntimeClass),
        );
    }
    let mut patch = Patch::default();
    if let Err(message) = equalise(&asks, &mut patch) {
        return deny(message);
    }
    let mut warnings = Vec::new();
    super::scheduling::apply(&g.placement, pod, &mut patch, &mut warnings);
    // The toolkit's variables would reach past the allocated GPUs here as in a job.
    super::nvidia::apply(pod, &mut patch, &mut warnings);
    Decision::Allow(Mutation {
        chosen: chosen(),
        pod: pod_name(pod),
        patch,
        warnings,
        overrides: Vec::new(),
        refused: Vec::new(),
    })
}

/// One GPU resource one container names, with its values.
struct Ask<'c, 'a> {
    list: &'static str,
    index: usize,
    container: &'c Container<'a>,
    key: &'c str,
    limit: Option<(Quantity, &'c str)>,
    request: Option<(Quantity, &'c str)>,
}

/// Every GPU resource every container names; empty when none asks for more than zero.
fn asks<'c, 'a>(g: &GpuWorkloads, pod: &'c Pod<'a>) -> Result<Vec<Ask<'c, 'a>>, String> {
    let mut found = Vec::new();
    let mut positive = false;
    let lists = [
        ("initContainers", pod.spec().init_containers.as_deref()),
        ("containers", pod.spec().containers.as_deref()),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.unwrap_or_default().iter().enumerate() {
            let resources = container.resources.as_ref();
            let limits = resources.and_then(|r| r.limits.as_ref());
            let requests = resources.and_then(|r| r.requests.as_ref());
            let mut keys: Vec<&str> = limits
                .into_iter()
                .chain(requests)
                .flat_map(|m| m.iter().map(|(k, _)| k))
                .filter(|k| g.asks_for(k))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let limit = value(key, limits, list, container, "limits")?;
                let request = value(key, requests, list, container, "requests")?;
                positive |= [limit, request]
                    .iter()
                    .flatten()
                    .any(|(q, _)| q.is_positive());
                found.push(Ask {
                    list,
                    index,
                    container,
                    key,
                    limit,
                    request,
                });
            }
        }
    }
    if !positive {
        found.clear();
    }
    Ok(found)
}

/// The resource's quantity in one section, which must be a whole, non-negative number.
fn value<'c>(
    key: &str,
    map: Option<&'c QuantityMap<'_>>,
    list: &str,
    container: &Container<'_>,
    section: &str,
) -> Result<Option<(Quantity, &'c str)>, String> {
    let Some(text) = map.and_then(|m| m.get(key)) else {
        return Ok(None);
    };
    match Quantity::parse(text) {
        Ok(q) if !q.is_negative() && q.as_whole_units().is_some() => Ok(Some((q, text))),
        _ => Err(format!(
            "spec.{list}[{}].resources.{section}.{key}: {} is not a whole number of devices (such as 1)",
            container.name,
            super::shorten(text)
        )),
    }
}

/// Fills in the missing side of each container's GPU requests and limits, or refuses
/// two different values. A section a container lacks is added whole, with every GPU
/// resource it needs (two `add`s of the same object would keep only the last).
fn equalise(asks: &[Ask<'_, '_>], patch: &mut Patch) -> Result<(), String> {
    let mut missing: Vec<(&'static str, usize, &'static str, Map<String, Value>)> = Vec::new();
    for ask in asks {
        let key = ask.key;
        let (section, text, present) = match (ask.limit, ask.request) {
            (Some((l, _)), Some((r, _))) if l == r => continue,
            (Some((l, _)), Some((r, _))) => {
                return Err(format!(
                    "spec.{}[{}].resources: limits.{key} is {l} but requests.{key} is {r}; Kubernetes needs the request of {key} to equal its limit. Set both to the number of GPUs the container needs, or set only the limit",
                    ask.list, ask.container.name,
                ));
            }
            (Some((_, text)), None) => ("requests", text, has(ask, |r| r.requests.is_some())),
            (None, Some((_, text))) => ("limits", text, has(ask, |r| r.limits.is_some())),
            (None, None) => continue,
        };
        if present {
            let index = ask.index.to_string();
            let mut path = pointer(&["spec", ask.list, index.as_str(), "resources", section]);
            path.push_back(key);
            patch.add(path, Value::String(text.to_string()));
            continue;
        }
        let at = (ask.list, ask.index, section);
        match missing.iter_mut().find(|(l, i, s, _)| (*l, *i, *s) == at) {
            Some((_, _, _, members)) => {
                members.insert(key.to_string(), Value::String(text.to_string()));
            }
            None => {
                let mut members = Map::new();
                members.insert(key.to_string(), Value::String(text.to_string()));
                missing.push((ask.list, ask.index, section, members));
            }
        }
    }
    for (list, index, section, members) in missing {
        let index = index.to_string();
        patch.add(
            pointer(&["spec", list, index.as_str(), "resources", section]),
            Value::Object(members),
        );
    }
    Ok(())
}

fn has(ask: &Ask<'_, '_>, section: impl Fn(&Resources<'_>) -> bool) -> bool {
    ask.container.resources.as_ref().is_some_and(section)
}
