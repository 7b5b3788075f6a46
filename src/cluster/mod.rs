//! The webhook's view of the cluster: one value that says where namespace facts come
//! from and holds every watch the webhook keeps.
//!
//! Every watch has the same shape ([`watcher::Watcher`]): a background task feeding a
//! store, ready once its first full list is stored. They are all started by
//! [`Cluster::connect`] (or [`Cluster::from_client`]: namespaces and RuntimeClasses)
//! and [`Cluster::watch_job_pods`], all stopped by one token ([`Cluster::stop`];
//! dropping the last clone cancels it too), and `/readyz` waits for those reviews
//! cannot do without ([`Cluster::is_ready`]: the namespace watch; the RuntimeClass
//! names only add a check, and the job-pod watch only feeds a metric).
//!
//! Without cluster access (`--kube off`, or `--kube auto` outside a pod with no
//! kubeconfig) there is nothing to watch: the webhook then trusts the
//! MutatingWebhookConfiguration's namespaceSelector, which already requires the opt-in
//! label, and no namespace has a class label. In a pod that is never what was meant: a
//! `warn` namespace would be enforced and class labels ignored, so there `--kube auto`
//! without credentials is an error the webhook stays not Ready on, and says why
//! ([`Cluster::readiness`]); a watch the API server refuses (RBAC) says the same.

pub mod access;
pub mod job_pod_series;
mod namespace_mirror;
mod namespaces;
pub mod pods;
mod runtime_classes;
mod verdict;
pub mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, DropGuard};

use namespaces::NamespaceIndex;
pub use namespaces::{DIRECT_GET_TIMEOUT, NamespaceLabels};
pub use runtime_classes::RuntimeClasses;
pub use verdict::{Judgement, Verdict, audited, judge};
use watcher::Watcher;

/// Whether the webhook talks to the API server (`serve --kube`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeMode {
    /// Watch the cluster when a kubeconfig or in-cluster config is found; else, outside a
    /// pod as `off`, and in a pod not Ready ([`Place`]).
    Auto,
    /// Never contact the API server; trust the webhook configuration's namespaceSelector.
    Off,
}

/// Where the webhook runs, as far as `--kube auto` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `KUBERNETES_SERVICE_HOST` is set: the kubelet started us in a pod, where cluster
    /// access is expected and its absence a mistake.
    InPod,
    /// A developer's machine or a test.
    Outside,
}

impl Place {
    /// The kubelet sets `KUBERNETES_SERVICE_HOST` in every container (with
    /// `enableServiceLinks: false` too: that only drops the other Services' variables).
    #[must_use]
    pub fn of_this_process() -> Place {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            Place::InPod
        } else {
            Place::Outside
        }
    }
}

/// Whether the webhook can answer reviews as the cluster would want.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready, and why, in one line.
    NotReady(String),
}

/// What `--kube off` (or no cluster outside a pod) means for reviews.
const TRUST: &str = "every namespace counts as opted in with no class label: \
     trusting the webhook configuration's namespaceSelector";

/// How to fix a pod with no cluster credentials.
const NO_TOKEN_FIX: &str = "mount the ServiceAccount token (automountServiceAccountToken: true \
     in the pod or its ServiceAccount, as manifests/base sets), or set --kube off \
     (CI_POD_WEBHOOK_KUBE=off) to trust the webhook configuration's namespaceSelector";

/// The webhook's view of the cluster. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cluster(View);

#[derive(Clone, Debug)]
enum View {
    /// No cluster: every namespace counts as opted in, with no class label.
    Off,
    /// In a pod without a way to reach the API server: never ready, and why. Reviews
    /// that arrive all the same are answered as with [`View::Off`].
    Unavailable(Arc<str>),
    /// A fixed set of namespaces and their labels; a namespace not listed has none.
    /// For tests, which have no cluster.
    Fixed(Arc<HashMap<String, Arc<BTreeMap<String, String>>>>),
    /// Watches of a real cluster.
    Watched(Arc<Watched>),
}

struct Watched {
    client: kube::Client,
    stop: CancellationToken,
    namespaces: NamespaceIndex,
    runtime_classes: RuntimeClasses,
    /// The watches readiness waits for, the namespace one first.
    watchers: std::sync::Mutex<Vec<Watcher>>,
    /// The per-pod series the job-pod watch also feeds, once given.
    job_pod_series: std::sync::Mutex<Option<job_pod_series::JobPodSeries>>,
    _stop_when_dropped: DropGuard,
}

impl std::fmt::Debug for Watched {
    // `kube::Client` is not `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("namespaces", &self.namespaces)
            .field("stopped", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Default for Cluster {
    /// No cluster: trust the webhook configuration's namespaceSelector.
    fn default() -> Self {
        Cluster(View::Off)
    }
}

impl Cluster {
    /// `mode` is the `--kube auto|off` flag; `auto` tries `kube::Client::try_default()`
    /// (kubeconfig, then in-cluster config). When neither is found it falls back to no
    /// cluster outside a pod, saying so once; in a pod it logs one error line saying what
    /// is missing and how to fix it, and stays not Ready. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// None today: a missing cluster configuration is a fallback or a readiness state,
    /// not an error. The `Result` leaves room for configuration that is present but
    /// unusable.
    pub async fn connect(mode: KubeMode, place: Place) -> anyhow::Result<Self> {
        match mode {
            KubeMode::Off => {
                tracing::info!(kube = "off", "no cluster watches; {TRUST}");
                Ok(Self::default())
            }
            KubeMode::Auto => match kube::Client::try_default().await {
                Ok(client) => {
                    tracing::info!("watching namespace labels and RuntimeClasses");
                    Ok(Self::from_client(client))
                }
                // kube's message already carries its causes; its source chain repeats them.
                Err(error) => Ok(Self::without_config(place, &error.to_string())),
            },
        }
    }

    /// `--kube auto` found no kubeconfig and no in-cluster config (`error` says why).
    fn without_config(place: Place, error: &str) -> Self {
        match place {
            Place::Outside => {
                tracing::warn!(
                    kube = "auto",
                    %error,
                    "no kubeconfig or in-cluster config, no cluster watches; {TRUST}"
                );
                Self::default()
            }
            Place::InPod => {
                let reason = format!(
                    "no cluster access in a pod (KUBERNETES_SERVICE_HOST is set): {error}; \
                     {NO_TOKEN_FIX}"
                );
                tracing::error!(
                    kube = "auto",
                    %error,
                    fix = NO_TOKEN_FIX,
                    "no cluster access in a pod: not Ready, since without namespace labels \
                     a warn namespace would be enforced and class labels ignored"
                );
                Cluster(View::Unavailable(reason.into()))
            }
        }
    }

    /// Starts the namespace and RuntimeClass watches on `client`. Must run inside a
    /// Tokio runtime.
    #[must_use]
    pub fn from_client(client: kube::Client) -> Self {
        let stop = CancellationToken::new();
        let namespaces = NamespaceIndex::spawn(client.clone(), stop.clone());
        let runtime_classes = RuntimeClasses::watch(client.clone(), stop.clone());
        let watchers = std::sync::Mutex::new(vec![namespaces.watcher.clone()]);
        Cluster(View::Watched(Arc::new(Watched {
            client,
            _stop_when_dropped: stop.clone().drop_guard(),
            stop,
            namespaces,
            runtime_classes,
            watchers,
            job_pod_series: std::sync::Mutex::new(None),
        })))
    }

    /// The cluster's RuntimeClass names; unknown without a cluster.
    #[must_use]
    pub fn runtime_classes(&self) -> RuntimeClasses {
        match &self.0 {
            View::Watched(watched) => watched.runtime_classes.clone(),
            View::Off | View::Unavailable(_) | View::Fixed(_) => RuntimeClasses::unknown(),
        }
    }

    /// A fixed view from `(namespace, [(label, value)])` pairs, for tests.
    pub fn fixed<'a>(
        namespaces: impl IntoIterator<Item = (&'a str, &'a [(&'a str, &'a str)])>,
    ) -> Self {
        let map = namespaces
            .into_iter()
            .map(|(name, labels)| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect();
                (name.to_string(), Arc::new(labels))
            })
            .collect();
        Cluster(View::Fixed(Arc::new(map)))
    }

    /// The API client and the stop token new watches must use, when there is a cluster.
    pub fn client(&self) -> Option<(&kube::Client, &CancellationToken)> {
        match &self.0 {
            View::Watched(watched) => Some((&watched.client, &watched.stop)),
            View::Off | View::Unavailable(_) | View::Fixed(_) => None,
        }
    }

    /// What a new watch needs: the client, the stop token, the namespace labels.
    fn parts(&self) -> Option<(kube::Client, CancellationToken, namespace_mirror::Reader)> {
        match &self.0 {
            View::Watched(w) => Some((w.client.clone(), w.stop.clone(), w.namespaces.mirror())),
            View::Off | View::Unavailable(_) | View::Fixed(_) => None,
        }
    }

    /// Has the job-pod watch, when it starts ([`Self::watch_job_pods`]), also export
    /// the per-pod info series and count terminations ([`job_pod_series`]).
    pub fn observe_job_pods(&self, series: job_pod_series::JobPodSeries) {
        if let View::Watched(watched) = &self.0 {
            *lock(&watched.job_pod_series) = Some(series);
        }
    }

    /// The series [`Self::observe_job_pods`] gave, for the job-pod watch.
    fn take_job_pod_series(&self) -> Option<job_pod_series::JobPodSeries> {
        match &self.0 {
            View::Watched(watched) => lock(&watched.job_pod_series).take(),
            View::Off | View::Unavailable(_) | View::Fixed(_) => None,
        }
    }

    /// Adds a watch started with [`Self::client`]'s stop token to those `/readyz`
    /// waits for.
    pub fn add_watcher(&self, watcher: Watcher) {
        if let View::Watched(watched) = &self.0 {
            lock(&watched.watchers).push(watcher);
        }
    }

    /// Stops every watch. Dropping the last clone does the same.
    pub fn stop(&self) {
        if let View::Watched(watched) = &self.0 {
            watched.stop.cancel();
        }
    }

    /// True once every watch has stored its first full list (and from then on, also
    /// while the watches reconnect). Without a cluster: always, but in a pod never.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready
    }

    /// [`Self::is_ready`], and if not, why: a watch the API server refuses, a watch not
    /// listed yet, or no cluster access in a pod.
    #[must_use]
    pub fn readiness(&self) -> Readiness {
        match &self.0 {
            View::Watched(watched) => {
                let watchers = lock(&watched.watchers);
                let Some(waiting) = watchers.iter().find(|w| !w.is_ready()) else {
                    return Readiness::Ready;
                };
                Readiness::NotReady(match waiting.refused() {
                    Some(reason) => reason.to_string(),
                    None => format!("{} watch: first list not stored yet", waiting.what()),
                })
            }
            View::Unavailable(reason) => Readiness::NotReady(reason.to_string()),
            View::Off | View::Fixed(_) => Readiness::Ready,
        }
    }

    /// Resolves when [`Self::is_ready`] is true, or when the watches have stopped.
    pub async fn wait_ready(&self) {
        if let View::Watched(watched) = &self.0 {
            let watchers = lock(&watched.watchers).clone();
            for watcher in watchers {
                watcher.wait_ready().await;
            }
        }
    }

    /// The labels of `namespace` if they are at hand without waiting (no cache miss).
    pub fn peek(&self, namespace: &str) -> Option<NamespaceLabels> {
        match &self.0 {
            View::Off | View::Unavailable(_) => Some(NamespaceLabels::TrustSelector),
            View::Fixed(map) => Some(NamespaceLabels::Known(
                map.get(namespace).cloned().unwrap_or_default(),
            )),
            View::Watched(watched) => watched.namespaces.peek(namespace),
        }
    }

    /// The labels of `namespace`, the request's authoritative namespace; for one the
    /// mirror lacks, one direct GET.
    pub async fn labels(&self, namespace: &str) -> NamespaceLabels {
        match &self.0 {
            View::Watched(watched) => watched.namespaces.labels(namespace).await,
            View::Off | View::Unavailable(_) | View::Fixed(_) => self
                .peek(namespace)
                .unwrap_or(NamespaceLabels::TrustSelector),
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic between two whole-vector operations.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
