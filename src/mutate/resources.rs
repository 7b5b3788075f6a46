//! Requests and limits per container role: fill in what is missing, lower what is above
//! the class ceiling, apply the job's overrides to `build`, and keep request ≤ limit.

use serde_json::{Map, Value};

use super::overrides::Overrides;
use super::patch::{Patch, pointer};
use super::view::{Container, Pod, QuantityMap};
use crate::policy::{Limit, ResourceName, Role, RunnerClass};
use crate::quantity::Quantity;

/// Applies the class resources to every job-pod container. The error is a denial
/// message for a pod carrying a quantity the API server itself would reject.
pub(super) fn apply(
    class: &RunnerClass,
    overrides: &Overrides,
    pod: &Pod<'_>,
    patch: &mut Patch,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let lists = [
        ("initContainers", pod.spec().init_containers.as_deref()),
        ("containers", pod.spec().containers.as_deref()),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.unwrap_or_default().iter().enumerate() {
            let Some(role) = Role::of_container(&container.name) else {
                continue;
            };
            // Overrides and GPUs belong to the build container proper, not to an init
            // container that happens to share its name.
            let is_build = role == Role::Build && list == "containers";
            let edits = plan(class, role, is_build, overrides, container, list, warnings)?;
            emit(patch, list, index, container, edits);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Limits,
    Requests,
}

impl Section {
    fn as_str(self) -> &'static str {
        match self {
            Section::Limits => "limits",
            Section::Requests => "requests",
        }
    }
}

/// One changed entry: `after: None` removes it.
#[derive(Debug)]
struct Edit {
    section: Section,
    key: String,
    before: Option<String>,
    after: Option<String>,
}

fn existing(
    map: Option<&QuantityMap<'_>>,
    key: &str,
    list: &str,
    container: &str,
    section: Section,
) -> Result<Option<(Quantity, String)>, String> {
    let Some(text) = map.and_then(|m| m.get(key)) else {
        return Ok(None);
    };
    match Quantity::parse(text) {
        Ok(q) if !q.is_negative() => Ok(Some((q, text.to_string()))),
        _ => Err(format!(
            "spec.{list}[{container}].resources.{}.{key}: {} is not a valid non-negative quantity",
            section.as_str(),
            super::shorten(text)
        )),
    }
}

fn plan(
    class: &RunnerClass,
    role: Role,
    is_build: bool,
    overrides: &Overrides,
    container: &Container<'_>,
    list: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Edit>, String> {
    let role_resources = class.resources(role);
    let resources = container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let name = container.name.as_ref();
    let mut edits = Vec::new();

    for resource in ResourceName::ALL {
        let key = resource.as_str();
        let max = class.max.get(&resource).copied();
        let ex_limit = existing(limits, key, list, name, Section::Limits)?;
        let ex_request = existing(requests, key, list, name, Section::Requests)?;
        let ov_limit = is_build
            .then(|| overrides.limits.get(&resource).copied())
            .flatten();
        let ov_request = is_build
            .then(|| overrides.requests.get(&resource).copied())
            .flatten();
        let clamp = |q: Quantity, section: Section, warnings: &mut Vec<String>| match max {
            Some(m) if q > m => {
                warnings.push(format!(
                    "{name}: {}.{key} {q} lowered to the ceiling {m} of class {}",
                    section.as_str(),
                    class.name
                ));
                m
            }
            _ => q,
        };

        let mut limit = match (
            ov_limit,
            ex_limit.as_ref(),
            role_resources.limits.get(&resource),
        ) {
            (Some(o), _, _) => Some(o),
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
            (None, None, Some(Limit::Set(v))) => Some(*v),
            (None, None, None) => None,
        };
        let mut request = match (ov_request, ex_request.as_ref()) {
            (Some(o), _) => Some(o),
            (None, Some((q, _))) => Some(clamp(*q, Section::Requests, warnings)),
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
        push_edit(&mut edits, Section::Limits, key, ex_limit, limit);
        push_edit(&mut edits, Section::Requests, key, ex_request, request);
    }

    if let (true, Some(gpu)) = (is_build, class.gpu.as_ref()) {
        let key = gpu.resource.as_str();
        let ex_limit = existing(limits, key, list, name, Section::Limits)?;
        let ex_request = existing(requests, key, list, name, Section::Requests)?;
        let ceiling = Quantity::from_units(i64::from(gpu.max));
        let count = match (overrides.gpus, ex_limit.as_ref()) {
            (Some(n), _) => Quantity::from_units(i64::from(n)),
            (None, Some((q, _))) if *q > ceiling => {
                warnings.push(format!(
                    "{name}: limits.{key} {q} lowered to the ceiling {ceiling} of class {}",
                    class.name
                ));
                ceiling
            }
            (None, Some((q, _))) => *q,
            (None, None) => Quantity::from_units(i64::from(gpu.count)),
        };
        // Extended resources need request == limit; a missing request defaults to it.
        let request = ex_request.as_ref().map(|_| count);
        push_edit(&mut edits, Section::Limits, key, ex_limit, Some(count));
        push_edit(&mut edits, Section::Requests, key, ex_request, request);
    }
    Ok(edits)
}

fn push_edit(
    edits: &mut Vec<Edit>,
    section: Section,
    key: &str,
    before: Option<(Quantity, String)>,
    after: Option<Quantity>,
) {
    let unchanged = match (&before, after) {
        (Some((b, _)), Some(a)) => *b == a,
        (None, None) => true,
        _ => false,
    };
    if !unchanged {
        edits.push(Edit {
            section,
            key: key.to_string(),
            before: before.map(|(_, text)| text),
            after: after.map(|q| q.to_string()),
        });
    }
}

/// Turns the edits of one container into patch operations, creating `resources`,
/// `limits` or `requests` whole where they are missing.
fn emit(patch: &mut Patch, list: &str, index: usize, container: &Container<'_>, edits: Vec<Edit>) {
    if edits.is_empty() {
        return;
    }
    let index = index.to_string();
    let base = ["spec", list, index.as_str(), "resources"];
    let Some(resources) = container.resources.as_ref() else {
        // No resources at all: only additions are possible; add the object whole.
        let mut object = Map::new();
        for section in [Section::Limits, Section::Requests] {
            let members: Map<String, Value> = edits
                .iter()
                .filter(|e| e.section == section)
                .filter_map(|e| e.after.clone().map(|a| (e.key.clone(), Value::String(a))))
                .collect();
            if !members.is_empty() {
                object.insert(section.as_str().to_string(), Value::Object(members));
            }
        }
        if !object.is_empty() {
            patch.add(pointer(&base), Value::Object(object));
        }
        return;
    };
    for section in [Section::Limits, Section::Requests] {
        let present = match section {
            Section::Limits => resources.limits.is_some(),
            Section::Requests => resources.requests.is_some(),
        };
        let section_path = [base[0], base[1], base[2], base[3], section.as_str()];
        let mine = edits.iter().filter(|e| e.section == section);
        if !present {
            let members: Map<String, Value> = mine
                .filter_map(|e| e.after.clone().map(|a| (e.key.clone(), Value::String(a))))
                .collect();
            if !members.is_empty() {
                patch.add(pointer(&section_path), Value::Object(members));
            }
            continue;
        }
        for edit in mine {
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
