//! `sizing`: what job pods really used, per runner class and container role, over a
//! window of Prometheus history, and the ceilings that would have held them.
//!
//! Two halves, as `doctor` has: [`fetch`] asks Prometheus (the webhook's
//! `ci_pod_webhook_job_pod_info` for each job pod's class, the kubelets' cAdvisor series
//! for its usage) and keeps one peak per pod and container; [`report`] is a plain
//! function of those peaks and the policy: percentiles, pods over the class limits,
//! suggested limits. The report's quantities are exact [`Quantity`] values, written as
//! Kubernetes writes them, so any tool can read the JSON.
//!
//! Definitions (docs/sizing.md):
//! - a pod's peak for a role is the highest peak of its containers of that role (each
//!   container of a role gets the role's limit, so the highest is the one that hits it);
//! - percentiles are nearest-rank over the pods: p99 is the value at rank ⌈0.99 × n⌉,
//!   always a peak some pod really had;
//! - memory peaks are rounded up to the byte, CPU peaks up to the millicore;
//! - `suggested` is p99 × headroom, rounded up to a readable quantity
//!   ([`stats::readable_memory`], [`stats::readable_cpu`]), then capped by the class's
//!   `max` (`capped` says when it was).

pub mod fetch;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};

use ci_pod_webhook_core::policy::{Limit, Policy, ResourceName, Role, RunnerClass};
use ci_pod_webhook_core::quantity::{Format, Quantity};
use serde::Serialize;

pub use fetch::{FetchError, Progress, Window, fetch};

/// A job pod: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

/// What the webhook said of a job pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub class: String,
    /// GitLab's project id, from the runner's `project.runner.gitlab.com/id` label.
    pub project: Option<String>,
}

/// A container of a job pod.
pub type ContainerKey = (PodKey, String);

/// What Prometheus knows of the job pods of the window.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Every job pod the webhook exported, with the class it had last.
    pub pods: BTreeMap<PodKey, PodInfo>,
    /// The highest `container_memory_working_set_bytes` of each container, in bytes.
    pub memory: BTreeMap<ContainerKey, f64>,
    /// The highest CPU rate of each container, in cores.
    pub cpu: BTreeMap<ContainerKey, f64>,
    /// Containers whose `container_oom_events_total` was above zero.
    pub oom: BTreeSet<ContainerKey>,
}

/// The roles in the order the report lists them: build first.
pub const ROLES: [Role; 3] = [Role::Build, Role::Helper, Role::Service];

/// The name of a role in the report, as the policy's sections are named.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Build => "build",
        Role::Helper => "helper",
        Role::Service => "services",
    }
}

/// The role of a job pod's container, from its name alone (cAdvisor does not say
/// whether a container was an init container): GitLab Runner's `build` and
/// `init-build-uid-gid-collector` get the build values, `helper` and
/// `init-permissions` the helper values, and every other container is a service.
pub fn role_of(container: &str) -> Role {
    match container {
        "build" | "init-build-uid-gid-collector" => Role::Build,
        "helper" | "init-permissions" => Role::Helper,
        _ => Role::Service,
    }
}

/// Where the numbers come from, for the report's header.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    pub prometheus: String,
    /// The window, as given (`7d`).
    pub since: String,
    /// Its end, RFC 3339.
    pub until: String,
    /// The headroom (`1.2`).
    pub headroom: Headroom,
}

/// The factor over p99 a suggestion leaves, exact; written as a decimal (`1.2`), which
/// is also a valid quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom(pub Quantity);

impl std::fmt::Display for Headroom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nanos = self.0.nanos();
        let (whole, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:09}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Headroom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The report: one entry per class and container role.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub source: Source,
    pub classes: Vec<Entry>,
}

/// One class and container role.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub class: String,
    pub container: &'static str,
    /// Job pods with usage series for this role: the population of the statistics.
    pub jobs: usize,
    pub memory: Figures,
    pub cpu: Figures,
    /// Pods over a limit, worst first.
    pub over: Vec<OverPod>,
    /// Why there is nothing to show, when there is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_data: Option<String>,
    /// False for a class the policy does not have (a pod's class under another
    /// policy): its limits and `max` are unknown.
    #[serde(skip_serializing_if = "is_true")]
    pub in_policy: bool,
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Memory or CPU figures of one class and role.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    /// The class's limit for the role; `null` when it sets none.
    pub limit: Option<Quantity>,
    pub p50: Option<Quantity>,
    pub p95: Option<Quantity>,
    pub p99: Option<Quantity>,
    pub max: Option<Quantity>,
    /// Pods whose peak was above `limit`.
    pub over_limit: usize,
    /// Memory only: pods with an OOM event in a container of this role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<usize>,
    pub suggested: Option<Quantity>,
    /// The class's `max` lowered `suggested`.
    pub capped: bool,
}

/// A pod over a limit.
#[derive(Clone, Debug, Serialize)]
pub struct OverPod {
    pub namespace: String,
    pub pod: String,
    pub project: Option<String>,
    pub memory_peak: Option<Quantity>,
    pub cpu_peak: Option<Quantity>,
    /// How far over: the larger of peak ÷ limit for memory and CPU (1.25 is 25 % over).
    #[serde(skip)]
    pub ratio: f64,
}

/// One pod's peaks for one role.
#[derive(Clone, Copy, Debug, Default)]
struct Peaks {
    /// Bytes.
    memory: Option<i64>,
    /// Millicores.
    cpu: Option<i64>,
    oom: bool,
}

/// What a class's limits and ceiling are for one role, from the policy.
#[derive(Clone, Copy, Debug, Default)]
struct Bounds {
    memory_limit: Option<Quantity>,
    cpu_limit: Option<Quantity>,
    memory_max: Option<Quantity>,
    cpu_max: Option<Quantity>,
}

impl Bounds {
    fn of(class: &RunnerClass, role: Role) -> Self {
        let limit = |resource| match class.resources(role).limits.get(&resource) {
            Some(Limit::Set(q)) => Some(*q),
            Some(Limit::Unlimited) | None => None,
        };
        Bounds {
            memory_limit: limit(ResourceName::Memory),
            cpu_limit: limit(ResourceName::Cpu),
            memory_max: class.max.get(&ResourceName::Memory).copied(),
            cpu_max: class.max.get(&ResourceName::Cpu).copied(),
        }
    }
}

/// The report of `usage` under `policy`: every class of the policy (in its order,
/// then classes it does not have), each with build, helper and services.
pub fn report(policy: &Policy, usage: &Usage, source: Source) -> Report {
    let headroom = source.headroom.0;
    // class → role → pod → peaks
    let mut peaks: BTreeMap<&str, [BTreeMap<&PodKey, Peaks>; 3]> = BTreeMap::new();
    let mut pods_of_class: BTreeMap<&str, usize> = BTreeMap::new();
    for info in usage.pods.values() {
        *pods_of_class.entry(info.class.as_str()).or_default() += 1;
    }
    let mut located: Vec<(&str, usize, &PodKey, Peaks)> = Vec::new();
    for (key, bytes) in &usage.memory {
        if let Some((class, role, pod)) = slot(usage, key) {
            let peak = stats::bytes(*bytes);
            located.push((
                class,
                role,
                pod,
                Peaks {
                    memory: Some(peak),
                    ..Peaks::default()
                },
            ));
        }
    }
    for (key, cores) in &usage.cpu {
        if let Some((class, role, pod)) = slot(usage, key) {
            let peak = stats::millicores(*cores);
            located.push((
                class,
                role,
                pod,
                Peaks {
                    cpu: Some(peak),
                    ..Peaks::default()
                },
            ));
        }
    }
    for key in &usage.oom {
        if let Some((class, role, pod)) = slot(usage, key) {
            located.push((
                class,
                role,
                pod,
                Peaks {
                    oom: true,
                    ..Peaks::default()
                },
            ));
        }
    }
    for (class, role, pod, found) in located {
        let peak = peaks.entry(class).or_default()[role]
            .entry(pod)
            .or_default();
        peak.memory = peak.memory.max(found.memory);
        peak.cpu = peak.cpu.max(found.cpu);
        peak.oom |= found.oom;
    }

    let known: BTreeSet<&str> = policy.classes.iter().map(|c| c.name.as_str()).collect();
    let mut classes: Vec<(&str, Option<&RunnerClass>)> = policy
        .classes
        .iter()
        .map(|c| (c.name.as_str(), Some(c)))
        .collect();
    classes.extend(
        pods_of_class
            .keys()
            .filter(|name| !known.contains(*name))
            .map(|name| (*name, None)),
    );

    let mut entries = Vec::new();
    for (name, class) in classes {
        let seen = pods_of_class.get(name).copied().unwrap_or(0);
        let class_peaks = peaks.get(name);
        let with_usage = class_peaks.is_some_and(|roles| roles.iter().any(|r| !r.is_empty()));
        for (index, role) in ROLES.into_iter().enumerate() {
            let bounds = class.map(|c| Bounds::of(c, role)).unwrap_or_default();
            let empty = BTreeMap::new();
            let pods = class_peaks.map_or(&empty, |roles| &roles[index]);
            let no_data = if seen == 0 {
                Some(
                    "no ci_pod_webhook_job_pod_info series in the window: no job pod of this class was seen"
                        .to_string(),
                )
            } else if !with_usage {
                Some(format!(
                    "no cAdvisor series (container_memory_working_set_bytes, \
                     container_cpu_usage_seconds_total) for the class's {seen} job pod(s)"
                ))
            } else if pods.is_empty() {
                Some(format!(
                    "no {} container in the class's {seen} job pod(s) with cAdvisor series",
                    role_name(role)
                ))
            } else {
                None
            };
            entries.push(entry(
                name,
                role,
                pods,
                usage,
                bounds,
                headroom,
                no_data,
                class.is_some(),
            ));
        }
    }
    Report {
        source,
        classes: entries,
    }
}

/// Where a container's peak goes: its pod's class and role (an index in [`ROLES`]);
/// `None` for a pod the webhook did not export (not a job pod).
fn slot<'a>(
    usage: &'a Usage,
    (pod, container): &ContainerKey,
) -> Option<(&'a str, usize, &'a PodKey)> {
    let (pod, info) = usage.pods.get_key_value(pod)?;
    let role = ROLES.iter().position(|r| *r == role_of(container))?;
    Some((info.class.as_str(), role, pod))
}

#[allow(clippy::too_many_arguments)]
fn entry(
    class: &str,
    role: Role,
    pods: &BTreeMap<&PodKey, Peaks>,
    usage: &Usage,
    bounds: Bounds,
    headroom: Quantity,
    no_data: Option<String>,
    in_policy: bool,
) -> Entry {
    let memory_peaks: Vec<i64> = pods.values().filter_map(|p| p.memory).collect();
    let cpu_peaks: Vec<i64> = pods.values().filter_map(|p| p.cpu).collect();
    let memory_quantity = |bytes: i64| Quantity::from_units(bytes).with_format(Format::BinarySI);
    let mut memory = figures(
        &memory_peaks,
        bounds.memory_limit,
        bounds.memory_max,
        bounds.memory_limit.map(|q| q.value_ceil()),
        memory_quantity,
        |p99| stats::readable_memory(stats::times(p99, headroom)),
    );
    memory.oom_killed = Some(pods.values().filter(|p| p.oom).count());
    let cpu = figures(
        &cpu_peaks,
        bounds.cpu_limit,
        bounds.cpu_max,
        bounds.cpu_limit.map(|q| q.milli_value_ceil()),
        Quantity::from_milli,
        |p99| stats::readable_cpu(stats::times(p99, headroom)),
    );

    let mut over: Vec<OverPod> = pods
        .iter()
        .filter_map(|(key, peaks)| {
            let ratio =
                |peak: Option<i64>, limit: Option<Quantity>, unit: fn(&Quantity) -> i64| match (
                    peak,
                    limit.map(|l| unit(&l)),
                ) {
                    (Some(peak), Some(limit)) if limit > 0 && peak > limit => {
                        Some(peak as f64 / limit as f64)
                    }
                    _ => None,
                };
            let memory_ratio = ratio(peaks.memory, bounds.memory_limit, Quantity::value_ceil);
            let cpu_ratio = ratio(peaks.cpu, bounds.cpu_limit, Quantity::milli_value_ceil);
            let worst = memory_ratio.into_iter().chain(cpu_ratio).reduce(f64::max)?;
            Some(OverPod {
                namespace: key.namespace.clone(),
                pod: key.pod.clone(),
                project: usage.pods.get(*key).and_then(|i| i.project.clone()),
                memory_peak: peaks.memory.map(memory_quantity),
                cpu_peak: peaks.cpu.map(Quantity::from_milli),
                ratio: worst,
            })
        })
        .collect();
    over.sort_by(|a, b| {
        b.ratio
            .total_cmp(&a.ratio)
            .then_with(|| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)))
    });
    Entry {
        class: class.to_string(),
        container: role_name(role),
        jobs: pods.len(),
        memory,
        cpu,
        over,
        no_data,
        in_policy,
    }
}

/// Percentiles, pods over `limit` and the suggestion, for peaks in one unit (bytes or
/// millicores): `quantity` makes a peak a quantity, `limit_units` is the limit in the
/// same unit, `suggest` turns p99 into a readable suggestion before the cap.
fn figures(
    peaks: &[i64],
    limit: Option<Quantity>,
    ceiling: Option<Quantity>,
    limit_units: Option<i64>,
    quantity: impl Fn(i64) -> Quantity,
    suggest: impl Fn(i64) -> Quantity,
) -> Figures {
    let mut sorted = peaks.to_vec();
    sorted.sort_unstable();
    let at = |p: u32| stats::nearest_rank(&sorted, p).map(&quantity);
    let over_limit = limit_units.map_or(0, |l| sorted.iter().filter(|&&v| v > l).count());
    let (suggested, capped) = match stats::nearest_rank(&sorted, 99) {
        None => (None, false),
        Some(p99) => {
            let wanted = suggest(p99);
            match ceiling {
                Some(ceiling) if wanted > ceiling => (Some(ceiling), true),
                _ => (Some(wanted), false),
            }
        }
    };
    Figures {
        limit,
        p50: at(50),
        p95: at(95),
        p99: at(99),
        max: sorted.last().copied().map(&quantity),
        over_limit,
        oom_killed: None,
        suggested,
        capped,
    }
}

impl Report {
    /// Whether any class has a pod over one of its limits.
    pub fn any_over_limit(&self) -> bool {
        self.classes
            .iter()
            .any(|e| e.memory.over_limit > 0 || e.cpu.over_limit > 0)
    }
}

#[cfg(test)]
mod tests;
