//! The webhook's Prometheus metrics: one value, registered on a registry passed in.
//!
//! Every series a review touches is looked up once — at start-up, or when a policy is
//! loaded — and kept as a handle, so recording a review is a few atomic adds: no lock,
//! no allocation (and the latency histogram is our own, made of atomics).
//!
//! Labels are bounded: class names come from the policy, outcomes, overrides, results and
//! refusal reasons are fixed sets. Pod names, namespaces and client addresses never
//! become labels.

mod histogram;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use ci_pod_webhook_core::answer::{Answer, Outcome};
use ci_pod_webhook_core::mutate::{OverrideKind, OverrideResult, RefusedChange};
use ci_pod_webhook_core::policy::{Limit, Policy, ResourceName, Role};
pub use histogram::LatencyHistogram;

/// Why a connection was refused or closed early: the `reason` label of
/// `connections_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `--max-connections-per-address` connections.
    AddressConnections,
    /// Its address already has `--max-handshakes-per-address` handshakes in progress.
    AddressHandshakes,
    /// With `--trusted-peers`: from an untrusted address while `--max-connections` are
    /// open (without trusted peers the server stops accepting instead).
    Connections,
    /// With `--trusted-peers`: from an untrusted address while untrusted addresses
    /// together have `--max-untrusted-handshakes` handshakes in progress.
    UntrustedHandshakes,
    /// With `--trusted-peers`: an idle connection from an untrusted address, closed to
    /// make room for a trusted peer's at `--max-connections`.
    EvictedIdle,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::AddressConnections,
        Refused::AddressHandshakes,
        Refused::Connections,
        Refused::UntrustedHandshakes,
        Refused::EvictedIdle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::AddressConnections => "address_connections",
            Refused::AddressHandshakes => "address_handshakes",
            Refused::Connections => "connections",
            Refused::UntrustedHandshakes => "untrusted_handshakes",
            Refused::EvictedIdle => "evicted_idle",
        }
    }

    /// The flag that sets the bound, for log lines.
    pub fn flag(self) -> &'static str {
        match self {
            Refused::AddressConnections => "--max-connections-per-address",
            Refused::AddressHandshakes => "--max-handshakes-per-address",
            Refused::Connections | Refused::EvictedIdle => "--max-connections",
            Refused::UntrustedHandshakes => "--max-untrusted-handshakes",
        }
    }
}

/// The registry prefix: every metric is `ci_pod_webhook_*`.
pub const PREFIX: &str = "ci_pod_webhook";
/// The class label of reviews that have no class (skipped, invalid).
pub const NO_CLASS: &str = "none";

const OVERRIDE_RESULTS: [OverrideResult; 3] = [
    OverrideResult::Applied,
    OverrideResult::Clamped,
    OverrideResult::Rejected,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OverrideLabels {
    r#override: &'static str,
    result: &'static str,
}

/// `job_pods{class,verdict}`: job pods in opted-in namespaces now, by verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobPodLabels {
    pub class: String,
    pub verdict: &'static str,
}

/// `job_pod_info{namespace,pod,class,mode,project}`: one series per live job pod, so
/// usage series can be joined with classes (`cluster::job_pod_series`). The one metric
/// with pod names: its cardinality is the number of job pods alive (docs/sizing.md).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobPodInfoLabels {
    pub namespace: String,
    pub pod: String,
    pub class: String,
    pub mode: &'static str,
    pub project: String,
}

/// `job_container_terminations_total{class,role,reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TerminationLabels {
    pub class: String,
    pub role: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLimitLabels {
    class: String,
    role: &'static str,
    resource: &'static str,
    unit: &'static str,
}

/// A container role's name in the policy.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Build => "build",
        Role::Helper => "helper",
        Role::Service => "services",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    change: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// All of the webhook's metrics. Cheap to clone: every field is a shared handle.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    unclassified: ClassSeries,
    /// `request_duration_seconds`, indexed by [`Outcome`].
    durations: [LatencyHistogram; Outcome::ALL.len()],
    /// `overrides_total`, indexed by [`OverrideKind`] then [`OverrideResult`].
    overrides: [[Counter; OVERRIDE_RESULTS.len()]; OverrideKind::ALL.len()],
    /// `refused_changes_total`, indexed by [`RefusedChange`].
    refused_changes: [Counter; RefusedChange::ALL.len()],
    pub policy_reloads: ReloadCounters,
    pub certificate_reloads: ReloadCounters,
    /// Reviews being handled right now.
    pub in_flight: Gauge,
    /// Webhook connections open right now (TLS handshakes included).
    pub open_connections: Gauge,
    /// Of those, connections from `--trusted-peers`.
    pub trusted_connections: Gauge,
    /// Request-body bytes held by requests right now (the body budget in use).
    pub buffered_request_bytes: Gauge,
    /// Webhook connections accepted since start.
    pub connections: Counter,
    pub tls_handshake_failures: Counter,
    /// `connections_refused_total`, indexed by [`Refused`].
    refused: [Counter; Refused::ALL.len()],
    /// Panics caught while handling a request: each one is a bug.
    pub panics: Counter,
    /// Job pods watched in opted-in namespaces, by class and verdict (`cluster::pods`).
    pub job_pods: Family<JobPodLabels, Gauge>,
    /// Every job pod's class and mode, one series per pod (`cluster::job_pod_series`).
    pub job_pod_info: Family<JobPodInfoLabels, Gauge>,
    /// Container terminations of job pods (`cluster::job_pod_series`).
    pub job_container_terminations: Family<TerminationLabels, Counter>,
    /// `policy_info{hash}`: the policy in force, so rules can see it change.
    policy_info: Family<HashLabels, Gauge>,
    /// `class_limit{class,role,resource,unit}`: the limits of the policy in force, for
    /// dashboards that set usage against them.
    class_limits: Family<ClassLimitLabels, Gauge<f64, AtomicU64>>,
}

/// `requests_total` series of one class, indexed by [`Outcome`].
#[derive(Clone, Debug)]
pub struct ClassSeries([Counter; Outcome::ALL.len()]);

/// The `requests_total` series of every class of one policy, looked up when it is loaded.
#[derive(Clone, Debug)]
pub struct PolicySeries {
    classes: Vec<(String, ClassSeries)>,
}

/// `…_reloads_total{result}`.
#[derive(Clone, Debug)]
pub struct ReloadCounters {
    pub success: Counter,
    pub failure: Counter,
}

impl Metrics {
    /// Registers every metric on `registry` (use [`new_registry`] for the prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "AdmissionReviews answered, by runner class and outcome",
            requests.clone(),
        );
        let durations = Family::<OutcomeLabels, LatencyHistogram>::default();
        registry.register_with_unit(
            "request_duration",
            "Time from the request's arrival to its answer, by outcome",
            Unit::Seconds,
            durations.clone(),
        );
        let overrides = Family::<OverrideLabels, Counter>::default();
        registry.register(
            "overrides",
            "Override annotations seen, by annotation and result",
            overrides.clone(),
        );
        let refused_changes = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "refused_changes",
            "Policy changes the API server would refuse (Pod Security, missing RuntimeClass), by change and what the webhook did instead",
            refused_changes.clone(),
        );
        let job_pods = Family::<JobPodLabels, Gauge>::default();
        registry.register(
            "job_pods",
            "Job pods in opted-in namespaces now, by class and verdict (ok, drift, unpolicied, would-mutate, would-deny) under the policy in force; a pod counts once under each of its verdicts",
            job_pods.clone(),
        );
        let policy_reloads = ReloadCounters::register(
            registry,
            "policy_reloads",
            "Policy file changes applied (success) or refused (failure)",
        );
        let certificate_reloads = ReloadCounters::register(
            registry,
            "certificate_reloads",
            "Serving certificate (and --client-ca) changes applied (success) or refused (failure)",
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Webhook connections closed as soon as accepted, by reason: their source address \
             was at --max-connections-per-address (address_connections) or \
             --max-handshakes-per-address (address_handshakes); with --trusted-peers, an \
             untrusted address's while --max-connections were open (connections) or \
             untrusted addresses had --max-untrusted-handshakes in progress \
             (untrusted_handshakes); and idle connections from untrusted addresses closed \
             to make room for a trusted peer (evicted_idle)",
            refused.clone(),
        );
        let job_pod_info = Family::<JobPodInfoLabels, Gauge>::default();
        registry.register(
            "job_pod_info",
            "1 for each job pod the webhook's pod watch sees, in every namespace: its class (the one the policy would give where the namespace has not opted in), mode (off, warn, enabled) and GitLab project; for joins with usage series",
            job_pod_info.clone(),
        );
        let job_container_terminations = Family::<TerminationLabels, Counter>::default();
        registry.register(
            "job_container_terminations",
            "Container terminations of job pods that finished since this process started, by class, container role and reason (OOMKilled, Error, Completed, ...)",
            job_container_terminations.clone(),
        );
        let class_limits = Family::<ClassLimitLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "class_limit",
            "The limit the policy in force gives a container role of a class, in cores (cpu) or bytes (memory); absent when it sets none",
            class_limits.clone(),
        );
        let policy_info = Family::<HashLabels, Gauge>::default();
        registry.register(
            "policy_info",
            "1 for the policy in force, by its hash (the <prefix>/policy annotation's value); a new hash is a policy change",
            policy_info.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let metrics = Metrics {
            unclassified: ClassSeries::lookup(&requests, NO_CLASS),
            durations: Outcome::ALL.map(|outcome| {
                durations.get_or_create_owned(&OutcomeLabels {
                    outcome: outcome.as_str(),
                })
            }),
            overrides: OverrideKind::ALL.map(|kind| {
                OVERRIDE_RESULTS.map(|result| {
                    overrides.get_or_create_owned(&OverrideLabels {
                        r#override: kind.as_str(),
                        result: result.as_str(),
                    })
                })
            }),
            refused_changes: RefusedChange::ALL.map(|change| {
                refused_changes.get_or_create_owned(&RefusedLabels {
                    change: change.as_str(),
                    action: change.action(),
                })
            }),
            requests,
            policy_reloads,
            certificate_reloads,
            in_flight: Gauge::default(),
            open_connections: Gauge::default(),
            trusted_connections: Gauge::default(),
            buffered_request_bytes: Gauge::default(),
            connections: Counter::default(),
            tls_handshake_failures: Counter::default(),
            refused: Refused::ALL.map(|reason| {
                refused.get_or_create_owned(&ReasonLabels {
                    reason: reason.as_str(),
                })
            }),
            panics: Counter::default(),
            job_pods,
            job_pod_info,
            job_container_terminations,
            policy_info,
            class_limits,
        };
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            metrics.in_flight.clone(),
        );
        registry.register(
            "open_connections",
            "Open webhook connections",
            metrics.open_connections.clone(),
        );
        registry.register(
            "trusted_connections",
            "Open webhook connections from --trusted-peers (the API server's addresses)",
            metrics.trusted_connections.clone(),
        );
        registry.register_with_unit(
            "buffered_request",
            "Request-body bytes held in memory by requests being read or handled",
            Unit::Bytes,
            metrics.buffered_request_bytes.clone(),
        );
        registry.register(
            "connections",
            "Webhook connections accepted",
            metrics.connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Webhook connections closed before or during the TLS handshake",
            metrics.tls_handshake_failures.clone(),
        );
        registry.register(
            "panics",
            "Panics caught while handling a request (bugs)",
            metrics.panics.clone(),
        );
        metrics
    }

    /// Looks up the `requests_total` series of `policy`'s classes (and of its GPU
    /// workloads, which count as class `gpu-workloads`), so that reviews
    /// under this policy record without a lookup; and makes it the one `policy_info`
    /// names, as the policy about to be in force.
    pub fn policy_series(&self, policy: &Policy) -> PolicySeries {
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&HashLabels {
                hash: policy.hash.clone(),
            })
            .set(1);
        self.class_limits.clear();
        for class in &policy.classes {
            for role in [Role::Build, Role::Helper, Role::Service] {
                for (resource, unit) in
                    [(ResourceName::Cpu, "core"), (ResourceName::Memory, "byte")]
                {
                    if let Some(Limit::Set(limit)) = class.resources(role).limits.get(&resource) {
                        self.class_limits
                            .get_or_create(&ClassLimitLabels {
                                class: class.name.clone(),
                                role: role_name(role),
                                resource: resource.as_str(),
                                unit,
                            })
                            .set(limit.nanos() as f64 / 1e9);
                    }
                }
            }
        }
        PolicySeries {
            classes: policy
                .classes
                .iter()
                .chain(policy.gpu_workloads.as_ref().map(|g| &g.placement))
                .map(|c| (c.name.clone(), ClassSeries::lookup(&self.requests, &c.name)))
                .collect(),
        }
    }

    /// Records one answered review.
    pub fn record_review(&self, series: &PolicySeries, answer: &Answer<'_>, elapsed: Duration) {
        let class = match answer.class() {
            None => &self.unclassified,
            Some(name) => match series.classes.iter().find(|(n, _)| n == name) {
                Some((_, counters)) => counters,
                // Cannot happen: the class came from the same policy. Stay correct anyway.
                None => {
                    ClassSeries::lookup(&self.requests, name).0[answer.outcome as usize].inc();
                    self.durations[answer.outcome as usize].observe(elapsed);
                    return;
                }
            },
        };
        class.0[answer.outcome as usize].inc();
        self.durations[answer.outcome as usize].observe(elapsed);
        for (kind, result) in answer.overrides() {
            self.overrides[kind as usize][result as usize].inc();
        }
        for change in answer.refused() {
            self.refused_changes[*change as usize].inc();
        }
    }

    /// `connections_refused_total{reason}`.
    pub fn refused(&self, reason: Refused) -> &Counter {
        &self.refused[reason as usize]
    }

    /// Records one unreadable request (HTTP 4xx).
    pub fn record_invalid(&self, elapsed: Duration) {
        let invalid = Outcome::Invalid as usize;
        self.unclassified.0[invalid].inc();
        self.durations[invalid].observe(elapsed);
    }
}

/// Adds one to a gauge for as long as it lives (requests in flight, open connections).
pub struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A registry whose metrics are all named `ci_pod_webhook_*`.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

impl ClassSeries {
    fn lookup(family: &Family<RequestLabels, Counter>, class: &str) -> Self {
        ClassSeries(Outcome::ALL.map(|outcome| {
            family.get_or_create_owned(&RequestLabels {
                class: class.to_string(),
                outcome: outcome.as_str(),
            })
        }))
    }
}

impl ReloadCounters {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<ResultLabels, Counter>::default();
        registry.register(name, help, family.clone());
        let get = |result| family.get_or_create_owned(&ResultLabels { result });
        ReloadCounters {
            success: get("success"),
            failure: get("failure"),
        }
    }
}

#[cfg(test)]
mod tests;
