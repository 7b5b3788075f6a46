//! The live audit: job pods watched in opted-in namespaces, each judged as `audit`
//! judges it, counted in `ci_pod_webhook_job_pods{class,verdict}` (a pod once under each
//! of its verdicts). [`Judge`] is the only way in: the namespaces it looks at are
//! [`super::audited`]'s and each pod's verdicts are [`super::judge`]'s, by the policy in
//! force, exactly as `audit` chooses and judges them.
//!
//! The watch asks only for pods labelled `pod` (GitLab Runner puts that label on every
//! job pod), so other workloads never cross the wire. Pods arrive whole, one at a time
//! (the list in small pages: [`LIST_PAGE_SIZE`]), and only a small record is kept of
//! each: its key, class and verdicts, so memory grows by under a kilobyte per job pod,
//! not by the pods' size. Since the pods themselves are not kept, every pod is judged
//! again by listing them again: after a policy reload (the [`super::watcher::Relist`]
//! signal), and when a namespace that opts in before or after a change of its labels
//! changes them (it opts in, changes mode, opts out, is pinned to a class), seen in the
//! namespace mirror's log of changes at the next [`TICK`](super::watcher::TICK). A
//! namespace that goes away takes its pods' records with it. After a watch restart
//! kube's watcher resumes or relists, and the namespace mirror compares its relist
//! with what it replaces, so changes made during an outage are not lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::job_pod_series::{JobPodSeries, Observed, Observer};
use super::namespace_mirror::{Changes, Reader};
use super::verdict::{Judgement, Verdict};
use super::watcher::{Applied, Relist, Store, Tick, Watcher};
use crate::metrics::JobPodLabels;
use ci_pod_webhook_core::policy::Policy;

/// The label GitLab Runner puts on every job pod.
pub const JOB_POD_SELECTOR: &str = "pod";

/// Pods per list page. A page is held whole while it is read, and kube reads a list
/// through serde's buffered `flatten` (`ObjectList`, then `DynamicObject`): about 1 MiB
/// of transient memory per 20 KB job pod. kube's default of 500 took the server to
/// 593 MiB on its first list (1,500 job pods, BENCHMARKS.md); 25 bounds it to a few
/// tens of MiB, for one list request per 25 job pods at start-up and policy reloads.
const LIST_PAGE_SIZE: u32 = 25;

/// What holds the policy in force (the server's, reloaded as its file changes).
pub trait InForce: Send + Sync + 'static {
    fn policy(&self) -> &Policy;
}

impl InForce for Policy {
    fn policy(&self) -> &Policy {
        self
    }
}

/// How the watch judges: [`super::audited`] and [`super::judge`], by the policy
/// `current` returns at the time.
pub struct Judge {
    current: Box<dyn Fn() -> Arc<dyn InForce> + Send>,
}

impl Judge {
    pub fn new(current: impl Fn() -> Arc<dyn InForce> + Send + 'static) -> Self {
        Judge {
            current: Box::new(current),
        }
    }

    /// Whether pods in a namespace with these labels are judged.
    fn audited(&self, labels: &BTreeMap<String, String>) -> bool {
        super::audited((self.current)().policy(), labels)
    }

    /// One pod: `None` when it is not a job pod in an audited namespace.
    fn pod(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        pod: &str,
    ) -> Option<Judgement> {
        let current = (self.current)();
        if !super::audited(current.policy(), labels) {
            return None;
        }
        super::judge(current.policy(), namespace, labels, pod)
            .map_err(|error| tracing::debug!(namespace, %error, "cannot judge a job pod"))
            .ok()
            .flatten()
    }
}

/// A pod's verdicts, one bit each (in the order of [`Verdict::ALL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdicts(u8);

impl Verdicts {
    fn of(verdicts: &[Verdict]) -> Self {
        Verdicts(verdicts.iter().fold(0, |bits, v| bits | bit(*v)))
    }

    fn iter(self) -> impl Iterator<Item = Verdict> {
        Verdict::ALL
            .into_iter()
            .filter(move |v| self.0 & bit(*v) != 0)
    }
}

fn bit(verdict: Verdict) -> u8 {
    let index = Verdict::ALL
        .iter()
        .position(|v| *v == verdict)
        .unwrap_or_default();
    1 << index
}

/// What is kept of one job pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    class: Arc<str>,
    verdicts: Verdicts,
}

/// Job pods whose namespace the mirror has not seen yet, kept (as JSON) until it has.
/// A pod created right after its namespace can arrive before the namespace's own watch
/// event; judged at once it would be left out until it next changed. A bound, since
/// these are whole pods: in practice a handful for a few milliseconds.
const MAX_WAITING: usize = 256;

/// What judging one pod gave.
enum Judged {
    /// A job pod in an opted-in namespace: its key and record.
    Record(String, Record),
    /// Not a job pod, or not in an opted-in namespace: nothing to keep.
    Nothing,
    /// Its namespace is not in the mirror yet: its key, namespace and JSON.
    Waiting(String, String, String),
}

/// The per-pod records and the gauge they feed.
pub(super) struct PodVerdicts {
    namespaces: Reader,
    judge: Judge,
    records: HashMap<String, Record>,
    /// Pods seen since the last `Init`, swapped in on `InitDone`.
    relist: HashMap<String, Record>,
    /// Between `Init` and `InitDone`.
    listing: bool,
    /// Pods waiting for their namespace (see [`MAX_WAITING`]): key → (namespace, JSON).
    waiting: HashMap<String, (String, String)>,
    counts: HashMap<(Arc<str>, Verdict), i64>,
    gauge: Family<JobPodLabels, Gauge>,
}

impl Cluster {
    /// Starts the job-pod watch, when there is a cluster; it stops with the others
    /// ([`Cluster::stop`]). `relist` asks for every pod to be judged again. It does not
    /// hold up readiness: reviews do not depend on it.
    pub fn watch_job_pods(
        &self,
        judge: Judge,
        gauge: Family<JobPodLabels, Gauge>,
        relist: Relist,
    ) -> Option<Watcher> {
        let (client, stop, namespaces) = self.parts()?;
        let series = self.take_job_pod_series();
        Some(spawn(
            client, stop, namespaces, judge, gauge, relist, series,
        ))
    }
}

fn spawn(
    client: kube::Client,
    stop: CancellationToken,
    namespaces: Reader,
    judge: Judge,
    gauge: Family<JobPodLabels, Gauge>,
    relist: Relist,
    series: Option<JobPodSeries>,
) -> Watcher {
    // Pods as the API server sends them, not through a typed Pod that would drop
    // fields it does not know.
    let api = Api::<DynamicObject>::all_with(client, &ApiResource::erase::<Pod>(&()));
    let config = watcher::Config::default()
        .labels(JOB_POD_SELECTOR)
        .page_size(LIST_PAGE_SIZE);
    // The per-pod series see every event first (`job_pod_series`).
    let observer = series.map(|series| Observer::new(series, namespaces.clone()));
    let store = Observed {
        store: PodVerdicts::new(namespaces, judge, gauge),
        observer,
    };
    Watcher::spawn("job pod", api, config, store, Some(relist), stop)
}

impl PodVerdicts {
    pub(super) fn new(
        namespaces: Reader,
        judge: Judge,
        gauge: Family<JobPodLabels, Gauge>,
    ) -> Self {
        Self {
            namespaces,
            judge,
            records: HashMap::new(),
            relist: HashMap::new(),
            listing: false,
            waiting: HashMap::new(),
            counts: HashMap::new(),
            gauge,
        }
    }

    fn judge(&self, pod: &DynamicObject) -> Judged {
        let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return Judged::Nothing;
        };
        let Ok(json) = serde_json::to_string(pod) else {
            return Judged::Nothing;
        };
        match self.judge_json(namespace, &json) {
            Some(record) => Judged::Record(key(namespace, name), record),
            None if self.namespaces.get(namespace).is_none() => {
                Judged::Waiting(key(namespace, name), namespace.clone(), json)
            }
            None => Judged::Nothing,
        }
    }

    /// `None`: not a job pod in an opted-in namespace, or the namespace is unknown.
    fn judge_json(&self, namespace: &str, json: &str) -> Option<Record> {
        let labels = self.namespaces.get(namespace)?;
        let judgement = self.judge.pod(namespace, &labels, json)?;
        Some(Record {
            class: judgement.class.into(),
            verdicts: Verdicts::of(&judgement.verdicts),
        })
    }

    /// Keeps what judging gave: a record (in the list being read, or counted at once),
    /// or a pod waiting for its namespace.
    fn keep(&mut self, judged: Judged) {
        match judged {
            Judged::Record(key, record) if self.listing => {
                self.relist.insert(key, record);
            }
            Judged::Record(key, record) => {
                self.count(&record, 1);
                self.records.insert(key, record);
            }
            Judged::Nothing => {}
            Judged::Waiting(key, namespace, json) => {
                if self.waiting.len() < MAX_WAITING || self.waiting.contains_key(&key) {
                    self.waiting.insert(key, (namespace, json));
                } else {
                    tracing::debug!(
                        pod = key,
                        "too many job pods wait for their namespace; left for the next list"
                    );
                }
            }
        }
    }

    fn count(&mut self, record: &Record, by: i64) {
        for verdict in record.verdicts.iter() {
            let slot = (record.class.clone(), verdict);
            let count = self.counts.entry(slot).or_default();
            *count += by;
            self.gauge
                .get_or_create(&JobPodLabels {
                    class: record.class.to_string(),
                    verdict: verdict.as_str(),
                })
                .set(*count);
        }
    }

    /// A namespace went away, and its pods with it.
    fn forget_namespace(&mut self, namespace: &str) {
        let prefix = format!("{namespace}/");
        let gone: Vec<String> = self
            .records
            .keys()
            .chain(self.waiting.keys())
            .filter(|key| key.starts_with(&prefix))
            .cloned()
            .collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// Namespaces whose labels changed since the last look: judging every pod again
    /// (a relist) when one was or is now audited.
    fn namespaces_changed(&mut self) -> Tick {
        let changes = match self.namespaces.take_changes() {
            Changes::TooMany => return Tick::Relist,
            Changes::Some(changes) => changes,
        };
        let mut relist = false;
        for change in changes {
            let was = self.judge.audited(&change.before);
            match change.now {
                None if was => self.forget_namespace(&change.name),
                None => {}
                Some(now) => relist |= was || self.judge.audited(&now),
            }
        }
        if relist {
            tracing::debug!(
                "a namespace opted in, out or changed mode: judging every job pod again"
            );
            Tick::Relist
        } else {
            Tick::Idle
        }
    }

    fn forget(&mut self, key: &str) {
        self.waiting.remove(key);
        if let Some(old) = self.records.remove(key) {
            self.count(&old, -1);
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Store<DynamicObject> for PodVerdicts {
    fn apply(&mut self, event: Event<DynamicObject>) -> Applied {
        match event {
            Event::Init => {
                self.relist = HashMap::new();
                self.waiting = HashMap::new();
                self.listing = true;
            }
            Event::InitApply(pod) => {
                let judged = self.judge(&pod);
                self.keep(judged);
            }
            Event::InitDone => {
                self.listing = false;
                self.records = std::mem::take(&mut self.relist);
                let mut counts: HashMap<(Arc<str>, Verdict), i64> = HashMap::new();
                for record in self.records.values() {
                    for verdict in record.verdicts.iter() {
                        *counts.entry((record.class.clone(), verdict)).or_default() += 1;
                    }
                }
                // Classes a reloaded policy dropped must not linger as series.
                self.gauge.clear();
                for ((class, verdict), count) in &counts {
                    self.gauge
                        .get_or_create(&JobPodLabels {
                            class: class.to_string(),
                            verdict: verdict.as_str(),
                        })
                        .set(*count);
                }
                self.counts = counts;
                return Applied::Listed;
            }
            Event::Apply(pod) => {
                let judged = self.judge(&pod);
                if let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name)
                {
                    self.forget(&key(namespace, name));
                }
                self.keep(judged);
            }
            Event::Delete(pod) => {
                if let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name)
                {
                    self.forget(&key(namespace, name));
                }
            }
        }
        Applied::Updated
    }

    fn held(&self) -> usize {
        self.records.len()
    }

    fn access(&self) -> super::access::Access {
        super::access::JOB_PODS
    }

    fn before_first_list(&self) -> &'static str {
        "ci_pod_webhook_job_pods stays empty until the first list"
    }

    /// Judges the pods whose namespace has reached the mirror since, and asks for a
    /// relist when an audited namespace changed.
    fn tick(&mut self) -> Tick {
        let wanted = self.namespaces_changed();
        self.judge_waiting();
        wanted
    }
}

impl PodVerdicts {
    fn judge_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let known: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, (namespace, _))| self.namespaces.get(namespace).is_some())
            .map(|(key, _)| key.clone())
            .collect();
        for key in known {
            if let Some((namespace, json)) = self.waiting.remove(&key)
                && let Some(record) = self.judge_json(&namespace, &json)
            {
                self.keep(Judged::Record(key, record));
            }
        }
    }
}

#[cfg(test)]
mod tests;
