//! Override annotations: the only input a job author controls. Every value is
//! validated, bounded by the class ceilings, and reported (applied, clamped, rejected).

use std::collections::{BTreeMap, HashMap};

use super::shorten;
use super::view::Pod;
use crate::policy::{OnExceed, Policy, ResourceName, RunnerClass};
use crate::quantity::Quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideKind {
    CpuRequest,
    CpuLimit,
    MemoryRequest,
    MemoryLimit,
    Gpus,
    Docker,
}

impl OverrideKind {
    pub const ALL: [OverrideKind; 6] = [
        OverrideKind::CpuRequest,
        OverrideKind::CpuLimit,
        OverrideKind::MemoryRequest,
        OverrideKind::MemoryLimit,
        OverrideKind::Gpus,
        OverrideKind::Docker,
    ];

    /// The annotation name under the prefix, also the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideKind::CpuRequest => "cpu-request",
            OverrideKind::CpuLimit => "cpu-limit",
            OverrideKind::MemoryRequest => "memory-request",
            OverrideKind::MemoryLimit => "memory-limit",
            OverrideKind::Gpus => "gpus",
            OverrideKind::Docker => "docker",
        }
    }

    fn resource(self) -> Option<(ResourceName, bool)> {
        match self {
            OverrideKind::CpuRequest => Some((ResourceName::Cpu, false)),
            OverrideKind::CpuLimit => Some((ResourceName::Cpu, true)),
            OverrideKind::MemoryRequest => Some((ResourceName::Memory, false)),
            OverrideKind::MemoryLimit => Some((ResourceName::Memory, true)),
            OverrideKind::Gpus | OverrideKind::Docker => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideResult {
    Applied,
    Clamped,
    /// Invalid (the pod is denied), or not applicable (ignored with a warning).
    Rejected,
}

impl OverrideResult {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideResult::Applied => "applied",
            OverrideResult::Clamped => "clamped",
            OverrideResult::Rejected => "rejected",
        }
    }
}

/// What happened to one override annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRecord {
    pub kind: OverrideKind,
    pub result: OverrideResult,
    /// For the audit trail, e.g. `cpu-limit=8 (asked 20)`.
    pub detail: String,
}

/// The overrides in force for the `build` container.
#[derive(Debug, Default)]
pub(super) struct Overrides {
    pub requests: BTreeMap<ResourceName, Quantity>,
    pub limits: BTreeMap<ResourceName, Quantity>,
    pub gpus: Option<u32>,
    pub docker_disabled: bool,
    pub records: Vec<OverrideRecord>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Denied {
    pub message: String,
    pub records: Vec<OverrideRecord>,
}

const DOCKER_DISABLED: &str = "disabled";

/// Reads and checks every annotation under the policy prefix.
pub(super) fn read(
    policy: &Policy,
    class: &RunnerClass,
    pod: &Pod<'_>,
) -> Result<Overrides, Denied> {
    let mut out = Overrides::default();
    let mut errors = Problems::default();
    let mut rejected: Vec<OverrideRecord> = Vec::new();
    let Some(annotations) = pod.meta().annotations.as_ref() else {
        return Ok(out);
    };
    let keys = &policy.keys;
    let known: [(&str, OverrideKind); 6] = [
        (&keys.cpu_request, OverrideKind::CpuRequest),
        (&keys.cpu_limit, OverrideKind::CpuLimit),
        (&keys.memory_request, OverrideKind::MemoryRequest),
        (&keys.memory_limit, OverrideKind::MemoryLimit),
        (&keys.gpus, OverrideKind::Gpus),
        (&keys.docker, OverrideKind::Docker),
    ];
    let prefix_len = policy.prefix.len() + 1;
    // Compared as bytes: the key is untrusted text, and slicing it as a str at the
    // prefix length panics when that falls inside a multi-byte character.
    let under_prefix = |key: &str| {
        key.len() > prefix_len
            && key.as_bytes()[..prefix_len - 1].eq_ignore_ascii_case(policy.prefix.as_bytes())
            && key.as_bytes()[prefix_len - 1] == b'/'
    };
    let entries = &annotations.0;
    // A duplicated key (only possible in hand-made JSON) counts once, the last one, as
    // the API server's decoder would see it. Found through a map, not by scanning the
    // rest of the list for each key: a 4 MiB body holds ~150,000 annotations.
    let last: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, (key, _))| under_prefix(key))
        .map(|(i, (key, _))| (key.as_ref(), i))
        .collect();
    for (i, (key, value)) in entries.iter().enumerate() {
        // `last` holds only keys under the prefix, and each at its last position.
        if last.get(key.as_ref()) != Some(&i) {
            continue;
        }
        if *key == keys.class || *key == keys.policy {
            continue; // The webhook's own audit keys: overwritten, never read.
        }
        let Some(kind) = known.iter().find(|(k, _)| k == key).map(|(_, kind)| *kind) else {
            let case_hint = if known.iter().any(|(k, _)| k.eq_ignore_ascii_case(key))
                || key.eq_ignore_ascii_case(&keys.class)
                || key.eq_ignore_ascii_case(&keys.policy)
            {
                " (annotation keys are case-sensitive)"
            } else {
                ""
            };
            errors.push_with(|| {
                let names: Vec<&str> = OverrideKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "annotation {} is not a ci-pod-webhook override{case_hint}; the overrides are {}/ followed by one of: {}",
                    shorten(key),
                    policy.prefix,
                    names.join(", ")
                )
            });
            continue;
        };
        match check(policy, class, kind, key, value, &mut out) {
            Ok(()) => {}
            Err(message) => {
                errors.push(message);
                rejected.push(OverrideRecord {
                    kind,
                    result: OverrideResult::Rejected,
                    detail: format!("{}={}", kind.as_str(), shorten(value)),
                });
            }
        }
    }
    for resource in [ResourceName::Cpu, ResourceName::Memory] {
        if let (Some(request), Some(limit)) =
            (out.requests.get(&resource), out.limits.get(&resource))
            && request > limit
        {
            errors.push(format!(
                "annotations {p}/{r}-request ({request}) and {p}/{r}-limit ({limit}): the request must not exceed the limit",
                p = policy.prefix,
                r = resource.as_str()
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Denied {
            message: errors.message(),
            records: rejected,
        })
    }
}

/// The problems found, of which at most [`MAX_REPORTED`] are spelled out: the message
/// goes back to the job author and into audit logs, and a pod can carry thousands of
/// bad annotations.
#[derive(Debug, Default)]
struct Problems {
    shown: Vec<String>,
    more: usize,
}

const MAX_REPORTED: usize = 8;

impl Problems {
    fn push(&mut self, problem: String) {
        self.push_with(|| problem);
    }

    /// Like `push`, writing the message only if it is shown.
    fn push_with(&mut self, problem: impl FnOnce() -> String) {
        if self.shown.len() < MAX_REPORTED {
            self.shown.push(problem());
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    fn message(&self) -> String {
        let mut message = self.shown.join("; ");
        if self.more > 0 {
            message.push_str(&format!("; and {} more", self.more));
        }
        message
    }
}

/// Checks one known override and records it in `out`; the error is the denial message.
fn check(
    policy: &Policy,
    class: &RunnerClass,
    kind: OverrideKind,
    key: &str,
    value: &str,
    out: &mut Overrides,
) -> Result<(), String> {
    let value = value.trim();
    if let Some((resource, is_limit)) = kind.resource() {
        let example = match resource {
            ResourceName::Memory => "512Mi or 4Gi",
            _ => "500m or 2",
        };
        let asked = Quantity::parse(value).map_err(|_| {
            format!(
                "annotation {key}: {} is not a valid quantity; use a Kubernetes quantity such as {example}",
                shorten(value)
            )
        })?;
        if !asked.is_positive() {
            return Err(format!(
                "annotation {key}: {} must be greater than zero; use a quantity such as {example}",
                shorten(value)
            ));
        }
        if resource == ResourceName::Memory && asked.as_whole_units().is_none() {
            return Err(format!(
                "annotation {key}: {} is not a whole number of bytes; use a quantity such as {example}",
                shorten(value)
            ));
        }
        let (effective, result) = bound(
            policy,
            class,
            key,
            asked,
            class.max.get(&resource).copied(),
            out,
        )?;
        let target = if is_limit {
            &mut out.limits
        } else {
            &mut out.requests
        };
        target.insert(resource, effective);
        out.records.push(record(
            kind,
            result,
            effective.to_string(),
            asked.to_string(),
        ));
        return Ok(());
    }
    match kind {
        OverrideKind::Gpus => {
            let count = parse_count(value).filter(|n| *n >= 1);
            let Some(asked) = count else {
                let range = class
                    .gpu
                    .as_ref()
                    .map_or("1 or more".to_string(), |g| format!("from 1 to {}", g.max));
                return Err(format!(
                    "annotation {key}: {} is not a valid GPU count; use a whole number {range}",
                    shorten(value)
                ));
            };
            let Some(gpu) = &class.gpu else {
                out.warnings
                    .push(format!("{key} ignored: class {} has no GPUs", class.name));
                out.records.push(OverrideRecord {
                    kind,
                    result: OverrideResult::Rejected,
                    detail: format!("gpus={asked} (ignored: class has no GPUs)"),
                });
                return Ok(());
            };
            let ceiling = Quantity::from_units(i64::from(gpu.max));
            let (effective, result) = bound(
                policy,
                class,
                key,
                Quantity::from_units(i64::from(asked)),
                Some(ceiling),
                out,
            )?;
            let effective =
                u32::try_from(effective.as_whole_units().unwrap_or(1)).unwrap_or(gpu.max);
            out.gpus = Some(effective);
            out.records.push(record(
                kind,
                result,
                effective.to_string(),
                asked.to_string(),
            ));
            Ok(())
        }
        OverrideKind::Docker => {
            if value != DOCKER_DISABLED {
                return Err(format!(
                    "annotation {key}: {} is not accepted; the only accepted value is \"{DOCKER_DISABLED}\"",
                    shorten(value)
                ));
            }
            out.docker_disabled = true;
            out.records.push(record(
                kind,
                OverrideResult::Applied,
                DOCKER_DISABLED.to_string(),
                String::new(),
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Applies the class ceiling: clamp with a warning, or deny, as the policy says.
fn bound(
    policy: &Policy,
    class: &RunnerClass,
    key: &str,
    asked: Quantity,
    ceiling: Option<Quantity>,
    out: &mut Overrides,
) -> Result<(Quantity, OverrideResult), String> {
    match ceiling {
        Some(max) if asked > max => match policy.on_exceed {
            OnExceed::Deny => Err(format!(
                "annotation {key}: {asked} is above the ceiling {max} of class {}",
                class.name
            )),
            OnExceed::Clamp => {
                out.warnings.push(format!(
                    "{key}: {asked} is above the ceiling of class {}; using {max}",
                    class.name
                ));
                Ok((max, OverrideResult::Clamped))
            }
        },
        _ => Ok((asked, OverrideResult::Applied)),
    }
}

fn record(
    kind: OverrideKind,
    result: OverrideResult,
    effective: String,
    asked: String,
) -> OverrideRecord {
    let detail = match result {
        OverrideResult::Clamped => format!("{}={effective} (asked {asked})", kind.as_str()),
        _ => format!("{}={effective}", kind.as_str()),
    };
    OverrideRecord {
        kind,
        result,
        detail,
    }
}

/// A GPU count: plain decimal digits, no sign, no fraction, no suffix.
fn parse_count(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than fit: a huge count, clamped like any other.
    Some(value.parse::<u32>().unwrap_or(u32::MAX))
}
