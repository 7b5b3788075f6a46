//! Extended resources and hugepages are an allow-list (issue 25, point 6): besides cpu,
//! memory and ephemeral-storage, a container keeps only what its class grants, on
//! `build` only, so the grant is also the pod's total whatever services the job adds:
//! the class's GPU (`gpus.rs`), and what it names in `extendedResources`, lowered to the
//! maximum given there. Everything else (`habana.ai/gaudi`, `aws.amazon.com/neuron`,
//! `google.com/tpu`, `xilinx.com/…`, hugepages, GPUs outside the class's one) is removed
//! with a warning, in every container, init container and at the pod level.
//!
//! Hugepages are removed rather than counted against the class's memory ceiling: a node
//! reserves them at boot outside the memory the containers' limits share, they are never
//! overcommitted, and a value lowered to fit a memory budget would also have to stay a
//! whole number of pages. A class that needs them grants them with their own maximum.
//!
//! What is kept stays admissible (Kubernetes `pkg/apis/core/validation/validation.go`
//! `validateResourceRequirements`, `pkg/apis/core/helper` `IsOvercommitAllowed`): request
//! equal to limit (neither is overcommitable), a limit wherever there is a request,
//! maxima that are whole devices or whole pages (checked by the policy), and hugepages
//! only beside a cpu or memory value.

use super::{Entry, Place, Section, existing, granted_gpu};
use crate::mutate::view::Resources;
use crate::policy::{GPU_PREFIXES, HUGEPAGES_PREFIX, Policy, RunnerClass, is_standard};
use crate::quantity::Quantity;

/// Plans every resource of one container but cpu, memory, ephemeral-storage and the
/// class's own GPU on `build` (`gpus.rs`). Call it after those are planned: kept
/// hugepages look for the container's cpu and memory among `entries`.
pub(super) fn plan(
    policy: &Policy,
    class: &RunnerClass,
    is_build: bool,
    at: &Place<'_, '_>,
    entries: &mut Vec<Entry>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let resources = at.container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let name = at.name();
    let place = at.path();
    let granted_gpu = granted_gpu(class, is_build).map(|g| g.resource.as_str());
    let mut keys: Vec<&str> = limits
        .into_iter()
        .chain(requests)
        .flat_map(|m| m.iter().map(|(k, _)| k))
        .filter(|k| !is_standard(k) && Some(*k) != granted_gpu)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut kept_hugepages = Vec::new();
    for key in keys {
        let ex_limit = existing(limits, key, &place, Section::Limits)?;
        let ex_request = existing(requests, key, &place, Section::Requests)?;
        let grant = class.extended_resources.get(key).filter(|_| is_build);
        let (limit, request) = match grant {
            Some(max) => {
                let (asked, section) = match (&ex_limit, &ex_request) {
                    (Some((q, _)), _) => (*q, Section::Limits),
                    (None, Some((q, _))) => (*q, Section::Requests),
                    (None, None) => continue,
                };
                let value = if asked > *max {
                    warnings.push(format!(
                        "{name}: {}.{key} {asked} lowered to the maximum {max} of class {}",
                        section.as_str(),
                        class.name
                    ));
                    *max
                } else {
                    asked
                };
                if key.starts_with(HUGEPAGES_PREFIX) {
                    kept_hugepages.push(entries.len());
                }
                // Not overcommitable: the request is the limit (a missing one defaults
                // to it), and a request alone gets its limit.
                (Some(value), ex_request.as_ref().map(|_| value))
            }
            None => {
                let why = why_removed(policy, class, is_build, key);
                for (section, ex) in [
                    (Section::Limits, &ex_limit),
                    (Section::Requests, &ex_request),
                ] {
                    if let Some((q, _)) = ex {
                        warnings.push(format!(
                            "{name}: {}.{key} {q} removed: {why}",
                            section.as_str()
                        ));
                    }
                }
                (None, None)
            }
        };
        entries.push(Entry {
            key: key.to_string(),
            ex_limit,
            ex_request,
            limit,
            request,
        });
    }
    // "HugePages require cpu or memory": without either they go too.
    let beside = entries.iter().any(|e| {
        matches!(e.key.as_str(), "cpu" | "memory") && (e.limit.is_some() || e.request.is_some())
    });
    if !beside {
        for i in kept_hugepages {
            let e = &mut entries[i];
            if let Some(q) = e.limit.or(e.request) {
                warnings.push(format!(
                    "{name}: {} {q} removed: hugepages need a cpu or memory request or limit beside them",
                    e.key
                ));
            }
            e.limit = None;
            e.request = None;
        }
    }
    Ok(())
}

/// Why a resource is not the container's to keep.
fn why_removed(policy: &Policy, class: &RunnerClass, is_build: bool, key: &str) -> String {
    let name = &class.name;
    if is_gpu(policy, key) {
        return match (&class.gpu, is_build) {
            (None, _) => format!("class {name} has no GPUs"),
            (Some(g), true) => format!("class {name} gives GPUs as {}", g.resource),
            (Some(_), false) => format!("the GPUs of class {name} go to the build container only"),
        };
    }
    if class.extended_resources.contains_key(key) {
        format!("the extended resources of class {name} go to the build container only")
    } else {
        format!("class {name} grants no {key}")
    }
}

/// A GPU: under a GPU vendor's prefix, or a GPU resource some class of the policy names.
fn is_gpu(policy: &Policy, key: &str) -> bool {
    GPU_PREFIXES.iter().any(|p| key.starts_with(p))
        || policy
            .classes
            .iter()
            .filter_map(|c| c.gpu.as_ref())
            .any(|g| g.resource == key)
}

/// The pod-level entries of `spec.resources` besides cpu and memory: hugepages the class
/// grants, lowered to their maximum; anything else removed.
pub(super) fn plan_pod_level(
    class: &RunnerClass,
    resources: Option<&Resources<'_>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, String> {
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let mut keys: Vec<&str> = limits
        .into_iter()
        .chain(requests)
        .flat_map(|m| m.iter().map(|(k, _)| k))
        .filter(|k| !is_standard(k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut entries = Vec::new();
    for key in keys {
        let ex_limit = existing(limits, key, "spec", Section::Limits)?;
        let ex_request = existing(requests, key, "spec", Section::Requests)?;
        let grant = class
            .extended_resources
            .get(key)
            .filter(|_| key.starts_with(HUGEPAGES_PREFIX));
        let clamp = |q: Quantity, section: Section, warnings: &mut Vec<String>| match grant {
            Some(max) if q > *max => {
                warnings.push(format!(
                    "pod: spec.resources.{}.{key} {q} lowered to the maximum {max} of class {}",
                    section.as_str(),
                    class.name
                ));
                *max
            }
            _ => q,
        };
        let (limit, request) = if grant.is_some() {
            (
                ex_limit
                    .as_ref()
                    .map(|(q, _)| clamp(*q, Section::Limits, warnings)),
                ex_request
                    .as_ref()
                    .map(|(q, _)| clamp(*q, Section::Requests, warnings)),
            )
        } else {
            for (section, ex) in [
                (Section::Limits, &ex_limit),
                (Section::Requests, &ex_request),
            ] {
                if let Some((q, _)) = ex {
                    warnings.push(format!(
                        "pod: spec.resources.{}.{key} {q} removed: class {} grants no {key}",
                        section.as_str(),
                        class.name
                    ));
                }
            }
            (None, None)
        };
        entries.push(Entry {
            key: key.to_string(),
            ex_limit,
            ex_request,
            limit,
            request,
        });
    }
    Ok(entries)
}
