//! Per job pod evidence for Prometheus, fed by the live audit's pod watch
//! ([`super::pods`]): the same events, seen before the audit's store takes them.
//!
//! - `ci_pod_webhook_job_pod_info{namespace, pod, class, mode, project} 1` for every job
//!   pod the watch sees, in every namespace: one that has not opted in gets the class
//!   the policy *would* give and `mode="off"`; `warn` and `enabled` otherwise. So usage
//!   series (cAdvisor's) can be joined with classes in PromQL, and evidence gathers
//!   before a namespace opts in (`sizing`, docs/sizing.md). The series goes when the pod
//!   does. One series per live job pod: the only metric with pod names, on purpose.
//! - `ci_pod_webhook_job_container_terminations_total{class, role, reason}`: container
//!   terminations of job pods (`OOMKilled`, `Error`, `Completed`, …) from
//!   `status.containerStatuses[]` and `initContainerStatuses[]`, `state.terminated` and
//!   `lastState.terminated`.
//!
//! Each termination is counted once per process (by its container id, or name and
//! finish time), and a process counts only terminations that finished after it
//! started: the pods a restarted webhook lists again show the terminations its
//! predecessor counted, and counting them again would show a burst of kills that did
//! not happen. Nothing is persisted. What this gives up: a termination that finished
//! while no replica was running is never counted, nor one its predecessor saw finish
//! but never exported. Two replicas each count every termination, so queries take the
//! `max` across replicas, not the sum (docs/sizing.md).

use std::collections::{BTreeMap, HashMap, HashSet};

use ci_pod_webhook_core::policy::{ContainerList, Policy, Role};
use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::access::Access;
use super::namespace_mirror::Reader;
use super::watcher::{Applied, Store, Tick};
use crate::metrics::{JobPodInfoLabels, TerminationLabels};

/// The pod label GitLab Runner puts the project id in.
pub const PROJECT_LABEL: &str = "project.runner.gitlab.com/id";

/// Termination reasons kept as they are; any other becomes `Other`, so a runtime that
/// invents reasons cannot grow the series without bound.
pub const REASONS: [&str; 6] = [
    "Completed",
    "Error",
    "OOMKilled",
    "ContainerCannotRun",
    "StartError",
    "DeadlineExceeded",
];

/// Whether the policy applies in a pod's namespace, as the info series says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Not opted in: the class is what the policy would give.
    Off,
    Warn,
    Enabled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Enabled => "enabled",
        }
    }
}

/// A job pod's class and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub class: String,
    pub mode: Mode,
}

/// Classifies one pod: (namespace, its labels, the pod's JSON) → `None` when it is not
/// a job pod. Built by the server around the policy in force.
pub type Classify =
    Box<dyn Fn(&str, &BTreeMap<String, String>, &str) -> Option<Classified> + Send + 'static>;

/// The class `policy` gives (or would give) a stored pod, as `audit` judges it, and the
/// mode of its namespace.
pub fn classify(
    policy: &Policy,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    pod: &str,
) -> Option<Classified> {
    let judgement = super::judge(policy, namespace, labels, pod)
        .ok()
        .flatten()?;
    let mode = if !super::audited(policy, labels) {
        Mode::Off
    } else if judgement.mode == "warn" {
        Mode::Warn
    } else {
        Mode::Enabled
    };
    Some(Classified {
        class: judgement.class,
        mode,
    })
}

/// What the server gives the pod watch for these series.
pub struct JobPodSeries {
    pub classify: Classify,
    pub info: Family<JobPodInfoLabels, Gauge>,
    pub terminations: Family<TerminationLabels, Counter>,
    /// Terminations that finished before this are not counted (the process's start).
    pub since: OffsetDateTime,
}

/// What is kept of one job pod: its info series and the terminations counted.
#[derive(Debug, Default)]
struct Seen {
    info: Option<JobPodInfoLabels>,
    counted: HashSet<String>,
}

/// The watch's events, observed.
pub(super) struct Observer {
    series: JobPodSeries,
    namespaces: Reader,
    pods: HashMap<String, Seen>,
    /// Keys listed since the last `Init`, between `Init` and `InitDone`.
    listing: Option<HashSet<String>>,
    /// Job pods whose namespace the mirror did not have yet: key → the pod's JSON.
    waiting: HashMap<String, String>,
}

/// A bound on [`Observer::waiting`]: whole pods, in practice a handful at start-up.
const MAX_WAITING: usize = 256;

impl Observer {
    pub(super) fn new(mut series: JobPodSeries, namespaces: Reader) -> Self {
        // Kubelets write finish times to the second: a container that ended in the
        // second the process started may have ended after it, and is counted.
        series.since = series.since.replace_nanosecond(0).unwrap_or(series.since);
        Observer {
            series,
            namespaces,
            pods: HashMap::new(),
            listing: None,
            waiting: HashMap::new(),
        }
    }

    pub(super) fn observe(&mut self, event: &Event<DynamicObject>) {
        match event {
            Event::Init => self.listing = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(key) = self.seen(pod)
                    && let Some(listing) = &mut self.listing
                {
                    listing.insert(key);
                }
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.forget(&key);
                }
            }
            Event::Apply(pod) => {
                self.seen(pod);
            }
            Event::Delete(pod) => {
                // Its last status may hold a termination no earlier event showed.
                if let Some(key) = self.seen(pod) {
                    self.forget(&key);
                }
            }
        }
    }

    /// Updates a pod's info series and counts its new terminations; its key when it is
    /// a job pod.
    fn seen(&mut self, pod: &DynamicObject) -> Option<String> {
        let (namespace, name) = (
            pod.metadata.namespace.as_ref()?,
            pod.metadata.name.as_ref()?,
        );
        let key = format!("{namespace}/{name}");
        let json = serde_json::to_string(pod).ok()?;
        let labels = match self.namespaces.get(namespace) {
            Some(labels) => {
                self.waiting.remove(&key);
                labels
            }
            // Not in the namespace mirror yet (its watch is behind this one): the mode
            // reads `off` until [`Self::tick`] sees the namespace.
            None => {
                if self.waiting.len() < MAX_WAITING || self.waiting.contains_key(&key) {
                    self.waiting.insert(key.clone(), json.clone());
                }
                Default::default()
            }
        };
        let Some(classified) = (self.series.classify)(namespace, &labels, &json) else {
            self.forget(&key);
            return None;
        };
        let info = JobPodInfoLabels {
            namespace: namespace.clone(),
            pod: name.clone(),
            class: classified.class.clone(),
            mode: classified.mode.as_str(),
            project: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PROJECT_LABEL))
                .cloned()
                .unwrap_or_default(),
        };
        let seen = self.pods.entry(key.clone()).or_default();
        if seen.info.as_ref() != Some(&info) {
            if let Some(old) = seen.info.take() {
                self.series.info.remove(&old);
            }
            self.series.info.get_or_create(&info).set(1);
            seen.info = Some(info);
        }
        for termination in terminations(&pod.data) {
            if termination.finished < self.series.since || !seen.counted.insert(termination.id) {
                continue;
            }
            self.series
                .terminations
                .get_or_create(&TerminationLabels {
                    class: classified.class.clone(),
                    role: role_name(termination.role),
                    reason: reason(&termination.reason),
                })
                .inc();
        }
        Some(key)
    }

    /// Classifies again the pods whose namespace has reached the mirror since.
    pub(super) fn tick(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let known: Vec<String> = self
            .waiting
            .keys()
            .filter(|key| {
                key.split_once('/')
                    .is_some_and(|(namespace, _)| self.namespaces.get(namespace).is_some())
            })
            .cloned()
            .collect();
        for key in known {
            if let Some(json) = self.waiting.remove(&key)
                && let Ok(pod) = serde_json::from_str::<DynamicObject>(&json)
            {
                self.seen(&pod);
            }
        }
    }

    fn forget(&mut self, key: &str) {
        self.waiting.remove(key);
        if let Some(seen) = self.pods.remove(key)
            && let Some(info) = seen.info
        {
            self.series.info.remove(&info);
        }
    }
}

/// The live audit's store with the observer in front: every event is observed, then
/// stored.
pub(super) struct Observed<S> {
    pub(super) store: S,
    pub(super) observer: Option<Observer>,
}

impl<S: Store<DynamicObject>> Store<DynamicObject> for Observed<S> {
    fn apply(&mut self, event: Event<DynamicObject>) -> Applied {
        if let Some(observer) = &mut self.observer {
            observer.observe(&event);
        }
        self.store.apply(event)
    }

    fn held(&self) -> usize {
        self.store.held()
    }

    fn before_first_list(&self) -> &'static str {
        self.store.before_first_list()
    }

    fn access(&self) -> Access {
        self.store.access()
    }

    fn tick(&mut self) -> Tick {
        if let Some(observer) = &mut self.observer {
            observer.tick();
        }
        self.store.tick()
    }
}

/// One container termination in a pod's status.
#[derive(Debug, PartialEq, Eq)]
struct Termination {
    /// Tells it from the container's other terminations: its container id, else its
    /// name and finish time.
    id: String,
    role: Role,
    reason: String,
    finished: OffsetDateTime,
}

/// Every termination a pod's status shows: each container's current state and the one
/// before it.
fn terminations(pod: &Value) -> Vec<Termination> {
    let mut found = Vec::new();
    let lists = [
        ("containerStatuses", ContainerList::Containers),
        ("initContainerStatuses", ContainerList::InitContainers),
    ];
    for (field, list) in lists {
        for status in pod["status"][field].as_array().into_iter().flatten() {
            let name = status["name"].as_str().unwrap_or_default();
            for state in ["state", "lastState"] {
                let terminated = &status[state]["terminated"];
                if !terminated.is_object() {
                    continue;
                }
                let Some(finished) = terminated["finishedAt"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                else {
                    continue;
                };
                let id = match terminated["containerID"].as_str() {
                    Some(id) if !id.is_empty() => id.to_string(),
                    _ => format!("{name}@{}", finished.unix_timestamp()),
                };
                found.push(Termination {
                    id,
                    role: Role::of(list, name),
                    reason: terminated["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    finished,
                });
            }
        }
    }
    found
}

fn reason(reason: &str) -> &'static str {
    REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("Other")
}

/// The role's name in the policy (and in `sizing`).
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Build => "build",
        Role::Helper => "helper",
        Role::Service => "services",
    }
}

#[cfg(test)]
mod tests;
