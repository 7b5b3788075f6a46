//! Requests and limits for every container of a job pod: fill in the role's class values
//! where a container has none, lower what is above the class ceiling (or the pod-level
//! limit), apply the job's overrides to `build`, keep request ≤ limit, hold GPUs to
//! the class (`gpus.rs`) and keep only the extended resources and hugepages it grants
//! (`extended_resources.rs`). Pod-level `spec.resources` is planned first (`pod_level.rs`):
//! where it is set, it is the budget the containers must fit. `containers.rs` plans each
//! container; this file holds what they share: where a container is, one resource's
//! entry, and turning the planned entries into patch operations.

mod containers;
mod extended_resources;
mod gpus;
mod pod_level;

use serde_json::{Map, Value};

use super::patch::{Patch, pointer};
use super::view::{Container, QuantityMap, Resources};
use crate::policy::{ContainerList, Gpu, RunnerClass};
use crate::quantity::Quantity;

pub(super) use containers::apply;

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

/// The GPUs a container of `class` is granted: the class's, for `build` alone.
pub(super) fn granted_gpu(class: &RunnerClass, is_build: bool) -> Option<&Gpu> {
    class.gpu.as_ref().filter(|_| is_build)
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
