//! Requests and limits for every container of a job pod: fill in the role's class values
//! where a container has none, lower what is above the class ceiling (or the pod-level
//! limit), apply the job's overrides to `build`, keep request ≤ limit, and hold GPUs to
//! the class (`gpus.rs`). Pod-level `spec.resources` is planned first (`pod_level.rs`):
//! where it is set, it is the budget the containers must fit.

use serde_json::{Map, Value};

use super::overrides::Overrides;
use super::patch::{Patch, pointer};
use super::pod_level::Budget;
use super::view::{Container, Pod, QuantityMap, Resources};
use crate::policy::{ContainerList, Limit, Policy, ResourceName, Role, RunnerClass};
use crate::quantity::Quantity;

/// Applies the class resources to every job-pod container. The error is a denial
/// message for a pod carrying a quantity the API server itself would reject.
pub(super) fn apply(
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

/// Where a container is.
pub(super) struct Place<'c, 'a> {
    pub list: ContainerList,
    pub index: usize,
    pub container: &'c Container<'a>,
}

impl Place<'_, '_> {
    pub fn name(&self) -> &str {
        &self.container.name
    }

    /// For messages: `spec.containers[build]`.
    pub fn path(&self) -> String {
        format!("spec.{}[{}]", self.list.as_str(), self.name())
    }

    /// An init container with `restartPolicy: Always` runs beside the app containers.
    pub fn is_sidecar(&self) -> bool {
        self.list == ContainerList::InitContainers
            && self.container.restart_policy.as_deref() == Some("Always")
    }
}

/// One container's resources as planned.
pub(super) struct Planned<'c, 'a> {
    pub at: Place<'c, 'a>,
    pub entries: Vec<Entry>,
}

impl Planned<'_, '_> {
    pub fn name(&self) -> &str {
        self.at.name()
    }
}

/// One resource of one container (or of the pod): what it has and what it gets.
#[derive(Debug)]
pub(super) struct Entry {
    pub key: String,
    pub ex_limit: Option<(Quantity, String)>,
    pub ex_request: Option<(Quantity, String)>,
    pub limit: Option<Quantity>,
    pub request: Option<Quantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Limits,
    Requests,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Limits => "limits",
            Section::Requests => "requests",
        }
    }
}

/// One changed entry: `after: None` removes it.
#[derive(Debug)]
pub(super) struct Edit {
    section: Section,
    key: String,
    before: Option<String>,
    after: Option<String>,
}

/// A quantity the pod carries at `place` (`spec`, `spec.containers[build]`), or `None`.
pub(super) fn existing(
    map: Option<&QuantityMap<'_>>,
    key: &str,
    place: &str,
    section: Section,
) -> Result<Option<(Quantity, String)>, String> {
    let Some(text) = map.and_then(|m| m.get(key)) else {
        return Ok(None);
    };
    match Quantity::parse(text) {
        Ok(q) if !q.is_negative() => Ok(Some((q, text.to_string()))),
        _ => Err(format!(
            "{place}.resources.{}.{key}: {} is not a valid non-negative quantity",
            section.as_str(),
            super::shorten(text)
        )),
    }
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
    super::gpus::plan(
        policy,
        class,
        is_build,
        overrides,
        at,
        &mut entries,
        warnings,
    )?;
    Ok(entries)
}

/// The changes an entry list asks for.
pub(super) fn edits<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> Vec<Edit> {
    let mut edits = Vec::new();
    for e in entries {
        push_edit(&mut edits, Section::Limits, &e.key, &e.ex_limit, e.limit);
        push_edit(
            &mut edits,
            Section::Requests,
            &e.key,
            &e.ex_request,
            e.request,
        );
    }
    edits
}

fn push_edit(
    edits: &mut Vec<Edit>,
    section: Section,
    key: &str,
    before: &Option<(Quantity, String)>,
    after: Option<Quantity>,
) {
    let unchanged = match (before, after) {
        (Some((b, _)), Some(a)) => *b == a,
        (None, None) => true,
        _ => false,
    };
    if !unchanged {
        edits.push(Edit {
            section,
            key: key.to_string(),
            before: before.as_ref().map(|(_, text)| text.clone()),
            after: after.map(|q| q.to_string()),
        });
    }
}

/// Turns the edits of one `resources` object (at `base`) into patch operations,
/// creating `resources`, `limits` or `requests` whole where they are missing.
pub(super) fn emit(
    patch: &mut Patch,
    base: &[&str],
    resources: Option<&Resources<'_>>,
    edits: Vec<Edit>,
) {
    if edits.is_empty() {
        return;
    }
    let members = |section: Section| -> Map<String, Value> {
        edits
            .iter()
            .filter(|e| e.section == section)
            .filter_map(|e| e.after.clone().map(|a| (e.key.clone(), Value::String(a))))
            .collect()
    };
    let Some(resources) = resources else {
        // No resources at all: only additions are possible; add the object whole.
        let mut object = Map::new();
        for section in [Section::Limits, Section::Requests] {
            let m = members(section);
            if !m.is_empty() {
                object.insert(section.as_str().to_string(), Value::Object(m));
            }
        }
        if !object.is_empty() {
            patch.add(pointer(base), Value::Object(object));
        }
        return;
    };
    for section in [Section::Limits, Section::Requests] {
        let present = match section {
            Section::Limits => resources.limits.is_some(),
            Section::Requests => resources.requests.is_some(),
        };
        let mut section_path = base.to_vec();
        section_path.push(section.as_str());
        if !present {
            let m = members(section);
            if !m.is_empty() {
                patch.add(pointer(&section_path), Value::Object(m));
            }
            continue;
        }
        for edit in edits.iter().filter(|e| e.section == section) {
            let mut path = pointer(&section_path);
            path.push_back(edit.key.as_str());
            match (&edit.before, &edit.after) {
                (None, Some(a)) => patch.add(path, Value::String(a.clone())),
                (Some(b), Some(a)) => {
                    patch.replace(path, Value::String(b.clone()), Value::String(a.clone()))
                }
                (Some(b), None) => patch.remove(path, Value::String(b.clone())),
                (None, None) => {}
            }
        }
    }
}
