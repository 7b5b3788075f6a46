//! `gpuWorkloads`: placing pods that are not CI jobs but ask for a GPU.
//!
//! CI jobs deploy charts into namespaces they create themselves (`ci-<project>-…`), with
//! no labels, and the workloads in them request GPUs. This section names those
//! namespaces (by name glob or label) and the placement a GPU pod needs there: node
//! selector, tolerations and runtime class. The core applies it to every pod in such a
//! namespace that asks for one of its GPU resources, unless it is a job pod in a
//! namespace that opted in (those keep their runner class). Absent from the policy: off.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::gpus::Gpu;
use super::names::is_extended_resource;
use super::raw::{Ordered, RawToleration, S};
use super::validate::Validator;
use super::{Policy, RunnerClass, Toleration};

/// Namespaces the section never applies to, whatever the policy says: the cluster's own,
/// whose pods must start with or without the webhook. The webhook's own namespace is
/// added at start-up ([`Policy::set_webhook_namespace`]).
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The name GPU workloads go by where a runner class name would be: the class in
/// metrics, logs, `--explain` and audit annotations. No runner class may take it.
pub const GPU_WORKLOADS_CLASS: &str = "gpu-workloads";

/// The GPU resources of a section that names none: NVIDIA's whole GPUs and its MIG
/// profiles (`nvidia.com/mig-1g.5gb`, …), which need the same placement.
const DEFAULT_RESOURCES: [&str; 2] = ["nvidia.com/gpu", "nvidia.com/mig-*"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGpuWorkloads {
    pub namespaces: S<RawNamespaces>,
    /// One resource (the form before `resources`).
    pub resource: Option<S<String>>,
    pub resources: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub node_selector: Ordered<S<String>, S<String>>,
    #[serde(default)]
    pub tolerations: Vec<S<RawToleration>>,
    pub runtime_class_name: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNamespaces {
    #[serde(default)]
    pub names: Vec<S<String>>,
    #[serde(default)]
    pub labels: Ordered<S<String>, S<String>>,
}

/// The validated section.
#[derive(Debug, Clone)]
pub struct GpuWorkloads {
    /// Namespace name globs: a namespace whose name matches one is in.
    pub names: Vec<NameGlob>,
    /// Or: a namespace carrying all of these labels is in (none: labels select nothing).
    pub labels: BTreeMap<String, String>,
    /// Namespaces never in: [`SYSTEM_NAMESPACES`] and the webhook's own.
    pub never: BTreeSet<String>,
    /// The extended resources that make a pod a GPU workload (`nvidia.com/gpu`,
    /// `nvidia.com/mig-*`, `amd.com/gpu`): names, or prefixes ending in `*`.
    pub resources: Vec<ResourcePattern>,
    /// The placement, as a runner class named [`GPU_WORKLOADS_CLASS`] so the core places
    /// these pods with the same code as GPU jobs: only its nodeSelector, tolerations and
    /// `gpu.runtimeClassName` are used (no roles, no resources, no ceilings).
    pub placement: RunnerClass,
}

impl GpuWorkloads {
    /// The glob matching `namespace`, unless the namespace is never in.
    pub fn name_match(&self, namespace: &str) -> Option<&NameGlob> {
        if namespace.is_empty() || self.never.contains(namespace) {
            return None;
        }
        self.names.iter().find(|g| g.matches(namespace))
    }

    /// Whether a container asking for `resource` asks for a GPU here.
    pub fn asks_for(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| r.matches(resource))
    }

    /// The resources a webhook entry's matchConditions (their CEL `expressions`) do not
    /// look for: a pod asking only for one of them never reaches the webhook. A name is
    /// looked for as `'name'` or under a `startsWith('prefix')` it starts with; a prefix
    /// pattern `p*` as `startsWith('q')` with `p` starting with `q`. Text, not CEL: it
    /// recognises how manifests/base writes the conditions, and says nothing of
    /// conditions written otherwise beyond "not found".
    pub fn missing_from_conditions<'g>(&'g self, expressions: &[&str]) -> Vec<&'g ResourcePattern> {
        let text = expressions.join("\n");
        let prefixes: Vec<&str> = text
            .split("startsWith('")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(prefix, _)| prefix))
            .collect();
        self.resources
            .iter()
            .filter(|r| {
                let wanted = r.prefix().unwrap_or(r.as_str());
                let named = r.prefix().is_none() && text.contains(&format!("'{wanted}'"));
                let under = prefixes.iter().any(|p| wanted.starts_with(p));
                !(named || under)
            })
            .collect()
    }

    /// Whether `namespace` may be selected by its labels (it is not a never-namespace).
    pub fn labels_may_select(&self, namespace: &str) -> bool {
        !self.labels.is_empty() && !namespace.is_empty() && !self.never.contains(namespace)
    }
}

/// An extended resource name (`nvidia.com/gpu`), or a prefix of such names ending in `*`
/// (`nvidia.com/mig-*`: every MIG profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern(String);

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<ResourcePattern, String> {
        let ok = match text.strip_suffix('*') {
            // A prefix: `<domain>/` and the start of a name, which `x` completes.
            Some(prefix) => {
                !prefix.contains('*')
                    && prefix.contains('/')
                    && is_extended_resource(&format!("{prefix}x"))
            }
            None => is_extended_resource(text),
        };
        if ok {
            Ok(ResourcePattern(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is neither an extended resource name (such as nvidia.com/gpu) nor a prefix of such names ending in * (such as nvidia.com/mig-*)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix a name must start with, for a pattern ending in `*`.
    pub fn prefix(&self) -> Option<&str> {
        self.0.strip_suffix('*')
    }

    pub fn matches(&self, resource: &str) -> bool {
        match self.prefix() {
            Some(prefix) => resource.starts_with(prefix),
            None => resource == self.0,
        }
    }
}

/// A namespace name pattern: `*` stands for any run of characters, `?` for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob(String);

impl NameGlob {
    /// A glob over namespace names: lower-case letters, digits, `-`, `*` and `?`.
    pub fn parse(text: &str) -> Result<NameGlob, String> {
        let ok = !text.is_empty()
            && text.len() <= 63
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-*?".contains(&b));
        if ok {
            Ok(NameGlob(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a namespace name pattern (lower-case letters, digits, -, and * for any run of characters or ? for one, e.g. ci-*)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches: linear, with backtracking to the last `*` only.
    pub fn matches(&self, name: &str) -> bool {
        let (p, s) = (self.0.as_bytes(), name.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(&c) if c == b'?' || c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

impl Policy {
    /// Tells the policy the namespace the webhook runs in: `gpuWorkloads` never applies
    /// there (its pods must start while the webhook is down). Called for every policy
    /// the server puts in force.
    pub fn set_webhook_namespace(&mut self, namespace: &str) {
        if let Some(g) = &mut self.gpu_workloads {
            g.never.insert(namespace.to_string());
        }
    }
}

impl Validator<'_> {
    pub(super) fn gpu_workloads(&mut self, raw: S<RawGpuWorkloads>) -> GpuWorkloads {
        const WHAT: &str = "gpuWorkloads";
        let g = raw.value;
        let names = g
            .namespaces
            .value
            .names
            .iter()
            .filter_map(|n| match NameGlob::parse(&n.value) {
                Ok(glob) => Some(glob),
                Err(message) => {
                    self.problem(n, format!("{WHAT}.namespaces.names: {message}"));
                    None
                }
            })
            .collect::<Vec<_>>();
        let labels = self.node_selector(
            &format!("{WHAT}.namespaces.labels"),
            &g.namespaces.value.labels,
        );
        if g.namespaces.value.names.is_empty() && labels.is_empty() {
            self.problem(
                &g.namespaces,
                format!("{WHAT}.namespaces: give names (globs such as ci-*) and/or labels; with neither no namespace is selected"),
            );
        }
        let resources = match (&g.resource, &g.resources) {
            (Some(r), None) => {
                if !is_extended_resource(&r.value) {
                    self.problem(
                        r,
                        format!(
                            "{WHAT}.resource: {:?} is not an extended resource name such as nvidia.com/gpu",
                            r.value
                        ),
                    );
                }
                vec![ResourcePattern(r.value.clone())]
            }
            (None, Some(list)) => {
                if list.value.is_empty() {
                    self.problem(
                        list,
                        format!("{WHAT}.resources: give at least one resource (such as nvidia.com/gpu), or leave the section out"),
                    );
                }
                list.value
                    .iter()
                    .filter_map(|r| match ResourcePattern::parse(&r.value) {
                        Ok(p) => Some(p),
                        Err(message) => {
                            self.problem(r, format!("{WHAT}.resources: {message}"));
                            None
                        }
                    })
                    .collect()
            }
            (Some(r), Some(_)) => {
                self.problem(r, format!("{WHAT}: give resource or resources, not both"));
                Vec::new()
            }
            (None, None) => DEFAULT_RESOURCES
                .iter()
                .map(|r| ResourcePattern(r.to_string()))
                .collect(),
        };
        let shown = resources
            .iter()
            .map(ResourcePattern::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let node_selector = self.node_selector(&format!("{WHAT}.nodeSelector"), &g.node_selector);
        let tolerations: Vec<Toleration> =
            self.tolerations(&format!("{WHAT}.tolerations"), &g.tolerations);
        let runtime_class_name = g
            .runtime_class_name
            .as_ref()
            .map(|r| self.runtime_class_name(WHAT, r));
        GpuWorkloads {
            names,
            labels,
            never: SYSTEM_NAMESPACES.iter().map(|n| n.to_string()).collect(),
            placement: RunnerClass {
                name: GPU_WORKLOADS_CLASS.to_string(),
                description: Some(format!("gpuWorkloads: pods asking for {shown}")),
                node_selector,
                tolerations,
                // Only for the runtime class: the count and ceiling are never read.
                gpu: Some(Gpu {
                    resource: shown,
                    count: 1,
                    max: 1,
                    runtime_class_name,
                }),
                ..RunnerClass::default()
            },
            resources,
        }
    }
}

#[cfg(test)]
mod tests;
