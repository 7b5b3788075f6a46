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
//! not by the pods' size. A reloaded policy relists (the [`super::watcher::Relist`]
//! signal) and judges every pod again. A namespace that opts in later is seen at the
//! next relist or as its pods change.

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
use super::namespace_mirror::Reader;
use super::verdict::{Judgement, Verdict};
use super::watcher::{Applied, Relist, Store, Watcher};
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
        Some(spawn(client, stop, namespaces, judge, gauge, relist))
    }
}

fn spawn(
    client: kube::Client,
    stop: CancellationToken,
    namespaces: Reader,
    judge: Judge,
    gauge: Family<JobPodLabels, Gauge>,
    relist: Relist,
) -> Watcher {
    // Pods as the API server sends them, not through a typed Pod that would drop
    // fields it does not know.
    let api = Api::<DynamicObject>::all_with(client, &ApiResource::erase::<Pod>(&()));
    let config = watcher::Config::default()
        .labels(JOB_POD_SELECTOR)
        .page_size(LIST_PAGE_SIZE);
    let store = PodVerdicts::new(namespaces, judge, gauge);
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

    fn before_first_list(&self) -> &'static str {
        "ci_pod_webhook_job_pods stays empty until the first list"
    }

    /// Judges the pods whose namespace has reached the mirror since.
    fn tick(&mut self) {
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
