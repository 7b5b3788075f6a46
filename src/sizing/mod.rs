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
mod report;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};

use ci_pod_webhook_core::policy::Role;
use ci_pod_webhook_core::quantity::Quantity;
use serde::Serialize;

pub use fetch::{FetchError, Progress, Window, fetch};
pub use report::report;

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

#[cfg(test)]
mod tests;
