//! The report: a plain function of the peaks [`super::fetch`] kept and the policy's
//! limits and ceilings, by the definitions in the module docs of [`super`].

use std::collections::{BTreeMap, BTreeSet};

use ci_pod_webhook_core::policy::{Limit, Policy, ResourceName, Role, RunnerClass};
use ci_pod_webhook_core::quantity::{Format, Quantity};

use super::stats;
use super::{ContainerKey, Entry, Figures, OverPod, PodKey, ROLES, Report, Source, Usage};
use super::{role_name, role_of};

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
