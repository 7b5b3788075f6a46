//! Each container's CPU and memory: the role's class values filled in where a container
//! has none, lowered to the ceiling (or the pod-level limit), the job's overrides on
//! `build`, request ≤ limit; its GPUs are planned by `gpus.rs`, every other resource
//! (the allow-list of extended resources and hugepages) by `extended_resources.rs`.

use super::pod_level::Budget;
use super::{Entry, Place, Planned, Section, edits, emit, existing};
use crate::mutate::overrides::Overrides;
use crate::mutate::patch::Patch;
use crate::mutate::view::Pod;
use crate::policy::{ContainerList, Limit, Policy, ResourceName, Role, RunnerClass};
use crate::quantity::Quantity;

/// Applies the class resources to every job-pod container. The error is a denial
/// message for a pod carrying a quantity the API server itself would reject.
pub(in crate::mutate) fn apply(
    policy: &Policy,
    class: &RunnerClass,
    overrides: &Overrides,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let budget = Budget::plan(class, pod, warnings)?;
    let spec = pod.spec();
    // Only the first `build` is the build container: the API server refuses a second
    // one anyway, and it must not double the job's overrides or GPUs meanwhile.
    let first_build = spec
        .containers
        .iter()
        .flatten()
        .position(|c| c.name == "build");
    let lists = [
        (
            ContainerList::InitContainers,
            spec.init_containers.as_deref(),
        ),
        (ContainerList::Containers, spec.containers.as_deref()),
    ];
    let mut planned = Vec::new();
    for (list, containers) in lists {
        for (index, container) in containers.unwrap_or_default().iter().enumerate() {
            let is_build = list == ContainerList::Containers && Some(index) == first_build;
            let role = match Role::of(list, &container.name) {
                Role::Build if list == ContainerList::Containers && !is_build => Role::Service,
                role => role,
            };
            let at = Place {
                list,
                index,
                container,
            };
            let entries = plan(
                policy, class, role, is_build, overrides, &budget, &at, warnings,
            )?;
            planned.push(Planned { at, entries });
        }
    }
    budget.fit_requests(&mut planned, warnings);
    budget.emit(pod, patch);
    for p in &planned {
        let index = p.at.index.to_string();
        let base = ["spec", p.at.list.as_str(), index.as_str(), "resources"];
        emit(
            patch,
            &base,
            p.at.container.resources.as_ref(),
            edits(&p.entries),
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plan(
    policy: &Policy,
    class: &RunnerClass,
    role: Role,
    is_build: bool,
    overrides: &Overrides,
    budget: &Budget,
    at: &Place<'_, '_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Entry>, String> {
    let role_resources = class.resources(role);
    let resources = at.container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let name = at.name();
    let place = at.path();
    let mut entries = Vec::new();

    for resource in ResourceName::ALL {
        let key = resource.as_str();
        let max = class.max.get(&resource).copied();
        // Where the pod sets pod-level values for this resource, they are the budget:
        // no container limit above the pod's, and no class values filled in.
        let pod_limit = budget.limit(resource);
        let governed = budget.governs(resource);
        let ceiling = match (max, pod_limit) {
            (Some(m), Some(p)) => Some(m.min(p)),
            (m, p) => m.or(p),
        };
        let ex_limit = existing(limits, key, &place, Section::Limits)?;
        let ex_request = existing(requests, key, &place, Section::Requests)?;
        let ov_limit = is_build
            .then(|| overrides.limits.get(&resource).copied())
            .flatten();
        let ov_request = is_build
            .then(|| overrides.requests.get(&resource).copied())
            .flatten();
        let clamp = |q: Quantity, section: Section, warnings: &mut Vec<String>| match ceiling {
            Some(c) if q > c => {
                let why = if max == Some(c) {
                    format!("the ceiling {c} of class {}", class.name)
                } else {
                    format!("the pod-level limit {c} (spec.resources.limits.{key})")
                };
                warnings.push(format!(
                    "{name}: {}.{key} {q} lowered to {why}",
                    section.as_str()
                ));
                c
            }
            _ => q,
        };

        let mut limit = match (
            ov_limit,
            ex_limit.as_ref(),
            role_resources.limits.get(&resource),
        ) {
            (Some(o), _, _) => Some(clamp(o, Section::Limits, warnings)),
            (None, ex, Some(Limit::Unlimited)) => {
                if let Some((q, _)) = ex {
                    warnings.push(format!(
                        "{name}: limits.{key} {q} removed: class {} sets no {key} limit",
                        class.name
                    ));
                }
                None
            }
            (None, Some((q, _)), _) => Some(clamp(*q, Section::Limits, warnings)),
            // The pod-level limit bounds every container of a governed resource.
            (None, None, _) if governed => None,
            (None, None, Some(Limit::Set(v))) => Some(*v),
            // A ceiling and no role limit: the ceiling is the limit (no container leaves
            // without a limit at or under the ceiling).
            (None, None, None) => max,
        };
        let mut request = match (ov_request, ex_request.as_ref()) {
            (Some(o), _) => Some(clamp(o, Section::Requests, warnings)),
            (None, Some((q, _))) => Some(clamp(*q, Section::Requests, warnings)),
            (None, None) if governed => None,
            (None, None) => role_resources.requests.get(&resource).copied(),
        };
        if let (Some(r), Some(l)) = (request, limit)
            && r > l
        {
            if ov_request.is_some() && ov_limit.is_none() {
                // The job asked for a larger request (already within the ceiling):
                // the limit follows it rather than the request being ignored.
                warnings.push(format!(
                    "{name}: limits.{key} raised to {r} to match the requested {key}"
                ));
                limit = Some(r);
            } else {
                if ov_request.is_some() || ex_request.is_some() {
                    warnings.push(format!(
                        "{name}: requests.{key} {r} lowered to its limit {l}"
                    ));
                }
                request = Some(l);
            }
        }
        entries.push(Entry {
            key: key.to_string(),
            ex_limit,
            ex_request,
            limit,
            request,
        });
    }
    super::extended_resources::plan(policy, class, is_build, at, &mut entries, warnings)?;
    super::gpus::plan(class, is_build, overrides, at, &mut entries, warnings)?;
    Ok(entries)
}
