//! The live audit: job pods watched in opted-in namespaces, each judged as `audit`
//! judges it ([`super::judge`]), counted in `ci_pod_webhook_job_pods{class,verdict}`.
//!
//! The watch asks only for pods labelled `pod` (GitLab Runner puts that label on every
//! job pod), so other workloads never cross the wire. Pods arrive whole, one at a time
//! (the list in small pages: [`LIST_PAGE_SIZE`]), and only a small record is kept of
//! each: its key and its (class, verdict), so memory grows by under a kilobyte per job
//! pod, not by the pods' size. A reloaded policy relists (the [`super::watcher::Relist`] signal) and
//! judges every pod again. A namespace that opts in later is seen at the next relist
//! or as its pods change.

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

/// The label GitLab Runner puts on every job pod.
pub const JOB_POD_SELECTOR: &str = "pod";

/// Pods per list page. A page is held whole while it is read, and kube reads a list
/// through serde's buffered `flatten` (`ObjectList`, then `DynamicObject`): about 1 MiB
/// of transient memory per 20 KB job pod. kube's default of 500 took the server to
/// 593 MiB on its first list (1,500 job pods, BENCHMARKS.md); 25 bounds it to a few
/// tens of MiB, for one list request per 25 job pods at start-up and policy reloads.
const LIST_PAGE_SIZE: u32 = 25;

/// Judges one pod: (namespace, its labels, the pod's JSON) → `None` when it is not a
/// job pod in an opted-in namespace. Built by the server around the policy in force.
pub type Judge =
    Box<dyn Fn(&str, &BTreeMap<String, String>, &str) -> Option<Judgement> + Send + 'static>;

/// What is kept of one job pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    class: Arc<str>,
    verdict: Verdict,
}

/// The per-pod records and the gauge they feed.
pub(super) struct PodVerdicts {
    namespaces: Reader,
    judge: Judge,
    records: HashMap<String, Record>,
    /// Pods seen since the last `Init`, swapped in on `InitDone`.
    relist: HashMap<String, Record>,
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
            counts: HashMap::new(),
            gauge,
        }
    }

    fn judge(&self, pod: &DynamicObject) -> Option<(String, Record)> {
        let namespace = pod.metadata.namespace.as_deref()?;
        let name = pod.metadata.name.as_deref()?;
        let labels = self.namespaces.get(namespace)?;
        let json = serde_json::to_string(pod).ok()?;
        let judgement = (self.judge)(namespace, &labels, &json)?;
        let record = Record {
            class: judgement.class.into(),
            verdict: judgement.verdict,
        };
        Some((key(namespace, name), record))
    }

    fn count(&mut self, record: &Record, by: i64) {
        let slot = (record.class.clone(), record.verdict);
        let count = self.counts.entry(slot).or_default();
        *count += by;
        self.gauge
            .get_or_create(&JobPodLabels {
                class: record.class.to_string(),
                verdict: record.verdict.as_str(),
            })
            .set(*count);
    }

    fn forget(&mut self, key: &str) {
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
            Event::Init => self.relist = HashMap::new(),
            Event::InitApply(pod) => {
                if let Some((key, record)) = self.judge(&pod) {
                    self.relist.insert(key, record);
                }
            }
            Event::InitDone => {
                self.records = std::mem::take(&mut self.relist);
                let mut counts: HashMap<(Arc<str>, Verdict), i64> = HashMap::new();
                for record in self.records.values() {
                    *counts
                        .entry((record.class.clone(), record.verdict))
                        .or_default() += 1;
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
                if let Some((key, record)) = judged {
                    self.count(&record, 1);
                    self.records.insert(key, record);
                }
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
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
